// The results record: its one JSON mapping both ways, unknown values as null, the
// problems a damaged row is refused with, and report sections chosen by what a row
// declares rather than by the defense's name.
#include <gtest/gtest.h>

#include "antidote/core/common.hpp"
#include "antidote/report/record.hpp"
#include "antidote/report/results.hpp"
#include "support.hpp"

using namespace antidote;
using antidote::testing::error_of;
using nlohmann::json;

namespace {
RunRecord sample() {
  RunRecord r;
  r.dataset = "sst2";
  r.model = "transformer";
  r.attack = "addsent";
  r.poison_rate = 0.1;
  r.target = 1;
  r.seed = 3;
  r.defense = "custom";
  r.options = {{"epochs", 2}};
  r.resolved_options = {{"epochs", 2}, {"lr", 0.01}};
  r.clean_samples = 250;
  r.section = {"custom", "Custom", "what the charts show", "stages"};
  r.cacc = 0.875;
  r.asr = 0.0625;
  r.ra = 0.75;
  r.pcc = 0.125;
  r.asr_floor = 0.03125;
  r.der = 0.96875;
  r.detection = DetectionRecord{0.5, 0.25, 1.0 / 3, 64};
  r.stages = {{"identify", 1.5, 100}, {"finetune", 2.25, 120}};
  r.confusion = {{40, 2}, {3, 55}};
  r.seconds = 4;
  r.model_file = "m.pt";
  r.details = {{"stages", json::array({{{"stage", "after"}, {"model", "S"}, {"cacc", 0.5}}})}};
  return r;
}
}  // namespace

TEST(Record, RoundTripKeepsEveryField) {
  const RunRecord a = sample();
  const json j = a;
  const RunRecord b = run_record(j, "row");
  EXPECT_EQ(json(b), j);
  EXPECT_EQ(b.seed, 3u);
  EXPECT_EQ(b.section.layout, "stages");
  ASSERT_TRUE(b.detection.has_value());
  EXPECT_EQ(b.detection->flagged, 64);
  EXPECT_DOUBLE_EQ(*b.asr_floor, 0.03125);
  EXPECT_EQ(b.stages.size(), 2u);
  EXPECT_EQ(b.stages[1].name, "finetune");
  EXPECT_EQ(b.confusion, (std::vector<std::vector<int64_t>>{{40, 2}, {3, 55}}));
}

TEST(Record, UnknownValuesAreNullAndOptionalFieldsAbsent) {
  RunRecord r = sample();
  r.asr = r.ra = r.pcc = r.asr_floor = r.der = std::nullopt;
  r.detection = std::nullopt;
  r.resolved_options = json::object();
  r.model_file.clear();
  r.section = {};
  r.confusion.clear();
  const json j = r;
  for (const char* key : {"asr", "ra", "pcc", "asr_floor", "der", "detection"}) {
    ASSERT_TRUE(j.contains(key)) << key;
    EXPECT_TRUE(j[key].is_null()) << key;
  }
  for (const char* key : {"resolved_options", "model_file", "section", "confusion"})
    EXPECT_FALSE(j.contains(key)) << key;
  const RunRecord back = run_record(j, "row");
  EXPECT_FALSE(back.asr.has_value());
  EXPECT_FALSE(back.der.has_value());
  EXPECT_TRUE(back.section.empty());
  EXPECT_EQ(json(back), j);
}

TEST(Record, DamagedRowsNameTheirFirstProblem) {
  json j = sample();
  EXPECT_EQ(run_row_problem(j), "");
  j.erase("attack");
  EXPECT_EQ(run_row_problem(j), "'attack' is missing");
  j = sample();
  j["seed"] = "three";
  EXPECT_EQ(run_row_problem(j), "'seed' has the wrong type (\"three\")");
  j = sample();
  j["ra"] = -0.5;
  EXPECT_EQ(run_row_problem(j), "'ra' = -0.5 lies outside [0, 1]");
  j = sample();
  j["stages"] = json::object();
  EXPECT_EQ(run_row_problem(j), "'stages' has the wrong type ({})");
  j = sample();
  j["detection"]["recall"] = 2;
  EXPECT_EQ(run_row_problem(j), "detection: 'recall' = 2 lies outside [0, 1]");
  j = sample();
  j["details"] = json::array();
  EXPECT_EQ(run_row_problem(j), "'details' has the wrong type ([])");
  EXPECT_EQ(run_row_problem(json::array()), "not a JSON object");
  EXPECT_EQ(error_of([&] { run_record(j, "cell 'x.json'"); }),
            "cell 'x.json': not a valid result ('details' has the wrong type ([]))");
  j = sample();
  j["confusion"] = json::array({json::array({1, 2}), json::array({3})});
  EXPECT_EQ(run_row_problem(j), "'confusion' is not a square matrix of counts of at most 100 classes");
  j["confusion"] = json::array({json::array({1, -2}), json::array({3, 4})});
  EXPECT_EQ(run_row_problem(j), "'confusion' is not a square matrix of counts of at most 100 classes");
}

TEST(Record, RunRecordsSkipRowsThatAreNotRecords) {
  json doc{{"runs", json::array({json(sample()), json{{"dataset", "x"}}, json(sample())})}};
  EXPECT_EQ(run_records(doc).size(), 2u);
  EXPECT_TRUE(run_records(json::object()).empty());
}

TEST(Record, ReportSectionsFollowWhatARowDeclares) {
  RunRecord declared = sample();
  RunRecord plain = sample();
  plain.defense = "plain";
  plain.section = {};
  plain.details = {{"trajectory", json::array({{{"epoch", 1}, {"cacc", 0.5}, {"asr", 0.5}, {"ra", 0.5}}})}};
  json doc{{"runs", json::array({json(declared), json(plain)})}};
  const auto html = render_html_report(doc);
  // The declared section: its id, title, legend, its layout's table and a link to it.
  EXPECT_NE(html.find("<section id=\"custom\"><h2>Custom</h2>"), std::string::npos);
  EXPECT_NE(html.find("what the charts show"), std::string::npos);
  EXPECT_NE(html.find("class=\"ntml-stages\""), std::string::npos);
  EXPECT_NE(html.find("<a href=\"#custom\">Custom</a>"), std::string::npos);
  // The row without one joins the shared section; no section is named after a defense.
  EXPECT_NE(html.find("<section id=\"trajectories\">"), std::string::npos);
  EXPECT_NE(html.find("plain over epochs"), std::string::npos);
  EXPECT_EQ(html.find("<section id=\"plain\""), std::string::npos);
  EXPECT_EQ(html.find("<section id=\"bedkd\""), std::string::npos);
}
