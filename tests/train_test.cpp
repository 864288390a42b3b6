// Training pieces: the cosine schedule, epoch batching (with rank striding for
// data-parallel workers), the random shift augmentation, the NaN guard, optimizers,
// and a tiny end-to-end train_supervised run.
#include <gtest/gtest.h>

#include "support.hpp"

#include <cmath>
#include <set>

#include "antidote/data/data.hpp"
#include "antidote/train/train.hpp"

using namespace antidote;
using antidote::testing::error_of;

namespace {
std::vector<int64_t> to_vec(const torch::Tensor& t) {
  auto c = t.to(torch::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

}  // namespace

TEST(TrainSchedule, CosineValues) {
  // ½·base·(1 + cos(π·step/total))
  EXPECT_NEAR(cosine_lr(0.1, 0, 10), 0.1, 1e-15);     // cos 0 = 1
  EXPECT_NEAR(cosine_lr(0.1, 5, 10), 0.05, 1e-15);    // cos π/2 = 0
  EXPECT_NEAR(cosine_lr(0.1, 10, 10), 0.0, 1e-15);    // cos π = −1
  EXPECT_NEAR(cosine_lr(0.1, 3, 12), 0.0853553, 1e-7);  // .05·(1 + √2/2) = .05·1.7071068
  EXPECT_NEAR(cosine_lr(0.2, 2, 3), 0.05, 1e-12);     // .1·(1 + cos 2π/3) = .1·.5
  EXPECT_NEAR(cosine_lr(0.3, 4, 0), 0.3, 1e-15);      // no steps: the base rate
  // Monotone non-increasing over the run.
  for (int s = 1; s <= 20; ++s) EXPECT_LE(cosine_lr(1.0, s, 20), cosine_lr(1.0, s - 1, 20));
}

TEST(TrainSchedule, LinearWarmupThenTheSchedule) {
  // Warm-up over 4 of 12 steps: base·(step + 1)/4, then cosine over the other 8.
  EXPECT_NEAR(scheduled_lr(0.2, "cosine", 0, 12, 4), 0.05, 1e-15);
  EXPECT_NEAR(scheduled_lr(0.2, "cosine", 2, 12, 4), 0.15, 1e-15);
  EXPECT_NEAR(scheduled_lr(0.2, "cosine", 3, 12, 4), 0.2, 1e-15);
  EXPECT_NEAR(scheduled_lr(0.2, "cosine", 4, 12, 4), 0.2, 1e-15);   // cosine step 0 of 8
  EXPECT_NEAR(scheduled_lr(0.2, "cosine", 8, 12, 4), 0.1, 1e-15);   // step 4 of 8: cos π/2
  EXPECT_NEAR(scheduled_lr(0.2, "constant", 1, 12, 4), 0.1, 1e-15);
  EXPECT_NEAR(scheduled_lr(0.2, "constant", 9, 12, 4), 0.2, 1e-15);
  // No warm-up: the schedule as it was.
  for (int s = 0; s <= 12; ++s) EXPECT_EQ(scheduled_lr(0.2, "cosine", s, 12, 0), cosine_lr(0.2, s, 12));
}

TEST(TrainAverage, ExponentialMovingAverageOfParameters) {
  // decay 0.5: avg = 1 → .5·1 + .5·3 = 2 → .5·2 + .5·5 = 3.5; the second entry
  // −2 → .5·(−2) + .5·0 = −1 → .5·(−1) + .5·4 = 1.5.
  auto p = torch::tensor({1.0f, -2.0f}).requires_grad_(true);
  WeightAverage avg({p}, 0.5);
  {
    torch::NoGradGuard ng;
    p.copy_(torch::tensor({3.0f, 0.0f}));
  }
  avg.update();
  {
    torch::NoGradGuard ng;
    p.copy_(torch::tensor({5.0f, 4.0f}));
  }
  avg.update();
  EXPECT_FLOAT_EQ(p[0].item<float>(), 5.0f);  // untouched until apply()
  avg.apply();
  EXPECT_FLOAT_EQ(p[0].item<float>(), 3.5f);
  EXPECT_FLOAT_EQ(p[1].item<float>(), 1.5f);
  EXPECT_TRUE(p.requires_grad());
  EXPECT_NE(error_of([&] { WeightAverage bad({p}, 1.0); }).find("decay"), std::string::npos);
}

TEST(TrainBatches, InOrderPartition) {
  auto b = epoch_batches(10, 4, nullptr);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(to_vec(b[0]), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(to_vec(b[1]), (std::vector<int64_t>{4, 5, 6, 7}));
  EXPECT_EQ(to_vec(b[2]), (std::vector<int64_t>{8, 9}));
  EXPECT_TRUE(epoch_batches(0, 4, nullptr).empty());
  EXPECT_THROW(epoch_batches(10, 0, nullptr), Error);
}

TEST(TrainBatches, RankStriding) {
  // World 2, in order, global batches of 4: {0..3}, {4..7}, {8, 9}; rank 0 takes every
  // other row of each from the first, rank 1 from the second.
  auto r0 = epoch_batches(10, 4, nullptr, 0, 2);
  auto r1 = epoch_batches(10, 4, nullptr, 1, 2);
  ASSERT_EQ(r0.size(), 3u);
  ASSERT_EQ(r1.size(), 3u);
  EXPECT_EQ(to_vec(r0[0]), (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(to_vec(r0[1]), (std::vector<int64_t>{4, 6}));
  EXPECT_EQ(to_vec(r0[2]), (std::vector<int64_t>{8}));
  EXPECT_EQ(to_vec(r1[0]), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(to_vec(r1[2]), (std::vector<int64_t>{9}));
  // World 3 over 7 rows in one batch: trimmed to 6 rows so that each worker has 2;
  // row 6 sits this epoch out.
  EXPECT_EQ(to_vec(epoch_batches(7, 10, nullptr, 0, 3)[0]), (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(to_vec(epoch_batches(7, 10, nullptr, 2, 3)[0]), (std::vector<int64_t>{2, 5}));
  // A last batch of 1 row over 2 workers is left out on both: same number of steps.
  EXPECT_EQ(epoch_batches(9, 4, nullptr, 0, 2).size(), 2u);
  EXPECT_EQ(epoch_batches(9, 4, nullptr, 1, 2).size(), 2u);
  EXPECT_EQ(steps_per_epoch(9, 4, 2), 2);
  EXPECT_EQ(steps_per_epoch(10, 4, 2), 3);
  EXPECT_EQ(steps_per_epoch(9, 4, 1), 3);
  EXPECT_NE(error_of([] { epoch_batches(10, 1, nullptr, 0, 2); }).find("smaller than the 2 workers"),
            std::string::npos);
}

TEST(TrainBatches, ShuffledWorkersPartitionTheEpoch) {
  // Every worker seeds the same permutation; together they see each row exactly once
  // (24 rows, global batches of 6, 2 rows per worker and step).
  const int64_t n = 24;
  std::multiset<int64_t> seen;
  for (int rank = 0; rank < 3; ++rank) {
    Rng rng(99);
    for (const auto& b : epoch_batches(n, 6, &rng, rank, 3)) {
      EXPECT_EQ(b.numel(), 2);
      for (auto i : to_vec(b)) seen.insert(i);
    }
  }
  ASSERT_EQ(seen.size(), static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(seen.count(i), 1u) << i;

  // Same seed -> same batches; the order is actually shuffled.
  Rng a(5), b(5);
  auto ba = epoch_batches(50, 50, &a), bb = epoch_batches(50, 50, &b);
  EXPECT_EQ(to_vec(ba[0]), to_vec(bb[0]));
  std::vector<int64_t> identity(50);
  for (int i = 0; i < 50; ++i) identity[static_cast<size_t>(i)] = i;
  EXPECT_NE(to_vec(ba[0]), identity);
}

TEST(TrainAugment, RandomShiftKeepsContent) {
  // A 2×2 block of ones at rows/cols 2..3 of a 6×6 image stays inside after any shift
  // of at most 2 pixels, so each output holds the same four ones, translated.
  const int64_t B = 32;
  auto img = torch::zeros({B, 1, 6, 6});
  img.slice(2, 2, 4).slice(3, 2, 4).fill_(1.0);
  Rng rng(3);
  auto out = random_shift(img, 2, rng);
  ASSERT_EQ(out.sizes(), img.sizes());
  int moved = 0;
  for (int64_t b = 0; b < B; ++b) {
    auto o = out[b][0];
    EXPECT_FLOAT_EQ(o.sum().item<float>(), 4.0f);
    auto nz = o.nonzero();  // row-major: first entry is the block's top-left
    int64_t r = nz[0][0].item<int64_t>(), c = nz[0][1].item<int64_t>();
    EXPECT_GE(r, 0);
    EXPECT_LE(r, 4);
    EXPECT_GE(c, 0);
    EXPECT_LE(c, 4);
    EXPECT_TRUE(torch::equal(o.slice(0, r, r + 2).slice(1, c, c + 2), torch::ones({2, 2})));
    if (r != 2 || c != 2) ++moved;
  }
  // Each image stays put with probability 1/25; all 32 staying put is impossible in practice.
  EXPECT_GT(moved, 0);
  Rng again(3);
  EXPECT_TRUE(torch::equal(random_shift(img, 2, again), out)) << "same seed, same shifts";
  // Pad 0 is the identity.
  Rng z(1);
  EXPECT_TRUE(torch::equal(random_shift(img, 0, z), img));
}

TEST(TrainGuard, CheckFinite) {
  EXPECT_NO_THROW(check_finite(torch::tensor(1.5), "ok"));
  auto msg = error_of([] { check_finite(torch::tensor(std::nan("")), "stage X"); });
  EXPECT_NE(msg.find("stage X"), std::string::npos) << msg;
  EXPECT_NE(msg.find("NaN"), std::string::npos) << msg;
  msg = error_of([] { check_finite(torch::tensor(INFINITY), "stage Y"); });
  EXPECT_NE(msg.find("stage Y"), std::string::npos) << msg;
  EXPECT_NE(msg.find("infinite"), std::string::npos) << msg;
}

TEST(TrainOptimizer, MakeAndSetLearningRate) {
  auto w = torch::zeros({3}, torch::requires_grad());
  auto sgd = make_optimizer({w}, OptimizerConfig{"sgd", 0.1, 0.9, 0.0});
  set_learning_rate(*sgd, 0.25);
  EXPECT_DOUBLE_EQ(sgd->param_groups()[0].options().get_lr(), 0.25);
  // One SGD step on loss = Σ w·[1, 2, 3] at lr .25, no momentum history: w = −.25·[1, 2, 3].
  auto loss = (w * torch::tensor({1.0f, 2.0f, 3.0f})).sum();
  loss.backward();
  sgd->step();
  EXPECT_TRUE(torch::allclose(w.detach(), torch::tensor({-0.25f, -0.5f, -0.75f})));
  EXPECT_NO_THROW(make_optimizer({w}, OptimizerConfig{"adam", 1e-3, 0.9, 0.0}));
  auto msg = error_of([&] { make_optimizer({w}, OptimizerConfig{"rmsprop", 0.1, 0.9, 0.0}); });
  EXPECT_NE(msg.find("rmsprop"), std::string::npos) << msg;
  EXPECT_THROW(make_optimizer({w}, OptimizerConfig{"sgd", 0.0, 0.9, 0.0}), Error);
  EXPECT_THROW(make_optimizer({w}, OptimizerConfig{"sgd", -1.0, 0.9, 0.0}), Error);
}

namespace {
// 32 images 1×4×4: class 0 bright on the left half, class 1 bright on the right half.
Dataset separable() {
  Dataset d;
  d.x = torch::zeros({32, 1, 4, 4});
  std::vector<int64_t> y(32);
  for (int64_t i = 0; i < 32; ++i) {
    y[static_cast<size_t>(i)] = i % 2;
    d.x[i][0].slice(1, (i % 2) * 2, (i % 2) * 2 + 2).fill_(0.5 + 0.01 * static_cast<double>(i));
  }
  d.y = torch::tensor(y, torch::kLong);
  return d;
}

InputSpec tiny_image_spec() {
  InputSpec in;
  in.channels = 1;
  in.height = in.width = 4;
  in.num_classes = 2;
  return in;
}

double loss_of(Classifier& m, const Dataset& d) {
  torch::NoGradGuard ng;
  m.eval();
  auto l = torch::cross_entropy_loss(m.logits(d.x), d.y).item<double>();
  m.train();
  return l;
}

// Token-id rows [CLS] w w ... [PAD] with the given lengths ([CLS] included).
torch::Tensor token_rows(const std::vector<int64_t>& lengths, int64_t width) {
  auto x = torch::zeros({static_cast<int64_t>(lengths.size()), width}, torch::kLong);
  for (size_t i = 0; i < lengths.size(); ++i)
    for (int64_t j = 0; j < lengths[i]; ++j) x[static_cast<int64_t>(i)][j] = j == 0 ? Vocab::kCls : 5 + j;
  return x;
}
ClassifierPtr tiny_text_model(const std::string& arch, int64_t width) {
  InputSpec in;
  in.modality = Modality::Text;
  in.vocab_size = 20;
  in.max_len = width;
  in.num_classes = 2;
  return make_model(arch, in, YAML::Load(arch == "transformer" ? "{dim: 8, heads: 2, layers: 1, ff: 8}" : "{}"));
}

struct CountingSync : GradientSync {
  int calls = 0, world = 1, my_rank = 0;
  void sync(const std::vector<torch::Tensor>&) override { ++calls; }
  int rank() const override { return my_rank; }
  int world_size() const override { return world; }
};
}  // namespace

TEST(TrainBatches, GroupsTokenRowsByLengthAndCutsPadding) {
  // Lengths 3 5 2 5 4 1 3 2, batch 2, file order: one window (2 x 16 rows) holds all 8
  // rows, sorted longest first, equal lengths in row order: 1 3 | 4 0 | 6 2 | 7 5, and
  // each batch is cut to its longest row: widths 5, 4, 3, 2 of 6.
  auto model = tiny_text_model("transformer", 6);
  auto x = token_rows({3, 5, 2, 5, 4, 1, 3, 2}, 6);
  TrainBatches batches(*model, x, 2);
  ASSERT_TRUE(batches.grouped());
  auto b = batches.epoch(nullptr);
  ASSERT_EQ(b.size(), 4u);
  const std::vector<std::vector<int64_t>> expected{{1, 3}, {4, 0}, {6, 2}, {7, 5}};
  const std::vector<int64_t> widths{5, 4, 3, 2};
  for (size_t i = 0; i < b.size(); ++i) {
    EXPECT_EQ(to_vec(b[i]), expected[i]) << i;
    auto rows = batches.rows(b[i]);
    EXPECT_EQ(rows.size(1), widths[i]) << i;
    EXPECT_TRUE(torch::equal(rows, x.index_select(0, b[i]).slice(1, 0, widths[i]))) << i;
  }
  // The cut positions were padding: the logits match the uncut rows'.
  torch::NoGradGuard ng;
  model->eval();
  auto cut = model->logits(batches.rows(b[1]));
  auto uncut = model->logits(x.index_select(0, b[1]));
  EXPECT_TRUE(torch::allclose(cut, uncut, 1e-5, 1e-6));
}

TEST(TrainBatches, ShuffledGroupsPartitionTheEpochAndRepeatWithTheSeed) {
  // 300 rows of random lengths, batch 9 (windows of 144 rows): every row once per epoch,
  // on one worker or split over 3 (9 and the last batch's 3 rows divide by 3); the same
  // seed gives the same batches; batches are shorter than plain epoch_batches' (the
  // point of grouping).
  const int64_t n = 300, width = 40;
  std::vector<int64_t> lengths;
  Rng lr(3);
  for (int64_t i = 0; i < n; ++i) lengths.push_back(2 + lr.below(width - 1));
  auto x = token_rows(lengths, width);
  auto model = tiny_text_model("transformer", width);
  TrainBatches batches(*model, x, 9);
  for (int world : {1, 3}) {
    std::multiset<int64_t> seen;
    for (int rank = 0; rank < world; ++rank) {
      Rng rng(42);
      for (const auto& b : batches.epoch(&rng, rank, world)) {
        EXPECT_LE(b.numel(), 9 / world);
        for (auto i : to_vec(b)) seen.insert(i);
      }
    }
    ASSERT_EQ(seen.size(), static_cast<size_t>(n)) << world;
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(seen.count(i), 1u) << i;
  }
  Rng a(7), b(7), c(7);
  auto ba = batches.epoch(&a), bb = batches.epoch(&b);
  ASSERT_EQ(ba.size(), bb.size());
  for (size_t i = 0; i < ba.size(); ++i) EXPECT_EQ(to_vec(ba[i]), to_vec(bb[i]));
  auto width_sum = [&](const std::vector<torch::Tensor>& bs) {
    int64_t s = 0;
    for (const auto& t : bs) s += batches.width(t);
    return s;
  };
  const int64_t plain = width_sum(epoch_batches(n, 9, &c));
  EXPECT_LT(width_sum(ba), plain * 2 / 3) << "grouped " << width_sum(ba) << " plain " << plain;
}

TEST(TrainBatches, OtherInputsKeepEpochBatches) {
  // Images, TextCNN (its max over time reads padding), cut = false and group = false
  // all draw exactly epoch_batches' batches; only group = false still cuts the rows.
  auto x = token_rows({3, 5, 2, 5, 4, 1, 3, 2}, 6);
  auto same_as_plain = [&](const TrainBatches& tb, const torch::Tensor& rows_of) {
    Rng r1(9), r2(9);
    auto got = tb.epoch(&r1), want = epoch_batches(rows_of.size(0), 3, &r2);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(to_vec(got[i]), to_vec(want[i]));
  };
  auto transformer = tiny_text_model("transformer", 6);
  auto textcnn = tiny_text_model("textcnn", 6);
  TrainBatches no_cut(*transformer, x, 3, /*cut=*/false), no_group(*transformer, x, 3, true, /*group=*/false),
      cnn_text(*textcnn, x, 3);
  same_as_plain(no_cut, x);
  same_as_plain(no_group, x);
  same_as_plain(cnn_text, x);
  EXPECT_FALSE(no_cut.grouped());
  EXPECT_FALSE(cnn_text.grouped());
  auto first = torch::tensor({0, 2}, torch::kLong);
  EXPECT_EQ(no_cut.rows(first).size(1), 6);
  EXPECT_EQ(cnn_text.rows(first).size(1), 6);
  EXPECT_EQ(no_group.rows(first).size(1), 3);
  auto images = torch::rand({7, 1, 4, 4});
  auto cnn = make_model("cnn", tiny_image_spec(), YAML::Load("{width: 2, hidden: 4}"));
  TrainBatches image_batches(*cnn, images, 3);
  same_as_plain(image_batches, images);
  EXPECT_TRUE(torch::equal(image_batches.rows(first), images.index_select(0, first)));
}

TEST(TrainSupervised, LowersLossOnSeparableData) {
  set_quiet(true);
  torch::manual_seed(1);
  auto model = make_model("cnn", tiny_image_spec(), YAML::Load("{width: 4, hidden: 8}"));
  auto data = separable();
  double before = loss_of(*model, data);
  TrainOptions o;
  o.epochs = 15;
  o.batch_size = 8;
  o.optimizer = {"adam", 0.02, 0.9, 0.0};
  Rng rng(0);
  int epochs_seen = 0;
  CountingSync sync;
  train_supervised(*model, data, o, rng, [&](int64_t e) { EXPECT_EQ(e, epochs_seen++); }, &sync);
  double after = loss_of(*model, data);
  EXPECT_EQ(epochs_seen, 15);
  EXPECT_EQ(sync.calls, 15 * 4);  // 32 rows / batch 8 = 4 steps per epoch
  EXPECT_LT(after, before * 0.5) << "before " << before << " after " << after;
  torch::NoGradGuard ng;
  model->eval();
  EXPECT_EQ(model->logits(data.x).argmax(1).eq(data.y).sum().item<int64_t>(), 32);
}

TEST(TrainSupervised, SgdCosineAugmentRunsAndRankSeesHalf) {
  set_quiet(true);
  torch::manual_seed(2);
  auto model = make_model("cnn", tiny_image_spec(), YAML::Load("{width: 2, hidden: 4}"));
  TrainOptions o;
  o.epochs = 2;
  o.batch_size = 8;
  o.augment = true;
  o.optimizer = {"sgd", 0.05, 0.9, 5e-4};
  Rng rng(4);
  CountingSync sync;
  sync.world = 2;
  sync.my_rank = 1;
  train_supervised(*model, separable(), o, rng, {}, &sync);
  EXPECT_EQ(sync.calls, 2 * 4);  // 32 rows / global batch 8 = 4 steps per epoch (4 rows each for rank 1)
  for (const auto& p : model->parameters()) EXPECT_TRUE(torch::isfinite(p).all().item<bool>());
}

TEST(TrainSupervised, SameSeedSameWeights) {
  set_quiet(true);
  torch::manual_seed(3);
  auto a = make_model("cnn", tiny_image_spec(), YAML::Load("{width: 2, hidden: 4}"));
  auto b = a->clone_deep();
  TrainOptions o;
  o.epochs = 2;
  o.batch_size = 5;
  o.augment = true;
  Rng ra(11), rb(11);
  train_supervised(*a, separable(), o, ra);
  train_supervised(*b, separable(), o, rb);
  auto pa = a->named_parameters(), pb = b->named_parameters();
  for (const auto& item : pa) EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();
}

// Plain SGD (no momentum, no decay) over one batch per epoch moves the parameters by
// lr·g; with the gradient's norm clipped to c (it is far larger here) the step's norm is
// exactly lr·c. A warm-up of 2 epochs (2 steps) halves the first step's rate.
TEST(TrainSupervised, ClipNormAndWarmupBoundTheStep) {
  set_quiet(true);
  torch::manual_seed(5);
  auto model = make_model("cnn", tiny_image_spec(), YAML::Load("{width: 2, hidden: 4}"));
  auto flat = [&] {
    std::vector<torch::Tensor> v;
    for (const auto& p : model->parameters()) v.push_back(p.detach().flatten().clone());
    return torch::cat(v);
  };
  TrainOptions o;
  o.epochs = 2;
  o.batch_size = 32;  // the whole set: one step per epoch
  o.optimizer = {"sgd", 0.5, 0.0, 0.0};
  o.schedule = "constant";
  o.clip_norm = 1e-3;
  o.warmup_epochs = 2;
  std::vector<torch::Tensor> after{flat()};
  Rng rng(0);
  train_supervised(*model, separable(), o, rng, [&](int64_t) { after.push_back(flat()); });
  ASSERT_EQ(after.size(), 3u);
  EXPECT_NEAR((after[1] - after[0]).norm().item<double>(), 0.25 * 1e-3, 1e-8);  // lr/2 · c
  EXPECT_NEAR((after[2] - after[1]).norm().item<double>(), 0.5 * 1e-3, 1e-8);   // lr · c
  // Without clipping the same first step is much longer.
  torch::manual_seed(5);
  model = make_model("cnn", tiny_image_spec(), YAML::Load("{width: 2, hidden: 4}"));
  o.clip_norm = 0;
  after = {flat()};
  Rng rng2(0);
  train_supervised(*model, separable(), o, rng2, [&](int64_t) { after.push_back(flat()); });
  EXPECT_GT((after[1] - after[0]).norm().item<double>(), 10 * 0.25 * 1e-3);
}

TEST(TrainSupervised, NanLossIsAClearError) {
  set_quiet(true);
  torch::manual_seed(4);
  auto model = make_model("cnn", tiny_image_spec(), YAML::Load("{width: 2, hidden: 4}"));
  auto data = separable();
  data.x[3][0][0][0] = std::nan("");
  TrainOptions o;
  o.epochs = 1;
  o.batch_size = 32;
  o.label = "nan-run";
  Rng rng(0);
  auto msg = error_of([&] { train_supervised(*model, data, o, rng); });
  EXPECT_NE(msg.find("nan-run"), std::string::npos) << msg;
  EXPECT_NE(msg.find("NaN"), std::string::npos) << msg;
}
