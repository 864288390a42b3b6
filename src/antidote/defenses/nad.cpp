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

int64_t attention_channel_dim(const torch::Tensor& a, Modality modality, const std::string& arch) {
  switch (a.dim()) {
    case 2:
      return -1;
    case 3:
      return (modality == Modality::Text && arch != "textcnn") ? 2 : 1;
    case 4:
      return 1;
    default:
      fail("attention map: activations of {} dimensions are not supported (need [B,H], [B,L,H] or [B,C,H,W])",
           a.dim());
  }
}

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

class Nad : public Defense {
 public:
  Nad(Params& p, const DefenseSetup& setup) : setup_(setup) {
    clean_samples_ = p.get<int64_t>("clean_samples", kDefaultCleanSamples);
    options_ = read_finetune_options(p, setup, "", 10, 10);
    options_.label = "nad teacher";
    teacher_epochs_ = p.get<int64_t>("teacher_epochs", 10);
    betas_ = p.get<std::vector<double>>("betas", {500.0, 1000.0, 1000.0});
    power_ = p.get<double>("p", 2.0);
    if (teacher_epochs_ < 0) fail("{}.teacher_epochs must be >= 0, got {}", p.context(), teacher_epochs_);
    if (betas_.empty()) fail("{}.betas must list at least one weight", p.context());
    for (double b : betas_)
      if (!(b >= 0)) fail("{}.betas must be non-negative, got {}", p.context(), b);
    if (!(power_ > 0)) fail("{}.p must be positive, got {}", p.context(), power_);
  }

  DefenseResult run(const ClassifierPtr& suspect, DefenseContext& ctx) override {
    DefenseResult result;
    auto rng = seeded_streams(ctx.seed, "nad");
    auto clean = baseline_clean_set(ctx, clean_samples_, "nad");
    result.clean_samples = clean.size();

    // ---- teacher: the suspect fine-tuned on the clean set -------------------------
    StageTimer teacher_timer("teacher");
    auto teacher = trainable_copy(*suspect);
    teacher->to(ctx.device);
    auto teacher_options = options_;
    teacher_options.epochs = teacher_epochs_;
    train_supervised(*teacher, clean, teacher_options, rng);
    freeze(*teacher);
    auto teacher_fit = clean_fit(*teacher, clean);
    result.stages.push_back(teacher_timer.finish());

    // ---- student: CE + attention distillation -------------------------------------
    StageTimer distill_timer("distill");
    auto student = trainable_copy(*suspect);
    student->to(ctx.device);
    auto epochs = distill(*student, *teacher, clean, rng);
    auto student_fit = clean_fit(*student, clean);
    student->eval();
    result.stages.push_back(distill_timer.finish());

    result.details = {{"betas", used_betas_},
                      {"p", power_},
                      {"teacher_clean_acc", teacher_fit.acc},
                      {"student_clean_acc", student_fit.acc},
                      {"epochs", epochs}};
    result.model = student;
    return result;
  }

 private:
  // Trains `student` in place; returns per-epoch mean losses.
  nlohmann::json distill(Classifier& student, Classifier& teacher, const Dataset& clean, Rng& rng) {
    auto dev = student.parameters().front().device();
    auto opt = make_optimizer(student.parameters(), options_.optimizer);
    int64_t steps_per_epoch = (clean.size() + options_.batch_size - 1) / options_.batch_size;
    int64_t total = options_.epochs * steps_per_epoch, step = 0;
    bool images = clean.x.dim() == 4;
    nlohmann::json log = nlohmann::json::array();
    const TrainBatches batches(student, clean.x, options_.batch_size);
    student.train();
    for (int64_t epoch = 0; epoch < options_.epochs; ++epoch) {
      Progress progress(fmt::format("nad distill epoch {}/{}", epoch + 1, options_.epochs), clean.size());
      double ce_sum = 0, at_sum = 0;
      int64_t seen = 0;
      for (const auto& idx : batches.epoch(&rng)) {
        set_learning_rate(*opt, scheduled_lr(options_.optimizer.lr, options_.schedule, step, total));
        auto x = batches.rows(idx);
        if (options_.augment && images) x = random_shift(x, 2, rng);
        x = x.to(dev);
        auto y = clean.y.index_select(0, idx).to(dev);
        ModelOutput t_out;
        {
          torch::NoGradGuard ng;
          t_out = teacher.forward_full(x, true);
        }
        opt->zero_grad();
        auto s_out = student.forward_full(x, true);
        auto ce = torch::cross_entropy_loss(s_out.logits, y);
        auto at = distillation_term(s_out.activations, t_out.activations, x);
        // The attention loss is a mean over positions, and padding positions add 0 to it
        // (masked in both maps): a batch cut to its longest row is scaled back to the
        // mean over the full width, the loss an uncut batch gives.
        if (x.dim() == 2 && x.size(1) < clean.x.size(1))
          at = at * (static_cast<double>(x.size(1)) / static_cast<double>(clean.x.size(1)));
        auto loss = ce + at;
        check_finite(loss, "nad distill");
        loss.backward();
        opt->step();
        ++step;
        ce_sum += ce.item<double>() * idx.size(0);
        at_sum += at.item<double>() * idx.size(0);
        seen += idx.size(0);
        progress.advance(idx.size(0));
      }
      double n = static_cast<double>(std::max<int64_t>(1, seen));
      progress.finish(fmt::format("ce {:.4f} at {:.5f}", ce_sum / n, at_sum / n));
      log.push_back({{"epoch", epoch + 1}, {"ce", ce_sum / n}, {"at", at_sum / n}, {"loss", (ce_sum + at_sum) / n}});
    }
    return log;
  }

  // Σ_l β_l · AT(a_S^l, a_T^l) over the last min(#β, #blocks) blocks, pairing the
  // last activation with the last β.
  torch::Tensor distillation_term(const std::vector<torch::Tensor>& s, const std::vector<torch::Tensor>& t,
                                  const torch::Tensor& x) {
    if (s.empty() || s.size() != t.size()) fail("nad: the model exposes no per-block activations to distil");
    size_t k = std::min(s.size(), betas_.size());
    used_betas_.assign(betas_.end() - static_cast<std::ptrdiff_t>(k), betas_.end());
    torch::Tensor total = torch::zeros({}, s.back().options());
    for (size_t i = 0; i < k; ++i) {
      const auto& a_s = s[s.size() - k + i];
      const auto& a_t = t[t.size() - k + i];
      double beta = used_betas_[i];
      if (beta == 0) continue;
      int64_t ch = attention_channel_dim(a_s, setup_.modality, setup_.arch);
      torch::Tensor mask;
      if (setup_.modality == Modality::Text && ch == 2 && x.dim() == 2 && x.size(1) == a_s.size(1))
        mask = x.ne(Vocab::kPad);  // token states: padding positions carry no attention
      total = total + beta * attention_loss(a_s, a_t, power_, ch, mask);
    }
    return total;
  }

  DefenseSetup setup_;
  int64_t clean_samples_ = kDefaultCleanSamples;
  TrainOptions options_;
  int64_t teacher_epochs_ = 10;
  std::vector<double> betas_;
  std::vector<double> used_betas_;
  double power_ = 2.0;
};

Registrar<DefenseRegistry> reg("nad",
                               [](Params& p, const DefenseSetup& s) -> DefensePtr {
                                 return std::make_shared<Nad>(p, s);
                               },
                               "neural attention distillation from a clean-fine-tuned teacher (baseline)");

}  // namespace
}  // namespace antidote
