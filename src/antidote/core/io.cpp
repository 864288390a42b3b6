#include "antidote/core/io.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "antidote/core/common.hpp"

namespace antidote {

namespace fs = std::filesystem;

// ---- writing --------------------------------------------------------------------

namespace {
std::string temp_path_for(const std::string& path) { return path + fmt::format(".tmp{}", ::getpid()); }

// Writes `content` to `tmp` and syncs it; "" on success, else the reason.
std::string write_synced(const std::string& tmp, const std::string& content) {
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) return std::strerror(errno);
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, std::min<size_t>(content.size() - done, size_t(1) << 30));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::string why = n < 0 ? std::strerror(errno) : "short write";
      ::close(fd);
      return why;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 && errno != EINVAL) {  // EINVAL: a file system without fsync
    std::string why = std::strerror(errno);
    ::close(fd);
    return why;
  }
  if (::close(fd) != 0) return std::strerror(errno);
  return "";
}

void create_parent(const std::string& path) {
  fs::path parent = fs::path(path).parent_path();
  if (parent.empty()) return;
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) fail("cannot create the folder '{}' for '{}': {}", parent.string(), path, ec.message());
}

// Makes the renames durable; a folder that cannot be synced is no error.
void sync_folder_of(const std::string& path) {
  fs::path parent = fs::path(path).parent_path();
  int fd = ::open(parent.empty() ? "." : parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  [[maybe_unused]] int rc = ::fsync(fd);
  ::close(fd);
}
}  // namespace

namespace {
bool g_writes_enabled = true;
}  // namespace

void set_writes_enabled(bool enabled) { g_writes_enabled = enabled; }
bool writes_enabled() { return g_writes_enabled; }

void write_file_atomic(const std::string& path, const std::string& content) { write_files_atomic({{path, content}}); }

void write_files_atomic(const std::vector<std::pair<std::string, std::string>>& files) {
  if (!g_writes_enabled) return;
  std::vector<std::string> temps;
  auto discard_temps = [&] {
    for (const auto& t : temps) ::unlink(t.c_str());
  };
  for (const auto& [path, content] : files) {
    create_parent(path);
    temps.push_back(temp_path_for(path));
    const std::string why = write_synced(temps.back(), content);
    if (!why.empty()) {
      discard_temps();
      fail("cannot write '{}': {} (the previous file, if any, is unchanged)", path, why);
    }
  }
  for (size_t i = 0; i < files.size(); ++i) {
    if (std::rename(temps[i].c_str(), files[i].first.c_str()) != 0) {
      const std::string why = std::strerror(errno);
      discard_temps();
      fail("cannot replace '{}': {}", files[i].first, why);
    }
  }
  if (!files.empty()) sync_folder_of(files.front().first);
}

int remove_stale_temps(const std::string& dir) {
  std::error_code ec;
  int removed = 0;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const size_t at = name.rfind(".tmp");
    if (at == std::string::npos || at + 4 == name.size()) continue;
    const std::string digits = name.substr(at + 4);
    if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto pid = static_cast<pid_t>(std::stol(digits));
    if (pid == ::getpid() || ::kill(pid, 0) == 0 || errno == EPERM) continue;  // its writer still runs
    std::error_code rm;
    if (fs::remove(it->path(), rm)) ++removed;
  }
  return removed;
}

bool file_exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

void make_dirs(const std::string& path) {
  if (!g_writes_enabled) return;
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) fail("cannot create the folder '{}': {}", path, ec.message());
}

// ---- reading --------------------------------------------------------------------

std::string read_file(const std::string& path, uint64_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open file '{}'", path);
  std::string data;
  char buf[1 << 16];
  // Chunks rather than the file's size: pipes and devices have none.
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    data.append(buf, static_cast<size_t>(in.gcount()));
    if (data.size() > max_bytes)
      fail("'{}' is larger than {} bytes, more than antidote reads from one file", path, max_bytes);
  }
  if (in.bad()) fail("cannot read file '{}'", path);
  return data;
}

std::string read_maybe_gzip(const std::string& path, uint64_t max_bytes,
                            const std::function<uint64_t(const std::string&)>& expected_size) {
  // gzread reads gzip and plain files alike.
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) fail("cannot open '{}'", path);
  std::string data;
  char buf[1 << 16];
  int n;
  bool sized = !expected_size;
  while ((n = gzread(f, buf, sizeof buf)) > 0) {
    data.append(buf, static_cast<size_t>(n));
    if (!sized) {
      sized = true;
      uint64_t expected = 0;
      try {
        expected = expected_size(data);
      } catch (...) {
        gzclose(f);
        throw;
      }
      if (expected > 0) {
        max_bytes = std::min(max_bytes, expected);
        data.reserve(static_cast<size_t>(max_bytes));
      }
    }
    if (data.size() > max_bytes) {
      gzclose(f);
      if (expected_size && max_bytes < kMaxDataBytes)
        fail("'{}' holds more than the {} bytes its header promises", path, max_bytes);
      fail("'{}' holds more than {} bytes, more than antidote reads from one file", path, max_bytes);
    }
  }
  int err = Z_OK;
  const char* msg = gzerror(f, &err);
  const std::string why = msg && *msg ? msg : "read error";  // gzclose frees msg
  const int closed = gzclose(f);
  if (n < 0 || (err != Z_OK && err != Z_STREAM_END)) fail("corrupt file '{}': {}", path, excerpt(why, 200));
  if (closed != Z_OK) fail("corrupt file '{}': it ends inside a compressed block (truncated?)", path);
  return data;
}

namespace {
uint64_t le(const std::string& s, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[at + static_cast<size_t>(i)]);
  return v;
}

std::string read_range(std::ifstream& in, uint64_t offset, uint64_t size) {
  std::string s(static_cast<size_t>(size), '\0');
  in.clear();
  in.seekg(static_cast<std::streamoff>(offset));
  in.read(s.data(), static_cast<std::streamsize>(size));
  if (static_cast<uint64_t>(in.gcount()) != size) s.clear();
  return s;
}

// The uncompressed sizes that a zip archive's central directory declares, summed.
uint64_t declared_zip_bytes(const std::string& cd, uint64_t entries, const std::string& path) {
  uint64_t total = 0;
  size_t at = 0;
  for (uint64_t e = 0; e < entries; ++e) {
    if (at + 46 > cd.size() || le(cd, at, 4) != 0x02014b50)
      fail("malformed zip archive '{}': bad central directory", path);
    uint64_t size = le(cd, at + 24, 4);
    const size_t name = le(cd, at + 28, 2), extra = le(cd, at + 30, 2), comment = le(cd, at + 32, 2);
    if (at + 46 + name + extra + comment > cd.size()) fail("malformed zip archive '{}': truncated entry", path);
    if (size == 0xffffffffu) {  // zip64: the real size is the extra field's first value
      for (size_t x = at + 46 + name; x + 4 <= at + 46 + name + extra;) {
        const size_t id = le(cd, x, 2), len = le(cd, x + 2, 2);
        if (id == 0x0001 && len >= 8 && x + 12 <= cd.size()) size = le(cd, x + 4, 8);
        x += 4 + len;
      }
    }
    total += std::min<uint64_t>(size, uint64_t(1) << 62);
    at += 46 + name + extra + comment;
  }
  return total;
}
}  // namespace

void check_zip_archive(const std::string& path, uint64_t max_bytes, double max_ratio) {
  std::error_code ec;
  const uint64_t file_size = fs::file_size(path, ec);
  if (ec || file_size < 22) return;
  std::ifstream in(path, std::ios::binary);
  const uint64_t tail_size = std::min<uint64_t>(file_size, 22 + 65535);
  const std::string tail = read_range(in, file_size - tail_size, tail_size);
  size_t eocd = std::string::npos;
  for (size_t i = tail.size() >= 22 ? tail.size() - 22 + 1 : 0; i-- > 0;)
    if (le(tail, i, 4) == 0x06054b50) {
      eocd = i;
      break;
    }
  if (eocd == std::string::npos) return;  // not a zip archive
  uint64_t entries = le(tail, eocd + 10, 2), cd_size = le(tail, eocd + 12, 4), cd_offset = le(tail, eocd + 16, 4);
  if ((entries == 0xffff || cd_size == 0xffffffffu || cd_offset == 0xffffffffu) && eocd >= 20 &&
      le(tail, eocd - 20, 4) == 0x07064b50) {
    const std::string z64 = read_range(in, le(tail, eocd - 20 + 8, 8), 56);
    if (z64.size() != 56 || le(z64, 0, 4) != 0x06064b50) fail("malformed zip archive '{}': bad zip64 record", path);
    entries = le(z64, 32, 8), cd_size = le(z64, 40, 8), cd_offset = le(z64, 48, 8);
  }
  if (cd_offset > file_size || cd_size > file_size - cd_offset || entries > cd_size / 46)
    fail("malformed zip archive '{}': its directory lies outside the file", path);
  const uint64_t declared = declared_zip_bytes(read_range(in, cd_offset, cd_size), entries, path);
  const double allowed = std::min<double>(static_cast<double>(max_bytes), max_ratio * file_size + (1 << 20));
  if (static_cast<double>(declared) > allowed)
    fail("'{}' declares {} bytes once unpacked from {} on disk: more than antidote unpacks (a zip bomb?)", path,
         declared, file_size);
}

// ---- YAML and JSON ----------------------------------------------------------------

namespace {
struct YamlWalk {
  const std::string& origin;
  int64_t nodes = 0;
};

void walk_yaml(const YAML::Node& n, int depth, YamlWalk& w) {
  if (++w.nodes > kMaxYamlNodes)
    fail("{}: more than {} YAML nodes once aliases are expanded (an alias bomb?)", w.origin, kMaxYamlNodes);
  if (depth > kMaxYamlDepth) fail("{}: YAML nested deeper than {} levels", w.origin, kMaxYamlDepth);
  if (n.IsMap()) {
    std::set<std::string> seen;
    for (const auto& kv : n) {
      if (!kv.first.IsScalar()) fail("{} line {}: a key must be a plain value", w.origin, kv.first.Mark().line + 1);
      if (!seen.insert(kv.first.Scalar()).second)
        fail("{} line {}: key '{}' appears twice in one mapping", w.origin, kv.first.Mark().line + 1,
             excerpt(kv.first.Scalar()));
      walk_yaml(kv.second, depth + 1, w);
    }
  } else if (n.IsSequence()) {
    for (const auto& e : n) walk_yaml(e, depth + 1, w);
  }
}

nlohmann::json scalar_to_json(const YAML::Node& n) {
  const std::string& s = n.Scalar();
  if (n.Tag() == "!") return s;  // quoted: a string whatever it reads as
  try {
    size_t used = 0;
    long long v = std::stoll(s, &used);
    if (used == s.size()) return v;
  } catch (const std::exception&) {
  }
  try {
    size_t used = 0;
    double v = std::stod(s, &used);
    if (used == s.size() && std::isfinite(v)) return v;
  } catch (const std::exception&) {
  }
  if (s == "true") return true;
  if (s == "false") return false;
  return s;
}

nlohmann::json convert_yaml(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      nlohmann::json j = nlohmann::json::object();
      for (const auto& kv : n) j[kv.first.Scalar()] = convert_yaml(kv.second);
      return j;
    }
    case YAML::NodeType::Sequence: {
      nlohmann::json j = nlohmann::json::array();
      for (const auto& e : n) j.push_back(convert_yaml(e));
      return j;
    }
    case YAML::NodeType::Scalar:
      return scalar_to_json(n);
    default:
      return nullptr;
  }
}
}  // namespace

void check_yaml(const YAML::Node& node, const std::string& origin) {
  YamlWalk w{origin};
  if (node) walk_yaml(node, 0, w);
}

YAML::Node load_yaml(const std::string& text, const std::string& origin) {
  if (text.size() > kMaxConfigBytes)
    fail("{}: {} bytes of YAML, more than the {} antidote reads", origin, text.size(), kMaxConfigBytes);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    fail("{} is not valid YAML: {}", origin, excerpt(e.what(), 200));
  }
  check_yaml(root, origin);
  return root;
}

YAML::Node load_yaml_file(const std::string& path) {
  if (!file_exists(path)) fail("file not found: '{}'", path);
  return load_yaml(read_file(path, kMaxConfigBytes), fmt::format("'{}'", path));
}

nlohmann::json yaml_to_json(const YAML::Node& node) {
  check_yaml(node, "YAML value");
  return node ? convert_yaml(node) : nlohmann::json(nullptr);
}

nlohmann::json parse_json(const std::string& text, const std::string& origin, uint64_t max_bytes) {
  if (text.size() > max_bytes)
    fail("{}: {} bytes of JSON, more than the {} antidote reads", origin, text.size(), max_bytes);
  // Deeper documents would overflow the stack of the recursive readers and writers.
  struct TooDeep {};
  auto depth_limit = [](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
    if (depth > kMaxYamlDepth) throw TooDeep{};
    return true;
  };
  try {
    return nlohmann::json::parse(text, depth_limit);
  } catch (const TooDeep&) {
    fail("{}: JSON nested deeper than {} levels", origin, kMaxYamlDepth);
  } catch (const nlohmann::json::exception& e) {
    fail("{} is not valid JSON: {}", origin, excerpt(e.what(), 200));
  }
}

std::string json_text(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

// ---- text --------------------------------------------------------------------------

std::string excerpt(const std::string& s, size_t max) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\t')
      out += "\\t";
    else if (c == '\n')
      out += "\\n";
    else if (c == '\r')
      out += "\\r";
    else if (c < 0x20 || c >= 0x7f)
      out += fmt::format("\\x{:02x}", c);
    else
      out += static_cast<char>(c);
  }
  if (s.size() > max) out += fmt::format("... ({} bytes)", s.size());
  return out;
}

size_t invalid_utf8_at(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    unsigned lo = 0x80, hi = 0xbf;  // the allowed range of the second byte
    if (c >= 0xc2 && c <= 0xdf)
      len = 2;
    else if (c == 0xe0)
      len = 3, lo = 0xa0;  // no overlong 3-byte forms
    else if (c == 0xed)
      len = 3, hi = 0x9f;  // no surrogates
    else if (c >= 0xe1 && c <= 0xef)
      len = 3;
    else if (c == 0xf0)
      len = 4, lo = 0x90;  // no overlong 4-byte forms
    else if (c >= 0xf1 && c <= 0xf3)
      len = 4;
    else if (c == 0xf4)
      len = 4, hi = 0x8f;  // nothing above U+10FFFF
    else
      return i;
    if (i + len > n || p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k)
      if (p[i + k] < 0x80 || p[i + k] > 0xbf) return i;
    i += len;
  }
  return std::string::npos;
}

}  // namespace antidote
