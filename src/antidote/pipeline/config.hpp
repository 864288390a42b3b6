// One YAML file describes an experiment grid. Every key has a default;
// an unknown key is an error naming it. The top-level scalars and a dataset entry's keys
// are declared in OptionTables (config.cpp); the defaults are the structs' initializers.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>
#include <vector>

#include "antidote/core/options.hpp"
#include "antidote/data/data.hpp"
#include "antidote/train/train.hpp"

namespace antidote {

struct DatasetConfig {
  std::string name = "fmnist";  // fmnist | idx | sst2 | olid | agnews | tsv
  std::string path;             // fmnist: the Debian package's directory by default
  int64_t train_limit = 0;      // > 0: a seeded subset of the training rows (quick runs, tests)
  int64_t test_limit = 0;       // > 0: a seeded subset of the test rows
  int64_t max_len = 0;          // text: 0 = longest training sentence + 1, capped at 128
  int64_t min_freq = 1;         // text: words seen fewer times map to [UNK]
  // 0 = the labels' own count (every class below the largest label must occur);
  // the named datasets declare theirs (fmnist 10, sst2 2, olid 2, agnews 4).
  int64_t num_classes = 0;
  // The user's own sets (see RawData): `clean` replaces the clean rows the defenses
  // would otherwise draw from the training set's unpoisoned rows; `triggered_test`
  // gives ASR with `attacks: [none]`. A TSV file for text, an IDX prefix for images.
  std::string clean, triggered_test;
  YAML::Node model;             // optional per-dataset override of `model`
  YAML::Node train;             // optional per-dataset override of `train`
};

struct TrainConfig {
  // Unset fields take the modality's defaults (see resolve()).
  YAML::Node node;
  TrainOptions resolve(Modality m) const;
};

struct AttackConfig {
  std::string name;
  double poison_rate = 0.1;
  int64_t target = 0;
  YAML::Node options;  // attack-specific keys
  std::string label() const;  // e.g. "badnets" or "file"
};

struct DefenseConfig {
  std::string name;
  YAML::Node options;  // defense-specific keys (clean_samples included)
};

struct ExperimentConfig {
  std::vector<uint64_t> seeds{0};
  int threads = 0;  // 0 = all cores
  std::string precision = "fp32";  // of every training: fp32 | bf16 (set_training_precision)
  std::string device = "cpu";
  std::vector<DatasetConfig> datasets;
  YAML::Node model;  // {arch, ...}; arch "auto" = cnn for images, transformer for text
  TrainConfig train;
  std::vector<AttackConfig> attacks;
  std::vector<DefenseConfig> defenses;
  bool asr_floor = true;  // train a clean reference model per dataset and seed
  int64_t eval_batch_size = 512;
  // Rows of each test set (clean, triggered) that the per-epoch monitor of a defense
  // evaluates (BeDKD's AKD trajectory); a seeded subset, 0 = all. Final metrics always
  // use the whole test sets.
  int64_t monitor_limit = 2000;
  YAML::Node source;  // the config as given, recorded in results
};

ExperimentConfig parse_config(const YAML::Node& root, const std::string& origin);
ExperimentConfig load_config(const std::string& path);
std::string default_dataset_path(const std::string& name);
int64_t declared_classes(const std::string& name);  // 0 for idx and tsv
Modality dataset_modality(const std::string& name);
// The config's declared keys for `antidote list --options`: the top-level scalars, a
// dataset entry's keys as "dataset.<key>", and the training keys as "train.<key>" with
// each modality's default.
OptionDocs config_option_docs();

}  // namespace antidote
