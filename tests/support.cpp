#include "support.hpp"

#include <stdlib.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <vector>

namespace antidote::testing {

CliResult run_cli(const std::string& args, const std::string& shell_prefix) {
  std::string cmd = shell_prefix + "'" + ANTIDOTE_BINARY + "' " + args + " 2>&1";
  CliResult r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = ::pclose(p);
  if (WIFEXITED(status))
    r.rc = WEXITSTATUS(status);
  else if (WIFSIGNALED(status))
    r.rc = 128 + WTERMSIG(status);
  return r;
}

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

CellRecipe sst2_badnet_word() {
  CellRecipe r;
  r.data.name = "sst2";
  r.data.path = std::string(ANTIDOTE_SHARED_DATA) + "/text/sst2";
  r.data.test_limit = 400;
  r.attack.name = "badnet-word";
  r.attack.poison_rate = 0.1;
  r.attack.target = 1;
  r.cell_seed = 3;
  r.arch = "transformer";
  r.arch_options["pool"] = "cls";
  r.train.epochs = 4;
  r.train.batch_size = 32;
  r.train.optimizer = OptimizerConfig{"adam", 1e-3, 0.0, 0.0};
  return r;
}

bool data_present(const CellRecipe& r) {
  return file_exists(r.data.path) && (r.data.name != "sst2" || file_exists(r.data.path + "/train.tsv"));
}

IntegrationRun suspect_then_defense(const CellRecipe& r, const std::string& defense, const YAML::Node& options) {
  set_quiet(true);
  configure_threads(1);
  auto raw = load_dataset(r.data, 0);
  auto cell = prepare_cell(raw, r.data, r.attack, r.cell_seed);
  auto suspect = train_model(cell, r.arch, r.arch_options, r.train, 1, torch::kCPU, "suspect");
  IntegrationRun run;
  run.before = evaluate(*suspect, cell.test_clean, cell.test_triggered, r.attack.target);
  Params p(YAML::Clone(options), defense);
  auto def = make_defense(defense, p, DefenseSetup{cell.modality, r.arch, raw.num_classes});
  p.check_consumed();
  auto ctx = make_defense_context(cell, torch::kCPU, 0, 512);
  run.result = def->run(suspect, ctx);
  if (run.result.flagged.defined()) run.detection = detection(run.result.flagged, cell.train.poisoned);
  run.after = evaluate(*run.result.model, cell.test_clean, cell.test_triggered, r.attack.target);
  return run;
}

}  // namespace antidote::testing
