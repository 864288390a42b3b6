// CLI: bad input to the real binary gives a non-zero exit and a message
// that names the culprit, never a crash; `antidote list` works.
#include <gtest/gtest.h>

#include "support.hpp"
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

struct Result {
  int rc = -1;  // exit status; 128 + signal when killed by one
  std::string output;
};

Result run(const std::string& args) {
  std::string cmd = "'"s + ANTIDOTE_BINARY + "' " + args + " 2>&1";
  Result r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int status = ::pclose(p);
  if (WIFEXITED(status)) r.rc = WEXITSTATUS(status);
  else if (WIFSIGNALED(status)) r.rc = 128 + WTERMSIG(status);
  return r;
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
