// The config reader on arbitrary text: YAML loading with its limits, every top-level
// value read as each option type the configs use, and the conversion to JSON that the
// results record. Anything but an antidote::Error (a crash, a hang, a YAML or JSON
// exception escaping) is a finding.
#include <cstdint>
#include <string>

#include "antidote/core/common.hpp"

using namespace antidote;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const YAML::Node root = load_yaml(text, "config");
    if (root.IsMap()) {
      for (const auto& kv : root) {
        const std::string key = kv.first.Scalar();
        try {
          read_option<double>(root, key, 0.0, "config");
        } catch (const Error&) {
        }
        try {
          read_option<int64_t>(root, key, 0, "config");
        } catch (const Error&) {
        }
        try {
          read_option<std::string>(root, key, "", "config");
        } catch (const Error&) {
        }
        try {
          read_option<bool>(root, key, false, "config");
        } catch (const Error&) {
        }
      }
    }
    json_text(yaml_to_json(root));
  } catch (const Error&) {
  }
  return 0;
}
