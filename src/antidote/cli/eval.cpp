// `antidote eval`: CACC, ASR, RA and PCC of a model file on the first cell of a config,
// optionally as JSON and with every test row's predicted class.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "antidote/cli/cli.hpp"
#include "antidote/core/common.hpp"

namespace antidote::cli {

namespace {

using nlohmann::json;

struct EvalArgs {
  Common common;
  std::string model_path, json_out, predictions_out;
};

int cmd_eval(const Common& c, const std::string& model_path, const std::string& json_out,
             const std::string& predictions_out) {
  auto cfg = load_common(c);
  configure_threads(cfg.threads);
  auto s = load_suspect(cfg, model_path);
  auto& model = s.model;
  const auto& cell = s.cell;
  auto e = evaluate(*model, cell.test_clean, cell.test_triggered, s.first.attack.target, cfg.eval_batch_size);
  print_eval(std::filesystem::path(model_path).filename().string(), e);
  if (!json_out.empty()) write_file_atomic(json_out, evaluation_json(e).dump(1));
  if (!predictions_out.empty()) {
    auto labels = [&](const Dataset& d) {
      auto p = predict_probs(*model, d.x, cfg.eval_batch_size).argmax(1).to(torch::kCPU).contiguous();
      return std::vector<int64_t>(p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + p.numel());
    };
    json preds{{"clean", labels(cell.test_clean)}, {"triggered", labels(cell.test_triggered)}};
    write_file_atomic(predictions_out, preds.dump());
  }
  return 0;
}

}  // namespace

Subcommand add_eval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  auto* eval = app.add_subcommand("eval", "CACC, ASR, RA, PCC of a model on a config's data");
  add_common(eval, a->common, false);
  eval->add_option("-m,--model", a->model_path, "model file (antidote or TorchScript)")->required();
  eval->add_option("--json", a->json_out, "also write the numbers as JSON");
  eval->add_option("--predictions", a->predictions_out,
                   "also write the predicted class of every clean and triggered test row as JSON");
  return {eval, [a] { return cmd_eval(a->common, a->model_path, a->json_out, a->predictions_out); }};
}

}  // namespace antidote::cli
