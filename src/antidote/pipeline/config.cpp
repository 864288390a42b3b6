#include "antidote/pipeline/config.hpp"

#include <cmath>
#include <set>

namespace antidote {

namespace {
void check_keys(const YAML::Node& node, const std::set<std::string>& known, const std::string& context) {
  if (!node || node.IsNull()) return;
  if (!node.IsMap()) fail("{}: expected a mapping", context);
  for (const auto& kv : node) {
    auto key = kv.first.as<std::string>();
    if (!known.count(key)) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      fail("{}: unknown key '{}' (known keys: {})", context, key, list);
    }
  }
}

template <class T>
T read(const YAML::Node& node, const std::string& key, const T& fallback, const std::string& context) {
  return read_option<T>(node, key, fallback, context);
}

// A scalar or a list of entries: both accepted where a grid axis is expected.
std::vector<YAML::Node> as_list(const YAML::Node& n) {
  std::vector<YAML::Node> out;
  if (!n || n.IsNull()) return out;
  if (n.IsSequence()) {
    for (const auto& e : n) out.push_back(e);
  } else {
    out.push_back(n);
  }
  return out;
}

// Entries of attacks/defenses may be a bare name or a mapping with `name`.
std::pair<std::string, YAML::Node> named_entry(const YAML::Node& e, const std::string& context) {
  if (e.IsScalar()) return {e.as<std::string>(), YAML::Node(YAML::NodeType::Map)};
  if (!e.IsMap() || !e["name"]) fail("{}: each entry needs a 'name'", context);
  YAML::Node rest(YAML::NodeType::Map);
  for (const auto& kv : e)
    if (kv.first.as<std::string>() != "name") rest[kv.first.as<std::string>()] = YAML::Clone(kv.second);
  return {e["name"].as<std::string>(), rest};
}
}  // namespace

Modality dataset_modality(const std::string& name) { return dataset_kind(name).modality; }

std::string default_dataset_path(const std::string& name) { return dataset_kind(name).default_path; }

int64_t declared_classes(const std::string& name) { return dataset_kind(name).classes; }

namespace {
// The config's `train:` section: the training keys every trainer shares, and
// group_by_length (text batches of rows of similar length).
struct TrainSection {
  TrainOptions train;
};

const OptionTable<TrainSection>& train_table() {
  static const OptionTable<TrainSection> t = [] {
    OptionTable<TrainSection> t;
    train_keys(t, &TrainSection::train);
    t.add("group_by_length", nested(&TrainSection::train, &TrainOptions::group_by_length),
          "text: batches of rows of similar length, each cut to its longest row");
    return t;
  }();
  return t;
}
}  // namespace

TrainOptions TrainConfig::resolve(Modality m) const {
  TrainOptions o;
  if (m == Modality::Image) {
    o.epochs = 6;
    o.batch_size = 128;
    o.optimizer = {"sgd", 0.05, 0.9, 5e-4};
  } else {
    o.epochs = 6;
    o.batch_size = 32;
    o.optimizer = {"adam", 1e-3, 0.9, 0.0};
  }
  TrainSection section{o};
  Params p(node, "train");
  train_table().read(p, section);
  p.check_consumed();
  o = section.train;
  if (!(o.warmup_epochs <= static_cast<double>(o.epochs)))
    fail("train: warmup_epochs must lie in [0, epochs = {}], got {}", o.epochs, o.warmup_epochs);
  return o;
}

std::string AttackConfig::label() const { return name; }

ExperimentConfig parse_config(const YAML::Node& root, const std::string& origin) {
  ExperimentConfig c;
  c.source = YAML::Clone(root);
  // An empty document (or one holding only comments) is the all-defaults config.
  if (root && !root.IsNull())
    check_keys(root,
             {"seed", "threads", "device", "dataset", "datasets", "model", "train", "attacks", "defenses", "asr_floor",
              "eval_batch_size", "monitor_limit"},
             origin);
  if (root["seed"]) {
    c.seeds.clear();
    for (const auto& s : as_list(root["seed"])) {
      try {
        c.seeds.push_back(s.as<uint64_t>());
      } catch (const YAML::Exception&) {
        fail("{}: seed '{}' is not a non-negative integer", origin, YAML::Dump(s));
      }
    }
    if (c.seeds.empty()) fail("{}: seed list is empty", origin);
  }
  c.threads = read<int>(root, "threads", c.threads, origin);
  c.device = read<std::string>(root, "device", c.device, origin);
  c.asr_floor = read<bool>(root, "asr_floor", c.asr_floor, origin);
  c.eval_batch_size = read<int64_t>(root, "eval_batch_size", c.eval_batch_size, origin);
  c.monitor_limit = read<int64_t>(root, "monitor_limit", c.monitor_limit, origin);
  if (c.eval_batch_size < 1) fail("{}: eval_batch_size must be positive, got {}", origin, c.eval_batch_size);
  if (c.monitor_limit < 0) fail("{}: monitor_limit must be >= 0 (0 = all rows), got {}", origin, c.monitor_limit);
  if (root["dataset"] && root["datasets"]) fail("{}: give either 'dataset' or 'datasets', not both", origin);
  auto dnodes = as_list(root["dataset"] ? root["dataset"] : root["datasets"]);
  for (size_t i = 0; i < dnodes.size(); ++i) {
    const auto& n = dnodes[i];
    std::string ctx = fmt::format("dataset[{}]", i);
    DatasetConfig d;
    if (n.IsScalar()) {
      d.name = n.as<std::string>();
    } else {
      check_keys(n,
                 {"name", "path", "train_limit", "test_limit", "max_len", "min_freq", "num_classes", "clean",
                  "triggered_test", "model", "train"},
                 ctx);
      d.name = read<std::string>(n, "name", d.name, ctx);
      d.path = read<std::string>(n, "path", d.path, ctx);
      d.clean = read<std::string>(n, "clean", d.clean, ctx);
      d.triggered_test = read<std::string>(n, "triggered_test", d.triggered_test, ctx);
      d.train_limit = read<int64_t>(n, "train_limit", 0, ctx);
      d.test_limit = read<int64_t>(n, "test_limit", 0, ctx);
      d.max_len = read<int64_t>(n, "max_len", 0, ctx);
      d.min_freq = read<int64_t>(n, "min_freq", 1, ctx);
      d.num_classes = read<int64_t>(n, "num_classes", 0, ctx);
      if (d.num_classes != 0 && (d.num_classes < 2 || d.num_classes > kMaxClasses))
        fail("{}.num_classes must lie in [2, {}] (or be 0: the labels' own count), got {}", ctx, kMaxClasses,
             d.num_classes);
      if (n["model"]) d.model = YAML::Clone(n["model"]);
      if (n["train"]) d.train = YAML::Clone(n["train"]);
    }
    dataset_modality(d.name);  // validates the name
    if (d.path.empty()) d.path = default_dataset_path(d.name);
    if (d.num_classes == 0) d.num_classes = declared_classes(d.name);
    c.datasets.push_back(d);
  }
  if (c.datasets.empty()) {
    DatasetConfig d;
    d.path = default_dataset_path(d.name);
    d.num_classes = declared_classes(d.name);
    c.datasets.push_back(d);
  }
  c.model = root["model"] ? YAML::Clone(root["model"]) : YAML::Node(YAML::NodeType::Map);
  if (!c.model.IsMap()) fail("{}: 'model' must be a mapping like {{arch: cnn}}", origin);
  c.train.node = root["train"] ? YAML::Clone(root["train"]) : YAML::Node(YAML::NodeType::Map);
  c.train.resolve(Modality::Image);  // validates keys early
  auto anodes = as_list(root["attacks"]);
  for (size_t i = 0; i < anodes.size(); ++i) {
    std::string ctx = fmt::format("attacks[{}]", i);
    auto [name, rest] = named_entry(anodes[i], ctx);
    AttackConfig a;
    a.name = name;
    a.poison_rate = read<double>(rest, "poison_rate", a.poison_rate, ctx);
    a.target = read<int64_t>(rest, "target", a.target, ctx);
    rest.remove("poison_rate");
    rest.remove("target");
    a.options = rest;
    c.attacks.push_back(a);
  }
  auto fnodes = as_list(root["defenses"]);
  for (size_t i = 0; i < fnodes.size(); ++i) {
    auto [name, rest] = named_entry(fnodes[i], fmt::format("defenses[{}]", i));
    c.defenses.push_back(DefenseConfig{name, rest});
  }
  if (c.defenses.empty()) c.defenses.push_back(DefenseConfig{"none", YAML::Node(YAML::NodeType::Map)});
  if (c.device != "cpu" && c.device.rfind("cuda", 0) != 0) fail("{}: device must be 'cpu' or 'cuda[:N]', got '{}'", origin, c.device);
  return c;
}

ExperimentConfig load_config(const std::string& path) {
  if (!file_exists(path)) fail("config file not found: '{}'", path);
  return parse_config(load_yaml_file(path), path);
}

}  // namespace antidote
