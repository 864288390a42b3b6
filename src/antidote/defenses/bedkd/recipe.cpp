// BeDKD's recipes (the values of every option for the reference and the tuned recipe,
// per modality) and the reader that applies a config's keys and checks them.
#include "antidote/defenses/bedkd/recipe.hpp"

#include <vector>

namespace antidote::bedkd {
namespace {

bool builtin_arch(const std::string& arch) {
  return arch == "cnn" || arch == "preact_resnet18" || arch == "transformer" || arch == "textcnn";
}

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

// The keys only the directional mapping reads: with another identification method they
// would be accepted and do nothing, so naming one is an error.
void check_dmm_keys(const Params& p, const Config& c) {
  if (c.identify == "dmm") return;
  static const char* const dmm_only[] = {
      "flip_per_class", "flip_shift", "flip_epochs", "flip_batch", "flip_lr", "flip_temperature",
      "flip_alpha", "flip_kl_weight", "flip_mse_weight", "flip_params", "flip_with_trust", "flip_stop_accuracy",
      "score", "score_over", "threshold", "max_flagged", "max_kept", "consistency", "vote", "vote_min_share",
      "vote_by"};
  for (const char* k : dmm_only)
    if (p.has(k)) fail("{}: '{}' belongs to identify: dmm, and identify is '{}'", p.context(), k, c.identify);
}

}  // namespace

std::string default_identify(const DefenseSetup& setup) {
  return recipe_defaults(builtin_arch(setup.arch) ? "tuned" : "reference", setup).identify;
}

Config read_config(Params& p, const DefenseSetup& setup) {
  auto recipe = p.get<std::string>("recipe", "auto");
  if (recipe == "auto") recipe = builtin_arch(setup.arch) ? "tuned" : "reference";
  Config c = recipe_defaults(recipe, setup);
  c.identify = p.get<std::string>("identify", c.identify);
  c.alpha = p.get<double>("alpha", c.alpha);
  c.kl_weight = p.get<double>("kl_weight", c.kl_weight);
  c.mse_weight = p.get<double>("mse_weight", c.mse_weight);
  c.mask_padding = p.get<bool>("mask_padding", c.mask_padding);
  c.optimizer = p.get<std::string>("optimizer", c.optimizer);
  c.weight_decay = p.get<double>("weight_decay", c.weight_decay);
  c.flip_per_class = p.get<int64_t>("flip_per_class", c.flip_per_class);
  c.flip_shift = p.get<int64_t>("flip_shift", c.flip_shift);
  c.flip_epochs = p.get<int64_t>("flip_epochs", c.flip_epochs);
  c.flip_batch = p.get<int64_t>("flip_batch", c.flip_batch);
  c.flip_lr = p.get<double>("flip_lr", c.flip_lr);
  c.flip_temperature = p.get<double>("flip_temperature", c.flip_temperature);
  c.flip_alpha = p.get<double>("flip_alpha", c.flip_alpha >= 0 ? c.flip_alpha : c.alpha);
  c.flip_kl_weight = p.get<double>("flip_kl_weight", c.kl_weight);
  c.flip_mse_weight = p.get<double>("flip_mse_weight", c.mse_weight);
  c.flip_params = p.get<std::string>("flip_params", c.flip_params);
  c.reshuffle = p.get<bool>("reshuffle", c.reshuffle);
  c.flip_with_trust = p.get<bool>("flip_with_trust", c.flip_with_trust);
  c.score = p.get<std::string>("score", c.score);
  c.score_over = p.get<std::string>("score_over", c.score_over);
  c.flip_stop_accuracy = p.get<double>("flip_stop_accuracy", c.flip_stop_accuracy);
  c.threshold = p.get<double>("threshold", c.threshold);
  c.min_confidence = p.get<double>("min_confidence", c.min_confidence);
  c.max_flagged = p.get<int64_t>("max_flagged", c.max_flagged);
  c.max_kept = p.get<int64_t>("max_kept", c.max_kept);
  c.consistency = p.get<bool>("consistency", c.consistency);
  c.vote = p.get<bool>("vote", c.vote);
  c.vote_min_share = p.get<double>("vote_min_share", c.vote_min_share);
  c.vote_by = p.get<std::string>("vote_by", c.vote_by);
  c.score_batch = p.get<int64_t>("score_batch", c.score_batch);
  c.trust_per_class = p.get<int64_t>("trust_per_class", c.trust_per_class);
  c.akd_epochs = p.get<int64_t>("akd_epochs", c.akd_epochs);
  c.batch_size = p.get<int64_t>("batch_size", c.batch_size);
  c.punish_batch = p.get<int64_t>("punish_batch", c.batch_size);
  c.akd_lr = p.get<double>("akd_lr", c.akd_lr);
  c.akd_temperature = p.get<double>("akd_temperature", c.akd_temperature);
  c.punish_weight = p.get<double>("punish_weight", c.punish_weight);
  c.punish_stop = p.get<std::string>("punish_stop", c.punish_stop);
  c.punish_floor = p.get<double>("punish_floor", c.punish_floor);
  c.punish_per_epoch = p.get<int64_t>("punish_per_epoch", c.punish_per_epoch);
  c.punish_mean = p.get<std::string>("punish_mean", c.punish_mean);

  const auto& ctx = p.context();
  if (!(c.alpha >= 0 && c.alpha <= 1) || !(c.flip_alpha >= 0 && c.flip_alpha <= 1))
    fail("{}: alpha and flip_alpha must lie in [0, 1]", ctx);
  if (c.flip_per_class < 1 || c.trust_per_class < 0) fail("{}: flip_per_class must be >= 1, trust_per_class >= 0", ctx);
  if (c.flip_epochs < 0 || c.akd_epochs < 0) fail("{}: epochs must be >= 0", ctx);
  if (c.flip_batch < 1 || c.batch_size < 1 || c.punish_batch < 1 || c.score_batch < 1)
    fail("{}: batch sizes must be positive", ctx);
  if (!(c.flip_lr > 0) || !(c.akd_lr > 0)) fail("{}: learning rates must be positive", ctx);
  if (!(c.flip_temperature > 0) || !(c.akd_temperature > 0)) fail("{}: temperatures must be positive", ctx);
  if (!(c.min_confidence >= 0 && c.min_confidence <= 1)) fail("{}: min_confidence must lie in [0, 1]", ctx);
  if (!(c.vote_min_share >= 0 && c.vote_min_share <= 1)) fail("{}: vote_min_share must lie in [0, 1]", ctx);
  if (c.vote_by != "count" && c.vote_by != "lowest_mean")
    fail("{}: vote_by must be count or lowest_mean, got '{}'", ctx, c.vote_by);
  if (c.punish_per_epoch < 0) fail("{}: punish_per_epoch must be >= 0 (0 = all of D_p)", ctx);
  if (c.max_flagged < 0 || c.max_kept < 0) fail("{}: max_flagged and max_kept must be >= 0 (0 = no cap)", ctx);
  if (c.punish_stop != "none" && c.punish_stop != "flipped" && c.punish_stop != "prob")
    fail("{}: punish_stop must be none, flipped or prob, got '{}'", ctx, c.punish_stop);
  if (!(c.punish_floor >= 0 && c.punish_floor < 1)) fail("{}: punish_floor must lie in [0, 1)", ctx);
  if (c.punish_mean != "still" && c.punish_mean != "drawn")
    fail("{}: punish_mean must be still or drawn, got '{}'", ctx, c.punish_mean);
  if (c.score != "prob" && c.score != "target") fail("{}: score must be prob or target, got '{}'", ctx, c.score);
  if (c.score_over != "last" && c.score_over != "epochs")
    fail("{}: score_over must be last or epochs, got '{}'", ctx, c.score_over);
  if (!(c.flip_stop_accuracy >= 0 && c.flip_stop_accuracy <= 1))
    fail("{}: flip_stop_accuracy must lie in [0, 1] (0 = off)", ctx);
  if (setup.num_classes > 0 && (c.flip_shift % setup.num_classes) == 0)
    fail("{}: flip_shift {} maps every label onto itself with {} classes", ctx, c.flip_shift, setup.num_classes);
  check_dmm_keys(p, c);
  return c;
}

}  // namespace antidote::bedkd
