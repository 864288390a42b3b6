// The TSV reader on arbitrary text: rows whose labels lie in range and whose text is
// valid UTF-8, or an antidote::Error.
#include <cstdint>
#include <string>

#include "antidote/core/common.hpp"
#include "antidote/data/formats.hpp"

using namespace antidote;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const auto rows = parse_tsv(text, "input", 9);
    if (rows.sentences.size() != rows.labels.size() || rows.labels.empty()) __builtin_trap();
    for (size_t i = 0; i < rows.labels.size(); ++i) {
      if (rows.labels[i] < 0 || rows.labels[i] > 9) __builtin_trap();
      if (invalid_utf8_at(rows.sentences[i]) != std::string::npos) __builtin_trap();
    }
  } catch (const Error&) {
  }
  return 0;
}
