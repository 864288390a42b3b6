// What several `antidote` subcommands share: the embedded demo config, the common options,
// the config's first cell, loading a suspect model, writing a model, printing an evaluation.
#include "antidote/cli/cli.hpp"

#include <filesystem>
#include <iostream>

#include "antidote/core/common.hpp"
#include "antidote/data/wordpiece.hpp"

namespace antidote::cli {

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

}  // namespace

const char* demo_config() { return kDemoConfig; }

void add_common(CLI::App* app, Common& c, bool config_required) {
  auto* opt = app->add_option("-c,--config", c.config, "experiment config (YAML)");
  if (config_required) opt->required();
  app->add_option("--threads", c.threads, "intra-op threads (default: the config's, else all cores)");
  app->add_option("--device", c.device, "cpu, cuda or cuda:N (default: the config's)");
  app->add_option("--precision", c.precision, "of every training: fp32 or bf16 (default: the config's, else fp32)")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  app->add_flag("-q,--quiet", c.quiet, "no progress lines");
}

ExperimentConfig load_common(const Common& c) {
  set_quiet(c.quiet);
  // Said even with --quiet: numbers from the demo's data are easy to mistake for the user's.
  if (c.config.empty() && !c.demo)
    std::cerr << "antidote: note: no --config given; using the embedded demo config (antidote demo --print-config)\n";
  ExperimentConfig cfg =
      c.config.empty() ? parse_config(load_yaml(kDemoConfig, "demo"), "demo") : load_config(c.config);
  if (c.threads >= 0) cfg.threads = c.threads;
  if (!c.device.empty()) cfg.device = c.device;
  if (!c.precision.empty()) cfg.precision = c.precision;
  cfg.precision = set_training_precision(cfg.precision);
  return cfg;
}

FirstCell first_cell(const ExperimentConfig& cfg) {
  FirstCell f;
  f.dataset = cfg.datasets.front();
  f.seed = cfg.seeds.front();
  f.data = load_dataset(f.dataset, f.seed);
  f.attack = attacks_or_default(cfg, f.data.modality).front();
  return f;
}

std::unique_ptr<Encoder> encoder_for_model(const std::string& model_path, const ClassifierPtr& model) {
  if (model->spec.input.modality != Modality::Text) return nullptr;
  auto vocab_path = model_path + ".vocab";
  if (!file_exists(vocab_path)) fail("text model '{}' needs its vocabulary '{}'", model_path, vocab_path);
  auto e = std::make_unique<Encoder>();
  e->modality = Modality::Text;
  e->vocab = read_tokenizer(vocab_path);  // antidote's word vocabulary, or a BERT-style model's WordPiece
  e->max_len = model->spec.input.max_len;
  return e;
}

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

}  // namespace antidote::cli
