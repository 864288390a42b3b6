// A name -> factory table. Each model, attack and defense registers itself from its
// own file with a static Registrar, so adding one is adding a file. An entry may also
// list its option keys (`antidote list --options`).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "antidote/core/common.hpp"
#include "antidote/core/options.hpp"

namespace antidote {

template <class T, class... Args>
class Registry {
 public:
  using Factory = std::function<std::shared_ptr<T>(Args...)>;
  struct Entry {
    Factory make;
    std::string summary;
    std::function<OptionDocs()> options;  // empty: the component has no options
  };

  static Registry& instance() {
    static Registry r;
    return r;
  }
  void add(const std::string& name, Factory make, std::string summary, std::function<OptionDocs()> options = {}) {
    entries_[name] = Entry{std::move(make), std::move(summary), std::move(options)};
  }
  bool has(const std::string& name) const { return entries_.count(name) > 0; }
  std::shared_ptr<T> create(const std::string& kind, const std::string& name, Args... args) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) {
      std::string known;
      for (const auto& [k, v] : entries_) known += (known.empty() ? "" : ", ") + k;
      fail("unknown {} '{}' (known: {})", kind, name, known);
    }
    return it->second.make(std::forward<Args>(args)...);
  }
  const std::map<std::string, Entry>& entries() const { return entries_; }

 private:
  std::map<std::string, Entry> entries_;
};

template <class R>
struct Registrar {
  Registrar(const std::string& name, typename R::Factory make, std::string summary,
            std::function<OptionDocs()> options = {}) {
    R::instance().add(name, std::move(make), std::move(summary), std::move(options));
  }
};

}  // namespace antidote
