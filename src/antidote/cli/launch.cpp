// Data-parallel runs from the command line: `--nproc N` starts N workers of this very
// command on this host, and a worker (started so, by torchrun, or by hand on several
// hosts) joins the others through the torchrun environment variables.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "antidote/cli/cli.hpp"
#include "antidote/core/common.hpp"
#include "antidote/core/io.hpp"
#include "antidote/train/distributed.hpp"

extern char** environ;

namespace antidote::cli {

namespace {

// argv without `--nproc N` / `--nproc=N`: what each worker runs.
std::vector<std::string> worker_args(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--nproc") {
      ++i;
      continue;
    }
    if (a.rfind("--nproc=", 0) == 0) continue;
    args.push_back(a);
  }
  return args;
}

// This process's environment with the torchrun variables of worker `rank` set.
std::vector<std::string> worker_env(int rank, int nproc, int port) {
  std::vector<std::string> env;
  const std::vector<std::string> ours{"RANK",        "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                                      "MASTER_ADDR", "MASTER_PORT"};
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    bool replaced = false;
    for (const auto& name : ours) replaced = replaced || kv.rfind(name + "=", 0) == 0;
    if (!replaced) env.push_back(kv);
  }
  for (const auto& kv : {std::pair<std::string, int>{"RANK", rank},
                         {"WORLD_SIZE", nproc},
                         {"LOCAL_RANK", rank},
                         {"LOCAL_WORLD_SIZE", nproc},
                         {"MASTER_PORT", port}})
    env.push_back(kv.first + "=" + std::to_string(kv.second));
  env.push_back("MASTER_ADDR=127.0.0.1");
  return env;
}

std::vector<char*> c_strings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// The exit code a wait status stands for (128 + the signal for a killed worker).
int exit_code_of_status(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

}  // namespace

int run_workers(int nproc, int argc, char** argv) {
  const int port = free_local_port();  // the master: worker 0, on loopback
  std::vector<std::string> args = worker_args(argc, argv);
  std::vector<pid_t> pids;
  for (int rank = 0; rank < nproc; ++rank) {
    std::vector<std::string> env = worker_env(rank, nproc, port);
    auto cargs = c_strings(args), cenv = c_strings(env);
    pid_t pid = 0;
    if (int err = ::posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, cargs.data(), cenv.data())) {
      for (pid_t p : pids) ::kill(p, SIGTERM);
      fail("--nproc: cannot start worker {}: {}", rank, std::strerror(err));
    }
    pids.push_back(pid);
  }
  // The first worker to fail decides the exit code; the others are stopped at once
  // rather than left to notice it at their next collective.
  int code = 0, running = nproc;
  while (running > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    --running;
    const int rc = exit_code_of_status(status);
    if (rc != 0 && code == 0) {
      code = rc;
      size_t rank = 0;
      while (rank < pids.size() && pids[rank] != pid) ++rank;
      std::cerr << "antidote: worker " << rank << " of " << nproc << " stopped (exit code " << rc
                << "); stopping the others" << std::endl;
      for (pid_t p : pids)
        if (p != pid) ::kill(p, SIGTERM);
    }
  }
  return code;
}

void join_distributed_run(double timeout_seconds) {
  const auto env = distributed_env_from_environment();
  if (!env || env->world_size == 1) return;
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000));
  set_process_world(std::make_shared<GlooWorld>(*env, timeout));
  if (env->rank != 0) {
    // Rank 0 prints and writes; the others compute the same and stay silent.
    set_writes_enabled(false);
    silence_output();
  }
}

void report_distributed_run() {
  const auto* world = dynamic_cast<const GlooWorld*>(&process_world());
  if (!world || world->allreduce_calls() == 0) return;
  log_info(
      fmt::format("data-parallel: {} workers; {} gradient all-reduces, {:.1f} MB from each worker, {:.2f} s in them "
                  "(worker {})",
                  world->world_size(), world->allreduce_calls(), world->allreduce_bytes() / 1e6,
                  world->allreduce_seconds(), world->rank()));
}

}  // namespace antidote::cli
