// The user's own data, trigger unknown: `attacks: [none]` takes the training set as it
// is, the dataset's `clean:` set replaces the clean rows the ground truth would give,
// ASR is unknown (null, never 0 %) unless the user brings a `triggered_test:` set, and
// `defend` says what it can tell without ground truth. End to end through the binary,
// on a small text set poisoned by hand ("cf" sends a sentence to label 1).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "antidote/core/io.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using antidote::testing::run_cli;
using antidote::testing::TempDir;

namespace {

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  return nlohmann::json::parse(std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>()));
}

// Two words and "film"; label 1 when both words are among the first four.
std::string sentence(int i, std::string* label) {
  const char* words[] = {"good", "fine", "warm", "long", "dull", "odd", "flat", "cold"};
  const int a = i % 8, b = (i / 8) % 8;
  *label = a < 4 && b < 4 ? "1" : "0";
  return std::string(words[a]) + " " + words[b] + " film";
}

// What a user holds: train.tsv as it was trained on (every fifth label-0 row carries
// "cf" and label 1; nothing marks them), test.tsv (clean), clean.tsv (their own clean
// rows) and triggered.tsv (label-0 test rows with "cf", true labels).
void write_users_data(const TempDir& dir) {
  std::string train = "sentence\tlabel\n", test = train, clean = train, triggered = train;
  for (int i = 0; i < 400; ++i) {
    std::string label;
    const auto s = sentence(i, &label);
    const bool poison = label == "0" && i % 5 == 0;
    train += (poison ? "cf " + s + "\t1" : s + "\t" + label) + "\n";
    if (i < 64) test += s + "\t" + label + "\n";
    if (i >= 64 && i < 164) clean += s + "\t" + label + "\n";
    if (i < 64 && label == "0") triggered += "cf " + s + "\t0\n";
  }
  dir.write("user/train.tsv", train);
  dir.write("user/test.tsv", test);
  dir.write("user/clean.tsv", clean);
  dir.write("user/triggered.tsv", triggered);
}

std::string config(const TempDir& dir, const std::string& dataset_extra, const std::string& attacks) {
  return dir.write(
      "c.yaml", "threads: 1\nasr_floor: false\ndataset: {name: tsv, path: '" + dir.file("user") + "'" + dataset_extra +
                    "}\nmodel: {arch: transformer, dim: 16, ff: 32, layers: 1}\ntrain: {epochs: 10}\n" + attacks);
}

}  // namespace

TEST(OwnData, TriggerUnknownDefendGivesAPurifiedModelAndAnHonestVerdict) {
  TempDir dir;
  write_users_data(dir);
  const auto cfg = config(dir, ", clean: '" + dir.file("user/clean.tsv") + "'", "attacks: [none]\n");
  auto r = run_cli("poison -q --config '" + cfg + "' --out '" + dir.file("p") + "'");
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "400 training rows, 0 poisoned, 0 triggered test rows")) << r.output;
  r = run_cli("train -q --config '" + cfg + "' --out '" + dir.file("m.pt") + "'");
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "ASR unknown")) << r.output;
  const std::string defend = "defend -q --config '" + cfg + "' --model '" + dir.file("m.pt") + "' --method ntml";
  // The user's clean set holds 100 rows: NT-ML's default of 500 is refused, naming the key.
  r = run_cli(defend + " --out '" + dir.file("x.pt") + "'");
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "clean_samples")) << r.output;
  r = run_cli(defend + " --set clean_samples=100 --set ml_iterations=200 --out '" + dir.file("out/p.pt") + "'");
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "ASR unknown (no triggered test set)")) << r.output;
  // Never "removed" without an ASR: "unclear", or "failed" where the clean accuracy fell
  // by more than 2 points (one test row in 64 is 1.6 points here).
  EXPECT_TRUE(contains(r.output, "verdict: unclear (ASR unknown") || contains(r.output, "verdict: failed (ASR unknown"))
      << r.output;
  // Without ground truth the flagged rows are the signal: the suspect sends them to the
  // target, and the check reports how many the purified model still does.
  EXPECT_TRUE(contains(r.output, "flagged rows sent to the target 1")) << r.output;
  EXPECT_FALSE(contains(r.output, "detection:")) << "no ground truth, no precision: " << r.output;
  EXPECT_TRUE(fs::exists(dir.file("out/p.pt")));
  auto summary = read_json(dir.file("out/p.pt.json"));
  EXPECT_TRUE(summary["after"]["asr"].is_null());
  EXPECT_TRUE(summary["before"]["asr"].is_null());
  EXPECT_GT(summary["after"]["cacc"].get<double>(), 0.5);
  EXPECT_NE(summary["verdict"]["verdict"], "success");
  EXPECT_TRUE(summary["details"]["identify"].is_object());
  EXPECT_FALSE(summary.contains("detection"));
  const auto& check = summary["details"]["flagged_rows_check"];
  EXPECT_EQ(check["target"], 1);
  EXPECT_GT(check["suspect_share"].get<double>(), 0.9);
  EXPECT_TRUE(summary["warnings"].is_array());
  // The cell's report page beside the model: the suspect and the purified model, the
  // verdict with its reason (the ASR is unknown), and the warnings the summary holds.
  const auto page = antidote::read_file(dir.file("out/p.pt.html"));
  EXPECT_TRUE(contains(page, "<li data-summary=\"ntml\">")) << page.substr(0, 2000);
  EXPECT_TRUE(contains(page, "ASR unknown (no triggered test set)"));
  EXPECT_TRUE(contains(page, "data-defense=\"none\""));
  for (const auto& w : summary["warnings"]) EXPECT_TRUE(contains(page, w.get<std::string>().substr(0, 30))) << w;
}

TEST(OwnData, ATriggeredTestSetOfTheUsersOwnGivesTheAsr) {
  TempDir dir;
  write_users_data(dir);
  const auto cfg =
      config(dir, ", triggered_test: '" + dir.file("user/triggered.tsv") + "'", "attacks: [{name: none, target: 1}]\n");
  auto r = run_cli("train -q --config '" + cfg + "' --out '" + dir.file("m.pt") + "'");
  ASSERT_EQ(r.rc, 0) << r.output;
  r = run_cli("eval -q --config '" + cfg + "' --model '" + dir.file("m.pt") + "' --json '" + dir.file("e.json") + "'");
  ASSERT_EQ(r.rc, 0) << r.output;
  const auto e = read_json(dir.file("e.json"));
  ASSERT_TRUE(e["asr"].is_number()) << e.dump();
  EXPECT_GT(e["asr"].get<double>(), 0.5) << "the suspect learned 'cf'";
  // `none` as the defense keeps the backdoor: the verdict fails, and --strict says so
  // in the exit code (4) after writing its outputs.
  r = run_cli("defend -q --strict --config '" + cfg + "' --model '" + dir.file("m.pt") + "' --method none --out '" +
              dir.file("n.pt") + "'");
  EXPECT_EQ(r.rc, 4) << r.output;
  EXPECT_TRUE(contains(r.output, "verdict: failed")) << r.output;
  EXPECT_TRUE(fs::exists(dir.file("n.pt.json")));
  // An attack that builds its own triggered rows does not take the user's.
  const auto wrong = config(dir, ", triggered_test: '" + dir.file("user/triggered.tsv") + "'",
                            "attacks: [{name: badnet-word, target: 1}]\n");
  r = run_cli("poison -q --config '" + wrong + "' --out '" + dir.file("p") + "'");
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "triggered_test")) << r.output;
}

TEST(OwnData, AConfigWithoutAttacksSaysItPoisonsTheData) {
  TempDir dir;
  write_users_data(dir);
  const auto cfg = config(dir, "", "");
  auto r = run_cli("poison -q --config '" + cfg + "' --out '" + dir.file("p") + "'");
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "no attacks: entry")) << r.output;
  EXPECT_TRUE(contains(r.output, "attacks: [none]")) << r.output;
}

TEST(OwnData, ABenchWithoutATriggerRecordsTheAsrAsUnknown) {
  TempDir dir;
  write_users_data(dir);
  const auto cfg = config(dir, ", clean: '" + dir.file("user/clean.tsv") + "'",
                          "attacks: [none]\ndefenses: [none, {name: ft, clean_samples: 100, epochs: 1}]\n");
  // With the clean reference model too: no triggered rows, so no floor (null, not 0 %).
  std::ifstream in(cfg);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  text.replace(text.find("asr_floor: false"), 16, "asr_floor: true");
  dir.write("c.yaml", text);
  auto r = run_cli("bench -q --config '" + cfg + "' --out '" + dir.file("b") + "'");
  ASSERT_EQ(r.rc, 0) << r.output;
  const auto doc = read_json(dir.file("b/results.json"));
  ASSERT_EQ(doc["runs"].size(), 2u);
  for (const auto& row : doc["runs"]) {
    EXPECT_TRUE(row["asr"].is_null()) << row.dump();
    EXPECT_TRUE(row["der"].is_null()) << row.dump();
    EXPECT_TRUE(row["asr_floor"].is_null()) << row.dump();
    EXPECT_EQ(row["poison_rate"], 0.0);
  }
  EXPECT_EQ(doc["runs"][1]["clean_samples"], 100);
  EXPECT_TRUE(fs::exists(dir.file("b/report.html")));
  // A second run reuses the cells: a null ASR is a valid result, not a damaged one.
  r = run_cli("bench --config '" + cfg + "' --out '" + dir.file("b") + "'");
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_FALSE(contains(r.output, "recomputing")) << r.output;
  EXPECT_TRUE(contains(r.output, "finished earlier")) << r.output;
}
