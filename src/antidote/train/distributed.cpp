#include "antidote/train/distributed.hpp"

// LibTorch's Gloo process group is compiled in; its header shows it only with this set.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace antidote {

namespace {

// An integer environment variable in [lo, hi]; `fallback` when unset.
int env_int(const char* name, int fallback, int lo, int hi) {
  const char* v = std::getenv(name);
  if (!v) return fallback;
  char* end = nullptr;
  errno = 0;
  const long x = std::strtol(v, &end, 10);
  if (end == v || *end != '\0' || errno != 0 || x < lo || x > hi)
    fail("environment variable {}='{}' must be an integer in [{}, {}]", name, excerpt(v), lo, hi);
  return static_cast<int>(x);
}

// The Gloo transport device: the interface GLOO_SOCKET_IFNAME names (as in PyTorch), else
// loopback for a run on this host alone, else the address this host's name resolves to.
std::shared_ptr<::gloo::transport::Device> gloo_device(const DistributedEnv& env) {
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"))
    return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  if (env.master_addr == "127.0.0.1" || env.master_addr == "localhost")
    return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

// A c10d error as antidote's: which worker saw it and what it likely means.
[[noreturn]] void fail_collective(const DistributedEnv& env, const char* what, const std::exception& e) {
  std::string msg = e.what();
  if (auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
  fail("worker {} of {}: {} failed ({}); another worker has stopped or does not answer", env.rank, env.world_size, what,
       excerpt(msg, 300));
}

}  // namespace

// A TCP port on 127.0.0.1 that nothing listens on now (the kernel's pick).
int free_local_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) fail("cannot open a socket: {}", std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  if (!ok) fail("cannot find a free port on 127.0.0.1: {}", std::strerror(errno));
  return ntohs(addr.sin_port);
}

std::optional<DistributedEnv> distributed_env_from_environment() {
  if (!std::getenv("WORLD_SIZE")) return std::nullopt;
  DistributedEnv env;
  env.world_size = env_int("WORLD_SIZE", 1, 1, 1 << 16);
  env.rank = env_int("RANK", 0, 0, env.world_size - 1);
  env.local_rank = env_int("LOCAL_RANK", env.rank, 0, env.world_size - 1);
  env.local_world_size = env_int("LOCAL_WORLD_SIZE", env.world_size, 1, env.world_size);
  if (env.local_rank >= env.local_world_size)
    fail("LOCAL_RANK={} must be below LOCAL_WORLD_SIZE={}", env.local_rank, env.local_world_size);
  if (const char* addr = std::getenv("MASTER_ADDR")) env.master_addr = addr;
  if (env.master_addr.empty()) fail("environment variable MASTER_ADDR is empty");
  env.master_port = env_int("MASTER_PORT", env.master_port, 1, 65535);
  return env;
}

struct GlooWorld::Group {
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
};

GlooWorld::GlooWorld(const DistributedEnv& env, std::chrono::milliseconds timeout)
    : group_(std::make_unique<Group>()), env_(env), timeout_(timeout) {
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(env.master_port);
    so.isServer = env.rank == 0;
    so.numWorkers = static_cast<size_t>(env.world_size);
    so.waitWorkers = true;
    so.timeout = timeout;
    group_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    opts->devices.push_back(gloo_device(env));
    opts->threads = 2;
    group_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(group_->store, env.rank, env.world_size, opts);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("worker {} of {}: could not join the others at {}:{} within {} s ({})", env.rank, env.world_size,
         env.master_addr, env.master_port, timeout.count() / 1000.0, excerpt(e.what(), 300));
  }
}

GlooWorld::~GlooWorld() = default;

std::vector<std::vector<size_t>> bucket_tensors(const std::vector<torch::Tensor>& tensors, int64_t max_bytes) {
  std::vector<std::vector<size_t>> buckets;
  int64_t bytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const int64_t b = static_cast<int64_t>(tensors[i].numel() * tensors[i].element_size());
    if (buckets.empty() || bytes + b > max_bytes) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().push_back(i);
    bytes += b;
  }
  return buckets;
}

void GlooWorld::collective(const std::vector<torch::Tensor>& tensors, Collective op) {
  if (tensors.empty()) return;
  torch::NoGradGuard ng;
  // Each bucket is flattened into one contiguous tensor; every bucket is sent before the
  // first is waited for, so that Gloo overlaps them.
  std::vector<std::vector<at::Tensor>> flat;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  const auto buckets = bucket_tensors(tensors, kAllreduceBucketBytes);
  try {
    for (const auto& bucket : buckets) {
      std::vector<torch::Tensor> parts;
      for (size_t i : bucket) parts.push_back(tensors[i].detach().reshape(-1));
      flat.push_back({torch::cat(parts)});
      works.push_back(op == Collective::Mean ? group_->pg->allreduce(flat.back()) : group_->pg->broadcast(flat.back()));
    }
    for (auto& w : works) w->wait(timeout_);
  } catch (const std::exception& e) {
    fail_collective(env_, op == Collective::Mean ? "an all-reduce" : "a broadcast from worker 0", e);
  }
  for (size_t k = 0; k < buckets.size(); ++k) {
    auto& result = flat[k][0];
    if (op == Collective::Mean) result.div_(env_.world_size);
    int64_t at = 0;
    for (size_t i : buckets[k]) {
      const int64_t n = tensors[i].numel();
      tensors[i].detach().copy_(result.slice(0, at, at + n).view_as(tensors[i]));
      at += n;
    }
  }
}

void GlooWorld::sync(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  const auto t0 = std::chrono::steady_clock::now();
  collective(grads, Collective::Mean);
  allreduce_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const auto& g : grads) allreduce_bytes_ += static_cast<int64_t>(g.numel() * g.element_size());
  ++allreduce_calls_;
}

void GlooWorld::average(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> floating;
  for (const auto& t : tensors)
    if (t.is_floating_point()) floating.push_back(t);
  collective(floating, Collective::Mean);
}

void GlooWorld::broadcast(const std::vector<torch::Tensor>& tensors) { collective(tensors, Collective::FromRankZero); }

void GlooWorld::barrier() {
  try {
    group_->pg->barrier()->wait(timeout_);
  } catch (const std::exception& e) {
    fail_collective(env_, "a barrier", e);
  }
}

}  // namespace antidote
