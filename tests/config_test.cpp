// Config: defaults, unknown keys named in the error, seed lists, bad types, the
// declared keys' rules and docs, attack/defense entries as bare names or mappings; plus the core plumbing it rests
// on (Params' unknown-key detection, Rng, hash_string, write_file_atomic).
#include <gtest/gtest.h>

#include "support.hpp"
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "antidote/core/common.hpp"
#include "antidote/defenses/defense.hpp"
#include "antidote/pipeline/config.hpp"

using namespace antidote;
using antidote::testing::error_of;
namespace fs = std::filesystem;

namespace {
ExperimentConfig parse(const std::string& yaml) { return parse_config(YAML::Load(yaml), "test.yaml"); }

std::string parse_error(const std::string& yaml) {
  return error_of([&] { parse(yaml); });
}

using antidote::testing::TempDir;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}
}  // namespace

// ---- defaults ---------------------------------------------------------------------------

TEST(ConfigDefaults, EmptyMapping) {
  auto c = parse("{}");
  EXPECT_EQ(c.seeds, (std::vector<uint64_t>{0}));
  EXPECT_EQ(c.threads, 0);
  EXPECT_EQ(c.device, "cpu");
  EXPECT_TRUE(c.asr_floor);
  EXPECT_EQ(c.eval_batch_size, 512);
  EXPECT_EQ(c.monitor_limit, 2000);
  ASSERT_EQ(c.datasets.size(), 1u);
  EXPECT_EQ(c.datasets[0].name, "fmnist");
  EXPECT_EQ(c.datasets[0].path, "/usr/share/datasets/fashion-mnist");
  EXPECT_EQ(c.datasets[0].train_limit, 0);
  EXPECT_EQ(c.datasets[0].min_freq, 1);
  EXPECT_TRUE(c.attacks.empty());
  ASSERT_EQ(c.defenses.size(), 1u);
  EXPECT_EQ(c.defenses[0].name, "none");
  EXPECT_TRUE(c.model.IsMap());
  EXPECT_EQ(c.model.size(), 0u);
}

TEST(ConfigDefaults, EmptyDocumentEqualsEmptyMapping) {
  // "Every key has a default": a config file holding only comments must mean
  // the same as `{}` — one fmnist dataset and the `none` defense — not an empty grid.
  auto c = parse_config(YAML::Load("# nothing but a comment\n"), "empty.yaml");
  ASSERT_EQ(c.datasets.size(), 1u) << "an empty config yields no datasets";
  EXPECT_EQ(c.datasets[0].name, "fmnist");
  ASSERT_EQ(c.defenses.size(), 1u) << "an empty config yields no defenses";
  EXPECT_EQ(c.defenses[0].name, "none");
  EXPECT_EQ(c.seeds, (std::vector<uint64_t>{0}));
}

TEST(ConfigDefaults, TrainResolvePerModality) {
  auto c = parse("{}");
  auto img = c.train.resolve(Modality::Image);
  EXPECT_EQ(img.epochs, 6);
  EXPECT_EQ(img.batch_size, 128);
  EXPECT_EQ(img.optimizer.name, "sgd");
  EXPECT_DOUBLE_EQ(img.optimizer.lr, 0.05);
  EXPECT_DOUBLE_EQ(img.optimizer.momentum, 0.9);
  EXPECT_DOUBLE_EQ(img.optimizer.weight_decay, 5e-4);
  EXPECT_EQ(img.schedule, "cosine");
  EXPECT_FALSE(img.augment);
  auto txt = c.train.resolve(Modality::Text);
  EXPECT_EQ(txt.batch_size, 32);
  EXPECT_EQ(txt.optimizer.name, "adam");
  EXPECT_DOUBLE_EQ(txt.optimizer.lr, 1e-3);
  EXPECT_DOUBLE_EQ(txt.optimizer.weight_decay, 0.0);
  EXPECT_TRUE(txt.group_by_length);
  EXPECT_FALSE(parse("train: {group_by_length: false}").train.resolve(Modality::Text).group_by_length);
  EXPECT_DOUBLE_EQ(txt.warmup_epochs, 0.0);
  EXPECT_DOUBLE_EQ(txt.clip_norm, 0.0);
  auto wc = parse("train: {warmup_epochs: 1.5, clip_norm: 1}").train.resolve(Modality::Text);
  EXPECT_DOUBLE_EQ(wc.warmup_epochs, 1.5);
  EXPECT_DOUBLE_EQ(wc.clip_norm, 1.0);

  auto o = parse("train: {epochs: 2, batch_size: 16, lr: 0.1, optimizer: adam, schedule: constant, augment: true}")
               .train.resolve(Modality::Image);
  EXPECT_EQ(o.epochs, 2);
  EXPECT_EQ(o.batch_size, 16);
  EXPECT_DOUBLE_EQ(o.optimizer.lr, 0.1);
  EXPECT_EQ(o.optimizer.name, "adam");
  EXPECT_EQ(o.schedule, "constant");
  EXPECT_TRUE(o.augment);
  EXPECT_DOUBLE_EQ(o.optimizer.weight_decay, 5e-4);  // untouched keys keep the modality default
}

// ---- unknown keys -------------------------------------------------------------------------

TEST(ConfigUnknownKeys, TopLevel) {
  // The known keys are the table's scalars and the sections read by hand.
  EXPECT_EQ(parse_error("seed: 1\nepochs: 3\n"),
            "test.yaml: unknown key 'epochs' (known keys: asr_floor, attacks, dataset, datasets, defenses, device, "
            "eval_batch_size, model, monitor_limit, precision, seed, threads, train)");
  // Reported before the values of the other keys are looked at.
  auto msg = parse_error("dataset: {name: cifar100}\nepochs: 3\n");
  EXPECT_TRUE(contains(msg, "unknown key 'epochs'")) << msg;
}

TEST(ConfigUnknownKeys, EveryKnownKeyAccepted) {
  auto c = parse(
      "seed: [1, 2]\nthreads: 2\ndevice: cpu\nasr_floor: false\neval_batch_size: 64\nmonitor_limit: 0\n"
      "dataset: {name: tsv, path: /d, train_limit: 10, test_limit: 5, max_len: 16, min_freq: 2, num_classes: 3,"
      " clean: /d/clean.tsv, triggered_test: /d/trig.tsv, model: {arch: textcnn}, train: {epochs: 1}}\n"
      "model: {arch: auto}\ntrain: {epochs: 2}\nattacks: [none]\ndefenses: [ft]\n");
  EXPECT_EQ(c.threads, 2);
  EXPECT_FALSE(c.asr_floor);
  EXPECT_EQ(c.eval_batch_size, 64);
  EXPECT_EQ(c.monitor_limit, 0);
  ASSERT_EQ(c.datasets.size(), 1u);
  const auto& d = c.datasets[0];
  EXPECT_EQ(d.test_limit, 5);
  EXPECT_EQ(d.num_classes, 3);
  EXPECT_EQ(d.clean, "/d/clean.tsv");
  EXPECT_EQ(d.triggered_test, "/d/trig.tsv");
}

TEST(ConfigUnknownKeys, InDataset) {
  EXPECT_EQ(parse_error("dataset: {name: sst2, pth: /x}\n"),
            "dataset[0]: unknown key 'pth' (known keys: clean, max_len, min_freq, model, name, num_classes, path, "
            "test_limit, train, train_limit, triggered_test)");
  auto msg = parse_error("datasets: [fmnist, {name: idx, path: /y, limit: 3}]\n");
  EXPECT_TRUE(contains(msg, "'limit'")) << msg;
  EXPECT_TRUE(contains(msg, "dataset[1]")) << msg;
}

TEST(ConfigUnknownKeys, InTrain) {
  auto msg = parse_error("train: {epoch: 3}\n");
  EXPECT_TRUE(contains(msg, "'epoch'")) << msg;
  EXPECT_TRUE(contains(msg, "train")) << msg;
}

// ---- values --------------------------------------------------------------------------------

TEST(ConfigValues, SeedScalarAndList) {
  EXPECT_EQ(parse("seed: 7").seeds, (std::vector<uint64_t>{7}));
  EXPECT_EQ(parse("seed: [1, 2, 3]").seeds, (std::vector<uint64_t>{1, 2, 3}));
  auto msg = parse_error("seed: -1");
  EXPECT_TRUE(contains(msg, "seed")) << msg;
  msg = parse_error("seed: [1, abc]");
  EXPECT_TRUE(contains(msg, "abc")) << msg;
  msg = parse_error("seed: []");
  EXPECT_TRUE(contains(msg, "seed")) << msg;
}

TEST(ConfigValues, BadTypesNameTheKey) {
  auto msg = parse_error("threads: many");
  EXPECT_EQ(msg, "test.yaml.threads: cannot read 'many' as an integer");
  msg = parse_error("train: {epochs: lots}");
  EXPECT_TRUE(contains(msg, "train.epochs")) << msg;
  msg = parse_error("dataset: {name: sst2, path: /x, max_len: long}");
  EXPECT_TRUE(contains(msg, "max_len")) << msg;
  msg = parse_error("attacks: [{name: badnets, target: first}]");
  EXPECT_TRUE(contains(msg, "target")) << msg;
  msg = parse_error("asr_floor: maybe");
  EXPECT_TRUE(contains(msg, "asr_floor")) << msg;
  EXPECT_EQ(parse_error("monitor_limit: -1"), "test.yaml: monitor_limit must be >= 0 (0 = all rows), got -1");
  EXPECT_EQ(parse_error("eval_batch_size: 0"), "test.yaml: eval_batch_size must be positive, got 0");
  msg = parse_error("model: cnn");
  EXPECT_TRUE(contains(msg, "model")) << msg;
  EXPECT_EQ(parse_error("device: tpu"), "test.yaml: device must be cpu, cuda or cuda:N, got tpu");
  msg = parse_error("train: {group_by_length: sometimes}");
  EXPECT_TRUE(contains(msg, "train.group_by_length")) << msg;
  msg = parse_error("train: {warmup_epochs: 7}");  // more than the 6 epochs
  EXPECT_TRUE(contains(msg, "train: warmup_epochs must lie in [0, epochs = 6], got 7")) << msg;
  msg = parse_error("train: {clip_norm: -1}");
  EXPECT_TRUE(contains(msg, "train: clip_norm must be >= 0, got -1")) << msg;
  msg = parse_error("train: {lr: 0}");
  EXPECT_TRUE(contains(msg, "train: lr must be positive, got 0")) << msg;
  msg = parse_error("train: {schedule: linear}");
  EXPECT_TRUE(contains(msg, "linear")) << msg;
  msg = parse_error("train: {batch_size: 0}");
  EXPECT_TRUE(contains(msg, "batch_size")) << msg;
  msg = parse_error("train: [1, 2]");
  EXPECT_TRUE(contains(msg, "train")) << msg;
  msg = parse_error("[1, 2, 3]");
  EXPECT_TRUE(contains(msg, "test.yaml")) << msg;
}

TEST(ConfigValues, DeviceNames) {
  for (auto ok : {"cpu", "cuda", "cuda:0", "cuda:12"}) EXPECT_EQ(parse(fmt::format("device: '{}'", ok)).device, ok);
  for (auto bad : {"cudax", "cuda:", "cuda:a", "cuda:1x", "gpu", "CPU"})
    EXPECT_EQ(parse_error(fmt::format("device: '{}'", bad)),
              fmt::format("test.yaml: device must be cpu, cuda or cuda:N, got {}", bad));
  EXPECT_EQ(parse_error("device: ''"), "test.yaml: device must be cpu, cuda or cuda:N, got ''");
}

TEST(ConfigValues, DatasetRules) {
  const std::string classes =
      "num_classes must be 0 (the dataset's declared count, or the labels' own) or lie in [2, 100000]";
  EXPECT_EQ(parse_error("dataset: {name: idx, path: /x, num_classes: 1}"), "dataset[0]: " + classes + ", got 1");
  EXPECT_EQ(parse_error("datasets: [fmnist, {name: idx, path: /x, num_classes: 100001}]"),
            "dataset[1]: " + classes + ", got 100001");
  EXPECT_EQ(parse_error("dataset: {name: idx, num_classes: -2}"), "dataset[0]: " + classes + ", got -2");
  EXPECT_EQ(parse("dataset: {name: idx, path: /x, num_classes: 2}").datasets[0].num_classes, 2);
  EXPECT_EQ(parse("dataset: {name: idx, path: /x, num_classes: 100000}").datasets[0].num_classes, 100000);
  EXPECT_EQ(parse("dataset: {name: idx, path: /x}").datasets[0].num_classes, 0);  // the labels' own count
  EXPECT_EQ(parse_error("dataset: {name: sst2, train_limit: -1}"), "dataset[0]: train_limit must be >= 0, got -1");
  EXPECT_EQ(parse_error("dataset: {name: sst2, test_limit: -5}"), "dataset[0]: test_limit must be >= 0, got -5");
  EXPECT_EQ(parse_error("dataset: {name: sst2, max_len: -1}"), "dataset[0]: max_len must be >= 0, got -1");
  EXPECT_EQ(parse_error("dataset: {name: sst2, min_freq: 0}"), "dataset[0]: min_freq must be >= 1, got 0");
  EXPECT_EQ(parse_error("dataset: {name: sst2, min_freq: 1.5}"),
            "dataset[0].min_freq: cannot read '1.5' as an integer");
}

TEST(ConfigValues, DatasetRegistryFillsPathAndClasses) {
  // A bare name is a dataset entry with only `name`.
  auto c = parse("dataset: sst2");
  ASSERT_EQ(c.datasets.size(), 1u);
  EXPECT_EQ(c.datasets[0].name, "sst2");
  EXPECT_EQ(c.datasets[0].path, "");
  EXPECT_EQ(c.datasets[0].num_classes, 2);
  EXPECT_EQ(c.datasets[0].min_freq, 1);
  // An empty path and num_classes 0, given or not, take the registry's.
  auto f = parse("dataset: {name: fmnist, path: '', num_classes: 0}").datasets[0];
  EXPECT_EQ(f.path, "/usr/share/datasets/fashion-mnist");
  EXPECT_EQ(f.num_classes, 10);
  EXPECT_EQ(parse("{}").datasets[0].num_classes, 10);
  EXPECT_EQ(parse("datasets: [agnews]").datasets[0].num_classes, 4);
  EXPECT_EQ(parse("dataset: {name: olid, num_classes: 3}").datasets[0].num_classes, 3);  // given wins
}

TEST(ConfigValues, InputNodeLeftAsGiven) {
  // The keys read by hand are taken from a copy: the caller's document stays as it was.
  auto empty = YAML::Load("");
  parse_config(empty, "empty.yaml");
  EXPECT_TRUE(empty.IsNull());
  auto root = YAML::Load("seed: 1\ndataset: {name: sst2}\n");
  parse_config(root, "t.yaml");
  EXPECT_EQ(YAML::Dump(root), "seed: 1\ndataset: {name: sst2}");
}

TEST(ConfigDocs, TopLevelDatasetAndTrainKeys) {
  std::vector<std::string> keys;
  for (const auto& d : config_option_docs())
    if (d.key.rfind("train.", 0) != 0) keys.push_back(d.key);
  EXPECT_EQ(keys, (std::vector<std::string>{"threads", "precision", "device", "asr_floor", "eval_batch_size", "monitor_limit",
                                            "dataset.name", "dataset.path", "dataset.train_limit", "dataset.test_limit",
                                            "dataset.max_len", "dataset.min_freq", "dataset.num_classes",
                                            "dataset.clean", "dataset.triggered_test"}));
  auto find = [](const std::string& key) {
    for (const auto& d : config_option_docs())
      if (d.key == key) return d;
    return OptionDoc{};
  };
  // The values shown are the structs' initializers.
  EXPECT_EQ(find("eval_batch_size").value, "512");
  EXPECT_EQ(find("eval_batch_size").rule, "must be positive");
  EXPECT_EQ(find("monitor_limit").value, "2000");
  EXPECT_EQ(find("asr_floor").value, "true");
  EXPECT_EQ(find("device").value, "cpu");
  EXPECT_EQ(find("device").rule, "must be cpu, cuda or cuda:N");
  EXPECT_EQ(find("dataset.name").value, "fmnist");
  EXPECT_EQ(find("dataset.path").value, "''");
  EXPECT_EQ(find("dataset.min_freq").value, "1");
  EXPECT_EQ(find("dataset.min_freq").rule, "must be >= 1");
  EXPECT_EQ(find("dataset.num_classes").rule,
            "must be 0 (the dataset's declared count, or the labels' own) or lie in [2, 100000]");
  // The training keys, with each modality's default where they differ.
  EXPECT_EQ(find("train.epochs").value, "6");
  EXPECT_EQ(find("train.batch_size").value, "image 128, text 32");
  EXPECT_EQ(find("train.optimizer").value, "image sgd, text adam");
  EXPECT_EQ(find("train.lr").value, "image 0.05, text 0.001");
  EXPECT_EQ(find("train.group_by_length").value, "true");
  for (const auto& d : config_option_docs()) EXPECT_FALSE(d.meaning.empty()) << d.key;
  EXPECT_NE(format_option_docs("config", config_option_docs()).find("dataset.triggered_test"), std::string::npos);
}

TEST(ConfigValues, Datasets) {
  auto c = parse("datasets: [fmnist, {name: sst2, path: /data/sst2, train_limit: 100, max_len: 20, min_freq: 2,"
                 " model: {arch: textcnn}, train: {epochs: 1}}]");
  ASSERT_EQ(c.datasets.size(), 2u);
  EXPECT_EQ(c.datasets[0].name, "fmnist");
  EXPECT_EQ(c.datasets[0].path, "/usr/share/datasets/fashion-mnist");
  EXPECT_EQ(c.datasets[1].name, "sst2");
  EXPECT_EQ(c.datasets[1].path, "/data/sst2");
  EXPECT_EQ(c.datasets[1].train_limit, 100);
  EXPECT_EQ(c.datasets[1].max_len, 20);
  EXPECT_EQ(c.datasets[1].min_freq, 2);
  EXPECT_EQ(c.datasets[1].model["arch"].as<std::string>(), "textcnn");
  EXPECT_EQ(c.datasets[1].train["epochs"].as<int>(), 1);

  auto msg = parse_error("dataset: {name: cifar100}");
  EXPECT_TRUE(contains(msg, "cifar100")) << msg;
  msg = parse_error("dataset: fmnist\ndatasets: [fmnist]");
  EXPECT_TRUE(contains(msg, "dataset")) << msg;

  EXPECT_EQ(dataset_modality("fmnist"), Modality::Image);
  EXPECT_EQ(dataset_modality("idx"), Modality::Image);
  for (auto n : {"sst2", "olid", "agnews", "tsv"}) EXPECT_EQ(dataset_modality(n), Modality::Text) << n;
  EXPECT_EQ(default_dataset_path("sst2"), "");
  EXPECT_EQ(default_dataset_path("fmnist"), "/usr/share/datasets/fashion-mnist");
}

TEST(ConfigValues, AttacksBareNamesAndMappings) {
  auto c = parse("attacks:\n  - badnets\n  - {name: blend, poison_rate: 0.05, target: 3, alpha: 0.2}\n");
  ASSERT_EQ(c.attacks.size(), 2u);
  EXPECT_EQ(c.attacks[0].name, "badnets");
  EXPECT_DOUBLE_EQ(c.attacks[0].poison_rate, 0.1);
  EXPECT_EQ(c.attacks[0].target, 0);
  EXPECT_TRUE(c.attacks[0].options.IsMap());
  EXPECT_EQ(c.attacks[0].options.size(), 0u);
  EXPECT_EQ(c.attacks[1].name, "blend");
  EXPECT_DOUBLE_EQ(c.attacks[1].poison_rate, 0.05);
  EXPECT_EQ(c.attacks[1].target, 3);
  // Only the attack-specific keys remain in options.
  EXPECT_EQ(c.attacks[1].options.size(), 1u);
  EXPECT_DOUBLE_EQ(c.attacks[1].options["alpha"].as<double>(), 0.2);
  EXPECT_FALSE(c.attacks[1].options["poison_rate"]);
  EXPECT_FALSE(c.attacks[1].options["name"]);

  // A single entry without a list.
  auto one = parse("attacks: sig");
  ASSERT_EQ(one.attacks.size(), 1u);
  EXPECT_EQ(one.attacks[0].name, "sig");

  auto msg = parse_error("attacks: [{poison_rate: 0.1}]");
  EXPECT_TRUE(contains(msg, "attacks[0]")) << msg;
  EXPECT_TRUE(contains(msg, "name")) << msg;
}

// A list of clean budgets runs the defense once at each, its other keys kept.
TEST(ConfigValues, ACleanBudgetListRunsTheDefenseAtEachBudget) {
  auto c = parse("defenses: [none, {name: ft, clean_samples: [100, 4000], epochs: 2}, nad]");
  ASSERT_EQ(c.defenses.size(), 4u);
  EXPECT_EQ(c.defenses[1].name, "ft");
  EXPECT_EQ(c.defenses[1].options["clean_samples"].as<int>(), 100);
  EXPECT_EQ(c.defenses[2].name, "ft");
  EXPECT_EQ(c.defenses[2].options["clean_samples"].as<int>(), 4000);
  EXPECT_EQ(c.defenses[2].options["epochs"].as<int>(), 2);
  EXPECT_EQ(c.defenses[3].name, "nad");
  // The same as writing the entries out: their YAML (what a cached cell is keyed by) agrees.
  auto written = parse("defenses: [{name: ft, clean_samples: 4000, epochs: 2}]");
  EXPECT_EQ(YAML::Dump(c.defenses[2].options), YAML::Dump(written.defenses[0].options));
  EXPECT_TRUE(contains(parse_error("defenses: [{name: ft, clean_samples: []}]"), "clean_samples is an empty list"));
}

TEST(ConfigValues, DefensesBareNamesAndMappings) {
  auto c = parse("defenses: [none, {name: bedkd, clean_samples: 100, epochs: 2}, ft]");
  ASSERT_EQ(c.defenses.size(), 3u);
  EXPECT_EQ(c.defenses[0].name, "none");
  EXPECT_EQ(c.defenses[1].name, "bedkd");
  EXPECT_EQ(c.defenses[1].options["clean_samples"].as<int>(), 100);
  EXPECT_EQ(c.defenses[1].options["epochs"].as<int>(), 2);
  EXPECT_FALSE(c.defenses[1].options["name"]);
  EXPECT_EQ(c.defenses[2].name, "ft");
  auto msg = parse_error("defenses: [{clean_samples: 5}]");
  EXPECT_TRUE(contains(msg, "defenses[0]")) << msg;
}

TEST(ConfigFile, MissingAndMalformed) {
  TempDir dir;
  auto missing = dir.file("absent.yaml");
  auto msg = error_of([&] { load_config(missing); });
  EXPECT_TRUE(contains(msg, missing)) << msg;

  auto bad = dir.file("bad.yaml");
  std::ofstream(bad) << "seed: [1, 2\ndataset: {name: fmnist\n";
  msg = error_of([&] { load_config(bad); });
  EXPECT_TRUE(contains(msg, bad)) << msg;

  auto good = dir.file("good.yaml");
  std::ofstream(good) << "seed: [4, 5]\nattacks: [badnets]\n";
  auto c = load_config(good);
  EXPECT_EQ(c.seeds, (std::vector<uint64_t>{4, 5}));
  EXPECT_EQ(c.attacks.size(), 1u);
  EXPECT_EQ(c.source["seed"].size(), 2u);  // the config as given is kept for the results

  auto unknown = dir.file("unknown.yaml");
  std::ofstream(unknown) << "seeds: [1]\n";
  msg = error_of([&] { load_config(unknown); });
  EXPECT_TRUE(contains(msg, unknown)) << msg;
  EXPECT_TRUE(contains(msg, "'seeds'")) << msg;
}

// ---- core: Params, Rng, hash, atomic writes -------------------------------------------------

TEST(ConfigParams, UnknownKeyDetection) {
  Params p(YAML::Load("{alpha: 0.5, steps: 3, typo: 1}"), "attack 'blend'");
  EXPECT_DOUBLE_EQ(p.get<double>("alpha", 0.1), 0.5);
  EXPECT_EQ(p.get<int64_t>("steps", 1), 3);
  EXPECT_EQ(p.get<int64_t>("absent", 9), 9);  // default for a missing key
  EXPECT_TRUE(p.has("typo"));
  EXPECT_FALSE(p.has("absent"));
  auto msg = error_of([&] { p.check_consumed(); });
  EXPECT_TRUE(contains(msg, "attack 'blend'")) << msg;
  EXPECT_TRUE(contains(msg, "'typo'")) << msg;
  p.get<int64_t>("typo", 0);
  EXPECT_NO_THROW(p.check_consumed());

  Params q(YAML::Load("{steps: many}"), "ctx");
  msg = error_of([&] { q.get<int64_t>("steps", 1); });
  EXPECT_TRUE(contains(msg, "ctx.steps")) << msg;

  EXPECT_THROW(Params(YAML::Load("[1, 2]"), "list"), Error);
  Params empty;
  EXPECT_EQ(empty.get<int>("x", 4), 4);
  EXPECT_NO_THROW(empty.check_consumed());
  empty.set("y", YAML::Node(2));
  EXPECT_EQ(empty.get<int>("y", 0), 2);
  // A null value reads as the default.
  Params nul(YAML::Load("{k: ~}"), "n");
  EXPECT_EQ(nul.get<int>("k", 6), 6);
}

TEST(ConfigCore, RngDeterministicAndInRange) {
  Rng a(17), b(17), c(18);
  std::vector<uint64_t> va, vb, vc;
  for (int i = 0; i < 5; ++i) va.push_back(a.next()), vb.push_back(b.next()), vc.push_back(c.next());
  EXPECT_EQ(va, vb);
  EXPECT_NE(va, vc);
  Rng r(1);
  for (int i = 0; i < 1000; ++i) {
    auto x = r.below(7);
    ASSERT_GE(x, 0);
    ASSERT_LT(x, 7);
    auto u = r.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
  auto p = Rng(3).permutation(20);
  std::set<int64_t> s(p.begin(), p.end());
  EXPECT_EQ(s.size(), 20u);
  EXPECT_EQ(*s.begin(), 0);
  EXPECT_EQ(*s.rbegin(), 19);
  EXPECT_EQ(Rng(3).permutation(20), p);
  EXPECT_EQ(Rng(9).fork_seed("stage"), Rng(9).fork_seed("stage"));
  EXPECT_NE(Rng(9).fork_seed("stage"), Rng(9).fork_seed("other"));
}

TEST(ConfigCore, HashStringIsFnv1a64) {
  // Published FNV-1a 64-bit test vectors: offset basis for "", and "a", "foobar".
  EXPECT_EQ(hash_string(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(hash_string("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(hash_string("foobar"), 0x85944171f73967e8ULL);
}

TEST(ConfigCore, WriteFileAtomic) {
  TempDir dir;
  auto path = (dir.path / "nested" / "deeper" / "out.json").string();
  write_file_atomic(path, "first");
  EXPECT_EQ(read_file(path), "first");
  write_file_atomic(path, std::string("second\0binary", 13));
  EXPECT_EQ(read_file(path), std::string("second\0binary", 13));
  write_file_atomic(path, "");
  EXPECT_EQ(read_file(path), "");
  // No temp file is left beside it.
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir.path / "nested" / "deeper")) {
    ++entries;
    EXPECT_EQ(e.path().filename(), "out.json");
  }
  EXPECT_EQ(entries, 1);
  EXPECT_TRUE(file_exists(path));
  EXPECT_FALSE(file_exists(dir.file("none")));
  auto msg = error_of([&] { read_file(dir.file("none")); });
  EXPECT_TRUE(contains(msg, dir.file("none"))) << msg;
  // A directory that cannot be created (a file sits in the way) is an error, not a crash.
  std::ofstream(dir.file("blocker")) << "x";
  EXPECT_ANY_THROW(write_file_atomic((dir.path / "blocker" / "f.txt").string(), "y"));
}

// Progress lines: a rate below one a second reads as the seconds each takes, not "0 epochs/s".
TEST(Progress, RatesReadAtEverySpeed) {
  EXPECT_EQ(rate_text(3621.4, "samples"), "3621 samples/s");
  EXPECT_EQ(rate_text(2.46, "epochs"), "2.5 epochs/s");
  EXPECT_EQ(rate_text(0.025, "epochs"), "40.0 s/epoch");
  EXPECT_EQ(rate_text(0.5, "iterations"), "2.0 s/iteration");
  EXPECT_EQ(rate_text(0, "samples"), "– samples/s");
  EXPECT_EQ(format_duration(45), "45s");
  EXPECT_EQ(format_duration(187), "3m07s");
  EXPECT_EQ(format_duration(7500), "2h05m");
  EXPECT_EQ(format_duration(-1), "?");
}

// LibTorch's warnings reach stderr as one plain line per distinct message, not through
// glog's "Logging before InitGoogleLogging()" preamble.
TEST(Progress, LibTorchWarningsArePlainLinesOncePerMessage) {
  c10::WarningHandler* before = c10::Warning::get_warning_handler();
  print_libtorch_warnings_plainly();
  ::testing::internal::CaptureStderr();
  for (int i = 0; i < 3; ++i) TORCH_WARN("the same thing, said thrice");
  TORCH_WARN("something else");
  const std::string err = ::testing::internal::GetCapturedStderr();
  c10::Warning::set_warning_handler(before);
  EXPECT_EQ(err,
            "antidote: warning from LibTorch: the same thing, said thrice\n"
            "antidote: warning from LibTorch: something else\n");
}

// Every shipped config reads, and every defense entry in it builds with its options (the
// keys and rules a bench would otherwise check only when it reaches the entry).
TEST(ConfigFile, ShippedConfigsReadAndTheirDefensesBuild) {
  int configs = 0;
  for (const auto& entry : fs::directory_iterator(fs::path(ANTIDOTE_SOURCE_DIR) / "configs")) {
    if (entry.path().extension() != ".yaml") continue;
    ++configs;
    SCOPED_TRACE(entry.path().string());
    ExperimentConfig c;
    ASSERT_NO_THROW(c = load_config(entry.path().string()));
    for (const auto& d : c.datasets) {
      const Modality m = dataset_modality(d.name);
      const int64_t k = declared_classes(d.name) > 0 ? declared_classes(d.name) : 10;
      const DefenseSetup setup{m, m == Modality::Image ? "cnn" : "transformer", k};
      for (size_t i = 0; i < c.defenses.size(); ++i) {
        Params p(YAML::Clone(c.defenses[i].options), "defenses[" + std::to_string(i) + "]");
        EXPECT_NO_THROW(make_defense(c.defenses[i].name, p, setup)) << c.defenses[i].name;
        EXPECT_NO_THROW(p.check_consumed()) << c.defenses[i].name;
      }
    }
  }
  EXPECT_GE(configs, 6);
}
