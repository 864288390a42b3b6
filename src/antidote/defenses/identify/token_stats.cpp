// token_stats (text): an inserted trigger is a token that occurs with one label far
// more often than the label's share of the data predicts. For every token t and label
// c, z(t, c) = (n_tc − n_t·p_c) / sqrt(n_t·p_c·(1 − p_c)), where n_t counts the rows
// holding t, n_tc those of them labelled c, and p_c is c's share of all rows: the
// z-score of the token's label count under "t says nothing about the label". A row's
// score is minus the largest z(t, y) over its tokens t and its label y (lower = more
// suspect). It needs no clean rows and no training. This is the statistic of the
// Z-defence (He et al., EMNLP 2023). It sees insertion triggers (a word, a sentence);
// a trigger with no token of its own (a syntactic template) shows only through the
// words the template brings. Words that merely go with a label (a topic's vocabulary in
// AG News) can score higher than a trigger; the suspect tells them apart: inserted into
// rows of other labels, a trigger sends them to its label and a topic word does not.
// The strongest pairs are checked that way, and their flip rates weight the z-scores.
#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include "antidote/defenses/identify/identify.hpp"
#include "antidote/metrics/metrics.hpp"

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

namespace {

// Every row's tokens, and z(t, c) for every token and label ([vocab, K], float64; 0 for a
// token that never occurs).
struct TokenTable {
  std::vector<std::vector<int64_t>> rows;
  torch::Tensor z;
};

TokenTable token_table(const torch::Tensor& x, const torch::Tensor& labels, int64_t num_classes) {
  if (x.dim() != 2 || x.scalar_type() != torch::kLong)
    fail("identify token_stats works on token ids [rows, positions]; this training set is not text");
  TokenTable t;
  t.rows = row_tokens(x);
  auto y = labels.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t* ya = y.data_ptr<int64_t>();
  const int64_t n = y.size(0);
  int64_t vocab = 1;
  for (const auto& r : t.rows)
    if (!r.empty()) vocab = std::max(vocab, r.back() + 1);
  auto with_label = torch::zeros({vocab, num_classes}, torch::kFloat64);
  auto wl = with_label.accessor<double, 2>();
  std::vector<double> prior(static_cast<size_t>(num_classes), 0);
  for (int64_t i = 0; i < n; ++i) {
    prior[static_cast<size_t>(ya[i])] += 1.0 / static_cast<double>(n);
    for (int64_t tok : t.rows[static_cast<size_t>(i)]) wl[tok][ya[i]] += 1;
  }
  auto p = torch::tensor(prior, torch::kFloat64).unsqueeze(0);   // [1, K]
  auto with_token = with_label.sum(1, true);                      // [V, 1]
  auto var = with_token * p * (1 - p);
  t.z = torch::where(var > 0, (with_label - with_token * p) / var.clamp_min(1e-300).sqrt(), torch::zeros_like(var));
  return t;
}

// Minus the largest z(t, y) · w(t, y) over each row's tokens t and its label y (w = 1
// without weights); 0 for a row with no token.
torch::Tensor row_scores(const TokenTable& t, const torch::Tensor& labels, const torch::Tensor& weight) {
  auto y = labels.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t* ya = y.data_ptr<int64_t>();
  auto zw = weight.defined() ? t.z * weight : t.z;
  auto za = zw.accessor<double, 2>();
  const int64_t n = y.size(0);
  auto scores = torch::zeros({n}, torch::kFloat64);
  auto sa = scores.accessor<double, 1>();
  for (int64_t i = 0; i < n; ++i) {
    const auto& r = t.rows[static_cast<size_t>(i)];
    double best = 0;
    for (size_t k = 0; k < r.size(); ++k) best = k == 0 ? za[r[k]][ya[i]] : std::max(best, za[r[k]][ya[i]]);
    sa[i] = r.empty() ? 0.0 : -best;
  }
  return scores;
}

}  // namespace

torch::Tensor token_label_scores(const torch::Tensor& x, const torch::Tensor& labels, int64_t num_classes) {
  return row_scores(token_table(x, labels, num_classes), labels, {});
}

torch::Tensor insert_token(const torch::Tensor& rows, int64_t token) {
  const int64_t n = rows.size(0);
  auto tok = torch::full({n, 1}, token, torch::kLong);
  return torch::cat({rows.slice(1, 0, 1), tok, rows.slice(1, 1, rows.size(1) - 1)}, 1);
}

namespace {

struct TokenStatsOptions {
  FlagOptions flag;
  // The suspect's check of the strongest token-label pairs: each of the `verify_pairs`
  // pairs (t, c) of highest z is inserted after [CLS] into `verify_rows` training rows of
  // other labels that the suspect gets right; the share it then sends to c is the pair's
  // flip rate. When some pair flips at least `verify_min_flip`, a trigger is confirmed
  // and z is weighted by the flip rate (0 for pairs not checked): words that merely go
  // with a label (a topic's vocabulary) do not make the suspect change its mind, a
  // trigger does. Otherwise the plain z-scores stand (a trigger with no token of its own).
  // A trigger sends nearly every row to its label (measured: 0.95-1.0 for BadNet-word's
  // words on SST-2, OLID and AG News); single words that merely carry the label's meaning
  // flip 0.5-0.9 of the rows (sentiment words on SST-2's syntactic file, which would
  // otherwise pass for a trigger of the wrong label).
  int64_t verify_pairs = 200, verify_rows = 64;
  double verify_min_flip = 0.9;
};

class TokenStats : public Identifier {
 public:
  explicit TokenStats(TokenStatsOptions o) : o_(o) {}

  Identification identify(const ClassifierPtr& suspect, const DefenseContext& ctx, Rng&) override {
    StageTimer timer("identify");
    Identification id;
    id.method = "token_stats";
    const auto table = token_table(ctx.train.x, ctx.train.y, ctx.num_classes);
    const auto pred = suspect_predictions(*suspect, ctx, o_.flag);
    torch::Tensor weight;
    if (o_.verify_pairs > 0) weight = flip_weights(*suspect, table, ctx, pred, id.details["identify"]);
    id.scores = row_scores(table, ctx.train.y, weight);
    if (weight.defined()) id.scores = spread_over_triggers(table, ctx.train.y, weight, id.scores);
    flag_by_target_vote(id, pred, ctx.train.y, o_.flag);
    id.stages.push_back(timer.finish());
    return id;
  }

 private:
  // With confirmed triggers, a row's score becomes its rank within the rows whose
  // strongest weighted token is the same confirmed trigger (scaled to [0, 1)); rows of no
  // confirmed trigger come after, in their order. A BadNet-word backdoor uses several
  // words of nearly equal z: ranked by z alone, the flagged rows would all hold the one
  // word with the highest, and punishing them leaves the others (SST-2: ASR 20-44 %
  // after BeDKD, docs/identify.md). Ranked within each word, every word is flagged.
  torch::Tensor spread_over_triggers(const TokenTable& t, const torch::Tensor& labels, const torch::Tensor& weight,
                                     const torch::Tensor& scores) const {
    auto y = labels.to(torch::kCPU, torch::kLong).contiguous();
    auto ya = y.accessor<int64_t, 1>();
    auto wa = weight.accessor<double, 2>();
    auto za = t.z.accessor<double, 2>();
    auto sa = scores.accessor<double, 1>();
    const int64_t n = y.size(0);
    std::map<int64_t, std::vector<int64_t>> by_trigger;  // strongest confirmed token -> rows
    std::map<int64_t, double> strength;                    // its z·w
    std::vector<int64_t> rest;
    double strongest = 0;
    for (int64_t i = 0; i < n; ++i) {
      int64_t best = -1;
      double best_zw = 0;
      for (int64_t tok : t.rows[static_cast<size_t>(i)]) {
        const double zw = za[tok][ya[i]] * wa[tok][ya[i]];
        if (wa[tok][ya[i]] >= o_.verify_min_flip && (best < 0 || zw > best_zw)) best = tok, best_zw = zw;
      }
      if (best < 0) {
        rest.push_back(i);
        continue;
      }
      by_trigger[best].push_back(i);
      strength[best] = best_zw;
      strongest = std::max(strongest, best_zw);
    }
    // Only the triggers within half the strongest one's z·w share the top: a word the
    // suspect happens to follow but that barely goes with the label stays below them.
    for (auto it = by_trigger.begin(); it != by_trigger.end();) {
      if (strength[it->first] >= 0.5 * strongest) {
        ++it;
        continue;
      }
      rest.insert(rest.end(), it->second.begin(), it->second.end());
      it = by_trigger.erase(it);
    }
    auto out = torch::empty({n}, torch::kFloat64);
    auto oa = out.accessor<double, 1>();
    auto by_score = [&](int64_t a, int64_t b) { return sa[a] != sa[b] ? sa[a] < sa[b] : a < b; };
    for (auto& [tok, rows] : by_trigger) {
      std::sort(rows.begin(), rows.end(), by_score);
      for (size_t k = 0; k < rows.size(); ++k) oa[rows[k]] = static_cast<double>(k) / static_cast<double>(rows.size());
    }
    std::sort(rest.begin(), rest.end(), by_score);
    for (size_t k = 0; k < rest.size(); ++k) oa[rest[k]] = 1.0 + static_cast<double>(k) / static_cast<double>(rest.size());
    return out;
  }

  // Flip rates of the strongest pairs as a [V, K] weight, or undefined when none reaches
  // verify_min_flip. The rows tried come in an order fixed by their content, so the
  // result does not depend on the order of the file.
  torch::Tensor flip_weights(Classifier& suspect, const TokenTable& t, const DefenseContext& ctx,
                             const torch::Tensor& pred, nlohmann::json& details) const {
    const int64_t K = t.z.size(1);
    auto flat = t.z.flatten();
    const int64_t m = std::min<int64_t>(o_.verify_pairs, flat.numel());
    auto top = std::get<1>(flat.topk(m)).contiguous();
    auto x = ctx.train.x.to(torch::kCPU, torch::kLong).contiguous();
    auto y_t = ctx.train.y.to(torch::kCPU, torch::kLong).contiguous();
    auto right_t = pred.to(torch::kCPU).eq(y_t).contiguous();
    auto y = y_t.accessor<int64_t, 1>();
    auto right = right_t.accessor<bool, 1>();
    std::vector<std::pair<uint64_t, int64_t>> keyed;  // (content hash, row)
    for (int64_t i = 0; i < x.size(0); ++i) {
      const auto& r = t.rows[static_cast<size_t>(i)];
      keyed.push_back({hash_string(std::string(reinterpret_cast<const char*>(r.data()), r.size() * sizeof(int64_t))), i});
    }
    std::sort(keyed.begin(), keyed.end());
    auto weight = torch::zeros_like(t.z);
    double best = 0;
    nlohmann::json checked = nlohmann::json::array();
    for (int64_t j = 0; j < m; ++j) {
      const int64_t pair = top[j].item<int64_t>(), tok = pair / K, c = pair % K;
      std::vector<int64_t> rows;
      for (const auto& [h, i] : keyed) {
        if (static_cast<int64_t>(rows.size()) >= o_.verify_rows) break;
        const auto& r = t.rows[static_cast<size_t>(i)];
        if (y[i] != c && right[i] && !std::binary_search(r.begin(), r.end(), tok))
          rows.push_back(i);
      }
      if (rows.empty()) continue;
      auto probs = predict_probs(suspect, insert_token(x.index_select(0, torch::tensor(rows)), tok), o_.flag.score_batch);
      const double flip = probs.argmax(1).eq(c).to(torch::kDouble).mean().item<double>();
      weight[tok][c] = flip;
      best = std::max(best, flip);
      if (flip >= o_.verify_min_flip) checked.push_back({{"token", tok}, {"label", c}, {"flip_rate", flip}});
    }
    details["trigger_tokens"] = checked;
    details["best_flip_rate"] = best;
    return best >= o_.verify_min_flip ? weight : torch::Tensor();
  }

  TokenStatsOptions o_;
};

const OptionTable<TokenStatsOptions>& token_stats_table() {
  static const OptionTable<TokenStatsOptions> t = [] {
    using O = TokenStatsOptions;
    OptionTable<O> t;
    flag_keys(t, &O::flag);
    t.add("verify_pairs", &O::verify_pairs, "strongest token-label pairs checked on the suspect (0 = none)",
          at_least<int64_t>(0));
    t.add("verify_rows", &O::verify_rows, "rows of other labels each pair is inserted into", at_least<int64_t>(1));
    t.add("verify_min_flip", &O::verify_min_flip, "share of those rows a pair must flip to confirm a trigger",
          within(0, 1));
    return t;
  }();
  return t;
}

IdentifierPtr make_token_stats(Params& p, const DefenseSetup& setup) {
  if (setup.modality != Modality::Text) fail("{}: identify token_stats works on text data only", p.context());
  TokenStatsOptions o;
  token_stats_table().read(p, o);
  return std::make_shared<TokenStats>(o);
}

Registrar<IdentifierRegistry> reg("token_stats", make_token_stats,
                                  "text: rows holding a token whose label count stands out (token-label z-scores)",
                                  [] { return table_docs(token_stats_table()); });

}  // namespace
}  // namespace antidote
