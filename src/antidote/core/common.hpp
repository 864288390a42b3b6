// Shared plumbing: errors, seeded randomness, typed option bags, cost measurement,
// progress lines and atomic file output. Everything else in antidote builds on this.
#pragma once

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "antidote/core/io.hpp"

namespace antidote {

// One exception type for every user-facing error; main() prints what() and exits 2.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

// Deterministic randomness that does not depend on the standard library's
// distribution implementations (those differ between libstdc++ and libc++).
class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  uint64_t next() { return engine_(); }
  // Uniform integer in [0, n) (Lemire's multiply-shift, bias negligible for our n).
  int64_t below(int64_t n) {
    return static_cast<int64_t>((static_cast<unsigned __int128>(engine_()) * static_cast<uint64_t>(n)) >> 64);
  }
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  template <class T>
  void shuffle(std::vector<T>& v) {
    for (int64_t i = static_cast<int64_t>(v.size()) - 1; i > 0; --i) std::swap(v[i], v[below(i + 1)]);
  }
  std::vector<int64_t> permutation(int64_t n);
  // A derived seed for an independent stream (e.g. per stage), stable across runs.
  uint64_t fork_seed(const std::string& label);

 private:
  std::mt19937_64 engine_;
};

uint64_t hash_string(const std::string& s);  // FNV-1a, stable across platforms

// What an option's value must read as, for error messages.
template <class T>
const char* type_name() {
  if constexpr (std::is_same_v<T, bool>) return "true or false";
  else if constexpr (std::is_integral_v<T> && std::is_unsigned_v<T>) return "a non-negative integer";
  else if constexpr (std::is_integral_v<T>) return "an integer";
  else if constexpr (std::is_floating_point_v<T>) return "a number";
  else if constexpr (std::is_same_v<T, std::string>) return "a string";
  else return "the expected type";
}

// `node[key]` as a T (`fallback` when absent or null); a value of the wrong type, or a
// number that is not finite, is an error naming `context.key` and the type expected.
template <class T>
T read_option(const YAML::Node& node, const std::string& key, const T& fallback, const std::string& context) {
  if (!node || !node.IsMap() || !node[key] || node[key].IsNull()) return fallback;
  T value;
  try {
    value = node[key].as<T>();
  } catch (const YAML::Exception&) {
    fail("{}.{}: cannot read '{}' as {}", context, key, excerpt(YAML::Dump(node[key])), type_name<T>());
  }
  if constexpr (std::is_floating_point_v<T>)
    if (!std::isfinite(value)) fail("{}.{}: {} is not a finite number", context, key, value);
  return value;
}

// A bag of method-specific options from YAML or the command line. Every read marks
// the key as used; check_consumed() then rejects keys nobody asked for, naming them.
class Params {
 public:
  Params() = default;
  Params(YAML::Node node, std::string context);

  template <class T>
  T get(const std::string& key, const T& fallback) {
    used_.insert(key);
    return read_option<T>(node_, key, fallback, context_);
  }
  bool has(const std::string& key) const { return node_ && node_[key] && !node_[key].IsNull(); }
  YAML::Node raw(const std::string& key) {
    used_.insert(key);
    return node_ ? node_[key] : YAML::Node();
  }
  void set(const std::string& key, const YAML::Node& value);
  void check_consumed() const;
  const std::string& context() const { return context_; }
  YAML::Node node() const { return node_; }

 private:
  YAML::Node node_;
  std::string context_;
  std::set<std::string> used_;
};

// Wall time and peak resident memory of one stage (peak reset at the stage start
// through /proc/self/clear_refs, so each stage reports its own peak).
struct StageCost {
  std::string name;
  double seconds = 0;
  double peak_rss_mb = 0;
};

class StageTimer {
 public:
  explicit StageTimer(std::string name);
  StageCost finish();

 private:
  std::string name_;
  std::chrono::steady_clock::time_point start_;
};

double current_peak_rss_mb();
void reset_peak_rss();

// "45s", "3m07s", "2h05m"; "?" for a negative or absurd duration (not yet known).
std::string format_duration(double seconds);
// A rate as a progress line shows it: "312 samples/s", "2.5 epochs/s", and below one a
// second the time each takes, "40.0 s/epoch".
std::string rate_text(double per_second, const std::string& unit);

// Progress for long loops: an updating line with rate and time left on a terminal,
// a plain line every `plain_every` seconds (and at the end) otherwise.
class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit = "samples");
  void advance(int64_t n, const std::string& extra = "");
  void finish(const std::string& extra = "");

 private:
  void print(bool final, const std::string& extra);
  std::string label_, unit_;
  int64_t total_, done_ = 0;
  std::chrono::steady_clock::time_point start_, last_print_;
  bool tty_;
};

// Logging to stderr; quiet mode (tests) silences info lines.
void log_info(const std::string& msg);
void set_quiet(bool quiet);
bool quiet();
// No progress, no notes and nothing on stdout from here on, whatever set_quiet says: the
// workers of a data-parallel run other than rank 0, which compute what rank 0 prints.
void silence_output();

// Configure LibTorch's intra-op threads (0 = all cores; returns the count) and run
// the BLAS it calls single-threaded, so that the two thread pools never oversubscribe.
int configure_threads(int threads);
// OpenBLAS's own thread count (false when the BLAS in use is not OpenBLAS).
bool set_blas_threads(int threads);
// Keep freed memory in the process for reuse (glibc malloc; a no-op elsewhere). Call
// once at start-up, before the first tensor.
void configure_allocator();

// LibTorch's own warnings (TORCH_WARN) as one plain line each on stderr, each distinct
// message once, on the calling thread (c10's warning handler is per thread).
void print_libtorch_warnings_plainly();

std::string version();

}  // namespace antidote
