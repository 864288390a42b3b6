// `antidote defend`: purifies a suspect model with one defense, prints before/after, the
// verdict, detection and warning lines, and writes the purified model and a JSON summary.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "antidote/cli/cli.hpp"
#include "antidote/core/common.hpp"
#include "antidote/defenses/defense.hpp"
#include "antidote/report/results.hpp"

namespace antidote::cli {

namespace {

using nlohmann::json;

struct DefendArgs {
  Common common;
  std::string model_path, method, out;
  std::vector<std::string> sets;
  bool strict = false;
};

// The detection line (where the ground truth is known) and the flagged-rows check.
void print_detection(const RunRecord& record, json& summary) {
  if (const auto& d = record.detection) {
    summary["detection"] = *d;
    std::cout << fmt::format("detection: precision {:.1f}% recall {:.1f}% ({} flagged)\n", 100 * d->precision,
                             100 * d->recall, d->flagged);
  }
  const json& details = record.details;
  if (details.contains("flagged_rows_check")) {
    const auto& f = details["flagged_rows_check"];
    std::cout << fmt::format("flagged rows sent to the target {}: {:.1f}% by the suspect, {:.1f}% after ({} rows)\n",
                             f["target"].get<int64_t>(), 100 * f["suspect_share"].get<double>(),
                             100 * f["purified_share"].get<double>(), f["rows"].get<int64_t>());
  }
}

// What a defense's own signals say against its success, with no ground truth needed.
std::vector<std::string> failure_signals(const json& details) {
  std::vector<std::string> out;
  if (details.contains("identify") && details["identify"].contains("warning"))
    out.push_back("identification is unsure: " + details["identify"]["warning"].get<std::string>());
  if (details.contains("flagged_rows_check") && details["flagged_rows_check"]["kept"].get<bool>()) {
    const auto& f = details["flagged_rows_check"];
    out.push_back(fmt::format("the purified model still sends {:.0f}% of the {} flagged training rows to the target {}",
                              100 * f["purified_share"].get<double>(), f["rows"].get<int64_t>(),
                              f["target"].get<int64_t>()));
  }
  return out;
}

// The report page of this one cell, as a bench would draw it: the suspect's row, the
// purified model's, the attack's examples and the warnings.
json report_doc(const ExperimentConfig& cfg, const Suspect& s, const DefenseRun& run,
                const std::vector<std::string>& warnings) {
  auto with_cell = [&](RunRecord r) {
    r.dataset = s.first.dataset.name;
    r.model = s.model->spec.arch;
    r.attack = s.cell.attack.name;
    r.poison_rate = s.cell.attack.poison_rate;
    r.target = s.cell.attack.target;
    r.seed = s.first.seed;
    return r;
  };
  RunRecord suspect;
  suspect.defense = "none";
  suspect.cacc = run.before.cacc;
  if (run.before.asr_known()) suspect.asr = run.before.asr, suspect.ra = run.before.ra, suspect.pcc = run.before.pcc;
  suspect.confusion = run.before.confusion;
  RunRecord purified = run.record;
  purified.model_file.clear();  // the page sits beside the model, not in a bench's models/
  return {{"version", version()},
          {"threads", torch::get_num_threads()},
          {"precision", training_precision()},
          {"device", cfg.device},
          {"config", yaml_to_json(cfg.source)},
          {"runs", json::array({json(with_cell(suspect)), json(with_cell(purified))})},
          {"examples", json::array({examples_json(s.cell, 4)})},
          {"warnings", warnings},
          {"complete", true}};
}

int cmd_defend(const Common& c, const std::string& model_path, const std::string& method, const std::string& out,
               const std::vector<std::string>& sets, bool strict) {
  auto cfg = load_common(c);
  configure_threads(cfg.threads);
  auto s = load_suspect(cfg, model_path);
  const auto& cell = s.cell;
  YAML::Node options(YAML::NodeType::Map);
  for (const auto& d : cfg.defenses)
    if (d.name == method) options = YAML::Clone(d.options);
  for (const auto& kv : parse_sets(sets)) options[kv.first.as<std::string>()] = kv.second;
  DefenseRequest rq{method,
                    options,
                    fmt::format("defense '{}'", method),
                    derive_seed(s.first.seed, "defend/" + method),
                    parse_device(cfg.device),
                    cfg.eval_batch_size,
                    cfg.monitor_limit,
                    /*controls=*/false};
  auto run = run_defense(cell, s.model, rq);
  print_eval("before", run.before);
  print_eval("after", run.after);
  const RunRecord& record = run.record;
  json summary{{"method", method},
               {"before", evaluation_json(run.before)},
               {"after", evaluation_json(run.after)},
               {"der", record.der ? json(*record.der) : json(nullptr)},
               {"details", run.result.details},
               {"resolved_options", record.resolved_options}};
  // The bench's verdict, without a floor (defend trains no clean reference model).
  auto verdict = purification_verdict(run.after, -1, &run.before);
  summary["verdict"] = {{"verdict", verdict.verdict},
                        {"why", verdict.why},
                        {"repair", verdict.repair.empty() ? json(nullptr) : json(verdict.repair)},
                        {"repair_why", verdict.repair_why}};
  verdict.why += "; no ASR floor measured";
  std::cout << "verdict: " << verdict_sentence(verdict) << "\n";
  print_detection(record, summary);
  const auto warnings = failure_signals(run.result.details);
  for (const auto& w : warnings) std::cout << "WARNING: " << w << "; purification may have failed\n";
  summary["warnings"] = warnings;
  for (const auto& st : run.result.stages)
    std::cout << fmt::format("stage {:<10} {:7.1f} s  peak {:6.0f} MB\n", st.name, st.seconds, st.peak_rss_mb);
  save_model_files(*run.result.model, cell, out);
  write_file_atomic(out + ".json", summary.dump(1));
  write_file_atomic(out + ".html", render_html_report(report_doc(cfg, s, run, warnings)));
  std::cout << fmt::format("wrote {0}, {0}.json and {0}.html\n", out);
  // --strict: a verdict of failure, or a signal of one, is a failed run.
  return strict && (verdict.verdict == "fail" || !warnings.empty()) ? kExitPurificationFailed : 0;
}

}  // namespace

Subcommand add_defend(CLI::App& app) {
  auto a = std::make_shared<DefendArgs>();
  auto* defend = app.add_subcommand("defend", "purify a model with one defense");
  add_common(defend, a->common, false);
  defend->add_option("-m,--model", a->model_path, "suspect model file (antidote or TorchScript)")->required();
  defend->add_option("--method", a->method, "defense (bedkd, ntml, ft, fp, nad)")->required();
  defend->add_option("-o,--out", a->out, "purified model file to write")->required();
  defend->add_option("--set", a->sets, "defense option key=value (repeatable)");
  defend->add_flag("--strict", a->strict,
                   "exit 4 when the verdict is 'failed' or a signal says purification may have failed");
  return {defend, [a] { return cmd_defend(a->common, a->model_path, a->method, a->out, a->sets, a->strict); }};
}

}  // namespace antidote::cli
