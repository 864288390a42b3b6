// `antidote identify`: which training rows of the first cell a suspect model was poisoned
// with, by one identification method; writes the flagged rows as CSV, JSON and a report.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "antidote/cli/cli.hpp"
#include "antidote/core/common.hpp"
#include "antidote/defenses/bedkd/recipe.hpp"
#include "antidote/defenses/identify/identify.hpp"

namespace antidote::cli {

namespace {

struct IdentifyArgs {
  Common common;
  std::string model_path, method, out;
  std::vector<std::string> sets;
};

int cmd_identify(const Common& c, const std::string& model_path, std::string method, const std::string& out,
                 const std::vector<std::string>& sets) {
  auto cfg = load_common(c);
  configure_threads(cfg.threads);
  auto s = load_suspect(cfg, model_path);
  DefenseSetup setup{s.cell.modality, s.model->spec.arch, s.cell.num_classes};
  if (method.empty()) method = bedkd::default_identify(setup);
  Params params(parse_sets(sets), fmt::format("identify '{}'", method));
  auto identifier = make_identifier(method, params, setup);
  params.check_consumed();
  const auto seed = derive_seed(s.first.seed, "identify/" + method);
  torch::manual_seed(seed);
  auto ctx = make_defense_context(s.cell, parse_device(cfg.device), seed, cfg.eval_batch_size, cfg.monitor_limit);
  Rng rng(seed);
  auto id = identifier->identify(s.model, ctx, rng);
  auto doc = write_identification(id, s.cell, out);
  std::cout << fmt::format("identify {}: {} rows, target label {}, {} flagged, confidence {:.0f}%\n", method,
                           s.cell.train.size(), id.target, id.flagged.numel(), 100 * id.confidence);
  if (doc.contains("detection"))
    std::cout << fmt::format("against the ground truth: precision {:.1f}% recall {:.1f}% ({} poisoned rows)\n",
                             100 * doc["detection"]["precision"].get<double>(),
                             100 * doc["detection"]["recall"].get<double>(),
                             doc["detection"]["poisoned"].get<int64_t>());
  for (const auto& st : id.stages)
    std::cout << fmt::format("stage {:<10} {:7.1f} s  peak {:6.0f} MB\n", st.name, st.seconds, st.peak_rss_mb);
  if (!id.warning.empty()) std::cout << "WARNING: identification is unsure: " << id.warning << "\n";
  std::cout << fmt::format("wrote {0}/flagged.csv, {0}/scores.csv, {0}/identification.json, {0}/report.html\n", out);
  return 0;
}

}  // namespace

Subcommand add_identify(CLI::App& app) {
  auto a = std::make_shared<IdentifyArgs>();
  auto* identify = app.add_subcommand("identify", "which training rows are poisoned: flagged rows as CSV and JSON");
  add_common(identify, a->common, false);
  identify->add_option("-m,--model", a->model_path, "suspect model file (antidote or TorchScript)")->required();
  identify->add_option("--method", a->method,
                       "identification method (default: BeDKD's for the data: early_loss on text, dmm on images)");
  identify->add_option("-o,--out", a->out, "output directory")->required();
  identify->add_option("--set", a->sets, "method option key=value (repeatable)");
  return {identify, [a] { return cmd_identify(a->common, a->model_path, a->method, a->out, a->sets); }};
}

}  // namespace antidote::cli
