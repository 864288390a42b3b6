// Data-parallel training over PyTorch's c10d with its Gloo backend: the process group
// behind torch.distributed and DistributedDataParallel, shipped in LibTorch. Workers
// meet through a TCPStore on the master (rank 0), as torchrun's workers do, and read
// the same environment variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT).
//
// What a training step does across workers (the Trainer's sync, after backward):
// - every gradient is averaged over the workers, in buckets of at most 25 MiB sent
//   together (DistributedDataParallel's default bucket size), before clipping, so every
//   worker clips and steps the same combined gradient and the weights stay identical;
// - batch-norm running statistics are averaged over the workers after each step. The
//   normalisation inside a step uses the worker's own rows, as DistributedDataParallel
//   does without SyncBatchNorm, so the running mean is the global batch's and the
//   running variance misses only the spread between the workers' means;
// - parameters and buffers are broadcast from rank 0 when a training starts.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "antidote/train/train.hpp"

namespace antidote {

// Where this worker stands in a distributed run, as torchrun describes it.
struct DistributedEnv {
  int rank = 0, world_size = 1, local_rank = 0, local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};

// The torchrun variables of this process's environment; nullopt when WORLD_SIZE is
// unset (a single process). Malformed or inconsistent values are errors naming the
// variable.
std::optional<DistributedEnv> distributed_env_from_environment();

// A TCP port on 127.0.0.1 that nothing listens on now (the kernel's pick): the master's
// port of a run on this host.
int free_local_port();

// A process group on c10d's Gloo backend. Every collective fails with an error, not a
// hang, when a worker has died or does not answer within `timeout`.
class GlooWorld : public GradientSync {
 public:
  GlooWorld(const DistributedEnv& env, std::chrono::milliseconds timeout);
  ~GlooWorld() override;

  // Averages the gradients of `params` over the workers (bucketed).
  void sync(const std::vector<torch::Tensor>& params) override;
  void average(const std::vector<torch::Tensor>& tensors) override;
  void broadcast(const std::vector<torch::Tensor>& tensors) override;
  void barrier() override;
  int rank() const override { return env_.rank; }
  int world_size() const override { return env_.world_size; }

  // Seconds spent in the all-reduces of sync since the start (their share of a step).
  double allreduce_seconds() const { return allreduce_seconds_; }
  // Bytes each worker contributed to sync's all-reduces since the start, and their number.
  int64_t allreduce_bytes() const { return allreduce_bytes_; }
  int64_t allreduce_calls() const { return allreduce_calls_; }

 private:
  enum class Collective { Mean, FromRankZero };
  // The tensors replaced, bucket by bucket, by their mean over the workers or by rank 0's.
  void collective(const std::vector<torch::Tensor>& tensors, Collective op);
  struct Group;
  std::unique_ptr<Group> group_;
  DistributedEnv env_;
  std::chrono::milliseconds timeout_;
  double allreduce_seconds_ = 0;
  int64_t allreduce_bytes_ = 0, allreduce_calls_ = 0;
};

// The bucket size of the gradient all-reduce.
constexpr int64_t kAllreduceBucketBytes = int64_t(25) << 20;

// Groups tensors, in order, into buckets of at most `max_bytes` each (a tensor larger
// than that gets a bucket of its own); returns each bucket's indices.
std::vector<std::vector<size_t>> bucket_tensors(const std::vector<torch::Tensor>& tensors, int64_t max_bytes);

}  // namespace antidote
