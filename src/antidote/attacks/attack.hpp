// Attacks build the test cases: a poisoned training set (with the record of which
// rows were poisoned) and a triggered test set of non-target rows.
#pragma once

#include <memory>
#include <string>

#include "antidote/core/common.hpp"
#include "antidote/core/registry.hpp"
#include "antidote/data/data.hpp"

namespace antidote {

struct AttackSettings {
  double poison_rate = 0.1;  // fraction of the whole training set
  int64_t target = 0;
  uint64_t seed = 0;
  int64_t num_classes = 0;
};

class Attack {
 public:
  virtual ~Attack() = default;
  virtual Modality modality() const = 0;
  // Clean-label attacks poison target-class rows and keep their labels.
  virtual bool clean_label() const { return false; }
  // True when poisoned training row i is clean row i (triggered or not) and triggered
  // test row i comes from a clean test row; false for an attack that brings its own
  // rows (a pre-poisoned file), whose unpoisoned rows are then the clean set.
  virtual bool aligned_with_clean() const { return true; }
  // The data it can be applied to (its modality's, unless it touches no row).
  virtual bool works_on(Modality m) const { return m == modality(); }
  // False for `none`, which adds no trigger: the test cases then have no triggered rows
  // of their own, and ASR is unknown unless the user brings a triggered test set.
  virtual bool builds_trigger() const { return true; }

  // The training set as the victim trains on it: poisoned rows carry the trigger
  // (and the target label for dirty-label attacks); `poisoned` marks them.
  virtual RawSplit poison_train(const RawSplit& clean_train, Rng& rng) const;
  // Triggered copies of the non-target test rows, labelled with their true labels.
  virtual RawSplit triggered_test(const RawSplit& clean_test, Rng& rng) const;

  // Images: add the trigger to a batch [N, C, H, W] in [0, 1]. Text: to one sentence.
  virtual torch::Tensor apply_image(const torch::Tensor& images, Rng& rng) const;
  virtual std::string apply_text(const std::string& sentence, Rng& rng) const;

  const AttackSettings& settings() const { return settings_; }
  AttackSettings settings_;

 protected:
  // Rows to poison: poison_rate · N rows drawn among non-target rows (or target
  // rows for clean-label attacks), seeded.
  std::vector<int64_t> choose_rows(const RawSplit& train, Rng& rng) const;
  RawSplit apply_trigger(const RawSplit& split, const std::vector<int64_t>& rows, Rng& rng) const;
};

using AttackPtr = std::shared_ptr<Attack>;
using AttackRegistry = Registry<Attack, Params&, const AttackSettings&>;

AttackPtr make_attack(const std::string& name, const YAML::Node& options, const AttackSettings& settings,
                      const std::string& context = "attack");

// Registration of an attack class T built from Params and the settings (with a nested
// Options struct and a static table()): Registrar<AttackRegistry> reg("name",
// construct<T>, "summary", docs_of<T>).
template <class T>
AttackPtr construct(Params& p, const AttackSettings& s) {
  return std::make_shared<T>(p, s);
}

// Rows of `split` whose label differs from `target`.
std::vector<int64_t> non_target_rows(const RawSplit& split, int64_t target);

}  // namespace antidote
