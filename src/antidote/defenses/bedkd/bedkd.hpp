// BeDKD (arXiv 2508.01595): the shared distillation loss and the directional mapping's
// rules, exposed so that tests can check them on hand-worked values. The defense
// registers as "bedkd" from bedkd.cpp, its directional mapping as the identification
// method "dmm" from dmm.cpp; recipe.hpp holds the options both read.
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "antidote/defenses/identify/identify.hpp"
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

// The weight of a punish batch's mean loss once the stopping rule has kept `still` of
// its `drawn` rows: 1 with punish_mean "still" (the mean over the kept rows), or
// still / drawn with "drawn" (the mean over the drawn rows, a stopped row counting 0).
inline double punish_share(const std::string& punish_mean, int64_t still, int64_t drawn) {
  return punish_mean == "drawn" && drawn > 0 ? static_cast<double>(still) / static_cast<double>(drawn) : 1.0;
}

}  // namespace antidote::bedkd
