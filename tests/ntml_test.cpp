// NT-ML: the non-target labels, the soft cross-entropy and the
// mutual-learning losses against hand-worked values, the detached peer, the ML
// anchor, and integration runs on a slice of Fashion-MNIST and on SST-2 where the
// backdoor's ASR falls.
#include <gtest/gtest.h>

#include "support.hpp"

#include <cmath>
#include <filesystem>

#include "antidote/attacks/attack.hpp"
#include "antidote/defenses/defense.hpp"
#include "antidote/defenses/ntml.hpp"
#include "antidote/metrics/metrics.hpp"
#include "antidote/train/losses.hpp"
#include "antidote/train/train.hpp"

using namespace antidote;

namespace {

const double kLn3 = std::log(3.0);

ClassifierPtr tiny_cnn(uint64_t seed, int64_t classes = 3) {
  torch::manual_seed(seed);
  InputSpec in;
  in.channels = 1;
  in.height = 8;
  in.width = 8;
  in.num_classes = classes;
  return make_model("cnn", in, YAML::Load("{width: 2, hidden: 6}"));
}

std::vector<torch::Tensor> snapshot(Classifier& m) {
  std::vector<torch::Tensor> v;
  for (auto& p : m.parameters()) v.push_back(p.detach().clone());
  return v;
}

bool changed(Classifier& m, const std::vector<torch::Tensor>& before) {
  auto params = m.parameters();
  for (size_t i = 0; i < params.size(); ++i)
    if (!torch::equal(params[i].detach(), before[i])) return true;
  return false;
}

}  // namespace

// logits [2, 1, 0]: the top-1 (class 0) is masked; the rest renormalise:
// softmax([1, 0]) = [e/(e+1), 1/(e+1)] = [0.731059, 0.268941].
TEST(NTML, NonTargetMaskRenormalises) {
  auto q = non_target_distribution(torch::tensor({{2.0, 1.0, 0.0}, {0.0, 5.0, 0.0}}), 1.0);
  EXPECT_EQ(q[0][0].item<double>(), 0.0);
  EXPECT_NEAR(q[0][1].item<double>(), 0.731059, 1e-5);
  EXPECT_NEAR(q[0][2].item<double>(), 0.268941, 1e-5);
  // second row: top-1 is class 1; the two remaining equal logits split evenly.
  EXPECT_EQ(q[1][1].item<double>(), 0.0);
  EXPECT_NEAR(q[1][0].item<double>(), 0.5, 1e-6);
  EXPECT_NEAR(q[1][2].item<double>(), 0.5, 1e-6);
  EXPECT_TRUE(torch::allclose(q.sum(1), torch::ones({2})));
}

// Saturated logits [1000, 0, -1000]: a plain softmax puts all mass on class 0 and
// renormalising afterwards would be 0/0; masking first gives exactly [0, 1, e^-1000 = 0].
TEST(NTML, NonTargetMaskStableForSaturatedLogits) {
  auto q = non_target_distribution(torch::tensor({{1000.0f, 0.0f, -1000.0f}, {-1000.0f, -1000.0f, 1000.0f}}), 1.0);
  EXPECT_TRUE(torch::isfinite(q).all().item<bool>());
  EXPECT_EQ(q[0][0].item<double>(), 0.0);
  EXPECT_NEAR(q[0][1].item<double>(), 1.0, 1e-7);
  EXPECT_NEAR(q[0][2].item<double>(), 0.0, 1e-7);
  EXPECT_EQ(q[1][2].item<double>(), 0.0);
  EXPECT_NEAR(q[1][0].item<double>(), 0.5, 1e-7);
  EXPECT_NEAR(q[1][1].item<double>(), 0.5, 1e-7);
}

// Temperature 2 on [2, 1, 0]: remaining logits [0.5, 0] -> [0.622459, 0.377541].
TEST(NTML, NonTargetMaskTemperature) {
  auto q = non_target_distribution(torch::tensor({{2.0, 1.0, 0.0}}), 2.0);
  EXPECT_NEAR(q[0][1].item<double>(), 0.622459, 1e-5);
  EXPECT_NEAR(q[0][2].item<double>(), 0.377541, 1e-5);
}

// The NT targets over a dataset equal non_target_distribution of the frozen model's logits.
TEST(NTML, NonTargetLabelsOfAModel) {
  auto m = tiny_cnn(3);
  auto x = torch::rand({10, 1, 8, 8});
  auto q = ntml::non_target_labels(*m, x, 1.0, torch::kCPU, /*batch_size=*/3);
  ASSERT_EQ(q.sizes(), (std::vector<int64_t>{10, 3}));
  torch::NoGradGuard ng;
  m->eval();
  auto z = m->logits(x);
  EXPECT_TRUE(torch::allclose(q, non_target_distribution(z, 1.0), 1e-5, 1e-6));
  // zero mass on each row's own top-1
  EXPECT_TRUE((q.gather(1, z.argmax(1, true)) == 0).all().item<bool>());
}

// z = [0, ln 3] -> softmax [0.25, 0.75].
//  q = [1, 0]:     -ln 0.25                          = 1.386294
//  q = [0.5, 0.5]: -(0.5 ln 0.25 + 0.5 ln 0.75)      = 0.5·(1.386294 + 0.287682) = 0.836988
// batch mean of both rows = 1.111641
TEST(NTML, SoftCrossEntropyHandWorked) {
  auto z = torch::tensor({{0.0, kLn3}, {0.0, kLn3}});
  auto q = torch::tensor({{1.0, 0.0}, {0.5, 0.5}});
  EXPECT_NEAR(soft_cross_entropy(z.slice(0, 0, 1), q.slice(0, 0, 1)).item<double>(), 1.386294, 1e-5);
  EXPECT_NEAR(soft_cross_entropy(z.slice(0, 1, 2), q.slice(0, 1, 2)).item<double>(), 0.836988, 1e-5);
  EXPECT_NEAR(soft_cross_entropy(z, q).item<double>(), 1.111641, 1e-5);
}

// z_S = [0, ln 3] -> p_S = [0.25, 0.75];  z_T = [ln 3, 0] -> p_T = [0.75, 0.25];  y = 0.
// τ = 1, α_S = 1, α_T = 0.5:
//   CE_S = -ln 0.25 = 1.386294;  CE_T = -ln 0.75 = 0.287682
//   KL(p_T‖p_S) = 0.75 ln 3 + 0.25 ln(1/3) = 0.5 ln 3 = 0.549306 = KL(p_S‖p_T) (symmetric case)
//   L_S = 1.386294 + 1·1·0.549306   = 1.935601
//   L_T = 0.287682 + 0.5·1·0.549306 = 0.562335
// τ = 2: p_S = softmax([0, ln3/2]) = [1/(1+√3), √3/(1+√3)] = [0.366025, 0.633975], p_T reversed;
//   KL = (0.633975 − 0.366025)·ln(0.633975/0.366025) = 0.267949·0.549306 = 0.147186
//   L_S = 1.386294 + 1·4·0.147186   = 1.975038
//   L_T = 0.287682 + 0.5·4·0.147186 = 0.582054
TEST(NTML, MutualLossesHandWorked) {
  auto zs = torch::tensor({{0.0, kLn3}});
  auto zt = torch::tensor({{kLn3, 0.0}});
  auto y = torch::tensor({0}, torch::kLong);
  auto l1 = ntml::mutual_losses(zs, zt, y, 1.0, 1.0, 0.5);
  EXPECT_NEAR(l1.student.item<double>(), 1.935601, 1e-5);
  EXPECT_NEAR(l1.teacher.item<double>(), 0.562335, 1e-5);
  auto l2 = ntml::mutual_losses(zs, zt, y, 2.0, 1.0, 0.5);
  EXPECT_NEAR(l2.student.item<double>(), 1.975038, 1e-5);
  EXPECT_NEAR(l2.teacher.item<double>(), 0.582054, 1e-5);
  // α_T = 0 (the warm-up): the teacher's loss is its plain CE.
  auto l0 = ntml::mutual_losses(zs, zt, y, 1.0, 1.0, 0.0);
  EXPECT_NEAR(l0.teacher.item<double>(), 0.287682, 1e-5);
}

// The student's backward leaves the teacher without gradients (its logits are
// detached in L_S) and vice versa.
TEST(NTML, MutualLossesDetachThePeer) {
  auto s = tiny_cnn(1), t = tiny_cnn(2);
  auto x = torch::rand({4, 1, 8, 8});
  auto y = torch::tensor({0, 1, 2, 0}, torch::kLong);
  auto l = ntml::mutual_losses(s->logits(x), t->logits(x), y, 1.0, 1.0, 0.5);
  l.student.backward();
  for (auto& p : t->parameters()) EXPECT_FALSE(p.grad().defined());
  bool any = false;
  for (auto& p : s->parameters()) any = any || (p.grad().defined() && p.grad().abs().sum().item<double>() > 0);
  EXPECT_TRUE(any);
  for (auto& p : s->parameters()) p.mutable_grad() = torch::Tensor();
  l.teacher.backward();
  for (auto& p : s->parameters()) EXPECT_FALSE(p.grad().defined());
  any = false;
  for (auto& p : t->parameters()) any = any || (p.grad().defined() && p.grad().abs().sum().item<double>() > 0);
  EXPECT_TRUE(any);
}

// One ML step moves both networks; with one trainer missing, only the other moves.
TEST(NTML, MutualStepUpdatesBothNetworks) {
  auto s = tiny_cnn(1), t = tiny_cnn(2);
  auto x = torch::rand({6, 1, 8, 8});
  auto y = torch::tensor({0, 1, 2, 0, 1, 2}, torch::kLong);
  OptimizerConfig cfg;
  cfg.lr = 0.1;
  Trainer ts(s->parameters(), cfg, "student"), tt(t->parameters(), cfg, "teacher");
  auto bs = snapshot(*s), bt = snapshot(*t);
  auto [ls, lt] = ntml::mutual_step(*s, *t, &ts, &tt, x, y, 1.0, 1.0, 0.5);
  EXPECT_TRUE(std::isfinite(ls) && std::isfinite(lt));
  EXPECT_TRUE(changed(*s, bs));
  EXPECT_TRUE(changed(*t, bt));

  bs = snapshot(*s);
  bt = snapshot(*t);
  ntml::mutual_step(*s, *t, &ts, nullptr, x, y, 1.0, 1.0, 0.5);
  EXPECT_TRUE(changed(*s, bs));
  EXPECT_FALSE(changed(*t, bt));
}

// The anchor adds weight · soft-CE(S(x_a), q) to S's loss and nothing to T's: the
// same networks, one step with and one without, differ by exactly that term
// (computed here from log-softmax, without the library's loss).
TEST(NTML, MutualStepAnchorAddsTheWeightedSoftCrossEntropy) {
  auto x = torch::rand({6, 1, 8, 8});
  auto y = torch::tensor({0, 1, 2, 0, 1, 2}, torch::kLong);
  ntml::AnchorBatch anchor;
  anchor.x = torch::rand({3, 1, 8, 8});
  anchor.q = torch::tensor({{0.0, 0.5, 0.5}, {1.0, 0.0, 0.0}, {0.0, 0.25, 0.75}});
  anchor.weight = 2.5;
  auto s0 = tiny_cnn(1), t0 = tiny_cnn(2);
  s0->eval();  // no dropout: the two steps see the same logits
  t0->eval();
  double expected_term = 0;
  {
    torch::NoGradGuard ng;
    auto logp = torch::log_softmax(s0->logits(anchor.x), 1);
    expected_term = anchor.weight * (-(anchor.q * logp).sum(1).mean().item<double>());
  }
  auto [plain_s, plain_t] = ntml::mutual_step(*s0, *t0, nullptr, nullptr, x, y, 1.0, 1.0, 0.5);
  auto [anchored_s, anchored_t] = ntml::mutual_step(*s0, *t0, nullptr, nullptr, x, y, 1.0, 1.0, 0.5, &anchor);
  EXPECT_GT(expected_term, 0);
  EXPECT_NEAR(anchored_s - plain_s, expected_term, 1e-5);
  EXPECT_DOUBLE_EQ(anchored_t, plain_t);
}

// Seven rows, three classes. Top-1 of S: 0 1 2 1 1 2 0; of T: 0 1 2 2 2 0 1.
// Agreeing rows: 0, 1, 2. T parts from S on rows 3, 4 (T says 2), 5 (T says 0) and
// 6 (T says 1), so class 2 leads 2 to 1 and is the suspected target; row 2 (T says 2)
// leaves the set too.
TEST(NTML, ConsensusRowsDropTheSuspectedTarget) {
  auto onehot = [](std::vector<int64_t> c) {
    return torch::one_hot(torch::tensor(c), 3).to(torch::kFloat) * 0.8 + 0.2 / 3;
  };
  auto s = onehot({0, 1, 2, 1, 1, 2, 0}), t = onehot({0, 1, 2, 2, 2, 0, 1});
  auto set = ntml::consensus_rows(s, t, true, 2.0, true);
  EXPECT_EQ(set.agreed, 3);
  EXPECT_EQ(set.suspected_class, 2);
  ASSERT_EQ(set.rows.numel(), 2);
  EXPECT_EQ(set.rows[0].item<int64_t>(), 0);
  EXPECT_EQ(set.rows[1].item<int64_t>(), 1);
  // Without the agreement rule: every row T does not send to class 2 — rows 0 and 1,
  // row 5 (T says 0, S says 2) and row 6 (T says 1, S says 0).
  auto any = ntml::consensus_rows(s, t, true, 2.0, false);
  EXPECT_EQ(any.suspected_class, 2);
  ASSERT_EQ(any.rows.numel(), 4);
  EXPECT_EQ(any.rows[0].item<int64_t>(), 0);
  EXPECT_EQ(any.rows[1].item<int64_t>(), 1);
  EXPECT_EQ(any.rows[2].item<int64_t>(), 5);
  EXPECT_EQ(any.rows[3].item<int64_t>(), 6);
  auto all = ntml::consensus_rows(s, t, false, 2.0, true);
  EXPECT_EQ(all.suspected_class, -1);
  EXPECT_EQ(all.rows.numel(), 3);
  EXPECT_EQ(set.parted_top, 2);
  EXPECT_EQ(set.parted_second, 1);
  EXPECT_FALSE(set.skipped);
  // Class 2 leads 2 to 1: not the 3x a stricter rule asks for, so nothing is used.
  auto strict = ntml::consensus_rows(s, t, true, 3.0, false);
  EXPECT_TRUE(strict.skipped);
  EXPECT_EQ(strict.rows.numel(), 0);
  EXPECT_THROW(ntml::consensus_rows(s, t.slice(0, 0, 5), true, 2.0, false), Error);
}

// The anchor holds in the consensus phase too: from the same start and the same
// batches, S trained with it ends nearer q on the anchored rows than S trained
// without it; an anchor of weight 0 is the run without one, to the bit.
TEST(NTML, ConsensusAnchorKeepsTheAnchoredRows) {
  torch::manual_seed(4);
  auto unlabeled = torch::rand({64, 1, 8, 8});
  Dataset clean{torch::rand({12, 1, 8, 8}), torch::arange(12, torch::kLong).remainder(3), torch::Tensor()};
  auto teacher = tiny_cnn(2);
  ntml::MlOptions ml;
  ml.batch_size = 6;
  ml.student_opt.cfg.lr = 0.05;
  ntml::ConsensusOptions co;
  co.iterations = 40;
  co.batch_size = 16;
  co.exclude_suspected = false;  // every agreeing row: the phase is never skipped
  co.ema = 0;
  ntml::MlAnchor anchor;
  anchor.x = torch::rand({8, 1, 8, 8});
  anchor.q = torch::one_hot(torch::full({8}, 2, torch::kLong), 3).to(torch::kFloat);
  anchor.weight = 1.0;
  anchor.batch_size = 4;
  anchor.seed = 7;
  auto run = [&](const ntml::MlAnchor& a) {
    auto s = tiny_cnn(1);
    Rng rng(3);
    ntml::consensus_distillation(*s, *teacher, unlabeled, clean, ml, co, rng, torch::kCPU, "test", a);
    s->eval();
    return s;
  };
  auto anchor_ce = [&](Classifier& m) {
    torch::NoGradGuard ng;
    return -(anchor.q * torch::log_softmax(m.logits(anchor.x), 1)).sum(1).mean().item<double>();
  };
  auto plain = run({});
  auto zero = anchor;
  zero.weight = 0;
  auto zeroed = run(zero);
  auto anchored = run(anchor);
  auto pp = plain->parameters(), pz = zeroed->parameters();
  for (size_t i = 0; i < pp.size(); ++i) EXPECT_TRUE(torch::equal(pp[i], pz[i]));
  EXPECT_LT(anchor_ce(*anchored), anchor_ce(*plain) - 0.1);
}

TEST(NTML, FindsTheClassifierHead) {
  auto m = tiny_cnn(1);
  auto head = ntml::head_parameters(*m, 3);
  ASSERT_EQ(head.size(), 2u);
  auto named = m->named_parameters(true);
  EXPECT_TRUE(head[0].is_same(named["fc2.weight"]));
  EXPECT_TRUE(head[1].is_same(named["fc2.bias"]));
}

TEST(NTML, RejectsBadOptions) {
  DefenseSetup setup;
  setup.arch = "cnn";
  setup.num_classes = 10;
  Params bad(YAML::Load("{student_init: teacher}"), "defenses.ntml");
  EXPECT_THROW(make_defense("ntml", bad, setup), Error);
  Params neg(YAML::Load("{ml_lr: -1}"), "defenses.ntml");
  EXPECT_THROW(make_defense("ntml", neg, setup), Error);
  Params teacher(YAML::Load("{consensus_teacher: f1}"), "defenses.ntml");
  EXPECT_THROW(make_defense("ntml", teacher, setup), Error);
  Params cold(YAML::Load("{consensus_temperature: 0}"), "defenses.ntml");
  EXPECT_THROW(make_defense("ntml", cold, setup), Error);
  Params ema(YAML::Load("{consensus_ema: 1.0}"), "defenses.ntml");
  EXPECT_THROW(make_defense("ntml", ema, setup), Error);
  Params ok(YAML::Load("{clean_samples: 100, ml_iterations: 10, consensus_teacher: suspect}"), "defenses.ntml");
  EXPECT_NO_THROW(make_defense("ntml", ok, setup));
  EXPECT_NO_THROW(ok.check_consumed());
  // The identification stage: its method's own keys pass with it, and not without it.
  DefenseSetup text{Modality::Text, "transformer", 2};
  Params anchored(YAML::Load("{identify: token_stats, flag_count: 32, anchor_weight: 2}"), "defenses.ntml");
  EXPECT_NO_THROW(make_defense("ntml", anchored, text));
  EXPECT_NO_THROW(anchored.check_consumed());
  Params plain(YAML::Load("{identify: none, flag_count: 32}"), "defenses.ntml");
  make_defense("ntml", plain, text);
  EXPECT_THROW(plain.check_consumed(), Error);
  Params unknown(YAML::Load("{identify: nope}"), "defenses.ntml");
  EXPECT_THROW(make_defense("ntml", unknown, text), Error);
  Params weight(YAML::Load("{anchor_weight: -1}"), "defenses.ntml");
  EXPECT_THROW(make_defense("ntml", weight, text), Error);
  Params norm(YAML::Load("{anchor_batch_norm: frozen}"), "defenses.ntml");
  EXPECT_THROW(make_defense("ntml", norm, setup), Error);
}

// A slice of Fashion-MNIST with BadNets at 10 %: a small suspect learns the
// backdoor; NT-ML on 200 clean rows removes most of it and keeps clean accuracy
// well above chance; the stage table and the checks are filled.
TEST(NTML, IntegrationBadnetsAsrFalls) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << "Fashion-MNIST not installed";
  set_quiet(true);
  configure_threads(1);
  auto raw = load_idx_dir(dir, "fmnist");
  std::vector<int64_t> tr(4000), te(1000);
  for (int64_t i = 0; i < 4000; ++i) tr[i] = i;
  for (int64_t i = 0; i < 1000; ++i) te[i] = i;
  auto train_raw = raw.train.select(tr), test_raw = raw.test.select(te);
  AttackSettings as;
  as.poison_rate = 0.1;
  as.target = 0;
  as.seed = 1;
  as.num_classes = 10;
  auto atk = make_attack("badnets", YAML::Node(), as);
  Rng arng(5);
  auto poisoned = atk->poison_train(train_raw, arng);
  auto trig = atk->triggered_test(test_raw, arng);
  Dataset train{poisoned.images, poisoned.labels, poisoned.poisoned};
  Dataset clean_test{test_raw.images, test_raw.labels, torch::Tensor()};
  Dataset trig_test{trig.images, trig.labels, torch::Tensor()};

  torch::manual_seed(11);
  InputSpec in;
  in.num_classes = 10;
  auto suspect = make_model("cnn", in, YAML::Load("{width: 8, hidden: 64}"));
  TrainOptions topt;
  topt.epochs = 4;
  topt.batch_size = 64;
  Rng trng(3);
  train_supervised(*suspect, train, topt, trng);
  suspect->eval();
  auto before = evaluate(*suspect, clean_test, trig_test, 0);
  ASSERT_GT(before.asr, 0.8) << "the suspect did not learn the backdoor";

  DefenseSetup setup;
  setup.arch = "cnn";
  setup.num_classes = 10;
  Params p(YAML::Load("{clean_samples: 200, nt_epochs: 2, ml_iterations: 300, consensus_iterations: 300, control: false}"),
           "ntml");
  auto defense = make_defense("ntml", p, setup);
  p.check_consumed();
  DefenseContext ctx;
  ctx.train = train.without_ground_truth();
  ctx.clean_data = ctx.train;  // the pool only draws unpoisoned rows, whose labels are true
  ctx.clean = std::make_shared<CleanPool>(train.y, train.poisoned, 10, 9);
  ctx.num_classes = 10;
  ctx.seed = 21;
  ctx.monitor = [&](Classifier& m) { return evaluate(m, clean_test, trig_test, 0); };
  auto r = defense->run(suspect, ctx);
  auto after = evaluate(*r.model, clean_test, trig_test, 0);
  EXPECT_LT(after.asr, 0.2);
  EXPECT_GT(after.cacc, 0.6);
  EXPECT_EQ(r.clean_samples, 200);
  // Images anchor ML on the directional mapping's flagged rows (its two stages first),
  // then run consensus distillation. On this small cell S is weak after 300 ML steps,
  // its ordinary confusions may rival the triggered rows, and the guard then skips the
  // phase rather than guess the target (the ASR check above holds either way); when it
  // runs, the class it leaves out must be the attack's target.
  std::vector<std::string> names;
  for (const auto& st : r.stages) names.push_back(st.name);
  EXPECT_EQ(names, (std::vector<std::string>{"dmm", "identify", "nt", "ml", "consensus"}));
  EXPECT_EQ(r.details["identify"]["target"].get<int64_t>(), 0);
  ASSERT_GT(r.flagged.numel(), 0);
  EXPECT_LE(r.flagged.numel(), 128);
  EXPECT_GE(train.poisoned.index_select(0, r.flagged).to(torch::kDouble).mean().item<double>(), 0.9)
      << "the anchored rows are the poisoned ones";
  const auto& cons = r.details["consensus"];
  if (cons["skipped"].get<bool>()) {
    EXPECT_EQ(cons["used"].get<int64_t>(), 0);
    EXPECT_EQ(r.details["stages"].size(), 4u);
  } else {
    EXPECT_EQ(cons["suspected_class"].get<int64_t>(), 0);
    EXPECT_EQ(r.details["stages"].size(), 5u);
  }
  EXPECT_EQ(r.details["checks"].size(), 3u);
  EXPECT_TRUE(r.details["verdict"].is_string());
  // the suspect itself is untouched
  auto again = evaluate(*suspect, clean_test, trig_test, 0);
  EXPECT_EQ(again.asr, before.asr);
}

// Real text: SST-2's 6920 training rows with BadNet-word at 10 % (400 test rows), the
// default Transformer ([CLS] pooling, 4 epochs), and NT-ML's text defaults (ML anchored
// on token_stats's flagged rows) without the control. Without the anchor, mutual
// learning returned the backdoor on every SST-2 bench suspect (ASR 84-99 %); here the
// ASR must fall by half, clean accuracy hold within 5 points, and the anchor's rows be
// the poisoned ones.
TEST(NTML, IntegrationSst2BadnetWordAsrFalls) {
  auto r = antidote::testing::sst2_badnet_word();
  if (!antidote::testing::data_present(r)) GTEST_SKIP() << "shared text data not found at " << r.data.path;
  auto run = antidote::testing::suspect_then_defense(r, "ntml", YAML::Load("{control: false}"));
  ASSERT_GT(run.before.asr, 0.8) << "the suspect did not learn the backdoor";
  std::cerr << fmt::format("sst2 ntml: before {:.3f}/{:.3f} after {:.3f}/{:.3f} precision {:.3f} ({} flagged)\n",
                           run.before.cacc, run.before.asr, run.after.cacc, run.after.asr, run.detection.precision,
                           run.detection.flagged);
  EXPECT_GE(run.detection.precision, 0.9);
  EXPECT_LT(run.after.asr, 0.5 * run.before.asr);
  EXPECT_GT(run.after.cacc, run.before.cacc - 0.05);
  EXPECT_EQ(run.result.details["identify"]["method"], "token_stats");
}
