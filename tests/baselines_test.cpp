// Mechanism tests of the baseline defenses ft, fp and nad on tiny models and
// synthetic data: pruned channels are zero and stay zero through fine-tuning, the
// attention map matches hand-worked values, the NAD loss falls, FT lowers the
// clean-set cross-entropy, and runs repeat bit for bit.
#include <gtest/gtest.h>

#include <cmath>

#include "antidote/defenses/baselines.hpp"

namespace antidote {
namespace {

InputSpec image_spec() {
  InputSpec s;
  s.modality = Modality::Image;
  s.channels = 1;
  s.height = 8;
  s.width = 8;
  s.num_classes = 3;
  return s;
}

InputSpec text_spec() {
  InputSpec s;
  s.modality = Modality::Text;
  s.vocab_size = 24;
  s.max_len = 8;
  s.num_classes = 2;
  return s;
}

// Class k: noise plus a bright 2x2 patch at a class-specific place.
Dataset image_data(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  auto y = torch::arange(n, torch::kLong).remainder(3);
  auto x = torch::rand({n, 1, 8, 8}) * 0.3;
  for (int64_t i = 0; i < n; ++i) {
    int64_t k = y[i].item<int64_t>();
    x[i].slice(1, 1 + 2 * k, 3 + 2 * k).slice(2, 2, 4).fill_(1.0);
  }
  return Dataset{x, y, torch::zeros({n}, torch::kBool)};
}

// Label = whether token 3 occurs; other tokens random; variable length with padding.
Dataset text_data(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  auto x = torch::randint(4, 24, {n, 8}, torch::kLong);
  x.select(1, 0).fill_(Vocab::kCls);
  auto y = torch::arange(n, torch::kLong).remainder(2);
  for (int64_t i = 0; i < n; ++i) {
    if (y[i].item<int64_t>() == 1) x[i][1 + i % 4] = 3;
    int64_t len = 5 + i % 4;  // 5..8 tokens, the rest padding
    if (len < 8) x[i].slice(0, len, 8).fill_(Vocab::kPad);
  }
  return Dataset{x, y, torch::zeros({n}, torch::kBool)};
}

ClassifierPtr tiny_cnn() {
  YAML::Node o;
  o["width"] = 8;  // 16 prunable channels
  o["hidden"] = 16;
  return make_model("cnn", image_spec(), o);
}

ClassifierPtr tiny_transformer() {
  YAML::Node o;
  o["dim"] = 16;
  o["heads"] = 2;
  o["layers"] = 2;
  o["ff"] = 32;
  return make_model("transformer", text_spec(), o);
}

// A "suspect": the model briefly trained on the data.
void pretrain(Classifier& model, const Dataset& data, int64_t epochs, double lr, const std::string& opt = "sgd") {
  TrainOptions o;
  o.epochs = epochs;
  o.batch_size = 32;
  o.optimizer.name = opt;
  o.optimizer.lr = lr;
  o.optimizer.weight_decay = 0;
  Rng rng(7);
  train_supervised(model, data, o, rng);
  model.eval();
}

DefenseContext context(const Dataset& train, Modality m, int64_t classes, uint64_t seed = 3) {
  DefenseContext ctx;
  ctx.train = train.without_ground_truth();
  ctx.clean_data = train.without_ground_truth();  // all rows are clean here
  ctx.clean = std::make_shared<CleanPool>(train.y, train.poisoned, classes, 11);
  ctx.num_classes = classes;
  ctx.modality = m;
  ctx.seed = seed;
  return ctx;
}

DefenseResult run_defense(const std::string& name, const YAML::Node& options, const ClassifierPtr& suspect,
                          DefenseContext& ctx, const std::string& arch) {
  Params params(YAML::Clone(options), "defense " + name);
  DefenseSetup setup{ctx.modality, arch, ctx.num_classes};
  auto d = make_defense(name, params, setup);
  params.check_consumed();
  return d->run(suspect, ctx);
}

bool same_weights(const Classifier& a, const Classifier& b) {
  auto pa = a.parameters(), pb = b.parameters();
  if (pa.size() != pb.size()) return false;
  for (size_t i = 0; i < pa.size(); ++i)
    if (!torch::equal(pa[i], pb[i])) return false;
  return true;
}

struct Quiet : ::testing::Test {
  void SetUp() override { set_quiet(true); }
};

using BaselineAttention = Quiet;
using BaselineFp = Quiet;
using BaselineFt = Quiet;
using BaselineNad = Quiet;

// A small built-in model of `arch`, for the channel dimension it reports.
ClassifierPtr model_of(const std::string& arch) {
  InputSpec in;
  if (arch != "cnn") {
    in.modality = Modality::Text;
    in.vocab_size = 20;
    in.max_len = 8;
  }
  return make_model(arch, in, YAML::Load(arch == "cnn" ? "{}" : "{dim: 8}"), "test");
}

TEST_F(BaselineAttention, ImageMapMatchesHandWorkedValue) {
  // a [B=1, C=2, H=1, W=2]: channel 0 = (1, 2), channel 1 = (3, -4), p = 2.
  //   Σ_c |a|² per position: (1² + 3², 2² + 4²) = (10, 20)
  //   L2 norm = √(10² + 20²) = √500 = 22.36068
  //   map = (10, 20) / (22.36068 + 1e-6) = (0.4472136, 0.8944272)
  auto a = torch::tensor({1.0f, 3.0f, 2.0f, -4.0f}).view({1, 1, 2, 2}).permute({0, 3, 1, 2}).contiguous();
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{1, 2, 1, 2}));
  auto am = attention_map(a, 2.0, model_of("cnn")->activation_channel_dim(a));
  ASSERT_EQ(am.sizes(), (std::vector<int64_t>{1, 2}));
  EXPECT_NEAR(am[0][0].item<float>(), 0.4472136f, 1e-5);
  EXPECT_NEAR(am[0][1].item<float>(), 0.8944272f, 1e-5);

  // Teacher b: channel 0 = (1, 0), channel 1 = (0, 0) -> map (1, 0).
  //   AT = mean((0.4472136 − 1)², (0.8944272 − 0)²) = (0.3055728 + 0.8) / 2 = 0.5527864
  auto b = torch::zeros({1, 2, 1, 2});
  b[0][0][0][0] = 1.0f;
  auto loss = attention_loss(a, b, 2.0, 1);
  EXPECT_NEAR(loss.item<float>(), 0.5527864f, 1e-5);
  EXPECT_NEAR(attention_loss(a, a, 2.0, 1).item<float>(), 0.0f, 1e-12);
}

TEST_F(BaselineAttention, TextMapsSumOverHiddenAndMaskPadding) {
  // Transformer token states a [B=1, L=3, H=2]: tokens (1, 1), (0, 2), (5, 5) where
  // the third is padding. p = 2: Σ_h |a|² = (2, 4, 50) -> masked (2, 4, 0);
  //   norm = √(4 + 16) = √20 = 4.472136 -> map (0.4472136, 0.8944272, 0).
  auto a = torch::tensor({1.0f, 1.0f, 0.0f, 2.0f, 5.0f, 5.0f}).view({1, 3, 2});
  int64_t ch = model_of("transformer")->activation_channel_dim(a);
  EXPECT_EQ(ch, 2);
  auto mask = torch::tensor({1, 1, 0}).view({1, 3}).to(torch::kBool);
  auto am = attention_map(a, 2.0, ch, mask);
  EXPECT_NEAR(am[0][0].item<float>(), 0.4472136f, 1e-5);
  EXPECT_NEAR(am[0][1].item<float>(), 0.8944272f, 1e-5);
  EXPECT_EQ(am[0][2].item<float>(), 0.0f);
  // NAD's distillation cuts a text batch to its longest row and scales the loss by
  // L_cut / L: the padding position adds 0 to the mean, so the scaled loss is the
  // uncut one. Teacher (1, 0), (0, 0), (3, 3): maps (1, 0, 0) -> AT over 3 positions =
  //   ((0.4472136 − 1)² + 0.8944272²) / 3 = 1.1055728 / 3 = 0.3685243.
  auto t3 = torch::tensor({1.0f, 0.0f, 0.0f, 0.0f, 3.0f, 3.0f}).view({1, 3, 2});
  auto full = attention_loss(a, t3, 2.0, ch, mask);
  EXPECT_NEAR(full.item<float>(), 0.3685243f, 1e-5);
  auto cut = attention_loss(a.slice(1, 0, 2), t3.slice(1, 0, 2), 2.0, ch, mask.slice(1, 0, 2)) * (2.0 / 3.0);
  EXPECT_NEAR(cut.item<float>(), full.item<float>(), 1e-6);
  // TextCNN convolutions are channel-first [B, F, L'].
  EXPECT_EQ(model_of("textcnn")->activation_channel_dim(a), 1);

  // Feature vector [B=1, H=2] = (3, -4): each unit its own position, p = 2:
  //   (9, 16) / √(81 + 256) = (9, 16) / 18.357560 = (0.4902615, 0.8715760)
  auto f = torch::tensor({3.0f, -4.0f}).view({1, 2});
  auto fm = attention_map(f, 2.0, model_of("textcnn")->activation_channel_dim(f));
  EXPECT_NEAR(fm[0][0].item<float>(), 0.4902615f, 1e-5);
  EXPECT_NEAR(fm[0][1].item<float>(), 0.8715760f, 1e-5);
}

TEST_F(BaselineFp, MaskedChannelsStayZeroThroughFineTuning) {
  auto data = image_data(96, 1);
  auto model = tiny_cnn();
  pretrain(*model, data, 2, 0.05);
  auto keep = torch::ones({model->prunable_channels()});
  keep[0] = 0;
  keep[5] = 0;
  keep[15] = 0;
  model->set_prune_mask(keep);
  TrainOptions o;
  o.epochs = 3;
  o.batch_size = 16;
  o.optimizer.lr = 0.05;
  Rng rng(2);
  train_supervised(*model, data, o, rng);
  EXPECT_TRUE(torch::equal(model->prune_mask(), keep));
  model->eval();
  torch::NoGradGuard ng;
  auto act = model->forward_full(data.x, true).activations.back();  // [N, 16, 8, 8]
  for (int64_t c : {0, 5, 15}) EXPECT_EQ(act.select(1, c).abs().max().item<float>(), 0.0f) << "channel " << c;
  EXPECT_GT(act.abs().sum().item<float>(), 0.0f);
}

TEST_F(BaselineFp, PrunesLeastActiveAndKeepsThemZero) {
  auto data = image_data(120, 2);
  auto model = tiny_cnn();
  pretrain(*model, data, 4, 0.05);
  auto ctx = context(data, Modality::Image, 3);
  YAML::Node o;
  o["clean_samples"] = 60;
  o["acc_ratio"] = 0.5;
  o["epochs"] = 3;
  o["prune_step"] = 0.0625;  // one channel of 16 at a time
  auto r = run_defense("fp", o, model, ctx, "cnn");
  ASSERT_TRUE(r.model);
  EXPECT_EQ(r.clean_samples, 60);
  ASSERT_EQ(r.stages.size(), 2u);
  EXPECT_EQ(r.stages[0].name, "prune");
  EXPECT_EQ(r.stages[1].name, "finetune");
  int64_t pruned = r.details["pruned"].get<int64_t>();
  EXPECT_GT(pruned, 0);
  EXPECT_LT(pruned, model->prunable_channels());
  // The suspect is untouched; the result's mask zeroes exactly the reported channels.
  EXPECT_EQ(model->prune_mask().sum().item<float>(), static_cast<float>(model->prunable_channels()));
  auto mask = r.model->prune_mask();
  EXPECT_EQ(static_cast<int64_t>((mask == 0).sum().item<int64_t>()), pruned);
  for (auto c : r.details["pruned_channels"]) EXPECT_EQ(mask[c.get<int64_t>()].item<float>(), 0.0f);

  // The pruned channels were the least active ones on the clean set.
  torch::NoGradGuard ng;
  auto clean = data.select(ctx.clean->balanced(60));
  auto act0 = model->forward_full(clean.x, true).activations.back().mean(std::vector<int64_t>{0, 2, 3});
  auto max_pruned = -1e30f, min_kept = 1e30f;
  for (int64_t c = 0; c < model->prunable_channels(); ++c) {
    float v = act0[c].item<float>();
    if (mask[c].item<float>() == 0) max_pruned = std::max(max_pruned, v);
    else min_kept = std::min(min_kept, v);
  }
  EXPECT_LE(max_pruned, min_kept);

  // After fine-tuning the pruned channels are still exactly zero.
  r.model->eval();
  auto act = r.model->forward_full(data.x, true).activations.back();
  for (int64_t c = 0; c < r.model->prunable_channels(); ++c)
    if (mask[c].item<float>() == 0) EXPECT_EQ(act.select(1, c).abs().max().item<float>(), 0.0f) << "channel " << c;
  EXPECT_FALSE(same_weights(*model, *r.model));  // fine-tuning ran
}

TEST_F(BaselineFp, TransformerUnitsStayZero) {
  auto data = text_data(64, 3);
  auto model = tiny_transformer();
  pretrain(*model, data, 3, 1e-3, "adam");
  auto ctx = context(data, Modality::Text, 2);
  YAML::Node o;
  o["clean_samples"] = 40;
  o["acc_ratio"] = 0.6;
  o["epochs"] = 2;
  auto r = run_defense("fp", o, model, ctx, "transformer");
  auto mask = r.model->prune_mask();
  EXPECT_EQ(static_cast<int64_t>((mask == 0).sum().item<int64_t>()), r.details["pruned"].get<int64_t>());
  torch::NoGradGuard ng;
  r.model->eval();
  auto act = r.model->forward_full(data.x, true).activations.back();  // [N, L, 16]
  for (int64_t c = 0; c < r.model->prunable_channels(); ++c)
    if (mask[c].item<float>() == 0) EXPECT_EQ(act.select(2, c).abs().max().item<float>(), 0.0f) << "unit " << c;
}

TEST_F(BaselineFt, ChangesWeightsAndLowersCleanCrossEntropy) {
  auto data = image_data(120, 4);
  auto model = tiny_cnn();
  pretrain(*model, data, 1, 0.02);
  auto before_weights = model->clone_deep();
  auto ctx = context(data, Modality::Image, 3);
  YAML::Node o;
  o["clean_samples"] = 90;
  o["epochs"] = 8;
  o["lr"] = 0.05;
  auto r = run_defense("ft", o, model, ctx, "cnn");
  ASSERT_EQ(r.stages.size(), 1u);
  EXPECT_EQ(r.stages[0].name, "finetune");
  EXPECT_EQ(r.clean_samples, 90);
  EXPECT_TRUE(same_weights(*model, *before_weights));  // the suspect is not modified
  EXPECT_FALSE(same_weights(*model, *r.model));
  auto clean = data.select(ctx.clean->balanced(90));
  auto ce0 = clean_fit(*model, clean).ce, ce1 = clean_fit(*r.model, clean).ce;
  EXPECT_LT(ce1, ce0);
  EXPECT_NEAR(r.details["clean_ce_after"].get<double>(), ce1, 1e-9);

  // Same seed, same result, bit for bit; another seed differs.
  auto r2 = run_defense("ft", o, model, ctx, "cnn");
  EXPECT_TRUE(same_weights(*r.model, *r2.model));
  auto ctx3 = context(data, Modality::Image, 3, 4);
  auto r3 = run_defense("ft", o, model, ctx3, "cnn");
  EXPECT_FALSE(same_weights(*r.model, *r3.model));
}

TEST_F(BaselineFt, RejectsBadOptions) {
  auto data = image_data(30, 5);
  DefenseSetup setup{Modality::Image, "cnn", 3};
  YAML::Node o;
  o["lr"] = -1.0;
  Params p(o, "defenses[0]");
  EXPECT_THROW(make_defense("ft", p, setup), Error);
  YAML::Node q;
  q["acc_ratio"] = 1.5;
  Params pq(q, "defenses[1]");
  EXPECT_THROW(make_defense("fp", pq, setup), Error);
  YAML::Node u;
  u["no_such_key"] = 1;
  Params pu(u, "defenses[2]");
  make_defense("nad", pu, setup);
  EXPECT_THROW(pu.check_consumed(), Error);
}

TEST_F(BaselineNad, DistillationLossFalls) {
  auto data = image_data(120, 6);
  auto model = tiny_cnn();
  pretrain(*model, data, 15, 0.05);
  auto ctx = context(data, Modality::Image, 3);
  YAML::Node o;
  o["clean_samples"] = 90;
  o["teacher_epochs"] = 6;
  o["epochs"] = 6;
  o["augment"] = false;  // 2-pixel shifts of 8x8 images make the per-epoch losses noisy
  auto r = run_defense("nad", o, model, ctx, "cnn");
  ASSERT_EQ(r.stages.size(), 2u);
  EXPECT_EQ(r.stages[0].name, "teacher");
  EXPECT_EQ(r.stages[1].name, "distill");
  // The CNN has two blocks: the last two betas (1000, 1000) apply.
  EXPECT_EQ(r.details["betas"], nlohmann::json({1000.0, 1000.0}));
  const auto& ep = r.details["epochs"];
  ASSERT_EQ(ep.size(), 6u);
  double at0 = ep.front()["at"].get<double>(), at1 = ep.back()["at"].get<double>();
  double l0 = ep.front()["loss"].get<double>(), l1 = ep.back()["loss"].get<double>();
  EXPECT_GT(at0, 0.0);
  EXPECT_LT(at1, at0);
  EXPECT_LT(l1, l0);
  EXPECT_FALSE(same_weights(*model, *r.model));
}

TEST_F(BaselineNad, RunsOnTransformerWithPaddingMasked) {
  auto data = text_data(64, 7);
  auto model = tiny_transformer();
  pretrain(*model, data, 2, 1e-3, "adam");
  auto ctx = context(data, Modality::Text, 2);
  YAML::Node o;
  o["clean_samples"] = 40;
  o["teacher_epochs"] = 3;
  o["epochs"] = 3;
  o["lr"] = 1e-3;
  auto r = run_defense("nad", o, model, ctx, "transformer");
  EXPECT_EQ(r.details["betas"], nlohmann::json({1000.0, 1000.0}));
  for (const auto& e : r.details["epochs"]) EXPECT_TRUE(std::isfinite(e["loss"].get<double>()));
  auto r2 = run_defense("nad", o, model, ctx, "transformer");
  EXPECT_TRUE(same_weights(*r.model, *r2.model));  // dropout seeded from ctx.seed
}

// With a monitor in the context, FT and NAD record the report's curve after every epoch,
// and the purified model is bit for bit the one a run without a monitor gives: the
// evaluation runs in eval mode and draws no random number.
TEST_F(BaselineNad, ACurveLeavesThePurifiedModelAsItIs) {
  auto data = image_data(120, 6);
  auto model = tiny_cnn();
  pretrain(*model, data, 5, 0.05);
  for (const std::string name : {"ft", "nad"}) {
    YAML::Node o;
    o["clean_samples"] = 90;
    o["epochs"] = 3;
    if (name == "nad") o["teacher_epochs"] = 2;
    auto plain = context(data, Modality::Image, 3);
    auto monitored = context(data, Modality::Image, 3);
    int calls = 0;
    monitored.monitor = [&](Classifier& m) {
      ++calls;
      return evaluate(m, data, data, 0);
    };
    auto a = run_defense(name, o, model, plain, "cnn");
    auto b = run_defense(name, o, model, monitored, "cnn");
    EXPECT_TRUE(same_weights(*a.model, *b.model)) << name;
    EXPECT_FALSE(a.details.contains("trajectory")) << name;
    ASSERT_TRUE(b.details.contains("trajectory")) << name;
    EXPECT_EQ(b.details["trajectory"].size(), 3u) << name;
    EXPECT_EQ(calls, 3) << name;
    EXPECT_EQ(b.details["trajectory"].back()["epoch"], 3) << name;
  }
}

}  // namespace
}  // namespace antidote
