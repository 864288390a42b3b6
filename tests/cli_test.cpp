// CLI: bad input to the real binary gives a non-zero exit and a message
// that names the culprit, never a crash; `antidote list` works.
#include <gtest/gtest.h>

#include "support.hpp"
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

using namespace std::string_literals;
namespace fs = std::filesystem;

namespace {

using Result = antidote::testing::CliResult;
// `antidote args` through the shell; `shell_prefix` runs first (e.g. "ulimit -f 64; ").
Result run(const std::string& args, const std::string& shell_prefix = "") {
  return antidote::testing::run_cli(args, shell_prefix);
}

using antidote::testing::TempDir;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// A clean error: the documented exit code 2 (user error), not a crash (signal, 3 = internal).
#define EXPECT_USER_ERROR(r)                                             \
  do {                                                                   \
    EXPECT_EQ((r).rc, 2) << (r).output;                                  \
    EXPECT_TRUE(contains((r).output, "error")) << (r).output;            \
    EXPECT_FALSE(contains((r).output, "internal error")) << (r).output; \
  } while (0)

std::string idx_bytes(const std::vector<uint32_t>& dims, const std::string& values) {
  std::string s = {0, 0, 0x08, static_cast<char>(dims.size())};
  for (auto d : dims)
    for (int sh = 24; sh >= 0; sh -= 8) s += static_cast<char>((d >> sh) & 0xff);
  return s + values;
}

// A tiny 10-class IDX dataset: 20 training and 10 test images of 8×8.
void write_tiny_idx(const TempDir& dir, const std::string& sub) {
  std::string train_labels, test_labels;
  for (int i = 0; i < 20; ++i) train_labels += static_cast<char>(i % 10);
  for (int i = 0; i < 10; ++i) test_labels += static_cast<char>(i);
  dir.write(sub + "/train-images-idx3-ubyte", idx_bytes({20, 8, 8}, std::string(20 * 64, '\x40')));
  dir.write(sub + "/train-labels-idx1-ubyte", idx_bytes({20}, train_labels));
  dir.write(sub + "/t10k-images-idx3-ubyte", idx_bytes({10, 8, 8}, std::string(10 * 64, '\x40')));
  dir.write(sub + "/t10k-labels-idx1-ubyte", idx_bytes({10}, test_labels));
}

}  // namespace

TEST(CLI, ListSucceeds) {
  auto r = run("list");
  EXPECT_EQ(r.rc, 0) << r.output;
  for (auto name : {"cnn", "preact_resnet18", "transformer", "textcnn", "badnets", "blend", "wanet", "sig"})
    EXPECT_TRUE(contains(r.output, name)) << name << "\n" << r.output;
}

// Every option of a component with its default, meaning and rule; an unknown name is an error.
TEST(CLI, ListOptionsPrintsEachKeyWithItsDefaultAndRule) {
  auto r = run("list --options bedkd");
  EXPECT_EQ(r.rc, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "punish_floor")) << r.output;
  EXPECT_TRUE(contains(r.output, "image 0.05, text 0.1, reference 0.1")) << r.output;
  EXPECT_TRUE(contains(r.output, "must lie in [0, 1)")) << r.output;
  EXPECT_FALSE(contains(r.output, "ntml:")) << r.output;
  auto all = run("list --options");
  EXPECT_EQ(all.rc, 0) << all.output;
  for (auto name : {"config:", "bedkd:", "ntml:", "ft:", "fp:", "nad:", "badnets:", "token_stats:", "early_loss:"})
    EXPECT_TRUE(contains(all.output, name)) << name;
  // The config file's own keys, by themselves.
  auto config = run("list --options config");
  EXPECT_EQ(config.rc, 0) << config.output;
  for (auto key : {"eval_batch_size", "dataset.train_limit", "train.lr", "image 0.05, text 0.001"})
    EXPECT_TRUE(contains(config.output, key)) << key << "\n" << config.output;
  EXPECT_FALSE(contains(config.output, "bedkd:")) << config.output;
  EXPECT_USER_ERROR(run("list --options nosuchthing"));
}

TEST(CLI, UnknownSubcommandFails) {
  auto r = run("frobnicate");
  EXPECT_NE(r.rc, 0) << r.output;
  EXPECT_LT(r.rc, 128) << "killed by a signal\n" << r.output;
}

TEST(CLI, MissingConfigFile) {
  TempDir dir;
  auto missing = dir.file("no-such-config.yaml");
  auto r = run("bench --config '" + missing + "' --out '" + dir.file("out") + "'");
  EXPECT_USER_ERROR(r);
  EXPECT_TRUE(contains(r.output, missing)) << r.output;
}

TEST(CLI, MalformedYaml) {
  TempDir dir;
  auto cfg = dir.write("broken.yaml", "seed: [1, 2\ndataset: {name: fmnist\n");
  auto r = run("bench --config '" + cfg + "' --out '" + dir.file("out") + "'");
  EXPECT_USER_ERROR(r);
  EXPECT_TRUE(contains(r.output, cfg)) << r.output;
}

TEST(CLI, UnknownConfigKey) {
  TempDir dir;
  auto cfg = dir.write("typo.yaml", "seed: 0\ndataset: {name: fmnist, train_limt: 100}\n");
  auto r = run("bench --config '" + cfg + "' --out '" + dir.file("out") + "'");
  EXPECT_USER_ERROR(r);
  EXPECT_TRUE(contains(r.output, "train_limt")) << r.output;
}

TEST(CLI, DatasetPathDoesNotExist) {
  TempDir dir;
  auto absent = dir.file("nowhere");
  auto cfg = dir.write("c.yaml", "dataset: {name: idx, path: '" + absent + "'}\n");
  auto r = run("poison --config '" + cfg + "' --out '" + dir.file("out") + "'");
  EXPECT_USER_ERROR(r);
  EXPECT_TRUE(contains(r.output, absent)) << r.output;
}

TEST(CLI, MalformedTsvDataset) {
  TempDir dir;
  dir.write("tsv/train.tsv", "sentence\tlabel\nfine words\t1\nbad label here\tpositive\nmore\t0\n");
  dir.write("tsv/test.tsv", "sentence\tlabel\nok\t0\nalso ok\t1\n");
  auto cfg = dir.write("c.yaml", "dataset: {name: tsv, path: '" + dir.file("tsv") + "'}\nattacks: [badnet-word]\n");
  auto r = run("poison --config '" + cfg + "' --out '" + dir.file("out") + "'");
  EXPECT_USER_ERROR(r);
  EXPECT_TRUE(contains(r.output, "train.tsv")) << r.output;
  EXPECT_TRUE(contains(r.output, "line 3")) << r.output;
}

TEST(CLI, MalformedIdxDataset) {
  TempDir dir;
  write_tiny_idx(dir, "idx");
  // Truncate the training labels: the header promises 20, the file holds 19.
  auto labels = dir.file("idx/train-labels-idx1-ubyte");
  fs::resize_file(labels, fs::file_size(labels) - 1);
  auto cfg = dir.write("c.yaml", "dataset: {name: idx, path: '" + dir.file("idx") + "'}\n");
  auto r = run("poison --config '" + cfg + "' --out '" + dir.file("out") + "'");
  EXPECT_USER_ERROR(r);
  EXPECT_TRUE(contains(r.output, "train-labels-idx1-ubyte")) << r.output;
}

TEST(CLI, AttackTargetOutOfRange) {
  TempDir dir;
  write_tiny_idx(dir, "idx");
  auto cfg = dir.write("c.yaml", "dataset: {name: idx, path: '" + dir.file("idx") +
                                     "'}\nattacks: [{name: badnets, target: 12}]\n");
  auto r = run("poison --config '" + cfg + "' --out '" + dir.file("out") + "'");
  EXPECT_USER_ERROR(r);
  EXPECT_TRUE(contains(r.output, "12")) << r.output;
  EXPECT_TRUE(contains(r.output, "10")) << r.output;  // the number of classes
}

TEST(CLI, UnknownAttackOption) {
  TempDir dir;
  write_tiny_idx(dir, "idx");
  auto cfg = dir.write("b.yaml", "dataset: {name: idx, path: '" + dir.file("idx") +
                                "'}\nattacks: [{name: badnets, colour: red}]\n");
  auto r = run("poison --config '" + cfg + "' --out '" + dir.file("out") + "'");
  EXPECT_USER_ERROR(r);
  EXPECT_TRUE(contains(r.output, "colour")) << r.output;
}

TEST(CLI, ModelThatDoesNotFitTheData) {
  TempDir dir;
  write_tiny_idx(dir, "idx");
  auto cfg = dir.write("c.yaml", "dataset: {name: idx, path: '" + dir.file("idx") +
                                     "'}\nmodel: {arch: transformer}\ntrain: {epochs: 1}\n");
  auto r = run("train -q --config '" + cfg + "' --out '" + dir.file("m.pt") + "'");
  EXPECT_USER_ERROR(r);
  EXPECT_TRUE(contains(r.output, "text")) << r.output;
}

TEST(CLI, PoisonWritesOutputsOnTinyData) {
  TempDir dir;
  write_tiny_idx(dir, "idx");
  auto cfg = dir.write("c.yaml", "dataset: {name: idx, path: '" + dir.file("idx") +
                                     "'}\nattacks: [{name: badnets, poison_rate: 0.1, target: 0}]\n");
  auto r = run("poison -q --config '" + cfg + "' --out '" + dir.file("out") + "'");
  ASSERT_EQ(r.rc, 0) << r.output;
  // 10 % of 20 rows = 2 poisoned rows, listed one per line.
  std::ifstream rows(dir.file("out/poisoned_rows.txt"));
  int lines = 0;
  for (std::string l; std::getline(rows, l);) ++lines;
  EXPECT_EQ(lines, 2);
  EXPECT_TRUE(fs::exists(dir.file("out/train-images-idx3-ubyte")));
  // Triggered test set: the 9 non-target test images (labels 1..9).
  EXPECT_EQ(fs::file_size(dir.file("out/triggered-labels-idx1-ubyte")), 8u + 9u);
}

namespace {
// A small text set: 400 training rows of two words and "film", label 1 when both words
// are among the first four (one inserted word flips at most a third of the other rows);
// the config's badnet-word attack then inserts "cf" into 20 % of the rows.
void write_words_tsv(const TempDir& dir, const std::string& sub) {
  const char* words[] = {"good", "fine", "warm", "long", "dull", "odd", "flat", "cold"};
  std::string train = "sentence\tlabel\n", test = "sentence\tlabel\n";
  for (int i = 0; i < 400; ++i) {
    const int a = i % 8, b = (i / 8) % 8;
    const std::string label = a < 4 && b < 4 ? "1" : "0";
    train += std::string(words[a]) + " " + words[b] + " film\t" + label + "\n";
    if (i < 40) test += std::string(words[a]) + " " + words[b] + " movie\t" + label + "\n";
  }
  dir.write(sub + "/train.tsv", train);
  dir.write(sub + "/test.tsv", test);
}
}  // namespace

TEST(CLI, IdentifyWritesTheFlaggedRows) {
  TempDir dir;
  write_words_tsv(dir, "tsv");
  auto cfg = dir.write("c.yaml", "threads: 1\ndataset: {name: tsv, path: '" + dir.file("tsv") +
                                     "'}\nmodel: {arch: transformer, dim: 16, ff: 32, layers: 1}\n"
                                     "train: {epochs: 10}\nattacks: [{name: badnet-word, poison_rate: 0.2, target: 1, words: [cf]}]\n");
  auto r = run("train -q --config '" + cfg + "' --out '" + dir.file("m.pt") + "'");
  ASSERT_EQ(r.rc, 0) << r.output;
  r = run("identify -q --config '" + cfg + "' --model '" + dir.file("m.pt") +
          "' --method token_stats --set flag_count=10 --out '" + dir.file("id") + "'");
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "target label 1")) << r.output;
  EXPECT_TRUE(contains(r.output, "precision 100.0%")) << r.output;
  std::ifstream csv(dir.file("id/flagged.csv"));
  std::string header, line;
  std::getline(csv, header);
  EXPECT_EQ(header, "rank,row,label,score,poisoned,text");
  int rows = 0;
  while (std::getline(csv, line)) {
    ++rows;
    std::vector<std::string> fields;
    std::stringstream ss(line);
    for (std::string f; std::getline(ss, f, ',');) fields.push_back(f);
    ASSERT_GE(fields.size(), 6u) << line;
    EXPECT_EQ(fields[2], "1") << line;  // label
    EXPECT_EQ(fields[4], "1") << line;  // poisoned
  }
  EXPECT_EQ(rows, 10);
  EXPECT_TRUE(fs::exists(dir.file("id/scores.csv")));
  EXPECT_TRUE(fs::exists(dir.file("id/identification.json")));
  std::ifstream page(dir.file("id/report.html"));
  std::string html((std::istreambuf_iterator<char>(page)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(contains(html, "data-chart=\"identification\"")) << "no score histogram";
  EXPECT_TRUE(contains(html, "Flagged rows"));
  // An unknown method and a key of another method are errors that name them.
  r = run("identify -q --config '" + cfg + "' --model '" + dir.file("m.pt") + "' --method nope --out '" +
          dir.file("id2") + "'");
  EXPECT_USER_ERROR(r);
  EXPECT_TRUE(contains(r.output, "nope")) << r.output;
  r = run("identify -q --config '" + cfg + "' --model '" + dir.file("m.pt") +
          "' --method token_stats --set flip_epochs=3 --out '" + dir.file("id2") + "'");
  EXPECT_USER_ERROR(r);
  EXPECT_TRUE(contains(r.output, "flip_epochs")) << r.output;
}

// ---- full disks, damaged caches and hostile inputs, end to end ---------------------------

namespace {
// `antidote args` with the shell's file-size limit at `kib` KiB: writes past it fail as on
// a full disk (antidote ignores SIGXFSZ, so the write's own error is what it reports).
Result run_with_file_limit(int kib, const std::string& args) {
  return run(args, "ulimit -f " + std::to_string(kib) + "; ");
}

std::vector<std::string> temp_files_under(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (contains(e.path().filename().string(), ".tmp")) out.push_back(e.path().string());
  return out;
}

std::string tiny_idx_config(const TempDir& dir, const std::string& extra = "") {
  return dir.write("c.yaml", "threads: 1\nasr_floor: false\ndataset: {name: idx, path: '" + dir.file("idx") +
                                 "'}\ntrain: {epochs: 1}\nattacks: [{name: badnets, poison_rate: 0.1, target: 0}]\n" +
                                 extra);
}
}  // namespace

TEST(CLI, TrainOnAFullDiskFailsCleanlyAndLeavesNoTemp) {
  TempDir dir;
  write_tiny_idx(dir, "idx");
  auto cfg = tiny_idx_config(dir);
  auto r = run_with_file_limit(16, "train -q --config '" + cfg + "' --out '" + dir.file("m.pt") + "'");
  EXPECT_USER_ERROR(r);
  EXPECT_TRUE(contains(r.output, "cannot write '" + dir.file("m.pt") + "'")) << r.output;
  EXPECT_TRUE(contains(r.output, "File too large")) << r.output;
  EXPECT_EQ(temp_files_under(dir.path), std::vector<std::string>{});
  EXPECT_FALSE(fs::exists(dir.file("m.pt")));
}

TEST(CLI, EvalJsonOnAFullDiskKeepsThePreviousFile) {
  TempDir dir;
  write_tiny_idx(dir, "idx");
  auto cfg = tiny_idx_config(dir);
  ASSERT_EQ(run("train -q --config '" + cfg + "' --out '" + dir.file("m.pt") + "'").rc, 0);
  dir.write("eval.json", "previous");
  auto r = run_with_file_limit(0, "eval -q --config '" + cfg + "' --model '" + dir.file("m.pt") + "' --json '" +
                                      dir.file("eval.json") + "'");
  EXPECT_USER_ERROR(r);
  EXPECT_TRUE(contains(r.output, "eval.json")) << r.output;
  std::ifstream in(dir.file("eval.json"));
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "previous");
  EXPECT_EQ(temp_files_under(dir.path), std::vector<std::string>{});
}

TEST(CLI, BenchRecomputesCellsThatAreNotValidResults) {
  TempDir dir;
  write_tiny_idx(dir, "idx");
  auto cfg = tiny_idx_config(dir, "defenses: [none]\n");
  const auto out = dir.file("out");
  ASSERT_EQ(run("bench -q --config '" + cfg + "' --out '" + out + "'").rc, 0);
  std::vector<fs::path> cells;
  for (const auto& e : fs::directory_iterator(out + "/cells")) cells.push_back(e.path());
  ASSERT_EQ(cells.size(), 1u);
  for (const std::string damaged : {"{}", "{\"cacc\": \"abc\"}", "[1, 2", ""}) {
    std::ofstream(cells[0]) << damaged;
    dir.write("out/results.csv.tmp4194305", "left by a killed run");
    auto r = run("bench --config '" + cfg + "' --out '" + out + "'");
    ASSERT_EQ(r.rc, 0) << damaged << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, "recomputing")) << damaged << "\n" << r.output;
    // Progress names the cell among the grid's.
    EXPECT_TRUE(contains(r.output, "[cell 1/1] [idx × badnets × none]")) << r.output;
    EXPECT_TRUE(contains(r.output, "removed 1 temp file")) << r.output;
    std::ifstream csv(out + "/results.csv");
    std::string all(std::istreambuf_iterator<char>(csv), {});
    EXPECT_FALSE(contains(all, "abc")) << all;
    EXPECT_EQ(temp_files_under(out), std::vector<std::string>{});
  }
  // A finished grid says so (the report shows no "in progress" notice).
  std::ifstream results(out + "/results.json");
  const auto doc = nlohmann::json::parse(std::string(std::istreambuf_iterator<char>(results), {}));
  EXPECT_EQ(doc["complete"], true);
  EXPECT_EQ(doc["cells_total"], 1);
}

// A grid spread over a job array: `--shard 1/2` and `--shard 2/2` into one directory, then
// `--merge`, give the unsharded bench's results.json (timings aside); a shard writes no
// results files, and a merge with a cell missing names it and fails.
TEST(CLI, BenchShardsMergeIntoTheUnshardedResults) {
  TempDir dir;
  write_tiny_idx(dir, "idx");
  auto cfg = dir.write("c.yaml", "seed: [0, 1]\nthreads: 1\ndataset: {name: idx, path: '" + dir.file("idx") +
                                     "'}\ntrain: {epochs: 1}\nattacks: [{name: badnets, poison_rate: 0.1, target: "
                                     "0}, {name: blend, poison_rate: 0.1, target: 0}]\ndefenses: [none, {name: ft, "
                                     "clean_samples: 20, epochs: 1}]\n");
  const std::string bench = "bench -q --config '" + cfg + "' --out ";
  auto one = run(bench + "'" + dir.file("shards") + "' --shard 1/2");
  ASSERT_EQ(one.rc, 0) << one.output;
  EXPECT_TRUE(contains(one.output, "shard 1/2: 4 cell(s)")) << one.output;  // 2 of the 4 suspects, 2 defenses each
  EXPECT_FALSE(fs::exists(dir.file("shards/results.json")));
  auto early = run(bench + "'" + dir.file("shards") + "' --merge");
  EXPECT_USER_ERROR(early);
  EXPECT_TRUE(contains(early.output, "has not")) << early.output;
  ASSERT_EQ(run(bench + "'" + dir.file("shards") + "' --shard 2/2").rc, 0);
  ASSERT_EQ(run(bench + "'" + dir.file("shards") + "' --merge").rc, 0);
  ASSERT_EQ(run(bench + "'" + dir.file("whole") + "'").rc, 0);
  auto results = [&](const std::string& sub) {
    std::ifstream in(dir.file(sub + "/results.json"));
    auto doc = nlohmann::json::parse(std::string(std::istreambuf_iterator<char>(in), {}));
    doc.erase("seconds");
    for (auto& r : doc["runs"]) r.erase("seconds"), r.erase("stages");
    return doc;
  };
  const auto merged = results("shards"), whole = results("whole");
  EXPECT_EQ(merged["runs"].size(), 8u);
  EXPECT_EQ(merged, whole);
  for (const char* bad : {"0/2", "3/2", "1/0", "x"}) {
    auto r = run(bench + "'" + dir.file("x") + "' --shard " + bad);
    EXPECT_USER_ERROR(r);
    EXPECT_TRUE(contains(r.output, "--shard")) << bad << "\n" << r.output;
  }
}

// Blank images teach no trigger: the suspect answers one class whatever the input, and
// with target 1 that class is another. The bench says so even with -q, since the
// defenses' numbers on such a cell say nothing about them. The data path is relative
// (run from the folder): the cell's seeds derive from its config, path included.
TEST(CLI, BenchWarnsWhenTheSuspectNeverLearnedTheBackdoor) {
  TempDir dir;
  write_tiny_idx(dir, "idx");
  dir.write("c.yaml",
            "threads: 1\nasr_floor: false\ndataset: {name: idx, path: idx}\ntrain: {epochs: 1}\n"
            "attacks: [{name: badnets, poison_rate: 0.1, target: 1}]\ndefenses: [none]\n");
  auto r = run("bench -q --config c.yaml --out out", "cd '" + dir.file("") + "' && ");
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "warning: [idx × badnets] the suspect never learned the backdoor (ASR 0.0%"))
      << r.output;
}

TEST(CLI, HostileConfigsFailFastNamingTheCulprit) {
  TempDir dir;
  std::string bomb = "seed: 0\nx0: &a0 [y, y]\n";
  for (int i = 1; i <= 12; ++i) bomb += fmt::format("x{0}: &a{0} [*a{1}, *a{1}, *a{1}, *a{1}]\n", i, i - 1);
  auto path = dir.write("bomb.yaml", bomb);
  for (const std::string cmd : {"bench", "poison"}) {
    auto r = run(cmd + " -q --config '" + path + "' --out '" + dir.file("o") + "'");
    EXPECT_USER_ERROR(r);
    EXPECT_TRUE(contains(r.output, "bomb.yaml")) << r.output;
    EXPECT_TRUE(contains(r.output, "alias bomb")) << r.output;
  }
  path = dir.write("dup.yaml", "seed: 0\ntrain: {epochs: 1}\nseed: 3\n");
  auto r = run("poison -q --config '" + path + "' --out '" + dir.file("o") + "'");
  EXPECT_USER_ERROR(r);
  EXPECT_TRUE(contains(r.output, "dup.yaml' line 3: key 'seed' appears twice")) << r.output;
  write_tiny_idx(dir, "idx");
  for (const std::string train : {"{momentum: .nan}", "{weight_decay: -5}", "{lr: .inf}"}) {
    auto cfg = dir.write("t.yaml", "dataset: {name: idx, path: '" + dir.file("idx") + "'}\ntrain: " + train + "\n");
    r = run("train -q --config '" + cfg + "' --out '" + dir.file("m.pt") + "'");
    EXPECT_USER_ERROR(r);
    EXPECT_TRUE(contains(r.output, train.substr(1, train.find(':') - 1))) << train << "\n" << r.output;
  }
}

TEST(CLI, BadTextAndLabelsFailBeforeTraining) {
  TempDir dir;
  dir.write("tsv/train.tsv", "sentence\tlabel\ngood film\t1\nbad film\t0\nna\xefve film\t1\n");
  dir.write("tsv/test.tsv", "sentence\tlabel\ngood\t1\nbad\t0\n");
  auto cfg = dir.write("c.yaml", "dataset: {name: tsv, path: '" + dir.file("tsv") + "'}\ntrain: {epochs: 1}\n");
  auto r = run("bench -q --config '" + cfg + "' --out '" + dir.file("out") + "'");
  EXPECT_USER_ERROR(r);
  EXPECT_TRUE(contains(r.output, "train.tsv' line 4: byte 3 is not valid UTF-8")) << r.output;
  for (const auto& e : fs::recursive_directory_iterator(dir.file("out")))
    EXPECT_TRUE(e.is_directory()) << e.path() << ": nothing may be trained or written first";
  // SST-2 declares two classes: a label 7 is an error, not an eight-class model.
  dir.write("sst2/train.tsv", "sentence\tlabel\ngood film\t1\nbad film\t7\n");
  dir.write("sst2/test.tsv", "sentence\tlabel\ngood\t1\nbad\t0\n");
  cfg = dir.write("s.yaml", "dataset: {name: sst2, path: '" + dir.file("sst2") + "'}\n");
  r = run("poison -q --config '" + cfg + "' --out '" + dir.file("p") + "'");
  EXPECT_USER_ERROR(r);
  EXPECT_TRUE(contains(r.output, "train.tsv' line 3: label 7 is out of range (at most 1)")) << r.output;
}

TEST(CLI, ModelMetadataWithAnAbsurdClassCountIsRefused) {
  TempDir dir;
  write_tiny_idx(dir, "idx");
  auto cfg = tiny_idx_config(dir);
  ASSERT_EQ(run("train -q --config '" + cfg + "' --out '" + dir.file("m.pt") + "'").rc, 0);
  std::ifstream in(dir.file("m.pt.yaml"));
  std::string meta(std::istreambuf_iterator<char>(in), {});
  const auto at = meta.find("num_classes: 10");
  ASSERT_NE(at, std::string::npos) << meta;
  meta.replace(at, 15, "num_classes: 1000000000000");
  dir.write("m.pt.yaml", meta);
  auto r = run("eval -q --config '" + cfg + "' --model '" + dir.file("m.pt") + "'");
  EXPECT_USER_ERROR(r);
  EXPECT_TRUE(contains(r.output, "num_classes: 1000000000000 is outside [2, 100000]")) << r.output;
}

TEST(CLI, BenchOnAFullTmpfsFailsCleanlyAndLeavesNoTemp) {
  TempDir dir;
  const auto out = dir.file("small");
  fs::create_directories(out);
  if (::geteuid() != 0 || ::mount("tmpfs", out.c_str(), "tmpfs", 0, "size=48k") != 0)
    GTEST_SKIP() << "needs root to mount a small tmpfs";
  write_tiny_idx(dir, "idx");
  auto cfg = tiny_idx_config(dir, "defenses: [none]\n");
  auto r = run("bench -q --config '" + cfg + "' --out '" + out + "'");
  const auto temps = temp_files_under(out);
  ::umount(out.c_str());
  EXPECT_USER_ERROR(r);
  EXPECT_TRUE(contains(r.output, "No space left on device")) << r.output;
  EXPECT_TRUE(contains(r.output, "cannot write '" + out)) << r.output;
  EXPECT_EQ(temps, std::vector<std::string>{});
}

TEST(CLI, CommandsWithoutAConfigSayTheyUseTheDemoConfig) {
  TempDir dir;
  auto r = run("eval -q --model '" + dir.file("absent.pt") + "'");
  EXPECT_USER_ERROR(r);
  EXPECT_TRUE(contains(r.output, "no --config given; using the embedded demo config")) << r.output;
  r = run("demo --print-config");
  EXPECT_EQ(r.rc, 0) << r.output;
  EXPECT_FALSE(contains(r.output, "no --config given")) << r.output;
}
