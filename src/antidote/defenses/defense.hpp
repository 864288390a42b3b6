// A defense takes the suspect model and what the defender holds and
// returns a purified model plus what it measured along the way.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <string>

#include "antidote/core/common.hpp"
#include "antidote/core/registry.hpp"
#include "antidote/data/data.hpp"
#include "antidote/metrics/metrics.hpp"
#include "antidote/models/model.hpp"
#include "antidote/report/record.hpp"

namespace antidote {

// The clean rows a defense reads unless told otherwise (`clean_samples`): the budget
// at which NT-ML and the fine-tuning baselines are compared.
inline constexpr int64_t kDefaultCleanSamples = 500;

// What the defender holds. `train` carries the labels as trained and NO ground
// truth (its `poisoned` is undefined). The small clean labelled set comes from
// `clean_data` (the clean training rows, true labels): indices drawn from `clean`
// index `clean_data` — use clean_set(idx), never train.select(idx) for them.
struct DefenseContext {
  Dataset train;
  Dataset clean_data;
  std::shared_ptr<const CleanPool> clean;
  Dataset clean_set(const torch::Tensor& rows) const { return clean_data.select(rows); }
  int64_t num_classes = 0;
  Modality modality = Modality::Image;
  torch::Device device = torch::kCPU;
  uint64_t seed = 0;
  // Evaluation on the test sets, for logging only: a defense must never use either to
  // choose a model or a hyperparameter. `monitor` is the cheap per-epoch one (it may
  // run on a seeded subset of the test sets); `evaluate`, when set, uses the whole
  // test sets, for the few stage-level numbers a defense reports.
  std::function<Evaluation(Classifier&)> monitor;
  std::function<Evaluation(Classifier&)> evaluate;
  // Whether to run the comparisons that are reported but never returned (NT-ML's "ML
  // without NT"): on in a bench, where they judge the method; off in `defend`, where
  // they would double the cost. A defense's own option overrides it.
  bool controls = true;
};

struct DefenseResult {
  ClassifierPtr model;
  std::vector<StageCost> stages;
  int64_t clean_samples = 0;  // clean rows the defense used
  torch::Tensor flagged;      // rows of `train` identified as poisoned (detection defenses)
  torch::Tensor scores;       // per-row identification scores (lower = more suspect), if any
  nlohmann::json details = nlohmann::json::object();  // trajectories, stage tables
};

// What a defense may tailor its defaults to (e.g. learning rates per architecture).
struct DefenseSetup {
  Modality modality = Modality::Image;
  std::string arch;
  int64_t num_classes = 0;
};

// A component's keys with each modality's defaults (`defaults(modality)`, followers
// resolved), for `antidote list --options`.
template <class C>
OptionDocs modality_docs(const OptionTable<C>& t, const std::function<C(Modality)>& defaults) {
  return t.docs({{"image", t.resolved(defaults(Modality::Image))}, {"text", t.resolved(defaults(Modality::Text))}});
}

class Defense {
 public:
  virtual ~Defense() = default;
  virtual DefenseResult run(const ClassifierPtr& suspect, DefenseContext& ctx) = 0;
  // Every option's value as this run uses it, defaults resolved (results.json).
  virtual nlohmann::json resolved_options() const { return nlohmann::json::object(); }
  // The report section that draws this defense's details (its layout, heading and
  // legend); none by default, and its curves join the report's shared section.
  virtual ReportSection report_section() const { return {}; }
};

using DefensePtr = std::shared_ptr<Defense>;
using DefenseRegistry = Registry<Defense, Params&, const DefenseSetup&>;

DefensePtr make_defense(const std::string& name, Params& params, const DefenseSetup& setup);

// Shared pieces of defenses.
// Copy of `model` in train mode on the context's device.
ClassifierPtr trainable_copy(const Classifier& model);
// Freeze a model (eval mode, no gradients) for use as a teacher.
void freeze(Classifier& model);
// The model's CACC, ASR, RA and PCC on the context's per-epoch monitor, appended to
// `trajectory` as the point `at` (an epoch, or an iteration) of the report's curve; nothing
// without a monitor. Evaluation only, in eval mode: the training it interrupts draws the
// same random numbers as without it.
void record_trajectory(DefenseContext& ctx, Classifier& model, int64_t at, nlohmann::json& trajectory);

}  // namespace antidote
