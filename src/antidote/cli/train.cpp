// `antidote train`: trains a model on the first cell of a config, poisoned (and then
// evaluated as the suspect) or clean, and writes the model file.
#include <iostream>
#include <memory>
#include <string>

#include "antidote/cli/cli.hpp"
#include "antidote/core/common.hpp"

namespace antidote::cli {

namespace {

struct TrainArgs {
  Common common;
  std::string out;
  bool clean = false;
};

int cmd_train(const Common& c, const std::string& out, bool clean) {
  auto cfg = load_common(c);
  configure_threads(cfg.threads);
  auto device = parse_device(cfg.device);
  auto f = first_cell(cfg);
  auto cell = clean ? prepare_clean_cell(f.data, f.dataset, f.seed) : prepare_cell(f.data, f.dataset, f.attack, f.seed);
  auto [arch, opts] = resolve_model(cfg, f.dataset, f.data.modality);
  TrainConfig tcfg = train_config_for(cfg, f.dataset);
  auto model = train_model(cell, arch, opts, tcfg.resolve(f.data.modality), derive_seed(f.seed, "train/cli"), device,
                           f.dataset.name + (clean ? " clean" : " " + f.attack.name));
  save_model_files(*model, cell, out);
  if (!clean) print_eval("suspect", evaluate(*model, cell.test_clean, cell.test_triggered, f.attack.target));
  std::cout << fmt::format("wrote {} ({} parameters)\n", out, count_parameters(*model));
  return 0;
}

}  // namespace

Subcommand add_train(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  auto* train = app.add_subcommand("train", "train a model on the (poisoned) data of a config");
  add_common(train, a->common, false);
  train->add_option("-o,--out", a->out, "model file to write")->required();
  train->add_flag("--clean", a->clean, "train on the clean data (no attack)");
  return {train, [a] { return cmd_train(a->common, a->out, a->clean); }};
}

}  // namespace antidote::cli
