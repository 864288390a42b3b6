#include "antidote/report/record.hpp"

#include <fmt/format.h>

#include "antidote/core/common.hpp"

namespace antidote {

using nlohmann::json;

namespace {
json optional_json(const std::optional<double>& v) { return v ? json(*v) : json(nullptr); }
}  // namespace

void to_json(json& j, const DetectionRecord& d) {
  j = {{"precision", d.precision}, {"recall", d.recall}, {"f1", d.f1}, {"flagged", d.flagged}};
}

void to_json(json& j, const StageRecord& s) {
  j = {{"name", s.name}, {"seconds", s.seconds}, {"peak_rss_mb", s.peak_rss_mb}};
}

void to_json(json& j, const RunRecord& r) {
  j = {{"dataset", r.dataset},
       {"model", r.model},
       {"attack", r.attack},
       {"poison_rate", r.poison_rate},
       {"target", r.target},
       {"seed", r.seed},
       {"defense", r.defense},
       {"options", r.options},
       {"clean_samples", r.clean_samples},
       {"cacc", r.cacc},
       {"asr", optional_json(r.asr)},
       {"ra", optional_json(r.ra)},
       {"pcc", optional_json(r.pcc)},
       {"asr_floor", optional_json(r.asr_floor)},
       {"der", optional_json(r.der)},
       {"detection", r.detection ? json(*r.detection) : json(nullptr)},
       {"stages", r.stages},
       {"seconds", r.seconds},
       {"details", r.details}};
  // Written only where they hold something, as rows have always been.
  if (!r.resolved_options.empty()) j["resolved_options"] = r.resolved_options;
  if (!r.model_file.empty()) j["model_file"] = r.model_file;
  if (!r.confusion.empty()) j["confusion"] = r.confusion;
  if (!r.section.empty())
    j["section"] = {
        {"id", r.section.id}, {"title", r.section.title}, {"legend", r.section.legend}, {"layout", r.section.layout}};
}

namespace {
// Reads the fields of one JSON object, each checked for its type (and range); the first
// problem is kept and every later read is skipped.
class FieldReader {
 public:
  FieldReader(const json& j, std::string prefix = "") : j_(j), prefix_(std::move(prefix)) {}
  const std::string& problem() const { return problem_; }

  std::string string(const char* key) {
    const json* v = get(key, false);
    if (v && !v->is_string()) wrong(key, *v);
    return ok(v) ? v->get<std::string>() : "";
  }
  template <class Int>
  Int integer(const char* key) {
    const json* v = get(key, false);
    if (v && !v->is_number_integer()) wrong(key, *v);
    return ok(v) ? v->get<Int>() : Int{};
  }
  double number(const char* key) { return optional_number(key, false).value_or(0.0); }
  std::optional<double> optional_number(const char* key, bool nullable = true) {
    const json* v = get(key, nullable);
    if (v && !v->is_null() && !v->is_number()) wrong(key, *v);
    if (!ok(v) || v->is_null()) return std::nullopt;
    return v->get<double>();
  }
  double fraction(const char* key) { return optional_fraction(key, false).value_or(0.0); }
  std::optional<double> optional_fraction(const char* key, bool nullable = true) {
    auto x = optional_number(key, nullable);
    if (x && problem_.empty() && !(*x >= 0 && *x <= 1))
      problem_ = fmt::format("{}'{}' = {} lies outside [0, 1]", prefix_, key, *x);
    return x;
  }
  // An object or array field as it is; `fallback` where an optional one is absent.
  // An optional one may also be null.
  json raw(const char* key, json::value_t type, bool required, json fallback = json::object()) {
    if (!required && (!j_.contains(key) || j_[key].is_null())) return fallback;
    const json* v = get(key, false);
    if (v && v->type() != type) wrong(key, *v);
    return ok(v) ? *v : fallback;
  }

 private:
  const json* get(const char* key, bool nullable) {
    if (!problem_.empty()) return nullptr;
    if (!j_.contains(key)) {
      if (!nullable) problem_ = fmt::format("{}'{}' is missing", prefix_, key);
      return nullptr;
    }
    return &j_[key];
  }
  void wrong(const char* key, const json& v) {
    if (problem_.empty()) problem_ = fmt::format("{}'{}' has the wrong type ({})", prefix_, key, excerpt(v.dump(), 40));
  }
  bool ok(const json* v) const { return v && problem_.empty(); }

  const json& j_;
  std::string prefix_;
  std::string problem_;
};

std::optional<DetectionRecord> detection_of(const json& row, std::string& problem) {
  if (!row.contains("detection")) {
    problem = "'detection' is missing";
    return std::nullopt;
  }
  const json& d = row["detection"];
  if (d.is_null()) return std::nullopt;
  if (!d.is_object()) {
    problem = fmt::format("'detection' has the wrong type ({})", excerpt(d.dump(), 40));
    return std::nullopt;
  }
  FieldReader f(d, "detection: ");
  DetectionRecord out{f.fraction("precision"), f.fraction("recall"), f.fraction("f1"), f.integer<int64_t>("flagged")};
  problem = f.problem();
  return out;
}

std::vector<StageRecord> stages_of(const json& stages, std::string& problem) {
  std::vector<StageRecord> out;
  for (const auto& st : stages) {
    if (!st.is_object() || !st.value("name", json()).is_string() || !st.value("seconds", json()).is_number() ||
        !st.value("peak_rss_mb", json()).is_number()) {
      problem = "a stage lacks its name, seconds or peak_rss_mb";
      return {};
    }
    out.push_back({st["name"].get<std::string>(), st["seconds"].get<double>(), st["peak_rss_mb"].get<double>()});
  }
  return out;
}

// A square matrix of counts of at most 100 classes; empty (and a problem) otherwise.
std::vector<std::vector<int64_t>> confusion_of(const json& row, std::string& problem) {
  if (!row.contains("confusion") || row["confusion"].is_null()) return {};
  const json& m = row["confusion"];
  const size_t k = m.is_array() ? m.size() : 0;
  std::vector<std::vector<int64_t>> out;
  bool ok = k > 0 && k <= 100;
  for (size_t t = 0; ok && t < k; ++t) {
    ok = m[t].is_array() && m[t].size() == k;
    std::vector<int64_t> line;
    for (size_t p = 0; ok && p < k; ++p) {
      ok = m[t][p].is_number_integer() && m[t][p].get<int64_t>() >= 0;
      if (ok) line.push_back(m[t][p].get<int64_t>());
    }
    out.push_back(std::move(line));
  }
  if (!ok) {
    problem = "'confusion' is not a square matrix of counts of at most 100 classes";
    return {};
  }
  return out;
}

ReportSection section_of(const json& row) {
  const json& s = row.contains("section") && row["section"].is_object() ? row["section"] : json::object();
  auto text = [&](const char* key) { return s.contains(key) && s[key].is_string() ? s[key].get<std::string>() : ""; };
  return {text("id"), text("title"), text("legend"), text("layout")};
}

// The record, and in `problem` what is wrong with the row ("" when nothing is).
RunRecord parse_record(const json& row, std::string& problem) {
  RunRecord r;
  if (!row.is_object()) {
    problem = "not a JSON object";
    return r;
  }
  FieldReader f(row);
  r.dataset = f.string("dataset");
  r.model = f.string("model");
  r.attack = f.string("attack");
  r.defense = f.string("defense");
  r.cacc = f.fraction("cacc");
  r.poison_rate = f.fraction("poison_rate");
  // Null where no triggered row was measured (the trigger is unknown).
  r.asr = f.optional_fraction("asr", false);
  r.ra = f.optional_fraction("ra", false);
  r.pcc = f.optional_fraction("pcc", false);
  r.asr_floor = f.optional_fraction("asr_floor", false);
  r.seed = f.integer<uint64_t>("seed");
  r.target = f.integer<int64_t>("target");
  r.clean_samples = f.integer<int64_t>("clean_samples");
  r.der = f.optional_number("der", false);
  r.seconds = f.number("seconds");
  const json stages = f.raw("stages", json::value_t::array, true, json::array());
  problem = f.problem();
  if (problem.empty()) r.stages = stages_of(stages, problem);
  if (problem.empty()) r.detection = detection_of(row, problem);
  if (!problem.empty()) return r;
  FieldReader rest(row);
  r.details = rest.raw("details", json::value_t::object, false);
  r.options = rest.raw("options", json::value_t::object, false);
  r.resolved_options = rest.raw("resolved_options", json::value_t::object, false);
  problem = rest.problem();
  if (row.contains("model_file") && row["model_file"].is_string()) r.model_file = row["model_file"].get<std::string>();
  r.section = section_of(row);
  if (problem.empty()) r.confusion = confusion_of(row, problem);
  return r;
}
}  // namespace

RunRecord run_record(const json& row, const std::string& origin) {
  std::string problem;
  RunRecord r = parse_record(row, problem);
  if (!problem.empty()) fail("{}: not a valid result ({})", origin, problem);
  return r;
}

std::string run_row_problem(const json& row) {
  std::string problem;
  parse_record(row, problem);
  return problem;
}

std::vector<RunRecord> run_records(const json& doc) {
  std::vector<RunRecord> out;
  if (!doc.is_object() || !doc.contains("runs") || !doc["runs"].is_array()) return out;
  for (const auto& row : doc["runs"]) {
    std::string problem;
    RunRecord r = parse_record(row, problem);
    if (problem.empty()) out.push_back(std::move(r));
  }
  return out;
}

}  // namespace antidote
