// Files in and out, with limits. Writes replace files atomically (one file, or a set
// of files that belong together) and never leave a half-written file or a temp file
// behind; reads are bounded (plain and gzip files, zip archives' declared sizes); YAML
// loading rejects duplicate keys, alias bombs and runaway nesting. Nothing here needs
// LibTorch, so the fuzz targets build this file on its own.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace antidote {

// Limits on what one read may take. Fashion-MNIST's largest file is 47 MB, SST-2's
// training TSV 0.7 MB, a config a few kB.
constexpr uint64_t kMaxDataBytes = uint64_t(2) << 30;    // one data file, decompressed
constexpr uint64_t kMaxConfigBytes = uint64_t(4) << 20;  // one YAML file
constexpr uint64_t kMaxJsonBytes = uint64_t(256) << 20;  // one cell or results document
constexpr int64_t kMaxYamlNodes = 100000;                // after expanding aliases
constexpr int kMaxYamlDepth = 64;

// Write a file atomically: a temp file beside it (`<path>.tmp<pid>`), flushed and
// synced, then renamed over `path`. Any failure (a full disk among them) removes the
// temp file, leaves the previous `path` untouched and throws an Error naming `path`.
void write_file_atomic(const std::string& path, const std::string& content);
// Several files that belong together: every temp file is written and synced before
// the first rename, so a failed write leaves all previous files as they were.
void write_files_atomic(const std::vector<std::pair<std::string, std::string>>& files);
// Off in the workers of a data-parallel run other than rank 0: they compute what rank 0
// does, and rank 0 alone writes it. While off, the writes above and make_dirs do nothing.
void set_writes_enabled(bool enabled);
bool writes_enabled();
// Removes temp files that an interrupted run left in `dir` (names ending in `.tmp<pid>`
// whose process is gone). Returns how many it removed.
int remove_stale_temps(const std::string& dir);

std::string read_file(const std::string& path, uint64_t max_bytes = kMaxDataBytes);
// A plain or gzip-compressed file, decompressed; more than `max_bytes` is an error
// (reading stops there, so a decompression bomb costs `max_bytes` at most). Where the
// first bytes say how long the whole must be, `expected_size(first bytes)` returns
// that length and reading stops as soon as the data runs past it.
std::string read_maybe_gzip(const std::string& path, uint64_t max_bytes = kMaxDataBytes,
                            const std::function<uint64_t(const std::string&)>& expected_size = nullptr);
// A zip archive (PyTorch's model format) whose entries declare more than `max_bytes`
// in all, or more than `max_ratio` times the archive's size, is an error; a file that
// is not a zip archive passes (its own reader rejects it).
void check_zip_archive(const std::string& path, uint64_t max_bytes = kMaxDataBytes, double max_ratio = 64);
bool file_exists(const std::string& path);
void make_dirs(const std::string& path);

// YAML from text or a file, checked: duplicate keys, more than kMaxYamlNodes nodes
// once aliases are expanded, nesting deeper than kMaxYamlDepth, or keys that are not
// plain scalars are errors naming `origin` and the line.
YAML::Node load_yaml(const std::string& text, const std::string& origin);
YAML::Node load_yaml_file(const std::string& path);
void check_yaml(const YAML::Node& node, const std::string& origin);
// YAML as JSON: unquoted scalars that read as integers, numbers or booleans become
// those; everything else a string. Bounded like check_yaml.
nlohmann::json yaml_to_json(const YAML::Node& node);
// JSON text, at most `max_bytes`, parsed; an error names `origin`.
nlohmann::json parse_json(const std::string& text, const std::string& origin, uint64_t max_bytes = kMaxJsonBytes);

// JSON as text; bytes that are not UTF-8 are written as U+FFFD, never an error.
std::string json_text(const nlohmann::json& j, int indent = 1);

// `s` for an error message: control and non-ASCII bytes escaped, cut to `max` bytes.
std::string excerpt(const std::string& s, size_t max = 60);
// Byte offset of the first invalid UTF-8 sequence in `s`, or std::string::npos.
size_t invalid_utf8_at(const std::string& s);

}  // namespace antidote
