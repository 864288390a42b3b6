// BeDKD: the shared loss on a hand-worked example, the label flip, the identification
// filters, the punish step, order invariance, and a small end-to-end run.
#include <gtest/gtest.h>

#include "support.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <set>
#include <vector>

#include "antidote/defenses/bedkd/bedkd.hpp"
#include "antidote/defenses/defense.hpp"
#include "antidote/pipeline/experiment.hpp"
#include "antidote/train/train.hpp"

using namespace antidote;
using antidote::testing::CellRecipe;
using antidote::testing::data_present;
using antidote::testing::sst2_badnet_word;
using antidote::testing::suspect_then_defense;

namespace {

ModelOutput out(torch::Tensor logits, torch::Tensor features) {
  ModelOutput o;
  o.logits = std::move(logits);
  o.features = std::move(features);
  return o;
}

std::set<int64_t> as_set(const torch::Tensor& t) {
  auto c = t.to(torch::kCPU, torch::kLong).contiguous();
  return std::set<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

}  // namespace

TEST(BeDKD, KdLossHandWorked) {
  // Student logits z_S = [[1, 0], [0, 0]], teacher z_T = [[0, 0], [2, 0]], labels [0, 1], T = 2.
  // CE   = ( ln(1 + e^-1) + ln 2 ) / 2 = (0.3132617 + 0.6931472) / 2 = 0.5032044
  // KL   row 0: p = softmax([0, 0]) = [.5, .5],  q = softmax([.5, 0]) = [.6224593, .3775407]
  //            .5·ln(.5/.6224593) + .5·ln(.5/.3775407) = 0.0309204
  //      row 1: p = softmax([1, 0]) = [.7310586, .2689414], q = [.5, .5]
  //            .7310586·ln(1.4621172) + .2689414·ln(.5378828) = 0.1109535
  //      batch mean = 0.0709369 (no T² factor)
  // MSE  h_S = [[1, 2], [0, 0]], h_T = [[0, 2], [1, 1]]: squares 1, 0, 1, 1 -> 3/4 = 0.75
  // L    = 0.3·0.5032044 + 0.7·(0.0709369 + 0.75) = 0.1509613 + 0.5746559 = 0.7256172
  auto s = out(torch::tensor({{1.0f, 0.0f}, {0.0f, 0.0f}}), torch::tensor({{1.0f, 2.0f}, {0.0f, 0.0f}}));
  auto t = out(torch::tensor({{0.0f, 0.0f}, {2.0f, 0.0f}}), torch::tensor({{0.0f, 2.0f}, {1.0f, 1.0f}}));
  auto y = torch::tensor({0, 1}, torch::kLong);
  auto terms = bedkd::kd_terms(s, t, y, 2.0);
  EXPECT_NEAR(terms.ce.item<double>(), 0.5032044, 1e-6);
  EXPECT_NEAR(terms.kl.item<double>(), 0.0709369, 1e-6);
  EXPECT_NEAR(terms.mse.item<double>(), 0.75, 1e-7);
  EXPECT_NEAR(terms.total.item<double>(), 0.7256172, 1e-6);
  EXPECT_NEAR(bedkd::kd_loss(s, t, y, 2.0).item<double>(), 0.7256172, 1e-6);
  // alpha = 1 leaves CE alone, and the distillation terms are not computed.
  EXPECT_NEAR(bedkd::kd_loss(s, t, y, 2.0, {1.0, 1.0, 1.0}).item<double>(), 0.5032044, 1e-6);
  auto ce_only = bedkd::kd_terms(s, t, y, 2.0, {1.0, 1.0, 1.0});
  EXPECT_EQ(ce_only.kl.item<double>(), 0.0);
  EXPECT_EQ(ce_only.mse.item<double>(), 0.0);
  // w_mse = 0: L = 0.3·CE + 0.7·KL = 0.1509613 + 0.0496558 = 0.2006172.
  EXPECT_NEAR(bedkd::kd_loss(s, t, y, 2.0, {0.3, 1.0, 0.0}).item<double>(), 0.2006172, 1e-6);
}

TEST(BeDKD, KdLossMasksPaddingOnlyWhenAsked) {
  // Token states [1, 3, 2]; the third token is padding. Squares: 1, 0 | 0, 4 | 25, 25.
  // All elements: 55 / 6 = 9.1666667. Masked: (1 + 4) / (2 tokens · 2 units) = 1.25.
  auto hs = torch::tensor({1.0f, 0.0f, 0.0f, 2.0f, 5.0f, 5.0f}).view({1, 3, 2});
  auto ht = torch::zeros({1, 3, 2});
  auto logits = torch::zeros({1, 2});
  auto y = torch::tensor({0}, torch::kLong);
  auto s = out(logits, hs), t = out(logits, ht);
  EXPECT_NEAR(bedkd::kd_terms(s, t, y, 1.0).mse.item<double>(), 55.0 / 6.0, 1e-5);
  auto mask = torch::tensor({1, 1, 0}, torch::kLong).ne(0).view({1, 3});
  EXPECT_NEAR(bedkd::kd_terms(s, t, y, 1.0, {}, mask).mse.item<double>(), 1.25, 1e-6);
  // A batch cut to its longest row (TrainBatches) drops the padding position: the masked
  // MSE is unchanged, the unmasked one is not (5 / 4 = 1.25 against 9.17), which is why
  // the AKD passes keep every position unless mask_padding is on.
  auto sc = out(logits, hs.slice(1, 0, 2)), tc = out(logits, ht.slice(1, 0, 2));
  EXPECT_NEAR(bedkd::kd_terms(sc, tc, y, 1.0, {}, mask.slice(1, 0, 2)).mse.item<double>(), 1.25, 1e-6);
  EXPECT_NEAR(bedkd::kd_terms(sc, tc, y, 1.0).mse.item<double>(), 1.25, 1e-6);
}

TEST(BeDKD, FlipRule) {
  auto k2 = bedkd::flip_labels(torch::tensor({0, 1, 1, 0}, torch::kLong), 2);
  EXPECT_TRUE(torch::equal(k2, torch::tensor({1, 0, 0, 1}, torch::kLong)));
  auto k4 = bedkd::flip_labels(torch::tensor({0, 1, 2, 3}, torch::kLong), 4);
  EXPECT_TRUE(torch::equal(k4, torch::tensor({1, 2, 3, 0}, torch::kLong)));
  auto k4s = bedkd::flip_labels(torch::tensor({0, 1, 2, 3}, torch::kLong), 4, -1);
  EXPECT_TRUE(torch::equal(k4s, torch::tensor({3, 0, 1, 2}, torch::kLong)));
  EXPECT_THROW(bedkd::flip_labels(torch::tensor({0}, torch::kLong), 4, 4), Error);
  EXPECT_THROW(bedkd::flip_labels(torch::tensor({0}, torch::kLong), 1), Error);
}

TEST(BeDKD, ScoreIsMeanAbsoluteProbabilityChange) {
  auto pb = torch::tensor({{0.9f, 0.1f, 0.0f}, {0.2f, 0.3f, 0.5f}});
  auto pd = torch::tensor({{0.1f, 0.9f, 0.0f}, {0.2f, 0.3f, 0.5f}});
  auto s = bedkd::direction_scores(pb, pd);
  EXPECT_NEAR(s[0].item<double>(), 1.6 / 3, 1e-6);  // (.8 + .8 + 0) / 3
  EXPECT_NEAR(s[1].item<double>(), 0.0, 1e-7);
}

TEST(BeDKD, SelectThresholdCapAndConsistency) {
  // Row:        0     1     2     3     4     5     6     7     8     9
  auto scores = torch::tensor({0.50, 0.05, 0.01, 0.09, 0.02, 0.30, 0.03, 0.10, 0.04, 0.02}, torch::kDouble);
  auto pred = torch::tensor({0, 1, 1, 1, 0, 1, 1, 1, 1, 1}, torch::kLong);
  auto label = torch::tensor({0, 1, 1, 1, 1, 1, 1, 1, 0, 1}, torch::kLong);
  // s < 0.1: rows 1, 2, 3, 4, 6, 8, 9 (row 7 sits on the threshold: not flagged).
  // Sorted by (score, row): 2 (.01), 4 (.02), 9 (.02), 6 (.03), 8 (.04), 1 (.05), 3 (.09).
  SelectOptions o;
  o.threshold = 0.1;
  o.max_flagged = 5;  // -> 2, 4, 9, 6, 8
  o.max_kept = 32;
  auto sel = select_suspects(scores, pred, label, o);
  EXPECT_EQ(sel.below_threshold, 7);
  EXPECT_EQ(sel.after_cap, 5);
  EXPECT_EQ(sel.consistent, 3);  // 4 and 8 disagree with their labels
  EXPECT_TRUE(torch::equal(sel.rows, torch::tensor({2, 9, 6}, torch::kLong)));
  o.max_kept = 2;
  sel = select_suspects(scores, pred, label, o);
  EXPECT_EQ(sel.kept, 2);
  EXPECT_TRUE(torch::equal(sel.rows, torch::tensor({2, 9}, torch::kLong)));
  // No cap before the consistency filter: 2, 9, 6, 1, 3 survive, lowest two kept.
  o.max_flagged = 0;
  o.max_kept = 0;
  sel = select_suspects(scores, pred, label, o);
  EXPECT_TRUE(torch::equal(sel.rows, torch::tensor({2, 9, 6, 1, 3}, torch::kLong)));
  // The all-to-one vote: among 2, 9, 6, 1, 3 (labels 1, 1, 1, 1, 1) label 1 wins; with
  // consistency off, 2, 4, 9, 6, 8, 1, 3 carry labels 1, 1, 1, 1, 0, 1, 1: row 8 goes.
  o.vote = true;
  sel = select_suspects(scores, pred, label, o);
  EXPECT_EQ(sel.voted_label, 1);
  EXPECT_EQ(sel.voted, 5);
  o.consistency = false;
  sel = select_suspects(scores, pred, label, o);
  EXPECT_EQ(sel.voted, 6);
  EXPECT_TRUE(torch::equal(sel.rows, torch::tensor({2, 4, 9, 6, 1, 3}, torch::kLong)));
  // A vote that is not clear keeps nothing: label 1 holds 6 of 7 rows here, so a
  // required share of 0.9 empties the set and 0.8 does not.
  o.vote_min_share = 0.9;
  sel = select_suspects(scores, pred, label, o);
  EXPECT_EQ(sel.kept, 0);
  EXPECT_EQ(sel.voted_label, 1);
  o.vote_min_share = 0.8;
  EXPECT_EQ(select_suspects(scores, pred, label, o).kept, 6);
  o.vote = false;
  o.vote_min_share = 0;
  // Consistency off.
  o.consistency = false;
  o.max_kept = 3;
  sel = select_suspects(scores, pred, label, o);
  EXPECT_TRUE(torch::equal(sel.rows, torch::tensor({2, 4, 9}, torch::kLong)));
}

// vote_by: lowest_mean picks the label whose max_kept lowest rows have the lowest mean
// score, where a count picks the label with the most rows.
TEST(BeDKD, VoteByLowestMeanPicksTheLabelWithTheLowestBottom) {
  // Rows 0-6 carry label 0 with scores .05 .05 .06 .06 .07 .07 .08; rows 7-9 label 1 with
  // .01 .02 .03, and rows 10-12 label 1 with .9. Every prediction equals its label.
  auto scores = torch::tensor({0.05, 0.05, 0.06, 0.06, 0.07, 0.07, 0.08, 0.01, 0.02, 0.03, 0.9, 0.9, 0.9},
                              torch::kDouble);
  auto label = torch::tensor({0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1}, torch::kLong);
  SelectOptions o;
  o.threshold = 0;
  o.max_flagged = 0;
  o.vote = true;
  o.max_kept = 3;
  // Count: 7 rows of label 0 against 6 of label 1.
  auto sel = select_suspects(scores, label, label, o);
  EXPECT_EQ(sel.voted_label, 0);
  EXPECT_TRUE(torch::equal(sel.rows, torch::tensor({0, 1, 2}, torch::kLong)));
  // Lowest three: label 0 (.05 + .05 + .06) / 3 = .0533, label 1 (.01 + .02 + .03) / 3 = .02.
  o.vote_by = "lowest_mean";
  sel = select_suspects(scores, label, label, o);
  EXPECT_EQ(sel.voted_label, 1);
  EXPECT_EQ(sel.voted, 6);
  EXPECT_TRUE(torch::equal(sel.rows, torch::tensor({7, 8, 9}, torch::kLong)));
  // The share guard belongs to the count: label 1 holds 6 of 13 rows, yet it is kept.
  o.vote_min_share = 0.9;
  EXPECT_EQ(select_suspects(scores, label, label, o).kept, 3);
  // Without a cap every row counts: label 0 averages .44 / 7 = .0629, label 1
  // (.06 + 2.7) / 6 = .46, so label 0 wins.
  o.max_kept = 0;
  sel = select_suspects(scores, label, label, o);
  EXPECT_EQ(sel.voted_label, 0);
  EXPECT_EQ(sel.kept, 7);
}

// Ranks scaled to [0, 1]: for .3 .1 .3 .2 the order is .1 (0), .2 (1), then the tied .3s
// share (2 + 3) / 2 = 2.5; divided by n - 1 = 3.
TEST(BeDKD, FractionalRanksShareTiesAndIgnoreRowOrder) {
  auto r = fractional_ranks(torch::tensor({0.3, 0.1, 0.3, 0.2}, torch::kDouble));
  EXPECT_TRUE(torch::allclose(r, torch::tensor({2.5 / 3, 0.0, 2.5 / 3, 1.0 / 3}, torch::kDouble)));
  EXPECT_EQ(fractional_ranks(torch::tensor({0.7})).item<double>(), 0.0);
  torch::manual_seed(4);
  auto s = (torch::rand({200}, torch::kDouble) * 10).floor();  // many ties
  Rng rng(2);
  auto perm = torch::tensor(rng.permutation(200), torch::kLong);
  EXPECT_TRUE(torch::equal(fractional_ranks(s.index_select(0, perm)),
                           fractional_ranks(s).index_select(0, perm)));
  // Whatever the ties, the ranks average (n - 1) / 2 before scaling: 0.5.
  EXPECT_NEAR(fractional_ranks(s).mean().item<double>(), 0.5, 1e-12);
}

TEST(BeDKD, SelectIsIndependentOfRowOrder) {
  const int64_t n = 400;
  torch::manual_seed(3);
  // Coarse scores, so that many rows tie and the tie-break is exercised.
  auto scores = (torch::rand({n}, torch::kDouble) * 20).floor() / 100;
  auto label = torch::randint(0, 3, {n}, torch::kLong);
  auto pred = torch::where(torch::rand({n}) < 0.7, label, (label + 1).remainder(3));
  SelectOptions o;  // reference: threshold .1, 128, consistency, 32
  auto base = select_suspects(scores, pred, label, o);
  ASSERT_GT(base.kept, 0);
  Rng rng(11);
  auto perm = torch::tensor(rng.permutation(n), torch::kLong);
  auto sel = select_suspects(scores.index_select(0, perm), pred.index_select(0, perm),
                                    label.index_select(0, perm), o, perm);
  EXPECT_EQ(as_set(perm.index_select(0, sel.rows)), as_set(base.rows));
  EXPECT_EQ(sel.below_threshold, base.below_threshold);
  EXPECT_EQ(sel.consistent, base.consistent);
}

namespace {

InputSpec tiny_image_spec(int64_t k) {
  InputSpec in;
  in.modality = Modality::Image;
  in.channels = 1;
  in.height = 8;
  in.width = 8;
  in.num_classes = k;
  return in;
}

ClassifierPtr tiny_cnn(int64_t k) {
  YAML::Node opts;
  opts["width"] = 4;
  opts["hidden"] = 16;
  return make_model("cnn", tiny_image_spec(k), opts);
}

// Synthetic images: class c lights row 2c; rows of the "poisoned" tail also get a
// corner patch and the target label 0. `clean_rows` leading rows are the clean pool.
Dataset synthetic(int64_t n, int64_t k, int64_t poisoned_from, uint64_t seed) {
  torch::manual_seed(seed);
  auto y = torch::randint(0, k, {n}, torch::kLong);
  auto x = torch::rand({n, 1, 8, 8}) * 0.3;
  for (int64_t i = 0; i < n; ++i) {
    int64_t c = y[i].item<int64_t>();
    x[i][0][2 * c].add_(0.7);
    if (i >= poisoned_from && c != 0 && i % 5 == 0) {
      x[i][0].slice(0, 6, 8).slice(1, 6, 8).fill_(1.0);
      y[i] = 0;
    }
  }
  return Dataset{x, y, torch::Tensor()};
}

}  // namespace

TEST(BeDKD, PunishStepRaisesTheLoss) {
  set_quiet(true);
  torch::manual_seed(1);
  auto teacher = tiny_cnn(3);
  freeze(*teacher);
  auto student = trainable_copy(*teacher);
  // Start the student a little away from the teacher so every term has a gradient.
  {
    torch::NoGradGuard ng;
    for (auto& p : student->parameters()) p.add_(torch::randn_like(p) * 0.05);
  }
  auto data = synthetic(16, 3, 0, 5);
  auto loss_of = [&] {
    torch::NoGradGuard ng;
    return bedkd::kd_loss(student->forward(data.x), teacher->forward(data.x), data.y, 2.5).item<double>();
  };
  auto opt = make_optimizer(student->parameters(), OptimizerConfig{"adam", 1e-3, 0.0, 0.0});
  double before = loss_of();
  for (int step = 0; step < 3; ++step) {
    auto l = bedkd::kd_loss(student->forward(data.x), teacher->forward(data.x), data.y, 2.5);
    opt->zero_grad();
    (-l).backward();
    opt->step();
  }
  double after = loss_of();
  EXPECT_GT(after, before);
}

// punish_mean: "still" keeps the mean over the rows still punished; "drawn" divides by
// every drawn row, so one row left of 16 gets a sixteenth of the step.
TEST(BeDKD, PunishShareOfStoppedRows) {
  EXPECT_EQ(bedkd::punish_share("still", 1, 16), 1.0);
  EXPECT_EQ(bedkd::punish_share("drawn", 1, 16), 1.0 / 16.0);
  EXPECT_EQ(bedkd::punish_share("drawn", 16, 16), 1.0);
  EXPECT_EQ(bedkd::punish_share("drawn", 0, 16), 0.0);
}

namespace {

struct Fixture {
  Dataset train;
  std::shared_ptr<CleanPool> pool;
  int64_t clean_rows;
};

// `clean_rows` leading rows form the pool (the rest is marked as not clean for the
// pool only: the defense sees no ground truth).
Fixture fixture(int64_t n, int64_t clean_rows, int64_t k) {
  Fixture f;
  f.train = synthetic(n, k, clean_rows, 9);
  f.clean_rows = clean_rows;
  auto not_pool = torch::arange(n) >= clean_rows;
  f.pool = std::make_shared<CleanPool>(f.train.y, not_pool, k, 4);
  return f;
}

ClassifierPtr trained_suspect(const Dataset& data, int64_t k) {
  torch::manual_seed(2);
  auto model = tiny_cnn(k);
  TrainOptions o;
  o.epochs = 8;
  o.batch_size = 32;
  o.optimizer = OptimizerConfig{"adam", 3e-3, 0.0, 0.0};
  o.schedule = "constant";
  Rng rng(1);
  train_supervised(*model, data, o, rng);
  model->eval();
  return model;
}

// The defense's view of a fixture: `train` as the suspicious set, the fixture's pool
// as the clean rows.
DefenseContext context_of(const Fixture& f, const Dataset& train, int64_t k, uint64_t seed) {
  DefenseContext ctx;
  ctx.train = train;
  ctx.clean_data = f.train;
  ctx.clean = f.pool;
  ctx.num_classes = k;
  ctx.seed = seed;
  return ctx;
}

}  // namespace

TEST(BeDKD, IdentificationIsIndependentOfRowOrder) {
  set_quiet(true);
  const int64_t k = 3, n = 600, clean = 240;
  auto f = fixture(n, clean, k);
  auto suspect = trained_suspect(f.train, k);
  YAML::Node opts;
  opts["flip_per_class"] = 20;
  opts["trust_per_class"] = 10;
  opts["flip_epochs"] = 3;
  opts["akd_epochs"] = 0;
  opts["threshold"] = 0;  // rank only, so that the caps decide
  opts["max_flagged"] = 40;
  opts["max_kept"] = 20;
  DefenseSetup setup{Modality::Image, "cnn", k};
  auto run = [&](const Dataset& train) {
    Params p(YAML::Clone(opts), "bedkd");
    auto def = make_defense("bedkd", p, setup);
    p.check_consumed();
    auto ctx = context_of(f, train, k, 7);
    return def->run(suspect, ctx);
  };
  auto base = run(f.train);
  ASSERT_GT(base.flagged.numel(), 0);
  EXPECT_EQ(base.scores.size(0), n);
  // Shuffle the whole training file (the clean set is held separately).
  Rng rng(5);
  auto perm = torch::tensor(rng.permutation(n), torch::kLong);
  auto shuffled = run(f.train.select(perm));
  EXPECT_EQ(as_set(perm.index_select(0, shuffled.flagged)), as_set(base.flagged));
  EXPECT_TRUE(torch::allclose(shuffled.scores, base.scores.index_select(0, perm), 1e-5, 1e-6));
  EXPECT_EQ(shuffled.details["identify"], base.details["identify"]);
}

TEST(BeDKD, RejectsUnknownRecipeAndBadOptions) {
  DefenseSetup setup{Modality::Image, "cnn", 10};
  YAML::Node a;
  a["recipe"] = "nope";
  Params pa(a, "bedkd");
  EXPECT_THROW(make_defense("bedkd", pa, setup), Error);
  YAML::Node b;
  b["flip_shift"] = 10;
  Params pb(b, "bedkd");
  EXPECT_THROW(make_defense("bedkd", pb, setup), Error);
  YAML::Node d;
  d["punish_per_epoch"] = -1;
  Params pd(d, "bedkd");
  EXPECT_THROW(make_defense("bedkd", pd, setup), Error);
  for (auto [key, value] : {std::pair<const char*, const char*>{"score_over", "first"},
                            {"vote_by", "median"},
                            {"punish_mean", "median"},
                            {"punish_batch_norm", "frozen"},
                            {"flip_stop_accuracy", "1.5"}}) {
    YAML::Node e;
    e[key] = value;
    Params pe(e, "bedkd");
    EXPECT_THROW(make_defense("bedkd", pe, setup), Error) << key;
  }
  YAML::Node c;
  c["flip_params"] = "nosuchlayer";
  c["flip_epochs"] = 1;
  c["akd_epochs"] = 0;
  Params pc(c, "bedkd");
  auto def = make_defense("bedkd", pc, DefenseSetup{Modality::Image, "cnn", 3});
  auto f = fixture(120, 120, 3);
  auto ctx = context_of(f, f.train, 3, 0);
  EXPECT_THROW(def->run(tiny_cnn(3), ctx), Error);
}

// A clean set too small for the trust set stops before the distillation (after the
// identification, which decides how many clean rows it used), naming the option and
// the largest value that fits.
TEST(BeDKD, TooSmallACleanSetNamesTrustPerClass) {
  set_quiet(true);
  auto f = fixture(120, 60, 3);  // about 20 clean rows per class
  YAML::Node opts;
  opts["flip_per_class"] = 5;  // the mapping takes the first 5 of each class
  opts["flip_epochs"] = 1;
  opts["trust_per_class"] = 50;
  Params p(opts, "bedkd");
  auto def = make_defense("bedkd", p, DefenseSetup{Modality::Image, "cnn", 3});
  auto ctx = context_of(f, f.train, 3, 0);
  const auto msg = antidote::testing::error_of([&] { def->run(tiny_cnn(3), ctx); });
  EXPECT_NE(msg.find("trust_per_class is 50"), std::string::npos) << msg;
  const int64_t room = f.pool->available(0) - 5;  // class 0 is the first one short
  ASSERT_LT(room, 50);
  EXPECT_NE(msg.find(fmt::format("{} rows of class 0", room)), std::string::npos) << msg;
  EXPECT_NE(msg.find(fmt::format("set trust_per_class: {} or less", room)), std::string::npos) << msg;
}

TEST(BeDKD, EndToEndIsDeterministicAndRecordsStages) {
  set_quiet(true);
  const int64_t k = 3, n = 400, clean = 200;
  auto f = fixture(n, clean, k);
  auto suspect = trained_suspect(f.train, k);
  YAML::Node opts;
  opts["flip_per_class"] = 10;
  opts["trust_per_class"] = 20;
  opts["flip_epochs"] = 2;
  opts["akd_epochs"] = 2;
  DefenseSetup setup{Modality::Image, "cnn", k};
  int monitor_calls = 0;
  auto run = [&] {
    Params p(YAML::Clone(opts), "bedkd");
    auto def = make_defense("bedkd", p, setup);
    auto ctx = context_of(f, f.train, k, 3);
    ctx.monitor = [&](Classifier&) {
      ++monitor_calls;
      return Evaluation{};
    };
    return def->run(suspect, ctx);
  };
  auto a = run();
  auto b = run();
  ASSERT_EQ(a.stages.size(), 3u);
  EXPECT_EQ(a.stages[0].name, "dmm");
  EXPECT_EQ(a.stages[1].name, "identify");
  EXPECT_EQ(a.stages[2].name, "akd");
  EXPECT_EQ(a.clean_samples, k * (10 + 20));
  EXPECT_EQ(monitor_calls, 4);
  ASSERT_EQ(a.details["trajectory"].size(), 2u);
  EXPECT_TRUE(a.details["trajectory"][0].contains("asr"));
  EXPECT_TRUE(torch::equal(a.flagged, b.flagged));
  auto pa = a.model->named_parameters(), pb = b.model->named_parameters();
  for (const auto& kv : pa) EXPECT_TRUE(torch::equal(kv.value(), pb[kv.key()])) << kv.key();
}

// The text recipe's DMM options: scores averaged as ranks over the mapping's epochs
// (every epoch's ranks average 0.5, so their mean does too), and a mapping that stops at
// the first epoch where it reaches flip_stop_accuracy.
TEST(BeDKD, ScoreOverEpochsAndFlipStop) {
  set_quiet(true);
  const int64_t k = 3;
  auto f = fixture(300, 150, k);
  auto suspect = trained_suspect(f.train, k);
  auto run = [&](const char* score_over, int64_t epochs, double stop) {
    YAML::Node opts;
    opts["flip_per_class"] = 10;
    opts["trust_per_class"] = 10;
    opts["flip_alpha"] = 1.0;  // cross-entropy alone and a fast rate: the flip is learned
    opts["flip_lr"] = 0.01;
    opts["flip_epochs"] = epochs;
    opts["akd_epochs"] = 0;
    opts["score_over"] = score_over;
    opts["flip_stop_accuracy"] = stop;
    Params p(opts, "bedkd");
    auto def = make_defense("bedkd", p, DefenseSetup{Modality::Image, "cnn", k});
    auto ctx = context_of(f, f.train, k, 6);
    return def->run(suspect, ctx);
  };
  auto ranked = run("epochs", 4, 0);
  EXPECT_EQ(ranked.details["dmm"]["epochs"].get<int64_t>(), 4);
  EXPECT_NEAR(ranked.scores.to(torch::kDouble).mean().item<double>(), 0.5, 1e-6);
  EXPECT_GE(ranked.scores.min().item<double>(), 0.0);
  EXPECT_LE(ranked.scores.max().item<double>(), 1.0);
  EXPECT_EQ(ranked.details["identify"]["score_over"], "epochs");
  // The mapping follows the same path whatever its length, so the flip accuracy after
  // E epochs is that of a run of E epochs; the stop must come at the first E that
  // reaches the target.
  std::vector<double> reached;
  for (int64_t e = 1; e <= 4; ++e) reached.push_back(run("last", e, 0).details["dmm"]["flip_accuracy"].get<double>());
  const double target = *std::max_element(reached.begin(), reached.end());
  ASSERT_GT(target, 0.0);
  const int64_t first = std::find_if(reached.begin(), reached.end(), [&](double a) { return a >= target; }) -
                        reached.begin() + 1;
  auto stopped = run("last", 4, target);
  EXPECT_EQ(stopped.details["dmm"]["epochs"].get<int64_t>(), first);
  EXPECT_EQ(stopped.details["dmm"]["flip_accuracy"].get<double>(), target);
}

// punish_per_epoch: each punish pass visits a fresh draw of exactly that many rows of
// D_p (without the stopping rule, every drawn row is punished); 0 visits all of D_p.
TEST(BeDKD, PunishPerEpochDrawsThatManyRows) {
  set_quiet(true);
  const int64_t k = 3;
  auto f = fixture(400, 200, k);
  auto suspect = trained_suspect(f.train, k);
  auto run = [&](int64_t per_epoch) {
    YAML::Node opts;
    opts["flip_per_class"] = 10;
    opts["trust_per_class"] = 10;
    opts["flip_epochs"] = 1;
    opts["akd_epochs"] = 3;
    opts["threshold"] = 1.0;  // flag every row, so that D_p is large
    opts["max_flagged"] = 0;
    opts["max_kept"] = 0;
    opts["vote"] = false;
    opts["consistency"] = false;
    opts["punish_stop"] = "none";
    opts["punish_per_epoch"] = per_epoch;
    Params p(opts, "bedkd");
    auto def = make_defense("bedkd", p, DefenseSetup{Modality::Image, "cnn", k});
    auto ctx = context_of(f, f.train, k, 5);
    return def->run(suspect, ctx);
  };
  auto drawn = run(7);
  ASSERT_EQ(drawn.flagged.numel(), 400);
  ASSERT_EQ(drawn.details["trajectory"].size(), 3u);
  for (const auto& row : drawn.details["trajectory"]) EXPECT_EQ(row["punish_rows"].get<int64_t>(), 7);
  auto all = run(0);
  for (const auto& row : all.details["trajectory"]) EXPECT_EQ(row["punish_rows"].get<int64_t>(), 400);
  // A draw larger than D_p is all of D_p.
  auto capped = run(1000);
  for (const auto& row : capped.details["trajectory"]) EXPECT_EQ(row["punish_rows"].get<int64_t>(), 400);
}

namespace {

}  // namespace

// Small real data: a Fashion-MNIST subset with BadNets, the shipped default recipe
// with shortened schedules. ASR must fall and clean accuracy must hold.
TEST(BeDKD, IntegrationFashionMnistBadNetsAsrFalls) {
  CellRecipe r;
  r.data.name = "fmnist";
  r.data.path = default_dataset_path("fmnist");
  r.data.train_limit = 4000;
  r.data.test_limit = 1000;
  if (!data_present(r)) GTEST_SKIP() << "Fashion-MNIST not installed at " << r.data.path;
  r.attack.name = "badnets";
  r.attack.poison_rate = 0.1;
  r.attack.target = 0;
  r.arch = "cnn";
  r.train.epochs = 4;
  r.train.batch_size = 64;
  r.train.optimizer = OptimizerConfig{"sgd", 0.05, 0.9, 5e-4};
  YAML::Node opts;
  opts["trust_per_class"] = 120;
  opts["akd_epochs"] = 20;
  auto run = suspect_then_defense(r, "bedkd", opts);
  ASSERT_GT(run.before.asr, 0.8) << "the suspect did not learn the backdoor";
  EXPECT_GE(run.detection.precision, 0.9);
  EXPECT_LT(run.after.asr, 0.5 * run.before.asr);
  EXPECT_GT(run.after.cacc, run.before.cacc - 0.05);
}

// Real text: SST-2's 6920 training rows with BadNet-word at 10 % (400 test rows), the
// default Transformer ([CLS] pooling, 4 epochs), and the shipped text recipe (punish set
// from identify: token_stats) with 20 distillation epochs. The identification is checked
// strictly (its 64 rows were all poisoned on every bench suspect, docs/identify.md); the
// ASR must fall by half and clean accuracy hold within 5 points.
TEST(BeDKD, IntegrationSst2BadnetWordAsrFalls) {
  auto r = sst2_badnet_word();
  if (!data_present(r)) GTEST_SKIP() << "shared text data not found at " << r.data.path;
  YAML::Node opts;
  opts["akd_epochs"] = 20;
  auto run = suspect_then_defense(r, "bedkd", opts);
  ASSERT_GT(run.before.asr, 0.8) << "the suspect did not learn the backdoor";
  std::cerr << fmt::format("sst2 bedkd: before {:.3f}/{:.3f} after {:.3f}/{:.3f} precision {:.3f} ({} kept)\n",
                           run.before.cacc, run.before.asr, run.after.cacc, run.after.asr,
                           run.detection.precision, run.detection.flagged);
  EXPECT_GE(run.detection.precision, 0.9);
  EXPECT_LT(run.after.asr, 0.5 * run.before.asr);
  EXPECT_GT(run.after.cacc, run.before.cacc - 0.05);
}

TEST(BeDKD, IdentifyPicksTheMethodAndGuardsTheMappingKeys) {
  DefenseSetup text{Modality::Text, "transformer", 2};
  auto make = [&](const char* yaml) {
    Params p(YAML::Load(yaml), "bedkd");
    auto d = make_defense("bedkd", p, text);
    p.check_consumed();
    return d;
  };
  EXPECT_NO_THROW(make("{identify: token_stats, flag_count: 32}"));
  EXPECT_NO_THROW(make("{identify: dmm, flip_epochs: 3}"));
  // The text default is not the mapping: its keys would do nothing, so they are errors.
  try {
    make("{flip_epochs: 3}");
    ADD_FAILURE() << "flip_epochs without identify: dmm was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("identify: dmm"), std::string::npos) << e.what();
  }
  EXPECT_THROW(make("{identify: nope}"), Error);
  EXPECT_THROW(make("{identify: token_stats, fresh_epochs: 1}"), Error);  // early_loss's key
  // Images keep the mapping.
  Params p(YAML::Load("{flip_epochs: 3}"), "bedkd");
  EXPECT_NO_THROW(make_defense("bedkd", p, DefenseSetup{Modality::Image, "cnn", 10}));
}

// clean_samples: one total clean budget, split per class as the paper's 80 flipped + 320
// trusted (1 : 4); with an identification that flips nothing every row is trusted.
TEST(BeDKD, ACleanBudgetSplitsIntoFlipAndTrustRows) {
  const DefenseSetup image{Modality::Image, "cnn", 10}, text{Modality::Text, "transformer", 2};
  auto resolved = [](const char* yaml, const DefenseSetup& setup) {
    Params p(YAML::Load(yaml), "bedkd");
    auto d = make_defense("bedkd", p, setup);
    p.check_consumed();
    return d->resolved_options();
  };
  auto small = resolved("{clean_samples: 500}", image);  // 50 a class: 10 flipped, 40 trusted
  EXPECT_EQ(small["flip_per_class"], 10);
  EXPECT_EQ(small["trust_per_class"], 40);
  auto paper = resolved("{clean_samples: 4000}", image);
  EXPECT_EQ(paper["flip_per_class"], 80);
  EXPECT_EQ(paper["trust_per_class"], 320);
  EXPECT_EQ(resolved("{clean_samples: 509}", image)["trust_per_class"], 40);  // 50 a class, the rest unused
  EXPECT_EQ(resolved("{clean_samples: 500}", text)["trust_per_class"], 250);  // token_stats: all trusted
  auto mapped = resolved("{clean_samples: 500, identify: dmm}", text);        // the whole 250 flipped too
  EXPECT_EQ(mapped["flip_per_class"], 50);
  EXPECT_EQ(mapped["trust_per_class"], 200);
  auto error = [&](const char* yaml) {
    try {
      resolved(yaml, image);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(error("{clean_samples: 500, trust_per_class: 30}").find("give clean_samples or trust_per_class"),
            std::string::npos);
  EXPECT_NE(error("{clean_samples: 15}").find("leaves 1 rows per class of 10 classes"), std::string::npos);
}
