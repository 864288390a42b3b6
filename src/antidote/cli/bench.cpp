// `antidote bench` and `antidote demo`: a grid of datasets × attacks × defenses × seeds,
// from the user's config (bench) or from the embedded demo config (demo).
#include <iostream>
#include <memory>
#include <string>

#include "antidote/cli/cli.hpp"
#include "antidote/report/results.hpp"

namespace antidote::cli {

namespace {

struct BenchArgs {
  Common common;
  std::string out;
  bool fresh = false;
  bool print_config = false;  // demo only
};

int cmd_bench(const Common& c, const std::string& out, bool fresh) {
  auto cfg = load_common(c);
  BenchOptions o;
  o.out_dir = out;
  o.fresh = fresh;
  auto doc = run_bench(cfg, o);
  std::cout << results_markdown(doc);
  std::cout << fmt::format("\nwrote {0}/results.json, {0}/results.csv, {0}/results.md, {0}/report.html\n", out);
  return 0;
}

}  // namespace

Subcommand add_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  auto* bench = app.add_subcommand("bench", "run a grid of datasets × attacks × defenses × seeds");
  add_common(bench, a->common, true);
  bench->add_option("-o,--out", a->out, "output directory")->required();
  bench->add_flag("--fresh", a->fresh, "redo finished cells instead of resuming");
  return {bench, [a] { return cmd_bench(a->common, a->out, a->fresh); }};
}

Subcommand add_demo(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  auto* demo = app.add_subcommand("demo", "the embedded default: Fashion-MNIST, BadNets 10 %, small CNN, all defenses");
  demo->add_option("-o,--out", a->out, "output directory")->default_val("antidote-demo");
  demo->add_option("--threads", a->common.threads, "intra-op threads (default: all cores)");
  demo->add_flag("--fresh", a->fresh, "redo finished cells instead of resuming");
  demo->add_flag("-q,--quiet", a->common.quiet, "no progress lines");
  demo->add_flag("--print-config", a->print_config, "print the embedded config and exit");
  return {demo, [a] {
            a->common.demo = true;
            if (a->print_config) {
              std::cout << demo_config();
              return 0;
            }
            return cmd_bench(a->common, a->out, a->fresh);
          }};
}

}  // namespace antidote::cli
