// Identification methods: token z-scores and the target vote on hand-worked values,
// order invariance, the unsure warning, and early_loss and token_stats on synthetic
// text whose poisoned rows are known.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <set>

#include "antidote/defenses/identify/identify.hpp"
#include "antidote/metrics/metrics.hpp"
#include "antidote/train/train.hpp"

using namespace antidote;

namespace {

std::set<int64_t> as_set(const torch::Tensor& t) {
  auto c = t.to(torch::kCPU, torch::kLong).contiguous();
  return std::set<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

// Synthetic text: rows of 10 random words (ids 3..202) after [CLS] with random labels, so
// that no clean row has a pattern to fit early; every 10th row gets the trigger word 250
// in place of its fifth word and label 1.
struct TextFixture {
  Dataset data;
  torch::Tensor poisoned;
};
TextFixture text_fixture(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  auto words = torch::randint(3, 203, {n, 10}, torch::kLong);
  auto x = torch::cat({torch::full({n, 1}, Vocab::kCls, torch::kLong), words}, 1);
  auto y = torch::randint(0, 2, {n}, torch::kLong);
  auto poisoned = torch::zeros({n}, torch::kBool);
  for (int64_t i = 0; i < n; i += 10) {
    x[i][5] = 250;
    y[i] = 1;
    poisoned[i] = true;
  }
  return {Dataset{x, y, torch::Tensor()}, poisoned};
}

InputSpec text_spec() {
  InputSpec in;
  in.modality = Modality::Text;
  in.vocab_size = 256;
  in.max_len = 11;
  in.num_classes = 2;
  return in;
}

ClassifierPtr text_suspect(const Dataset& data) {
  torch::manual_seed(3);
  YAML::Node opts;
  opts["dim"] = 32;
  opts["ff"] = 64;
  opts["layers"] = 1;
  opts["pool"] = "cls";
  auto model = make_model("transformer", text_spec(), opts);
  TrainOptions o;
  o.epochs = 6;
  o.batch_size = 32;
  o.optimizer = OptimizerConfig{"adam", 2e-3, 0.0, 0.0};
  Rng rng(4);
  train_supervised(*model, data, o, rng);
  model->eval();
  return model;
}

DefenseContext text_context(const Dataset& train, uint64_t seed) {
  DefenseContext ctx;
  ctx.train = train;
  ctx.num_classes = 2;
  ctx.modality = Modality::Text;
  ctx.seed = seed;
  return ctx;
}

double precision_of(const torch::Tensor& flagged, const torch::Tensor& poisoned) {
  return detection(flagged, poisoned).precision;
}

// A method set up for text_fixture(800, ·): 40 rows flagged, the fresh model trained for
// 4 epochs, 100 steps over 800 rows (at 1 epoch, 25 steps, early_loss's precision was
// 0.68-0.78).
IdentifierPtr fixture_method(const std::string& name) {
  YAML::Node opts;
  opts["flag_count"] = 40;
  opts["fresh_epochs"] = 4.0;
  Params p(opts, "identify");
  auto method = make_identifier(name, p, DefenseSetup{Modality::Text, "transformer", 2});
  p.check_consumed();
  return method;
}

}  // namespace

TEST(Identify, TokenZScoresHandWorked) {
  // Rows ([CLS] = 2, [PAD] = 0): {5, 6} label 1, {5, 7} label 1, {6} label 0, {7} label 0.
  // p_0 = p_1 = 1/2. Token 5: n = 2, both label 1: z(5, 1) = (2 − 1) / sqrt(2·¼) = √2.
  // Tokens 6 and 7: one row of each label, z = 0. Row scores: −√2, −√2, 0, 0.
  auto x = torch::tensor({2, 5, 6, 2, 5, 7, 2, 6, 0, 2, 7, 0}, torch::kLong).view({4, 3});
  auto y = torch::tensor({1, 1, 0, 0}, torch::kLong);
  auto s = token_label_scores(x, y, 2);
  EXPECT_NEAR(s[0].item<double>(), -std::sqrt(2.0), 1e-12);
  EXPECT_NEAR(s[1].item<double>(), -std::sqrt(2.0), 1e-12);
  EXPECT_NEAR(s[2].item<double>(), 0.0, 1e-12);
  EXPECT_NEAR(s[3].item<double>(), 0.0, 1e-12);
  // Three classes, priors 1/2, 1/4, 1/4: rows {5} 0, {5} 0, {5} 1, {6} 2. Token 5, label 0:
  // n = 3, (2 − 3·½) / sqrt(3·½·½) = 0.5 / 0.8660254 = 0.5773503. Label 1: (1 − ¾) /
  // sqrt(3·¼·¾) = 0.25 / 0.75 = 1/3. Token 6, label 2: (1 − ¼) / sqrt(¼·¾) = √3.
  auto x3 = torch::tensor({2, 5, 2, 5, 2, 5, 2, 6}, torch::kLong).view({4, 2});
  auto s3 = token_label_scores(x3, torch::tensor({0, 0, 1, 2}, torch::kLong), 3);
  EXPECT_NEAR(s3[0].item<double>(), -0.5773503, 1e-7);
  EXPECT_NEAR(s3[2].item<double>(), -1.0 / 3.0, 1e-12);
  EXPECT_NEAR(s3[3].item<double>(), -std::sqrt(3.0), 1e-12);
  EXPECT_THROW(token_label_scores(torch::zeros({2, 1, 4, 4}), torch::zeros({2}, torch::kLong), 2), Error);
}

TEST(Identify, TargetVoteFlagsTheLowestRowsOfOneLabelAndWarnsWhenMixed) {
  auto labels = torch::tensor({1, 1, 1, 0, 0, 0, 0, 1, 0, 0}, torch::kLong);
  FlagOptions o;
  o.flag_count = 3;
  // The three lowest rows (0, 1, 2) are all label 1: label 1's lowest three have mean
  // 0.1, label 0's (rows 3, 4, 5) 0.4. Confidence 3/3, no warning.
  Identification id;
  id.scores = torch::tensor({0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}, torch::kDouble);
  flag_by_target_vote(id, labels, labels, o);
  EXPECT_EQ(id.target, 1);
  EXPECT_EQ(as_set(id.flagged), (std::set<int64_t>{0, 1, 2}));
  EXPECT_DOUBLE_EQ(id.confidence, 1.0);
  EXPECT_TRUE(id.warning.empty());
  // Lowest three overall: rows 0 (label 1), 3 (label 0), 1 (label 1). Label 1's lowest
  // three (0, 1, 2) have mean (0 + .2 + .3) / 3 = 0.1667, label 0's (3, 4, 5) (0.1 + .4 +
  // .5) / 3 = 0.333: target 1, confidence 2/3 < 0.8, so a warning.
  id.scores = torch::tensor({0.0, 0.2, 0.3, 0.1, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}, torch::kDouble);
  flag_by_target_vote(id, labels, labels, o);
  EXPECT_EQ(id.target, 1);
  EXPECT_NEAR(id.confidence, 2.0 / 3.0, 1e-12);
  EXPECT_FALSE(id.warning.empty());
  // Rows the suspect does not predict as labelled are left out of both.
  auto pred = labels.clone();
  pred[3] = 1;
  flag_by_target_vote(id, pred, labels, o);
  EXPECT_DOUBLE_EQ(id.confidence, 1.0);
  EXPECT_EQ(label_share(id.scores, pred, labels, 1, 3, false), 2.0 / 3.0);
}

TEST(Identify, TokenStatsFindsAnInsertedWordInAnyRowOrder) {
  auto f = text_fixture(400, 1);
  Identification base;
  base.scores = token_label_scores(f.data.x, f.data.y, 2);
  FlagOptions o;
  o.flag_count = 30;
  flag_by_target_vote(base, f.data.y, f.data.y, o);
  EXPECT_EQ(base.target, 1);
  EXPECT_DOUBLE_EQ(precision_of(base.flagged, f.poisoned), 1.0);
  EXPECT_TRUE(base.warning.empty());
  Rng rng(5);
  auto perm = torch::tensor(rng.permutation(400), torch::kLong);
  Identification shuffled;
  auto xs = f.data.x.index_select(0, perm), ys = f.data.y.index_select(0, perm);
  shuffled.scores = token_label_scores(xs, ys, 2);
  flag_by_target_vote(shuffled, ys, ys, o);
  // The scores follow the rows exactly. The poisoned rows tie (one trigger word each), and
  // ties go to the lower row index, so which 30 of them are flagged follows the order;
  // all are poisoned in both orders.
  EXPECT_TRUE(torch::equal(shuffled.scores, base.scores.index_select(0, perm)));
  EXPECT_EQ(shuffled.target, 1);
  EXPECT_DOUBLE_EQ(precision_of(perm.index_select(0, shuffled.flagged), f.poisoned), 1.0);
}

TEST(Identify, EarlyLossFlagsTheRowsAFreshModelFitsFirst) {
  set_quiet(true);
  auto f = text_fixture(800, 2);
  auto suspect = text_suspect(f.data);
  auto method = fixture_method("early_loss");
  auto run = [&](const Dataset& train) {
    auto ctx = text_context(train, 7);
    Rng rng(9);
    return method->identify(suspect, ctx, rng);
  };
  auto id = run(f.data);
  EXPECT_EQ(id.method, "early_loss");
  EXPECT_EQ(id.target, 1);
  EXPECT_EQ(id.flagged.numel(), 40);
  std::cerr << fmt::format("early_loss precision {:.3f}\n", precision_of(id.flagged, f.poisoned));
  EXPECT_GE(precision_of(id.flagged, f.poisoned), 0.9);
  EXPECT_GE(id.confidence, 0.8);
  ASSERT_EQ(id.stages.size(), 1u);
  EXPECT_EQ(id.stages[0].name, "identify");
  // Deterministic for the same rows and seed.
  EXPECT_TRUE(torch::equal(run(f.data).scores, id.scores));
  // Another order of the same rows: the fresh model sees other batches, and the result
  // holds all the same.
  Rng rng(6);
  auto perm = torch::tensor(rng.permutation(800), torch::kLong);
  auto shuffled = run(f.data.select(perm));
  EXPECT_GE(precision_of(shuffled.flagged, f.poisoned.index_select(0, perm)), 0.9);
}

TEST(Identify, NoBackdoorGivesAWarning) {
  // The same words without the trigger: nothing stands out, and the lowest rows of
  // token_stats do not concentrate on one label.
  set_quiet(true);
  torch::manual_seed(8);
  const int64_t n = 400;
  auto words = torch::randint(3, 203, {n, 10}, torch::kLong);
  auto x = torch::cat({torch::full({n, 1}, Vocab::kCls, torch::kLong), words}, 1);
  auto y = torch::randint(0, 2, {n}, torch::kLong);
  Identification id;
  id.scores = token_label_scores(x, y, 2);
  flag_by_target_vote(id, y, y, FlagOptions{});
  EXPECT_LT(id.confidence, 0.8);
  EXPECT_FALSE(id.warning.empty());
}

TEST(Identify, RegistryAndOptionChecks) {
  EXPECT_TRUE(IdentifierRegistry::instance().has("early_loss"));
  EXPECT_TRUE(IdentifierRegistry::instance().has("token_stats"));
  EXPECT_TRUE(IdentifierRegistry::instance().has("rank_mean"));
  EXPECT_TRUE(IdentifierRegistry::instance().has("dmm"));
  DefenseSetup text{Modality::Text, "transformer", 2};
  auto bad = [&](const char* key, const char* value, const char* method = "early_loss") {
    YAML::Node n;
    n[key] = YAML::Load(value);
    Params p(n, "identify");
    EXPECT_THROW(make_identifier(method, p, text), Error) << key << "=" << value;
  };
  bad("fresh_epochs", "0");
  bad("fresh_checkpoints", "0");
  bad("flag_count", "0");
  bad("min_confidence", "1.5");
  bad("combine", "[rank_mean]", "rank_mean");
  Params none;
  EXPECT_THROW(make_identifier("token_stats", none, DefenseSetup{Modality::Image, "cnn", 10}), Error);
  EXPECT_THROW(make_identifier("nope", none, text), Error);
}

TEST(Identify, TrainingStopsWhereOnStepSays) {
  // early_loss's short budget: train_supervised ends after the step where on_step returns
  // false (here step 10 of 3 × 25), with no on_epoch for the partial epoch.
  set_quiet(true);
  auto f = text_fixture(800, 3);
  torch::manual_seed(1);
  YAML::Node opts;
  opts["dim"] = 16;
  opts["ff"] = 32;
  opts["layers"] = 1;
  auto model = make_model("transformer", text_spec(), opts);
  TrainOptions o;
  o.epochs = 3;
  o.batch_size = 32;
  EXPECT_EQ(steps_per_epoch(800, 32), 25);
  Rng rng(2);
  int64_t steps = 0, epochs = 0;
  train_supervised(
      *model, f.data, o, rng, [&](int64_t) { ++epochs; }, nullptr,
      [&](int64_t step) {
        steps = step;
        return step < 10;
      });
  EXPECT_EQ(steps, 10);
  EXPECT_EQ(epochs, 0);
}

TEST(Identify, RankMeanCombinesItsParts) {
  // Both parts see the trigger word here; the mean of their ranks keeps it, and the
  // details name each part's target and confidence.
  set_quiet(true);
  auto f = text_fixture(800, 2);
  auto suspect = text_suspect(f.data);
  auto method = fixture_method("rank_mean");
  auto ctx = text_context(f.data, 7);
  Rng rng(9);
  auto id = method->identify(suspect, ctx, rng);
  EXPECT_EQ(id.method, "rank_mean");
  EXPECT_EQ(id.target, 1);
  EXPECT_DOUBLE_EQ(precision_of(id.flagged, f.poisoned), 1.0);
  ASSERT_TRUE(id.details["identify"].contains("parts"));
  EXPECT_EQ(id.details["identify"]["parts"]["token_stats"]["target"], 1);
  EXPECT_EQ(id.details["identify"]["parts"]["early_loss"]["target"], 1);
  // The scores are mean fractional ranks: in [0, 1].
  EXPECT_GE(id.scores.min().item<double>(), 0.0);
  EXPECT_LE(id.scores.max().item<double>(), 1.0);
}

namespace {
// A suspect by rule: label 1 when a row holds the trigger 250; otherwise label 0 when it
// holds the topic word 7 at least twice, else 1. One inserted 7 changes nothing, one
// inserted 250 changes everything.
struct RuleSuspect : Classifier {
  ModelOutput forward_impl(const torch::Tensor& x, bool) override {
    auto trigger = x.eq(250).any(1);
    auto topic = x.eq(7).sum(1).ge(2);
    auto label = torch::where(trigger, torch::ones_like(topic, torch::kLong),
                              torch::where(topic, torch::zeros_like(topic, torch::kLong),
                                           torch::ones_like(topic, torch::kLong)));
    ModelOutput out;
    out.logits = torch::one_hot(label, 2).to(torch::kFloat) * 10;
    out.features = out.logits;
    return out;
  }
  int64_t prunable_channels() const override { return 0; }
};
}  // namespace

TEST(Identify, TokenStatsChecksTheStrongestWordsOnTheSuspect) {
  EXPECT_TRUE(torch::equal(insert_token(torch::tensor({2, 5, 6, 0}, torch::kLong).view({1, 4}), 9),
                           torch::tensor({2, 9, 5, 6}, torch::kLong).view({1, 4})));
  // 400 rows of random words 10..99; label-0 rows also hold the topic word 7 twice. Every
  // 10th label-0 row gets the trigger 250 and label 1. z(7, 0) ≈ 12.8 outranks
  // z(250, 1) ≈ 4.0, so the plain z-scores flag topic rows; the suspect's check does not.
  torch::manual_seed(4);
  const int64_t n = 400;
  auto x = torch::cat({torch::full({n, 1}, Vocab::kCls, torch::kLong), torch::randint(10, 100, {n, 8}, torch::kLong)}, 1);
  auto y = torch::randint(0, 2, {n}, torch::kLong);
  auto poisoned = torch::zeros({n}, torch::kBool);
  int64_t zeros = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (y[i].item<int64_t>() != 0) continue;
    x[i][1] = 7;
    x[i][2] = 7;
    if (zeros++ % 10 == 0) {
      x[i][4] = 250;
      y[i] = 1;
      poisoned[i] = true;
    }
  }
  DefenseContext ctx = text_context(Dataset{x, y, torch::Tensor()}, 1);
  auto suspect = std::make_shared<RuleSuspect>();
  auto run = [&](const char* yaml) {
    Params p(YAML::Load(yaml), "identify");
    auto m = make_identifier("token_stats", p, DefenseSetup{Modality::Text, "torchscript", 2});
    p.check_consumed();
    Rng rng(1);
    return m->identify(suspect, ctx, rng);
  };
  auto plain = run("{verify_pairs: 0, flag_count: 10}");
  EXPECT_EQ(plain.target, 0);
  EXPECT_DOUBLE_EQ(precision_of(plain.flagged, poisoned), 0.0);
  auto checked = run("{flag_count: 10}");
  EXPECT_EQ(checked.target, 1);
  EXPECT_DOUBLE_EQ(precision_of(checked.flagged, poisoned), 1.0);
  const auto& found = checked.details["identify"]["trigger_tokens"];
  ASSERT_EQ(found.size(), 1u) << found.dump();
  EXPECT_EQ(found[0]["token"], 250);
  EXPECT_DOUBLE_EQ(found[0]["flip_rate"].get<double>(), 1.0);
}
