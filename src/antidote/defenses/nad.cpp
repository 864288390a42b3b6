// nad — Neural Attention Distillation (Li et al., ICLR 2021), following the authors'
// code and BackdoorBench's defense/nad.py:
//
//  1. teacher: a copy of the suspect model fine-tuned with cross-entropy on the clean
//     set for `teacher_epochs` (BackdoorBench te_epochs = 10), then frozen;
//  2. student: another copy of the suspect model trained on the clean set for
//     `epochs` (BackdoorBench: te_epochs again) with
//         L = CE(z_S, y) + Σ_l β_l · AT(a_S^l, a_T^l),
//     AT(a_S, a_T) = mean over batch and positions of (am(a_S) − am(a_T))²
//     (F.mse_loss of the maps), am(a) = Σ_c |a_c|^p over channels, flattened over
//     positions, divided per sample by its L2 norm + 1e-6 (attention_map below;
//     BackdoorBench's AT class, p = 2). β = 500, 1000, 1000 on the last three blocks'
//     outputs (forward_full activations); a model with fewer blocks uses the last
//     β entries (the small CNN: 1000, 1000 on its two conv blocks).
//     For the Transformer the maps are over token positions (Σ over hidden units of
//     each layer's token states [B, L, H] -> [B, L]), padding tokens masked out; for
//     TextCNN over the convolution positions, and its final feature vector [B, H]
//     is compared unit by unit (|a|^p normalised over units).
//  The student is the purified model.
//
// Difference from BackdoorBench, on purpose: for PreAct-ResNet-18 it hooks the
// outputs of layer3, layer4 and the average pool (whose 1×1 map is constant after
// normalisation, so β3 does nothing there); we use the outputs of the last three
// residual stages (the NAD paper's choice for its WRN: the three groups).
// The optimiser follows the ft recipe (SGD momentum 0.9 for images, Adam for text),
// cosine schedule; BackdoorBench uses SGD 0.01 with weight decay 1e-4 and a step
// schedule that is constant over its 10 epochs.
#include <algorithm>

#include "antidote/defenses/baselines.hpp"

namespace antidote {

torch::Tensor attention_map(const torch::Tensor& a, double p, int64_t channel_dim, const torch::Tensor& position_mask) {
  if (a.dim() < 2) fail("attention map: need a batch of activations, got {} dimension(s)", a.dim());
  auto am = a.abs().pow(p);
  if (channel_dim >= 0) am = am.sum(channel_dim);
  am = am.reshape({a.size(0), -1});
  if (position_mask.defined()) {
    auto m = position_mask.reshape({a.size(0), -1}).to(am.options());
    if (m.size(1) != am.size(1))
      fail("attention map: position mask has {} positions, the map {}", m.size(1), am.size(1));
    am = am * m;
  }
  auto norm = am.norm(2, std::vector<int64_t>{1}, /*keepdim=*/true);
  return am / (norm + 1e-6);
}

torch::Tensor attention_loss(const torch::Tensor& student, const torch::Tensor& teacher, double p,
                             int64_t channel_dim, const torch::Tensor& position_mask) {
  if (student.sizes() != teacher.sizes()) {
    auto shape = [](const torch::Tensor& t) {
      std::string s;
      for (auto d : t.sizes()) s += (s.empty() ? "" : "x") + std::to_string(d);
      return s;
    };
    fail("attention loss: student activation [{}] and teacher activation [{}] differ in shape", shape(student),
         shape(teacher));
  }
  auto s = attention_map(student, p, channel_dim, position_mask);
  auto t = attention_map(teacher.detach(), p, channel_dim, position_mask);
  return (s - t).pow(2).mean();
}

namespace {

struct NadOptions {
  int64_t clean_samples = kDefaultCleanSamples;
  TrainOptions train;  // the teacher's fine-tuning and the student's distillation
  int64_t teacher_epochs = 10;
  std::vector<double> betas{500.0, 1000.0, 1000.0};
  double power = 2.0;
};

NadOptions nad_defaults(Modality modality) { return with_finetune<NadOptions>(modality, 10, 10); }

const OptionTable<NadOptions>& nad_table() {
  static const OptionTable<NadOptions> t = [] {
    OptionTable<NadOptions> t;
    t.add("clean_samples", &NadOptions::clean_samples, "clean rows for the teacher and the distillation",
          at_least<int64_t>(1));
    train_keys(t, &NadOptions::train);
    t.add("teacher_epochs", &NadOptions::teacher_epochs, "epochs of the teacher's fine-tuning", at_least<int64_t>(0));
    t.add("betas", &NadOptions::betas, "attention-loss weights of the last blocks (the last weight, the last block)",
          Rule<std::vector<double>>{[](const std::vector<double>& b) {
                                      return !b.empty() &&
                                             std::all_of(b.begin(), b.end(), [](double v) { return v >= 0; });
                                    },
                                    "must list at least one weight, none negative"});
    t.add("p", &NadOptions::power, "power of the attention map", positive<double>());
    return t;
  }();
  return t;
}

class Nad : public Defense {
 public:
  Nad(Params& p, const DefenseSetup& setup) : setup_(setup), o_(nad_defaults(setup.modality)) {
    nad_table().read(p, o_);
    o_.train.label = "nad teacher";
  }
  nlohmann::json resolved_options() const override { return nad_table().values(o_); }

  DefenseResult run(const ClassifierPtr& suspect, DefenseContext& ctx) override {
    DefenseResult result;
    auto rng = seeded_streams(ctx.seed, "nad");
    auto clean = baseline_clean_set(ctx, o_.clean_samples, "nad");
    result.clean_samples = clean.size();

    // ---- teacher: the suspect fine-tuned on the clean set -------------------------
    StageTimer teacher_timer("teacher");
    auto teacher = trainable_copy(*suspect);
    teacher->to(ctx.device);
    auto teacher_options = o_.train;
    teacher_options.epochs = o_.teacher_epochs;
    train_supervised(*teacher, clean, teacher_options, rng);
    freeze(*teacher);
    auto teacher_fit = clean_fit(*teacher, clean);
    result.stages.push_back(teacher_timer.finish());

    // ---- student: CE + attention distillation -------------------------------------
    StageTimer distill_timer("distill");
    auto student = trainable_copy(*suspect);
    student->to(ctx.device);
    nlohmann::json trajectory = nlohmann::json::array();
    auto epochs = distill(*student, *teacher, clean, rng,
                          [&](int64_t epoch) { record_trajectory(ctx, *student, epoch + 1, trajectory); });
    auto student_fit = clean_fit(*student, clean);
    student->eval();
    result.stages.push_back(distill_timer.finish());

    result.details = {{"betas", used_betas_},
                      {"p", o_.power},
                      {"teacher_clean_acc", teacher_fit.acc},
                      {"student_clean_acc", student_fit.acc},
                      {"epochs", epochs}};
    if (!trajectory.empty()) result.details["trajectory"] = trajectory;  // the student's distillation
    result.model = student;
    return result;
  }

 private:
  // Trains `student` in place; returns per-epoch mean losses. `after_epoch(epoch)` runs
  // after each epoch.
  nlohmann::json distill(Classifier& student, Classifier& teacher, const Dataset& clean, Rng& rng,
                         const std::function<void(int64_t)>& after_epoch) {
    auto dev = student.parameters().front().device();
    Trainer trainer(student.parameters(), o_.train.optimizer, "nad distill");
    trainer.buffers(student.buffers());
    const int64_t per_epoch = steps_per_epoch(clean.size(), o_.train.batch_size, trainer.world_size());
    trainer.schedule(o_.train.schedule, o_.train.epochs * per_epoch, std::llround(o_.train.warmup_epochs * per_epoch))
        .clip(o_.train.clip_norm);
    bool images = clean.x.dim() == 4;
    nlohmann::json log = nlohmann::json::array();
    const TrainBatches batches(student, clean.x, o_.train.batch_size);
    student.train();
    for (int64_t epoch = 0; epoch < o_.train.epochs; ++epoch) {
      Progress progress(fmt::format("nad distill epoch {}/{}", epoch + 1, o_.train.epochs), clean.size());
      double ce_sum = 0, at_sum = 0;
      int64_t seen = 0;
      for (const auto& idx : batches.epoch(&rng, trainer.rank(), trainer.world_size())) {
        auto x = batches.rows(idx);
        if (o_.train.augment && images) x = random_shift(x, 2, rng);
        x = x.to(dev);
        auto y = clean.y.index_select(0, idx).to(dev);
        ModelOutput t_out;
        {
          torch::NoGradGuard ng;
          t_out = teacher.forward_full(x, true);
        }
        auto s_out = student.forward_full(x, true);
        auto ce = torch::cross_entropy_loss(s_out.logits, y);
        auto at = distillation_term(student, s_out.activations, t_out.activations, x);
        // The attention loss is a mean over positions, and padding positions add 0 to it
        // (masked in both maps): a batch cut to its longest row is scaled back to the
        // mean over the full width, the loss an uncut batch gives.
        if (x.dim() == 2 && x.size(1) < clean.x.size(1))
          at = at * (static_cast<double>(x.size(1)) / static_cast<double>(clean.x.size(1)));
        trainer.step(ce + at);
        ce_sum += ce.item<double>() * idx.size(0);
        at_sum += at.item<double>() * idx.size(0);
        seen += idx.size(0);
        progress.advance(idx.size(0));
      }
      double n = static_cast<double>(std::max<int64_t>(1, seen));
      progress.finish(fmt::format("ce {:.4f} at {:.5f}", ce_sum / n, at_sum / n));
      log.push_back({{"epoch", epoch + 1}, {"ce", ce_sum / n}, {"at", at_sum / n}, {"loss", (ce_sum + at_sum) / n}});
      after_epoch(epoch);
    }
    return log;
  }

  // Σ_l β_l · AT(a_S^l, a_T^l) over the last min(#β, #blocks) blocks, pairing the
  // last activation with the last β.
  torch::Tensor distillation_term(const Classifier& student, const std::vector<torch::Tensor>& s,
                                  const std::vector<torch::Tensor>& t, const torch::Tensor& x) {
    if (s.empty() || s.size() != t.size()) fail("nad: the model exposes no per-block activations to distil");
    size_t k = std::min(s.size(), o_.betas.size());
    used_betas_.assign(o_.betas.end() - static_cast<std::ptrdiff_t>(k), o_.betas.end());
    torch::Tensor total = torch::zeros({}, s.back().options());
    for (size_t i = 0; i < k; ++i) {
      const auto& a_s = s[s.size() - k + i];
      const auto& a_t = t[t.size() - k + i];
      double beta = used_betas_[i];
      if (beta == 0) continue;
      int64_t ch = student.activation_channel_dim(a_s);
      torch::Tensor mask;
      if (setup_.modality == Modality::Text && ch == 2 && x.dim() == 2 && x.size(1) == a_s.size(1))
        mask = x.ne(Vocab::kPad);  // token states: padding positions carry no attention
      total = total + beta * attention_loss(a_s, a_t, o_.power, ch, mask);
    }
    return total;
  }

  DefenseSetup setup_;
  NadOptions o_;
  std::vector<double> used_betas_;
};

Registrar<DefenseRegistry> reg(
    "nad", [](Params& p, const DefenseSetup& s) -> DefensePtr { return std::make_shared<Nad>(p, s); },
    "neural attention distillation from a clean-fine-tuned teacher (baseline)",
    [] { return modality_docs<NadOptions>(nad_table(), nad_defaults); });

}  // namespace
}  // namespace antidote
