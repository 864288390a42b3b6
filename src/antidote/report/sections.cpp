// report.html's sections: the results grouped into cells, each row's verdict (the rule
// of metrics/verdict.hpp) and every section of the page.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "antidote/report/html_parts.hpp"

namespace antidote::html {
namespace {

// ---------------------------------------------------------------- text examples

std::vector<std::string> split_ws(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (!cur.empty()) out.push_back(cur), cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

// The triggered sentence with every token that the clean one lacks (counted as a multiset) in <mark>.
std::string mark_trigger(const std::string& clean, const std::string& triggered) {
  auto toks = split_ws(triggered);
  if (clean.empty()) {
    std::string o;
    for (size_t i = 0; i < toks.size(); ++i) o += (i ? " " : "") + esc(toks[i]);
    return o;
  }
  std::map<std::string, int> have;
  for (const auto& t : split_ws(clean)) have[t]++;
  std::string o;
  for (size_t i = 0; i < toks.size(); ++i) {
    if (i) o += ' ';
    auto it = have.find(toks[i]);
    if (it != have.end() && it->second > 0) {
      it->second--;
      o += esc(toks[i]);
    } else {
      o += "<mark>" + esc(toks[i]) + "</mark>";
    }
  }
  return o;
}

}  // namespace

// ---------------------------------------------------------------- verdicts

struct Judgement {
  std::string verdict;                // reference, success, fail, unknown
  std::string asr_class, cacc_class;  // ok, bad or ""
  std::string repair;                 // repaired, not repaired or ""
  std::string why;                    // the verdict's reason, then the repair's
};

std::vector<Cell> group_cells(const std::vector<RunRecord>& runs) {
  std::vector<Cell> cells;
  std::map<std::string, size_t> index;
  for (const auto& r : runs) {
    Cell c{r.dataset, r.model, r.attack, percent(r.poison_rate), std::to_string(r.target), std::to_string(r.seed),
           {},        nullptr};
    std::string key =
        c.seedless_key() + '\x1f' + c.seed;
    auto it = index.find(key);
    if (it == index.end()) {
      index[key] = cells.size();
      cells.push_back(c);
      it = index.find(key);
    }
    Cell& cell = cells[it->second];
    cell.rows.push_back(&r);
    if (r.defense == "none" && !cell.none) cell.none = &r;
  }
  return cells;
}

double asr_bar(const RunRecord& row) { return asr_limit(row.asr_floor.value_or(-1.0)); }

// The verdict of a results row (record_verdict) with the classes its cells are shown in.
Judgement judge(const RunRecord& row, const RunRecord* none) {
  Judgement j;
  const Verdict v = record_verdict(row, none);
  j.verdict = v.verdict;
  j.repair = v.repair;
  j.why = v.repair.empty() ? v.why : fmt::format("{}; {}: {}", v.why, v.repair, v.repair_why);
  if (v.verdict == "reference") return j;
  if (row.asr) j.asr_class = v.asr_ok ? "ok" : "bad";
  if (v.cacc_known) j.cacc_class = v.cacc_ok ? "ok" : "bad";
  return j;
}

const char* verdict_label(const std::string& v) { return v == "reference" ? "suspect" : verdict_word(v); }

// The verdict's badge, and the repair's beside it where one was judged.
std::string verdict_badges(const Judgement& j) {
  std::string h = fmt::format("<span class=\"badge {}\">{}</span>", j.verdict, verdict_label(j.verdict));
  if (!j.repair.empty())
    h += fmt::format(" <span class=\"badge {}\">{}</span>", j.repair == "repaired" ? "repaired" : "unrepaired",
                     j.repair);
  return h;
}

// A run's name in its cell: the defense, and its clean budget where the cell runs the
// same defense at several budgets ("ft @4000").
std::string run_label(const RunRecord& r, const Cell& c) {
  for (const RunRecord* o : c.rows)
    if (o->defense == r.defense && o->clean_samples != r.clean_samples)
      return fmt::format("{} @{}", r.defense, r.clean_samples);
  return r.defense;
}

std::string results_section(const std::vector<Cell>& cells) {
  std::string h = "<section id=\"results\"><h2>Results</h2>";
  h +=
      "<p class=\"legendline\">A defense <span class=\"badge success\">removed</span> the backdoor when its ASR ≤ "
      "max(5%, ASR floor + 3 points) and its CACC is at most 2 points below the suspect's (the <code>none</code> row); "
      "otherwise it <span class=\"badge fail\">failed</span>; when the suspect's ASR is under 50% it never learned "
      "the backdoor and the verdict is <span class=\"badge unknown\">unclear</span>. A removal is also a full "
      "<span class=\"badge repaired\">repaired</span> when the RA is within 10 points of the CACC (triggered inputs "
      "back at their true labels), else <span class=\"badge unrepaired\">not repaired</span> (they only left the "
      "target). The ASR floor is the clean "
      "reference model's ASR on the "
      "same triggered inputs. RA: robust accuracy (true labels on triggered inputs). DER: defense effectiveness "
      "rating.</p>";
  if (cells.empty()) return h + "<p>No finished runs yet.</p></section>";
  h += "<div class=\"scroll\"><table class=\"results\"><thead><tr><th class=\"l\">dataset</th><th "
       "class=\"l\">attack</th><th>rate %</th><th>seed</th><th "
       "class=\"l\">defense</th><th>clean<br>samples</th><th>CACC %</th><th>ΔCACC</th><th>ASR %</th><th>ASR floor "
       "%</th><th>RA %</th><th>PCC %</th>"
       "<th>DER</th><th>detection<br>P/R/F1 % (flagged)</th><th>seconds</th><th "
       "class=\"l\">verdict</th></tr></thead><tbody>";
  for (const auto& c : cells) {
    // The smallest clean budget of the cell's defenses: a larger one is marked.
    int64_t least = -1;
    for (const RunRecord* r : c.rows)
      if (r != c.none && (least < 0 || r->clean_samples < least)) least = r->clean_samples;
    for (const RunRecord* rp : c.rows) {
      const RunRecord& r = *rp;
      auto j = judge(r, c.none);
      const bool more_clean = rp != c.none && r.clean_samples > least;
      // The purified model's file, beside the report under models/.
      const std::string label = esc(run_label(r, c));
      const std::string defense =
          r.model_file.empty()
              ? label
              : fmt::format("<a href=\"models/{}\" title=\"the purified model\">{}</a>", esc(r.model_file), label);
      std::string dcacc = "–";
      if (c.none && rp != c.none) dcacc = fmt::format("{:+.1f}", 100 * (r.cacc - c.none->cacc));
      std::string det = "–";
      if (const auto& d = r.detection)
        det = fmt::format("{}/{}/{} ({})", percent(d->precision), percent(d->recall), percent(d->f1), d->flagged);
      h += fmt::format(
          "<tr class=\"run {v}\" data-defense=\"{def}\" data-cell=\"{cell}\" data-verdict=\"{v}\" title=\"{why}\">"
          "<td class=\"l\">{ds}</td><td class=\"l\">{atk}</td><td>{rate}</td><td>{seed}</td><td "
          "class=\"l\">{link}</td><td class=\"{csc}\">{cs}</td><td class=\"{cc}\">{cacc}</td><td "
          "class=\"{cc}\">{dc}</td>"
          "<td class=\"{ac}\">{asr}</td><td>{floor}</td><td>{ra}</td><td>{pcc}</td><td>{der}</td><td>{det}</td>"
          "<td>{sec}</td><td class=\"l\">{vl}</td></tr>",
          fmt::arg("v", j.verdict), fmt::arg("def", esc(r.defense)), fmt::arg("cell", esc(c.slug())),
          fmt::arg("why", esc(j.why)), fmt::arg("ds", esc(c.dataset)), fmt::arg("atk", esc(c.attack)),
          fmt::arg("rate", esc(c.rate)), fmt::arg("seed", esc(c.seed)), fmt::arg("link", defense),
          fmt::arg("csc", more_clean ? "more" : ""), fmt::arg("cs", r.clean_samples), fmt::arg("cc", j.cacc_class),
          fmt::arg("cacc", percent(r.cacc)), fmt::arg("dc", dcacc), fmt::arg("ac", j.asr_class),
          fmt::arg("asr", percent(r.asr)), fmt::arg("floor", percent(r.asr_floor)), fmt::arg("ra", percent(r.ra)),
          fmt::arg("pcc", percent(r.pcc)), fmt::arg("der", r.der ? fmt::format("{:.3f}", *r.der) : "–"),
          fmt::arg("det", esc(det)), fmt::arg("sec", fmt::format("{:.1f}", r.seconds)),
          fmt::arg("vl", verdict_badges(j)));
    }
  }
  h += "</tbody></table></div><p class=\"legendline\">Each verdict's reason, and the model and trigger target of "
       "each cell: <a href=\"#summary\">in brief</a>. A clean budget in <span class=\"more\">orange</span> is larger "
       "than another defense's of the same cell. A defense's name links to its purified model.</p></section>";
  return h;
}

// With several seeds: each defense's mean ± sd over the seeds of a cell, at each of its
// clean budgets, and on how many seeds it removed the backdoor and repaired the model.
std::string seeds_section(const std::vector<Cell>& cells) {
  struct Line {
    Line(std::string d, int64_t b) : defense(std::move(d)), budget(b) {}
    std::string defense;
    int64_t budget = 0;
    std::vector<double> cacc, asr, ra;
    int removed = 0, repaired = 0, judged = 0, seeds = 0;
  };
  struct Group {
    const Cell* first;
    int seeds = 0;
    std::vector<Line> lines;
  };
  std::vector<std::pair<std::string, Group>> groups;
  for (const auto& c : cells) {
    const std::string key = c.seedless_key();
    auto g = std::find_if(groups.begin(), groups.end(), [&](const auto& kv) { return kv.first == key; });
    if (g == groups.end()) g = groups.insert(groups.end(), {key, Group{&c, 0, {}}});
    ++g->second.seeds;
    for (const RunRecord* r : c.rows) {
      auto& lines = g->second.lines;
      const int64_t budget = r == c.none ? 0 : r->clean_samples;
      auto l = std::find_if(lines.begin(), lines.end(),
                            [&](const Line& x) { return x.defense == r->defense && x.budget == budget; });
      if (l == lines.end()) l = lines.insert(lines.end(), Line(r->defense, budget));
      ++l->seeds;
      l->cacc.push_back(r->cacc);
      if (r->asr) l->asr.push_back(*r->asr);
      if (r->ra) l->ra.push_back(*r->ra);
      const auto j = judge(*r, c.none);
      l->judged += j.verdict == "success" || j.verdict == "fail";
      l->removed += j.verdict == "success";
      l->repaired += j.repair == "repaired";
    }
  }
  if (std::none_of(groups.begin(), groups.end(), [](const auto& kv) { return kv.second.seeds > 1; })) return "";
  std::string h =
      "<section id=\"seeds\"><h2>Over seeds</h2><p class=\"legendline\">Mean ± sample standard deviation over the "
      "seeds of each cell, and on how many of them the defense removed the backdoor and repaired the model (the "
      "verdicts of the results table).</p><div class=\"scroll\"><table class=\"results\"><thead><tr><th "
      "class=\"l\">dataset</th><th class=\"l\">attack</th><th class=\"l\">defense</th><th>clean<br>samples</th>"
      "<th>seeds</th><th>CACC %</th><th>ASR %</th><th>RA %</th><th>removed</th><th>repaired</th></tr></thead><tbody>";
  auto count = [](int n, int of) { return of ? fmt::format("{} of {}", n, of) : std::string("–"); };
  for (const auto& [key, g] : groups)
    for (const auto& l : g.lines)
      h += fmt::format(
          "<tr data-defense=\"{def}\"><td class=\"l\">{ds}</td><td class=\"l\">{atk}</td><td class=\"l\">{def}</td>"
          "<td>{cs}</td><td>{n}</td><td>{cacc}</td><td>{asr}</td><td>{ra}</td><td>{removed}</td><td>{repaired}</td>"
          "</tr>",
          fmt::arg("def", esc(l.defense)), fmt::arg("ds", esc(g.first->dataset)), fmt::arg("atk", esc(g.first->attack)),
          fmt::arg("cs", l.budget ? std::to_string(l.budget) : "–"), fmt::arg("n", l.seeds),
          fmt::arg("cacc", mean_sd_percent(l.cacc)), fmt::arg("asr", mean_sd_percent(l.asr)),
          fmt::arg("ra", mean_sd_percent(l.ra)), fmt::arg("removed", count(l.removed, l.judged)),
          fmt::arg("repaired", count(l.repaired, l.judged)));
  return h + "</tbody></table></div></section>";
}

// The clean-budget curves: for each dataset × attack, the mean over seeds of CACC, ASR
// and RA of every defense run at two or more budgets, against the budget.
std::string budget_section(const std::vector<Cell>& cells) {
  // key: dataset × model × attack × rate × target; defense -> budget -> runs.
  std::vector<std::pair<std::string, std::map<std::string, std::map<int64_t, std::vector<const RunRecord*>>>>> groups;
  std::map<std::string, const Cell*> first;
  std::map<std::string, std::vector<double>> suspect_cacc;
  for (const auto& c : cells) {
    const std::string key = c.seedless_key();
    auto g = std::find_if(groups.begin(), groups.end(), [&](const auto& kv) { return kv.first == key; });
    if (g == groups.end()) g = groups.insert(groups.end(), {key, {}}), first[key] = &c;
    for (const RunRecord* r : c.rows)
      if (r != c.none) g->second[r->defense][r->clean_samples].push_back(r);
    if (c.none) suspect_cacc[key].push_back(c.none->cacc);
  }
  static const char* kColors[] = {"#1e88e5", "#e53935", "#43a047", "#8e24aa", "#fb8c00", "#00897b", "#6d4c41"};
  std::string body;
  for (const auto& [key, by_defense] : groups) {
    std::set<int64_t> budgets;
    for (const auto& [def, runs] : by_defense)
      if (runs.size() > 1)
        for (const auto& kv : runs) budgets.insert(kv.first);
    if (budgets.empty()) continue;
    const std::vector<int64_t> xs(budgets.begin(), budgets.end());
    std::vector<std::string> ticks;
    for (auto b : xs) ticks.push_back(std::to_string(b));
    std::vector<Series> metric[3];  // CACC, ASR, RA
    size_t color = 0;
    for (const auto& [def, runs] : by_defense) {
      if (runs.size() < 2) continue;
      const char* col = kColors[color++ % 7];
      for (int m = 0; m < 3; ++m) metric[m].push_back({def, col, {}});
      for (size_t i = 0; i < xs.size(); ++i) {
        auto it = runs.find(xs[i]);
        if (it == runs.end()) continue;
        std::vector<double> v[3];
        for (const RunRecord* r : it->second) {
          v[0].push_back(r->cacc);
          if (r->asr) v[1].push_back(*r->asr);
          if (r->ra) v[2].push_back(*r->ra);
        }
        for (int m = 0; m < 3; ++m)
          if (!v[m].empty()) metric[m].back().points.push_back({static_cast<double>(i), mean_of(v[m])});
      }
    }
    const Cell& c = *first.at(key);
    const std::string slug = c.dataset + "-" + c.attack + "-budget";
    body += fmt::format("<h3>{} × {} ({}, {}% poisoned, target {})</h3><div class=\"charts\">", esc(c.dataset),
                        esc(c.attack), esc(c.model), esc(c.rate), esc(c.target));
    const char* titles[] = {"CACC % (higher is better)", "ASR % (lower is better)", "RA % (higher is better)"};
    const char* kinds[] = {"budget-cacc", "budget-asr", "budget-ra"};
    // CACC on the scale of its pass line (the suspects' mean − 2 points), as in the bar charts.
    std::vector<double> caccs;
    for (const auto& se : metric[0])
      for (const auto& p : se.points) caccs.push_back(p.second);
    const auto& sc = suspect_cacc[key];
    const Axis cacc_axis =
        caccs.empty() ? Axis{} : decision_axis(caccs, sc.empty() ? caccs.front() : mean_of(sc) - kMaxCaccDrop);
    for (int m = 0; m < 3; ++m)
      body += line_chart(kinds[m], titles[m], metric[m], "clean rows", slug, ticks, m == 0 ? cacc_axis : Axis{});
    body += "</div>";
  }
  if (body.empty()) return "";
  return "<section id=\"budget\"><h2>Clean budget</h2><p class=\"legendline\">Each defense run at several clean "
         "budgets: CACC, ASR and RA against the number of clean rows it was given, the mean over the seeds of each "
         "point. The curve to choose a budget from: the fewest rows at which the ASR is down and the CACC and RA "
         "are where you need them.</p>" +
         body + "</section>";
}

namespace {
// The clean budgets of a cell's defenses, when they differ ("" when they agree): the
// comparison between defenses is then partly one of clean data.
std::string budget_note(const Cell& c) {
  std::map<int64_t, std::vector<std::string>> by_budget;
  for (const RunRecord* r : c.rows)
    if (r != c.none) by_budget[r->clean_samples].push_back(r->defense);
  if (by_budget.size() < 2) return "";
  std::string parts;
  for (const auto& [rows, defenses] : by_budget) {
    std::string names;
    for (const auto& d : defenses) names += (names.empty() ? "" : ", ") + esc(d);
    parts += fmt::format("{}{} {} rows", parts.empty() ? "" : "; ", names, rows);
  }
  return "<p class=\"note\"><b>Unequal clean budgets:</b> " + parts +
         ". A defense with more clean rows has an advantage the others lack.</p>";
}
}  // namespace

std::string summary_section(const std::vector<Cell>& cells) {
  std::string h = "<section id=\"summary\"><h2>In brief</h2>";
  if (cells.empty()) return h + "<p>No finished runs yet.</p></section>";
  for (const auto& c : cells) {
    h += "<h3>" + esc(c.title()) + "</h3>";
    if (c.none)
      h += fmt::format("<p>The suspect model: CACC {}%, ASR {}% (ASR floor {}%).</p>", percent(c.none->cacc),
                       percent(c.none->asr), percent(c.none->asr_floor));
    h += "<ul class=\"verdicts\">";
    for (const RunRecord* r : c.rows) {
      if (r == c.none) continue;
      const auto j = judge(*r, c.none);
      h += fmt::format(
          "<li data-summary=\"{0}\">{1} <b>{0}</b>: {2} <span class=\"budget\">({3} clean rows)</span></li>",
          esc(run_label(*r, c)), verdict_badges(j),
          esc(j.why) + (field(r->details, "control_beats_ntml") == true
                            ? "; <b>its control (the same without its first stage) did at least as well</b>"
                            : ""),
          r->clean_samples);
    }
    h += "</ul>" + budget_note(c);
  }
  return h + "</section>";
}

std::string charts_section(const std::vector<Cell>& cells) {
  std::string h = "<section id=\"charts\"><h2>ASR and CACC per defense</h2>";
  h += "<p class=\"legendline\">Green bars: removed the backdoor; red: failed; grey: the suspect model (no defense). "
       "The shaded band is what passes: ASR at most the limit, CACC at most 2 points below the suspect's. The CACC "
       "axis spans only the values shown, so that the 2-point margin can be seen.</p>";
  if (cells.empty()) h += "<p>No finished runs yet.</p>";
  for (const auto& c : cells) {
    std::vector<Bar> asr, cacc;
    std::vector<double> caccs;
    for (const RunRecord* r : c.rows) {
      auto j = judge(*r, c.none);
      if (r->asr) asr.push_back({run_label(*r, c), *r->asr, j.verdict});
      cacc.push_back({run_label(*r, c), r->cacc, j.verdict});
      caccs.push_back(r->cacc);
    }
    const RunRecord& first = c.none ? *c.none : *c.rows.front();
    const double limit = asr_bar(first);
    h += "<h3>" + esc(c.title()) + "</h3><div class=\"charts\">";
    if (!asr.empty())
      h += bar_chart("asr", "ASR % (lower is better)", asr, {{limit, fmt::format("pass ≤ {:.1f}%", 100 * limit)}},
                     c.slug(), Axis{}, Axis{0, limit});
    else
      h += "<p>ASR unknown: no triggered test rows.</p>";
    if (c.none) {
      const double bar = c.none->cacc - kMaxCaccDrop;
      const Axis axis = decision_axis(caccs, bar);
      h += bar_chart("cacc", "CACC % (higher is better)", cacc,
                     {{bar, fmt::format("pass ≥ suspect − 2 = {:.1f}%", 100 * bar)}}, c.slug(), axis,
                     Axis{bar, axis.hi});
    } else {
      h += bar_chart("cacc", "CACC % (higher is better)", cacc, {}, c.slug(), decision_axis(caccs, caccs.front()));
    }
    h += "</div>";
  }
  return h + "</section>";
}

std::vector<Series> trajectory_series(const json& traj, const RunRecord* none) {
  std::vector<Series> series{{"CACC", "#1e88e5", {}}, {"ASR", "#e53935", {}}, {"RA", "#43a047", {}}};
  const char* keys[] = {"cacc", "asr", "ra"};
  if (none) {  // epoch 0: the suspect model
    const std::optional<double> start[] = {none->cacc, none->asr, none->ra};
    for (int k = 0; k < 3; ++k)
      if (start[k]) series[k].points.push_back({0.0, *start[k]});
  }
  double e = 0;
  for (const auto& row : traj) {
    e = has_num(row, "epoch") ? num(row, "epoch") : e + 1;
    for (int k = 0; k < 3; ++k)
      if (has_num(row, keys[k])) series[k].points.push_back({e, num(row, keys[k])});
  }
  std::vector<Series> out;
  for (auto& s : series)
    if (s.points.size() > (none ? 1u : 0u)) out.push_back(std::move(s));
  return out;
}

namespace {
// The "distillation" layout: the student's curve over epochs, the identification
// scores and what the identification concluded.
std::string distillation_body(const ReportSection& section, const Cell& c, const RunRecord& r) {
  const json& d = r.details;
  std::string h = "<h3>" + esc(c.title()) + "</h3><div class=\"charts\">";
  std::vector<Series> series;
  if (d.contains("trajectory") && d["trajectory"].is_array()) series = trajectory_series(d["trajectory"], c.none);
  if (!series.empty())
    h += line_chart("trajectory", section.title + ": student over epochs", series, "epoch", c.slug());
  else
    h += "<p>No per-epoch trajectory recorded (no monitor set).</p>";
  if (!d.contains("identification") || !d["identification"].is_object())
    return h + "<p>No identification scores recorded.</p></div>";
  const auto& id = d["identification"];
  h += histogram_chart(id, section.title + ": identification scores", c.slug());
  h += "</div>";
  h += fmt::format("<p class=\"legendline\">AUROC {} (poisoned rows score lower); mean score poisoned {}, clean {}.",
                   has_num(id, "auroc") ? fmt::format("{:.3f}", num(id, "auroc")) : "–",
                   has_num(id, "poisoned_mean") ? fmt::format("{:.4g}", num(id, "poisoned_mean")) : "–",
                   has_num(id, "clean_mean") ? fmt::format("{:.4g}", num(id, "clean_mean")) : "–");
  if (r.detection)
    h += fmt::format(" Rows flagged: {} (precision {}%, recall {}%).", r.detection->flagged,
                     percent(r.detection->precision), percent(r.detection->recall));
  h += "</p>";
  if (d.contains("identify") && d["identify"].is_object()) {
    const auto& how = d["identify"];
    h += fmt::format("<p class=\"legendline\">Identification: {} (target label {}, confidence {}%).</p>",
                     esc(text(how, "method", "?")), text(how, "target", "?"), pct(how, "confidence"));
    if (how.contains("warning") && how["warning"].is_string())
      h += "<p class=\"legendline\"><strong>Identification is unsure:</strong> " +
           esc(how["warning"].get<std::string>()) + ". Purification may have failed.</p>";
  }
  return h;
}

// The "stages" layout: the models after each stage, the method's checks and its verdict.
std::string stages_body(const Cell& c, const RunRecord& r) {
  const json& d = r.details;
  std::string h = "<h3>" + esc(c.title()) + "</h3>";
  if (d.contains("stages") && d["stages"].is_array() && !d["stages"].empty()) {
    h += "<table class=\"ntml-stages\"><thead><tr><th class=\"l\">stage</th><th class=\"l\">model</th><th>CACC "
         "%</th><th>ASR %</th><th>RA %</th><th>PCC %</th></tr></thead><tbody>";
    for (const auto& s : d["stages"])
      h += fmt::format(
          "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
          esc(text(s, "stage")), esc(text(s, "model")), pct(s, "cacc"), pct(s, "asr"), pct(s, "ra"), pct(s, "pcc"));
    h += "</tbody></table>";
  } else {
    h += "<p>No stage table recorded (no monitor set).</p>";
  }
  if (d.contains("checks") && d["checks"].is_array() && !d["checks"].empty()) {
    h += "<table class=\"ntml-checks\"><thead><tr><th class=\"l\">check</th><th "
         "class=\"l\">result</th></tr></thead><tbody>";
    for (const auto& ch : d["checks"]) {
      const bool passed = field(ch, "passed") == true;
      const bool info = field(ch, "informational") == true;
      h += fmt::format("<tr class=\"{}\"><td class=\"l\">{}{}</td><td class=\"l\">{}</td></tr>",
                       passed ? "success" : (info ? "unknown" : "fail"), esc(text(ch, "check")),
                       info ? " (informational)" : "", passed ? "holds" : "does not hold");
    }
    h += "</tbody></table>";
  }
  if (d.contains("trajectory") && d["trajectory"].is_array()) {
    const auto series = trajectory_series(d["trajectory"], nullptr);
    if (!series.empty())
      h += "<div class=\"charts\">" +
           line_chart("trajectory", r.defense + ": the student while it learns on the clean set", series, "iteration",
                      c.slug()) +
           "</div>";
  }
  if (field(d, "control_beats_ntml") == true)
    h += "<p class=\"notice warning\"><b>The control beats the method here:</b> mutual learning without the "
         "non-target stage is at least as good on both CACC and ASR, so that stage did not help on this cell.</p>";
  if (d.contains("verdict") && d["verdict"].is_string())
    h += "<p class=\"verdict\"><b>The method's own checks</b> (not the verdict of the results table): " +
         esc(d["verdict"].get<std::string>()) + "</p>";
  if (d.contains("reading") && d["reading"].is_string())
    h += "<p class=\"legendline\">" + esc(d["reading"].get<std::string>()) + "</p>";
  return h;
}

}  // namespace

std::vector<ReportSection> declared_sections(const std::vector<Cell>& cells) {
  std::vector<ReportSection> out;
  for (const auto& c : cells)
    for (const RunRecord* r : c.rows)
      if (!r->section.empty() &&
          std::none_of(out.begin(), out.end(), [&](const ReportSection& s) { return s.id == r->section.id; }))
        out.push_back(r->section);
  return out;
}

std::string defense_section(const ReportSection& section, const std::vector<Cell>& cells) {
  std::string h = fmt::format("<section id=\"{}\"><h2>{}</h2>", esc(section.id), esc(section.title));
  if (!section.legend.empty()) h += "<p class=\"legendline\">" + esc(section.legend) + "</p>";
  for (const auto& c : cells)
    for (const RunRecord* r : c.rows) {
      if (r->section.id != section.id) continue;
      if (section.layout == "stages")
        h += stages_body(c, *r);
      else
        h += distillation_body(section, c, *r);
    }
  return h + "</section>";
}

namespace {
// One model's confusion on the clean test rows as a heat table: each row (a true class)
// shaded by the share of its rows predicted as each class.
std::string confusion_table(const RunRecord& r) {
  const auto& m = r.confusion;
  std::string h = fmt::format(
      "<table class=\"confusion\" data-defense=\"{}\"><caption>{}</caption><thead><tr><th>true "
      "\\ predicted</th>",
      esc(r.defense), esc(r.defense == "none" ? "suspect" : r.defense));
  for (size_t p = 0; p < m.size(); ++p) h += fmt::format("<th>{}</th>", p);
  h += "</tr></thead><tbody>";
  for (size_t t = 0; t < m.size(); ++t) {
    int64_t total = 0;
    for (int64_t c : m[t]) total += c;
    h += fmt::format("<tr><th>{}</th>", t);
    for (size_t p = 0; p < m[t].size(); ++p) {
      const double share = total > 0 ? static_cast<double>(m[t][p]) / static_cast<double>(total) : 0.0;
      h += fmt::format(
          "<td style=\"background:rgba({},{:.2f})\" title=\"{} of {} rows of class {} predicted {}\">{}</td>",
          t == p ? "46,125,50" : "198,40,40", std::min(1.0, share * (t == p ? 0.8 : 2.0)), m[t][p], total, t, p,
          m[t][p]);
    }
    h += "</tr>";
  }
  return h + "</tbody></table>";
}
}  // namespace

std::string training_section(const std::vector<Cell>& cells) {
  std::string body;
  for (const auto& c : cells)
    for (const RunRecord* r : c.rows) {
      const json& curve = field(r->details, "training_curve");
      if (!curve.is_array() || curve.empty()) continue;
      const auto series = trajectory_series(curve, nullptr);
      if (!series.empty())
        body += line_chart("training", "The suspect while it trained: " + c.dataset + " × " + c.attack, series,
                           "training epoch", c.slug());
    }
  if (body.empty()) return "";
  return "<section id=\"training\"><h2>How the suspect learned</h2><p class=\"legendline\">The suspect model's "
         "clean accuracy, attack success rate and robust accuracy after each training epoch, on the per-epoch "
         "monitor's rows of the test sets: how early the backdoor took hold.</p><div class=\"charts\">" +
         body + "</div></section>";
}

std::string confusion_section(const std::vector<Cell>& cells) {
  std::string body;
  for (const auto& c : cells) {
    std::string tables;
    for (const RunRecord* r : c.rows)
      if (!r->confusion.empty()) tables += confusion_table(*r);
    if (!tables.empty()) body += "<h3>" + esc(c.title()) + "</h3><div class=\"charts\">" + tables + "</div>";
  }
  if (body.empty()) return "";
  return "<section id=\"confusion\"><h2>Per class</h2><p class=\"legendline\">Clean test rows by true class (rows) "
         "and predicted class (columns), for the suspect and each purified model: green, the share classified "
         "correctly; red, the errors. A defense that trades clean accuracy away shows where.</p>" +
         body + "</section>";
}

std::string other_trajectories_section(const std::vector<Cell>& cells) {
  std::string body;
  for (const auto& c : cells)
    for (const RunRecord* rp : c.rows) {
      const RunRecord& r = *rp;
      if (!r.section.empty()) continue;
      const auto& d = r.details;
      if (d.contains("trajectory") && d["trajectory"].is_array()) {
        auto series = trajectory_series(d["trajectory"], c.none);
        if (!series.empty())
          body += line_chart("trajectory", r.defense + " over epochs: " + c.dataset + " × " + c.attack, series, "epoch",
                             c.slug());
      }
      if (d.contains("identification") && d["identification"].is_object())
        body += histogram_chart(d["identification"], r.defense + ": identification scores", c.slug());
    }
  if (body.empty()) return "";
  return "<section id=\"trajectories\"><h2>Other defenses over epochs</h2><div class=\"charts\">" + body +
         "</div></section>";
}

std::string examples_section(const json& doc) {
  std::string h = "<section id=\"examples\"><h2>What the attacks look like</h2>";
  const json& exs = doc.contains("examples") && doc["examples"].is_array() ? doc["examples"] : json::array();
  if (exs.empty()) h += "<p>No examples in this document.</p>";
  for (const auto& ex : exs) {
    if (!ex.is_object()) continue;
    h += "<h3>" + esc(text(ex, "dataset") + " × " + text(ex, "attack")) + "</h3>";
    const json& clean = ex.contains("clean") && ex["clean"].is_array() ? ex["clean"] : json::array();
    const json& trig = ex.contains("triggered") && ex["triggered"].is_array() ? ex["triggered"] : json::array();
    const size_t n = std::max(clean.size(), trig.size());
    if (text(ex, "modality") == "image") {
      h += "<div class=\"examples\">";
      for (size_t i = 0; i < n; ++i) {
        h += "<figure class=\"pair\">";
        for (int side = 0; side < 2; ++side) {
          const json& arr = side ? trig : clean;
          const char* label = side ? "triggered" : "clean";
          int w = 0, ht = 0;
          std::string uri = i < arr.size() ? image_data_uri(arr[i], &w, &ht) : "";
          if (uri.empty()) {
            h += fmt::format("<div>(no image)<br>{}</div>", label);
            continue;
          }
          int k = std::max(1, 96 / std::max(w, ht));
          h += fmt::format(
              "<div><img class=\"thumb {}\" alt=\"{} example {}\" width=\"{}\" height=\"{}\" src=\"{}\">{}</div>",
              label, label, i + 1, w * k, ht * k, uri, label);
        }
        h += "</figure>";
      }
      h += "</div>";
    } else {
      h += "<p class=\"legendline\">Each pair: the clean sentence, then the triggered one with the tokens the clean "
           "sentence lacks <mark>marked</mark>.</p><ol class=\"sentences\">";
      for (size_t i = 0; i < n; ++i) {
        std::string c = i < clean.size() && clean[i].is_string() ? clean[i].get<std::string>() : "";
        std::string t = i < trig.size() && trig[i].is_string() ? trig[i].get<std::string>() : "";
        h += "<li>";
        if (!c.empty()) h += "<div class=\"clean\">clean: " + esc(c) + "</div>";
        h += "<div class=\"triggered\">triggered: " + mark_trigger(c, t) + "</div></li>";
      }
      h += "</ol>";
    }
  }
  return h + "</section>";
}

std::string cost_section(const std::vector<Cell>& cells) {
  std::string h = "<section id=\"cost\"><h2>Cost</h2>";
  h += "<p class=\"legendline\">Wall-clock seconds and peak resident memory (the process's high-water mark at the end "
       "of the stage) per stage. The <code>none</code> row's <code>train</code> stage is the suspect model's "
       "training, when it ran in this invocation.</p>";
  std::vector<std::string> stage_names;
  for (const auto& c : cells)
    for (const RunRecord* r : c.rows)
      for (const auto& st : r->stages)
        if (std::find(stage_names.begin(), stage_names.end(), st.name) == stage_names.end())
          stage_names.push_back(st.name);
  if (cells.empty()) return h + "<p>No finished runs yet.</p></section>";
  h += "<div class=\"charts\">";
  for (const auto& c : cells) h += cost_chart(c, stage_names);
  h += "</div>";
  h += "<table class=\"cost\"><thead><tr><th class=\"l\">dataset</th><th class=\"l\">attack</th><th>seed</th><th "
       "class=\"l\">defense</th><th class=\"l\">stage</th><th>seconds</th><th>peak RSS MB</th></tr></thead><tbody>";
  for (const auto& c : cells)
    for (const RunRecord* r : c.rows) {
      auto lead = fmt::format("<td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td class=\"l\">{}</td>",
                              esc(c.dataset), esc(c.attack), esc(c.seed), esc(r->defense));
      double sum = 0;
      for (const auto& st : r->stages) {
        h += fmt::format("<tr>{}<td class=\"l\">{}</td><td>{:.1f}</td><td>{:.0f}</td></tr>", lead, esc(st.name),
                         st.seconds, st.peak_rss_mb);
        sum += st.seconds;
      }
      h += fmt::format(
          "<tr><th class=\"l\" colspan=\"4\">{} × {} × {}</th><th class=\"l\">total</th><th>{:.1f}</th><th></th></tr>",
          esc(c.dataset), esc(c.attack), esc(r->defense), std::max(sum, r->seconds));
    }
  h += "</tbody></table></section>";
  return h;
}

std::string provenance_section(const json& doc) {
  std::set<std::string> seeds;
  if (doc.contains("runs") && doc["runs"].is_array())
    for (const auto& r : doc["runs"]) seeds.insert(text(r, "seed", "?"));
  if (seeds.empty() && doc.contains("config") && doc["config"].is_object())
    seeds.insert(text(doc["config"], "seed", "?"));
  std::string s;
  for (const auto& x : seeds) s += (s.empty() ? "" : ", ") + x;
  std::string h = "<section id=\"provenance\"><h2>Provenance</h2><table class=\"provenance\"><tbody>";
  h += fmt::format("<tr><th class=\"l\">antidote version</th><td class=\"l\">{}</td></tr>",
                   esc(text(doc, "version", "?")));
  h += fmt::format("<tr><th class=\"l\">seed(s)</th><td class=\"l\">{}</td></tr>", esc(s.empty() ? "–" : s));
  h += fmt::format("<tr><th class=\"l\">threads</th><td class=\"l\">{}</td></tr>", esc(text(doc, "threads", "?")));
  h += fmt::format("<tr><th class=\"l\">device</th><td class=\"l\">{}</td></tr>", esc(text(doc, "device", "cpu")));
  if (has_num(doc, "seconds"))
    h += fmt::format("<tr><th class=\"l\">total seconds</th><td class=\"l\">{:.1f}</td></tr>", num(doc, "seconds"));
  h += "</tbody></table><h3>Config</h3><pre class=\"config\">";
  h += esc(doc.contains("config") ? doc["config"].dump(2) : "{}");
  h += "</pre></section>";
  return h;
}

}  // namespace antidote::html
