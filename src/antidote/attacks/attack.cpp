#include "antidote/attacks/attack.hpp"

#include <algorithm>
#include <cmath>

namespace antidote {

namespace {

// A copy of the split whose poison mask is defined (all false where the input had none).
RawSplit with_mask(const RawSplit& split) {
  RawSplit out;
  if (split.images.defined()) out.images = split.images.clone();
  out.texts = split.texts;
  out.labels = split.labels.clone();
  out.poisoned = split.poisoned.defined() ? split.poisoned.clone() : torch::zeros({split.size()}, torch::kBool);
  return out;
}

void check_modality(const Attack& attack, const RawSplit& split) {
  if (attack.modality() == Modality::Image && !split.is_image())
    fail("an image attack cannot be applied to text data (the dataset has no images)");
  if (attack.modality() == Modality::Text && split.is_image())
    fail("a text attack cannot be applied to image data");
}

}  // namespace

std::vector<int64_t> non_target_rows(const RawSplit& split, int64_t target) {
  std::vector<int64_t> rows;
  if (split.size() == 0) return rows;
  auto labels = split.labels.to(torch::kLong).contiguous();
  const auto* y = labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < split.size(); ++i)
    if (y[i] != target) rows.push_back(i);
  return rows;
}

std::vector<int64_t> Attack::choose_rows(const RawSplit& train, Rng& rng) const {
  const int64_t n = train.size();
  const auto requested = static_cast<int64_t>(std::llround(settings_.poison_rate * static_cast<double>(n)));
  std::vector<int64_t> candidates;
  if (clean_label()) {
    auto labels = train.labels.to(torch::kLong).contiguous();
    const auto* y = labels.data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i)
      if (y[i] == settings_.target) candidates.push_back(i);
  } else {
    candidates = non_target_rows(train, settings_.target);
  }
  int64_t count = requested;
  const auto available = static_cast<int64_t>(candidates.size());
  if (count > available) {
    if (clean_label()) {
      log_info(fmt::format("attack: poison rate {} asks for {} rows but the target class {} has only {}; "
                           "poisoning all {} target rows",
                           settings_.poison_rate, requested, settings_.target, available, available));
      count = available;
    } else {
      fail("attack: poison rate {} asks for {} of {} training rows, but only {} rows are outside the target class {}",
           settings_.poison_rate, requested, n, available, settings_.target);
    }
  }
  rng.shuffle(candidates);
  candidates.resize(static_cast<size_t>(count));
  std::sort(candidates.begin(), candidates.end());
  return candidates;
}

RawSplit Attack::apply_trigger(const RawSplit& split, const std::vector<int64_t>& rows, Rng& rng) const {
  check_modality(*this, split);
  RawSplit out = with_mask(split);
  if (rows.empty()) return out;
  auto index = torch::tensor(rows, torch::kLong);
  if (modality() == Modality::Image) {
    auto triggered = apply_image(split.images.index_select(0, index), rng);
    out.images.index_copy_(0, index, triggered.to(out.images.dtype()));
  } else {
    for (auto i : rows) out.texts.at(static_cast<size_t>(i)) = apply_text(split.texts.at(static_cast<size_t>(i)), rng);
  }
  if (!clean_label()) out.labels.index_fill_(0, index, settings_.target);
  out.poisoned.index_fill_(0, index, true);
  return out;
}

RawSplit Attack::poison_train(const RawSplit& clean_train, Rng& rng) const {
  check_modality(*this, clean_train);
  return apply_trigger(clean_train, choose_rows(clean_train, rng), rng);
}

RawSplit Attack::triggered_test(const RawSplit& clean_test, Rng& rng) const {
  check_modality(*this, clean_test);
  RawSplit rows = clean_test.select(non_target_rows(clean_test, settings_.target));
  rows.poisoned = torch::zeros({rows.size()}, torch::kBool);
  std::vector<int64_t> all(static_cast<size_t>(rows.size()));
  for (int64_t i = 0; i < rows.size(); ++i) all[static_cast<size_t>(i)] = i;
  // Triggered test rows keep their true labels, whatever the attack does in training.
  RawSplit out = with_mask(rows);
  if (!all.empty()) {
    if (modality() == Modality::Image) {
      out.images = apply_image(rows.images, rng).to(rows.images.dtype());
    } else {
      for (auto i : all) out.texts[static_cast<size_t>(i)] = apply_text(rows.texts[static_cast<size_t>(i)], rng);
    }
  }
  out.poisoned = torch::ones({out.size()}, torch::kBool);
  return out;
}

torch::Tensor Attack::apply_image(const torch::Tensor& images, Rng& rng) const {
  fail("this attack has no image trigger (it is a {} attack)", modality_name(modality()));
}

std::string Attack::apply_text(const std::string& sentence, Rng& rng) const {
  if (modality() == Modality::Text)
    fail("this text attack has no per-sentence trigger (its poisoned rows come from files)");
  fail("this attack has no text trigger (it is an image attack)");
}

AttackPtr make_attack(const std::string& name, const YAML::Node& options, const AttackSettings& settings,
                      const std::string& context) {
  if (!(settings.poison_rate >= 0.0 && settings.poison_rate < 1.0))
    fail("{}: poison_rate must be in [0, 1), got {}", context, settings.poison_rate);
  if (settings.num_classes < 2)
    fail("{}: the number of classes must be known and at least 2, got {}", context, settings.num_classes);
  if (settings.target < 0 || settings.target >= settings.num_classes)
    fail("{}: target class {} is out of range [0, {})", context, settings.target, settings.num_classes);
  Params params(options, context);
  auto attack = AttackRegistry::instance().create("attack", name, params, settings);
  params.check_consumed();
  attack->settings_ = settings;
  return attack;
}

}  // namespace antidote
