// BeDKD's options: one struct, the two recipes' values, and the reader that checks
// them. Shared by the directional mapping (dmm.cpp) and the defense (bedkd.cpp).
#pragma once

#include <string>

#include "antidote/core/options.hpp"
#include "antidote/defenses/bedkd/bedkd.hpp"
#include "antidote/defenses/defense.hpp"

namespace antidote::bedkd {

struct Config {
  std::string recipe;
  // Where the punish set comes from: an identification method (dmm = the directional
  // mapping below, the paper's; early_loss, token_stats, rank_mean, ...).
  std::string identify = "dmm";
  // the shared loss
  double alpha = 0.3, kl_weight = 1.0, mse_weight = 1.0;
  bool mask_padding = false;
  std::string optimizer = "adam";
  double weight_decay = 0.0;
  // stage 1: directional mapping
  int64_t flip_per_class = 80, flip_shift = 1, flip_epochs = 20, flip_batch = 16;
  double flip_lr = 3e-5, flip_temperature = 1.5;
  // -1: the same as alpha, kl_weight, mse_weight (the reference uses one loss for both stages)
  double flip_alpha = -1, flip_kl_weight = -1, flip_mse_weight = -1;
  std::string flip_params = "all";
  bool reshuffle = false;
  bool flip_with_trust = false;  // also flip the trust rows (the whole clean budget; not in the reference)
  // Stop the mapping after the first epoch at which it gives at least this share of
  // the flip rows their flipped label (0 = run all flip_epochs).
  double flip_stop_accuracy = 0.0;
  // stage 2: identification
  std::string score = "prob";  // prob: mean |Δp| (reference); target: |Δ p of the suspect's top class|
  // last: score the mapping after its last epoch (reference); epochs: each row's mean
  // rank (0 = least moved, 1 = most) over the scores after every epoch of the mapping
  std::string score_over = "last";
  double threshold = 0.1;
  // Below this share of the target label among the most suspect rows, identification
  // warns that it is unsure (every identification method reads the same key).
  double min_confidence = FlagOptions{}.min_confidence;
  int64_t max_flagged = 128, max_kept = 32;
  bool consistency = true, vote = false;
  double vote_min_share = 0.0;
  std::string vote_by = "count";
  int64_t score_batch = 512;
  // stage 3: adversarial distillation
  int64_t trust_per_class = 320, akd_epochs = 50, batch_size = 16;
  // > 0: a total clean budget, split per class as the paper's 80 flipped + 320 trusted
  // (flip_per_class and trust_per_class follow from it).
  int64_t clean_samples = 0;
  int64_t punish_batch = 0;  // 0: batch_size
  // 0 = the whole of D_p in every punish pass; N = a fresh seeded draw of N rows of
  // D_p per epoch, so that no row is punished often enough to be memorised.
  int64_t punish_per_epoch = 0;
  double akd_lr = 3e-5, akd_temperature = 2.5, punish_weight = 1.0;
  // none | flipped (stop punishing rows the student no longer maps to their label) |
  // prob (stop once the student's probability of the label is at most punish_floor)
  std::string punish_stop = "none";
  double punish_floor = 0.1;
  // How a punish batch's loss is averaged once the stopping rule has dropped some of its
  // rows: still (over the rows still punished: one row left gets a whole batch's step)
  // or drawn (over the rows drawn: a stopped row counts as zero, so the step shrinks as
  // the rows are unlearned).
  std::string punish_mean = "still";
  // ascent: gradient ascent on L_KD (the paper's); uniform: descent on the soft
  // cross-entropy to the uniform distribution over every class but the row's label,
  // which pulls the rows off the target without handing them all to one wrong class.
  std::string punish_loss = "ascent";
  // running: the student's batch-norm layers normalise the punish batches with their
  // running statistics and leave them unchanged; batch: with the
  // batch's own, as in training. A punish batch holds only identified (likely triggered)
  // rows; normalised on its own it also drags the running statistics, which every later
  // evaluation uses, toward triggered inputs. No effect on a model without batch norm.
  // (KeepRunningStatistics)
  std::string punish_batch_norm = "running";
};

// The options as the config and command line give them: `recipe` (auto: tuned for the
// built-in architectures, reference otherwise) picks the defaults, every key overrides
// one, and the values are checked. Keys of the directional mapping given while another
// identification method is chosen are an error.
Config read_config(Params& p, const DefenseSetup& setup);
// BeDKD's clean_samples, where given: flip_per_class and trust_per_class from the total.
// The defense applies it; the directional mapping run as another defense's
// identification does not (that defense's clean_samples is its own budget).
void split_clean_budget(const Params& p, Config& c, const DefenseSetup& setup);
// The resolved values (results.json) and the keys with each recipe's defaults
// (`antidote list --options`).
nlohmann::json option_values(const Config& c);
OptionDocs option_docs();

// The identification method BeDKD uses by default for a setup (also `antidote
// identify`'s default).
std::string default_identify(const DefenseSetup& setup);

// The shared pieces of the two stages.
torch::Tensor padding_mask(const Config& c, const torch::Tensor& x);
// Whether L_KD with these weights reads the padding positions' token states: only a
// feature MSE that is computed (kd_terms skips a zero weight) and not masked. Batches
// for any other loss may be cut to their longest row (TrainBatches).
bool reads_padding_states(const Config& c, const KdWeights& w);
// The frozen teacher's outputs on every row of `x`, computed once in batches. The DMM
// and the trust pass visit the same rows every epoch and f_B is frozen in eval mode, so
// its outputs never change; caching them saves a third of the forward work
// (docs/speed.md). Batches are then cut from the cache with cached_batch.
ModelOutput teacher_outputs(Classifier& teacher, const torch::Tensor& x, int64_t batch);
ModelOutput cached_batch(const ModelOutput& all, const torch::Tensor& idx, int64_t width);

// The directional mapping module and its selection as an identification method.
IdentifierPtr make_dmm(const Config& c);

}  // namespace antidote::bedkd
