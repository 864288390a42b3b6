// `antidote list`: the registered datasets, models, attacks, identification methods and
// defenses, a line each, or with --options each one's option keys.
#include <iostream>
#include <memory>
#include <string>

#include "antidote/attacks/attack.hpp"
#include "antidote/cli/cli.hpp"
#include "antidote/core/options.hpp"
#include "antidote/data/data.hpp"
#include "antidote/defenses/defense.hpp"
#include "antidote/defenses/identify/identify.hpp"
#include "antidote/models/model.hpp"
#include "antidote/pipeline/config.hpp"

namespace antidote::cli {

namespace {

struct ListArgs {
  bool options = false;
  std::string only;
};

// One registry's entries: a line each, or with `options` each entry's keys.
template <class R>
void list_registry(const std::string& title, bool options, const std::string& only) {
  if (only.empty()) std::cout << title << ":\n";
  for (const auto& [name, entry] : R::instance().entries()) {
    if (!only.empty() && name != only) continue;
    if (!options) {
      std::cout << fmt::format("  {:<16} {}\n", name, entry.summary);
    } else if (entry.options) {
      auto docs = entry.options();
      std::cout << (docs.empty() ? name + ": no options\n" : format_option_docs(name, docs)) << "\n";
    } else {
      std::cout << name << ": its keys are not declared in a table yet (docs/ and the config examples name them)\n\n";
    }
  }
}

int cmd_list(bool options, const std::string& only) {
  const bool config = only == "config";
  const bool known = only.empty() || config || DatasetRegistry::instance().has(only) ||
                     ModelRegistry::instance().has(only) || AttackRegistry::instance().has(only) ||
                     IdentifierRegistry::instance().has(only) || DefenseRegistry::instance().has(only);
  if (!known)
    fail("list: no dataset, model, attack, identification method or defense is called '{}' (or 'config')", only);
  // The config file's own keys (top level, a dataset entry, `train:`) come first.
  if (options && (only.empty() || config)) std::cout << format_option_docs("config", config_option_docs()) << "\n";
  if (config) {
    if (!options) std::cout << "config: the experiment file's keys (antidote list --options config)\n";
    return 0;
  }
  list_registry<DatasetRegistry>("datasets", options, only);
  list_registry<ModelRegistry>("models", options, only);
  list_registry<AttackRegistry>("attacks", options, only);
  list_registry<IdentifierRegistry>("identification methods (bedkd's identify, antidote identify --method)", options,
                                    only);
  list_registry<DefenseRegistry>("defenses", options, only);
  return 0;
}

}  // namespace

Subcommand add_list(CLI::App& app) {
  auto a = std::make_shared<ListArgs>();
  auto* list = app.add_subcommand("list", "registered models, attacks, identification methods and defenses");
  list->add_flag("--options", a->options, "each component's option keys: default, meaning, rule");
  list->add_option("name", a->only, "only this component");
  return {list, [a] { return cmd_list(a->options, a->only); }};
}

}  // namespace antidote::cli
