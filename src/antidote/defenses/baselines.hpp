// Pieces shared by the baseline defenses ft, fp and nad: the clean set,
// the fine-tuning recipe read from a defense's options, and NAD's attention maps.
#pragma once

#include <torch/torch.h>

#include <string>

#include "antidote/core/options.hpp"
#include "antidote/defenses/defense.hpp"
#include "antidote/train/train.hpp"

namespace antidote {

// The defense's clean rows: ctx.clean_set(ctx.clean->balanced(n)), the rows NT-ML
// draws from the same pool, so the baselines are compared on an equal footing.
Dataset baseline_clean_set(const DefenseContext& ctx, int64_t n, const std::string& who);

// Fine-tuning recipe with defaults scaled from BackdoorBench (SGD, momentum 0.9,
// weight decay 5e-4, cosine, batch 256 on 5 % of CIFAR-10 ≈ 10 steps an epoch) to a
// clean set of a few hundred rows (batch 64 ≈ 8 steps an epoch). Text models are
// Adam-trained Transformers/TextCNNs: Adam, smaller lr, no weight decay.
TrainOptions finetune_defaults(Modality modality, int64_t epochs_image, int64_t epochs_text);
// A defense's options (a struct with a `train` member) with that recipe.
template <class C>
C with_finetune(Modality modality, int64_t epochs_image, int64_t epochs_text) {
  C o;
  o.train = finetune_defaults(modality, epochs_image, epochs_text);
  return o;
}

// Mean cross-entropy and accuracy of `model` on `data` (eval mode, no grad; mode restored).
struct CleanFit {
  double ce = 0, acc = 0;
};
CleanFit clean_fit(Classifier& model, const Dataset& data, int64_t batch_size = 256);

// Derived seeds of one defense run: torch's global generator is seeded from the
// run's seed and the defense name, so dropout draws repeat bit for bit.
Rng seeded_streams(uint64_t seed, const std::string& defense);

// ---- NAD attention maps (Zagoruyko & Komodakis attention transfer, as used by NAD
// and BackdoorBench's defense/nad.py) -----------------------------------------------
// am(a) = Σ_c |a_c|^p over the channel dimension `channel_dim`, flattened over the
// remaining positions, divided per sample by (‖·‖₂ + 1e-6). Layouts:
//   images [B, C, H, W], channel_dim 1   -> [B, H·W]
//   Transformer [B, L, H], channel_dim 2 -> [B, L]   (sum over the hidden units)
//   TextCNN conv [B, F, L'], channel_dim 1 -> [B, L']
//   feature vectors [B, H]: no positions, each unit is its own position: |a|^p -> [B, H]
// `position_mask` [B, positions] (1 keeps, 0 drops, e.g. padding tokens) zeroes
// positions before normalising; pass an undefined tensor for none. The model tells
// the channel dimension of its activations (Classifier::activation_channel_dim).
torch::Tensor attention_map(const torch::Tensor& a, double p, int64_t channel_dim,
                            const torch::Tensor& position_mask = torch::Tensor());
// AT loss = mean over batch and positions of (am(student) − am(teacher))², i.e.
// F.mse_loss(am_s, am_t) in NAD/BackdoorBench. The teacher's map is detached.
torch::Tensor attention_loss(const torch::Tensor& student, const torch::Tensor& teacher, double p, int64_t channel_dim,
                             const torch::Tensor& position_mask = torch::Tensor());

}  // namespace antidote
