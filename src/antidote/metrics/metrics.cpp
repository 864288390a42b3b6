#include "antidote/metrics/metrics.hpp"

#include <algorithm>
#include <limits>

#include "antidote/models/model.hpp"

namespace antidote {

double accuracy(const torch::Tensor& scores, const torch::Tensor& labels) {
  if (labels.numel() == 0) return 0;
  return scores.argmax(1).eq(labels.to(scores.device())).to(torch::kFloat64).mean().item<double>();
}

std::vector<std::vector<int64_t>> confusion_matrix(const torch::Tensor& scores, const torch::Tensor& labels) {
  const int64_t k = scores.dim() == 2 ? scores.size(1) : 0;
  if (k == 0 || k > kMaxConfusionClasses || labels.numel() == 0) return {};
  auto pairs = labels.to(torch::kCPU, torch::kLong) * k + scores.argmax(1).to(torch::kCPU, torch::kLong);
  auto counts = torch::bincount(pairs, {}, k * k).contiguous();
  const auto* c = counts.data_ptr<int64_t>();
  std::vector<std::vector<int64_t>> m(static_cast<size_t>(k));
  for (int64_t t = 0; t < k; ++t) m[static_cast<size_t>(t)].assign(c + t * k, c + (t + 1) * k);
  return m;
}

TriggerMetrics trigger_metrics(const torch::Tensor& probs, const torch::Tensor& true_labels, int64_t target) {
  TriggerMetrics m;
  auto labels = true_labels.to(probs.device());
  auto keep = labels.ne(target);
  auto p = probs.index({keep});
  auto y = labels.index({keep});
  m.count = y.numel();
  if (m.count == 0) return m;
  auto pred = p.argmax(1);
  m.asr = pred.eq(target).to(torch::kFloat64).mean().item<double>();
  m.ra = pred.eq(y).to(torch::kFloat64).mean().item<double>();
  m.pcc = p.gather(1, y.unsqueeze(1)).to(torch::kFloat64).mean().item<double>();
  return m;
}

double defense_effectiveness(double asr_bd, double asr_def, double cacc_bd, double cacc_def) {
  return (std::max(0.0, asr_bd - asr_def) - std::max(0.0, cacc_bd - cacc_def) + 1.0) / 2.0;
}

Detection detection(const torch::Tensor& flagged_rows, const torch::Tensor& poisoned_mask) {
  Detection d;
  d.flagged = flagged_rows.numel();
  auto truth = poisoned_mask.to(torch::kCPU);
  int64_t positives = truth.sum().item<int64_t>();
  int64_t hits = d.flagged ? truth.index_select(0, flagged_rows.to(torch::kCPU)).sum().item<int64_t>() : 0;
  d.precision = d.flagged ? static_cast<double>(hits) / d.flagged : 0.0;
  d.recall = positives ? static_cast<double>(hits) / positives : 0.0;
  d.f1 = (d.precision + d.recall) > 0 ? 2 * d.precision * d.recall / (d.precision + d.recall) : 0.0;
  return d;
}

torch::Tensor mid_ranks(const torch::Tensor& scores) {
  auto s = scores.to(torch::kCPU, torch::kFloat64).contiguous().view(-1);
  const int64_t n = s.numel();
  auto order = std::get<1>(s.sort(/*stable=*/true, 0, /*descending=*/false)).contiguous();
  auto sa = s.accessor<double, 1>();
  auto oa = order.accessor<int64_t, 1>();
  auto ranks = torch::empty({n}, torch::kFloat64);
  auto ra = ranks.accessor<double, 1>();
  for (int64_t i = 0; i < n;) {
    int64_t j = i;  // [i, j] is a run of equal values
    while (j + 1 < n && sa[oa[j + 1]] == sa[oa[i]]) ++j;
    const double mid = 0.5 * static_cast<double>(i + j);
    for (int64_t k = i; k <= j; ++k) ra[oa[k]] = mid;
    i = j + 1;
  }
  return ranks;
}

double auroc(const torch::Tensor& scores, const torch::Tensor& positive) {
  // Mann–Whitney U with mid-ranks for ties (1-based ranks: mid_ranks + 1).
  auto p = positive.to(torch::kCPU, torch::kBool).contiguous().view(-1);
  const int64_t npos = p.sum().item<int64_t>();
  const int64_t nneg = p.numel() - npos;
  if (npos == 0 || nneg == 0) return 0.5;
  const double rank_sum = (mid_ranks(scores) + 1).masked_select(p).sum().item<double>();
  return (rank_sum - npos * (npos + 1) / 2.0) / (static_cast<double>(npos) * nneg);
}

namespace {

// Rows of token ids ordered by length, for a model whose logits ignore trailing
// padding; undefined when nothing can be cut (no such model, not token ids, every row
// full) or a row is all padding.
torch::Tensor length_order(Classifier& model, const torch::Tensor& x, torch::Tensor* lengths) {
  if (x.size(0) == 0) return {};
  *lengths = model.cuttable_lengths(x);
  if (!lengths->defined() || lengths->min().item<int64_t>() == 0 || lengths->min().item<int64_t>() == x.size(1))
    return {};
  return std::get<1>(lengths->sort(/*stable=*/true, 0, /*descending=*/false));
}

// The model's logits on every row of `x` in batches, each passed through `per_batch`
// (softmax for probabilities) before it leaves the device.
torch::Tensor batched_outputs(Classifier& model, const torch::Tensor& x, int64_t batch_size,
                              torch::Tensor (*per_batch)(const torch::Tensor&)) {
  torch::NoGradGuard ng;
  PrecisionScope fp32(false);  // every evaluation in float32, even inside a bf16 training
  bool was_training = model.is_training();
  model.eval();
  auto dev = model.parameters().empty() ? torch::Device(torch::kCPU) : model.parameters().front().device();
  // Text: SST-2's rows average about 20 of 53 positions. Batches of rows of similar
  // length, each cut to its longest row, skip most of the padding; the model guarantees
  // that its logits do not see padding, so they change only by float rounding.
  torch::Tensor lengths;
  const auto order = length_order(model, x, &lengths);
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < x.size(0); i += batch_size) {
    const int64_t end = std::min(i + batch_size, x.size(0));
    torch::Tensor xb;
    if (order.defined()) {
      auto rows = order.slice(0, i, end);
      xb = x.index_select(0, rows.to(x.device())).slice(1, 0, lengths.index_select(0, rows).max().item<int64_t>());
    } else {
      xb = x.slice(0, i, end);
    }
    auto logits = model.forward(xb.to(dev)).logits;
    // NaN logits would otherwise read as class 0 everywhere: an ASR of 100 % or 0 %.
    if (!torch::isfinite(logits).all().item<bool>())
      fail("the model's logits are NaN or infinite on rows {} to {} (a broken or diverged model)", i, end - 1);
    out.push_back(per_batch(logits).to(torch::kCPU));
  }
  model.train(was_training);
  if (out.empty()) return torch::zeros({0, 0});
  auto all = torch::cat(out);
  if (order.defined()) {
    auto in_order = torch::empty_like(all);
    in_order.index_copy_(0, order, all);
    return in_order;
  }
  return all;
}

torch::Tensor softmax_rows(const torch::Tensor& logits) { return torch::softmax(logits, 1); }
torch::Tensor as_is(const torch::Tensor& logits) { return logits; }
}  // namespace

torch::Tensor predict_probs(Classifier& model, const torch::Tensor& x, int64_t batch_size) {
  return batched_outputs(model, x, batch_size, softmax_rows);
}

torch::Tensor predict_logits(Classifier& model, const torch::Tensor& x, int64_t batch_size) {
  return batched_outputs(model, x, batch_size, as_is);
}

Evaluation evaluate(Classifier& model, const Dataset& clean_test, const Dataset& triggered_test, int64_t target,
                    int64_t batch_size) {
  Evaluation e;
  const auto clean_probs = predict_probs(model, clean_test.x, batch_size);
  e.cacc = accuracy(clean_probs, clean_test.y);
  e.confusion = confusion_matrix(clean_probs, clean_test.y);
  TriggerMetrics t;
  if (triggered_test.size() > 0)
    t = trigger_metrics(predict_probs(model, triggered_test.x, batch_size), triggered_test.y, target);
  if (t.count == 0) {
    // No triggered row to measure (the trigger is unknown): unknown, not 0 %.
    e.asr = e.ra = e.pcc = std::numeric_limits<double>::quiet_NaN();
    return e;
  }
  e.asr = t.asr;
  e.ra = t.ra;
  e.pcc = t.pcc;
  return e;
}

}  // namespace antidote
