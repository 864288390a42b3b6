#include "antidote/core/common.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/stat.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "antidote/core/options.hpp"

namespace antidote {

std::vector<int64_t> Rng::permutation(int64_t n) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[i] = i;
  shuffle(p);
  return p;
}

uint64_t hash_string(const std::string& s) {
  uint64_t h = 14695981039346656037ULL;  // FNV-1a 64-bit offset basis
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

uint64_t Rng::fork_seed(const std::string& label) { return next() ^ hash_string(label); }

Params::Params(YAML::Node node, std::string context) : node_(std::move(node)), context_(std::move(context)) {
  if (node_ && !node_.IsNull() && !node_.IsMap()) fail("{}: expected a mapping of options", context_);
}

void Params::set(const std::string& key, const YAML::Node& value) {
  if (!node_ || node_.IsNull()) node_ = YAML::Node(YAML::NodeType::Map);
  node_[key] = value;
}

void Params::check_consumed() const {
  if (!node_ || !node_.IsMap()) return;
  for (const auto& kv : node_) {
    const auto key = kv.first.as<std::string>();
    if (!used_.count(key)) {
      std::string known;
      for (const auto& k : used_) known += (known.empty() ? "" : ", ") + k;
      fail("{}: unknown key '{}' (known keys: {})", context_, key, known);
    }
  }
}

double current_peak_rss_mb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      std::istringstream ss(line.substr(6));
      double kb = 0;
      ss >> kb;
      return kb / 1024.0;
    }
  }
  return 0;
}

void reset_peak_rss() {
  // "5" resets the peak RSS counter (Linux >= 4.0); harmless where unsupported.
  int fd = ::open("/proc/self/clear_refs", O_WRONLY);
  if (fd >= 0) {
    [[maybe_unused]] auto n = ::write(fd, "5", 1);
    ::close(fd);
  }
}

StageTimer::StageTimer(std::string name) : name_(std::move(name)), start_(std::chrono::steady_clock::now()) {
  reset_peak_rss();
}

StageCost StageTimer::finish() {
  StageCost c;
  c.name = name_;
  c.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  c.peak_rss_mb = current_peak_rss_mb();
  return c;
}

namespace {
bool g_quiet = false, g_silenced = false;
}  // namespace

std::string format_duration(double s) {
  if (!(s >= 0) || s > 1e7) return "?";
  int t = static_cast<int>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t % 3600) / 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

std::string rate_text(double per_second, const std::string& unit) {
  if (per_second >= 10) return fmt::format("{:.0f} {}/s", per_second, unit);
  if (per_second >= 1) return fmt::format("{:.1f} {}/s", per_second, unit);
  if (per_second <= 0) return fmt::format("– {}/s", unit);
  // Slower than one a second: the seconds each one takes read better than "0 epochs/s".
  const std::string one = unit.size() > 1 && unit.back() == 's' ? unit.substr(0, unit.size() - 1) : unit;
  return fmt::format("{:.1f} s/{}", 1 / per_second, one);
}

void set_quiet(bool q) { g_quiet = q; }
bool quiet() { return g_quiet || g_silenced; }

void silence_output() {
  g_silenced = true;
  // A stream buffer that discards: std::cout without a buffer sets badbit and drops writes.
  std::cout.rdbuf(nullptr);
}

void log_info(const std::string& msg) {
  if (!quiet()) std::cerr << msg << std::endl;
}

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_),
      tty_(::isatty(STDERR_FILENO)) {}

void Progress::advance(int64_t n, const std::string& extra) {
  done_ += n;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_print_).count();
  if ((tty_ && since > 0.25) || (!tty_ && since > 30.0)) {
    last_print_ = now;
    print(false, extra);
  }
}

void Progress::finish(const std::string& extra) { print(true, extra); }

void Progress::print(bool final, const std::string& extra) {
  if (quiet()) return;
  double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double rate = el > 0 ? done_ / el : 0;
  double left = rate > 0 ? (total_ - done_) / rate : -1;
  std::string line =
      fmt::format("{} {}/{} | {} | {} {}{}", label_, done_, total_, rate_text(rate, unit_), final ? "took" : "left",
                  final ? format_duration(el) : format_duration(left), extra.empty() ? "" : " | " + extra);
  if (tty_) {
    std::cerr << "\r\033[K" << line << (final ? "\n" : "") << std::flush;
  } else {
    std::cerr << line << "\n";
  }
}

namespace {
// The 1-minute load average, or -1 where /proc/loadavg cannot be read.
double load_average() {
  std::ifstream in("/proc/loadavg");
  double load = -1;
  if (!(in >> load)) return -1;
  return load;
}
}  // namespace

int configure_threads(int threads) {
  if (threads <= 0) {
    threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    // The workers of a data-parallel run on this host (torchrun's LOCAL_WORLD_SIZE)
    // share its cores.
    if (const char* local = std::getenv("LOCAL_WORLD_SIZE"))
      threads = std::max(1, threads / std::max(1, std::atoi(local)));
    // All cores stays the default whatever the load, so that a config gives the same
    // numbers on a machine whatever else runs (the thread count changes the rounding).
    // But with the cores busy, OpenMP threads that wait on each other lose their time
    // slices: on 2 cores at a load of 3.3, a BeDKD run took 22.0 s with 2 threads and
    // 16.3 s with 1 (docs/speed.md).
    const double load = load_average();
    if (threads > 1 && load >= threads)
      log_info(fmt::format(
          "antidote: note: the {} cores are busy (load average {:.1f}); --threads 1 may run faster here (and rounds "
          "differently, so its numbers differ in the last digits)",
          threads, load));
  }
  torch::set_num_threads(threads);
  // Debian's OpenBLAS (pthread build) keeps its own pool, which torch::set_num_threads
  // does not limit. LibTorch's OpenMP threads spin while a BLAS call runs, so two pools
  // of `threads` fight for the same cores: measured on 2 cores (bench/RESULTS.md), the
  // Transformer trains at 454 samples/s with 2 torch + 2 BLAS threads and at 1365 with
  // 2 torch + 1 BLAS thread, the small CNN at 2926 against 3621. So LibTorch gets the
  // threads and the BLAS runs single-threaded inside them.
  set_blas_threads(1);
  return threads;
}

bool set_blas_threads(int threads) {
  using SetThreads = void (*)(int);
  auto fn = reinterpret_cast<SetThreads>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (fn) fn(std::max(1, threads));
  return fn != nullptr;
}

void configure_allocator() {
#ifdef __GLIBC__
  // A training step allocates and frees the same activation buffers every step (the
  // small CNN: 12.8 MB per conv output at batch 128). With glibc's defaults such
  // buffers go back to the kernel when freed (munmap, or a heap trim) and come back as
  // fresh zero pages on the next step: about a fifth of the time went to page faults.
  // Buffers under 64 MiB now come from the heap, and the heap is not trimmed below
  // 1 GiB of free space: the CNN's training step runs 1.6x faster (docs/speed.md).
  // Peak memory is unchanged; the process just keeps what it peaked at.
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

namespace {
// Debian's LibTorch hands its warnings to glog, which nobody initialises here: the first
// came out as "WARNING: Logging before InitGoogleLogging() is written to STDERR" and a
// glog header (an imported Transformer's nested-tensor fast path warns so on every run).
class PlainWarnings : public c10::WarningHandler {
 public:
  void process(const c10::SourceLocation&, const std::string& msg, const bool) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (seen_.insert(msg).second) std::cerr << "antidote: warning from LibTorch: " << msg << std::endl;
  }

 private:
  std::mutex mutex_;
  std::set<std::string> seen_;
};
}  // namespace

void print_libtorch_warnings_plainly() {
  static PlainWarnings handler;
  c10::Warning::set_warning_handler(&handler);
}

std::string version() { return "0.1.0"; }

}  // namespace antidote

namespace antidote {

Rule<std::string> one_of(std::vector<std::string> choices) {
  std::string says = "must be ";
  for (size_t i = 0; i < choices.size(); ++i)
    says += (i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ") + choices[i];
  return {[choices](const std::string& v) { return std::find(choices.begin(), choices.end(), v) != choices.end(); },
          says};
}

std::string format_option_docs(const std::string& component, const OptionDocs& docs) {
  size_t key_w = 0, value_w = 0;
  for (const auto& d : docs) {
    key_w = std::max(key_w, d.key.size());
    value_w = std::max(value_w, d.value.size());
  }
  value_w = std::min<size_t>(value_w, 32);
  std::string out = component + ":\n";
  for (const auto& d : docs) {
    out += fmt::format("  {:<{}}  {:<{}}  {}", d.key, key_w, d.value, value_w, d.meaning);
    if (!d.rule.empty()) out += "; " + d.rule;
    out += "\n";
  }
  return out;
}

}  // namespace antidote
