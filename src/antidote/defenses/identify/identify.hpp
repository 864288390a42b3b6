// The identification stage: which training rows carry the backdoor. A method takes
// what the defender holds (the suspect, the suspicious training set, the clean pool;
// never the ground truth) and returns per-row scores, the label it infers as the
// target, a ranked flagged set and a label-free confidence. Each method is one file
// that registers itself; BeDKD takes its punish set from one (`identify: <method>`),
// and `antidote identify` runs one on its own.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "antidote/core/options.hpp"
#include "antidote/core/registry.hpp"
#include "antidote/defenses/defense.hpp"

namespace antidote {

struct Identification {
  std::string method;
  torch::Tensor scores;    // float64 [N] on the CPU; lower = more suspect
  torch::Tensor flagged;   // int64 rows of the training set, most suspect first
  int64_t target = -1;     // the label the method infers as the backdoor's target (-1: none)
  // The share of the most suspect rows (as many as are flagged, at least one) that
  // carry the inferred target label. A backdoor's rows share one label, so a low share
  // says the lowest scores are not one backdoor's rows.
  double confidence = 0;
  std::string warning;         // non-empty when the method is unsure
  int64_t clean_per_class = 0; // clean rows per class drawn from the pool (from its start)
  std::vector<StageCost> stages;
  // Sections of what the method measured: "identify" (every method), "dmm" (the DMM's
  // mapping); a defense copies them into its own details.
  nlohmann::json details = nlohmann::json::object();
};

class Identifier {
 public:
  virtual ~Identifier() = default;
  // `rng` is the caller's stream (a defense passes its own, so that the draws after
  // identification stay where they were).
  virtual Identification identify(const ClassifierPtr& suspect, const DefenseContext& ctx, Rng& rng) = 0;
};

using IdentifierPtr = std::shared_ptr<Identifier>;
using IdentifierRegistry = Registry<Identifier, Params&, const DefenseSetup&>;
IdentifierPtr make_identifier(const std::string& name, Params& params, const DefenseSetup& setup);
// Whether method `name` declares option `key` (false for an unknown method), so that a
// defense sets a method's key only where the method takes it.
bool identifier_takes(const std::string& name, const std::string& key);
// What a defense that ran an identification stage reports of it: the stage costs,
// the flagged rows and scores (for the detection metrics), details["identify"] with
// method, target, confidence and warning, and the same in the log under `defense`.
void record_identification(const Identification& id, const std::string& defense, DefenseResult& result);

// Each row's rank among all rows, scaled to [0, 1] (0 = lowest score); tied scores
// share the mean of their ranks, so the result does not depend on the row order.
// A single row gets 0.
torch::Tensor fractional_ranks(const torch::Tensor& scores);

// The filters on per-row scores: threshold, cap to the lowest scores, agreement of the
// suspect's prediction with the training label, a vote on the target label, final cap.
// Ordering is by (score, row index), so the result does not depend on the order of the
// rows beyond ties.
struct SelectOptions {
  double threshold = 0.1;    // flag s < threshold (<= 0 or inf disables)
  int64_t max_flagged = 128; // keep the lowest `max_flagged` flagged rows (0 = no cap)
  bool consistency = true;   // keep rows whose suspect prediction equals the label
  // All-to-one vote: keep only rows whose label is the most common label among the
  // rows that passed the filters above (the presumed target).
  bool vote = false;
  // With the vote: when the majority label holds less than this share of the rows,
  // no label stands out as a target and nothing is kept (0 = always keep the majority).
  double vote_min_share = 0.0;
  // How the vote picks the label. count: the most common label among the survivors.
  // lowest_mean: the label whose `max_kept` lowest-scoring survivors (all of them
  // without a cap) have the lowest mean score; a backdoor's rows sit at the very
  // bottom of their class, while a class that is merely easy fills the ranks just
  // above them and can win a count. vote_min_share applies to `count` only.
  std::string vote_by = "count";
  int64_t max_kept = 32;     // at most this many survive (0 = no cap)
};
struct Selection {
  torch::Tensor rows;  // int64 [M], sorted by (score, index)
  int64_t below_threshold = 0, after_cap = 0, consistent = 0, voted = 0, kept = 0;
  int64_t voted_label = -1;  // the label the vote chose (-1 without a vote)
};
// `ids` gives the stable identity of each row used to break ties (default: 0..N-1);
// tests pass the original row ids of a permuted set to check order invariance.
Selection select_suspects(const torch::Tensor& scores, const torch::Tensor& suspect_pred,
                          const torch::Tensor& labels, const SelectOptions& opt,
                          const torch::Tensor& ids = {});

// The share of the `n` lowest-scoring rows (ties by row index; only rows whose suspect
// prediction equals their label when `consistent`) that carry `label`. 0 for n < 1 or
// no such rows.
double label_share(const torch::Tensor& scores, const torch::Tensor& suspect_pred, const torch::Tensor& labels,
                   int64_t label, int64_t n, bool consistent);

// What every rank-based method does with its scores: the lowest-mean vote picks the
// target among the rows the suspect predicts as labelled, the lowest `flag_count` rows of
// that label are flagged, and the confidence is their label's share of the
// `flag_count` lowest rows overall; below `min_confidence` the result carries a warning.
struct FlagOptions {
  int64_t flag_count = 64;
  double min_confidence = 0.8;
  int64_t score_batch = 512;  // rows per inference batch when a model scores the rows
};
void flag_by_target_vote(Identification& id, const torch::Tensor& suspect_pred, const torch::Tensor& labels,
                         const FlagOptions& opt);
// The suspect's predicted class of every training row (the consistency filter).
torch::Tensor suspect_predictions(Classifier& suspect, const DefenseContext& ctx, const FlagOptions& opt);
// The warning rule alone (shared with methods that flag differently).
void set_confidence(Identification& id, double confidence, double min_confidence, int64_t n);

// The keys every method's flagging reads: flag_count, min_confidence, score_batch.
template <class C>
void flag_keys(OptionTable<C>& t, FlagOptions C::*flag) {
  t.add("flag_count", nested(flag, &FlagOptions::flag_count), "rows flagged (the most suspect)", at_least<int64_t>(1));
  t.add("min_confidence", nested(flag, &FlagOptions::min_confidence),
        "below this share of the target label among the flagged rows, a warning", within(0, 1));
  t.add("score_batch", nested(flag, &FlagOptions::score_batch), "rows per forward pass when scoring",
        positive<int64_t>());
}

// token_stats's score: minus each row's largest token-label z-score (token ids [N, L]).
torch::Tensor token_label_scores(const torch::Tensor& x, const torch::Tensor& labels, int64_t num_classes);
// Token-id rows with `token` inserted after the first position ([CLS]), the last
// position dropped: how token_stats checks a candidate trigger on the suspect.
torch::Tensor insert_token(const torch::Tensor& rows, int64_t token);

}  // namespace antidote
