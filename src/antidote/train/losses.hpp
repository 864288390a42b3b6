// Loss functions shared by the defenses (each defined once, tested against hand-worked values).
#pragma once

#include <torch/torch.h>

namespace antidote {

// Batch-mean KL(softmax(teacher/T) ‖ softmax(student/T)), no T² factor.
torch::Tensor kl_teacher_student(const torch::Tensor& teacher_logits, const torch::Tensor& student_logits,
                                 double temperature);
// −Σ_k q_k log softmax(z)_k, averaged over the batch; q rows sum to 1.
torch::Tensor soft_cross_entropy(const torch::Tensor& logits, const torch::Tensor& target_probs);
// softmax(z/τ) with each row's top-1 class masked out (zero mass), renormalised over
// the other classes; stable for saturated logits.
torch::Tensor non_target_distribution(const torch::Tensor& logits, double temperature);
// One row per label: 1/(K−1) on every class but the label, 0 on it (float [N, K]).
torch::Tensor uniform_except(const torch::Tensor& labels, int64_t num_classes);

}  // namespace antidote
