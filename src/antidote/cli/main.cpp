// antidote: one binary, subcommands. The methods live in the library; this file builds the
// command line from the subcommands' files (cli.hpp) and runs the one it names.
#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "antidote/cli/cli.hpp"
#include "antidote/core/common.hpp"

using namespace antidote;
using namespace antidote::cli;

namespace {

// Runs a subcommand; an error becomes its message on stderr and exit code 2 (3 for an
// error inside LibTorch).
int exit_code_of(const std::function<int()>& command) {
  try {
    return command();
  } catch (const Error& e) {
    std::cerr << "antidote: error: " << e.what() << std::endl;
    return kExitError;
  } catch (const c10::Error& e) {
    std::cerr << "antidote: internal error: " << std::string(e.what_without_backtrace()).substr(0, 2000) << std::endl;
    return kExitInternalError;
  } catch (const std::exception& e) {
    std::cerr << "antidote: error: " << e.what() << std::endl;
    return kExitError;
  }
}

}  // namespace

int main(int argc, char** argv) {
  configure_allocator();
  print_libtorch_warnings_plainly();
  // Past a file-size limit (ulimit -f) a write then fails with an error that names the
  // file, as on a full disk, instead of the signal killing the process.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"antidote: remove backdoors from trained classifiers (BeDKD, NT-ML, baselines)"};
  app.set_version_flag("--version", version());
  app.require_subcommand(1);
  // The data-parallel options go before or after the subcommand (its unmatched options
  // fall through to these).
  app.fallthrough();
  int nproc = 1;
  double dist_timeout = 300;
  app.add_option("--nproc", nproc,
                 "data-parallel workers to start on this host (default 1; a worker started by torchrun, or with "
                 "RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set, joins the others instead)")
      ->check(CLI::Range(1, 256));
  app.add_option("--dist-timeout", dist_timeout,
                 "seconds a data-parallel worker waits for the others (joining, and at each step) before it "
                 "stops with an error")
      ->check(CLI::PositiveNumber);

  // In the order `antidote --help` lists them.
  const std::vector<Subcommand> subcommands{add_bench(app), add_demo(app),   add_poison(app),   add_train(app),
                                            add_eval(app),  add_defend(app), add_identify(app), add_list(app)};
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return exit_code_of([&] {
    if (nproc > 1) {
      if (std::getenv("WORLD_SIZE")) fail("--nproc: this process is already a worker of a distributed run");
      return run_workers(nproc, argc, argv);
    }
    join_distributed_run(dist_timeout);
    for (const auto& s : subcommands)
      if (s.app->parsed()) {
        const int code = s.run();
        report_distributed_run();
        return code;
      }
    return 0;
  });
}
