// BeDKD (arXiv 2508.01595): the shared distillation loss and the identification
// rules, exposed so that tests can check them on hand-worked values. The defense
// itself registers as "bedkd" from bedkd.cpp (SPEC §2).
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "antidote/models/model.hpp"

namespace antidote::bedkd {

// L_KD(x, y; T) = α·CE(z_S, y) + (1 − α)·[ w_kl·KL(softmax(z_T/T) ‖ softmax(z_S/T)) + w_mse·MSE(h_S, h_T) ]
// KL: batch mean, no T² factor. MSE: mean over all elements, or, when `feature_mask`
// is given ([B, L] for token states [B, L, H], 1 = real token), the mean over the
// unmasked positions. The reference weights are w_kl = w_mse = 1. A term whose weight
// is 0 (α = 1, or w_kl / w_mse = 0) is not computed and is reported as 0.
struct KdWeights {
  double alpha = 0.3;
  double kl = 1.0;
  double mse = 1.0;
};
struct KdTerms {
  torch::Tensor total, ce, kl, mse;
};
KdTerms kd_terms(const ModelOutput& student, const ModelOutput& teacher, const torch::Tensor& labels,
                 double temperature, const KdWeights& w = {}, const torch::Tensor& feature_mask = {});
inline torch::Tensor kd_loss(const ModelOutput& student, const ModelOutput& teacher, const torch::Tensor& labels,
                             double temperature, const KdWeights& w = {}, const torch::Tensor& feature_mask = {}) {
  return kd_terms(student, teacher, labels, temperature, w, feature_mask).total;
}

// The directional mapping: y' = (y + shift) mod K (shift 1 in the reference).
torch::Tensor flip_labels(const torch::Tensor& labels, int64_t num_classes, int64_t shift = 1);

// s = mean_k |p_B,k − p_D,k| per row (lower = the mapping did not move = suspect).
torch::Tensor direction_scores(const torch::Tensor& probs_suspect, const torch::Tensor& probs_mapped);

// Each row's rank among all rows, scaled to [0, 1] (0 = lowest score); tied scores
// share the mean of their ranks, so the result does not depend on the row order.
// A single row gets 0.
torch::Tensor fractional_ranks(const torch::Tensor& scores);

// Stage 2's filters on per-row scores: threshold, cap to the lowest scores, agreement
// of the suspect's prediction with the training label, final cap. Ordering is by
// (score, row index), so the result does not depend on the order of the rows beyond ties.
struct SelectOptions {
  double threshold = 0.1;    // flag s < threshold (<= 0 or inf disables)
  int64_t max_flagged = 128; // keep the lowest `max_flagged` flagged rows (0 = no cap)
  bool consistency = true;   // keep rows whose suspect prediction equals the label
  // All-to-one vote (not in the reference): keep only rows whose label is the most
  // common label among the rows that passed the filters above (the presumed target).
  bool vote = false;
  // With the vote: when the majority label holds less than this share of the rows,
  // no label stands out as a target and nothing is kept (0 = always keep the majority).
  double vote_min_share = 0.0;
  // How the vote picks the label. count: the most common label among the survivors.
  // lowest_mean: the label whose `max_kept` lowest-scoring survivors (all of them
  // without a cap) have the lowest mean score; a backdoor's rows sit at the very
  // bottom of their class, while a class the mapping moved late fills the ranks just
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

}  // namespace antidote::bedkd
