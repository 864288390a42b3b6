// Integration: the real pipeline (load → poison → train → evaluate → results) on small
// real data; bit-identical reruns; resuming a bench without redoing finished cells.
#include <gtest/gtest.h>

#include "support.hpp"

#include <filesystem>

#include "antidote/pipeline/experiment.hpp"
#include "antidote/report/results.hpp"

using namespace antidote;
namespace fs = std::filesystem;

namespace {

// A fresh output folder, removed with the test's TempDir.
using antidote::testing::TempDir;

ExperimentConfig small_fmnist(const std::string& attack, int64_t epochs = 2) {
  auto root = YAML::Load(fmt::format(R"(
seed: 3
threads: 2
dataset: {{name: fmnist, train_limit: 3000, test_limit: 600}}
model: {{arch: cnn, width: 8, hidden: 32}}
train: {{epochs: {}, batch_size: 64, lr: 0.05}}
attacks: [{{name: {}, poison_rate: 0.1, target: 0}}]
defenses: [none]
)",
                                       epochs, attack));
  return parse_config(root, "test");
}

bool fmnist_available() { return fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"); }

}  // namespace

TEST(Pipeline, FmnistBadnetsBackdoorIsLearnedAndFloorIsLow) {
  if (!fmnist_available()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  set_quiet(true);
  TempDir tmp;
  auto out = tmp.path;
  BenchOptions o;
  o.out_dir = out.string();
  auto doc = run_bench(small_fmnist("badnets", 3), o);
  ASSERT_EQ(doc["runs"].size(), 1u);
  const auto& r = doc["runs"][0];
  EXPECT_EQ(r["defense"], "none");
  EXPECT_EQ(r["dataset"], "fmnist");
  // 3000 rows, 3 epochs: a real backdoor and a usable model, far above chance (10 %).
  EXPECT_GT(r["cacc"].get<double>(), 0.60);
  EXPECT_GT(r["asr"].get<double>(), 0.80);
  // The clean reference model does not send patched images to the target.
  EXPECT_LT(r["asr_floor"].get<double>(), 0.30);
  // ASR + RA cannot exceed 1 (the target is never the true label of a triggered row).
  EXPECT_LE(r["asr"].get<double>() + r["ra"].get<double>(), 1.0 + 1e-12);
  for (auto f : {"results.json", "results.csv", "results.md", "report.html"}) EXPECT_TRUE(fs::exists(out / f)) << f;
  auto md = read_file((out / "results.md").string());
  EXPECT_NE(md.find("| fmnist | cnn | badnets |"), std::string::npos);
}

TEST(Pipeline, SameConfigAndSeedGiveBitIdenticalResultsAndWeights) {
  if (!fmnist_available()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  set_quiet(true);
  TempDir tmp_a, tmp_b;
  auto a = tmp_a.path, b = tmp_b.path;
  auto cfg = small_fmnist("blend", 1);
  BenchOptions oa, ob;
  oa.out_dir = a.string();
  ob.out_dir = b.string();
  auto da = run_bench(cfg, oa);
  auto db = run_bench(cfg, ob);
  ASSERT_EQ(da["runs"].size(), db["runs"].size());
  for (size_t i = 0; i < da["runs"].size(); ++i)
    for (auto k : {"cacc", "asr", "asr_floor", "ra", "pcc", "der"}) EXPECT_EQ(da["runs"][i][k], db["runs"][i][k]) << k;
  // Every model file (clean reference and suspect) has identical weights.
  size_t compared = 0;
  for (const auto& e : fs::directory_iterator(a / "models")) {
    if (e.path().extension() != ".pt") continue;
    auto ma = load_model(e.path().string());
    auto mb = load_model((b / "models" / e.path().filename()).string());
    auto pa = ma->named_parameters(), pb = mb->named_parameters();
    ASSERT_EQ(pa.size(), pb.size());
    for (const auto& item : pa) EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();
    ++compared;
  }
  EXPECT_EQ(compared, 2u);
}

TEST(Pipeline, RerunResumesFinishedCellsWithoutRetraining) {
  if (!fmnist_available()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  set_quiet(true);
  TempDir tmp;
  auto out = tmp.path;
  auto cfg = small_fmnist("badnets", 1);
  BenchOptions o;
  o.out_dir = out.string();
  auto first = run_bench(cfg, o);
  std::map<std::string, fs::file_time_type> stamps;
  for (const auto& dir : {"cells", "models"})
    for (const auto& e : fs::directory_iterator(out / dir)) stamps[e.path().string()] = fs::last_write_time(e.path());
  ASSERT_FALSE(stamps.empty());
  auto second = run_bench(cfg, o);
  EXPECT_EQ(first["runs"], second["runs"]);  // the very same rows, timings included: nothing was redone
  for (const auto& [path, t] : stamps) EXPECT_EQ(fs::last_write_time(path), t) << path << " was rewritten";
}

// A bench run without the ASR floor, then with it: the finished cell is reused, not
// redone, and its row gets the floor (which depends on the dataset, seed and attack only).
TEST(Pipeline, RerunWithTheFloorFillsItIntoFinishedCells) {
  if (!fmnist_available()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  set_quiet(true);
  TempDir tmp;
  auto out = tmp.path;
  auto cfg = small_fmnist("badnets", 1);
  cfg.asr_floor = false;
  BenchOptions o;
  o.out_dir = out.string();
  auto first = run_bench(cfg, o);
  ASSERT_EQ(first["runs"].size(), 1u);
  EXPECT_TRUE(first["runs"][0]["asr_floor"].is_null());
  std::map<std::string, fs::file_time_type> cells;
  for (const auto& e : fs::directory_iterator(out / "cells")) cells[e.path().string()] = fs::last_write_time(e.path());
  cfg.asr_floor = true;
  auto second = run_bench(cfg, o);
  ASSERT_EQ(second["runs"].size(), 1u);
  ASSERT_TRUE(second["runs"][0]["asr_floor"].is_number());
  EXPECT_LT(second["runs"][0]["asr_floor"].get<double>(), 0.30);
  for (auto k : {"cacc", "asr", "seconds"}) EXPECT_EQ(first["runs"][0][k], second["runs"][0][k]) << k;
  for (const auto& [path, t] : cells) EXPECT_EQ(fs::last_write_time(path), t) << path << " was rewritten";
}

// Runs the enclosing scope in another working directory.
struct WorkingDirectory {
  fs::path previous = fs::current_path();
  explicit WorkingDirectory(const fs::path& dir) { fs::current_path(dir); }
  ~WorkingDirectory() { fs::current_path(previous); }
};

TEST(Pipeline, Sst2BadnetWordRunsOnRealText) {
  auto text = fs::path(ANTIDOTE_SHARED_DATA) / "text";
  if (!fs::exists(text / "sst2")) GTEST_SKIP() << "shared text data not found";
  set_quiet(true);
  TempDir tmp;
  auto out = fs::absolute(tmp.path);
  // The cell's seed is hashed from its config, the data path as written included. A
  // path relative to the shared text data gives every checkout the same seed; with
  // the absolute path, a clone elsewhere drew another seed and once failed the ASR
  // check below (0.675 at 20 % poison).
  WorkingDirectory cwd(text);
  auto cfg = parse_config(YAML::Load(R"(
seed: 1
threads: 2
dataset: {name: sst2, path: sst2, train_limit: 1500, test_limit: 400}
model: {arch: transformer, dim: 32, layers: 1, ff: 64}
train: {epochs: 3, batch_size: 32}
attacks: [{name: badnet-word, poison_rate: 0.3, target: 1}]
defenses: [none]
)"),
                          "test");
  BenchOptions o;
  o.out_dir = out.string();
  auto doc = run_bench(cfg, o);
  ASSERT_EQ(doc["runs"].size(), 1u);
  const auto& r = doc["runs"][0];
  EXPECT_EQ(r["attack"], "badnet-word");
  // Rare-word triggers are learned quickly even by a tiny model, and the check holds
  // with a margin for other seeds too: at 30 % poison, seeds 1-24 of this config gave
  // ASR 0.845-1.0 and CACC 0.525-0.655 (at 20 %: ASR 0.774-0.98).
  EXPECT_GT(r["asr"].get<double>(), 0.7);
  EXPECT_GE(r["cacc"].get<double>(), 0.45);
  ASSERT_EQ(doc["examples"].size(), 1u);
  EXPECT_EQ(doc["examples"][0]["modality"], "text");
  // Every saved text model has its vocabulary beside it, so that `antidote eval` and
  // `antidote defend` can load it as it is.
  int models = 0;
  for (const auto& e : fs::directory_iterator(out / "models")) {
    if (e.path().extension() != ".pt") continue;
    ++models;
    EXPECT_TRUE(fs::exists(e.path().string() + ".vocab")) << e.path();
  }
  EXPECT_EQ(models, 2);  // the clean reference model and the suspect
}
