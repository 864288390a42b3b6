// Standard supervised training and the batching/optimizer pieces the defenses share.
// The loop is split into "which rows this worker sees" (a sampler) and "how gradients
// are combined" (a GradientSync) so data-parallel training over c10d/Gloo can slot in
// without rewriting it.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>

#include "antidote/core/common.hpp"
#include "antidote/core/options.hpp"
#include "antidote/data/data.hpp"
#include "antidote/models/model.hpp"

namespace antidote {

struct OptimizerConfig {
  std::string name = "sgd";  // sgd | adam
  double lr = 0.01;
  double momentum = 0.9;
  double weight_decay = 5e-4;
};
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<torch::Tensor>& params,
                                                        const OptimizerConfig& cfg);
void set_learning_rate(torch::optim::Optimizer& opt, double lr);
// Cosine annealing from lr to 0 over `total` steps (step counted from 0).
double cosine_lr(double base, int64_t step, int64_t total);
// The rate of step `step` of `total`: a linear warm-up over the first `warmup` steps
// (base·(step+1)/warmup), then the schedule (cosine from base to 0 over the remaining
// steps, or constant). Every training loop (supervised training, FT, NAD, NT-ML) sets
// its rate with it (through the Trainer).
double scheduled_lr(double base, const std::string& schedule, int64_t step, int64_t total, int64_t warmup = 0);

struct TrainOptions {
  int64_t epochs = 5;
  int64_t batch_size = 128;
  OptimizerConfig optimizer;
  std::string schedule = "cosine";  // cosine | constant
  double warmup_epochs = 0;         // linear warm-up of the rate over this many epochs (0 = none)
  double clip_norm = 0;             // clip the gradients' global L2 norm to this (0 = no clipping)
  bool augment = false;             // images: random shift by up to 2 pixels (padding 2, crop)
  bool group_by_length = true;      // text: batches of rows of similar length (TrainBatches)
  std::string label = "train";
};

// How the workers of a data-parallel run combine what they computed; the single-process
// default does nothing. GlooWorld (distributed.hpp) is the multi-process one.
struct GradientSync {
  virtual ~GradientSync() = default;
  // Every worker's gradients of `params` replaced by their mean over the workers.
  virtual void sync(const std::vector<torch::Tensor>& params) { (void)params; }
  // Floating-point tensors replaced by their mean over the workers (batch-norm statistics).
  virtual void average(const std::vector<torch::Tensor>& tensors) { (void)tensors; }
  // Tensors replaced by rank 0's.
  virtual void broadcast(const std::vector<torch::Tensor>& tensors) { (void)tensors; }
  // Returns once every worker has called it.
  virtual void barrier() {}
  virtual int rank() const { return 0; }
  virtual int world_size() const { return 1; }
};

// The workers this process trains with: a single process unless a distributed run set
// its group at start-up. Every Trainer combines its gradients through it.
GradientSync& process_world();
void set_process_world(std::shared_ptr<GradientSync> world);

// The optimizer step that every training in antidote takes: the loss checked finite,
// gradients zeroed, back-propagated, combined across workers, clipped, the rate set
// from the schedule (warm-up, then cosine or constant) and the optimizer stepped. Each
// loop keeps its own batching (which rows, in which order, with which random draws);
// what a step does is here, once.
class Trainer {
 public:
  Trainer(const std::vector<torch::Tensor>& params, const OptimizerConfig& optimizer, std::string label);
  // The rate of each step: scheduled_lr over `total_steps`, warm-up first. Without a
  // call the rate stays optimizer.lr.
  Trainer& schedule(const std::string& name, int64_t total_steps, int64_t warmup_steps = 0);
  // Clip the gradients' global L2 norm to `max_norm` before each step (0 = never).
  Trainer& clip(double max_norm);
  // Combine gradients across workers before clipping (default: process_world(); null =
  // this process alone). Broadcasts the parameters from rank 0, so the workers start alike.
  Trainer& sync(GradientSync* sync);
  // The model's buffers (batch-norm statistics), averaged over the workers after each
  // step (and broadcast from rank 0 now); nothing to do for a single process.
  Trainer& buffers(std::vector<torch::Tensor> buffers);

  // One step on `loss`, its gradient scaled by `scale` (-1 ascends); returns the loss.
  double step(const torch::Tensor& loss, double scale = 1.0);
  // One backward of `loss` stepping each trainer (peers whose losses are detached from
  // each other, e.g. mutual learning's student and teacher).
  static void step_together(const std::vector<Trainer*>& trainers, const torch::Tensor& loss);

  int64_t steps() const { return steps_; }
  int rank() const { return sync_ ? sync_->rank() : 0; }
  int world_size() const { return sync_ ? sync_->world_size() : 1; }
  torch::optim::Optimizer& optimizer() { return *optimizer_; }

 private:
  void zero_grad();
  void finish_step();  // sync, clip, rate, optimizer step
  std::vector<torch::Tensor> params_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::string label_, schedule_ = "constant";
  double base_lr_, clip_norm_ = 0;
  int64_t total_ = 0, warmup_ = 0, steps_ = 0;
  std::vector<torch::Tensor> buffers_;
  GradientSync* sync_ = nullptr;
  PrecisionScope precision_{true};  // the training precision while this training runs
};

// An optimizer's keys, each prefixed: optimizer, lr, momentum, weight_decay and the
// schedule; `stage` ("" for none) starts each meaning.
template <class C>
void optimizer_keys(OptionTable<C>& t, const std::string& prefix, const std::string& stage,
                    std::function<OptimizerConfig&(C&)> opt, std::function<std::string&(C&)> schedule,
                    std::vector<std::string> optimizers = {"sgd", "adam", "adamw"}) {
  auto field = [opt](auto member) {
    using T = std::remove_reference_t<decltype(std::declval<OptimizerConfig&>().*member)>;
    return std::function<T&(C&)>([opt, member](C& c) -> T& { return opt(c).*member; });
  };
  const std::string of = stage.empty() ? "" : stage + ": ";
  t.add(prefix + "optimizer", field(&OptimizerConfig::name), of + "optimizer", one_of(std::move(optimizers)));
  t.add(prefix + "lr", field(&OptimizerConfig::lr), of + "learning rate", positive<double>());
  t.add(prefix + "momentum", field(&OptimizerConfig::momentum), of + "SGD momentum", at_least(0.0));
  t.add(prefix + "weight_decay", field(&OptimizerConfig::weight_decay), of + "weight decay", at_least(0.0));
  t.add(prefix + "schedule", std::move(schedule), of + "learning-rate schedule", one_of({"cosine", "constant"}));
}

// The training keys of options that hold a TrainOptions (the config's `train:` section,
// the baselines' fine-tuning): epochs, batch_size, optimizer, lr, momentum,
// weight_decay, schedule, warmup_epochs, clip_norm, augment.
template <class C>
void train_keys(OptionTable<C>& t, TrainOptions C::*train) {
  t.add("epochs", nested(train, &TrainOptions::epochs), "epochs", at_least<int64_t>(0));
  t.add("batch_size", nested(train, &TrainOptions::batch_size), "rows per batch", positive<int64_t>());
  optimizer_keys<C>(
      t, "", "", [train](C& c) -> OptimizerConfig& { return (c.*train).optimizer; },
      nested(train, &TrainOptions::schedule));
  t.add("warmup_epochs", nested(train, &TrainOptions::warmup_epochs), "linear warm-up of the rate (epochs)",
        at_least(0.0));
  t.add("clip_norm", nested(train, &TrainOptions::clip_norm), "clip the gradients' L2 norm (0 = off)", at_least(0.0));
  t.add("augment", nested(train, &TrainOptions::augment), "images: random 2-pixel shifts");
}

// Index batches of one epoch: a seeded permutation (or in order) cut into batches of
// `batch_size` rows. With `world` workers a batch is one step of all of them together
// (the batch size is the global one, whatever the number of workers): worker `rank`
// takes its every world-th row. So that every worker's share of a step has as many rows
// (equal weights in the averaged gradient, and per-row random draws that keep the
// workers' generators in step), a batch's last rows beyond a multiple of `world` are
// left out of that epoch.
std::vector<torch::Tensor> epoch_batches(int64_t n, int64_t batch_size, Rng* shuffle, int rank = 0, int world = 1);

// The batches of a training loop over the rows of `x`. For token ids of a model that
// ignores trailing padding (Classifier::cuttable_lengths), rows of similar length share
// a batch and each batch is cut to its longest row: SST-2's rows fill about 20 of 53
// positions, and a batch of random rows is as long as its longest. The grouping keeps
// the epoch random: a seeded permutation is cut into windows of kGroupWindow batches,
// each window is sorted by length (stable, so equal lengths keep their random order)
// and split into batches, and the order of the batches is shuffled. Other inputs get
// epoch_batches unchanged.
class TrainBatches {
 public:
  static constexpr int64_t kGroupWindow = 16;
  // cut = false keeps every position (and the plain epoch_batches): for a loss that
  // reads the padding positions' states. group = false draws epoch_batches and only
  // cuts each batch (the batches of an uncut run, up to float rounding).
  TrainBatches(const Classifier& model, torch::Tensor x, int64_t batch_size, bool cut = true, bool group = true);
  // One epoch's index batches (CPU); `shuffle` null keeps the file order within windows.
  std::vector<torch::Tensor> epoch(Rng* shuffle, int rank = 0, int world = 1) const;
  // x[idx], cut to the longest of those rows when the model allows it.
  torch::Tensor rows(const torch::Tensor& idx) const;
  // The width rows(idx) has: the longest length among idx, or x's width.
  int64_t width(const torch::Tensor& idx) const;
  bool grouped() const { return group_ && cut(); }
  bool cut() const { return lengths_.defined(); }

 private:
  torch::Tensor x_, lengths_;
  int64_t batch_size_;
  bool group_;
};

// Random 2-pixel shifts (zero padding) of an image batch; seeded by `rng`.
torch::Tensor random_shift(const torch::Tensor& images, int64_t pad, Rng& rng);

// Exponential moving average of a model's parameters (Polyak averaging):
// avg ← decay·avg + (1 − decay)·p after each optimizer step. The average of the last
// ~1/(1 − decay) steps is a smoother end point than the last iterate of constant-lr
// SGD. `apply` copies the average into the parameters.
class WeightAverage {
 public:
  WeightAverage(std::vector<torch::Tensor> params, double decay);
  void update();
  void apply();

 private:
  std::vector<torch::Tensor> params_, average_;
  double decay_;
};

// A scalar loss's value; a clear error when it is NaN or infinite. One read of the
// tensor serves both the check and the caller's running sums.
double check_finite(const torch::Tensor& loss, const std::string& where);

// Cross-entropy training of `model` on `data`. `on_epoch(epoch)` runs after each epoch;
// `on_step(steps)` after each optimizer step (steps counted from 1), and training ends
// when it returns false.
void train_supervised(Classifier& model, const Dataset& data, const TrainOptions& options, Rng& rng,
                      const std::function<void(int64_t)>& on_epoch = {}, GradientSync* sync = nullptr,
                      const std::function<bool(int64_t)>& on_step = {});
// Optimizer steps of one epoch of train_supervised over `rows` rows (global batches).
int64_t steps_per_epoch(int64_t rows, int64_t batch_size, int world_size = 1);

}  // namespace antidote
