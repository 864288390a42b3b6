// The `antidote` command line: what several subcommands share (the common options, the
// config's first cell, loading a suspect model, writing a model, printing an evaluation)
// and each subcommand's registration. A subcommand's file adds its CLI11 subcommand and
// returns what to run when the command line names it; main.cpp dispatches.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "antidote/metrics/metrics.hpp"
#include "antidote/models/model.hpp"
#include "antidote/pipeline/config.hpp"
#include "antidote/pipeline/experiment.hpp"

namespace antidote::cli {

// Exit codes besides 0 and CLI11's own for a malformed command line.
constexpr int kExitError = 2;               // an error; its message is on stderr
constexpr int kExitInternalError = 3;       // an error inside LibTorch
constexpr int kExitPurificationFailed = 4;  // `defend --strict`: purification failed or may have

// The embedded default config (`antidote demo`, and any command without --config).
const char* demo_config();

// The options most subcommands take: the config and its overrides.
struct Common {
  std::string config;
  int threads = -1;
  std::string device, precision;
  bool quiet = false;
  bool demo = false;  // `antidote demo`: the embedded config is what was asked for
};

void add_common(CLI::App* app, Common& c, bool config_required);

// The config the options name (the embedded demo config without --config), with the
// overrides applied; also sets quiet mode.
ExperimentConfig load_common(const Common& c);

// The first dataset × attack of a config: what poison/train/eval/defend act on.
struct FirstCell {
  DatasetConfig dataset;
  AttackConfig attack;
  RawData data;
  uint64_t seed;
};

FirstCell first_cell(const ExperimentConfig& cfg);

// A suspect model file and the config's first cell, encoded with the model's own
// vocabulary (text) and checked against the data.
struct Suspect {
  FirstCell first;
  Cell cell;
  ClassifierPtr model;
};

Suspect load_suspect(const ExperimentConfig& cfg, const std::string& model_path);

// Text models carry their vocabulary beside them (model.pt.vocab); null for other models.
std::unique_ptr<Encoder> encoder_for_model(const std::string& model_path, const ClassifierPtr& model);

// The model file, its vocabulary (text) and its state dict (models antidote built).
void save_model_files(const Classifier& model, const Cell& cell, const std::string& path);

// One line: CACC, ASR, RA, PCC (ASR unknown without a triggered test set).
void print_eval(const std::string& label, const Evaluation& e);

// "key=value" pairs (value parsed as YAML) into a mapping.
YAML::Node parse_sets(const std::vector<std::string>& sets);

// A registered subcommand: its CLI11 node, and what runs when the command line names it
// (an exit code; errors are thrown).
struct Subcommand {
  CLI::App* app;
  std::function<int()> run;
};

// Starts `nproc` workers of this command line (argv less --nproc) on this host with the
// torchrun variables set, and returns the first failed worker's exit code (0 if none);
// the others are stopped when one fails (launch.cpp).
int run_workers(int nproc, int argc, char** argv);
// In a worker of a distributed run (WORLD_SIZE set), joins the others over c10d/Gloo,
// failing after `timeout_seconds`; rank 0 alone then writes and prints. Nothing to do
// in a single process.
void join_distributed_run(double timeout_seconds);
// One line on the gradient all-reduces of this run (rank 0; nothing in a single process).
void report_distributed_run();

Subcommand add_bench(CLI::App& app);     // bench.cpp
Subcommand add_demo(CLI::App& app);      // bench.cpp
Subcommand add_poison(CLI::App& app);    // poison.cpp
Subcommand add_train(CLI::App& app);     // train.cpp
Subcommand add_eval(CLI::App& app);      // eval.cpp
Subcommand add_defend(CLI::App& app);    // defend.cpp
Subcommand add_identify(CLI::App& app);  // identify.cpp
Subcommand add_list(CLI::App& app);      // list.cpp

}  // namespace antidote::cli
