// One results row: a defense run on one dataset × attack × seed. The bench's cells,
// results.json, the tables, the report and `defend`'s summary all hold it; this file is
// its one mapping to and from JSON. Free of LibTorch, so the fuzz targets link it.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace antidote {

// Flagged training rows against the ground truth (known only for the attacks antidote
// applied itself).
struct DetectionRecord {
  double precision = 0, recall = 0, f1 = 0;
  int64_t flagged = 0;
};

struct StageRecord {
  std::string name;
  double seconds = 0, peak_rss_mb = 0;
};

// Where the report draws a defense's details: its own section (`id`, heading, legend)
// laid out as one of the report's layouts. A defense declares it (Defense::report_section);
// an empty id leaves its curves to the report's shared "other defenses" section.
struct ReportSection {
  std::string id, title, legend;
  // "distillation": the per-epoch trajectory, the identification-score histogram and
  // the identification's summary. "stages": the stage table, the checks and the verdict.
  std::string layout;
  bool empty() const { return id.empty(); }
};

struct RunRecord {
  // The cell.
  std::string dataset, model, attack;
  double poison_rate = 0;  // the rate actually applied
  int64_t target = 0;
  uint64_t seed = 0;
  // The defense.
  std::string defense;
  nlohmann::json options = nlohmann::json::object();           // as the config gave them
  nlohmann::json resolved_options = nlohmann::json::object();  // every key's value, defaults resolved
  int64_t clean_samples = 0;
  ReportSection section;
  // Fractions of the test sets. ASR, RA and PCC are unknown without triggered rows; the
  // floor without a clean reference model; DER without an ASR.
  double cacc = 0;
  std::optional<double> asr, ra, pcc, asr_floor, der;
  std::optional<DetectionRecord> detection;
  // The returned model on the clean test rows: [true class][predicted class] (empty when
  // not recorded, e.g. for many classes).
  std::vector<std::vector<int64_t>> confusion;
  std::vector<StageRecord> stages;
  double seconds = 0;
  std::string model_file;  // the purified model's file name under models/ ("" when none was saved)
  nlohmann::json details = nlohmann::json::object();  // the defense's own trajectories and tables
};

void to_json(nlohmann::json& j, const RunRecord& r);
void to_json(nlohmann::json& j, const DetectionRecord& d);
void to_json(nlohmann::json& j, const StageRecord& s);

// The record a JSON row holds; an Error naming `origin` and the first problem (a field
// missing, of the wrong type, or a fraction outside [0, 1]) when it holds none.
RunRecord run_record(const nlohmann::json& row, const std::string& origin);
// What makes `row` unfit to be a record: "" when it is one, else the first problem found.
std::string run_row_problem(const nlohmann::json& row);
// The records of a results document's "runs" (rows that are not records are left out:
// a report is drawn from whatever can be read).
std::vector<RunRecord> run_records(const nlohmann::json& doc);

}  // namespace antidote
