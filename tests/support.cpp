#include "support.hpp"

#include <stdlib.h>

#include <fstream>
#include <stdexcept>
#include <vector>

namespace antidote::testing {

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "antidote_test_XXXXXX").string();
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
  path = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

std::string TempDir::write(const std::string& name, const std::string& content) const {
  auto p = file(name);
  std::filesystem::create_directories(std::filesystem::path(p).parent_path());
  std::ofstream(p, std::ios::binary) << content;
  return p;
}

IntegrationRun suspect_then_defense(const DatasetConfig& d, const AttackConfig& a, uint64_t cell_seed,
                                    const std::string& arch, const YAML::Node& arch_options, const TrainOptions& t,
                                    const std::string& defense, const YAML::Node& options) {
  set_quiet(true);
  configure_threads(1);
  auto raw = load_dataset(d, 0);
  auto cell = prepare_cell(raw, d, a, cell_seed);
  auto suspect = train_model(cell, arch, arch_options, t, 1, torch::kCPU, "suspect");
  IntegrationRun run;
  run.before = evaluate(*suspect, cell.test_clean, cell.test_triggered, a.target);
  Params p(YAML::Clone(options), defense);
  auto def = make_defense(defense, p, DefenseSetup{cell.modality, arch, raw.num_classes});
  p.check_consumed();
  auto ctx = make_defense_context(cell, torch::kCPU, 0, 512);
  run.result = def->run(suspect, ctx);
  if (run.result.flagged.defined()) run.detection = detection(run.result.flagged, cell.train.poisoned);
  run.after = evaluate(*run.result.model, cell.test_clean, cell.test_triggered, a.target);
  return run;
}

}  // namespace antidote::testing
