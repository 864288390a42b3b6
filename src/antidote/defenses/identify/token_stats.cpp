// token_stats (text): an inserted trigger is a token that occurs with one label far
// more often than the label's share of the data predicts. For every token t and label
// c, z(t, c) = (n_tc − n_t·p_c) / sqrt(n_t·p_c·(1 − p_c)), where n_t counts the rows
// holding t, n_tc those of them labelled c, and p_c is c's share of all rows: the
// z-score of the token's label count under "t says nothing about the label". A row's
// score is minus the largest z(t, y) over its tokens t and its label y (lower = more
// suspect). It reads the training set alone: no model, no clean rows, no training; the
// suspect only keeps the rows it predicts as labelled. This is the statistic of the
// Z-defence (He et al., EMNLP 2023). It sees insertion triggers (a word, a sentence);
// a trigger with no token of its own (a syntactic template) shows only through the
// words the template brings.
#include <algorithm>
#include <cmath>
#include <vector>

#include "antidote/defenses/identify/identify.hpp"

namespace antidote {
namespace {

// Token ids of each row, once each, without padding and [CLS].
std::vector<std::vector<int64_t>> row_tokens(const torch::Tensor& x) {
  auto ids = x.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t n = ids.size(0), len = ids.size(1);
  const int64_t* p = ids.data_ptr<int64_t>();
  std::vector<std::vector<int64_t>> rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    auto& r = rows[static_cast<size_t>(i)];
    for (int64_t j = 0; j < len; ++j) {
      const int64_t t = p[i * len + j];
      if (t != Vocab::kPad && t != Vocab::kCls) r.push_back(t);
    }
    std::sort(r.begin(), r.end());
    r.erase(std::unique(r.begin(), r.end()), r.end());
  }
  return rows;
}

}  // namespace

torch::Tensor token_label_scores(const torch::Tensor& x, const torch::Tensor& labels, int64_t num_classes) {
  if (x.dim() != 2 || x.scalar_type() != torch::kLong)
    fail("identify token_stats works on token ids [rows, positions]; this training set is not text");
  const auto rows = row_tokens(x);
  auto y = labels.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t* ya = y.data_ptr<int64_t>();
  const int64_t n = y.size(0);
  int64_t vocab = 0;
  for (const auto& r : rows)
    if (!r.empty()) vocab = std::max(vocab, r.back() + 1);
  std::vector<double> with_token(static_cast<size_t>(vocab), 0), with_label(static_cast<size_t>(vocab * num_classes), 0),
      prior(static_cast<size_t>(num_classes), 0);
  for (int64_t i = 0; i < n; ++i) {
    prior[static_cast<size_t>(ya[i])] += 1.0 / static_cast<double>(n);
    for (int64_t t : rows[static_cast<size_t>(i)]) {
      with_token[static_cast<size_t>(t)] += 1;
      with_label[static_cast<size_t>(t * num_classes + ya[i])] += 1;
    }
  }
  auto scores = torch::zeros({n}, torch::kFloat64);
  auto sa = scores.accessor<double, 1>();
  for (int64_t i = 0; i < n; ++i) {
    const double pc = prior[static_cast<size_t>(ya[i])];
    double best = 0;
    bool any = false;
    for (int64_t t : rows[static_cast<size_t>(i)]) {
      const double nt = with_token[static_cast<size_t>(t)];
      const double var = nt * pc * (1 - pc);
      if (var <= 0) continue;
      const double z = (with_label[static_cast<size_t>(t * num_classes + ya[i])] - nt * pc) / std::sqrt(var);
      if (!any || z > best) best = z, any = true;
    }
    sa[i] = any ? -best : 0.0;
  }
  return scores;
}

namespace {

class TokenStats : public Identifier {
 public:
  explicit TokenStats(FlagOptions flag) : flag_(flag) {}

  Identification identify(const ClassifierPtr& suspect, const DefenseContext& ctx, Rng&) override {
    StageTimer timer("identify");
    Identification id;
    id.method = "token_stats";
    id.scores = token_label_scores(ctx.train.x, ctx.train.y, ctx.num_classes);
    flag_by_target_vote(id, suspect_predictions(*suspect, ctx, flag_), ctx.train.y, flag_);
    id.stages.push_back(timer.finish());
    return id;
  }

 private:
  FlagOptions flag_;
};

IdentifierPtr make_token_stats(Params& p, const DefenseSetup& setup) {
  if (setup.modality != Modality::Text) fail("{}: identify token_stats works on text data only", p.context());
  return std::make_shared<TokenStats>(read_flag_options(p));
}

Registrar<IdentifierRegistry> reg("token_stats", make_token_stats,
                                  "text: rows holding a token whose label count stands out (token-label z-scores)");

}  // namespace
}  // namespace antidote
