#include "antidote/report/results.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "antidote/core/common.hpp"

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

namespace {
std::string fixed3(const json& v) { return v.is_number() ? fmt::format("{:.3f}", v.get<double>()) : "–"; }

std::string stage_summary(const json& stages) {
  std::string s;
  for (const auto& st : stages)
    s += fmt::format("{}{} {:.1f}s/{:.0f}MB", s.empty() ? "" : ", ", st.value("name", "?"), st.value("seconds", 0.0),
                     st.value("peak_rss_mb", 0.0));
  return s;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string num(const json& v) {
  if (v.is_null()) return "";
  if (v.is_number_float()) return fmt::format("{:.6f}", v.get<double>());
  if (v.is_number()) return v.dump();
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

double mean_of(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return sum / static_cast<double>(v.size());
}
}  // namespace

std::string mean_sd_percent(const std::vector<double>& v) {
  if (v.empty()) return "–";
  const double mean = mean_of(v);
  if (v.size() == 1) return fmt::format("{:.1f}", 100 * mean);
  double ss = 0;
  for (double x : v) ss += (x - mean) * (x - mean);
  return fmt::format("{:.1f} ± {:.1f}", 100 * mean, 100 * std::sqrt(ss / static_cast<double>(v.size() - 1)));
}

std::string results_csv(const json& doc) {
  std::string out =
      "dataset,model,attack,poison_rate,target,seed,defense,clean_samples,cacc,asr,asr_floor,ra,pcc,der,"
      "det_precision,det_recall,det_f1,det_flagged,seconds,stages\n";
  for (const auto& r : field(doc, "runs")) {
    const auto& d = field(r, "detection");
    out += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                       csv_field(num(field(r, "dataset"))), csv_field(num(field(r, "model"))),
                       csv_field(num(field(r, "attack"))), num(field(r, "poison_rate")), num(field(r, "target")),
                       num(field(r, "seed")), csv_field(num(field(r, "defense"))), num(field(r, "clean_samples")),
                       num(field(r, "cacc")), num(field(r, "asr")), num(field(r, "asr_floor")), num(field(r, "ra")),
                       num(field(r, "pcc")), num(field(r, "der")), d.is_null() ? "" : num(field(d, "precision")),
                       d.is_null() ? "" : num(field(d, "recall")), d.is_null() ? "" : num(field(d, "f1")),
                       d.is_null() ? "" : num(field(d, "flagged")), num(field(r, "seconds")),
                       csv_field(stage_summary(field(r, "stages"))));
  }
  return out;
}

std::string seed_summary_markdown(const json& doc) {
  if (!doc.contains("runs")) return "";
  // Rows that differ only in their seed, in the order they first appear.
  struct Group {
    std::string key;
    const json* first;
    std::vector<double> cacc, asr, floor, ra, der, precision;
    int64_t seeds = 0;
  };
  std::vector<Group> groups;
  auto push = [](std::vector<double>& v, const json& x) {
    if (x.is_number()) v.push_back(x.get<double>());
  };
  for (const auto& r : field(doc, "runs")) {
    auto key =
        json::array({r.value("dataset", ""), r.value("model", ""), r.value("attack", ""), r.value("poison_rate", 0.0),
                     r.value("target", 0), r.value("defense", ""), r.value("clean_samples", 0)})
            .dump();
    auto it = std::find_if(groups.begin(), groups.end(), [&](const Group& g) { return g.key == key; });
    if (it == groups.end()) it = groups.insert(groups.end(), Group{key, &r, {}, {}, {}, {}, {}, {}, 0});
    ++it->seeds;
    push(it->cacc, field(r, "cacc"));
    push(it->asr, field(r, "asr"));
    push(it->floor, field(r, "asr_floor"));
    push(it->ra, field(r, "ra"));
    push(it->der, field(r, "der"));
    push(it->precision, field(field(r, "detection"), "precision"));
  }
  bool several = std::any_of(groups.begin(), groups.end(), [](const Group& g) { return g.seeds > 1; });
  if (!several) return "";
  std::string out =
      "\n### Mean ± standard deviation over seeds\n\n"
      "| dataset | model | attack | rate | target | defense | seeds | CACC % | ASR % | ASR floor % | RA % | DER | "
      "detection precision % |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& g : groups) {
    const json& r = *g.first;
    // DER lies in [0, 1] and prints as a fraction, as in the table above.
    const std::string der = g.der.empty() ? "–" : fmt::format("{:.3f}", mean_of(g.der));
    out +=
        fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", r.value("dataset", ""),
                    r.value("model", ""), r.value("attack", ""), percent(field(r, "poison_rate")), r.value("target", 0),
                    r.value("defense", ""), g.seeds, mean_sd_percent(g.cacc), mean_sd_percent(g.asr),
                    mean_sd_percent(g.floor), mean_sd_percent(g.ra), der, mean_sd_percent(g.precision));
  }
  return out;
}

std::string results_markdown(const json& doc) {
  std::string out = fmt::format("# antidote results\n\nantidote {} · threads {} · device {}\n\n",
                                doc.value("version", "?"), doc.value("threads", 0), doc.value("device", "cpu"));
  out +=
      "| dataset | model | attack | rate | target | seed | defense | clean | CACC % | ASR % | ASR floor % | RA % | PCC "
      "% "
      "| DER | detection P/R/F1 % (flagged) | seconds |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& r : field(doc, "runs")) {
    const auto& d = field(r, "detection");
    std::string det = d.is_null()
                          ? "–"
                          : fmt::format("{}/{}/{} ({})", percent(field(d, "precision")), percent(field(d, "recall")),
                                        percent(field(d, "f1")), d.value("flagged", 0));
    out += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1f} |\n",
                       r.value("dataset", ""), r.value("model", ""), r.value("attack", ""),
                       percent(field(r, "poison_rate")), r.value("target", 0), r.value("seed", 0),
                       r.value("defense", ""), r.value("clean_samples", 0), percent(field(r, "cacc")),
                       percent(field(r, "asr")), percent(field(r, "asr_floor")), percent(field(r, "ra")),
                       percent(field(r, "pcc")), fixed3(field(r, "der")), det, r.value("seconds", 0.0));
  }
  out += seed_summary_markdown(doc);
  // Stage tables (NT-ML and any defense that reports one).
  for (const auto& r : field(doc, "runs")) {
    const json& details = field(r, "details");
    if (!field(details, "stages").is_array()) continue;
    out += fmt::format(
        "\n### {} stages: {} × {} (seed {})\n\n| stage | model | CACC % | ASR % | RA % | PCC % "
        "|\n|---|---|---|---|---|---|\n",
        r.value("defense", ""), r.value("dataset", ""), r.value("attack", ""), r.value("seed", 0));
    for (const auto& s : field(details, "stages"))
      out += fmt::format("| {} | {} | {} | {} | {} | {} |\n", num(field(s, "stage")), num(field(s, "model")),
                         percent(field(s, "cacc")), percent(field(s, "asr")), percent(field(s, "ra")),
                         percent(field(s, "pcc")));
    if (field(details, "verdict").is_string()) out += "\n" + field(details, "verdict").get<std::string>() + "\n";
  }
  out += "\n### Cost per stage\n\n| dataset | attack | defense | stages (seconds / peak RSS) |\n|---|---|---|---|\n";
  for (const auto& r : field(doc, "runs"))
    out += fmt::format("| {} | {} | {} | {} |\n", r.value("dataset", ""), r.value("attack", ""), r.value("defense", ""),
                       stage_summary(field(r, "stages")));
  return out;
}

void write_results(const std::string& out_dir, const json& doc) {
  // One set: all four are written before any replaces its predecessor.
  write_files_atomic({{out_dir + "/results.csv", results_csv(doc)},
                      {out_dir + "/results.md", results_markdown(doc)},
                      {out_dir + "/report.html", render_html_report(doc)},
                      {out_dir + "/results.json", json_text(doc)}});
}

namespace {
std::string type_problem(const json& row, const char* key, json::value_t want, bool nullable) {
  if (!row.contains(key)) return fmt::format("'{}' is missing", key);
  const auto& v = row[key];
  if (nullable && v.is_null()) return "";
  const bool ok = want == json::value_t::number_float     ? v.is_number()
                  : want == json::value_t::number_integer ? v.is_number_integer()
                                                          : v.type() == want;
  return ok ? "" : fmt::format("'{}' has the wrong type ({})", key, excerpt(v.dump(), 40));
}

std::string fraction_problem(const json& row, const char* key, bool nullable) {
  if (auto p = type_problem(row, key, json::value_t::number_float, nullable); !p.empty()) return p;
  const auto& v = row[key];
  if (v.is_null()) return "";
  const double x = v.get<double>();
  return x >= 0 && x <= 1 ? "" : fmt::format("'{}' = {} lies outside [0, 1]", key, x);
}
}  // namespace

std::string run_row_problem(const json& row) {
  if (!row.is_object()) return "not a JSON object";
  using t = json::value_t;
  for (const char* key : {"dataset", "model", "attack", "defense"})
    if (auto p = type_problem(row, key, t::string, false); !p.empty()) return p;
  for (const char* key : {"cacc", "poison_rate"})
    if (auto p = fraction_problem(row, key, false); !p.empty()) return p;
  // Null where no triggered row was measured (the trigger is unknown).
  for (const char* key : {"asr", "ra", "pcc"})
    if (auto p = fraction_problem(row, key, true); !p.empty()) return p;
  if (auto p = fraction_problem(row, "asr_floor", true); !p.empty()) return p;
  for (const char* key : {"seed", "target", "clean_samples"})
    if (auto p = type_problem(row, key, t::number_integer, false); !p.empty()) return p;
  if (auto p = type_problem(row, "der", t::number_float, true); !p.empty()) return p;
  if (auto p = type_problem(row, "seconds", t::number_float, false); !p.empty()) return p;
  if (auto p = type_problem(row, "stages", t::array, false); !p.empty()) return p;
  for (const auto& st : row["stages"])
    if (!st.is_object() || !st.value("name", json()).is_string() || !st.value("seconds", json()).is_number() ||
        !st.value("peak_rss_mb", json()).is_number())
      return "a stage lacks its name, seconds or peak_rss_mb";
  if (auto p = type_problem(row, "detection", t::object, true); !p.empty()) return p;
  if (row["detection"].is_object()) {
    for (const char* key : {"precision", "recall", "f1"})
      if (auto p = fraction_problem(row["detection"], key, false); !p.empty()) return "detection: " + p;
    if (auto p = type_problem(row["detection"], "flagged", t::number_integer, false); !p.empty())
      return "detection: " + p;
  }
  if (row.contains("details") && !row["details"].is_object()) return "'details' is not an object";
  return "";
}

}  // namespace antidote
