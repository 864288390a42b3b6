// What several test files share: a temporary directory, and the integration runs'
// "train a suspect on a real cell, run a defense, evaluate both" helper.
#pragma once

#include <filesystem>
#include <string>

#include "antidote/defenses/defense.hpp"
#include "antidote/metrics/metrics.hpp"
#include "antidote/pipeline/experiment.hpp"

namespace antidote::testing {

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

// A suspect trained on one real cell (single-threaded, quiet), the defense run on it,
// the evaluations before and after, and the detection of its flagged rows (zero when
// it flags none).
struct IntegrationRun {
  Evaluation before, after;
  Detection detection;
  DefenseResult result;
};
IntegrationRun suspect_then_defense(const DatasetConfig& d, const AttackConfig& a, uint64_t cell_seed,
                                    const std::string& arch, const YAML::Node& arch_options, const TrainOptions& t,
                                    const std::string& defense, const YAML::Node& options);

}  // namespace antidote::testing
