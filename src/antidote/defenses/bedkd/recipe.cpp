// BeDKD's recipes (the values of every option for the reference and the tuned recipe,
// per modality) and the reader that applies a config's keys and checks them.
#include "antidote/defenses/bedkd/recipe.hpp"

#include <tuple>
#include <vector>

namespace antidote::bedkd {
namespace {

// The tuned recipe was measured on the architectures antidote builds and trains from
// scratch (the model registry's); an imported model (TorchScript) gets the reference.
bool builtin_arch(const std::string& arch) { return ModelRegistry::instance().has(arch); }

// Defaults of a recipe for a setup. "reference" = the authors' released code.
Config recipe_defaults(const std::string& recipe, const DefenseSetup& setup) {
  Config c;
  c.recipe = recipe;
  if (recipe == "reference") return c;
  if (recipe != "tuned") fail("bedkd: unknown recipe '{}' (known: auto, tuned, reference)", recipe);
  // Tuned for the built-in from-scratch models; docs/bedkd.md has the measurements.
  // Identification: an all-to-one vote on the label of the least-moved rows.
  // the all-to-one vote must be clear: a majority label under half of the survivors
  // means no target stands out, and nothing is punished.
  c.vote = true;
  c.vote_min_share = 0.5;
  if (setup.modality == Modality::Text) {
    // Text takes its punish set from the training data rather than from the suspect's
    // features: token-label z-scores, the strongest pairs checked on the suspect
    // (token_stats.cpp). In the small from-scratch models the poisoned rows are not
    // separable in the suspect's own features, which is what the mapping reads; over
    // SST-2, OLID and AG News suspects (27) the 64 flagged rows were all poisoned on
    // every one, against 2 of 15 SST-2 suspects for the mapping (docs/identify.md).
    // The mapping's text settings below apply with identify: dmm.
    c.identify = "token_stats";
    // The mapping is trained with cross-entropy alone on the whole clean budget, at the
    // reference's slow rate, for 10 epochs, and every row is ranked by how far it moved
    // after each epoch. Clean rows give way as the flip spreads; rows held by a trigger
    // resist for longer, so their mean rank is the lowest. The label whose lowest rows
    // sit lowest is the target (a count among the lowest rows can be won by a class the
    // mapping flips late). docs/bedkd.md has the measurements.
    c.flip_alpha = 1.0;
    c.flip_epochs = 10;
    c.flip_with_trust = true;
    c.score_over = "epochs";
    c.threshold = 0;
    c.max_flagged = 0;
    c.vote_by = "lowest_mean";
    // The punish pass draws 16 of the 64 lowest rows afresh each epoch: a fixed set of
    // 32 is unlearned within a few epochs, after which the trust passes bring the
    // trigger back (SST-2 badnet-word: ASR 19 % at epoch 6, 31 % at epoch 50).
    c.max_kept = 64;
    c.punish_per_epoch = 16;
    // Twice the paper's trust set (640 rows per class; the mapping's 80 per class go
    // unused with token_stats). With 320, the trust passes over 640 rows cost 2-5 CACC
    // points by epoch 50 and the syntactic file passed 1 of 5 SST-2 seeds; with 640, 14
    // of 15 SST-2 cells pass (docs/results/sst2.md).
    c.trust_per_class = 640;
    // The feature MSE over real tokens only: the padding positions' states carry no
    // input, and leaving them out lets the AKD batches be cut to their longest row
    // (TrainBatches). Same outcome on the measured cells, AKD 1.3-1.9x faster
    // (docs/bedkd.md).
    c.mask_padding = true;
  }
  // Distillation: 3e-5 leaves a from-scratch model unchanged; 3e-4 purifies it, and the
  // stopping rule (punish a row only while the student still gives its label more
  // than punish_floor) keeps gradient ascent from wrecking clean accuracy or teaching
  // "trigger -> not target".
  c.akd_lr = 3e-4;
  c.punish_stop = "prob";
  if (setup.modality == Modality::Text) {
    c.punish_floor = 0.1;
  } else {
    c.punish_floor = 0.05;
    // Images: the saturated poisoned rows barely move under the mapping (score ~1e-3
    // against ~0.07 for clean rows), so a threshold of 0.003 keeps out the clean rows.
    // A fixed punish set of 128 rows is memorised ("these garments are not the
    // target") and the trigger drifts back during the trust passes; a fresh draw of
    // 128 rows per epoch from up to 1024 makes the unlearning generalise. The cap
    // matters for clean-label attacks: with SIG every poisoned row really is of the
    // target class, and draws from all of them (~6000) never fall below the floor, so
    // gradient ascent never stops (docs/bedkd.md).
    c.threshold = 0.003;
    c.max_flagged = 1024;
    c.max_kept = 1024;
    c.punish_per_epoch = 128;
  }
  return c;
}

// The directional mapping's keys (stage 1 and its scoring).
void dmm_keys(OptionTable<Config>& t) {
  auto dmm = [&t](auto&&... args) { t.add(args...).group("dmm"); };
  dmm("flip_per_class", &Config::flip_per_class, "clean rows per class the mapping flips", at_least<int64_t>(1));
  dmm("flip_shift", &Config::flip_shift, "the mapping's label y -> (y + flip_shift) mod classes", Rule<int64_t>{});
  dmm("flip_epochs", &Config::flip_epochs, "epochs of the directional mapping", at_least<int64_t>(0));
  dmm("flip_batch", &Config::flip_batch, "batch of the directional mapping", positive<int64_t>());
  dmm("flip_lr", &Config::flip_lr, "learning rate of the directional mapping", positive<double>());
  dmm("flip_temperature", &Config::flip_temperature, "temperature of the mapping's KL", positive<double>());
  dmm("flip_alpha", &Config::flip_alpha, "the mapping's alpha", within(0, 1));
  t.follows<double>(
      -1, [](const Config& c) { return c.alpha; }, "alpha");
  dmm("flip_kl_weight", &Config::flip_kl_weight, "the mapping's KL weight", at_least(0.0));
  t.follows<double>(
      -1, [](const Config& c) { return c.kl_weight; }, "kl_weight");
  dmm("flip_mse_weight", &Config::flip_mse_weight, "the mapping's MSE weight", at_least(0.0));
  t.follows<double>(
      -1, [](const Config& c) { return c.mse_weight; }, "mse_weight");
  dmm("flip_params", &Config::flip_params, "the parameters the mapping trains", Rule<std::string>{});
  dmm("flip_with_trust", &Config::flip_with_trust, "also flip the trust rows (the whole clean budget)", Rule<bool>{});
  dmm("flip_stop_accuracy", &Config::flip_stop_accuracy,
      "stop the mapping once it gives this share of the flip rows their flipped label", within(0, 1, " (0 = off)"));
  dmm("score", &Config::score, "prob: mean |dp| over classes; target: |dp| of the suspect's top class",
      one_of({"prob", "target"}));
  dmm("score_over", &Config::score_over, "last: score after the last epoch; epochs: mean rank over the epochs",
      one_of({"last", "epochs"}));
  dmm("threshold", &Config::threshold, "rows moved by less than this are suspect", at_least(0.0));
  dmm("max_flagged", &Config::max_flagged, "at most this many least-moved rows are suspect",
      at_least<int64_t>(0, " (0 = no cap)"));
  dmm("max_kept", &Config::max_kept, "at most this many suspect rows are punished",
      at_least<int64_t>(0, " (0 = no cap)"));
  dmm("consistency", &Config::consistency, "keep only the suspect rows whose label the suspect predicts", Rule<bool>{});
  dmm("vote", &Config::vote, "keep only the suspect rows of the label an all-to-one vote picks", Rule<bool>{});
  dmm("vote_min_share", &Config::vote_min_share, "the vote's label must hold this share of the suspect rows",
      within(0, 1));
  dmm("vote_by", &Config::vote_by, "count: the most frequent label; lowest_mean: the label whose rows sit lowest",
      one_of({"count", "lowest_mean"}));
}

// Every BeDKD key: where it lives in Config, what it means, the rule it must meet.
// Keys in the "dmm" group are read by the directional mapping alone.
const OptionTable<Config>& table() {
  static const OptionTable<Config> t = [] {
    OptionTable<Config> t;
    t.add("identify", &Config::identify, "where the punish set comes from (an identification method, or dmm)");
    t.add("alpha", &Config::alpha, "L_KD's weight of the cross-entropy; 1 - alpha goes to the KL and MSE",
          within(0, 1));
    t.add("kl_weight", &Config::kl_weight, "weight of the KL term of L_KD", at_least(0.0));
    t.add("mse_weight", &Config::mse_weight, "weight of the feature-MSE term of L_KD", at_least(0.0));
    t.add("mask_padding", &Config::mask_padding, "text: the feature MSE over real tokens only");
    t.add("optimizer", &Config::optimizer, "optimizer of both stages", one_of({"sgd", "adam", "adamw"}));
    t.add("weight_decay", &Config::weight_decay, "weight decay of both stages", at_least(0.0));
    t.add("reshuffle", &Config::reshuffle, "reshuffle the batches every epoch (both stages)");
    dmm_keys(t);
    t.add("min_confidence", &Config::min_confidence,
          "below this share of the target label among the most suspect rows, identification warns", within(0, 1));
    t.add("score_batch", &Config::score_batch, "rows per forward pass when scoring", positive<int64_t>());
    t.add("trust_per_class", &Config::trust_per_class, "clean rows per class in the trust set D_t",
          at_least<int64_t>(0));
    t.add("clean_samples", &Config::clean_samples,
          "a total clean budget, split per class one flipped to four trusted as the paper's 80 + 320; sets "
          "flip_per_class and trust_per_class",
          at_least<int64_t>(0, " (0 = off)"));
    t.add("akd_epochs", &Config::akd_epochs, "epochs of adversarial distillation", at_least<int64_t>(0));
    t.add("batch_size", &Config::batch_size, "batch of the trust passes", positive<int64_t>());
    t.add("punish_batch", &Config::punish_batch, "batch of the punish passes", positive<int64_t>())
        .follows<int64_t>(
            0, [](const Config& c) { return c.batch_size; }, "batch_size");
    t.add("punish_per_epoch", &Config::punish_per_epoch, "rows of D_p drawn afresh for each punish pass",
          at_least<int64_t>(0, " (0 = all of D_p)"));
    t.add("akd_lr", &Config::akd_lr, "learning rate of adversarial distillation", positive<double>());
    t.add("akd_temperature", &Config::akd_temperature, "temperature of L_KD's KL in distillation", positive<double>());
    t.add("punish_weight", &Config::punish_weight, "weight of the gradient-ascent (punish) loss", at_least(0.0));
    t.add("punish_stop", &Config::punish_stop, "stop punishing a row once the student has let go of its label",
          one_of({"none", "flipped", "prob"}));
    t.add("punish_floor", &Config::punish_floor, "punish_stop prob: punish while the label's probability exceeds this",
          within_below(0, 1));
    t.add("punish_loss", &Config::punish_loss,
          "ascent: gradient ascent on L_KD; uniform: descent towards every class but the row's label, equally",
          one_of({"ascent", "uniform"}));
    t.add("punish_batch_norm", &Config::punish_batch_norm,
          "batch-norm statistics of the punish passes: the student's running ones (left unchanged) or the batch's",
          one_of({"running", "batch"}));
    t.add("punish_mean", &Config::punish_mean, "a punish batch's loss averaged over the rows still punished or drawn",
          one_of({"still", "drawn"}));
    return t;
  }();
  return t;
}

}  // namespace

std::string default_identify(const DefenseSetup& setup) {
  return recipe_defaults(builtin_arch(setup.arch) ? "tuned" : "reference", setup).identify;
}

Config read_config(Params& p, const DefenseSetup& setup) {
  auto recipe = p.get<std::string>("recipe", "auto");
  if (recipe == "auto") recipe = builtin_arch(setup.arch) ? "tuned" : "reference";
  Config c = recipe_defaults(recipe, setup);
  table().read(p, c);
  if (setup.num_classes > 0 && (c.flip_shift % setup.num_classes) == 0)
    fail("{}: flip_shift {} maps every label onto itself with {} classes", p.context(), c.flip_shift,
         setup.num_classes);
  if (c.identify != "dmm")
    for (const auto& key : table().given(p, "dmm"))
      fail("{}: '{}' belongs to identify: dmm, and identify is '{}'", p.context(), key, c.identify);
  return c;
}

// clean_samples: the flip and trust rows per class from one total, in the paper's ratio
// (80 flipped to 320 trusted). Without the mapping every row is trusted; with
// flip_with_trust the mapping flips the whole budget, as it does without clean_samples.
void split_clean_budget(const Params& p, Config& c, const DefenseSetup& setup) {
  if (c.clean_samples <= 0) return;
  for (const char* key : {"flip_per_class", "trust_per_class"})
    if (p.has(key)) fail("{}: give clean_samples or {}, not both", p.context(), key);
  if (setup.num_classes <= 0) return;
  const bool maps = c.identify == "dmm";
  const int64_t per_class = c.clean_samples / setup.num_classes;
  if (per_class < (maps ? 2 : 1))
    fail("{}: clean_samples {} leaves {} rows per class of {} classes; BeDKD needs at least {}", p.context(),
         c.clean_samples, per_class, setup.num_classes, maps ? 2 : 1);
  if (maps) c.flip_per_class = std::max<int64_t>(1, per_class / 5);
  c.trust_per_class = maps ? per_class - c.flip_per_class : per_class;
}

nlohmann::json option_values(const Config& c) {
  auto v = table().values(c);
  v["recipe"] = c.recipe;
  return v;
}

OptionDocs option_docs() {
  OptionDocs docs{{"recipe", "a string", "auto",
                   "tuned (the built-in architectures' values) or reference (the authors' code); auto picks", "", ""}};
  std::vector<std::pair<std::string, Config>> profiles;
  for (const auto& [name, modality, recipe] : {std::tuple{"image", Modality::Image, "tuned"},
                                               {"text", Modality::Text, "tuned"},
                                               {"reference", Modality::Image, "reference"}})
    profiles.emplace_back(name, table().resolved(recipe_defaults(recipe, DefenseSetup{modality, "", 0})));
  auto rest = table().docs(profiles);
  docs.insert(docs.end(), rest.begin(), rest.end());
  return docs;
}

}  // namespace antidote::bedkd
