// none — the data as they are: no trigger added, no row marked poisoned, no triggered
// test set built. This is the mode for a user's own training set, whose trigger is
// unknown: the defenses run on the rows as given, clean accuracy is measured on the
// test set, and ASR is unknown unless the dataset names a triggered test set of the
// user's own (`triggered_test:`), against the entry's `target`.
#include "antidote/attacks/attack.hpp"

namespace antidote {
namespace {

class NoAttack : public Attack {
 public:
  NoAttack(Params&, const AttackSettings& s) { settings_ = s; }
  Modality modality() const override { return Modality::Image; }  // any: see works_on
  bool works_on(Modality) const override { return true; }
  bool builds_trigger() const override { return false; }

  RawSplit poison_train(const RawSplit& clean_train, Rng&) const override {
    RawSplit out = clean_train;
    out.poisoned = torch::zeros({clean_train.size()}, torch::kBool);
    return out;
  }
  RawSplit triggered_test(const RawSplit& clean_test, Rng&) const override { return clean_test.select({}); }
};

Registrar<AttackRegistry> reg_none(
    "none", [](Params& p, const AttackSettings& s) -> AttackPtr { return std::make_shared<NoAttack>(p, s); },
    "no attack: the training set as it is (a trigger you do not know); ASR only with your own triggered_test",
    [] { return OptionDocs{}; });

}  // namespace
}  // namespace antidote
