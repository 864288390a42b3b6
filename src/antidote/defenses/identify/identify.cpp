#include "antidote/defenses/identify/identify.hpp"

#include <algorithm>
#include <map>

#include "antidote/metrics/metrics.hpp"

namespace antidote {

IdentifierPtr make_identifier(const std::string& name, Params& params, const DefenseSetup& setup) {
  return IdentifierRegistry::instance().create("identification method", name, params, setup);
}

bool identifier_takes(const std::string& name, const std::string& key) {
  const auto& entries = IdentifierRegistry::instance().entries();
  auto it = entries.find(name);
  if (it == entries.end() || !it->second.options) return false;
  for (const auto& d : it->second.options())
    if (d.key == key) return true;
  return false;
}

void record_identification(const Identification& id, const std::string& defense, DefenseResult& result) {
  for (const auto& s : id.stages) result.stages.push_back(s);
  result.flagged = id.flagged;
  result.scores = id.scores.to(torch::kFloat);
  for (const auto& [k, v] : id.details.items()) result.details[k] = v;
  result.details["identify"]["method"] = id.method;
  result.details["identify"]["target"] = id.target;
  result.details["identify"]["confidence"] = id.confidence;
  log_info(fmt::format("{} identify ({}): target label {}, {} rows flagged, confidence {:.0f}%", defense, id.method,
                       id.target, id.flagged.numel(), 100 * id.confidence));
  if (!id.warning.empty()) {
    result.details["identify"]["warning"] = id.warning;
    log_info(defense + ": identification is unsure: " + id.warning);
  }
}

torch::Tensor fractional_ranks(const torch::Tensor& scores) {
  const int64_t n = scores.numel();
  // Times the reciprocal, as the measured runs computed it (bit for bit).
  return n > 1 ? mid_ranks(scores) * (1.0 / static_cast<double>(n - 1)) : torch::zeros({n}, torch::kFloat64);
}

Selection select_suspects(const torch::Tensor& scores, const torch::Tensor& suspect_pred, const torch::Tensor& labels,
                          const SelectOptions& opt, const torch::Tensor& ids) {
  auto s = scores.to(torch::kCPU, torch::kDouble).contiguous();
  auto pred = suspect_pred.to(torch::kCPU, torch::kLong).contiguous();
  auto lab = labels.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t n = s.size(0);
  if (pred.size(0) != n || lab.size(0) != n) fail("identify: scores, predictions and labels differ in length");
  torch::Tensor id = ids.defined() ? ids.to(torch::kCPU, torch::kLong).contiguous() : torch::arange(n, torch::kLong);
  auto sa = s.accessor<double, 1>();
  auto pa = pred.accessor<int64_t, 1>();
  auto la = lab.accessor<int64_t, 1>();
  auto ia = id.accessor<int64_t, 1>();

  std::vector<int64_t> rows;
  bool use_threshold = opt.threshold > 0 && std::isfinite(opt.threshold);
  for (int64_t i = 0; i < n; ++i)
    if (!use_threshold || sa[i] < opt.threshold) rows.push_back(i);
  // A total order that does not depend on where a row sits: (score, stable id).
  std::sort(rows.begin(), rows.end(), [&](int64_t a, int64_t b) {
    if (sa[a] != sa[b]) return sa[a] < sa[b];
    return ia[a] < ia[b];
  });
  Selection out;
  out.below_threshold = static_cast<int64_t>(rows.size());
  if (opt.max_flagged > 0 && static_cast<int64_t>(rows.size()) > opt.max_flagged) rows.resize(opt.max_flagged);
  out.after_cap = static_cast<int64_t>(rows.size());
  if (opt.consistency) {
    std::vector<int64_t> keep;
    for (auto r : rows)
      if (pa[r] == la[r]) keep.push_back(r);
    rows.swap(keep);
  }
  out.consistent = static_cast<int64_t>(rows.size());
  if (opt.vote && !rows.empty()) {
    // `rows` is sorted by (score, id), so each label's rows come lowest first.
    std::map<int64_t, int64_t> count;
    std::map<int64_t, double> lowest_sum;
    for (auto r : rows) {
      auto& k = count[la[r]];
      if (opt.max_kept <= 0 || k < opt.max_kept) lowest_sum[la[r]] += sa[r];
      ++k;
    }
    int64_t best = -1, best_n = 0;
    double best_mean = 0;
    for (const auto& [label, k] : count) {  // ties go to the smaller label
      const double mean = lowest_sum[label] / static_cast<double>(opt.max_kept > 0 ? std::min(k, opt.max_kept) : k);
      const bool better = opt.vote_by == "lowest_mean" ? (best < 0 || mean < best_mean) : k > best_n;
      if (better) best = label, best_n = k, best_mean = mean;
    }
    out.voted_label = best;
    std::vector<int64_t> keep;
    if (opt.vote_by == "lowest_mean" ||
        static_cast<double>(best_n) >= opt.vote_min_share * static_cast<double>(rows.size()))
      for (auto r : rows)
        if (la[r] == best) keep.push_back(r);
    rows.swap(keep);
  }
  out.voted = static_cast<int64_t>(rows.size());
  if (opt.max_kept > 0 && static_cast<int64_t>(rows.size()) > opt.max_kept) rows.resize(opt.max_kept);
  out.kept = static_cast<int64_t>(rows.size());
  out.rows = torch::tensor(rows, torch::kLong);
  return out;
}

double label_share(const torch::Tensor& scores, const torch::Tensor& suspect_pred, const torch::Tensor& labels,
                   int64_t label, int64_t n, bool consistent) {
  if (n < 1) return 0;
  SelectOptions all{0, n, consistent, false, 0, "count", 0};
  auto lowest = select_suspects(scores, suspect_pred, labels, all);
  if (lowest.rows.numel() == 0) return 0;
  auto lab = labels.to(torch::kCPU, torch::kLong).index_select(0, lowest.rows);
  return lab.eq(label).to(torch::kDouble).mean().item<double>();
}

void set_confidence(Identification& id, double confidence, double min_confidence, int64_t n) {
  id.confidence = confidence;
  id.warning.clear();
  if (id.target < 0 || id.flagged.numel() == 0) {
    id.warning = "no row was flagged: no label stands out as a backdoor's target";
  } else if (confidence < min_confidence) {
    id.warning = fmt::format(
        "only {:.0f}% of the {} most suspect rows carry the inferred target label {} (a backdoor's rows share one "
        "label; at least {:.0f}% was expected): the flagged rows may not be poisoned",
        100 * confidence, n, id.target, 100 * min_confidence);
  }
}

void flag_by_target_vote(Identification& id, const torch::Tensor& suspect_pred, const torch::Tensor& labels,
                         const FlagOptions& opt) {
  SelectOptions s{0, 0, true, true, 0, "lowest_mean", opt.flag_count};
  auto sel = select_suspects(id.scores, suspect_pred, labels, s);
  id.flagged = sel.rows;
  id.target = sel.voted_label;
  const double share = label_share(id.scores, suspect_pred, labels, id.target, opt.flag_count, true);
  set_confidence(id, share, opt.min_confidence, opt.flag_count);
  auto& d = id.details["identify"];
  d["rows"] = labels.size(0);
  d["consistent"] = sel.consistent;
  d["voted_label"] = sel.voted_label;
  d["kept"] = sel.kept;
}

torch::Tensor suspect_predictions(Classifier& suspect, const DefenseContext& ctx, const FlagOptions& opt) {
  return predict_probs(suspect, ctx.train.x, opt.score_batch).argmax(1);
}

}  // namespace antidote
