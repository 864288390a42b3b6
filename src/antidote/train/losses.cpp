#include "antidote/train/losses.hpp"

namespace antidote {

torch::Tensor kl_teacher_student(const torch::Tensor& teacher_logits, const torch::Tensor& student_logits,
                                 double temperature) {
  auto log_p = torch::log_softmax(teacher_logits / temperature, 1);
  auto log_q = torch::log_softmax(student_logits / temperature, 1);
  return (log_p.exp() * (log_p - log_q)).sum(1).mean();
}

torch::Tensor soft_cross_entropy(const torch::Tensor& logits, const torch::Tensor& target_probs) {
  return -(target_probs * torch::log_softmax(logits, 1)).sum(1).mean();
}

torch::Tensor non_target_distribution(const torch::Tensor& logits, double temperature) {
  auto top = logits.argmax(1, true);
  // −inf on the top-1 before the softmax: the remaining classes renormalise exactly,
  // with no 0/0 when the top-1 holds all the mass.
  auto masked = (logits / temperature).scatter(1, top, -std::numeric_limits<float>::infinity());
  return torch::softmax(masked, 1);
}

torch::Tensor uniform_except(const torch::Tensor& labels, int64_t num_classes) {
  auto u = torch::full({labels.size(0), num_classes}, 1.0 / static_cast<double>(num_classes - 1),
                       torch::TensorOptions().dtype(torch::kFloat).device(labels.device()));
  return u.scatter(1, labels.to(torch::kLong).unsqueeze(1), 0.0);
}

}  // namespace antidote
