// NT-ML — Non-target label Training and Mutual Learning (arXiv 2508.05404).
//
// The paper's body is not public. What follows is OUR READING OF ITS ABSTRACT,
// not a port of the authors' code:
//
//  * Stage 1, NT. f_0 = the suspect model (the outcome of "standard training"),
//    frozen. Every input of the suspicious training set gets the non-target label
//    q(x) = softmax(z_0(x)/τ) with f_0's own top-1 masked out. On a poisoned input
//    f_0's top-1 is the attacker's target, so q points to the true class; on a clean
//    input q is the dark knowledge over the other classes. The student S is trained
//    on q with the soft cross-entropy, so it never sees a trigger paired with the
//    target. The teacher T is f_0.
//  * Stage 2, ML. Deep mutual learning of S and T on the small clean set, each with
//    CE plus α·τ²·KL to its detached peer, one optimizer each. The output is S.
//  * Consensus distillation (an antidote extension, images by default): after ML, S
//    also distils T on the training rows where both agree, leaving out the class on
//    which they disagree most (the suspected target). See ntml.hpp.
//  * Control: the same ML (and consensus) with a randomly initialised S ("ML without NT"), reported
//    next to NT-ML so that users see what NT adds on their data (its model is not
//    the output).
//
// Every run evaluates T and S after each stage through ctx.monitor (evaluation only,
// never used to choose anything) and checks the abstract's two claims: after NT,
// CACC(T) well above CACC(S), and PCC(S) above PCC(T).
//
// The defaults are the ones docs/ntml.md measured on Fashion-MNIST.
#include "antidote/defenses/ntml.hpp"

#include <cmath>
#include <optional>

#include "antidote/defenses/defense.hpp"
#include "antidote/defenses/identify/identify.hpp"
#include "antidote/train/losses.hpp"
#include "antidote/train/train.hpp"

namespace antidote::ntml {

torch::Tensor non_target_labels(Classifier& frozen, const torch::Tensor& x, double temperature,
                                torch::Device device, int64_t batch_size) {
  torch::NoGradGuard ng;
  bool was_training = frozen.is_training();
  frozen.eval();
  std::vector<torch::Tensor> parts;
  const int64_t n = x.size(0);
  for (int64_t start = 0; start < n; start += batch_size) {
    auto xb = x.slice(0, start, std::min(n, start + batch_size)).to(device);
    parts.push_back(non_target_distribution(frozen.logits(xb).to(torch::kFloat), temperature).cpu());
  }
  frozen.train(was_training);
  return parts.empty() ? torch::empty({0, 0}) : torch::cat(parts, 0);
}

MutualLosses mutual_losses(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                           const torch::Tensor& labels, double temperature, double alpha_student,
                           double alpha_teacher) {
  const double t2 = temperature * temperature;
  MutualLosses l;
  l.student = torch::cross_entropy_loss(student_logits, labels);
  if (alpha_student != 0)
    l.student = l.student + alpha_student * t2 * kl_teacher_student(teacher_logits.detach(), student_logits, temperature);
  l.teacher = torch::cross_entropy_loss(teacher_logits, labels);
  if (alpha_teacher != 0)
    l.teacher = l.teacher + alpha_teacher * t2 * kl_teacher_student(student_logits.detach(), teacher_logits, temperature);
  return l;
}

torch::Tensor anchor_loss(Classifier& student, const AnchorBatch& anchor) {
  std::optional<KeepRunningStatistics> keep;
  if (anchor.keep_running) keep.emplace(student, *anchor.keep_running);
  return anchor.weight * soft_cross_entropy(student.logits(anchor.x), anchor.q);
}

std::pair<double, double> mutual_step(Classifier& student, Classifier& teacher, Trainer* student_trainer,
                                      Trainer* teacher_trainer, const torch::Tensor& x, const torch::Tensor& y,
                                      double temperature, double alpha_student, double alpha_teacher,
                                      const AnchorBatch* anchor) {
  auto zs = student.logits(x);
  auto zt = teacher.logits(x);
  auto l = mutual_losses(zs, zt, y, temperature, alpha_student, alpha_teacher);
  if (anchor && anchor->weight > 0) l.student = l.student + anchor_loss(student, *anchor);
  const double student_loss = check_finite(l.student, "ntml mutual learning (student loss)");
  const double teacher_loss = check_finite(l.teacher, "ntml mutual learning (teacher loss)");
  // The peers are detached inside the losses, so one backward of the sum sends
  // L_S only into S and L_T only into T.
  torch::Tensor total;
  std::vector<Trainer*> stepped;
  if (student_trainer) {
    total = l.student;
    stepped.push_back(student_trainer);
  }
  if (teacher_trainer) {
    total = total.defined() ? total + l.teacher : l.teacher;
    stepped.push_back(teacher_trainer);
  }
  if (total.defined()) Trainer::step_together(stepped, total);
  return {student_loss, teacher_loss};
}

std::vector<torch::Tensor> head_parameters(Classifier& model, int64_t num_classes) {
  int64_t width = -1;
  try {
    torch::NoGradGuard ng;
    bool was_training = model.is_training();
    model.eval();
    auto dev = model.parameters().empty() ? torch::Device(torch::kCPU) : model.parameters().front().device();
    auto out = model.forward(model.spec.input.example(2).to(dev));
    model.train(was_training);
    if (out.features.defined()) width = out.features.size(-1);
  } catch (const std::exception&) {
    width = -1;
  }
  auto named = model.named_parameters(true);
  int64_t weight_at = -1;
  for (int64_t i = static_cast<int64_t>(named.size()) - 1; i >= 0; --i) {
    const auto& p = named[i].value();
    if (p.dim() == 2 && p.size(0) == num_classes && (width < 0 || p.size(1) == width)) {
      weight_at = i;
      break;
    }
  }
  if (weight_at < 0) return {};
  std::vector<torch::Tensor> head{named[weight_at].value()};
  // Its bias: the [K] parameter beside it that shares its module prefix.
  const auto& wname = named[weight_at].key();
  auto prefix = wname.substr(0, wname.rfind('.') + 1);
  for (const auto& item : named)
    if (item.key() != wname && item.key().rfind(prefix, 0) == 0 && item.value().dim() == 1 &&
        item.value().size(0) == num_classes)
      head.push_back(item.value());
  return head;
}

void reinitialize(Classifier& model) {
  torch::NoGradGuard ng;
  for (auto& item : model.named_parameters(true)) {
    auto& p = item.value();
    const auto& name = item.key();
    bool is_bias = name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
    if (p.dim() >= 2) {
      torch::nn::init::kaiming_uniform_(p, std::sqrt(5.0));
    } else if (is_bias) {
      p.zero_();
    } else {
      p.fill_(1.0);  // norm-layer scales
    }
  }
}


namespace {
bool is_image(const torch::Tensor& x) { return x.dim() == 4 && x.is_floating_point(); }

// The anchor's rows, `batch_size` at a time, cycled on a stream of their own so that
// the clean batches are the same with and without it.
class AnchorCycle {
 public:
  AnchorCycle(const Classifier& student, const MlAnchor& anchor) : anchor_(anchor), rng_(anchor.seed) {
    if (anchor.active()) batches_.emplace(student, anchor.x, std::min(anchor.batch_size, anchor.x.size(0)));
    if (anchor.batch_norm == "batch") keep_running_ = KeepRunningStatistics::Normalise::kBatch;
    if (anchor.batch_norm == "running") keep_running_ = KeepRunningStatistics::Normalise::kRunning;
  }
  bool active() const { return batches_.has_value(); }
  AnchorBatch next(torch::Device device) {
    if (next_ >= order_.size()) {
      order_ = batches_->epoch(&rng_);
      next_ = 0;
    }
    const auto& rows = order_[next_++];
    return {batches_->rows(rows).to(device), anchor_.q.index_select(0, rows).to(device), anchor_.weight, keep_running_};
  }

 private:
  const MlAnchor& anchor_;
  std::optional<KeepRunningStatistics::Normalise> keep_running_;  // from anchor_.batch_norm, once
  Rng rng_;
  std::optional<TrainBatches> batches_;
  std::vector<torch::Tensor> order_;
  size_t next_ = 0;
};
}  // namespace

double non_target_training(Classifier& student, Classifier& frozen, const Dataset& train, const NtOptions& o,
                           Rng& rng, torch::Device device, const std::string& label) {
  auto q = non_target_labels(frozen, train.x, o.temperature, device);
  const bool image = is_image(train.x);
  student.train();
  const int64_t n = train.size();
  Trainer trainer(student.parameters(), o.opt.cfg, "ntml non-target label training");
  trainer.buffers(student.buffers())
      .schedule(o.opt.schedule, steps_per_epoch(n, o.batch_size, trainer.world_size()) * o.epochs);
  Progress progress(label, n * o.epochs);
  const TrainBatches batches(student, train.x, o.batch_size);
  double last = 0;
  for (int64_t epoch = 0; epoch < o.epochs; ++epoch) {
    double sum = 0;
    int64_t count = 0;
    for (const auto& b : batches.epoch(&rng, trainer.rank(), trainer.world_size())) {
      auto x = batches.rows(b).to(device);
      if (image && o.augment) x = random_shift(x, 2, rng);
      auto target = q.index_select(0, b).to(device);
      double l = trainer.step(soft_cross_entropy(student.logits(x), target));
      sum += l * static_cast<double>(b.numel());
      count += b.numel();
      progress.advance(b.numel(), fmt::format("epoch {}/{} loss {:.4f}", epoch + 1, o.epochs, l));
    }
    last = count ? sum / static_cast<double>(count) : 0;
  }
  progress.finish(fmt::format("NT loss {:.4f}", last));
  return last;
}

void mutual_learning(Classifier& student, Classifier& teacher, const Dataset& clean, const MlOptions& o, Rng& rng,
                     torch::Device device, const std::string& label, const MlAnchor& anchor,
                     const std::function<void(int64_t)>& checkpoint) {
  const bool image = is_image(clean.x);
  const int64_t n = clean.size();
  if (n == 0) fail("ntml: the clean set is empty");
  const int64_t bs = std::min(o.batch_size, n);
  student.train();
  teacher.train();
  const TrainBatches clean_batches(student, clean.x, bs);
  auto batch_of = [&](const torch::Tensor& b) {
    auto x = clean_batches.rows(b).to(device);
    if (image && o.augment) x = random_shift(x, 2, rng);
    return std::make_pair(x, clean.y.index_select(0, b).to(device));
  };

  // Optional linear-probe warm start: the student's head alone, CE on the clean set.
  if (o.probe_epochs > 0) {
    auto head = head_parameters(student, student.spec.input.num_classes);
    if (head.empty()) {
      log_info("ntml: no classifier head found; linear-probe warm start skipped");
    } else {
      std::vector<torch::Tensor> frozen;
      for (auto& p : student.parameters()) {
        bool in_head = false;
        for (auto& h : head) in_head = in_head || p.is_same(h);
        if (!in_head && p.requires_grad()) {
          p.set_requires_grad(false);
          frozen.push_back(p);
        }
      }
      OptimizerConfig pc = o.student_opt.cfg;
      pc.lr = o.probe_lr;
      Trainer probe(head, pc, "ntml linear probe");
      for (int64_t e = 0; e < o.probe_epochs; ++e)
        for (const auto& b : clean_batches.epoch(&rng, probe.rank(), probe.world_size())) {
          auto [x, y] = batch_of(b);
          probe.step(torch::cross_entropy_loss(student.logits(x), y));
        }
      for (auto& p : frozen) p.set_requires_grad(true);
    }
  }

  Trainer student_trainer(student.parameters(), o.student_opt.cfg, "ntml mutual learning (student)");
  OptimizerConfig tc = o.student_opt.cfg;
  tc.lr = o.teacher_lr;
  Trainer teacher_trainer(teacher.parameters(), tc, "ntml mutual learning (teacher)");
  student_trainer.buffers(student.buffers());
  teacher_trainer.buffers(teacher.buffers());
  student_trainer.schedule(o.student_opt.schedule, o.iterations);
  teacher_trainer.schedule(o.student_opt.schedule, o.iterations);
  Progress progress(label, o.iterations, "iterations");
  std::vector<torch::Tensor> batches;
  size_t next = 0;
  AnchorCycle anchor_cycle(student, anchor);
  std::pair<double, double> l{0, 0};
  for (int64_t it = 0; it < o.iterations; ++it) {
    if (next >= batches.size()) {
      batches = clean_batches.epoch(&rng, student_trainer.rank(), student_trainer.world_size());
      next = 0;
    }
    auto [x, y] = batch_of(batches[next++]);
    const double alpha_t = it < o.warmup ? 0.0 : o.alpha_teacher;
    AnchorBatch ab;
    if (anchor_cycle.active()) ab = anchor_cycle.next(device);
    l = mutual_step(student, teacher, &student_trainer, &teacher_trainer, x, y, o.temperature, o.alpha_student, alpha_t,
                    anchor_cycle.active() ? &ab : nullptr);
    progress.advance(1, fmt::format("L_S {:.4f} L_T {:.4f}", l.first, l.second));
    if (checkpoint && (it + 1) % std::max<int64_t>(1, o.iterations / 10) == 0) checkpoint(it + 1);
  }
  progress.finish(fmt::format("L_S {:.4f} L_T {:.4f}", l.first, l.second));
}

ConsensusSet consensus_rows(const torch::Tensor& student_probs, const torch::Tensor& teacher_probs,
                            bool exclude_suspected, double min_ratio, bool require_agreement) {
  if (student_probs.sizes() != teacher_probs.sizes() || student_probs.dim() != 2)
    fail("ntml consensus: student and teacher probabilities must be [N, K] of the same shape");
  ConsensusSet set;
  auto s = student_probs.argmax(1), t = teacher_probs.argmax(1);
  auto agree = s.eq(t);
  set.agreed = agree.sum().item<int64_t>();
  if (exclude_suspected && student_probs.size(0) > 0) {
    // Per class c: how many rows T sends to c that S does not.
    auto parted = torch::bincount(t.masked_select(~agree), {}, teacher_probs.size(1));
    auto top2 = parted.topk(std::min<int64_t>(2, parted.size(0)));
    set.suspected_class = std::get<1>(top2)[0].item<int64_t>();
    set.parted_top = std::get<0>(top2)[0].item<int64_t>();
    set.parted_second = parted.size(0) > 1 ? std::get<0>(top2)[1].item<int64_t>() : 0;
    if (set.parted_top == 0 ||
        static_cast<double>(set.parted_top) < min_ratio * static_cast<double>(set.parted_second)) {
      set.skipped = true;
      set.rows = torch::empty({0}, torch::kLong);
      return set;
    }
    auto outside = t.ne(set.suspected_class);
    set.rows = (require_agreement ? agree & outside : outside).nonzero().squeeze(1);
  } else {
    set.rows = agree.nonzero().squeeze(1);
  }
  return set;
}

ConsensusSet consensus_distillation(Classifier& student, Classifier& teacher, const torch::Tensor& unlabeled,
                                    const Dataset& clean, const MlOptions& ml, const ConsensusOptions& o, Rng& rng,
                                    torch::Device device, const std::string& label, const MlAnchor& anchor) {
  if (clean.size() == 0) fail("ntml: the clean set is empty");
  // T's log-probabilities serve as its logits: softmax(log p / τ) = softmax(z / τ).
  auto teacher_log_probs = [&](const torch::Tensor& x) { return predict_probs(teacher, x).clamp_min(1e-30).log(); };
  auto pt = predict_probs(teacher, unlabeled);
  auto set =
      consensus_rows(predict_probs(student, unlabeled), pt, o.exclude_suspected, o.min_ratio, o.require_agreement);
  if (set.skipped) {
    log_info(fmt::format("{}: skipped, no class stands out as the target (T-not-S rows: {} for class {}, {} for the "
                         "runner-up; needs {}x)",
                         label, set.parted_top, set.suspected_class, set.parted_second, o.min_ratio));
    return set;
  }
  log_info(fmt::format("{}: S and T agree on {} of {} training rows; {} used (suspected target class {}: {} T-not-S "
                       "rows, runner-up {})",
                       label, set.agreed, unlabeled.size(0), set.rows.numel(), set.suspected_class, set.parted_top,
                       set.parted_second));
  if (set.rows.numel() == 0 || o.iterations == 0) return set;
  const bool shifted = is_image(clean.x) && o.augment;
  const int64_t bs = std::min(ml.batch_size, clean.size());
  Trainer trainer(student.parameters(), ml.student_opt.cfg, "ntml consensus distillation");
  trainer.buffers(student.buffers());
  const int rank = trainer.rank(), world = trainer.world_size();
  // The KL runs over the other classes only (both distributions renormalised without
  // the suspected one): the consensus rows then teach nothing about that class, not
  // even "not this class" on look-alike rows of the others; what S learns of it comes
  // from the clean set alone.
  torch::Tensor cols;
  if (set.suspected_class >= 0) {
    std::vector<int64_t> keep;
    for (int64_t k = 0; k < pt.size(1); ++k)
      if (k != set.suspected_class) keep.push_back(k);
    cols = torch::tensor(keep, torch::kLong).to(device);
  }
  auto without_suspected = [&](const torch::Tensor& z) { return cols.defined() ? z.index_select(1, cols) : z; };
  // T's logits on the chosen rows, restricted to the kept classes once, on the device.
  auto teacher_logits = without_suspected(pt.index_select(0, set.rows).clamp_min(1e-30).log().to(device));
  const bool teacher_was_training = teacher.is_training();
  student.train();
  teacher.eval();
  // T is frozen here: its logits on the clean rows are computed once (unless shifted).
  torch::Tensor clean_teacher_logits;
  if (!shifted) clean_teacher_logits = teacher_log_probs(clean.x).to(device);
  std::vector<torch::Tensor> batches, u_batches;
  size_t next = 0, next_u = 0;
  std::optional<WeightAverage> average;
  if (o.ema > 0) average.emplace(student.parameters(), o.ema);
  AnchorCycle anchor_cycle(student, anchor);
  Progress progress(label, o.iterations, "iterations");
  double last = 0;
  for (int64_t it = 0; it < o.iterations; ++it) {
    if (next >= batches.size()) batches = epoch_batches(clean.size(), bs, &rng, rank, world), next = 0;
    // Fewer consensus rows than workers (a handful at most): every worker takes them all.
    const bool share_u = set.rows.numel() >= world;
    if (next_u >= u_batches.size())
      u_batches = epoch_batches(set.rows.numel(), o.batch_size, &rng, share_u ? rank : 0, share_u ? world : 1),
      next_u = 0;
    auto b = batches[next++];
    auto x = clean.x.index_select(0, b).to(device);
    if (shifted) x = random_shift(x, 2, rng);
    auto y = clean.y.index_select(0, b).to(device);
    auto ub = u_batches[next_u++];
    auto xu = unlabeled.index_select(0, set.rows.index_select(0, ub)).to(device);
    torch::Tensor zt;
    if (shifted) {
      torch::NoGradGuard ng;
      zt = teacher.logits(x);
    } else {
      zt = clean_teacher_logits.index_select(0, b.to(device));
    }
    auto loss = mutual_losses(student.logits(x), zt, y, ml.temperature, ml.alpha_student, 0.0).student +
                o.weight * o.temperature * o.temperature *
                    kl_teacher_student(teacher_logits.index_select(0, ub.to(device)),
                                       without_suspected(student.logits(xu)), o.temperature);
    if (anchor_cycle.active()) loss = loss + anchor_loss(student, anchor_cycle.next(device));
    last = trainer.step(loss);
    if (average) average->update();
    progress.advance(1, fmt::format("loss {:.4f}", last));
  }
  progress.finish(fmt::format("loss {:.4f}", last));
  if (average) average->apply();
  teacher.train(teacher_was_training);
  return set;
}

}  // namespace antidote::ntml

namespace antidote {
namespace {

struct NtmlOptions {
  int64_t clean_samples = kDefaultCleanSamples;
  std::string student_init = "suspect";  // suspect | random
  ntml::NtOptions nt;
  ntml::MlOptions ml;
  ntml::ConsensusOptions consensus;
  std::string consensus_teacher = "ml";  // suspect (f_0, frozen) | ml (T after mutual learning)
  std::string control = "auto";  // auto (the context's `controls`: on in bench, off in defend) | true | false
  // The identification stage whose flagged rows anchor ML ("none": no anchor, the
  // abstract's reading as it stands).
  std::string identify = "none";
  double anchor_weight = 1.0;
  int64_t anchor_batch_size = 32;
  std::string anchor_batch_norm = "batch";
  bool consensus_anchor = true;  // the anchor also holds in the consensus phase
  // What S is held to on the anchored rows: f_0's non-target labels (non_target), or
  // the uniform distribution over every class but the identified target (uniform).
  // With two classes they are the same.
  std::string anchor_labels = "non_target";
};

// The defaults of a modality. Images: as measured in docs/ntml.md (Fashion-MNIST, small
// CNN). Text models (trained from scratch with Adam 1e-3) use Adam at a smaller rate.
NtmlOptions ntml_defaults(Modality modality) {
  NtmlOptions o;
  // Consensus distillation is on for images, where docs/ntml.md measured it (Fashion-
  // MNIST: the CACC cost of NT-ML falls from about 6 points to about 2); off for text,
  // where it is not measured.
  o.consensus.iterations = 2000;
  o.consensus.weight = 8.0;
  o.ml.teacher_lr = -1;  // ml_lr / 10 (the table resolves it)
  // Images: the anchor on the rows the directional mapping flags (127-128 of 128 poisoned on all four
  // Fashion-MNIST attacks with NT-ML's 50 clean rows per class), held to the uniform
  // distribution off the target, through ML and the consensus phase, which distils f_0
  // itself. Without the anchor the ASR after ML moved from 0.3 to 10.4 % between seeds
  // of one cell; distilling T after ML cost 2.0-2.6 CACC points there (docs/ntml.md).
  o.identify = "dmm";
  o.anchor_labels = "uniform";
  o.consensus_teacher = "suspect";
  if (modality != Modality::Text) return o;
  o.anchor_labels = "non_target";
  o.consensus_teacher = "ml";
  o.nt.opt.cfg = {"adam", 1e-4, 0.9, 0.0};
  o.ml.student_opt.cfg = {"adam", 1e-4, 0.9, 0.0};
  o.nt.epochs = 2;
  o.nt.batch_size = 32;
  o.ml.batch_size = 32;
  o.ml.probe_lr = 1e-3;
  o.consensus.iterations = 0;
  o.consensus.batch_size = 32;
  o.consensus.weight = 1.0;
  // The ML anchor on token_stats's flagged rows (docs/ntml.md: without it ML returned
  // the backdoor on SST-2, ASR 84-99 %).
  o.identify = "token_stats";
  return o;
}

using Opts = NtmlOptions;

// A stage's optimizer keys (<prefix>optimizer, lr, momentum, weight_decay, schedule).
void stage_optimizer_keys(OptionTable<Opts>& t, const std::string& prefix, const std::string& stage,
                          const std::function<ntml::StageOptimizer&(Opts&)>& at) {
  optimizer_keys<Opts>(
      t, prefix, stage, [at](Opts& o) -> OptimizerConfig& { return at(o).cfg; },
      [at](Opts& o) -> std::string& { return at(o).schedule; }, {"sgd", "adam"});
}

// Every NT-ML key: where it lives in NtmlOptions, what it means, the rule it must meet.
const OptionTable<Opts>& table() {
  static const OptionTable<Opts> t = [] {
    OptionTable<Opts> t;
    t.add("clean_samples", &Opts::clean_samples, "clean rows of the mutual-learning set", at_least<int64_t>(1));
    t.add("student_init", &Opts::student_init, "the student starts as the suspect or from random weights",
          one_of({"suspect", "random"}));
    t.add("control", &Opts::control, "also run the control (ML without NT); auto: in bench, not in defend",
          one_of({"auto", "true", "false"}));
    t.add("nt_epochs", nested(&Opts::nt, &ntml::NtOptions::epochs), "epochs of non-target label training",
          at_least<int64_t>(0));
    t.add("nt_batch_size", nested(&Opts::nt, &ntml::NtOptions::batch_size), "batch of non-target label training",
          positive<int64_t>());
    t.add("nt_temperature", nested(&Opts::nt, &ntml::NtOptions::temperature), "temperature of the non-target labels",
          positive<double>());
    t.add("nt_augment", nested(&Opts::nt, &ntml::NtOptions::augment), "images: random 2-pixel shifts in NT");
    stage_optimizer_keys(t, "nt_", "non-target label training",
                         [](Opts& o) -> ntml::StageOptimizer& { return o.nt.opt; });
    t.add("ml_iterations", nested(&Opts::ml, &ntml::MlOptions::iterations), "iterations of mutual learning",
          at_least<int64_t>(0));
    t.add("ml_batch_size", nested(&Opts::ml, &ntml::MlOptions::batch_size), "batch of mutual learning",
          positive<int64_t>());
    t.add("warmup", nested(&Opts::ml, &ntml::MlOptions::warmup),
          "ML iterations with alpha_t = 0 (T learns from labels only)", at_least<int64_t>(0));
    t.add("temperature", nested(&Opts::ml, &ntml::MlOptions::temperature), "temperature of ML's KL terms",
          positive<double>());
    t.add("alpha_s", nested(&Opts::ml, &ntml::MlOptions::alpha_student), "weight of KL(T || S) in the student's loss",
          at_least(0.0));
    t.add("alpha_t", nested(&Opts::ml, &ntml::MlOptions::alpha_teacher), "weight of KL(S || T) in the teacher's loss",
          at_least(0.0));
    t.add("ml_augment", nested(&Opts::ml, &ntml::MlOptions::augment), "images: random 2-pixel shifts in ML");
    stage_optimizer_keys(t, "ml_", "mutual learning (student)",
                         [](Opts& o) -> ntml::StageOptimizer& { return o.ml.student_opt; });
    // The teacher learns ten times slower than the student: it keeps the suspect's clean
    // accuracy instead of over-fitting the small clean set, and S distils from it
    // (docs/ntml.md: +2.1 points of S's CACC on Fashion-MNIST BadNets).
    t.add("ml_teacher_lr", nested(&Opts::ml, &ntml::MlOptions::teacher_lr), "the teacher's learning rate in ML",
          positive<double>())
        .follows<double>(
            -1, [](const Opts& o) { return 0.1 * o.ml.student_opt.cfg.lr; }, "ml_lr / 10");
    t.add("probe_epochs", nested(&Opts::ml, &ntml::MlOptions::probe_epochs),
          "linear-probe warm start of S's head (0 = off)", at_least<int64_t>(0));
    t.add("probe_lr", nested(&Opts::ml, &ntml::MlOptions::probe_lr), "learning rate of the linear probe",
          positive<double>());
    t.add("consensus_iterations", nested(&Opts::consensus, &ntml::ConsensusOptions::iterations),
          "iterations of consensus distillation (0 = off)", at_least<int64_t>(0));
    t.add("consensus_batch_size", nested(&Opts::consensus, &ntml::ConsensusOptions::batch_size),
          "batch of the consensus rows", positive<int64_t>());
    t.add("consensus_weight", nested(&Opts::consensus, &ntml::ConsensusOptions::weight), "weight of the consensus KL",
          at_least(0.0));
    t.add("consensus_exclude_suspected", nested(&Opts::consensus, &ntml::ConsensusOptions::exclude_suspected),
          "leave out the rows T sends to the suspected target class");
    t.add("consensus_min_ratio", nested(&Opts::consensus, &ntml::ConsensusOptions::min_ratio),
          "the suspected class needs this many times the runner-up's T-not-S rows", at_least(1.0));
    t.add("consensus_temperature", nested(&Opts::consensus, &ntml::ConsensusOptions::temperature),
          "temperature of the consensus KL", positive<double>());
    t.add("consensus_augment", nested(&Opts::consensus, &ntml::ConsensusOptions::augment),
          "images: random 2-pixel shifts");
    t.add("consensus_require_agreement", nested(&Opts::consensus, &ntml::ConsensusOptions::require_agreement),
          "only the rows where S and T agree");
    t.add("consensus_ema", nested(&Opts::consensus, &ntml::ConsensusOptions::ema),
          "S's weights averaged with this decay (0 = off)", within_below(0, 1));
    t.add("consensus_teacher", &Opts::consensus_teacher, "consensus from the frozen suspect or from T after ML",
          one_of({"suspect", "ml"}));
    t.add("identify", &Opts::identify, "the identification method whose rows anchor ML (none = no anchor)");
    t.add("anchor_weight", &Opts::anchor_weight, "weight of the anchor's soft cross-entropy", at_least(0.0));
    t.add("anchor_batch_size", &Opts::anchor_batch_size, "batch of the anchor rows", positive<int64_t>());
    t.add("anchor_batch_norm", &Opts::anchor_batch_norm,
          "batch norm on an anchor batch: update (as on any batch), batch (its statistics, the running ones left to "
          "the clean batches) or running",
          one_of({"update", "batch", "running"}));
    t.add("consensus_anchor", &Opts::consensus_anchor, "the anchor also holds in the consensus phase");
    t.add("anchor_labels", &Opts::anchor_labels,
          "the anchor's targets: f_0's non-target labels, or uniform over the classes but the identified target",
          one_of({"non_target", "uniform"}));
    return t;
  }();
  return t;
}

NtmlOptions read_options(Params& p, const DefenseSetup& setup) {
  NtmlOptions o = ntml_defaults(setup.modality);
  table().read(p, o);
  if (setup.modality == Modality::Text && (o.nt.augment || o.ml.augment))
    fail("{}: nt_augment/ml_augment (random shifts) are for images only", p.context());
  return o;
}

void make_trainable(Classifier& m, torch::Device device) {
  m.to(device);
  m.train();
  for (auto& p : m.parameters()) p.set_requires_grad(true);
}

class NtmlDefense : public Defense {
 public:
  NtmlDefense(NtmlOptions o, IdentifierPtr identifier) : o_(std::move(o)), identifier_(std::move(identifier)) {}
  nlohmann::json resolved_options() const override { return table().values(o_); }
  ReportSection report_section() const override {
    return {"ntml", "NT-ML",
            "T: the teacher (the suspect model, trained on in ML); S: the student. After NT (non-target training on "
            "the poisoned set) S should be well below T on CACC and above it on PCC; after ML (mutual learning on the "
            "clean set) S should keep the CACC and lose the ASR. The control runs ML without NT.",
            "stages"};
  }

  DefenseResult run(const ClassifierPtr& suspect, DefenseContext& ctx) override {
    if (!ctx.clean) fail("ntml needs a clean pool");
    if (ctx.train.size() == 0) fail("ntml needs the suspicious training set (non-target label training runs over it)");
    RunState r(suspect, ctx, ctx.seed);
    torch::manual_seed(r.seeds.torch);
    r.clean = ctx.clean_set(ctx.clean->balanced(o_.clean_samples, 0, "clean_samples"));
    r.result.clean_samples = r.clean.size();
    // f_0: the suspect, frozen (a copy: the caller's model is left as it was).
    r.f0 = suspect->clone_deep();
    r.f0->to(ctx.device);
    freeze(*r.f0);
    r.anchor = identify_anchor(suspect, *r.f0, ctx, r.seeds.identify, r.seeds.anchor, r.result);
    r.monitored = static_cast<bool>(ctx.monitor) || static_cast<bool>(ctx.evaluate);

    ClassifierPtr student = non_target_stage(r);
    auto teacher = suspect->clone_deep();  // T = f_0, trainable in ML
    make_trainable(*teacher, ctx.device);
    if (r.monitored) {
      r.t_nt = evaluate_row(ctx, *teacher, "after NT", "T", r.stages);
      r.s_nt = evaluate_row(ctx, *student, "after NT", "S", r.stages);
    }
    mutual_stage(r, *student, *teacher);
    const bool control = o_.control == "auto" ? ctx.controls : o_.control == "true";
    if (control) control_stage(r);

    r.result.details["reading"] =
        "NT-ML as read from the abstract of arXiv 2508.05404 (the paper's body is not public); see docs/ntml.md";
    r.result.details["stages"] = r.stages;
    if (r.monitored) record_checks(r, control);
    student->eval();
    r.result.model = student;
    return std::move(r.result);
  }

 private:
  static constexpr double kWellAbove = 0.10;  // "well above": at least 10 points of CACC

  // The seeds of one run's random streams; the order of the forks fixes them.
  struct Seeds {
    uint64_t torch, nt, ml, student, control, consensus, identify, anchor;
    explicit Seeds(uint64_t seed) {
      Rng base(seed ^ hash_string("ntml"));
      torch = base.fork_seed("torch");
      nt = base.fork_seed("nt");
      ml = base.fork_seed("ml");
      student = base.fork_seed("student-init");
      control = base.fork_seed("control-init");
      consensus = base.fork_seed("consensus");
      identify = base.fork_seed("identify");
      anchor = base.fork_seed("ml anchor");
    }
  };
  // What the stages of one run share.
  struct RunState {
    RunState(const ClassifierPtr& s, DefenseContext& c, uint64_t seed) : suspect(s), ctx(c), seeds(seed) {}
    const ClassifierPtr& suspect;
    DefenseContext& ctx;
    Seeds seeds;
    Dataset clean;
    ClassifierPtr f0;
    ntml::MlAnchor anchor;
    bool monitored = false;
    nlohmann::json stages = nlohmann::json::array();
    Evaluation t_nt{}, s_nt{}, s_ml{}, c_ml{};
    DefenseResult result;
  };

  // The model S distils in the consensus phase: f_0 itself, or the ML teacher.
  Classifier& consensus_teacher(RunState& r, Classifier& ml_teacher) const {
    return o_.consensus_teacher == "suspect" ? *r.f0 : ml_teacher;
  }

  // The anchor of the consensus phase: ML's, unless switched off there.
  const ntml::MlAnchor& consensus_anchor(const RunState& r) const {
    static const ntml::MlAnchor none;
    return o_.consensus_anchor ? r.anchor : none;
  }

  // Stage 1: the student trained on f_0's non-target labels over the training set.
  ClassifierPtr non_target_stage(RunState& r) const {
    StageTimer timer("nt");
    ClassifierPtr student = make_student(*r.suspect, o_.student_init, r.seeds.student);
    make_trainable(*student, r.ctx.device);
    Rng rng(r.seeds.nt);
    ntml::non_target_training(*student, *r.f0, r.ctx.train, o_.nt, rng, r.ctx.device);
    r.result.stages.push_back(timer.finish());
    return student;
  }

  // Stage 2: mutual learning on the clean set, then the consensus phase if it is on.
  void mutual_stage(RunState& r, Classifier& student, Classifier& teacher) const {
    StageTimer ml_timer("ml");
    {
      Rng rng(r.seeds.ml);
      nlohmann::json trajectory = nlohmann::json::array();
      ntml::mutual_learning(student, teacher, r.clean, o_.ml, rng, r.ctx.device, "ntml ML", r.anchor,
                            [&](int64_t done) { record_trajectory(r.ctx, student, done, trajectory); });
      if (!trajectory.empty()) r.result.details["trajectory"] = trajectory;  // S during mutual learning
    }
    r.result.stages.push_back(ml_timer.finish());
    if (r.monitored) {
      evaluate_row(r.ctx, teacher, "after ML", "T", r.stages);
      r.s_ml = evaluate_row(r.ctx, student, "after ML", "S", r.stages);
    }
    if (o_.consensus.iterations == 0) return;
    StageTimer timer("consensus");
    Rng rng(r.seeds.consensus);
    auto set = ntml::consensus_distillation(student, consensus_teacher(r, teacher), r.ctx.train.x, r.clean, o_.ml,
                                            o_.consensus, rng, r.ctx.device, "ntml consensus", consensus_anchor(r));
    r.result.stages.push_back(timer.finish());
    r.result.details["consensus"] = {{"agreed", set.agreed},         {"used", set.rows.numel()},
                                     {"suspected_class", set.suspected_class}, {"parted_top", set.parted_top},
                                     {"parted_second", set.parted_second}, {"skipped", set.skipped}};
    if (r.monitored && !set.skipped) r.s_ml = evaluate_row(r.ctx, student, "after consensus", "S", r.stages);
  }

  // The control: ML (and consensus) without NT, from a random S, on the same clean
  // batches and anchor; reported, never returned.
  void control_stage(RunState& r) const {
    StageTimer timer("control");
    auto c_student = make_student(*r.suspect, "random", r.seeds.control);
    make_trainable(*c_student, r.ctx.device);
    auto c_teacher = r.suspect->clone_deep();
    make_trainable(*c_teacher, r.ctx.device);
    Rng rng(r.seeds.ml);
    ntml::mutual_learning(*c_student, *c_teacher, r.clean, o_.ml, rng, r.ctx.device, "ntml control (ML without NT)",
                          r.anchor);
    if (o_.consensus.iterations > 0) {
      Rng crng(r.seeds.consensus);
      ntml::consensus_distillation(*c_student, consensus_teacher(r, *c_teacher), r.ctx.train.x, r.clean, o_.ml,
                                   o_.consensus, crng, r.ctx.device, "ntml control consensus", consensus_anchor(r));
    }
    r.result.stages.push_back(timer.finish());
    if (r.monitored) {
      evaluate_row(r.ctx, *c_teacher, "control: ML without NT", "T", r.stages);
      r.c_ml = evaluate_row(r.ctx, *c_student, "control: ML without NT", "S", r.stages);
    }
  }

  // The abstract's claims after NT, the after-ML check, and whether the control beats
  // NT-ML, as details.checks and a one-line verdict.
  void record_checks(RunState& r, bool control) const {
    const auto &t_nt = r.t_nt, &s_nt = r.s_nt, &s_ml = r.s_ml, &c_ml = r.c_ml;
    const bool cacc_ok = t_nt.cacc - s_nt.cacc >= kWellAbove;
    const bool pcc_ok = s_nt.pcc > t_nt.pcc;
    const bool ml_ok = (t_nt.cacc - s_ml.cacc <= 0.02) && (s_ml.asr <= std::max(0.05, 0.25 * t_nt.asr));
    nlohmann::json checks = nlohmann::json::array();
    checks.push_back({{"check", "after NT: CACC(T) well above CACC(S)"},
                      {"threshold", fmt::format("CACC(T) - CACC(S) >= {:.0f} points", kWellAbove * 100)},
                      {"T", t_nt.cacc},
                      {"S", s_nt.cacc},
                      {"passed", cacc_ok}});
    checks.push_back(
        {{"check", "after NT: PCC(S) above PCC(T)"}, {"T", t_nt.pcc}, {"S", s_nt.pcc}, {"passed", pcc_ok}});
    checks.push_back({{"check",
                       "after ML (and consensus): S keeps CACC (drop <= 2 points vs the suspect = T after NT) and "
                       "loses the ASR (<= max(5%, a quarter of the suspect's))"},
                      {"cacc_suspect", t_nt.cacc},
                      {"cacc_S", s_ml.cacc},
                      {"asr_suspect", t_nt.asr},
                      {"asr_S", s_ml.asr},
                      {"passed", ml_ok},
                      {"informational", true}});
    if (control) {
      // The control beats NT-ML when it is at least as good on both counts: then NT
      // added nothing on this data.
      const bool beaten = c_ml.cacc >= s_ml.cacc && c_ml.asr <= s_ml.asr;
      checks.push_back({{"check", "NT-ML is not beaten by its control (ML without NT at least as good on CACC and ASR)"},
                        {"cacc_S", s_ml.cacc},
                        {"asr_S", s_ml.asr},
                        {"cacc_control", c_ml.cacc},
                        {"asr_control", c_ml.asr},
                        {"passed", !beaten},
                        {"informational", true}});
      r.result.details["control_beats_ntml"] = beaten;
      if (beaten)
        log_info(fmt::format("ntml: the control (ML without NT: CACC {:.1f}% ASR {:.1f}%) beats NT-ML (CACC {:.1f}% "
                             "ASR {:.1f}%) on this data",
                             100 * c_ml.cacc, 100 * c_ml.asr, 100 * s_ml.cacc, 100 * s_ml.asr));
    }
    r.result.details["checks"] = checks;
    std::string verdict = fmt::format(
        "abstract's checks after NT: CACC(T) {:.1f}% vs CACC(S) {:.1f}% {}; PCC(S) {:.1f}% vs PCC(T) {:.1f}% {} => {}",
        100 * t_nt.cacc, 100 * s_nt.cacc, cacc_ok ? "holds" : "FAILS", 100 * s_nt.pcc, 100 * t_nt.pcc,
        pcc_ok ? "holds" : "FAILS", cacc_ok && pcc_ok ? "both hold" : "not confirmed on this run");
    r.result.details["verdict"] = verdict;
    log_info("ntml: " + verdict);
  }

  // The identification stage and the ML anchor it gives: the flagged rows with f_0's
  // non-target labels. Empty without an identification method.
  ntml::MlAnchor identify_anchor(const ClassifierPtr& suspect, Classifier& f0, const DefenseContext& ctx,
                                 uint64_t identify_seed, uint64_t anchor_seed, DefenseResult& result) const {
    ntml::MlAnchor anchor;
    if (!identifier_) return anchor;
    Rng rng(identify_seed);
    auto id = identifier_->identify(suspect, ctx, rng);
    record_identification(id, "ntml", result);
    if (id.flagged.numel() == 0) return anchor;
    anchor.x = ctx.train.x.index_select(0, id.flagged);
    if (o_.anchor_labels == "non_target") {
      anchor.q = ntml::non_target_labels(f0, anchor.x, o_.nt.temperature, ctx.device);
    } else {
      if (id.target < 0)
        fail("ntml: anchor_labels uniform needs a target label, and identify {} inferred none", o_.identify);
      // Every class but the target equally likely: the rows are pulled away from the
      // target without being handed to f_0's runner-up class, which on a triggered
      // row is the trigger's doing, not the row's true class.
      anchor.q = uniform_except(torch::full({anchor.x.size(0)}, id.target, torch::kLong), ctx.num_classes);
    }
    anchor.weight = o_.anchor_weight;
    anchor.batch_size = o_.anchor_batch_size;
    anchor.batch_norm = o_.anchor_batch_norm;
    anchor.seed = anchor_seed;
    return anchor;
  }

  static ClassifierPtr make_student(const Classifier& suspect, const std::string& init, uint64_t seed) {
    if (init == "suspect") return suspect.clone_deep();
    torch::manual_seed(seed);
    if (ModelRegistry::instance().has(suspect.spec.arch))
      return make_model(suspect.spec.arch, suspect.spec.input, suspect.spec.options, "ntml student");
    auto s = suspect.clone_deep();  // e.g. TorchScript: same graph, fresh weights
    ntml::reinitialize(*s);
    return s;
  }

  static Evaluation evaluate_row(DefenseContext& ctx, Classifier& m, const std::string& stage,
                                 const std::string& model, nlohmann::json& rows) {
    bool was_training = m.is_training();
    // The stage table is a handful of evaluations: on the whole test sets when the
    // caller provides them.
    auto e = ctx.evaluate ? ctx.evaluate(m) : ctx.monitor(m);
    m.train(was_training);
    rows.push_back({{"stage", stage}, {"model", model}, {"cacc", e.cacc}, {"asr", e.asr}, {"ra", e.ra}, {"pcc", e.pcc}});
    log_info(fmt::format("ntml {} {}: CACC {:.1f}% ASR {:.1f}% RA {:.1f}% PCC {:.1f}%", stage, model, 100 * e.cacc,
                         100 * e.asr, 100 * e.ra, 100 * e.pcc));
    return e;
  }

  NtmlOptions o_;
  IdentifierPtr identifier_;
};

constexpr int64_t kAnchorRows = 128;

// The identification's keys that NT-ML sets unless given: 128 anchored rows (on SST-2,
// 128 passed 13 of 15 cells where the rank methods' usual 64 passed 11; on Fashion-MNIST
// the directional mapping's 1024 kept rows held the ASR at 0 % too, but left RA at
// 31-43 % where 128 rows gave 66 %: docs/ntml.md), and a clean budget within NT-ML's
// own (the first clean_samples / classes rows of each class, the rows ML uses).
void identification_defaults(Params& p, const NtmlOptions& o, const DefenseSetup& setup) {
  for (const char* rows : {"flag_count", "max_kept"})
    if (identifier_takes(o.identify, rows) && !p.has(rows)) p.set(rows, YAML::Node(kAnchorRows));
  if (identifier_takes(o.identify, "flip_per_class") && !p.has("flip_per_class") && setup.num_classes > 0)
    p.set("flip_per_class", YAML::Node(std::max<int64_t>(1, o.clean_samples / setup.num_classes)));
}

Registrar<DefenseRegistry> reg(
    "ntml",
    [](Params& p, const DefenseSetup& setup) -> DefensePtr {
      auto o = read_options(p, setup);
      if (o.identify == "none") return std::make_shared<NtmlDefense>(std::move(o), nullptr);
      identification_defaults(p, o, setup);
      auto id = make_identifier(o.identify, p, setup);
      return std::make_shared<NtmlDefense>(std::move(o), std::move(id));
    },
    "NT-ML: non-target label training of a student over the training set, then mutual "
    "learning with the suspect on the clean set (our reading of arXiv 2508.05404)",
    [] { return modality_docs<NtmlOptions>(table(), ntml_defaults); });

}  // namespace
}  // namespace antidote
