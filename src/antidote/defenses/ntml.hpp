// NT-ML (arXiv 2508.05404): Non-target label Training, then Mutual Learning.
// The paper's body is not public; this is our reading of its abstract.
// The defense itself registers as "ntml" from ntml.cpp; this header exposes the
// loss pieces so that the tests can check them against hand-worked values.
#pragma once

#include <torch/torch.h>

#include <optional>

#include "antidote/data/data.hpp"
#include "antidote/models/model.hpp"
#include "antidote/train/train.hpp"

namespace antidote::ntml {

// The NT targets: for every row of `x`, the frozen model's softmax(z/τ) with its own
// top-1 class masked out (non_target_distribution), computed in batches on `device`
// with no gradient; returned on the CPU, [N, K].
torch::Tensor non_target_labels(Classifier& frozen, const torch::Tensor& x, double temperature,
                                torch::Device device, int64_t batch_size = 512);

// The two deep-mutual-learning losses of one batch, each with its peer's
// logits detached, so that L_S only reaches the student and L_T only the teacher:
//   L_S = CE(z_S, y) + α_S·τ²·KL(softmax(z_T/τ) ‖ softmax(z_S/τ))
//   L_T = CE(z_T, y) + α_T·τ²·KL(softmax(z_S/τ) ‖ softmax(z_T/τ))
struct MutualLosses {
  torch::Tensor student, teacher;
};
MutualLosses mutual_losses(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                           const torch::Tensor& labels, double temperature, double alpha_student,
                           double alpha_teacher);

// One mutual-learning step: forward both networks on (x, y), backward both losses,
// step each network's own optimizer (either may be null: that network is not updated).
// Returns {L_S, L_T} as numbers; throws on a non-finite loss.
// A batch of the rows S keeps its NT answer on during ML (see MlAnchor): S's loss
// gains weight · soft-CE(S(x), q).
struct AnchorBatch {
  torch::Tensor x, q;
  double weight = 0;
  // S's batch-norm layers on this batch: as on any batch (none), or keeping their running
  // statistics and normalising with the batch's or with them (see MlAnchor::batch_norm).
  std::optional<KeepRunningStatistics::Normalise> keep_running;
};
// weight · soft-CE(S(x), q) over an anchor batch.
torch::Tensor anchor_loss(Classifier& student, const AnchorBatch& anchor);
std::pair<double, double> mutual_step(Classifier& student, Classifier& teacher, Trainer* student_trainer,
                                      Trainer* teacher_trainer, const torch::Tensor& x, const torch::Tensor& y,
                                      double temperature, double alpha_student, double alpha_teacher,
                                      const AnchorBatch* anchor = nullptr);

// The classifier head of a model: the last 2-D parameter of shape [K, H] (H = the
// feature width) and its [K] bias, if any. Empty when no such parameter exists
// (then the linear-probe warm start is skipped).
std::vector<torch::Tensor> head_parameters(Classifier& model, int64_t num_classes);

// The two stages, callable on their own (the defense runs them in order; the
// research driver in docs/ntml.md reuses one NT student for several ML settings).
struct StageOptimizer {
  OptimizerConfig cfg;
  std::string schedule = "constant";  // constant | cosine
};

struct NtOptions {
  int64_t epochs = 4, batch_size = 128;
  double temperature = 1.0;
  bool augment = false;  // images: random 2-pixel shifts
  StageOptimizer opt{{"sgd", 0.01, 0.9, 5e-4}, "cosine"};
};
// Trains `student` (in place) with the soft cross-entropy on the non-target labels
// of `frozen` over `train` (labels as trained are not read). Returns the last epoch's mean loss.
double non_target_training(Classifier& student, Classifier& frozen, const Dataset& train, const NtOptions& o,
                           Rng& rng, torch::Device device, const std::string& label = "ntml NT");

struct MlOptions {
  int64_t iterations = 1000, batch_size = 64;
  int64_t warmup = 100;  // iterations with α_T = 0 (the teacher learns only from the labels)
  double temperature = 1.0, alpha_student = 1.0, alpha_teacher = 0.5;
  bool augment = false;  // images: random 2-pixel shifts of the clean batch
  StageOptimizer student_opt{{"sgd", 0.01, 0.9, 5e-4}, "constant"};
  double teacher_lr = 0.001;  // the teacher's optimizer is student_opt with this learning rate (defense default: ml_lr / 10)
  // Optional linear-probe warm start of the student's head on the clean set (0 = off).
  int64_t probe_epochs = 0;
  double probe_lr = 0.01;
};
// The anchor of ML (off when empty or weight 0): the training rows an identification
// stage flagged, with their non-target labels. Mutual learning on a small clean set
// otherwise undoes NT wholesale when the classes are few: with two classes NT teaches
// S the inverse of f_0 on every row, and the cheapest way back to the clean labels is
// to flip that inverse everywhere, the trigger included. Keeping S's NT answer on the
// flagged rows (cross-entropy to q, rows cycled `batch_size` at a time) makes that
// shortcut cost what it gains.
struct MlAnchor {
  torch::Tensor x;  // flagged training rows (CPU)
  torch::Tensor q;  // their targets [M, K] (CPU): f_0's non-target labels, or uniform off the target
  double weight = 0;
  int64_t batch_size = 32;
  uint64_t seed = 0;  // the stream that orders its rows (apart from the clean batches')
  // S's batch-norm layers on an anchor batch (all identified, likely triggered rows):
  // update (as on any training batch), batch (the batch's statistics, the running ones
  // kept for the clean batches) or running (normalised with the running statistics).
  std::string batch_norm = "update";
  bool active() const { return weight > 0 && x.defined() && x.size(0) > 0; }
};
// Deep mutual learning of `student` and `teacher` (both updated in place) on `clean`.
// `checkpoint(iterations done)` runs at every tenth of the iterations (the report's curve).
void mutual_learning(Classifier& student, Classifier& teacher, const Dataset& clean, const MlOptions& o, Rng& rng,
                     torch::Device device, const std::string& label = "ntml ML", const MlAnchor& anchor = {},
                     const std::function<void(int64_t)>& checkpoint = {});

// Consensus distillation (an antidote extension after ML, off unless iterations > 0):
// S keeps its ML losses on the clean set and also distils T, weight·τ²·KL(T ‖ S), on
// the suspicious training rows where S and T agree on the top-1 class, leaving out
// every row T sends to the suspected target: the class on which T and S disagree
// most (after ML, S has lost the backdoor and T has not, so the triggered rows are
// where they part). The KL runs over the other classes only, so the consensus rows
// teach S nothing about the suspected class. The clean set is a few hundred rows; the
// consensus set is most of the training set, which is where S's missing clean
// accuracy is. require_agreement: false also distils the rows where S disagrees
// with T (S's remaining mistakes, T not saying the suspected class): 0.3-0.5 more
// CACC points, but the ASR rose by up to 2.5 points on SIG. Not in the paper
// (docs/ntml.md has the measurements).
// The suspected class must stand out: its count of T-not-S rows at least min_ratio
// times the runner-up's. Otherwise (a weak S whose ordinary confusions rival the
// triggered rows) no class is trusted to be the target and the phase is skipped,
// since distilling T there would hand the backdoor back to S.
struct ConsensusOptions {
  int64_t iterations = 0, batch_size = 256;
  double weight = 1.0;
  bool exclude_suspected = true;
  double min_ratio = 2.0;
  double temperature = 1.0;       // τ of the consensus KL (weighted by τ²)
  bool augment = false;           // images: random 2-pixel shifts of the clean batch
  bool require_agreement = true;  // false: also the rows where S disagrees with T
  double ema = 0.995;             // > 0: the output is an exponential moving average of S's weights
};
struct ConsensusSet {
  torch::Tensor rows;            // int64 row indices, ascending; empty when skipped
  int64_t suspected_class = -1;  // -1 when nothing is excluded
  int64_t agreed = 0;            // rows where the top-1 classes agree (before the exclusion)
  int64_t parted_top = 0, parted_second = 0;  // T-not-S rows of the two leading classes
  bool skipped = false;          // no class stood out (see min_ratio)
};
// Picks the rows from the two models' probabilities [N, K] over the same inputs.
ConsensusSet consensus_rows(const torch::Tensor& student_probs, const torch::Tensor& teacher_probs,
                            bool exclude_suspected, double min_ratio, bool require_agreement);
// Runs the phase: S is trained in place, T is frozen. Returns the set it used. An
// active anchor holds here as in ML: S's loss keeps weight · soft-CE(S(x), q) on the
// flagged rows, so that the phase cannot undo what the anchor kept.
ConsensusSet consensus_distillation(Classifier& student, Classifier& teacher, const torch::Tensor& unlabeled,
                                    const Dataset& clean, const MlOptions& ml, const ConsensusOptions& o, Rng& rng,
                                    torch::Device device, const std::string& label = "ntml consensus",
                                    const MlAnchor& anchor = {});

// Re-initialise every parameter of `model` (a randomly initialised student for a
// model whose architecture is not in the registry, e.g. an imported TorchScript one).
void reinitialize(Classifier& model);

}  // namespace antidote::ntml
