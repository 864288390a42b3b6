// The file formats antidote reads its data from, parsed from bytes: IDX (MNIST's
// format) and tab-separated text. Every error names the file and, for text, the line.
// Nothing here needs LibTorch, so the fuzz targets build this file on its own.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace antidote {

// An IDX header: unsigned bytes only, 1 to 4 dimensions.
struct IdxHeader {
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // where the values start
  uint64_t count = 0;   // how many values the header promises
};
// The header at the start of `bytes` (which may hold only the first bytes of the
// file); errors name `origin`. A header promising more than `max_values` is an error.
IdxHeader parse_idx_header(const std::string& bytes, const std::string& origin, uint64_t max_values);
// The whole file: its header, checked against the number of values that follow.
IdxHeader parse_idx(const std::string& bytes, const std::string& origin, uint64_t max_values);

struct TextRows {
  std::vector<std::string> sentences;
  std::vector<int64_t> labels;
};
// TSV with a header naming the sentence column (`sentence`/`sentences`/`text`) and the
// label column (`label`/`labels`); copes with CRLF, spaces around the tab, blank lines
// and a missing final newline. Text must be UTF-8; labels are integers in
// [0, max_label]. Errors name `origin` and the line.
TextRows parse_tsv(const std::string& text, const std::string& origin, int64_t max_label);

}  // namespace antidote
