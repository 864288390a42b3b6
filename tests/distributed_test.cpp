// Data-parallel training over c10d/Gloo on loopback. The workers are threads of this
// process, each with a process group of its own (Gloo does not mind), so that the test
// needs no launcher; tests/distributed_cli_test.sh runs real processes.
#include <gtest/gtest.h>

#include <chrono>
#include <exception>
#include <functional>
#include <thread>

#include "antidote/models/model.hpp"
#include "antidote/train/distributed.hpp"
#include "support.hpp"

using namespace antidote;
using antidote::testing::error_of;

namespace {

DistributedEnv worker_env(int rank, int world, int port) {
  DistributedEnv env;
  env.rank = env.local_rank = rank;
  env.world_size = env.local_world_size = world;
  env.master_port = port;
  return env;
}

// Runs work(world) for ranks 0..n-1 of one group, each on a thread; rethrows the first
// error.
void on_workers(int n, const std::function<void(GlooWorld&)>& work, double timeout_s = 60) {
  const int port = free_local_port();
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      try {
        GlooWorld world(worker_env(r, n, port), std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
        work(world);
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

// 128 images 1×8×8 in 2 classes told apart by the brighter half, with noise.
Dataset halves() {
  torch::manual_seed(21);
  Dataset d;
  d.y = torch::arange(128, torch::kLong).remainder(2);
  d.x = torch::rand({128, 1, 8, 8}) * 0.5;
  for (int64_t i = 0; i < 128; ++i) d.x[i][0].slice(1, (i % 2) * 4, (i % 2) * 4 + 4).add_(0.5);
  return d;
}

InputSpec image_spec() {
  InputSpec in;
  in.channels = 1;
  in.height = in.width = 8;
  in.num_classes = 2;
  return in;
}

double max_abs_difference(const Classifier& a, const Classifier& b) {
  double worst = 0;
  auto pa = a.named_parameters(), pb = b.named_parameters();
  for (const auto& item : pa) worst = std::max(worst, (item.value() - pb[item.key()]).abs().max().item<double>());
  return worst;
}

bool bitwise_equal_state(const Classifier& a, const Classifier& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  for (const auto& item : pa)
    if (!torch::equal(item.value(), pb[item.key()])) return false;
  auto ba = a.named_buffers(), bb = b.named_buffers();
  for (const auto& item : ba)
    if (!torch::equal(item.value(), bb[item.key()])) return false;
  return true;
}

}  // namespace

TEST(Distributed, BucketsKeepTheOrderAndTheSizeLimit) {
  // 10, 10, 30 and 5 floats: 40, 40, 120 and 20 bytes under a 100-byte limit.
  std::vector<torch::Tensor> t{torch::zeros({10}), torch::zeros({10}), torch::zeros({30}), torch::zeros({5})};
  const std::vector<std::vector<size_t>> want{{0, 1}, {2}, {3}};
  EXPECT_EQ(bucket_tensors(t, 100), want);
  EXPECT_EQ(bucket_tensors(t, 1000), (std::vector<std::vector<size_t>>{{0, 1, 2, 3}}));
  EXPECT_TRUE(bucket_tensors({}, 100).empty());
}

TEST(Distributed, CollectivesAverageAndBroadcastOnLoopback) {
  std::vector<std::vector<float>> grads(2), buffers(2), broadcast(2);
  on_workers(2, [&](GlooWorld& world) {
    const float r = static_cast<float>(world.rank());
    auto p = torch::zeros({3}, torch::requires_grad());
    p.mutable_grad() = torch::tensor({1.0f, 2.0f, 3.0f}) * (r + 1);  // means 1.5, 3, 4.5
    world.sync({p});
    auto running = torch::tensor({2.0f * r, 10.0f});  // means 1, 10
    auto steps = torch::tensor({static_cast<int64_t>(world.rank())});
    world.average({running, steps});
    auto from_zero = torch::tensor({r + 7.0f});
    world.broadcast({from_zero});
    world.barrier();
    auto& g = grads[static_cast<size_t>(world.rank())];
    g.assign(p.grad().data_ptr<float>(), p.grad().data_ptr<float>() + 3);
    buffers[static_cast<size_t>(world.rank())] = {running[0].item<float>(), running[1].item<float>(),
                                                  static_cast<float>(steps.item<int64_t>())};
    broadcast[static_cast<size_t>(world.rank())] = {from_zero.item<float>()};
    EXPECT_EQ(world.allreduce_calls(), 1);
    EXPECT_EQ(world.allreduce_bytes(), 12);
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(grads[r], (std::vector<float>{1.5f, 3.0f, 4.5f})) << r;
    // Integer buffers (a batch-norm's step count) are the same everywhere; left alone.
    EXPECT_EQ(buffers[r], (std::vector<float>{1.0f, 10.0f, static_cast<float>(r)})) << r;
    EXPECT_EQ(broadcast[r], (std::vector<float>{7.0f})) << r;
  }
}

TEST(Distributed, TwoWorkersTrainLikeOneOverTheSameGlobalBatches) {
  set_quiet(true);
  const Dataset data = halves();
  TrainOptions o;
  o.epochs = 2;
  o.batch_size = 32;  // the global batch: 16 rows per worker
  o.optimizer = {"sgd", 0.05, 0.9, 5e-4};
  torch::manual_seed(4);
  auto initial = make_model("cnn", image_spec(), YAML::Load("{width: 4, hidden: 8}"));
  auto single = initial->clone_deep();
  Rng rng(9);
  train_supervised(*single, data, o, rng);

  std::vector<ClassifierPtr> workers{initial->clone_deep(), initial->clone_deep()};
  on_workers(2, [&](GlooWorld& world) {
    Rng worker_rng(9);
    train_supervised(*workers[static_cast<size_t>(world.rank())], data, o, worker_rng, {}, &world);
  });
  // Each worker averages the mean gradients of its half: the same sum as one process's
  // mean over the whole batch, added in another order, so equal up to rounding.
  EXPECT_LT(max_abs_difference(*single, *workers[0]), 1e-5);
  EXPECT_GT(max_abs_difference(*initial, *workers[0]), 1e-3) << "the model did not train";
  // The workers step the same combined gradient: identical weights, bit for bit.
  EXPECT_TRUE(bitwise_equal_state(*workers[0], *workers[1]));
}

TEST(Distributed, BatchNormWorkersKeepIdenticalWeightsAndStatistics) {
  set_quiet(true);
  const Dataset data = halves();
  TrainOptions o;
  o.epochs = 1;
  o.batch_size = 16;
  torch::manual_seed(5);
  auto initial = make_model("preact_resnet18", image_spec(), YAML::Load("{width: 2}"));
  std::vector<ClassifierPtr> workers{initial->clone_deep(), initial->clone_deep()};
  // Worker 1 starts from other weights: the broadcast from worker 0 makes them alike.
  torch::manual_seed(6);
  copy_state(*make_model("preact_resnet18", image_spec(), YAML::Load("{width: 2}")), *workers[1]);
  on_workers(2, [&](GlooWorld& world) {
    Rng rng(3);
    train_supervised(*workers[static_cast<size_t>(world.rank())], data, o, rng, {}, &world);
  });
  EXPECT_TRUE(bitwise_equal_state(*workers[0], *workers[1]));
  // The running statistics moved (averaged over the workers, not left at their start).
  auto buffers = workers[0]->named_buffers(), start = initial->named_buffers();
  EXPECT_FALSE(torch::equal(buffers["bn.running_mean"], start["bn.running_mean"]));
}

TEST(Distributed, AWorkerThatNeverJoinsIsAnErrorWithinTheTimeout) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto msg = error_of([] { GlooWorld alone(worker_env(0, 2, free_local_port()), std::chrono::seconds(2)); });
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(msg.find("worker 0 of 2: could not join"), std::string::npos) << msg;
  EXPECT_LT(took, 10.0);
}

TEST(Distributed, TorchrunVariablesAreReadAndChecked) {
  ::unsetenv("WORLD_SIZE");
  EXPECT_FALSE(distributed_env_from_environment().has_value());
  ::setenv("WORLD_SIZE", "4", 1);
  ::setenv("RANK", "3", 1);
  ::setenv("LOCAL_RANK", "1", 1);
  ::setenv("LOCAL_WORLD_SIZE", "2", 1);
  ::setenv("MASTER_ADDR", "node-a", 1);
  ::setenv("MASTER_PORT", "29511", 1);
  auto env = distributed_env_from_environment();
  ASSERT_TRUE(env.has_value());
  EXPECT_EQ(env->rank, 3);
  EXPECT_EQ(env->world_size, 4);
  EXPECT_EQ(env->local_rank, 1);
  EXPECT_EQ(env->local_world_size, 2);
  EXPECT_EQ(env->master_addr, "node-a");
  EXPECT_EQ(env->master_port, 29511);
  ::setenv("RANK", "4", 1);
  EXPECT_NE(error_of([] { distributed_env_from_environment(); }).find("RANK='4'"), std::string::npos);
  ::setenv("RANK", "x", 1);
  EXPECT_NE(error_of([] { distributed_env_from_environment(); }).find("RANK='x'"), std::string::npos);
  for (const char* v : {"WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"})
    ::unsetenv(v);
}
