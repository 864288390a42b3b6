#include "antidote/report/results.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

#include "antidote/core/common.hpp"
#include "antidote/report/record.hpp"

namespace antidote {

using nlohmann::json;

const json& field(const json& j, const std::string& key) {
  static const json null;
  if (!j.is_object()) return null;
  const auto it = j.find(key);
  return it == j.end() ? null : *it;
}

std::string percent(const json& v) {
  if (v.is_null() || !v.is_number()) return "–";
  return fmt::format("{:.1f}", 100.0 * v.get<double>());
}

std::string percent(double fraction) { return fmt::format("{:.1f}", 100.0 * fraction); }
std::string percent(const std::optional<double>& fraction) { return fraction ? percent(*fraction) : "–"; }

namespace {
std::string fixed3(const std::optional<double>& v) { return v ? fmt::format("{:.3f}", *v) : "–"; }

std::string stage_summary(const std::vector<StageRecord>& stages) {
  std::string s;
  for (const auto& st : stages)
    s += fmt::format("{}{} {:.1f}s/{:.0f}MB", s.empty() ? "" : ", ", st.name, st.seconds, st.peak_rss_mb);
  return s;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string num(double v) { return fmt::format("{:.6f}", v); }
std::string num(const std::optional<double>& v) { return v ? num(*v) : ""; }
// A value of a defense's own table (details), as it is.
std::string num(const json& v) {
  if (v.is_null()) return "";
  if (v.is_number_float()) return num(v.get<double>());
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

}  // namespace

double mean_of(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return sum / static_cast<double>(v.size());
}

std::string mean_sd_percent(const std::vector<double>& v) {
  if (v.empty()) return "–";
  const double mean = mean_of(v);
  if (v.size() == 1) return fmt::format("{:.1f}", 100 * mean);
  double ss = 0;
  for (double x : v) ss += (x - mean) * (x - mean);
  return fmt::format("{:.1f} ± {:.1f}", 100 * mean, 100 * std::sqrt(ss / static_cast<double>(v.size() - 1)));
}

bool same_cell(const RunRecord& a, const RunRecord& b) {
  return std::tie(a.dataset, a.model, a.attack, a.poison_rate, a.target, a.seed) ==
         std::tie(b.dataset, b.model, b.attack, b.poison_rate, b.target, b.seed);
}

const RunRecord* suspect_row(const std::vector<RunRecord>& rows, const RunRecord& row) {
  for (const auto& r : rows)
    if (r.defense == "none" && same_cell(r, row)) return &r;
  return nullptr;
}

Verdict record_verdict(const RunRecord& row, const RunRecord* suspect) {
  if (row.defense == "none") {
    Verdict v;
    v.verdict = "reference";
    v.why = "the suspect model itself";
    return v;
  }
  // An unknown ASR (no triggered test set) is NaN, which the verdict reads so.
  auto evaluation = [](const RunRecord& r) {
    Evaluation e;
    e.cacc = r.cacc;
    e.asr = r.asr.value_or(std::numeric_limits<double>::quiet_NaN());
    e.ra = r.ra.value_or(std::numeric_limits<double>::quiet_NaN());
    return e;
  };
  const Evaluation before = suspect ? evaluation(*suspect) : Evaluation{};
  return purification_verdict(evaluation(row), row.asr_floor.value_or(-1.0), suspect ? &before : nullptr);
}

std::string results_csv(const json& doc) {
  std::string out =
      "dataset,model,attack,poison_rate,target,seed,defense,clean_samples,cacc,asr,asr_floor,ra,pcc,der,"
      "det_precision,det_recall,det_f1,det_flagged,seconds,stages,verdict,repair\n";
  const auto records = run_records(doc);
  for (const auto& r : records) {
    const auto& d = r.detection;
    const auto v = record_verdict(r, suspect_row(records, r));
    out += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", csv_field(r.dataset),
                       csv_field(r.model), csv_field(r.attack), num(r.poison_rate), r.target, r.seed,
                       csv_field(r.defense), r.clean_samples, num(r.cacc), num(r.asr), num(r.asr_floor), num(r.ra),
                       num(r.pcc), num(r.der), d ? num(d->precision) : "", d ? num(d->recall) : "", d ? num(d->f1) : "",
                       d ? std::to_string(d->flagged) : "", num(r.seconds), csv_field(stage_summary(r.stages)),
                       v.verdict, v.repair);
  }
  return out;
}

std::string seed_summary_markdown(const json& doc) {
  // Rows that differ only in their seed, in the order they first appear.
  struct Group {
    explicit Group(const RunRecord* f) : first(f) {}
    const RunRecord* first;
    std::vector<double> cacc, asr, floor, ra, der, precision;
    int64_t seeds = 0;
    int removed = 0, repaired = 0, judged = 0;
  };
  auto same_but_seed = [](const RunRecord& a, const RunRecord& b) {
    return std::tie(a.dataset, a.model, a.attack, a.poison_rate, a.target, a.defense, a.clean_samples) ==
           std::tie(b.dataset, b.model, b.attack, b.poison_rate, b.target, b.defense, b.clean_samples);
  };
  auto push = [](std::vector<double>& v, const std::optional<double>& x) {
    if (x) v.push_back(*x);
  };
  const auto records = run_records(doc);
  std::vector<Group> groups;
  for (const auto& r : records) {
    auto it = std::find_if(groups.begin(), groups.end(), [&](const Group& g) { return same_but_seed(*g.first, r); });
    if (it == groups.end()) it = groups.insert(groups.end(), Group(&r));
    ++it->seeds;
    const auto v = record_verdict(r, suspect_row(records, r));
    it->judged += v.verdict == "success" || v.verdict == "fail";
    it->removed += v.verdict == "success";
    it->repaired += v.repair == "repaired";
    it->cacc.push_back(r.cacc);
    push(it->asr, r.asr);
    push(it->floor, r.asr_floor);
    push(it->ra, r.ra);
    push(it->der, r.der);
    if (r.detection) it->precision.push_back(r.detection->precision);
  }
  bool several = std::any_of(groups.begin(), groups.end(), [](const Group& g) { return g.seeds > 1; });
  if (!several) return "";
  std::string out =
      "\n### Mean ± standard deviation over seeds\n\n"
      "| dataset | model | attack | rate | target | defense | clean | seeds | CACC % | ASR % | ASR floor % | RA % | "
      "DER | detection precision % | removed | repaired |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  auto count = [](int n, int of) { return of ? fmt::format("{} of {}", n, of) : std::string("–"); };
  for (const auto& g : groups) {
    const RunRecord& r = *g.first;
    // DER lies in [0, 1] and prints as a fraction, as in the table above.
    const std::string der = g.der.empty() ? "–" : fmt::format("{:.3f}", mean_of(g.der));
    out += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", r.dataset,
                       r.model, r.attack, percent(r.poison_rate), r.target, r.defense,
                       r.defense == "none" ? "–" : std::to_string(r.clean_samples), g.seeds, mean_sd_percent(g.cacc),
                       mean_sd_percent(g.asr), mean_sd_percent(g.floor), mean_sd_percent(g.ra), der,
                       mean_sd_percent(g.precision), count(g.removed, g.judged), count(g.repaired, g.judged));
  }
  return out;
}

namespace {
// A defense's stage table (NT-ML's, or any defense's that records `details.stages`).
std::string stage_table_markdown(const RunRecord& r) {
  const json& details = r.details;
  if (!field(details, "stages").is_array()) return "";
  std::string out = fmt::format(
      "\n### {} stages: {} × {} (seed {})\n\n| stage | model | CACC % | ASR % | RA % | PCC % "
      "|\n|---|---|---|---|---|---|\n",
      r.defense, r.dataset, r.attack, r.seed);
  for (const auto& s : field(details, "stages"))
    out += fmt::format("| {} | {} | {} | {} | {} | {} |\n", num(field(s, "stage")), num(field(s, "model")),
                       percent(field(s, "cacc")), percent(field(s, "asr")), percent(field(s, "ra")),
                       percent(field(s, "pcc")));
  if (field(details, "verdict").is_string()) out += "\n" + field(details, "verdict").get<std::string>() + "\n";
  if (field(details, "control_beats_ntml") == true)
    out +=
        "\n**The control beats the method on this cell**: the same without its first stage is at least as good "
        "on CACC and ASR.\n";
  return out;
}
}  // namespace

std::string results_markdown(const json& doc) {
  std::string out = fmt::format("# antidote results\n\nantidote {} · threads {} · device {}\n\n",
                                doc.value("version", "?"), doc.value("threads", 0), doc.value("device", "cpu"));
  out +=
      "| dataset | model | attack | rate | target | seed | defense | clean | CACC % | ASR % | ASR floor % | RA % | PCC "
      "% "
      "| DER | detection P/R/F1 % (flagged) | seconds | verdict |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  const auto records = run_records(doc);
  for (const auto& r : records) {
    const auto& d = r.detection;
    std::string det =
        d ? fmt::format("{}/{}/{} ({})", percent(d->precision), percent(d->recall), percent(d->f1), d->flagged) : "–";
    const auto v = record_verdict(r, suspect_row(records, r));
    out += fmt::format(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1f} | {} |\n", r.dataset,
        r.model, r.attack, percent(r.poison_rate), r.target, r.seed, r.defense, r.clean_samples, percent(r.cacc),
        percent(r.asr), percent(r.asr_floor), percent(r.ra), percent(r.pcc), fixed3(r.der), det, r.seconds,
        v.verdict == "reference" ? "suspect" : verdict_word(v.verdict) + (v.repair.empty() ? "" : ", " + v.repair));
  }
  out += seed_summary_markdown(doc);
  for (const auto& r : records) out += stage_table_markdown(r);
  out += "\n### Cost per stage\n\n| dataset | attack | defense | stages (seconds / peak RSS) |\n|---|---|---|---|\n";
  for (const auto& r : records)
    out += fmt::format("| {} | {} | {} | {} |\n", r.dataset, r.attack, r.defense, stage_summary(r.stages));
  return out;
}

void write_results(const std::string& out_dir, const json& doc) {
  // One set: all four are written before any replaces its predecessor.
  write_files_atomic({{out_dir + "/results.csv", results_csv(doc)},
                      {out_dir + "/results.md", results_markdown(doc)},
                      {out_dir + "/report.html", render_html_report(doc)},
                      {out_dir + "/results.json", json_text(doc)}});
}

}  // namespace antidote
