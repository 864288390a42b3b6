// Metrics and the shared losses, against values worked out by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "antidote/metrics/metrics.hpp"
#include "antidote/models/model.hpp"
#include "antidote/train/losses.hpp"

using namespace antidote;

namespace {
torch::Tensor mat(std::vector<std::vector<double>> rows) {
  std::vector<torch::Tensor> t;
  for (auto& r : rows) t.push_back(torch::tensor(r, torch::kFloat64));
  return torch::stack(t);
}
torch::Tensor longs(std::vector<int64_t> v) { return torch::tensor(v, torch::kLong); }
}  // namespace

TEST(MetricsAccuracy, ArgmaxAgainstLabels) {
  // argmax: 1, 0, 1, 0 vs labels 1, 0, 0, 0 -> 3 of 4 correct.
  auto scores = mat({{0.1, 0.9}, {0.8, 0.2}, {0.3, 0.7}, {0.6, 0.4}});
  EXPECT_DOUBLE_EQ(accuracy(scores, longs({1, 0, 0, 0})), 0.75);
  EXPECT_DOUBLE_EQ(accuracy(scores, longs({1, 0, 1, 0})), 1.0);
  EXPECT_DOUBLE_EQ(accuracy(scores, longs({0, 1, 0, 1})), 0.0);
  EXPECT_DOUBLE_EQ(accuracy(torch::zeros({0, 2}), torch::zeros({0}, torch::kLong)), 0.0);
}

TEST(MetricsTrigger, ExcludesTargetRowsAsrRaPcc) {
  // Target 0, three classes.
  //   row 0: y 0 (excluded)  [.90 .05 .05] -> 0
  //   row 1: y 1            [.70 .20 .10] -> 0 (target)        p(y) .2
  //   row 2: y 1            [.10 .80 .10] -> 1 (true label)    p(y) .8
  //   row 3: y 2            [.20 .50 .30] -> 1 (neither)       p(y) .3
  //   row 4: y 2            [.60 .10 .30] -> 0 (target)        p(y) .3
  // count 4; ASR 2/4 = .5; RA 1/4 = .25; PCC (.2 + .8 + .3 + .3) / 4 = .4.
  auto probs = mat({{.90, .05, .05}, {.70, .20, .10}, {.10, .80, .10}, {.20, .50, .30}, {.60, .10, .30}});
  auto m = trigger_metrics(probs, longs({0, 1, 1, 2, 2}), 0);
  EXPECT_EQ(m.count, 4);
  EXPECT_DOUBLE_EQ(m.asr, 0.5);
  EXPECT_DOUBLE_EQ(m.ra, 0.25);
  EXPECT_NEAR(m.pcc, 0.4, 1e-12);

  // Target 2 on the same rows: rows 3 and 4 excluded; rows 0, 1, 2 remain.
  // preds 0, 0, 1 vs y 0, 1, 1: ASR 0/3, RA 2/3, PCC (.9 + .2 + .8) / 3 = 1.9 / 3.
  auto t2 = trigger_metrics(probs, longs({0, 1, 1, 2, 2}), 2);
  EXPECT_EQ(t2.count, 3);
  EXPECT_DOUBLE_EQ(t2.asr, 0.0);
  EXPECT_NEAR(t2.ra, 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(t2.pcc, 1.9 / 3.0, 1e-12);
}

TEST(MetricsTrigger, OnlyTargetRowsGiveZeroCount) {
  auto m = trigger_metrics(mat({{.9, .1}, {.2, .8}}), longs({1, 1}), 1);
  EXPECT_EQ(m.count, 0);
  EXPECT_EQ(m.asr, 0.0);
  EXPECT_EQ(m.ra, 0.0);
  EXPECT_EQ(m.pcc, 0.0);
}

TEST(MetricsDer, HandComputed) {
  // (max(0, .98 − .04) − max(0, .90 − .88) + 1) / 2 = (.94 − .02 + 1) / 2 = .96
  EXPECT_NEAR(defense_effectiveness(0.98, 0.04, 0.90, 0.88), 0.96, 1e-12);
  // Perfect defense: ASR 1 -> 0, CACC unchanged: (1 − 0 + 1) / 2 = 1.
  EXPECT_NEAR(defense_effectiveness(1.0, 0.0, 0.9, 0.9), 1.0, 1e-12);
  // No change at all: (0 − 0 + 1) / 2 = .5.
  EXPECT_NEAR(defense_effectiveness(0.7, 0.7, 0.9, 0.9), 0.5, 1e-12);
  // Worst: ASR unchanged, CACC 1 -> 0: (0 − 1 + 1) / 2 = 0.
  EXPECT_NEAR(defense_effectiveness(0.5, 0.5, 1.0, 0.0), 0.0, 1e-12);
}

TEST(MetricsDer, NegativeDifferencesClamp) {
  // ASR rose (.10 -> .30) and CACC rose (.90 -> .95): both terms clamp to 0 -> .5.
  EXPECT_NEAR(defense_effectiveness(0.10, 0.30, 0.90, 0.95), 0.5, 1e-12);
  // ASR rose, CACC fell .90 -> .70: (0 − .2 + 1) / 2 = .4.
  EXPECT_NEAR(defense_effectiveness(0.5, 0.6, 0.90, 0.70), 0.4, 1e-12);
  // ASR fell .9 -> .1, CACC rose: (.8 − 0 + 1) / 2 = .9.
  EXPECT_NEAR(defense_effectiveness(0.9, 0.1, 0.80, 0.85), 0.9, 1e-12);
}

TEST(MetricsDetection, PrecisionRecallF1) {
  // 10 rows, poisoned {1, 3, 5, 7}; flagged {1, 3, 4, 8, 9}: hits 2.
  // precision 2/5 = .4, recall 2/4 = .5, F1 = 2·.4·.5 / .9 = 4/9.
  auto mask = torch::zeros({10}, torch::kBool);
  for (int i : {1, 3, 5, 7}) mask[i] = true;
  auto d = detection(longs({1, 3, 4, 8, 9}), mask);
  EXPECT_EQ(d.flagged, 5);
  EXPECT_NEAR(d.precision, 0.4, 1e-12);
  EXPECT_NEAR(d.recall, 0.5, 1e-12);
  EXPECT_NEAR(d.f1, 4.0 / 9.0, 1e-12);

  // Exactly the poisoned rows: 1, 1, 1.
  auto perfect = detection(longs({7, 5, 3, 1}), mask);
  EXPECT_DOUBLE_EQ(perfect.precision, 1.0);
  EXPECT_DOUBLE_EQ(perfect.recall, 1.0);
  EXPECT_DOUBLE_EQ(perfect.f1, 1.0);

  // Nothing flagged: all zero, no division by zero.
  auto none = detection(torch::zeros({0}, torch::kLong), mask);
  EXPECT_EQ(none.flagged, 0);
  EXPECT_EQ(none.precision, 0.0);
  EXPECT_EQ(none.recall, 0.0);
  EXPECT_EQ(none.f1, 0.0);

  // Only misses: precision 0, recall 0, F1 0.
  auto misses = detection(longs({0, 2}), mask);
  EXPECT_EQ(misses.flagged, 2);
  EXPECT_EQ(misses.f1, 0.0);
}

// Ascending 0-based ranks: 1 (0), 2 (1), then the two 3s share (2 + 3) / 2 = 2.5.
TEST(MetricsMidRanks, TiesShareTheMeanRank) {
  EXPECT_TRUE(torch::equal(mid_ranks(torch::tensor({3.0, 1.0, 3.0, 2.0})),
                           torch::tensor({2.5, 0.0, 2.5, 1.0}, torch::kFloat64)));
  EXPECT_TRUE(torch::equal(mid_ranks(torch::tensor({7.0, 7.0, 7.0})), torch::tensor({1.0, 1.0, 1.0}, torch::kFloat64)));
  EXPECT_EQ(mid_ranks(torch::zeros({0})).numel(), 0);
}

TEST(MetricsAuroc, RanksAndTies) {
  // Positives {.35, .8}, negatives {.1, .4}: pairs (.35>.1) (.35<.4) (.8>.1) (.8>.4) -> 3/4.
  EXPECT_NEAR(auroc(torch::tensor({0.1, 0.4, 0.35, 0.8}), torch::tensor({false, false, true, true})), 0.75, 1e-12);
  // Ties: positives {2, 3}, negatives {1, 2}: (2>1) 1, (2=2) .5, (3>1) 1, (3>2) 1 -> 3.5/4 = .875.
  EXPECT_NEAR(auroc(torch::tensor({1.0, 2.0, 2.0, 3.0}), torch::tensor({false, true, false, true})), 0.875, 1e-12);
  // All tied: every pair counts one half.
  EXPECT_NEAR(auroc(torch::tensor({5.0, 5.0, 5.0, 5.0}), torch::tensor({true, false, true, false})), 0.5, 1e-12);
  // Perfect and reversed separation.
  EXPECT_NEAR(auroc(torch::tensor({0.9, 0.1, 0.8, 0.2}), torch::tensor({true, false, true, false})), 1.0, 1e-12);
  EXPECT_NEAR(auroc(torch::tensor({0.1, 0.9, 0.2, 0.8}), torch::tensor({true, false, true, false})), 0.0, 1e-12);
  // Unsorted input with a three-way tie: pos {3, 1, 1}, neg {1, 0}.
  // 3: beats 1 and 0 -> 2; each 1: ties 1 (.5), beats 0 (1) -> 1.5 each. (2 + 3) / 6 = 5/6.
  EXPECT_NEAR(auroc(torch::tensor({1.0, 3.0, 0.0, 1.0, 1.0}), torch::tensor({false, true, false, true, true})),
              5.0 / 6.0, 1e-12);
}

// ---- losses ---------------------------------------------------------------------------

TEST(MetricsLosses, KlTeacherStudent) {
  // Teacher [0, ln 3] -> p = [1/4, 3/4]; student [0, 0] -> q = [1/2, 1/2].
  // KL = 1/4·ln(1/2) + 3/4·ln(3/2) = −0.1732868 + 0.3040988 = 0.1308120.
  const double kl = 0.25 * std::log(0.5) + 0.75 * std::log(1.5);
  ASSERT_NEAR(kl, 0.1308120, 1e-6);
  auto teacher = torch::tensor({{0.0, std::log(3.0)}}, torch::kFloat64);
  auto student = torch::tensor({{0.0, 0.0}}, torch::kFloat64);
  EXPECT_NEAR(kl_teacher_student(teacher, student, 1.0).item<double>(), 0.1308120, 1e-6);
  // T = 2 with teacher logits doubled gives the same distributions (no T² factor).
  auto teacher2 = torch::tensor({{0.0, 2 * std::log(3.0)}}, torch::kFloat64);
  EXPECT_NEAR(kl_teacher_student(teacher2, student, 2.0).item<double>(), 0.1308120, 1e-6);
  // Batch mean with a second, identical pair (KL 0): 0.1308120 / 2 = 0.0654060.
  auto tb = torch::tensor({{0.0, std::log(3.0)}, {1.0, 2.0}}, torch::kFloat64);
  auto sb = torch::tensor({{0.0, 0.0}, {1.0, 2.0}}, torch::kFloat64);
  EXPECT_NEAR(kl_teacher_student(tb, sb, 1.0).item<double>(), 0.0654060, 1e-6);
  // Identical logits -> 0; the direction matters (KL(q‖p) = 1/2 ln 2 + 1/2 ln(2/3) = 0.1438410).
  EXPECT_NEAR(kl_teacher_student(sb, sb, 3.0).item<double>(), 0.0, 1e-12);
  EXPECT_NEAR(kl_teacher_student(student, teacher, 1.0).item<double>(), 0.1438410, 1e-6);
}

TEST(MetricsLosses, SoftCrossEntropy) {
  // log softmax([0, ln 3]) = [ln 1/4, ln 3/4] = [−1.3862944, −0.2876821].
  // q = [.5, .5]: −(.5·−1.3862944 + .5·−0.2876821) = 0.8369882.
  // q = [0, 1]: 0.2876821 (the ordinary cross-entropy). Batch mean: 0.5623352.
  auto logits = torch::tensor({{0.0, std::log(3.0)}, {0.0, std::log(3.0)}}, torch::kFloat64);
  auto q = torch::tensor({{0.5, 0.5}, {0.0, 1.0}}, torch::kFloat64);
  EXPECT_NEAR(soft_cross_entropy(logits.slice(0, 0, 1), q.slice(0, 0, 1)).item<double>(), 0.8369882, 1e-6);
  EXPECT_NEAR(soft_cross_entropy(logits.slice(0, 1, 2), q.slice(0, 1, 2)).item<double>(), 0.2876821, 1e-6);
  EXPECT_NEAR(soft_cross_entropy(logits, q).item<double>(), 0.5623352, 1e-6);
}

// Uniform over every class but each row's label: 1/3 on the other three of four classes.
TEST(MetricsLosses, UniformExceptTheLabel) {
  auto u = uniform_except(torch::tensor({2, 0}, torch::kLong), 4);
  ASSERT_EQ(u.sizes(), (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(u.scalar_type(), torch::kFloat);
  const float third = 1.0f / 3.0f;
  EXPECT_TRUE(torch::equal(u, torch::tensor({{third, third, 0.0f, third}, {0.0f, third, third, third}})));
  // Its soft cross-entropy with logits [0, 0, 0, 0] is ln 4 (every class at 1/4).
  EXPECT_NEAR(soft_cross_entropy(torch::zeros({2, 4}), u).item<double>(), std::log(4.0), 1e-6);
}

TEST(MetricsLosses, NonTargetDistribution) {
  // [0, ln 2, ln 5]: top-1 is class 2; the rest renormalise: [1, 2] / 3.
  auto z = torch::tensor({{0.0, std::log(2.0), std::log(5.0)}}, torch::kFloat32);
  auto p = non_target_distribution(z, 1.0);
  EXPECT_NEAR(p[0][0].item<float>(), 1.0 / 3.0, 1e-6);
  EXPECT_NEAR(p[0][1].item<float>(), 2.0 / 3.0, 1e-6);
  EXPECT_EQ(p[0][2].item<float>(), 0.0f);
  // τ = 2: exp([0, ln2 / 2]) = [1, √2] -> [1/(1+√2), √2/(1+√2)] = [0.4142136, 0.5857864].
  auto p2 = non_target_distribution(z, 2.0);
  EXPECT_NEAR(p2[0][0].item<float>(), 0.4142136, 1e-6);
  EXPECT_NEAR(p2[0][1].item<float>(), 0.5857864, 1e-6);
  EXPECT_EQ(p2[0][2].item<float>(), 0.0f);
  // Saturated logits: the top-1 holds all the mass, yet the result is finite: [0, .5, .5].
  auto s = non_target_distribution(torch::tensor({{1000.0f, 0.0f, 0.0f}, {0.0f, -50.0f, 3000.0f}}), 1.0);
  EXPECT_TRUE(torch::isfinite(s).all().item<bool>());
  EXPECT_NEAR(s[0][0].item<float>(), 0.0, 1e-7);
  EXPECT_NEAR(s[0][1].item<float>(), 0.5, 1e-6);
  EXPECT_NEAR(s[0][2].item<float>(), 0.5, 1e-6);
  // Row 2: top-1 class 2; softmax([0, −50]) = [1/(1+e^−50), …] ≈ [1, 1.9e−22].
  EXPECT_NEAR(s[1][0].item<float>(), 1.0, 1e-6);
  EXPECT_EQ(s[1][2].item<float>(), 0.0f);
  // Rows sum to one.
  EXPECT_NEAR(s.sum(1)[0].item<float>(), 1.0, 1e-6);
  EXPECT_NEAR(s.sum(1)[1].item<float>(), 1.0, 1e-6);
}

// ---- predict_probs / evaluate on a tiny model -------------------------------------------

namespace {
// A seeded 3-class CNN on 1x4x4 images.
ClassifierPtr tiny_cnn_4x4() {
  torch::manual_seed(0);
  InputSpec in;
  in.channels = 1;
  in.height = in.width = 4;
  in.num_classes = 3;
  return make_model("cnn", in, YAML::Load("{width: 2, hidden: 4}"));
}
}  // namespace

TEST(MetricsEvaluate, PredictProbsBatchesAndRestoresMode) {
  auto model = tiny_cnn_4x4();
  model->train();
  auto x = torch::rand({7, 1, 4, 4});
  auto probs = predict_probs(*model, x, 3);  // batches of 3, 3, 1
  ASSERT_EQ(probs.sizes().vec(), (std::vector<int64_t>{7, 3}));
  EXPECT_TRUE(torch::allclose(probs.sum(1), torch::ones({7}), 1e-5, 1e-6));
  EXPECT_TRUE(model->is_training());
  model->eval();
  torch::NoGradGuard ng;
  auto direct = torch::softmax(model->logits(x), 1);
  EXPECT_TRUE(torch::allclose(probs, direct, 1e-5, 1e-6));

  // evaluate = accuracy of the clean set + trigger_metrics of the triggered set.
  auto pred = direct.argmax(1);
  Dataset clean{x, pred.clone(), torch::Tensor()};  // labels = predictions -> CACC 1
  auto target = pred[0].item<int64_t>();
  Dataset trig{x, torch::full({7}, (target + 1) % 3, torch::kLong), torch::Tensor()};
  auto e = evaluate(*model, clean, trig, target, 2);
  EXPECT_DOUBLE_EQ(e.cacc, 1.0);
  auto expected_asr = pred.eq(target).to(torch::kFloat64).mean().item<double>();
  EXPECT_DOUBLE_EQ(e.asr, expected_asr);
}

// Text rows of different lengths: a Transformer is run on length-sorted batches cut to
// their longest row, and the probabilities come back in row order, equal to a forward
// pass over the whole padded matrix. TextCNN reads its padding, so it is never cut.
TEST(MetricsEvaluate, PredictProbsCutsTrailingPaddingOnlyWhereItIsIgnored) {
  InputSpec in;
  in.modality = Modality::Text;
  in.vocab_size = 30;
  in.max_len = 12;
  in.num_classes = 3;
  // Row lengths (with [CLS]) 1..12 in a scrambled order; the rest is [PAD].
  const std::vector<int64_t> lengths = {5, 12, 1, 9, 3, 7, 2, 11, 4, 10, 6, 8};
  auto x = torch::full({12, 12}, Vocab::kPad, torch::kLong);
  torch::manual_seed(3);
  for (int64_t i = 0; i < 12; ++i) {
    x[i][0] = Vocab::kCls;
    if (lengths[i] > 1) x[i].slice(0, 1, lengths[i]).copy_(torch::randint(3, 30, {lengths[i] - 1}, torch::kLong));
  }
  for (const char* arch : {"transformer", "textcnn"}) {
    torch::manual_seed(0);
    auto model = make_model(arch, in, YAML::Load(std::string(arch) == "textcnn" ? "{kernels: [2]}" : "{}"));
    model->eval();
    torch::Tensor direct;
    {
      torch::NoGradGuard ng;
      direct = torch::softmax(model->logits(x), 1);
    }
    auto probs = predict_probs(*model, x, 5);  // batches of 5, 5, 2 over the sorted rows
    EXPECT_EQ(model->ignores_trailing_padding(), std::string(arch) == "transformer") << arch;
    EXPECT_TRUE(torch::allclose(probs, direct, 1e-5, 1e-6)) << arch << " max diff "
                                                          << (probs - direct).abs().max().item<float>();
  }
}

namespace {

// Logits that show what a batch looked like: [number of columns, row length, 0].
struct ShapeProbe : Classifier {
  ModelOutput forward_impl(const torch::Tensor& x, bool) override {
    auto len = (x.ne(Vocab::kPad).to(torch::kFloat) * torch::arange(1, x.size(1) + 1).unsqueeze(0)).amax(1);
    ModelOutput o;
    o.logits = torch::stack({torch::full_like(len, static_cast<double>(x.size(1))), len, torch::zeros_like(len)}, 1);
    o.features = o.logits;
    return o;
  }
  int64_t prunable_channels() const override { return 0; }
  bool ignores_trailing_padding() const override { return true; }
};

}  // namespace

// The cut itself: rows sorted by length (ties in row order), batches of 2, each cut to
// its longest row; results back in row order.
TEST(MetricsEvaluate, PredictProbsBatchesRowsOfSimilarLength) {
  ShapeProbe probe;
  const std::vector<int64_t> lengths = {4, 1, 3, 1, 2};
  auto x = torch::full({5, 6}, Vocab::kPad, torch::kLong);
  for (int64_t i = 0; i < 5; ++i) x[i].slice(0, 0, lengths[i]).fill_(Vocab::kCls);
  auto logits = predict_probs(probe, x, 2).log();  // softmax then log: logits up to a shift per row
  auto cols = (logits.select(1, 0) - logits.select(1, 2)).round().to(torch::kLong);
  auto lens = (logits.select(1, 1) - logits.select(1, 2)).round().to(torch::kLong);
  // sorted: rows 1 (1), 3 (1) | 4 (2), 2 (3) | 0 (4) -> cut to 1, 3, 4 columns
  EXPECT_EQ(std::vector<int64_t>(cols.data_ptr<int64_t>(), cols.data_ptr<int64_t>() + 5),
            (std::vector<int64_t>{4, 1, 3, 1, 3}));
  EXPECT_EQ(std::vector<int64_t>(lens.data_ptr<int64_t>(), lens.data_ptr<int64_t>() + 5), lengths);
  // A row of padding only: nothing is cut (its output would depend on the cut).
  x[1].fill_(Vocab::kPad);
  auto whole = (predict_probs(probe, x, 2).log().select(1, 0) - predict_probs(probe, x, 2).log().select(1, 2)).round();
  EXPECT_TRUE(torch::equal(whole.to(torch::kLong), torch::full({5}, 6, torch::kLong)));
}

// The verdict: ASR within max(5 %, floor + 3 points), CACC within 2 points of the
// suspect's, and a suspect that learned the backdoor (ASR >= 50 %).
TEST(MetricsVerdict, RemovedOnlyWithinBothLimitsOfALearnedBackdoor) {
  EXPECT_DOUBLE_EQ(asr_limit(-1), 0.05);    // no floor known
  EXPECT_DOUBLE_EQ(asr_limit(0.01), 0.05);  // 1 % + 3 points is under 5 %
  EXPECT_NEAR(asr_limit(0.04), 0.07, 1e-12);
  const Evaluation suspect{0.89, 1.0, 0, 0};
  auto v = purification_verdict({0.88, 0.03, 0, 0}, 0.01, &suspect);
  EXPECT_EQ(v.verdict, "success");
  EXPECT_NEAR(v.cacc_drop, 0.01, 1e-12);
  EXPECT_EQ(v.why, "ASR 3.0% ≤ 5.0%; CACC drop 1.0 points ≤ 2");
  EXPECT_EQ(purification_verdict({0.88, 0.05, 0, 0}, -1, &suspect).verdict, "success");  // at the limit
  EXPECT_EQ(purification_verdict({0.88, 0.06, 0, 0}, -1, &suspect).verdict, "fail");
  EXPECT_EQ(purification_verdict({0.88, 0.06, 0, 0}, 0.04, &suspect).verdict, "success");  // floor 4 %: limit 7 %
  auto lost = purification_verdict({0.86, 0.0, 0, 0}, -1, &suspect);                       // 3 points of CACC lost
  EXPECT_EQ(lost.verdict, "fail");
  EXPECT_FALSE(lost.cacc_ok);
  EXPECT_TRUE(lost.asr_ok);
  const Evaluation unlearned{0.89, 0.3, 0, 0};
  auto nothing = purification_verdict({0.88, 0.02, 0, 0}, -1, &unlearned);
  EXPECT_EQ(nothing.verdict, "unknown");
  EXPECT_NE(nothing.why.find("never learned the backdoor"), std::string::npos);
  EXPECT_EQ(purification_verdict({0.88, 0.02, 0, 0}, -1, nullptr).verdict, "unknown");  // no suspect to compare
  EXPECT_EQ(purification_verdict({0.88, 0.20, 0, 0}, -1, nullptr).verdict, "fail");
  EXPECT_TRUE(backdoor_learned(0.5));
  EXPECT_FALSE(backdoor_learned(0.49));
  EXPECT_STREQ(verdict_word("success"), "removed");
  EXPECT_STREQ(verdict_word("fail"), "failed");
  EXPECT_STREQ(verdict_word("unknown"), "unclear");
}

// With no triggered rows (the trigger is unknown) ASR, RA and PCC are unknown (NaN),
// never 0 %, and the verdict can only fail a defense on its clean accuracy.
TEST(MetricsVerdict, AnUnknownAsrIsNeverASuccess) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Evaluation suspect{0.89, nan, nan, nan}, kept{0.88, nan, nan, nan}, lost{0.86, nan, nan, nan};
  EXPECT_FALSE(suspect.asr_known());
  auto v = purification_verdict(kept, -1, &suspect);
  EXPECT_EQ(v.verdict, "unknown");
  EXPECT_EQ(v.why, "ASR unknown (no triggered test set); CACC drop 1.0 points ≤ 2");
  EXPECT_EQ(purification_verdict(lost, -1, &suspect).verdict, "fail");
  EXPECT_EQ(purification_verdict(kept, -1, nullptr).verdict, "unknown");
  EXPECT_EQ(evaluation_text(kept), "CACC 88.0% ASR unknown");
  EXPECT_EQ(evaluation_text({0.88, 0.012, 0.801, 0}), "CACC 88.0% ASR 1.2% RA 80.1%");
}

// A full repair, apart from the removal: removed, and RA within 10 points of CACC.
TEST(MetricsVerdict, ARepairNeedsTheTriggeredRowsBackAtTheirLabels) {
  const Evaluation suspect{0.90, 0.99, 0.01, 0.01};
  auto close = purification_verdict({0.89, 0.01, 0.80, 0.7}, -1, &suspect);  // 89 - 80 = 9 points
  EXPECT_EQ(close.verdict, "success");
  EXPECT_EQ(close.repair, "repaired");
  EXPECT_NEAR(close.ra_gap, 0.09, 1e-12);
  EXPECT_EQ(close.repair_why, "RA 80.0% is 9.0 points under CACC 89.0% (≤ 10)");
  EXPECT_EQ(purification_verdict({0.89, 0.01, 0.79, 0.7}, -1, &suspect).repair, "repaired");  // 10 points: at the limit
  auto far = purification_verdict({0.886, 0.0, 0.586, 0.5}, -1, &suspect);                    // 30 points under
  EXPECT_EQ(far.verdict, "success");
  EXPECT_EQ(far.repair, "not repaired");
  EXPECT_EQ(verdict_sentence(far),
            "removed (ASR 0.0% ≤ 5.0%; CACC drop 1.4 points ≤ 2); not repaired: RA 58.6% is 30.0 points under CACC "
            "88.6% (> 10)");
  // Not removed: no repair is judged, whatever the RA.
  auto failed = purification_verdict({0.80, 0.01, 0.79, 0.7}, -1, &suspect);
  EXPECT_EQ(failed.verdict, "fail");
  EXPECT_EQ(failed.repair, "");
  EXPECT_EQ(verdict_sentence(failed), "failed (ASR 1.0% ≤ 5.0%; CACC drop 10.0 points > 2)");
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(purification_verdict({0.89, 0.01, nan, nan}, -1, &suspect).repair, "");  // RA not measured
}

TEST(MetricsEvaluate, NoTriggeredRowsGiveAnUnknownAsr) {
  auto model = tiny_cnn_4x4();
  auto x = torch::rand({5, 1, 4, 4});
  Dataset clean{x, torch::zeros({5}, torch::kLong), torch::Tensor()};
  Dataset none{torch::empty({0, 1, 4, 4}), torch::empty({0}, torch::kLong), torch::Tensor()};
  auto e = evaluate(*model, clean, none, 0);
  EXPECT_FALSE(e.asr_known());
  EXPECT_TRUE(std::isnan(e.ra) && std::isnan(e.pcc));
  EXPECT_GE(e.cacc, 0.0);
  // Triggered rows that all carry the target label leave nothing to measure either.
  Dataset only_target{x, torch::zeros({5}, torch::kLong), torch::Tensor()};
  EXPECT_FALSE(evaluate(*model, clean, only_target, 0).asr_known());
}
