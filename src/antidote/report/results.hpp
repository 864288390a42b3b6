// Results documents: results.json, results.csv, results.md and report.html.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>

#include <string>
#include <vector>

#include "antidote/metrics/verdict.hpp"
#include "antidote/report/record.hpp"

namespace antidote {

// Writes all four files into `out_dir` as one set: every file is written before any
// replaces its predecessor, so a failed write leaves the previous set whole.
void write_results(const std::string& out_dir, const nlohmann::json& doc);
// The same cell: dataset, model, attack, rate, target and seed agree.
bool same_cell(const RunRecord& a, const RunRecord& b);
// The cell's suspect row (the `none` defense) among `rows`, null when the cell has none.
const RunRecord* suspect_row(const std::vector<RunRecord>& rows, const RunRecord& row);
// The verdict (metrics/verdict.hpp) on a row: its ASR against its floor, its CACC against
// the suspect's (`suspect` null when unknown). A `none` row is the suspect itself:
// verdict "reference".
Verdict record_verdict(const RunRecord& row, const RunRecord* suspect);
std::string results_csv(const nlohmann::json& doc);
std::string results_markdown(const nlohmann::json& doc);
// The mean ± sample standard deviation of CACC, ASR, ASR floor, RA, DER and detection
// precision over rows that differ only in their seed; "" when every row has one seed.
// results_markdown includes it.
std::string seed_summary_markdown(const nlohmann::json& doc);
// One self-contained page (inline SVG and CSS, no scripts or fetched resources).
std::string render_html_report(const nlohmann::json& doc);
// The page `antidote identify` writes: the summary, the warning, the score histogram
// (where the ground truth is known) and the flagged rows, from identification.json.
std::string render_identification_html(const nlohmann::json& identification);
// "76.2 ± 0.9": the mean and the sample standard deviation (n − 1) of fractions, in
// percent; one value prints alone; "–" for none.
std::string mean_sd_percent(const std::vector<double>& fractions);
double mean_of(const std::vector<double>& values);  // of a non-empty vector
// j[key] where j is an object holding key, else null: a reader's safe access to
// documents that may come from an older version or a damaged file.
const nlohmann::json& field(const nlohmann::json& j, const std::string& key);
// "12.3" for 0.123; "–" for null (an unknown value).
std::string percent(const nlohmann::json& fraction);
std::string percent(double fraction);
std::string percent(const std::optional<double>& fraction);

}  // namespace antidote
