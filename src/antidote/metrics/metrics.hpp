// The field's metrics, each defined once. Fractions in [0, 1].
#pragma once

#include <torch/torch.h>

#include "antidote/data/data.hpp"
#include "antidote/metrics/verdict.hpp"

namespace antidote {

class Classifier;

// Fraction of rows whose argmax equals the label.
double accuracy(const torch::Tensor& scores, const torch::Tensor& labels);
// Rows by true label, columns by predicted class (the argmax of `scores`); empty beyond
// kMaxConfusionClasses classes.
std::vector<std::vector<int64_t>> confusion_matrix(const torch::Tensor& scores, const torch::Tensor& labels);

// On triggered test rows whose true label != target (target rows are excluded here
// even if the caller passes them): ASR = predicted target, RA = predicted true
// label, PCC = mean softmax probability of the true label.
struct TriggerMetrics {
  double asr = 0, ra = 0, pcc = 0;
  int64_t count = 0;
};
TriggerMetrics trigger_metrics(const torch::Tensor& probs, const torch::Tensor& true_labels, int64_t target);

// DER = (max(0, ASR_bd − ASR_def) − max(0, CACC_bd − CACC_def) + 1) / 2.
double defense_effectiveness(double asr_bd, double asr_def, double cacc_bd, double cacc_def);

// Detection of poisoned training rows: flagged row indices vs the ground-truth mask.
struct Detection {
  double precision = 0, recall = 0, f1 = 0;
  int64_t flagged = 0;
};
Detection detection(const torch::Tensor& flagged_rows, const torch::Tensor& poisoned_mask);

// Each value's 0-based rank in ascending order (float64, on the CPU); tied values share
// the mean of their ranks, so the result does not depend on the order of the values.
torch::Tensor mid_ranks(const torch::Tensor& scores);

// Area under the ROC curve of `scores` separating positives (higher = more positive);
// ties count one half.
double auroc(const torch::Tensor& scores, const torch::Tensor& positive);

// Softmax probabilities [N, K], batched, eval mode, no grad; the model's mode is restored.
torch::Tensor predict_probs(Classifier& model, const torch::Tensor& x, int64_t batch_size = 512);
// The same rows' logits [N, K] on the CPU (for losses that must not saturate in float).
torch::Tensor predict_logits(Classifier& model, const torch::Tensor& x, int64_t batch_size = 512);
Evaluation evaluate(Classifier& model, const Dataset& clean_test, const Dataset& triggered_test, int64_t target,
                    int64_t batch_size = 512);

}  // namespace antidote
