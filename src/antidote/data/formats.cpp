#include "antidote/data/formats.hpp"

#include <algorithm>
#include <cctype>

#include "antidote/core/common.hpp"

namespace antidote {

// ---- IDX ------------------------------------------------------------------------

IdxHeader parse_idx_header(const std::string& bytes, const std::string& origin, uint64_t max_values) {
  if (bytes.size() < 4) fail("malformed IDX file '{}': shorter than its 4-byte header", origin);
  auto byte = [&](size_t i) { return static_cast<unsigned char>(bytes[i]); };
  if (byte(0) != 0 || byte(1) != 0) fail("malformed IDX file '{}': bad magic number", origin);
  if (byte(2) != 0x08)
    fail("IDX file '{}': element type 0x{:02x} is not supported (only unsigned bytes)", origin, byte(2));
  const int ndim = byte(3);
  if (ndim < 1 || ndim > 4) fail("malformed IDX file '{}': {} dimensions", origin, ndim);
  IdxHeader h;
  h.offset = 4 + 4 * static_cast<uint64_t>(ndim);
  if (bytes.size() < h.offset) fail("malformed IDX file '{}': truncated header", origin);
  h.count = 1;
  for (int d = 0; d < ndim; ++d) {
    const size_t o = 4 + 4 * static_cast<size_t>(d);
    const uint64_t s =
        (uint64_t(byte(o)) << 24) | (uint64_t(byte(o + 1)) << 16) | (uint64_t(byte(o + 2)) << 8) | byte(o + 3);
    h.shape.push_back(static_cast<int64_t>(s));
    // Checked before multiplying, so that four large sizes cannot overflow.
    if (s != 0 && h.count > max_values / s)
      fail("IDX file '{}': its header promises more than {} values, more than antidote reads", origin, max_values);
    h.count *= s;
  }
  return h;
}

IdxHeader parse_idx(const std::string& bytes, const std::string& origin, uint64_t max_values) {
  auto h = parse_idx_header(bytes, origin, max_values);
  if (bytes.size() - h.offset != h.count)
    fail("malformed IDX file '{}': header promises {} values, file holds {}", origin, h.count, bytes.size() - h.offset);
  return h;
}

// ---- TSV ------------------------------------------------------------------------

namespace {
std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t tab; (tab = line.find('\t', start)) != std::string::npos; start = tab + 1)
    out.push_back(trim(line.substr(start, tab - start)));
  out.push_back(trim(line.substr(start)));
  return out;
}

struct TsvColumns {
  int sentence = -1, label = -1;
  size_t count = 0;
};

TsvColumns header_columns(const std::vector<std::string>& cells, const std::string& line, const std::string& origin,
                          int64_t line_no) {
  TsvColumns c;
  for (size_t i = 0; i < cells.size(); ++i) {
    std::string h = cells[i];
    std::transform(h.begin(), h.end(), h.begin(), [](unsigned char ch) { return std::tolower(ch); });
    if (h == "sentence" || h == "sentences" || h == "text") c.sentence = static_cast<int>(i);
    if (h == "label" || h == "labels") c.label = static_cast<int>(i);
  }
  if (c.sentence < 0 || c.label < 0)
    fail("'{}' line {}: header must name a 'sentence' (or 'sentences') and a 'label' (or 'labels') column, found '{}'",
         origin, line_no, excerpt(line));
  c.count = cells.size();
  return c;
}

int64_t parse_label(const std::string& text, const std::string& origin, int64_t line_no, int64_t max_label) {
  int64_t label = 0;
  try {
    size_t used = 0;
    label = std::stoll(text, &used);
    if (used != text.size()) throw std::invalid_argument("trailing");
  } catch (const std::exception&) {
    fail("'{}' line {}: label '{}' is not an integer", origin, line_no, excerpt(text));
  }
  if (label < 0) fail("'{}' line {}: label {} is negative", origin, line_no, label);
  if (label > max_label) fail("'{}' line {}: label {} is out of range (at most {})", origin, line_no, label, max_label);
  return label;
}
}  // namespace

TextRows parse_tsv(const std::string& text, const std::string& origin, int64_t max_label) {
  TextRows rows;
  TsvColumns columns;
  int64_t line_no = 0;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    start = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (const size_t bad = invalid_utf8_at(line); bad != std::string::npos)
      fail("'{}' line {}: byte {} is not valid UTF-8 (0x{:02x}); save the file as UTF-8", origin, line_no, bad + 1,
           static_cast<unsigned char>(line[bad]));
    if (trim(line).empty()) continue;
    const auto cells = split_tabs(line);
    if (columns.sentence < 0) {
      columns = header_columns(cells, line, origin, line_no);
      continue;
    }
    if (cells.size() != columns.count)
      fail("'{}' line {}: expected {} tab-separated fields, found {}", origin, line_no, columns.count, cells.size());
    rows.labels.push_back(parse_label(cells[static_cast<size_t>(columns.label)], origin, line_no, max_label));
    rows.sentences.push_back(cells[static_cast<size_t>(columns.sentence)]);
  }
  if (columns.sentence < 0) fail("'{}' is empty (no header)", origin);
  if (rows.labels.empty()) fail("'{}' has a header but no rows", origin);
  return rows;
}

}  // namespace antidote
