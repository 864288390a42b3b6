// report.html: one self-contained page, inline CSS and SVG only.
// No <script>, no fonts, images or style sheets fetched: thumbnails are PNG data URIs
// encoded here with zlib, charts are inline SVG drawn here. A person reads it offline.
//
// Sections (each a <section id=...>): summary, results, charts (ASR and CACC bars per
// dataset × attack), bedkd (AKD trajectory, identification histogram), trajectories (other
// defenses that logged one), ntml (stage table, checks, verdict), examples (what the
// attacks look like), cost (seconds and peak memory per stage) and provenance (config,
// seeds, version). Every chart is <svg class="chart" data-chart="KIND">.
//
// The page is three files: html.cpp (the page, its style and the text helpers),
// charts.cpp (SVG charts and PNG thumbnails) and sections.cpp (the cells, their
// verdicts from metrics/verdict.hpp, and each section); html_parts.hpp joins them.
#include <fmt/format.h>

#include <string>

#include "antidote/report/html_parts.hpp"

namespace antidote {
namespace html {

// ---------------------------------------------------------------- text helpers

// HTML-escapes `s`. "://" is written as "&#58;//" so that no URL in user text (a config
// path, a news sentence) reads as a reference in the page source; it renders the same.
std::string esc(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    switch (c) {
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '&': o += "&amp;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      case ':':
        if (s.compare(i + 1, 2, "//") == 0) o += "&#58;";
        else o += c;
        break;
      default: o += c;
    }
  }
  return o;
}

// A field as text: strings as they are, numbers dumped, anything else `def`.
std::string text(const json& obj, const char* key, const std::string& def) {
  if (!obj.is_object() || !obj.contains(key)) return def;
  const auto& v = obj[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return def;
  return v.dump();
}

bool has_num(const json& obj, const char* key) {
  return obj.is_object() && obj.contains(key) && obj[key].is_number();
}

double num(const json& obj, const char* key, double def) { return has_num(obj, key) ? obj[key].get<double>() : def; }

std::string pct(const json& obj, const char* key) {
  return obj.is_object() && obj.contains(key) ? percent(obj[key]) : "–";
}

}  // namespace html

namespace {

// ---------------------------------------------------------------- page

const char* kStyle = R"css(
:root{color-scheme:light}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#222;background:#fff;line-height:1.4}
header{background:#1f3b57;color:#fff;padding:1em 2em}
header h1{margin:0 0 .2em 0;font-size:1.6em}
header p{margin:0;opacity:.9}
nav{background:#eef2f6;padding:.5em 2em;border-bottom:1px solid #d5dde6}
nav a{margin-right:1.2em;color:#1f3b57;text-decoration:none}
main{padding:0 2em 2em 2em;max-width:1400px}
section{margin-top:1.6em}
h2{border-bottom:2px solid #1f3b57;padding-bottom:.15em;font-size:1.3em}
h3{font-size:1.05em;margin:1.1em 0 .4em 0}
table{border-collapse:collapse;margin:.4em 0;font-size:.9em}
.scroll{overflow-x:auto;max-width:100%}
td,th{border:1px solid #cfd6dd;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#eef2f6;white-space:normal;vertical-align:bottom}
td.l,th.l{text-align:left}
tr.success td{background:#e3f4e6}
tr.fail td{background:#fbe4e4}
tr.reference td{background:#f2f2f2;font-style:italic}
tr.unknown td{background:#fff8e1}
td.ok{color:#17692b;font-weight:600}
td.bad{color:#a4161a;font-weight:600}
span.badge{display:inline-block;padding:0 .5em;border-radius:.6em;font-size:.85em;font-style:normal}
span.badge.success{background:#2e7d32;color:#fff}
span.badge.fail{background:#c62828;color:#fff}
span.badge.reference{background:#757575;color:#fff}
span.badge.unknown{background:#f9a825;color:#222}
span.badge.repaired{background:#e8f5e9;color:#1b5e20;border:1px solid #2e7d32}
span.badge.unrepaired{background:#fff3e0;color:#8a4b00;border:1px solid #b45309}
.legendline{font-size:.88em;color:#555}
.charts{display:flex;flex-wrap:wrap;gap:1em}
svg.chart{background:#fcfcfd;border:1px solid #e1e5ea;font-size:11px}
svg.chart .title{font-size:12px;font-weight:600;fill:#222}
svg.chart .tick,svg.chart .label,svg.chart .legend,svg.chart .reflabel{fill:#444}
svg.chart .value{fill:#222;font-size:10px}
svg.chart .grid{stroke:#e4e7eb;stroke-width:1}
svg.chart .axis{stroke:#555;stroke-width:1}
svg.chart .ref{stroke:#333;stroke-dasharray:5 3;stroke-width:1}
svg.chart .reflabel{font-size:10px}
svg.chart .bar.success{fill:#43a047}
svg.chart .bar.fail{fill:#e53935}
svg.chart .bar.reference{fill:#9e9e9e}
svg.chart .bar.unknown{fill:#fbc02d}
svg.chart .series{stroke-width:2}
svg.chart .hist.poisoned{fill:#e53935}
svg.chart .hist.clean{fill:#1e88e5}
.verdict{border-left:4px solid #1f3b57;background:#eef2f6;padding:.5em 1em;margin:.5em 0}
.examples{display:flex;flex-wrap:wrap;gap:1em}
figure.pair{margin:0;border:1px solid #e1e5ea;padding:.4em;background:#fcfcfd;display:flex;gap:.4em}
figure.pair div{text-align:center;font-size:.8em;color:#555}
img.thumb{image-rendering:pixelated;image-rendering:crisp-edges;display:block;border:1px solid #ccc;background:#000}
ol.sentences li{margin-bottom:.5em}
.clean{color:#555}
mark{background:#ffd54f;padding:0 .15em;border-radius:2px}
pre{background:#f6f8fa;border:1px solid #e1e5ea;padding:.8em;overflow:auto;font-size:.85em}
footer{color:#777;font-size:.85em;padding:1em 2em;border-top:1px solid #e1e5ea}
td.more,span.more{color:#b45309;font-weight:600}
.note,.notice{border-left:4px solid #f9a825;background:#fff8e1;padding:.4em 1em;margin:.5em 0}
.notice.warning{border-color:#c62828;background:#fbe4e4}
ul.verdicts{list-style:none;padding-left:0;margin:.3em 0}
ul.verdicts li{margin:.25em 0;overflow-wrap:anywhere}
span.budget{color:#666;font-size:.9em}
svg.chart{max-width:100%;height:auto}
svg.chart .value{paint-order:stroke;stroke:#fcfcfd;stroke-width:3px;stroke-linejoin:round}
svg.chart .pass{fill:#43a047;fill-opacity:.10}
svg.chart .threshold{stroke:#333;stroke-dasharray:4 3;stroke-width:1.5}
table.ntml-checks td.l{white-space:normal;max-width:40em}
table.confusion{font-size:.75em}
table.confusion caption{font-weight:600;text-align:left}
table.confusion td,table.confusion th{padding:1px 4px}
@media (max-width:900px){main{padding:0 .8em 1em .8em}header,nav{padding-left:.8em;padding-right:.8em}}
@media print{nav{display:none}section{break-inside:avoid-page}.scroll{overflow:visible}}
)css";

}  // namespace

using namespace html;

namespace {
// What a reader must know before the numbers: a bench still running (the page is
// rewritten after every cell), and the warnings of the run that wrote it.
std::string notices(const json& doc, size_t nruns) {
  std::string h;
  if (doc.contains("complete") && doc["complete"] == false)
    h += fmt::format(
        "<p class=\"notice progress\"><b>In progress:</b> {} of {} cells finished. The page is rewritten after "
        "every cell; the verdicts below are of the finished ones.</p>",
        nruns, text(doc, "cells_total", "?"));
  if (doc.contains("warnings") && doc["warnings"].is_array())
    for (const auto& w : doc["warnings"])
      if (w.is_string())
        h += "<p class=\"notice warning\"><b>Warning:</b> " + esc(w.get<std::string>()) +
             "; purification may have failed.</p>";
  return h;
}
}  // namespace

std::string render_identification_html(const json& id) {
  std::string h = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                  "<title>antidote identification</title><style>";
  h += kStyle;
  h += "#flagged td.l{white-space:normal;overflow-wrap:anywhere}</style></head><body>";
  h += fmt::format("<header><h1>antidote identification</h1><p>method {} · {} training rows</p></header><main>",
                   esc(text(id, "method", "?")), esc(text(id, "rows", "?")));
  h += "<section id=\"summary\"><h2>In brief</h2><table class=\"provenance\"><tbody>";
  auto row = [&](const std::string& k, const std::string& v) {
    h += "<tr><th class=\"l\">" + esc(k) + "</th><td class=\"l\">" + esc(v) + "</td></tr>";
  };
  row("inferred target label", text(id, "target", "–"));
  row("rows flagged", id.contains("flagged") && id["flagged"].is_array() ? std::to_string(id["flagged"].size()) : "0");
  row("confidence (share of the most suspect rows with the target label)", pct(id, "confidence") + " %");
  if (id.contains("detection") && id["detection"].is_object())
    row("against the ground truth", fmt::format("precision {} %, recall {} % of {} poisoned rows",
                                                pct(id["detection"], "precision"), pct(id["detection"], "recall"),
                                                text(id["detection"], "poisoned", "?")));
  double seconds = 0;
  if (id.contains("stages") && id["stages"].is_array())
    for (const auto& s : id["stages"]) seconds += num(s, "seconds");
  row("seconds", fmt::format("{:.1f}", seconds));
  h += "</tbody></table>";
  if (id.contains("warning") && id["warning"].is_string())
    h += "<p class=\"legendline\"><strong>Identification is unsure:</strong> " + esc(id["warning"].get<std::string>()) +
         ".</p>";
  h += "</section>";
  if (id.contains("histogram") && id["histogram"].is_object())
    h += "<section id=\"scores\"><h2>Scores</h2><div class=\"charts\">" +
         histogram_chart(id["histogram"], "identification scores", "identify") + "</div></section>";
  h += "<section id=\"flagged\"><h2>Flagged rows</h2><table><thead><tr><th>rank</th><th>row</th><th>label</th>"
       "<th>score</th><th class=\"l\">text</th></tr></thead><tbody>";
  if (id.contains("flagged") && id["flagged"].is_array())
    for (const auto& r : id["flagged"])
      h += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.4g}</td><td class=\"l\">{}</td></tr>",
                       text(r, "rank"), text(r, "row"), text(r, "label"), num(r, "score"), esc(text(r, "text")));
  h += "</tbody></table></section></main><footer id=\"end\">Written by antidote. Self-contained: inline CSS and "
       "SVG, no scripts, nothing fetched.</footer></body></html>\n";
  return h;
}

std::string render_html_report(const json& doc) {
  const auto runs = run_records(doc);
  const auto cells = group_cells(runs);
  const auto seeds = seeds_section(cells);    // "" unless some cell has several seeds
  const auto budget = budget_section(cells);  // "" unless a defense ran at several budgets
  const auto sections = declared_sections(cells);
  const size_t nruns = runs.size();
  std::string h = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                  "<title>antidote report</title><style>";
  h += kStyle;
  h += "</style></head><body>";
  h += fmt::format(
      "<header><h1>antidote report</h1><p>{} run(s) in {} cell(s) · antidote {} · threads {} · device {}</p></header>",
      nruns, cells.size(), esc(text(doc, "version", "?")), esc(text(doc, "threads", "?")),
      esc(text(doc, "device", "cpu")));
  const auto confusion = confusion_section(cells);  // "" when no row records one
  const auto training = training_section(cells);    // "" when no row records a curve
  h += "<nav><a href=\"#summary\">in brief</a><a href=\"#results\">results</a>";
  if (!seeds.empty()) h += "<a href=\"#seeds\">over seeds</a>";
  h += "<a href=\"#charts\">charts</a>";
  if (!budget.empty()) h += "<a href=\"#budget\">clean budget</a>";
  if (!training.empty()) h += "<a href=\"#training\">training</a>";
  for (const auto& s : sections) h += fmt::format("<a href=\"#{}\">{}</a>", esc(s.id), esc(s.title));
  if (!confusion.empty()) h += "<a href=\"#confusion\">per class</a>";
  h += "<a href=\"#examples\">attacks</a><a href=\"#cost\">cost</a><a href=\"#provenance\">config</a></nav><main>";
  h += notices(doc, nruns);
  h += summary_section(cells);
  h += results_section(cells);
  h += seeds;
  h += charts_section(cells);
  h += budget;
  h += training;
  for (const auto& s : sections) h += defense_section(s, cells);
  h += other_trajectories_section(cells);
  h += confusion;
  h += examples_section(doc);
  h += cost_section(cells);
  h += provenance_section(doc);
  h += "</main><footer id=\"end\">Written by antidote " + esc(text(doc, "version", "?")) +
       ". Self-contained: inline CSS and SVG, no scripts, nothing fetched.</footer></body></html>\n";
  return h;
}

}  // namespace antidote
