// rank_mean: several methods' scores combined. Each method's scores become fractional
// ranks (so that scales do not matter) and a row's score is their mean: a row must look
// suspect to every method to stay at the bottom, which keeps out the rows that only one
// method mistakes for poison (the easy clean rows a fresh model fits early, the rows
// holding one strongly sentiment-laden word).
#include <numeric>

#include "antidote/defenses/identify/identify.hpp"

namespace antidote {
namespace {

class RankMean : public Identifier {
 public:
  RankMean(std::vector<std::string> names, std::vector<IdentifierPtr> methods, FlagOptions flag)
      : names_(std::move(names)), methods_(std::move(methods)), flag_(flag) {}

  Identification identify(const ClassifierPtr& suspect, const DefenseContext& ctx, Rng& rng) override {
    Identification id;
    id.method = "rank_mean";
    StageCost cost{"identify", 0, 0};
    torch::Tensor sum;
    nlohmann::json parts = nlohmann::json::object();
    for (size_t i = 0; i < methods_.size(); ++i) {
      auto part = methods_[i]->identify(suspect, ctx, rng);
      auto r = fractional_ranks(part.scores);
      sum = sum.defined() ? sum + r : r;
      for (const auto& s : part.stages) {
        cost.seconds += s.seconds;
        cost.peak_rss_mb = std::max(cost.peak_rss_mb, s.peak_rss_mb);
      }
      id.clean_per_class = std::max(id.clean_per_class, part.clean_per_class);
      parts[names_[i]] = {{"target", part.target}, {"confidence", part.confidence}};
    }
    id.scores = sum / static_cast<double>(methods_.size());
    flag_by_target_vote(id, suspect_predictions(*suspect, ctx, flag_), ctx.train.y, flag_);
    id.details["identify"]["parts"] = parts;
    id.stages.push_back(cost);
    return id;
  }

 private:
  std::vector<std::string> names_;
  std::vector<IdentifierPtr> methods_;
  FlagOptions flag_;
};

struct RankMeanOptions {
  std::vector<std::string> combine{"early_loss", "token_stats"};
  FlagOptions flag;
};

const OptionTable<RankMeanOptions>& rank_mean_table() {
  static const OptionTable<RankMeanOptions> t = [] {
    OptionTable<RankMeanOptions> t;
    t.add("combine", &RankMeanOptions::combine, "the methods whose ranks are averaged (their keys go beside)",
          Rule<std::vector<std::string>>{[](const std::vector<std::string>& names) {
                                           return !names.empty() &&
                                                  std::find(names.begin(), names.end(), "rank_mean") == names.end();
                                         },
                                         "must name at least one method, not rank_mean"});
    flag_keys(t, &RankMeanOptions::flag);
    return t;
  }();
  return t;
}

IdentifierPtr make_rank_mean(Params& p, const DefenseSetup& setup) {
  RankMeanOptions o;
  rank_mean_table().read(p, o);
  std::vector<IdentifierPtr> methods;
  for (const auto& n : o.combine) methods.push_back(make_identifier(n, p, setup));
  return std::make_shared<RankMean>(o.combine, methods, o.flag);
}

Registrar<IdentifierRegistry> reg("rank_mean", make_rank_mean,
                                  "the mean of several methods' fractional ranks (combine: [early_loss, token_stats])",
                                  [] { return table_docs(rank_mean_table()); });

}  // namespace
}  // namespace antidote
