// Files in and out under hostile or unlucky conditions: full disks, corrupt and
// oversized inputs, YAML and JSON built to exhaust a reader, invalid text. Each case
// must end in an antidote::Error naming the culprit, in bounded time and memory, with
// nothing already written lost.
#include "antidote/core/io.hpp"

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>

#include "antidote/data/data.hpp"
#include "antidote/metrics/metrics.hpp"
#include "antidote/models/model.hpp"
#include "antidote/report/results.hpp"
#include "antidote/train/train.hpp"
#include "support.hpp"

using namespace antidote;
using antidote::testing::error_of;
using antidote::testing::TempDir;
namespace fs = std::filesystem;

namespace {

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// Writes beyond `bytes` fail with EFBIG while this lives (the process's file-size
// limit), as on a full disk; SIGXFSZ is ignored meanwhile so that it cannot kill us.
struct FileSizeLimit {
  rlimit saved{};
  void (*saved_handler)(int);
  explicit FileSizeLimit(rlim_t bytes) {
    saved_handler = std::signal(SIGXFSZ, SIG_IGN);
    getrlimit(RLIMIT_FSIZE, &saved);
    rlimit lim = saved;
    lim.rlim_cur = bytes;
    setrlimit(RLIMIT_FSIZE, &lim);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved);
    std::signal(SIGXFSZ, saved_handler);
  }
};

// A real full disk: a tmpfs of `bytes` mounted on a fresh folder (root only).
struct SmallDisk {
  TempDir dir;
  bool mounted = false;
  explicit SmallDisk(const std::string& size) {
    mounted = ::geteuid() == 0 && ::mount("tmpfs", dir.path.c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0;
  }
  ~SmallDisk() {
    if (mounted) ::umount(dir.path.c_str());
  }
};

std::string gzip(const std::string& bytes) {
  uLongf size = compressBound(static_cast<uLong>(bytes.size())) + 64;
  std::string out(size, '\0');
  z_stream z{};
  deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY);  // 15 + 16: a gzip wrapper
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  z.avail_in = static_cast<uInt>(bytes.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string idx_header(const std::vector<uint32_t>& dims) {
  std::string s = {0, 0, 0x08, static_cast<char>(dims.size())};
  for (auto d : dims)
    for (int sh = 24; sh >= 0; sh -= 8) s += static_cast<char>((d >> sh) & 0xff);
  return s;
}

bool printable(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

}  // namespace

// ---- writing ---------------------------------------------------------------------

TEST(IoWrite, FailedWriteKeepsThePreviousFileAndLeavesNoTemp) {
  TempDir dir;
  const auto path = dir.file("results.json");
  write_file_atomic(path, "previous");
  std::string msg;
  {
    FileSizeLimit limit(1000);
    msg = error_of([&] { write_file_atomic(path, std::string(5000, 'x')); });
  }
  EXPECT_TRUE(has(msg, path)) << msg;
  EXPECT_TRUE(has(msg, "File too large")) << msg;
  EXPECT_EQ(read_file(path), "previous");
  EXPECT_EQ(names_in(dir.path), std::vector<std::string>{"results.json"});
}

TEST(IoWrite, FullTmpfsIsAnErrorNamingTheFile) {
  SmallDisk disk("64k");
  if (!disk.mounted) GTEST_SKIP() << "needs root to mount a small tmpfs";
  const auto path = disk.dir.file("model.pt");
  write_file_atomic(path, "old model");
  auto msg = error_of([&] { write_file_atomic(path, std::string(200000, 'w')); });
  EXPECT_TRUE(has(msg, path)) << msg;
  EXPECT_TRUE(has(msg, "No space left on device")) << msg;
  EXPECT_EQ(read_file(path), "old model");
  EXPECT_EQ(names_in(disk.dir.path), std::vector<std::string>{"model.pt"});
}

TEST(IoWrite, ASetIsReplacedWholeOrNotAtAll) {
  TempDir dir;
  write_files_atomic({{dir.file("a.csv"), "old a"}, {dir.file("b.md"), "old b"}});
  std::string msg;
  {
    FileSizeLimit limit(1000);
    // The first file fits, the second does not: neither may change.
    msg = error_of([&] {
      write_files_atomic({{dir.file("a.csv"), "new a"}, {dir.file("b.md"), std::string(5000, 'b')}});
    });
  }
  EXPECT_TRUE(has(msg, "b.md")) << msg;
  EXPECT_EQ(read_file(dir.file("a.csv")), "old a");
  EXPECT_EQ(read_file(dir.file("b.md")), "old b");
  EXPECT_EQ(names_in(dir.path), (std::vector<std::string>{"a.csv", "b.md"}));
  write_files_atomic({{dir.file("a.csv"), "new a"}, {dir.file("b.md"), "new b"}});
  EXPECT_EQ(read_file(dir.file("a.csv")) + read_file(dir.file("b.md")), "new anew b");
}

TEST(IoWrite, StaleTempsOfDeadProcessesAreRemoved) {
  TempDir dir;
  // PID 2^22 + 1 lies above Linux's largest (pid_max is at most 2^22): never running.
  dir.write("results.csv.tmp4194305", "half");
  dir.write("mine.tmp" + std::to_string(::getpid()), "being written");
  dir.write("notes.tmp", "not ours");
  dir.write("cell.json", "{}");
  EXPECT_EQ(remove_stale_temps(dir.path.string()), 1);
  EXPECT_EQ(names_in(dir.path),
            (std::vector<std::string>{"cell.json", "mine.tmp" + std::to_string(::getpid()), "notes.tmp"}));
}

// ---- bounded reads ---------------------------------------------------------------

TEST(IoRead, CorruptGzipIsACleanErrorNamingTheFile) {
  TempDir dir;
  const std::string good = gzip(idx_header({64}) + std::string(64, '\x07'));
  std::string bad_crc = good;
  bad_crc[bad_crc.size() - 6] ^= 0x5a;  // the CRC-32 in the gzip trailer
  std::string flipped = good;
  flipped[good.size() / 2] ^= 0xff;  // inside the deflate stream
  const std::map<std::string, std::string> cases{
      {"truncated.gz", good.substr(0, good.size() / 2)},
      {"bad_crc.gz", bad_crc},
      {"flipped.gz", flipped},
      {"garbage.gz", std::string("\x1f\x8b\x08\x00", 4) + std::string(200, '\xee')}};
  for (const auto& [name, bytes] : cases) {
    const auto path = dir.write(name, bytes);
    auto msg = error_of([&] { read_idx(path); });
    EXPECT_TRUE(has(msg, path)) << name << ": " << msg;
    // The message must not carry freed memory or raw bytes.
    EXPECT_TRUE(printable(msg)) << name << ": " << msg;
  }
}

TEST(IoRead, DecompressionStopsAtWhatTheHeaderPromises) {
  TempDir dir;
  // 100 promised values, then 64 MiB of zeros that compress to about 64 kB.
  const auto path = dir.write("bomb-idx1-ubyte.gz", gzip(idx_header({100}) + std::string(64 << 20, '\0')));
  EXPECT_LT(fs::file_size(path), 200000u);
  reset_peak_rss();
  const double rss_before = current_peak_rss_mb();
  auto msg = error_of([&] { read_idx(path); });
  EXPECT_TRUE(has(msg, "108 bytes its header promises")) << msg;
  EXPECT_LT(current_peak_rss_mb() - rss_before, 16.0);
  // A header that promises more than antidote reads fails before reading the data.
  const auto huge = dir.write("huge-idx3-ubyte", idx_header({0xffffffffu, 0xffffffffu, 0xffffffffu}));
  msg = error_of([&] { read_idx(huge); });
  EXPECT_TRUE(has(msg, "more than")) << msg;
  EXPECT_TRUE(has(msg, huge)) << msg;
}

TEST(IoRead, ZipArchiveDeclaringTooMuchIsRefused) {
  TempDir dir;
  // One central-directory entry that declares 0xF0000000 bytes (3.75 GiB), deflated,
  // then the end-of-directory record: a 69-byte "model".
  auto u16 = [](uint32_t v) { return std::string{static_cast<char>(v & 0xff), static_cast<char>(v >> 8)}; };
  auto u32 = [&](uint32_t v) { return u16(v & 0xffff) + u16(v >> 16); };
  std::string cd = u32(0x02014b50) + u16(20) + u16(20) + u16(0) + u16(8) + u16(0) + u16(0) + u32(0) + u32(10) +
                   u32(0xf0000000u) + u16(1) + u16(0) + u16(0) + u16(0) + u16(0) + u32(0) + u32(0) + "w";
  std::string eocd =
      u32(0x06054b50) + u16(0) + u16(0) + u16(1) + u16(1) + u32(static_cast<uint32_t>(cd.size())) + u32(0) + u16(0);
  const auto path = dir.write("bomb.pt", cd + eocd);
  auto msg = error_of([&] { check_zip_archive(path); });
  EXPECT_TRUE(has(msg, path)) << msg;
  EXPECT_TRUE(has(msg, "4026531840 bytes")) << msg;
  // The same through the model loader, beside a valid metadata file.
  dir.write("bomb.pt.yaml",
            "arch: cnn\ninput: {modality: image, channels: 1, height: 28, width: 28, num_classes: 10}\n");
  msg = error_of([&] { load_model(path); });
  EXPECT_TRUE(has(msg, "zip bomb")) << msg;
  // A real model passes the check and loads.
  InputSpec in;
  in.num_classes = 10;
  auto model = make_model("cnn", in, YAML::Node());
  model->save_file(dir.file("real.pt"));
  EXPECT_NO_THROW(check_zip_archive(dir.file("real.pt")));
  EXPECT_NO_THROW(load_model(dir.file("real.pt")));
  // Not a zip archive at all: left to the format's own reader.
  EXPECT_NO_THROW(check_zip_archive(dir.write("plain.txt", std::string(100, 'p'))));
}

TEST(IoRead, ConfigSizedReadsStopAtTheirLimit) {
  TempDir dir;
  const auto path = dir.write("big.yaml", std::string(kMaxConfigBytes + 10, '#'));
  auto msg = error_of([&] { load_yaml_file(path); });
  EXPECT_TRUE(has(msg, path)) << msg;
  EXPECT_TRUE(has(msg, "larger than")) << msg;
}

// ---- YAML and JSON ----------------------------------------------------------------

TEST(IoYaml, AliasBombFailsFastNamingTheFile) {
  // Each level doubles the one before: 2^13 ≈ 8 k leaves, then 2^26 ≈ 67 M at k.
  std::string bomb = "a: &a [x, x]\n";
  for (char c = 'b'; c <= 'm'; ++c)
    bomb += fmt::format("{0}: &{0} [*{1}, *{1}, *{1}, *{1}]\n", c, static_cast<char>(c - 1));
  const auto t0 = std::chrono::steady_clock::now();
  auto msg = error_of([&] { load_yaml(bomb, "'bomb.yaml'"); });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(has(msg, "'bomb.yaml'")) << msg;
  EXPECT_TRUE(has(msg, "alias bomb")) << msg;
  EXPECT_LT(seconds, 5.0);
  // A parsed node converted directly is bounded the same way.
  msg = error_of([&] { yaml_to_json(YAML::Load(bomb)); });
  EXPECT_TRUE(has(msg, "alias bomb")) << msg;
}

TEST(IoYaml, DuplicateKeysAreAnErrorNamingTheLine) {
  auto msg = error_of([&] { load_yaml("seed: 0\ntrain:\n  lr: 0.1\n  lr: 0.2\n", "'c.yaml'"); });
  EXPECT_TRUE(has(msg, "'c.yaml' line 4")) << msg;
  EXPECT_TRUE(has(msg, "'lr' appears twice")) << msg;
  // The same key in different mappings is fine.
  EXPECT_NO_THROW(load_yaml("a: {x: 1}\nb: {x: 2}\n", "ok"));
}

TEST(IoYaml, DeepNestingAndComplexKeysAreErrors) {
  std::string deep = std::string(100, '[') + std::string(100, ']');
  EXPECT_TRUE(has(error_of([&] { load_yaml(deep, "deep"); }), "deeper than 64"))
      << error_of([&] { load_yaml(deep, "deep"); });
  EXPECT_TRUE(has(error_of([&] { load_yaml("? [a, b]\n: 1\n", "complex"); }), "plain value"));
  // Malformed YAML names its origin.
  EXPECT_TRUE(has(error_of([&] { load_yaml("a: [1, 2\n", "'broken.yaml'"); }), "'broken.yaml' is not valid YAML"));
}

TEST(IoYaml, ToJsonKeepsQuotedStringsAndReadsNumbers) {
  auto j = yaml_to_json(load_yaml("a: 3\nb: '3'\nc: 0.5\nd: true\ne: [x, .nan]\n", "t"));
  EXPECT_EQ(j["a"], 3);
  EXPECT_EQ(j["b"], "3");
  EXPECT_DOUBLE_EQ(j["c"].get<double>(), 0.5);
  EXPECT_EQ(j["d"], true);
  EXPECT_EQ(j["e"][0], "x");
  EXPECT_EQ(j["e"][1], ".nan");  // not a finite number: kept as written, valid JSON
}

TEST(IoJson, DepthAndSizeAreBounded) {
  auto msg = error_of([&] { parse_json(std::string(100000, '[') + std::string(100000, ']'), "cell 'x'"); });
  EXPECT_TRUE(has(msg, "deeper than")) << msg;
  msg = error_of([&] { parse_json("{\"a\": ", "cell 'y'"); });
  EXPECT_TRUE(has(msg, "cell 'y' is not valid JSON")) << msg;
  msg = error_of([&] { parse_json(std::string(100, ' '), "cell 'z'", 10); });
  EXPECT_TRUE(has(msg, "more than")) << msg;
  EXPECT_EQ(parse_json("{\"a\": [1, 2]}", "ok")["a"][1], 2);
}

TEST(IoJson, InvalidUtf8IsWrittenAsReplacementCharacters) {
  nlohmann::json j{{"text", std::string("caf\xe9")}};
  EXPECT_EQ(json_text(j, -1), "{\"text\":\"caf\xef\xbf\xbd\"}");
}

// ---- text ---------------------------------------------------------------------------

TEST(IoText, ExcerptEscapesAndCuts) {
  EXPECT_EQ(excerpt("a\tb\n\x01\xff", 60), "a\\tb\\n\\x01\\xff");
  EXPECT_EQ(excerpt(std::string(100, 'h'), 5), "hhhhh... (100 bytes)");
}

TEST(IoText, Utf8Validation) {
  EXPECT_EQ(invalid_utf8_at("plain ascii"), std::string::npos);
  EXPECT_EQ(invalid_utf8_at("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), std::string::npos);  // é € 😀
  EXPECT_EQ(invalid_utf8_at("caf\xe9!"), 3u);                                                  // Latin-1 é
  EXPECT_EQ(invalid_utf8_at("\xc0\xaf"), 0u);                                                  // overlong '/'
  EXPECT_EQ(invalid_utf8_at("ab\xed\xa0\x80"), 2u);                                            // a UTF-16 surrogate
  EXPECT_EQ(invalid_utf8_at("\xf4\x90\x80\x80"), 0u);                                          // above U+10FFFF
  EXPECT_EQ(invalid_utf8_at("x\xe2\x82"), 1u);                                                 // cut short
}

// ---- data, models and results ----------------------------------------------------------

TEST(IoData, InvalidUtf8InATsvFailsAtLoadNamingTheLine) {
  auto msg = error_of([&] { parse_tsv("sentence\tlabel\ngood\t1\nna\xefve\t0\n", "train.tsv", 1); });
  EXPECT_TRUE(has(msg, "'train.tsv' line 3")) << msg;
  EXPECT_TRUE(has(msg, "byte 3")) << msg;
  EXPECT_TRUE(has(msg, "UTF-8")) << msg;
}

TEST(IoData, LabelsBeyondTheClassCountAreErrors) {
  auto msg = error_of([&] { parse_tsv("sentence\tlabel\na\t1\nb\t7\n", "sst2/train.tsv", 1); });
  EXPECT_TRUE(has(msg, "'sst2/train.tsv' line 3: label 7 is out of range (at most 1)")) << msg;
  msg = error_of([&] { parse_tsv("sentence\tlabel\na\t1000000000000\n", "t.tsv", kMaxClasses - 1); });
  EXPECT_TRUE(has(msg, "out of range")) << msg;
  // A 10 MB header puts a short excerpt, not 10 MB, into the message.
  msg = error_of([&] { parse_tsv(std::string(10 << 20, 'h') + "\n", "h.tsv", 1); });
  EXPECT_LT(msg.size(), 400u);
}

TEST(IoData, AStrayImageLabelCannotCreateClasses) {
  RawData d;
  d.name = "idx";
  d.train.labels = torch::tensor({0, 1, 2, 255}, torch::kLong);
  d.test.labels = torch::tensor({0, 1}, torch::kLong);
  auto msg = error_of([&] { class_count(d, 0, "train-labels", "t10k-labels"); });
  EXPECT_TRUE(has(msg, "class 3 has no training rows in 'train-labels' (252 classes missing)")) << msg;
  msg = error_of([&] { class_count(d, 10, "train-labels", "t10k-labels"); });
  EXPECT_TRUE(has(msg, "'train-labels': label 255 is out of range for 10 classes")) << msg;
  d.train.labels = torch::tensor({0, 1, 2}, torch::kLong);
  EXPECT_EQ(class_count(d, 0, "train-labels", "t10k-labels"), 3);
  EXPECT_EQ(class_count(d, 10, "train-labels", "t10k-labels"), 10);
}

TEST(IoModel, MetadataOutsideSaneRangesIsAnError) {
  auto spec = [](const std::string& yaml) { return InputSpec::from_yaml(YAML::Load(yaml), "'m.pt.yaml' input"); };
  auto msg = error_of([&] { spec("{modality: image, channels: 1, height: 28, width: 28, num_classes: 1e12}"); });
  EXPECT_TRUE(has(msg, "'m.pt.yaml' input.num_classes")) << msg;
  msg = error_of([&] { spec("{modality: image, channels: 1, height: 28, width: 28, num_classes: 1000000000000}"); });
  EXPECT_TRUE(has(msg, "outside [2, 100000]")) << msg;
  msg = error_of([&] { spec("{modality: text, vocab_size: 100, num_classes: 2}"); });
  EXPECT_TRUE(has(msg, "'max_len' is missing")) << msg;
  msg = error_of([&] { spec("{modality: sound, num_classes: 2}"); });
  EXPECT_TRUE(has(msg, "'image' or 'text'")) << msg;
  EXPECT_EQ(spec("{modality: image, channels: 3, height: 32, width: 32, num_classes: 10}").channels, 3);
}

TEST(IoModel, NanLogitsAreAnErrorNotAnAsr) {
  InputSpec in;
  in.num_classes = 10;
  auto model = make_model("cnn", in, YAML::Node());
  {
    torch::NoGradGuard ng;
    for (auto& p : model->parameters()) p.fill_(std::numeric_limits<float>::quiet_NaN());
  }
  Dataset test{torch::rand({4, 1, 28, 28}), torch::tensor({1, 2, 3, 4}, torch::kLong), torch::Tensor()};
  auto msg = error_of([&] { evaluate(*model, test, test, 0, 512); });
  EXPECT_TRUE(has(msg, "NaN or infinite")) << msg;
}

TEST(IoOptions, NonFiniteAndOutOfRangeNumbersAreErrorsNamingTheKey) {
  Params p(YAML::Load("{momentum: .nan, lr: .inf, steps: abc}"), "defense 'ft'");
  EXPECT_TRUE(
      has(error_of([&] { p.get<double>("momentum", 0.9); }), "defense 'ft'.momentum: nan is not a finite number"));
  EXPECT_TRUE(has(error_of([&] { p.get<double>("lr", 0.1); }), "not a finite number"));
  EXPECT_TRUE(has(error_of([&] { p.get<int64_t>("steps", 1); }), "cannot read 'abc' as an integer"));
  auto w = torch::zeros({2}, torch::requires_grad());
  EXPECT_TRUE(has(error_of([&] { make_optimizer({w}, OptimizerConfig{"sgd", 0.1, 0.9, -5}); }), "weight_decay"));
  EXPECT_TRUE(has(error_of([&] { make_optimizer({w}, OptimizerConfig{"sgd", 0.1, 1.5, 0}); }), "momentum"));
}

TEST(IoResults, CellsAreCheckedAgainstTheirSchema) {
  EXPECT_EQ(run_row_problem(nlohmann::json::object()), "'dataset' is missing");
  nlohmann::json row = {
      {"dataset", "sst2"},
      {"model", "transformer"},
      {"attack", "badnet-word"},
      {"defense", "ntml"},
      {"cacc", 0.78},
      {"asr", 0.1},
      {"ra", 0.8},
      {"pcc", 0.05},
      {"poison_rate", 0.1},
      {"asr_floor", nullptr},
      {"seed", 0},
      {"target", 1},
      {"clean_samples", 64},
      {"der", 0.9},
      {"seconds", 12.5},
      {"stages", nlohmann::json::array({{{"name", "train"}, {"seconds", 1.0}, {"peak_rss_mb", 9.0}}})},
      {"detection", nullptr}};
  EXPECT_EQ(run_row_problem(row), "");
  auto bad = row;
  bad["cacc"] = "abc";
  EXPECT_EQ(run_row_problem(bad), "'cacc' has the wrong type (\"abc\")");
  bad = row;
  bad["asr"] = 7;
  EXPECT_EQ(run_row_problem(bad), "'asr' = 7 lies outside [0, 1]");
  bad = row;
  bad["detection"] = {{"precision", 1.0}, {"recall", 0.5}, {"f1", 0.6}};
  EXPECT_EQ(run_row_problem(bad), "detection: 'flagged' is missing");
  bad = row;
  bad["stages"] = {1, 2};
  EXPECT_EQ(run_row_problem(bad), "a stage lacks its name, seconds or peak_rss_mb");
}
