// bf16 training: autocast inside trainings only, float32 outputs, weights and evaluation.
#include <gtest/gtest.h>

#include "antidote/metrics/metrics.hpp"
#include "antidote/models/model.hpp"
#include "antidote/train/train.hpp"
#include "support.hpp"

using namespace antidote;
using antidote::testing::error_of;

namespace {

InputSpec spec8() {
  InputSpec in;
  in.channels = 1;
  in.height = in.width = 8;
  in.num_classes = 3;
  return in;
}

// Sets the training precision for one test and puts fp32 back after it.
struct WithPrecision {
  explicit WithPrecision(const std::string& p) { in_force = set_training_precision(p); }
  ~WithPrecision() { set_training_precision("fp32"); }
  std::string in_force;
};

}  // namespace

TEST(Precision, NamesAreCheckedAndBf16FallsBackWithoutTheCpu) {
  EXPECT_NE(error_of([] { set_training_precision("fp16"); }).find("fp32 or bf16"), std::string::npos);
  WithPrecision bf16("bf16");
  EXPECT_EQ(bf16.in_force, cpu_has_bf16() ? "bf16" : "fp32");
  EXPECT_EQ(training_precision(), bf16.in_force);
}

TEST(Precision, TrainingForwardPassesRunInBf16AndReturnFloat32) {
  WithPrecision bf16("bf16");
  if (bf16.in_force != "bf16") GTEST_SKIP() << "this CPU has no bfloat16 arithmetic";
  torch::manual_seed(1);
  auto model = make_model("cnn", spec8(), YAML::Load("{width: 4, hidden: 8}"));
  auto x = torch::rand({5, 1, 8, 8});
  torch::NoGradGuard ng;
  const auto fp32 = model->logits(x);
  torch::Tensor mixed, evaluated;
  {
    PrecisionScope training(true);
    auto out = model->forward_full(x, true);
    mixed = out.logits;
    EXPECT_EQ(out.features.scalar_type(), torch::kFloat);
    for (const auto& a : out.activations) EXPECT_EQ(a.scalar_type(), torch::kFloat);
    evaluated = predict_logits(*model, x, 4);  // evaluation switches back to float32
  }
  EXPECT_EQ(mixed.scalar_type(), torch::kFloat);
  // bfloat16 keeps 8 bits of mantissa: the logits move, by about 2^-8 of their size.
  EXPECT_FALSE(torch::equal(mixed, fp32));
  EXPECT_TRUE(torch::allclose(mixed, fp32, 0.05, 0.02)) << (mixed - fp32).abs().max().item<double>();
  EXPECT_TRUE(torch::equal(evaluated, predict_logits(*model, x, 4)));
  // Outside every scope, nothing is autocast.
  EXPECT_TRUE(torch::equal(model->logits(x), fp32));
}

TEST(Precision, Bf16TrainingKeepsFloat32WeightsAndLearns) {
  WithPrecision bf16("bf16");
  if (bf16.in_force != "bf16") GTEST_SKIP() << "this CPU has no bfloat16 arithmetic";
  set_quiet(true);
  torch::manual_seed(2);
  Dataset d;
  d.y = torch::arange(96, torch::kLong).remainder(3);
  d.x = torch::rand({96, 1, 8, 8}) * 0.3;
  for (int64_t i = 0; i < 96; ++i) d.x[i][0][(i % 3) * 3].add_(0.7);  // a bright row per class
  auto model = make_model("cnn", spec8(), YAML::Load("{width: 4, hidden: 16}"));
  TrainOptions o;
  o.epochs = 30;
  o.batch_size = 16;
  o.optimizer = {"adam", 0.01, 0.9, 0.0};
  Rng rng(3);
  train_supervised(*model, d, o, rng);
  for (const auto& p : model->parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat);
  EXPECT_GE(accuracy(predict_probs(*model, d.x, 32), d.y), 0.95);
}
