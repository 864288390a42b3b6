// The IDX reader on arbitrary bytes, plain and through the gzip path: either a header
// and values that agree, or an antidote::Error.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "antidote/core/common.hpp"
#include "antidote/data/formats.hpp"

using namespace antidote;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const uint64_t limit = 1 << 20;  // small, so that large promises are exercised as errors
  try {
    const auto h = parse_idx(bytes, "input", limit);
    if (h.offset + h.count != bytes.size()) __builtin_trap();
  } catch (const Error&) {
  }
  // The same bytes as a file (gzip or plain), read with the header's promise as bound.
  static const int fd = ::memfd_create("idx", 0);
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) return 0;
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  try {
    const auto read = read_maybe_gzip(path, limit, [&](const std::string& head) {
      const auto h = parse_idx_header(head, path, limit);
      return h.offset + h.count;
    });
    parse_idx(read, path, limit);
  } catch (const Error&) {
  }
  return 0;
}
