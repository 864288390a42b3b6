// report.html: one self-contained page (inline CSS and SVG, nothing fetched).
#include <fmt/format.h>

#include "antidote/report/results.hpp"

namespace antidote {

using nlohmann::json;

namespace {
std::string escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '&': o += "&amp;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}
}  // namespace

std::string render_html_report(const json& doc) {
  std::string h =
      "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>antidote report</title><style>"
      "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
      "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f0f0f0}"
      "</style></head><body><h1>antidote report</h1>";
  h += fmt::format("<p>antidote {} · threads {} · device {}</p>", escape(doc.value("version", "?")),
                   doc.value("threads", 0), escape(doc.value("device", "cpu")));
  h += "<h2>Results</h2><table><tr><th>dataset</th><th>attack</th><th>defense</th><th>CACC %</th><th>ASR %</th>"
       "<th>ASR floor %</th><th>RA %</th><th>DER</th></tr>";
  for (const auto& r : doc["runs"])
    h += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3f}</td></tr>",
                     escape(r.value("dataset", "")), escape(r.value("attack", "")), escape(r.value("defense", "")),
                     percent(r["cacc"]), percent(r["asr"]), percent(r["asr_floor"]), percent(r["ra"]),
                     r.value("der", 0.0));
  h += "</table><h2>Config</h2><pre>" + escape(doc["config"].dump(2)) + "</pre></body></html>\n";
  return h;
}

}  // namespace antidote
