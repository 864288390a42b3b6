// From config to numbers: load data, poison it, train (or load) the suspect model,
// run defenses, evaluate, and keep every finished cell on disk so a bench resumes.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

#include "antidote/attacks/attack.hpp"
#include "antidote/data/data.hpp"
#include "antidote/defenses/defense.hpp"
#include "antidote/defenses/identify/identify.hpp"
#include "antidote/models/model.hpp"
#include "antidote/pipeline/config.hpp"
#include "antidote/report/record.hpp"

namespace antidote {

// Turns raw splits into model inputs; text uses a vocabulary built from the
// training data the model is trained on, or a loaded model's own (a word vocabulary or
// WordPiece). Token ids put [PAD] at 0 (swap_token_ids) whatever the vocabulary's id.
struct Encoder {
  Modality modality = Modality::Image;
  std::shared_ptr<const Tokenizer> vocab;  // the vocabulary and how sentences split into its tokens
  int64_t max_len = 0;
  Dataset encode(const RawSplit& split) const;
};
Encoder make_encoder(const RawSplit& train, const DatasetConfig& cfg);

// The loaded dataset, with train_limit/test_limit applied (seeded subsets).
RawData load_dataset(const DatasetConfig& cfg, uint64_t seed);

// One dataset × attack × seed, ready to train on and to evaluate.
struct Cell {
  std::string dataset;
  AttackConfig attack;
  uint64_t seed = 0;
  int64_t num_classes = 0;
  Modality modality = Modality::Image;
  RawSplit raw_train, raw_train_clean, raw_test_triggered;  // raw_train_clean: the clean originals
  RawSplit raw_test_clean;
  Encoder encoder;
  Dataset train, train_clean, test_clean, test_triggered;
  Dataset own_clean;  // the user's clean set (dataset `clean:`), empty when not given
  InputSpec input;
  // Whether train.poisoned is the ground truth. False with `attacks: [none]`: nothing is
  // known of the rows, so no detection precision or score histogram is computed.
  bool poison_known = true;
  bool originals_aligned = true;  // raw_train_clean row i is the clean original of raw_train row i
};
// `fixed` encodes with a given vocabulary (a loaded text model's) instead of building one.
Cell prepare_cell(const RawData& data, const DatasetConfig& dcfg, const AttackConfig& attack, uint64_t seed,
                  const Encoder* fixed = nullptr);
// The same data with no attack (for the clean reference model).
Cell prepare_clean_cell(const RawData& data, const DatasetConfig& dcfg, uint64_t seed);
InputSpec input_spec_for(const Cell& cell);

// The config's attacks; without an `attacks:` entry, the modality's standard test case
// (BadNets or BadNet-word, 10 %, target 0), said on stderr: data the user brings as
// they are need `attacks: [none]`, and a silent poisoning would be mistaken for theirs.
std::vector<AttackConfig> attacks_or_default(const ExperimentConfig& cfg, Modality modality);

// Resolve the model config (`auto` arch, per-dataset overrides).
std::pair<std::string, YAML::Node> resolve_model(const ExperimentConfig& cfg, const DatasetConfig& dcfg,
                                                 Modality modality);
// The training options of a dataset: the config's `train:` with the dataset's own
// `train:` keys over it.
TrainConfig train_config_for(const ExperimentConfig& cfg, const DatasetConfig& dcfg);
// `on_epoch(epoch, model)` runs after every epoch (epochs counted from 0).
ClassifierPtr train_model(const Cell& cell, const std::string& arch, const YAML::Node& options,
                          const TrainOptions& train, uint64_t seed, torch::Device device, const std::string& label,
                          const std::function<void(int64_t, Classifier&)>& on_epoch = {});

// monitor_limit: rows of each test set the per-epoch monitor evaluates (a seeded
// subset; 0 = all).
DefenseContext make_defense_context(const Cell& cell, torch::Device device, uint64_t seed, int64_t eval_batch,
                                    int64_t monitor_limit = 0);
torch::Device parse_device(const std::string& name);
uint64_t derive_seed(uint64_t seed, const std::string& label);

// The histogram (20 bins, poisoned against clean), AUROC and mean scores of per-row
// identification scores against the ground truth (lower = more suspect), and with the
// rows acted on (`flagged`) their count and the highest score among them. Evaluation only.
nlohmann::json identification_json(const torch::Tensor& scores, const torch::Tensor& poisoned,
                                   const torch::Tensor& flagged = torch::Tensor());

// Up to `n` test rows of a cell, clean and triggered side by side (thumbnails or sentences),
// for the report's "what the attacks look like".
nlohmann::json examples_json(const Cell& cell, int n);

// What `antidote identify` writes to `dir`: flagged.csv (rank, row, label, score, the
// ground truth where the cell knows it, the text), scores.csv (every row) and
// identification.json (the method's target, confidence, warning, flagged rows, stage
// seconds, and precision/recall and the score histogram where the ground truth is
// known). Returns the JSON document.
nlohmann::json write_identification(const Identification& id, const Cell& cell, const std::string& dir);

// One defense on one cell, the way `bench`, `defend` and the speed benchmark run it:
// built from its options (a key the defense does not take is an error), seeded, run on
// the suspect, and the result evaluated on the cell's test sets.
struct DefenseRequest {
  std::string name;
  YAML::Node options;
  std::string context;  // how errors name the options, e.g. "defenses[2] (bedkd)"
  uint64_t seed = 0;
  torch::Device device = torch::kCPU;
  int64_t eval_batch = 512;
  int64_t monitor_limit = 0;
  bool controls = true;  // DefenseContext::controls
};
struct DefenseRun {
  DefenseResult result;
  Evaluation before, after;
  double seconds = 0;      // building, running and evaluating the defense
  double run_seconds = 0;  // Defense::run alone
  // The run's results row, its defense's part filled (the caller adds the cell's).
  RunRecord record;
};
// `before`: the suspect's evaluation when the caller has it (computed otherwise).
DefenseRun run_defense(const Cell& cell, const ClassifierPtr& suspect, const DefenseRequest& request,
                       const Evaluation* before = nullptr);
nlohmann::json evaluation_json(const Evaluation& e);  // cacc, asr, ra, pcc
nlohmann::json stage_json(const StageCost& c);
// Precision, recall, F1 and count of flagged rows against the ground truth.
nlohmann::json detection_json(const torch::Tensor& flagged, const torch::Tensor& poisoned);

struct BenchOptions {
  std::string out_dir;
  bool fresh = false;        // ignore finished cells and cached models
  bool save_models = true;   // write purified models (and state_dicts) under out/models
  // A share of the grid, for a job array over hosts sharing out_dir: the suspects
  // (dataset × seed × attack, in the grid's order) numbered from 0, this run takes those
  // whose number is `shard` modulo `shards`, with all their defenses. A shard writes its
  // cells and models but no results files; a later run without a shard assembles them.
  int shard = 0, shards = 1;
  bool merge = false;  // assemble only: a cell or model that is not finished is an error
};
// Runs the grid; returns the results document (also written to out_dir).
nlohmann::json run_bench(const ExperimentConfig& cfg, const BenchOptions& options);

}  // namespace antidote
