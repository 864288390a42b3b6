#include "antidote/train/train.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace antidote {

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<torch::Tensor>& params,
                                                        const OptimizerConfig& cfg) {
  // LibTorch checks these too, but as internal errors that name no option.
  if (!(cfg.lr > 0) || !std::isfinite(cfg.lr)) fail("optimizer: lr must be a positive number, got {}", cfg.lr);
  if (!(cfg.momentum >= 0 && cfg.momentum < 1)) fail("optimizer: momentum must lie in [0, 1), got {}", cfg.momentum);
  if (!(cfg.weight_decay >= 0) || !std::isfinite(cfg.weight_decay))
    fail("optimizer: weight_decay must be >= 0, got {}", cfg.weight_decay);
  if (cfg.name == "sgd")
    return std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(cfg.lr).momentum(cfg.momentum).weight_decay(cfg.weight_decay));
  if (cfg.name == "adam")
    return std::make_unique<torch::optim::Adam>(params,
                                                torch::optim::AdamOptions(cfg.lr).weight_decay(cfg.weight_decay));
  if (cfg.name == "adamw")
    return std::make_unique<torch::optim::AdamW>(params,
                                                 torch::optim::AdamWOptions(cfg.lr).weight_decay(cfg.weight_decay));
  fail("unknown optimizer '{}' (known: sgd, adam, adamw)", cfg.name);
}

void set_learning_rate(torch::optim::Optimizer& opt, double lr) {
  for (auto& group : opt.param_groups()) group.options().set_lr(lr);
}

double cosine_lr(double base, int64_t step, int64_t total) {
  if (total <= 0) return base;
  return 0.5 * base * (1.0 + std::cos(M_PI * static_cast<double>(step) / static_cast<double>(total)));
}

double scheduled_lr(double base, const std::string& schedule, int64_t step, int64_t total, int64_t warmup) {
  if (step < warmup) return base * static_cast<double>(step + 1) / static_cast<double>(warmup);
  return schedule == "cosine" ? cosine_lr(base, step - warmup, total - warmup) : base;
}

WeightAverage::WeightAverage(std::vector<torch::Tensor> params, double decay)
    : params_(std::move(params)), decay_(decay) {
  if (!(decay >= 0 && decay < 1)) fail("weight average: decay must lie in [0, 1), got {}", decay);
  for (const auto& p : params_) average_.push_back(p.detach().clone());
}

void WeightAverage::update() {
  torch::NoGradGuard ng;
  for (size_t i = 0; i < params_.size(); ++i) average_[i].mul_(decay_).add_(params_[i].detach(), 1.0 - decay_);
}

void WeightAverage::apply() {
  torch::NoGradGuard ng;
  for (size_t i = 0; i < params_.size(); ++i) params_[i].copy_(average_[i]);
}

namespace {
// 0..n-1, as a seeded permutation or in order.
std::vector<int64_t> order_of(int64_t n, Rng* shuffle) {
  if (shuffle) return shuffle->permutation(n);
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  return order;
}
}  // namespace

namespace {
// The rows of `batch` (positions into `order`, [begin, end)) that worker `rank` of
// `world` takes: every world-th, after trimming the batch to a multiple of `world`.
std::vector<int64_t> share_of(const std::vector<int64_t>& order, int64_t begin, int64_t end, int rank, int world) {
  end -= (end - begin) % world;
  std::vector<int64_t> mine;
  for (int64_t i = begin + rank; i < end; i += world) mine.push_back(order[static_cast<size_t>(i)]);
  return mine;
}

void check_batching(int64_t batch_size, int rank, int world) {
  if (batch_size < 1) fail("batch_size must be positive, got {}", batch_size);
  if (world < 1 || rank < 0 || rank >= world) fail("worker {} of {} does not exist", rank, world);
  if (batch_size < world)
    fail("batch_size {} is smaller than the {} workers: each needs a row per step", batch_size, world);
}
}  // namespace

std::vector<torch::Tensor> epoch_batches(int64_t n, int64_t batch_size, Rng* shuffle, int rank, int world) {
  check_batching(batch_size, rank, world);
  const std::vector<int64_t> order = order_of(n, shuffle);
  std::vector<torch::Tensor> batches;
  for (int64_t begin = 0; begin < n; begin += batch_size) {
    auto mine = share_of(order, begin, std::min(n, begin + batch_size), rank, world);
    if (!mine.empty()) batches.push_back(torch::tensor(mine, torch::kLong));
  }
  return batches;
}

TrainBatches::TrainBatches(const Classifier& model, torch::Tensor x, int64_t batch_size, bool cut, bool group)
    : x_(std::move(x)), lengths_(cut ? model.cuttable_lengths(x_) : torch::Tensor()), batch_size_(batch_size),
      group_(group) {
  check_batching(batch_size, 0, 1);
}

std::vector<torch::Tensor> TrainBatches::epoch(Rng* shuffle, int rank, int world) const {
  const int64_t n = x_.size(0);
  if (!grouped()) return epoch_batches(n, batch_size_, shuffle, rank, world);
  check_batching(batch_size_, rank, world);
  std::vector<int64_t> order = order_of(n, shuffle);
  const int64_t* len = lengths_.data_ptr<int64_t>();
  // The windows and the order of the batches are the same on every worker (same seed);
  // each worker takes its share of every batch.
  const int64_t window = batch_size_ * kGroupWindow;
  for (int64_t w = 0; w < n; w += window)
    std::stable_sort(order.begin() + w, order.begin() + std::min(n, w + window),
                     [len](int64_t a, int64_t b) { return len[a] > len[b]; });
  const int64_t steps = (n + batch_size_ - 1) / batch_size_;
  std::vector<torch::Tensor> batches;
  for (int64_t s : order_of(steps, shuffle)) {
    auto mine = share_of(order, s * batch_size_, std::min(n, (s + 1) * batch_size_), rank, world);
    if (!mine.empty()) batches.push_back(torch::tensor(mine, torch::kLong));
  }
  return batches;
}

int64_t TrainBatches::width(const torch::Tensor& idx) const {
  if (!cut() || idx.numel() == 0) return x_.dim() > 1 ? x_.size(1) : 1;
  return std::max<int64_t>(1, lengths_.index_select(0, idx.to(torch::kCPU)).max().item<int64_t>());
}

torch::Tensor TrainBatches::rows(const torch::Tensor& idx) const {
  auto xb = x_.index_select(0, idx.to(x_.device()));
  return cut() ? xb.slice(1, 0, width(idx)) : xb;
}

torch::Tensor random_shift(const torch::Tensor& images, int64_t pad, Rng& rng) {
  auto B = images.size(0), H = images.size(2), W = images.size(3);
  auto padded = torch::constant_pad_nd(images, {pad, pad, pad, pad}, 0);
  auto out = torch::empty_like(images);
  for (int64_t b = 0; b < B; ++b) {
    int64_t dy = rng.below(2 * pad + 1), dx = rng.below(2 * pad + 1);
    out[b].copy_(padded[b].slice(1, dy, dy + H).slice(2, dx, dx + W));
  }
  return out;
}

double check_finite(const torch::Tensor& loss, const std::string& where) {
  const double value = loss.item<double>();
  if (!std::isfinite(value))
    fail("{}: the loss became {} (lower the learning rate or check the data)", where,
         std::isnan(value) ? "NaN" : "infinite");
  return value;
}

Trainer::Trainer(const std::vector<torch::Tensor>& params, const OptimizerConfig& optimizer, std::string label)
    : params_(params), optimizer_(make_optimizer(params, optimizer)), label_(std::move(label)), base_lr_(optimizer.lr) {
  if (process_world().world_size() > 1) sync(&process_world());
}

Trainer& Trainer::schedule(const std::string& name, int64_t total_steps, int64_t warmup_steps) {
  schedule_ = name;
  total_ = total_steps;
  warmup_ = std::min(total_steps, warmup_steps);
  return *this;
}

Trainer& Trainer::clip(double max_norm) {
  clip_norm_ = max_norm;
  return *this;
}

Trainer& Trainer::sync(GradientSync* sync) {
  sync_ = sync;
  if (sync_) sync_->broadcast(params_);
  return *this;
}

Trainer& Trainer::buffers(std::vector<torch::Tensor> buffers) {
  buffers_.clear();
  for (auto& b : buffers)
    if (b.is_floating_point()) buffers_.push_back(std::move(b));
  if (sync_) sync_->broadcast(buffers_);
  return *this;
}

void Trainer::zero_grad() { optimizer_->zero_grad(); }

void Trainer::finish_step() {
  if (sync_) sync_->sync(params_);
  // After the sync, so that every worker clips the same combined gradient.
  if (clip_norm_ > 0) torch::nn::utils::clip_grad_norm_(params_, clip_norm_);
  if (total_ > 0) set_learning_rate(*optimizer_, scheduled_lr(base_lr_, schedule_, steps_, total_, warmup_));
  optimizer_->step();
  PrecisionScope::weights_changed();
  if (sync_ && !buffers_.empty()) sync_->average(buffers_);
  ++steps_;
}

double Trainer::step(const torch::Tensor& loss, double scale) {
  const double value = check_finite(loss, label_);
  zero_grad();
  if (scale == 1.0)
    loss.backward();
  else
    (scale * loss).backward();
  finish_step();
  return value;
}

void Trainer::step_together(const std::vector<Trainer*>& trainers, const torch::Tensor& loss) {
  for (auto* t : trainers) t->zero_grad();
  loss.backward();
  for (auto* t : trainers) t->finish_step();
}

int64_t steps_per_epoch(int64_t rows, int64_t batch_size, int world_size) {
  const int64_t full = rows / batch_size, rest = rows % batch_size;
  return full + (rest >= world_size ? 1 : 0);  // a last batch keeps its rows up to a multiple of world_size
}

namespace {
// A single process: nothing to combine.
std::shared_ptr<GradientSync>& world_slot() {
  static std::shared_ptr<GradientSync> world = std::make_shared<GradientSync>();
  return world;
}
}  // namespace

GradientSync& process_world() { return *world_slot(); }

void set_process_world(std::shared_ptr<GradientSync> world) {
  world_slot() = world ? std::move(world) : std::make_shared<GradientSync>();
}

void train_supervised(Classifier& model, const Dataset& data, const TrainOptions& o, Rng& rng,
                      const std::function<void(int64_t)>& on_epoch, GradientSync* sync,
                      const std::function<bool(int64_t)>& on_step) {
  auto dev = model.parameters().front().device();
  Trainer trainer(model.parameters(), o.optimizer, o.label);
  if (sync) trainer.sync(sync);
  trainer.buffers(model.buffers()).clip(o.clip_norm);
  const int64_t per_epoch = steps_per_epoch(data.size(), o.batch_size, trainer.world_size());
  const int64_t total = o.epochs * per_epoch;
  trainer.schedule(o.schedule, total, std::llround(o.warmup_epochs * per_epoch));
  bool stop = false;
  bool images = data.x.dim() == 4;
  const TrainBatches batches(model, data.x, o.batch_size, /*cut=*/true, o.group_by_length);
  model.train();
  for (int64_t epoch = 0; epoch < o.epochs; ++epoch) {
    Progress progress(fmt::format("{} epoch {}/{}", o.label, epoch + 1, o.epochs), data.size());
    double loss_sum = 0;
    int64_t seen = 0, correct = 0;
    for (const auto& idx : batches.epoch(&rng, trainer.rank(), trainer.world_size())) {
      auto x = batches.rows(idx);
      if (o.augment && images) x = random_shift(x, 2, rng);
      x = x.to(dev);
      auto y = data.y.index_select(0, idx).to(dev);
      auto logits = model.forward(x).logits;
      loss_sum += trainer.step(torch::cross_entropy_loss(logits, y)) * idx.size(0);
      correct += logits.argmax(1).eq(y).sum().item<int64_t>();
      seen += idx.size(0);
      progress.advance(idx.size(0) * trainer.world_size());  // every worker's share is this size
      if (on_step && !on_step(trainer.steps())) {
        stop = true;
        break;
      }
    }
    progress.finish(fmt::format("loss {:.4f} acc {:.1f}%", loss_sum / std::max<int64_t>(1, seen),
                                100.0 * correct / std::max<int64_t>(1, seen)));
    if (stop) break;  // a partial epoch: no on_epoch
    if (on_epoch) on_epoch(epoch);
  }
}

}  // namespace antidote
