// antidote: one binary, subcommands. The methods live in the library; this file only
// binds them to the command line.
#include <CLI/CLI.hpp>

#include <csignal>
#include <filesystem>
#include <iostream>

#include "antidote/attacks/attack.hpp"
#include "antidote/core/common.hpp"
#include "antidote/defenses/bedkd/recipe.hpp"
#include "antidote/defenses/defense.hpp"
#include "antidote/metrics/metrics.hpp"
#include "antidote/models/model.hpp"
#include "antidote/pipeline/config.hpp"
#include "antidote/pipeline/experiment.hpp"
#include "antidote/report/results.hpp"

using namespace antidote;
using nlohmann::json;

namespace {

// The embedded default: Fashion-MNIST, BadNets 10 %, small CNN, then the
// defenses against the suspect model.
const char* kDemoConfig = R"(# antidote demo: the embedded default
seed: 0
dataset: {name: fmnist, train_limit: 20000, test_limit: 5000}
model: {arch: cnn}
train: {epochs: 6}
attacks:
  - {name: badnets, poison_rate: 0.1, target: 0}
# NT-ML's consensus phase at a quarter of its default length keeps the demo near 5 minutes
# on 2 cores (the demo cell is a third of the full training set).
defenses: [none, bedkd, {name: ntml, consensus_iterations: 500}, ft, fp, nad]
)";

struct Common {
  std::string config;
  int threads = -1;
  std::string device;
  bool quiet = false;
  bool demo = false;  // `antidote demo`: the embedded config is what was asked for
};

void add_common(CLI::App* app, Common& c, bool config_required) {
  auto* opt = app->add_option("-c,--config", c.config, "experiment config (YAML)");
  if (config_required) opt->required();
  app->add_option("--threads", c.threads, "intra-op threads (default: the config's, else all cores)");
  app->add_option("--device", c.device, "cpu, cuda or cuda:N (default: the config's)");
  app->add_flag("-q,--quiet", c.quiet, "no progress lines");
}

ExperimentConfig load_common(const Common& c) {
  set_quiet(c.quiet);
  // Said even with --quiet: numbers from the demo's data are easy to mistake for the user's.
  if (c.config.empty() && !c.demo)
    std::cerr << "antidote: note: no --config given; using the embedded demo config (antidote demo --print-config)\n";
  ExperimentConfig cfg = c.config.empty() ? parse_config(load_yaml(kDemoConfig, "demo"), "demo") : load_config(c.config);
  if (c.threads >= 0) cfg.threads = c.threads;
  if (!c.device.empty()) cfg.device = c.device;
  return cfg;
}

// The first dataset × attack of a config: what poison/train/eval/defend act on.
struct FirstCell {
  DatasetConfig dataset;
  AttackConfig attack;
  RawData data;
  uint64_t seed;
};

FirstCell first_cell(const ExperimentConfig& cfg) {
  FirstCell f;
  f.dataset = cfg.datasets.front();
  f.seed = cfg.seeds.front();
  f.data = load_dataset(f.dataset, f.seed);
  f.attack = attacks_or_default(cfg, f.data.modality).front();
  return f;
}

// Text models carry their vocabulary beside them (model.pt.vocab).
std::unique_ptr<Encoder> encoder_for_model(const std::string& model_path, const ClassifierPtr& model) {
  if (model->spec.input.modality != Modality::Text) return nullptr;
  auto vocab_path = model_path + ".vocab";
  if (!file_exists(vocab_path)) fail("text model '{}' needs its vocabulary '{}'", model_path, vocab_path);
  auto e = std::make_unique<Encoder>();
  e->modality = Modality::Text;
  e->vocab = std::make_shared<Vocab>(Vocab::from_text(read_file(vocab_path), vocab_path));
  e->max_len = model->spec.input.max_len;
  return e;
}

void save_model_files(const Classifier& model, const Cell& cell, const std::string& path) {
  auto dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) make_dirs(dir.string());
  model.save_file(path);
  if (cell.encoder.vocab) write_file_atomic(path + ".vocab", cell.encoder.vocab->to_text());
  if (!model.imported()) save_state_dict(model, path + ".state_dict.pt");
}


void print_eval(const std::string& label, const Evaluation& e) {
  if (!e.asr_known()) {
    std::cout << fmt::format("{:<10} CACC {:5.1f}%  ASR unknown (no triggered test set)\n", label, 100 * e.cacc);
    return;
  }
  std::cout << fmt::format("{:<10} CACC {:5.1f}%  ASR {:5.1f}%  RA {:5.1f}%  PCC {:5.1f}%\n", label, 100 * e.cacc,
                           100 * e.asr, 100 * e.ra, 100 * e.pcc);
}

// "key=value" pairs (value parsed as YAML) into a mapping.
YAML::Node parse_sets(const std::vector<std::string>& sets) {
  YAML::Node n(YAML::NodeType::Map);
  for (const auto& s : sets) {
    auto eq = s.find('=');
    if (eq == std::string::npos || eq == 0) fail("--set '{}': expected key=value", s);
    const auto key = s.substr(0, eq);
    if (n[key]) fail("--set '{}': '{}' is set twice", excerpt(s), key);
    n[key] = load_yaml(s.substr(eq + 1), fmt::format("--set '{}'", excerpt(s)));
  }
  return n;
}

int cmd_bench(const Common& c, const std::string& out, bool fresh) {
  auto cfg = load_common(c);
  BenchOptions o;
  o.out_dir = out;
  o.fresh = fresh;
  auto doc = run_bench(cfg, o);
  std::cout << results_markdown(doc);
  std::cout << fmt::format("\nwrote {0}/results.json, {0}/results.csv, {0}/results.md, {0}/report.html\n", out);
  return 0;
}

int cmd_poison(const Common& c, const std::string& out) {
  auto cfg = load_common(c);
  auto f = first_cell(cfg);
  auto cell = prepare_cell(f.data, f.dataset, f.attack, f.seed);
  make_dirs(out);
  std::string rows;
  auto p = cell.train.poisoned.nonzero().flatten();
  for (int64_t i = 0; i < p.numel(); ++i) rows += std::to_string(p[i].item<int64_t>()) + "\n";
  write_file_atomic(out + "/poisoned_rows.txt", rows);
  auto write_tsv = [&](const RawSplit& s, const std::string& path) {
    std::string t = "sentence\tlabel\n";
    for (int64_t i = 0; i < s.size(); ++i) t += s.texts[i] + "\t" + std::to_string(s.labels[i].item<int64_t>()) + "\n";
    write_file_atomic(path, t);
  };
  auto write_idx = [&](const torch::Tensor& t, const std::string& path) {
    auto u8 = t.dim() == 1 ? t.to(torch::kUInt8) : (t.squeeze(1).clamp(0, 1) * 255).round().to(torch::kUInt8);
    u8 = u8.contiguous();
    std::string bytes = {0, 0, 0x08, static_cast<char>(u8.dim())};
    for (auto s : u8.sizes())
      for (int sh = 24; sh >= 0; sh -= 8) bytes += static_cast<char>((s >> sh) & 0xff);
    bytes.append(reinterpret_cast<const char*>(u8.data_ptr<uint8_t>()), static_cast<size_t>(u8.numel()));
    write_file_atomic(path, bytes);
  };
  if (cell.modality == Modality::Text) {
    write_tsv(cell.raw_train, out + "/train.tsv");
    write_tsv(cell.raw_test_clean, out + "/test.tsv");
    write_tsv(cell.raw_test_triggered, out + "/test_triggered.tsv");
  } else {
    if (cell.raw_train.images.size(1) != 1) fail("poison: IDX output supports single-channel images only");
    write_idx(cell.raw_train.images, out + "/train-images-idx3-ubyte");
    write_idx(cell.raw_train.labels, out + "/train-labels-idx1-ubyte");
    write_idx(cell.raw_test_clean.images, out + "/t10k-images-idx3-ubyte");
    write_idx(cell.raw_test_clean.labels, out + "/t10k-labels-idx1-ubyte");
    write_idx(cell.raw_test_triggered.images, out + "/triggered-images-idx3-ubyte");
    write_idx(cell.raw_test_triggered.labels, out + "/triggered-labels-idx1-ubyte");
  }
  std::cout << fmt::format("{} × {}: {} training rows, {} poisoned, {} triggered test rows -> {}\n", f.dataset.name,
                           f.attack.name, cell.train.size(), p.numel(), cell.test_triggered.size(), out);
  return 0;
}

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

// A suspect model file and the config's first cell, encoded with the model's own
// vocabulary (text) and checked against the data.
struct Suspect {
  FirstCell first;
  Cell cell;
  ClassifierPtr model;
};

Suspect load_suspect(const ExperimentConfig& cfg, const std::string& model_path) {
  Suspect s;
  s.first = first_cell(cfg);
  s.model = load_model(model_path);
  auto enc = encoder_for_model(model_path, s.model);
  s.cell = prepare_cell(s.first.data, s.first.dataset, s.first.attack, s.first.seed, enc.get());
  if (s.model->imported()) s.model = load_model(model_path, &s.cell.input);  // takes the data's input spec
  check_model_fits(*s.model, s.cell.input, fmt::format("model '{}'", model_path));
  s.model->to(parse_device(cfg.device));
  return s;
}

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

// The detection line (where the ground truth is known) and the flagged-rows check.
void print_detection(const DefenseRun& run, json& summary) {
  if (!run.row["detection"].is_null()) {
    const auto& d = run.row["detection"];
    summary["detection"] = d;
    std::cout << fmt::format("detection: precision {:.1f}% recall {:.1f}% ({} flagged)\n",
                             100 * d["precision"].get<double>(), 100 * d["recall"].get<double>(),
                             d["flagged"].get<int64_t>());
  }
  const auto& details = run.result.details;
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

constexpr int kExitPurificationFailed = 4;

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
  json summary{{"method", method},
               {"before", evaluation_json(run.before)},
               {"after", evaluation_json(run.after)},
               {"der", run.row["der"]},
               {"details", run.result.details},
               {"resolved_options", run.row.value("resolved_options", json::object())}};
  // The bench's verdict, without a floor (defend trains no clean reference model).
  const auto verdict = purification_verdict(run.after, -1, &run.before);
  summary["verdict"] = {{"verdict", verdict.verdict}, {"why", verdict.why}};
  std::cout << fmt::format("verdict: {} ({}; no ASR floor measured)\n", verdict_word(verdict.verdict), verdict.why);
  print_detection(run, summary);
  const auto warnings = failure_signals(run.result.details);
  for (const auto& w : warnings) std::cout << "WARNING: " << w << "; purification may have failed\n";
  summary["warnings"] = warnings;
  for (const auto& st : run.result.stages)
    std::cout << fmt::format("stage {:<10} {:7.1f} s  peak {:6.0f} MB\n", st.name, st.seconds, st.peak_rss_mb);
  save_model_files(*run.result.model, cell, out);
  write_file_atomic(out + ".json", summary.dump(1));
  std::cout << fmt::format("wrote {} and {}.json\n", out, out);
  // --strict: a verdict of failure, or a signal of one, is a failed run.
  return strict && (verdict.verdict == "fail" || !warnings.empty()) ? kExitPurificationFailed : 0;
}

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

// One registry's entries: a line each, or with `options` each entry's keys.
template <class R>
void list_registry(const std::string& title, bool options, const std::string& only) {
  if (only.empty()) std::cout << title << ":\n";
  for (const auto& [name, entry] : R::instance().entries()) {
    if (!only.empty() && name != only) continue;
    if (!options) {
      std::cout << fmt::format("  {:<16} {}\n", name, entry.summary);
    } else if (entry.options) {
      auto docs = entry.options();
      std::cout << (docs.empty() ? name + ": no options\n" : format_option_docs(name, docs)) << "\n";
    } else {
      std::cout << name << ": its keys are not declared in a table yet (docs/ and the config examples name them)\n\n";
    }
  }
}

int cmd_list(bool options, const std::string& only) {
  const bool known = only.empty() || DatasetRegistry::instance().has(only) || ModelRegistry::instance().has(only) ||
                     AttackRegistry::instance().has(only) || IdentifierRegistry::instance().has(only) ||
                     DefenseRegistry::instance().has(only);
  if (!known) fail("list: no dataset, model, attack, identification method or defense is called '{}'", only);
  list_registry<DatasetRegistry>("datasets", options, only);
  list_registry<ModelRegistry>("models", options, only);
  list_registry<AttackRegistry>("attacks", options, only);
  list_registry<IdentifierRegistry>("identification methods (bedkd's identify, antidote identify --method)", options,
                                    only);
  list_registry<DefenseRegistry>("defenses", options, only);
  return 0;
}

// Runs a subcommand; an error becomes its message on stderr and exit code 2 (3 for an
// error inside LibTorch).
int exit_code_of(const std::function<int()>& command) {
  try {
    return command();
  } catch (const Error& e) {
    std::cerr << "antidote: error: " << e.what() << std::endl;
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << "antidote: internal error: " << std::string(e.what_without_backtrace()).substr(0, 2000) << std::endl;
    return 3;
  } catch (const std::exception& e) {
    std::cerr << "antidote: error: " << e.what() << std::endl;
    return 2;
  }
}

}  // namespace

int main(int argc, char** argv) {
  configure_allocator();
  // Past a file-size limit (ulimit -f) a write then fails with an error that names the
  // file, as on a full disk, instead of the signal killing the process.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"antidote: remove backdoors from trained classifiers (BeDKD, NT-ML, baselines)"};
  app.set_version_flag("--version", version());
  app.require_subcommand(1);

  Common common;
  std::string out, model_path, method, json_out, predictions_out;
  bool fresh = false, clean = false, strict = false;
  std::vector<std::string> sets;

  auto* bench = app.add_subcommand("bench", "run a grid of datasets × attacks × defenses × seeds");
  add_common(bench, common, true);
  bench->add_option("-o,--out", out, "output directory")->required();
  bench->add_flag("--fresh", fresh, "redo finished cells instead of resuming");

  auto* demo = app.add_subcommand("demo", "the embedded default: Fashion-MNIST, BadNets 10 %, small CNN, all defenses");
  demo->add_option("-o,--out", out, "output directory")->default_val("antidote-demo");
  demo->add_option("--threads", common.threads, "intra-op threads (default: all cores)");
  demo->add_flag("--fresh", fresh, "redo finished cells instead of resuming");
  demo->add_flag("-q,--quiet", common.quiet, "no progress lines");
  demo->add_flag("--print-config", clean, "print the embedded config and exit");

  auto* poison = app.add_subcommand("poison", "write the poisoned training set and triggered test set");
  add_common(poison, common, false);
  poison->add_option("-o,--out", out, "output directory")->required();

  auto* train = app.add_subcommand("train", "train a model on the (poisoned) data of a config");
  add_common(train, common, false);
  train->add_option("-o,--out", out, "model file to write")->required();
  train->add_flag("--clean", clean, "train on the clean data (no attack)");

  auto* eval = app.add_subcommand("eval", "CACC, ASR, RA, PCC of a model on a config's data");
  add_common(eval, common, false);
  eval->add_option("-m,--model", model_path, "model file (antidote or TorchScript)")->required();
  eval->add_option("--json", json_out, "also write the numbers as JSON");
  eval->add_option("--predictions", predictions_out,
                   "also write the predicted class of every clean and triggered test row as JSON");

  auto* defend = app.add_subcommand("defend", "purify a model with one defense");
  add_common(defend, common, false);
  defend->add_option("-m,--model", model_path, "suspect model file (antidote or TorchScript)")->required();
  defend->add_option("--method", method, "defense (bedkd, ntml, ft, fp, nad)")->required();
  defend->add_option("-o,--out", out, "purified model file to write")->required();
  defend->add_option("--set", sets, "defense option key=value (repeatable)");
  defend->add_flag("--strict", strict,
                   "exit 4 when the verdict is 'failed' or a signal says purification may have failed");

  auto* identify = app.add_subcommand("identify", "which training rows are poisoned: flagged rows as CSV and JSON");
  add_common(identify, common, false);
  identify->add_option("-m,--model", model_path, "suspect model file (antidote or TorchScript)")->required();
  identify->add_option("--method", method,
                       "identification method (default: BeDKD's for the data: early_loss on text, dmm on images)");
  identify->add_option("-o,--out", out, "output directory")->required();
  identify->add_option("--set", sets, "method option key=value (repeatable)");

  auto* list = app.add_subcommand("list", "registered models, attacks, identification methods and defenses");
  bool list_options = false;
  std::string list_only;
  list->add_flag("--options", list_options, "each component's option keys: default, meaning, rule");
  list->add_option("name", list_only, "only this component");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return exit_code_of([&] {
    if (bench->parsed()) return cmd_bench(common, out, fresh);
    if (demo->parsed()) {
      common.demo = true;
      if (clean) {
        std::cout << kDemoConfig;
        return 0;
      }
      return cmd_bench(common, out, fresh);
    }
    if (poison->parsed()) return cmd_poison(common, out);
    if (train->parsed()) return cmd_train(common, out, clean);
    if (eval->parsed()) return cmd_eval(common, model_path, json_out, predictions_out);
    if (defend->parsed()) return cmd_defend(common, model_path, method, out, sets, strict);
    if (identify->parsed()) return cmd_identify(common, model_path, method, out, sets);
    if (list->parsed()) return cmd_list(list_options, list_only);
    return 0;
  });
}
