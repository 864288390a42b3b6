// Options declared once. A component lists its keys in one table: the key, where the
// value lives in the component's options struct, one line of meaning and the rule the
// value must meet. The table reads a config's keys into the struct and checks them,
// lists them for `antidote list --options`, and writes the resolved values into
// results.json. Defaults live in the struct's initializers (or in a recipe function
// that fills the struct per modality), never in the table.
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <any>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "antidote/core/common.hpp"

namespace antidote {

// The rule a value must meet and the words that say it ("must be positive").
template <class T>
struct Rule {
  std::function<bool(const T&)> holds;
  std::string says;
};

template <class T>
Rule<T> positive() {
  return {[](const T& v) { return v > 0; }, "must be positive"};
}
template <class T>
Rule<T> at_least(T lo, std::string note = "") {
  return {[lo](const T& v) { return v >= lo; }, fmt::format("must be >= {}{}", lo, note)};
}
inline Rule<double> within(double lo, double hi, std::string note = "") {
  return {[lo, hi](const double& v) { return v >= lo && v <= hi; },
          fmt::format("must lie in [{}, {}]{}", lo, hi, note)};
}
inline Rule<double> within_below(double lo, double hi) {
  return {[lo, hi](const double& v) { return v >= lo && v < hi; }, fmt::format("must lie in [{}, {})", lo, hi)};
}
Rule<std::string> one_of(std::vector<std::string> choices);

// What `antidote list --options` prints for one key.
struct OptionDoc {
  std::string key, type, value, meaning, rule;
  std::string group;  // OptionTable::group's tag, "" for none
};
using OptionDocs = std::vector<OptionDoc>;

template <class T>
struct is_list : std::false_type {};
template <class T>
struct is_list<std::vector<T>> : std::true_type {};

// A value as a config would spell it.
template <class T>
std::string option_text(const T& v) {
  if constexpr (std::is_same_v<T, bool>)
    return v ? "true" : "false";
  else if constexpr (std::is_same_v<T, std::string>)
    return v.empty() ? "''" : v;
  else if constexpr (is_list<T>::value)
    return fmt::format("[{}]", fmt::join(v, ", "));
  else
    return fmt::format("{}", v);
}

template <class T>
const char* option_type() {
  if constexpr (std::is_same_v<T, std::vector<std::string>>)
    return "a list of strings";
  else if constexpr (is_list<T>::value)
    return "a list of numbers";
  else
    return type_name<T>();
}

// A field of a member of C (c.outer.inner), for add().
template <class C, class M, class T>
std::function<T&(C&)> nested(M C::*outer, T M::*inner) {
  return [outer, inner](C& c) -> T& { return (c.*outer).*inner; };
}

template <class C>
class OptionTable {
 public:
  // A member of C, or a field nested deeper (reached through `at`).
  template <class T>
  OptionTable& add(const std::string& key, T C::*member, std::string meaning, Rule<T> rule = {}) {
    return add<T>(
        key, [member](C& c) -> T& { return c.*member; }, std::move(meaning), std::move(rule));
  }
  template <class T>
  OptionTable& add(const std::string& key, std::function<T&(C&)> at, std::string meaning, Rule<T> rule = {}) {
    Entry e;
    e.doc = {key, option_type<T>(), "", std::move(meaning), rule.says, ""};
    e.read = [key, at](Params& p, C& c, const std::string& pre) { at(c) = p.get<T>(pre + key, at(c)); };
    e.check = [key, at, rule](C& c, const std::string& ctx, const std::string& pre) {
      if (rule.holds && !rule.holds(at(c))) fail("{}: {}{} {}, got {}", ctx, pre, key, rule.says, option_text(at(c)));
    };
    e.text = [at](C& c) { return option_text(at(c)); };
    e.json = [at](C& c) { return nlohmann::json(at(c)); };
    e.at = at;
    entries_.push_back(std::move(e));
    return *this;
  }
  // The key added last, when the config does not give it and the struct still holds
  // `unset`, takes `from` (the resolved values of other keys); `says` names it.
  template <class T>
  OptionTable& follows(T unset, std::function<T(const C&)> from, const std::string& says) {
    auto& e = entries_.back();
    auto at = std::any_cast<std::function<T&(C&)>>(e.at);
    e.doc.meaning += " (unset: " + says + ")";
    e.follow = [at, unset, from, key = e.doc.key](Params& p, C& c, const std::string& pre) {
      if (!p.has(pre + key) && at(c) == unset) at(c) = from(c);
    };
    return *this;
  }
  // Tags the key added last (e.g. the keys only one stage reads).
  OptionTable& group(std::string name) {
    entries_.back().doc.group = std::move(name);
    return *this;
  }

  // Every key of the table that `p` gives overrides `c`; then the followers resolve and
  // every rule is checked (failing with the key, the rule and the value).
  void read(Params& p, C& c, const std::string& prefix = "") const {
    for (const auto& e : entries_) e.read(p, c, prefix);
    for (const auto& e : entries_)
      if (e.follow) e.follow(p, c, prefix);
    for (const auto& e : entries_) e.check(c, p.context(), prefix);
  }
  // The keys of a group that `p` gives.
  std::vector<std::string> given(const Params& p, const std::string& group, const std::string& prefix = "") const {
    std::vector<std::string> keys;
    for (const auto& e : entries_)
      if (e.doc.group == group && p.has(prefix + e.doc.key)) keys.push_back(prefix + e.doc.key);
    return keys;
  }
  // `c` with its followers resolved, as a config that gives no key would leave it (the
  // defaults a listing shows).
  C resolved(C c) const {
    Params none(YAML::Node(), "defaults");
    for (const auto& e : entries_)
      if (e.follow) e.follow(none, c, "");
    return c;
  }
  // The resolved values, key -> value, as results.json records them.
  nlohmann::json values(const C& c, const std::string& prefix = "") const {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& e : entries_) out[prefix + e.doc.key] = e.json(const_cast<C&>(c));
    return out;
  }
  // One line per key; the value column shows each profile's default (e.g. per
  // modality), written once when they agree.
  OptionDocs docs(const std::vector<std::pair<std::string, C>>& profiles, const std::string& prefix = "") const {
    OptionDocs out;
    for (const auto& e : entries_) {
      auto d = e.doc;
      d.key = prefix + d.key;
      std::vector<std::string> texts;
      for (const auto& [name, c] : profiles) texts.push_back(e.text(const_cast<C&>(c)));
      bool same = std::all_of(texts.begin(), texts.end(), [&](const std::string& t) { return t == texts.front(); });
      for (size_t i = 0; i < texts.size(); ++i) {
        if (same && i > 0) break;
        d.value += (i ? ", " : "") + (same || profiles[i].first.empty() ? "" : profiles[i].first + " ") + texts[i];
      }
      out.push_back(std::move(d));
    }
    return out;
  }

 private:
  struct Entry {
    OptionDoc doc;
    std::any at;  // std::function<T&(C&)>, for follows()
    std::function<void(Params&, C&, const std::string&)> read, follow;
    std::function<void(C&, const std::string&, const std::string&)> check;
    std::function<std::string(C&)> text;
    std::function<nlohmann::json(C&)> json;
  };
  std::vector<Entry> entries_;
};

// The listing of a component class T with a nested Options struct (its defaults) and a
// static table(), for a Registrar.
template <class T>
OptionDocs docs_of() {
  return T::table().docs({{"", typename T::Options{}}});
}
// The listing of a table over C with C's own defaults.
template <class C>
OptionDocs table_docs(const OptionTable<C>& table) {
  return table.docs({{"", C{}}});
}

// `antidote list --options`: a component's keys as aligned lines.
std::string format_option_docs(const std::string& component, const OptionDocs& docs);

}  // namespace antidote
