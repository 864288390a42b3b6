// What several test files share: a temporary directory, and the integration runs'
// "train a suspect on a real cell, run a defense, evaluate both" helper.
#pragma once

#include <filesystem>
#include <string>

#include "antidote/defenses/defense.hpp"
#include "antidote/metrics/metrics.hpp"
#include "antidote/pipeline/experiment.hpp"

namespace antidote::testing {

// What `f` throws as an antidote::Error, or a marker that no such error came.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no antidote::Error thrown>";
}

// A fresh directory under the system's temporary directory, removed with everything
// in it when the object goes.
struct TempDir {
  std::filesystem::path path;
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
  // Writes `content` to `name` (creating its parent folders) and returns the path.
  std::string write(const std::string& name, const std::string& content) const;
};

// The antidote binary run through the shell with `args` (stderr folded into the
// output); `shell_prefix` runs first (e.g. "ulimit -f 64; ").
struct CliResult {
  int rc = -1;  // exit status; 128 + signal when killed by one
  std::string output;
};
CliResult run_cli(const std::string& args, const std::string& shell_prefix = "");

// A real cell and the recipe its suspect is trained with.
struct CellRecipe {
  DatasetConfig data;
  AttackConfig attack;
  uint64_t cell_seed = 0;
  std::string arch;
  YAML::Node arch_options;
  TrainOptions train;
};
// SST-2's 6920 training rows with BadNet-word at 10 % (target 1, 400 test rows), the
// bench's Transformer ([CLS] pooling) trained 4 epochs with Adam 1e-3, cell seed 3.
CellRecipe sst2_badnet_word();
// Whether the cell's data is on this machine (the shared data may be absent).
bool data_present(const CellRecipe& r);

// A suspect trained on the cell (single-threaded, quiet), the defense run on it, the
// evaluations before and after, and the detection of its flagged rows (zero when it
// flags none).
struct IntegrationRun {
  Evaluation before, after;
  Detection detection;
  DefenseResult result;
};
IntegrationRun suspect_then_defense(const CellRecipe& r, const std::string& defense, const YAML::Node& options);

}  // namespace antidote::testing
