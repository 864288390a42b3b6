// early_loss: a fresh model of the suspect's architecture, trained briefly on the
// suspicious training set, fits the poisoned rows first — a trigger is the simplest
// pattern in the data, one feature that predicts one label. Each row's cross-entropy on
// its own label is ranked among all rows at several checkpoints of the short training,
// and the mean rank is the row's score (lower = more suspect). One checkpoint is
// fragile: early on the trigger is not yet learned everywhere, later the easy clean
// rows reach low loss too; the mean over the checkpoints keeps the rows that are low
// throughout. The same idea underlies Anti-Backdoor Learning (poisoned rows reach low
// loss first). It reads neither the suspect's features nor the clean set: the suspect
// serves only for its architecture and to keep rows it predicts as labelled.
#include <cmath>

#include "antidote/defenses/identify/identify.hpp"
#include "antidote/metrics/metrics.hpp"
#include "antidote/train/train.hpp"

namespace antidote {
namespace {

struct EarlyLossOptions {
  double epochs = 1.0;      // the fresh model's budget, in epochs over the training set
  int64_t checkpoints = 8;  // scored after every 1/checkpoints of the budget
  int64_t batch_size = 32;
  std::string optimizer = "adam";
  double lr = 1e-3;
  FlagOptions flag;
};

// Cross-entropy of every row on its own label (float64, from the logits, so that it does
// not saturate at p = 1 in float).
torch::Tensor own_label_losses(Classifier& model, const Dataset& data, int64_t batch) {
  auto logits = predict_logits(model, data.x, batch).to(torch::kDouble);
  auto y = data.y.to(torch::kCPU, torch::kLong).unsqueeze(1);
  return -torch::log_softmax(logits, 1).gather(1, y).squeeze(1);
}

class EarlyLoss : public Identifier {
 public:
  explicit EarlyLoss(EarlyLossOptions o) : o_(std::move(o)) {}

  Identification identify(const ClassifierPtr& suspect, const DefenseContext& ctx, Rng& rng) override {
    const auto& arch = suspect->spec.arch;
    if (!ModelRegistry::instance().has(arch) || arch == "torchscript")
      fail("identify early_loss trains a fresh model of the suspect's architecture, and '{}' is not a built-in one "
           "(use identify: token_stats for text, or dmm)",
           arch);
    StageTimer timer("identify");
    Identification id;
    id.method = "early_loss";
    torch::manual_seed(rng.fork_seed("early_loss/init"));
    auto fresh = make_model(arch, suspect->spec.input, suspect->spec.options, "identify early_loss");
    fresh->to(ctx.device);
    Rng order(rng.fork_seed("early_loss/order"));

    TrainOptions t;
    t.epochs = static_cast<int64_t>(std::ceil(o_.epochs));
    t.batch_size = o_.batch_size;
    t.optimizer = OptimizerConfig{o_.optimizer, o_.lr, 0.9, 0.0};
    t.schedule = "constant";
    t.label = "identify early_loss";
    const int64_t total =
        std::max<int64_t>(1, std::llround(o_.epochs * steps_per_epoch(ctx.train.size(), o_.batch_size)));
    torch::Tensor rank_sum;
    int64_t scored = 0;
    nlohmann::json at = nlohmann::json::array();
    auto on_step = [&](int64_t step) {
      const int64_t next = std::max<int64_t>(1, total * (scored + 1) / o_.checkpoints);
      if (step >= next) {
        auto r = fractional_ranks(own_label_losses(*fresh, ctx.train, o_.flag.score_batch));
        rank_sum = rank_sum.defined() ? rank_sum + r : r;
        ++scored;
        at.push_back(step);
      }
      return step < total;
    };
    train_supervised(*fresh, ctx.train, t, order, {}, nullptr, on_step);
    id.scores = rank_sum / static_cast<double>(scored);
    flag_by_target_vote(id, suspect_predictions(*suspect, ctx, o_.flag), ctx.train.y, o_.flag);
    id.details["identify"]["steps"] = total;
    id.details["identify"]["scored_at_steps"] = at;
    id.stages.push_back(timer.finish());
    return id;
  }

 private:
  EarlyLossOptions o_;
};

const OptionTable<EarlyLossOptions>& early_loss_table() {
  static const OptionTable<EarlyLossOptions> t = [] {
    using O = EarlyLossOptions;
    OptionTable<O> t;
    t.add("fresh_epochs", &O::epochs, "the fresh model's training budget, in epochs (fractions allowed)",
          positive<double>());
    t.add("fresh_checkpoints", &O::checkpoints, "rows scored after every 1/checkpoints of the budget",
          at_least<int64_t>(1));
    t.add("fresh_batch", &O::batch_size, "batch of the fresh model", positive<int64_t>());
    t.add("fresh_optimizer", &O::optimizer, "optimizer of the fresh model", one_of({"sgd", "adam", "adamw"}));
    t.add("fresh_lr", &O::lr, "learning rate of the fresh model", positive<double>());
    flag_keys(t, &O::flag);
    return t;
  }();
  return t;
}

IdentifierPtr make_early_loss(Params& p, const DefenseSetup&) {
  EarlyLossOptions o;
  early_loss_table().read(p, o);
  return std::make_shared<EarlyLoss>(o);
}

Registrar<IdentifierRegistry> reg("early_loss", make_early_loss,
                                  "a fresh model trained briefly fits the poisoned rows first: rows ranked by their "
                                  "loss over several checkpoints",
                                  [] { return table_docs(early_loss_table()); });

}  // namespace
}  // namespace antidote
