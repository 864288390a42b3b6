// fp — fine-pruning baseline (Liu et al., RAID 2018), following BackdoorBench's
// defense/fp.py:
//
//  1. rank the prunable channels (the last block's output: images — the last conv
//     layer's channels; text — the final hidden units) by their mean activation on
//     the clean set, least active first. Mean over the batch and over spatial
//     positions (images) or non-padding token positions (Transformer [B, L, H]);
//     2-D feature vectors [B, H] (TextCNN) are averaged over the batch only;
//  2. prune ceil(prune_step · C) more channels at a time (BackdoorBench
//     once_prune_ratio = 0.01) and measure the accuracy on the clean set; keep the
//     largest pruning whose relative drop (acc0 − acc) / acc0 stays below
//     `acc_ratio` (BackdoorBench acc_ratio = 0.1: a 10 % relative drop, e.g. 95 % ->
//     below 85.5 % stops) and stop at the first step that exceeds it. At least one
//     channel always stays;
//  3. fine-tune with cross-entropy on the clean set (the ft recipe). Pruning is the
//     model's mask buffer, multiplied into the forward pass, so the pruned channels
//     stay exactly zero through fine-tuning and in the saved model.
//
// Differences from BackdoorBench, on purpose: it measures the accuracy on the clean
// *test* set (which a defender does not hold; here the clean set the defense is
// given) and its loop prunes num_pruned − 1 channels at step num_pruned (here
// exactly the number reported).
#include <algorithm>
#include <cmath>

#include "antidote/defenses/baselines.hpp"

namespace antidote {
namespace {

// Mean activation of each prunable channel over the clean set (eval mode, no grad).
torch::Tensor channel_means(Classifier& model, const Dataset& data, Modality modality, int64_t batch_size) {
  torch::NoGradGuard ng;
  bool was_training = model.is_training();
  model.eval();
  auto dev = model.parameters().front().device();
  torch::Tensor sum;
  double count = 0;
  for (int64_t i = 0; i < data.size(); i += batch_size) {
    auto xb = data.x.slice(0, i, std::min(i + batch_size, data.size()));
    auto out = model.forward_full(xb.to(dev), true);
    if (out.activations.empty()) fail("fp: the model exposes no activations, so it cannot be fine-pruned");
    auto a = out.activations.back().to(torch::kFloat64).to(torch::kCPU);
    torch::Tensor s;
    double n = 0;
    if (a.dim() == 2) {  // [B, H]
      s = a.sum(0);
      n = static_cast<double>(a.size(0));
    } else {
      int64_t ch = model.activation_channel_dim(a);
      auto moved = a.movedim(ch, -1).reshape({a.size(0), -1, a.size(ch)});  // [B, positions, C]
      if (modality == Modality::Text && ch == 2 && xb.dim() == 2 && xb.size(1) == moved.size(1)) {
        // Transformer token states: average over real tokens only.
        auto keep = xb.ne(Vocab::kPad).to(torch::kFloat64).unsqueeze(-1);
        s = (moved * keep).sum(std::vector<int64_t>{0, 1});
        n = keep.sum().item<double>();
      } else {
        s = moved.sum(std::vector<int64_t>{0, 1});
        n = static_cast<double>(moved.size(0) * moved.size(1));
      }
    }
    sum = sum.defined() ? sum + s : s;
    count += n;
  }
  model.train(was_training);
  if (!sum.defined() || count <= 0) fail("fp: no clean rows to rank channels on");
  return sum / count;
}

// Clean-set accuracy at each pruning step. The mask acts after everything
// before_prune_mask computes, so that part runs once per clean row and each step runs
// only the rest, over the same fixed batches of 256 rows, so every step (and acc0)
// sees the same logits as a whole forward pass would
// (ModelsPrune.ForwardSplitAtTheMaskIsExact checks that the halves give the logits).
// A model without the split runs whole at every step (clean_fit).
class PrunedAccuracy {
 public:
  PrunedAccuracy(Classifier& model, const Dataset& clean, torch::Device device) : model_(model), clean_(clean) {
    torch::NoGradGuard ng;
    const bool was_training = model_.is_training();
    model_.eval();
    for (int64_t i = 0; i < clean_.size(); i += kBatch) {
      auto b = model_.before_prune_mask(batch(i).to(device));
      if (!b.defined()) {
        before_.clear();
        break;
      }
      before_.push_back(b);
    }
    model_.train(was_training);
  }
  double operator()() {
    if (before_.empty()) return clean_fit(model_, clean_, kBatch).acc;
    torch::NoGradGuard ng;
    const bool was_training = model_.is_training();
    model_.eval();
    std::vector<torch::Tensor> probs;
    for (size_t j = 0; j < before_.size(); ++j) {
      auto xb = batch(static_cast<int64_t>(j) * kBatch).to(before_[j].device());
      probs.push_back(torch::softmax(model_.logits_after_prune_mask(before_[j], xb), 1).to(torch::kCPU));
    }
    model_.train(was_training);
    return accuracy(torch::cat(probs), clean_.y.to(torch::kCPU));
  }

 private:
  static constexpr int64_t kBatch = 256;  // clean_fit's
  torch::Tensor batch(int64_t i) const { return clean_.x.slice(0, i, std::min(i + kBatch, clean_.size())); }
  Classifier& model_;
  const Dataset& clean_;
  std::vector<torch::Tensor> before_;
};

struct FpOptions {
  int64_t clean_samples = kDefaultCleanSamples;
  double acc_ratio = 0.1, prune_step = 0.01;
  TrainOptions train;
};

FpOptions fp_defaults(Modality modality) { return with_finetune<FpOptions>(modality, 20, 10); }

const OptionTable<FpOptions>& fp_table() {
  static const OptionTable<FpOptions> t = [] {
    OptionTable<FpOptions> t;
    t.add("clean_samples", &FpOptions::clean_samples, "clean rows to prune and fine-tune on", at_least<int64_t>(1));
    t.add("acc_ratio", &FpOptions::acc_ratio, "stop pruning before clean accuracy falls by this share",
          Rule<double>{[](const double& v) { return v > 0 && v < 1; }, "must lie in (0, 1)"});
    t.add("prune_step", &FpOptions::prune_step, "share of the channels pruned per step",
          Rule<double>{[](const double& v) { return v > 0 && v <= 1; }, "must lie in (0, 1]"});
    train_keys(t, &FpOptions::train);
    return t;
  }();
  return t;
}

class FinePruning : public Defense {
 public:
  FinePruning(Params& p, const DefenseSetup& setup) : setup_(setup), o_(fp_defaults(setup.modality)) {
    fp_table().read(p, o_);
    o_.train.label = "fp finetune";
  }
  nlohmann::json resolved_options() const override { return fp_table().values(o_); }

  DefenseResult run(const ClassifierPtr& suspect, DefenseContext& ctx) override {
    DefenseResult result;
    auto rng = seeded_streams(ctx.seed, "fp");
    auto clean = baseline_clean_set(ctx, o_.clean_samples, "fp");
    result.clean_samples = clean.size();
    auto model = trainable_copy(*suspect);
    model->to(ctx.device);

    // ---- prune -------------------------------------------------------------------
    StageTimer prune_timer("prune");
    int64_t C = model->prunable_channels();
    if (C < 2) fail("fp: the model has {} prunable channels; fine-pruning needs at least 2", C);
    auto means = channel_means(*model, clean, setup_.modality, 256);
    if (means.numel() != C)
      fail("fp: the last activation has {} channels but the model reports {} prunable channels", means.numel(), C);
    auto keep0 = model->prune_mask().to(torch::kCPU).to(torch::kFloat32).contiguous();
    std::vector<int64_t> order;  // still-active channels, least active first (ties: lower index)
    for (int64_t c = 0; c < C; ++c)
      if (keep0[c].item<float>() > 0.5f) order.push_back(c);
    auto mean_acc = means.accessor<double, 1>();
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return mean_acc[a] < mean_acc[b]; });

    PrunedAccuracy pruned_accuracy(*model, clean, ctx.device);
    auto acc0 = pruned_accuracy();
    int64_t active = static_cast<int64_t>(order.size());
    int64_t step = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(o_.prune_step * static_cast<double>(C))));
    int64_t accepted = 0;
    double accepted_acc = acc0, stop_acc = -1;
    nlohmann::json curve = nlohmann::json::array();
    curve.push_back({{"pruned", 0}, {"clean_acc", acc0}});
    if (acc0 > 0) {
      Progress progress("fp prune", active - 1, "channels");
      for (int64_t n = step; n < active; n += step) {
        auto keep = keep0.clone();
        for (int64_t i = 0; i < n; ++i) keep[order[i]] = 0.0f;
        model->set_prune_mask(keep);
        double acc = pruned_accuracy();
        curve.push_back({{"pruned", n}, {"clean_acc", acc}});
        progress.advance(std::min(step, active - 1 - (n - step)), fmt::format("clean acc {:.1f}%", 100 * acc));
        if ((acc0 - acc) / acc0 < o_.acc_ratio) {
          accepted = n;
          accepted_acc = acc;
        } else {
          stop_acc = acc;
          break;
        }
      }
      progress.finish(fmt::format("pruned {}/{} channels", accepted, C));
    } else {
      log_info("fp: the suspect model classifies no clean row correctly; nothing is pruned");
    }
    auto keep = keep0.clone();
    for (int64_t i = 0; i < accepted; ++i) keep[order[i]] = 0.0f;
    model->set_prune_mask(keep);
    result.stages.push_back(prune_timer.finish());
    log_info(fmt::format("fp: pruned {} of {} channels; clean-set accuracy {:.1f}% -> {:.1f}%", accepted, C,
                         100 * acc0, 100 * accepted_acc));

    // ---- fine-tune ---------------------------------------------------------------
    StageTimer ft_timer("finetune");
    model->train();
    nlohmann::json trajectory = nlohmann::json::array();
    train_supervised(*model, clean, o_.train, rng,
                     [&](int64_t epoch) { record_trajectory(ctx, *model, epoch + 1, trajectory); });
    auto after = clean_fit(*model, clean);
    model->eval();
    result.stages.push_back(ft_timer.finish());

    result.details = {{"channels", C},
                      {"pruned", accepted},
                      {"pruned_channels", std::vector<int64_t>(order.begin(), order.begin() + accepted)},
                      {"acc_ratio", o_.acc_ratio},
                      {"clean_acc_before", acc0},
                      {"clean_acc_after_prune", accepted_acc},
                      {"clean_acc_after_finetune", after.acc},
                      {"clean_acc_first_rejected", stop_acc},
                      {"prune_curve", curve},
                      {"trajectory", trajectory}};  // the fine-tuning's, after pruning ([] without a monitor)
    result.model = model;
    return result;
  }

 private:
  DefenseSetup setup_;
  FpOptions o_;
};

Registrar<DefenseRegistry> reg(
    "fp", [](Params& p, const DefenseSetup& s) -> DefensePtr { return std::make_shared<FinePruning>(p, s); },
    "fine-pruning: prune the least active last-layer channels, then fine-tune (baseline)",
    [] { return modality_docs<FpOptions>(fp_table(), fp_defaults); });

}  // namespace
}  // namespace antidote
