// The cell reader on arbitrary text: a cell that passes the schema check must render
// in every results format (CSV, Markdown, the HTML report) without an exception; one
// that fails it is recomputed by the bench, so only the check itself must hold.
#include <cstdint>
#include <string>

#include "antidote/core/common.hpp"
#include "antidote/report/results.hpp"

using namespace antidote;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  nlohmann::json row;
  try {
    row = parse_json(text, "cell");
  } catch (const Error&) {
    return 0;
  }
  if (!run_row_problem(row).empty()) return 0;
  nlohmann::json doc{{"version", "fuzz"}, {"threads", 1}, {"device", "cpu"}, {"runs", nlohmann::json::array({row})}};
  results_csv(doc);
  results_markdown(doc);
  render_html_report(doc);
  json_text(doc);
  return 0;
}
