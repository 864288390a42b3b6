// ft — fine-tuning baseline: cross-entropy on the defender's clean set.
// Also home of the helpers the three baselines share (baselines.hpp).
//
// BackdoorBench (config/defense/ft): SGD lr 0.01, momentum 0.9, weight decay 5e-4,
// cosine annealing, batch 256, 100 epochs on 5 % of CIFAR-10 (2,500 rows, ~10 steps
// an epoch, ~1,000 steps). Our clean set is 500 rows by default: batch 64 keeps ~8
// steps an epoch; 20 epochs (~160 steps) for images keep the baseline cheap on a
// 2-core machine (raise `epochs` for BackdoorBench's full budget). Images get the
// same 2-pixel random shifts as standard training (BackdoorBench fine-tunes with its
// train transforms). Text models were trained with Adam, so they are fine-tuned with
// Adam at a small learning rate and no weight decay.
#include "antidote/defenses/baselines.hpp"

namespace antidote {

Dataset baseline_clean_set(const DefenseContext& ctx, int64_t n, const std::string& who) {
  if (!ctx.clean) fail("{}: no clean pool was given to the defense", who);
  if (n < 1) fail("{}: clean_samples must be positive, got {}", who, n);
  auto rows = ctx.clean->balanced(n, 0, "clean_samples");
  if (rows.numel() < n) fail("{}: asked for {} clean rows, only {} are available", who, n, rows.numel());
  return ctx.clean_set(rows).without_ground_truth();
}

TrainOptions finetune_defaults(Modality modality, int64_t epochs_image, int64_t epochs_text) {
  TrainOptions o;
  const bool text = modality == Modality::Text;
  o.epochs = text ? epochs_text : epochs_image;
  o.batch_size = text ? 32 : 64;
  o.optimizer = text ? OptimizerConfig{"adam", 2e-4, 0.9, 0.0} : OptimizerConfig{"sgd", 0.01, 0.9, 5e-4};
  o.schedule = "cosine";
  o.augment = !text;
  return o;
}

CleanFit clean_fit(Classifier& model, const Dataset& data, int64_t batch_size) {
  CleanFit f;
  if (data.size() == 0) return f;
  auto probs = predict_probs(model, data.x, batch_size);
  auto y = data.y.to(torch::kCPU);
  f.acc = accuracy(probs, y);
  f.ce = -probs.gather(1, y.view({-1, 1})).clamp_min(1e-12).log().mean().item<double>();
  return f;
}

Rng seeded_streams(uint64_t seed, const std::string& defense) {
  Rng rng(seed ^ hash_string("defense/" + defense));
  torch::manual_seed(rng.fork_seed("torch"));
  return rng;
}

namespace {

struct FtOptions {
  int64_t clean_samples = kDefaultCleanSamples;
  TrainOptions train;
  // Evaluate ctx.monitor after every epoch, for the report's curve: logging only (the
  // monitor runs in eval mode and draws no random number), at the cost of a test pass.
  bool trajectory = true;
};

FtOptions ft_defaults(Modality modality) { return with_finetune<FtOptions>(modality, 20, 10); }

const OptionTable<FtOptions>& ft_table() {
  static const OptionTable<FtOptions> t = [] {
    OptionTable<FtOptions> t;
    t.add("clean_samples", &FtOptions::clean_samples, "clean rows to fine-tune on", at_least<int64_t>(1));
    train_keys(t, &FtOptions::train);
    t.add("trajectory", &FtOptions::trajectory, "evaluate after every epoch (the report's trajectory)");
    return t;
  }();
  return t;
}

class FineTuning : public Defense {
 public:
  FineTuning(Params& p, const DefenseSetup& setup) : o_(ft_defaults(setup.modality)) {
    ft_table().read(p, o_);
    o_.train.label = "ft finetune";
  }
  nlohmann::json resolved_options() const override { return ft_table().values(o_); }

  DefenseResult run(const ClassifierPtr& suspect, DefenseContext& ctx) override {
    DefenseResult result;
    auto rng = seeded_streams(ctx.seed, "ft");
    auto clean = baseline_clean_set(ctx, o_.clean_samples, "ft");
    result.clean_samples = clean.size();

    StageTimer timer("finetune");
    auto model = trainable_copy(*suspect);
    model->to(ctx.device);
    auto before = clean_fit(*model, clean);
    nlohmann::json trajectory = nlohmann::json::array();
    train_supervised(*model, clean, o_.train, rng, [&](int64_t epoch) {
      if (o_.trajectory) record_trajectory(ctx, *model, epoch + 1, trajectory);
    });
    auto after = clean_fit(*model, clean);
    model->eval();
    result.stages.push_back(timer.finish());

    log_info(fmt::format("ft: clean-set CE {:.4f} -> {:.4f}, accuracy {:.1f}% -> {:.1f}%", before.ce, after.ce,
                         100 * before.acc, 100 * after.acc));
    result.details = {{"clean_ce_before", before.ce},        {"clean_ce_after", after.ce},
                      {"clean_acc_before", before.acc},      {"clean_acc_after", after.acc},
                      {"epochs", o_.train.epochs},           {"lr", o_.train.optimizer.lr},
                      {"optimizer", o_.train.optimizer.name}};
    if (!trajectory.empty()) result.details["trajectory"] = trajectory;
    result.model = model;
    return result;
  }

 private:
  FtOptions o_;
};

Registrar<DefenseRegistry> reg(
    "ft", [](Params& p, const DefenseSetup& s) -> DefensePtr { return std::make_shared<FineTuning>(p, s); },
    "fine-tuning on the clean set with cross-entropy (baseline)",
    [] { return modality_docs<FtOptions>(ft_table(), ft_defaults); });

}  // namespace
}  // namespace antidote
