#include "antidote/pipeline/config.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>

namespace antidote {

namespace {
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

namespace {
// The suspect's and the clean reference model's training, per modality, before the
// config's `train:` keys.
TrainOptions train_defaults(Modality m) {
  TrainOptions o;
  o.epochs = 6;
  if (m == Modality::Image) {
    o.batch_size = 128;
    o.optimizer = {"sgd", 0.05, 0.9, 5e-4};
  } else {
    o.batch_size = 32;
    o.optimizer = {"adam", 1e-3, 0.9, 0.0};
  }
  return o;
}
}  // namespace

TrainOptions TrainConfig::resolve(Modality m) const {
  TrainOptions o = train_defaults(m);
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

namespace {
// 'cpu', 'cuda' or 'cuda:N': the names parse_device accepts.
bool device_name(const std::string& v) {
  if (v == "cpu" || v == "cuda") return true;
  if (v.rfind("cuda:", 0) != 0 || v.size() == 5) return false;
  return std::all_of(v.begin() + 5, v.end(), [](unsigned char ch) { return std::isdigit(ch) != 0; });
}

// The config's top-level scalars; seed (a number or a list) and the sections are read
// by hand (Sections).
const OptionTable<ExperimentConfig>& experiment_table() {
  static const OptionTable<ExperimentConfig> t = [] {
    using C = ExperimentConfig;
    OptionTable<C> t;
    t.add("threads", &C::threads, "LibTorch threads (0 = all cores)");
    t.add("precision", &C::precision,
          "of every training: fp32, or bf16 (bfloat16 autocast of convolutions and matrix products; weights, "
          "losses and evaluation in float32; fp32 where the CPU lacks bfloat16)",
          one_of({"fp32", "bf16"}));
    t.add("device", &C::device, "where models train and run",
          Rule<std::string>{device_name, "must be cpu, cuda or cuda:N"});
    t.add("asr_floor", &C::asr_floor, "train a clean reference model per dataset and seed (the ASR floor)");
    t.add("eval_batch_size", &C::eval_batch_size, "rows per batch when evaluating", positive<int64_t>());
    t.add("monitor_limit", &C::monitor_limit, "test rows a defense's per-epoch monitor evaluates",
          at_least<int64_t>(0, " (0 = all rows)"));
    return t;
  }();
  return t;
}

// A `dataset:` entry's keys; its model and train overrides are read by hand.
const OptionTable<DatasetConfig>& dataset_table() {
  static const OptionTable<DatasetConfig> t = [] {
    using D = DatasetConfig;
    OptionTable<D> t;
    t.add("name", &D::name, "fmnist, idx, sst2, olid, agnews or tsv (`antidote list`)");
    t.add("path", &D::path, "its directory ('' = the dataset's own; text datasets need one)");
    t.add("train_limit", &D::train_limit, "> 0: a seeded subset of the training rows", at_least<int64_t>(0));
    t.add("test_limit", &D::test_limit, "> 0: a seeded subset of the test rows", at_least<int64_t>(0));
    t.add("max_len", &D::max_len, "text: tokens per row (0 = longest training sentence + 1, capped at 128)",
          at_least<int64_t>(0));
    t.add("min_freq", &D::min_freq, "text: words seen fewer times map to [UNK]", at_least<int64_t>(1));
    t.add("num_classes", &D::num_classes, "classes of the labels",
          Rule<int64_t>{[](const int64_t& v) { return v == 0 || (v >= 2 && v <= kMaxClasses); },
                        fmt::format("must be 0 (the dataset's declared count, or the labels' own) or lie in [2, {}]",
                                    kMaxClasses)});
    t.add("clean", &D::clean, "your own clean labelled set (a TSV file, or an IDX prefix)");
    t.add("triggered_test", &D::triggered_test, "your own triggered test rows, true labels (with attacks: [none])");
    return t;
  }();
  return t;
}

// The top-level keys that are not scalars, taken from `p` so that its unknown-key check
// knows them.
struct Sections {
  YAML::Node seed, dataset, datasets, model, train, attacks, defenses;
  explicit Sections(Params& p)
      : seed(p.raw("seed")),
        dataset(p.raw("dataset")),
        datasets(p.raw("datasets")),
        model(p.raw("model")),
        train(p.raw("train")),
        attacks(p.raw("attacks")),
        defenses(p.raw("defenses")) {}
};

std::vector<uint64_t> parse_seeds(const YAML::Node& node, const std::string& origin) {
  std::vector<uint64_t> seeds;
  for (const auto& s : as_list(node)) {
    try {
      seeds.push_back(s.as<uint64_t>());
    } catch (const YAML::Exception&) {
      fail("{}: seed '{}' is not a non-negative integer", origin, YAML::Dump(s));
    }
  }
  if (seeds.empty()) fail("{}: seed list is empty", origin);
  return seeds;
}

// A bare name (`dataset: sst2`) or a mapping of dataset_table()'s keys plus model and
// train overrides. Params reads a copy: raw() adds an absent key to its node.
DatasetConfig parse_dataset(const YAML::Node& n, const std::string& ctx) {
  Params p(n.IsScalar() ? YAML::Node() : YAML::Clone(n), ctx);
  if (n.IsScalar()) p.set("name", n);
  DatasetConfig d;
  dataset_table().read(p, d);
  if (auto model = p.raw("model")) d.model = YAML::Clone(model);
  if (auto train = p.raw("train")) d.train = YAML::Clone(train);
  p.check_consumed();
  dataset_modality(d.name);  // validates the name
  // Given as '' or 0 or not at all: the registry's (fmnist's package directory, its 10 classes).
  if (d.path.empty()) d.path = default_dataset_path(d.name);
  if (d.num_classes == 0) d.num_classes = declared_classes(d.name);
  return d;
}
}  // namespace

ExperimentConfig parse_config(const YAML::Node& root, const std::string& origin) {
  ExperimentConfig c;
  c.source = YAML::Clone(root);
  // An empty document (or one holding only comments) is the all-defaults config. Params
  // reads a copy: raw() adds an absent key to its node.
  Params p(YAML::Clone(root), origin);
  experiment_table().read(p, c);
  const Sections s(p);
  p.check_consumed();
  if (s.seed) c.seeds = parse_seeds(s.seed, origin);
  if (s.dataset && s.datasets) fail("{}: give either 'dataset' or 'datasets', not both", origin);
  auto dnodes = as_list(s.dataset ? s.dataset : s.datasets);
  for (size_t i = 0; i < dnodes.size(); ++i)
    c.datasets.push_back(parse_dataset(dnodes[i], fmt::format("dataset[{}]", i)));
  if (c.datasets.empty()) c.datasets.push_back(parse_dataset(YAML::Node(), "dataset"));
  c.model = s.model ? YAML::Clone(s.model) : YAML::Node(YAML::NodeType::Map);
  if (!c.model.IsMap()) fail("{}: 'model' must be a mapping like {{arch: cnn}}", origin);
  c.train.node = s.train ? YAML::Clone(s.train) : YAML::Node(YAML::NodeType::Map);
  c.train.resolve(Modality::Image);  // validates keys early
  auto anodes = as_list(s.attacks);
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
  auto fnodes = as_list(s.defenses);
  for (size_t i = 0; i < fnodes.size(); ++i) {
    auto [name, rest] = named_entry(fnodes[i], fmt::format("defenses[{}]", i));
    // A list of clean budgets runs the defense once at each: `clean_samples: [500, 4000]`.
    const YAML::Node budgets = static_cast<const YAML::Node&>(rest)["clean_samples"];
    if (!budgets || !budgets.IsSequence()) {
      c.defenses.push_back(DefenseConfig{name, rest});
      continue;
    }
    if (budgets.size() == 0) fail("{}: defenses[{}] ({}): clean_samples is an empty list", origin, i, name);
    for (const auto& budget : budgets) {
      YAML::Node one = YAML::Clone(rest);
      one["clean_samples"] = YAML::Node(budget);
      c.defenses.push_back(DefenseConfig{name, one});
    }
  }
  if (c.defenses.empty()) c.defenses.push_back(DefenseConfig{"none", YAML::Node(YAML::NodeType::Map)});
  return c;
}

OptionDocs config_option_docs() {
  auto docs = table_docs(experiment_table());
  auto dataset = dataset_table().docs({{"", DatasetConfig{}}}, "dataset.");
  docs.insert(docs.end(), dataset.begin(), dataset.end());
  auto train = train_table().docs({{"image", TrainSection{train_defaults(Modality::Image)}},
                                   {"text", TrainSection{train_defaults(Modality::Text)}}},
                                  "train.");
  docs.insert(docs.end(), train.begin(), train.end());
  return docs;
}

ExperimentConfig load_config(const std::string& path) {
  if (!file_exists(path)) fail("config file not found: '{}'", path);
  return parse_config(load_yaml_file(path), path);
}

}  // namespace antidote
