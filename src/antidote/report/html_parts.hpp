// The pieces of report.html shared by its three files (html.cpp: the page; charts.cpp:
// SVG charts and PNG thumbnails; sections.cpp: cells, verdicts and sections).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "antidote/metrics/verdict.hpp"
#include "antidote/report/record.hpp"
#include "antidote/report/results.hpp"

namespace antidote::html {

using nlohmann::json;

// ---- text (html.cpp)
// HTML-escaped text; "://" is written as "&#58;//" so that no URL in user text reads
// as a reference in the page source.
std::string esc(const std::string& s);
// A field as text: strings as they are, numbers dumped, anything else `def`.
std::string text(const json& obj, const char* key, const std::string& def = "");
bool has_num(const json& obj, const char* key);
double num(const json& obj, const char* key, double def = 0.0);
std::string pct(const json& obj, const char* key);  // percent(obj[key]), "–" when absent

// ---- cells and verdicts (sections.cpp)
// Rows of one experiment cell (same data, model, attack and seed), and its `none` row
// (the suspect itself) if any.
struct Cell {
  std::string dataset, model, attack, rate, target, seed;
  std::vector<const RunRecord*> rows;
  const RunRecord* none = nullptr;
  std::string title() const {
    return fmt::format("{} × {} ({}, {}% poisoned, target {}, seed {})", dataset, attack, model, rate, target, seed);
  }
  std::string slug() const { return dataset + "-" + attack + "-" + seed; }
  // The cell without its seed: what the over-seeds and clean-budget sections group by.
  std::string seedless_key() const {
    return dataset + '\x1f' + model + '\x1f' + attack + '\x1f' + rate + '\x1f' + target;
  }
};
std::vector<Cell> group_cells(const std::vector<RunRecord>& runs);

// ---- charts (charts.cpp)
struct Bar {
  std::string label;
  double value;     // fraction, 0..1
  std::string cls;  // success, fail, reference, unknown
};
// The fractions a chart's value axis spans.
struct Axis {
  double lo = 0, hi = 1;
};
// An axis that shows what decides a verdict: from a little under the lowest of `values`
// and `mark` to a little over the highest, in whole 5-point steps.
Axis decision_axis(const std::vector<double>& values, double mark);
// Vertical bars of a fraction on `axis`, with dashed reference lines and the band of
// values that pass (`pass`) shaded.
std::string bar_chart(const std::string& kind, const std::string& title, const std::vector<Bar>& bars,
                      const std::vector<std::pair<double, std::string>>& lines, const std::string& cell_slug,
                      const Axis& axis = {}, const std::optional<Axis>& pass = std::nullopt);
struct Series {
  std::string name, color;
  std::vector<std::pair<double, double>> points;  // (x, fraction)
};
// Lines over epochs (y: the fractions of `axis`, 0..100 % by default); with
// `xtick_labels`, x runs over 0, 1, ... and the ticks read as these labels.
std::string line_chart(const std::string& kind, const std::string& title, const std::vector<Series>& series,
                       const std::string& xlabel, const std::string& cell_slug,
                       const std::vector<std::string>& xtick_labels = {}, const Axis& axis = {});
// Scores of poisoned and clean rows, from an identification's histogram.
std::string histogram_chart(const json& id, const std::string& title, const std::string& cell_slug);
// Seconds per stage of each defense of a cell, stacked.
std::string cost_chart(const Cell& cell, const std::vector<std::string>& stage_names);
// A data:image/png URI of an image {shape, pixels}; "" when it is not one.
std::string image_data_uri(const json& img, int* w_out, int* h_out);

// ---- sections (sections.cpp)
std::string summary_section(const std::vector<Cell>& cells);
std::string results_section(const std::vector<Cell>& cells);
std::string seeds_section(const std::vector<Cell>& cells);  // "" unless some cell has several seeds
// CACC, ASR and RA against the clean budget, mean over seeds, for the defenses run at
// several budgets ("" when none is).
std::string budget_section(const std::vector<Cell>& cells);
std::string charts_section(const std::vector<Cell>& cells);
// The sections the defenses declare (RunRecord::section), in order of first appearance.
std::vector<ReportSection> declared_sections(const std::vector<Cell>& cells);
// One declared section, laid out as it asks, with every row that declared it.
std::string defense_section(const ReportSection& section, const std::vector<Cell>& cells);
// The curves and score histograms of the rows that declare no section of their own.
std::string other_trajectories_section(const std::vector<Cell>& cells);
// The suspect's CACC, ASR and RA after each training epoch ("" when no row records them).
std::string training_section(const std::vector<Cell>& cells);
// The clean test rows' confusion of the suspect and of each purified model ("" when no
// row records one).
std::string confusion_section(const std::vector<Cell>& cells);
std::string examples_section(const json& doc);
std::string cost_section(const std::vector<Cell>& cells);
std::string provenance_section(const json& doc);

}  // namespace antidote::html
