// BeDKD (arXiv 2508.01595, AAAI 2026), SPEC §2: a Directional Mapping Module (train
// a copy of the suspect on clean rows with cyclically flipped labels), identification
// of the rows whose prediction the mapping did not move (the backdoor survives it),
// then adversarial distillation: trust passes on clean rows, punish passes (gradient
// ascent) on the identified rows.
//
// Two recipes: `reference` follows the authors' released code (tuned for BERT
// fine-tuning); the default for the built-in from-scratch models is the one that
// docs/bedkd.md shows to work. Every number is an option.
#include "antidote/defenses/bedkd.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <numeric>

#include "antidote/defenses/defense.hpp"
#include "antidote/train/losses.hpp"
#include "antidote/train/train.hpp"

namespace antidote::bedkd {

KdTerms kd_terms(const ModelOutput& student, const ModelOutput& teacher, const torch::Tensor& labels,
                 double temperature, const KdWeights& w, const torch::Tensor& feature_mask) {
  KdTerms t;
  const double distill = 1.0 - w.alpha;
  t.ce = torch::cross_entropy_loss(student.logits, labels);
  // A term with weight 0 is not computed (the text DMM runs on cross-entropy alone, and
  // the feature MSE over every token state is its costliest part).
  auto zero = torch::zeros({}, student.logits.options());
  t.kl = distill * w.kl != 0 ? kl_teacher_student(teacher.logits, student.logits, temperature) : zero;
  if (distill * w.mse != 0) {
    auto diff2 = (student.features - teacher.features).pow(2);
    if (feature_mask.defined() && diff2.dim() == 3) {
      auto m = feature_mask.to(diff2.dtype()).unsqueeze(-1);  // [B, L, 1]
      auto denom = (m.sum() * diff2.size(2)).clamp_min(1.0);
      t.mse = (diff2 * m).sum() / denom;
    } else {
      t.mse = diff2.mean();
    }
  } else {
    t.mse = zero;
  }
  t.total = w.alpha * t.ce + distill * (w.kl * t.kl + w.mse * t.mse);
  return t;
}

torch::Tensor flip_labels(const torch::Tensor& labels, int64_t num_classes, int64_t shift) {
  if (num_classes < 2) fail("bedkd: the label flip needs at least 2 classes, got {}", num_classes);
  int64_t s = ((shift % num_classes) + num_classes) % num_classes;
  if (s == 0) fail("bedkd: flip_shift {} maps every label of {} classes onto itself", shift, num_classes);
  return (labels + s).remainder(num_classes);
}

torch::Tensor direction_scores(const torch::Tensor& probs_suspect, const torch::Tensor& probs_mapped) {
  return (probs_suspect - probs_mapped).abs().mean(1);
}

torch::Tensor fractional_ranks(const torch::Tensor& scores) {
  const int64_t n = scores.numel();
  // Times the reciprocal, as the measured runs computed it (bit for bit).
  return n > 1 ? mid_ranks(scores) * (1.0 / static_cast<double>(n - 1)) : torch::zeros({n}, torch::kFloat64);
}

Selection select_suspects(const torch::Tensor& scores, const torch::Tensor& suspect_pred, const torch::Tensor& labels,
                          const SelectOptions& opt, const torch::Tensor& ids) {
  auto s = scores.to(torch::kCPU, torch::kDouble).contiguous();
  auto pred = suspect_pred.to(torch::kCPU, torch::kLong).contiguous();
  auto lab = labels.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t n = s.size(0);
  if (pred.size(0) != n || lab.size(0) != n) fail("bedkd: scores, predictions and labels differ in length");
  torch::Tensor id = ids.defined() ? ids.to(torch::kCPU, torch::kLong).contiguous() : torch::arange(n, torch::kLong);
  auto sa = s.accessor<double, 1>();
  auto pa = pred.accessor<int64_t, 1>();
  auto la = lab.accessor<int64_t, 1>();
  auto ia = id.accessor<int64_t, 1>();

  std::vector<int64_t> rows;
  bool use_threshold = opt.threshold > 0 && std::isfinite(opt.threshold);
  for (int64_t i = 0; i < n; ++i)
    if (!use_threshold || sa[i] < opt.threshold) rows.push_back(i);
  // A total order that does not depend on where a row sits: (score, stable id).
  std::sort(rows.begin(), rows.end(), [&](int64_t a, int64_t b) {
    if (sa[a] != sa[b]) return sa[a] < sa[b];
    return ia[a] < ia[b];
  });
  Selection out;
  out.below_threshold = static_cast<int64_t>(rows.size());
  if (opt.max_flagged > 0 && static_cast<int64_t>(rows.size()) > opt.max_flagged) rows.resize(opt.max_flagged);
  out.after_cap = static_cast<int64_t>(rows.size());
  if (opt.consistency) {
    std::vector<int64_t> keep;
    for (auto r : rows)
      if (pa[r] == la[r]) keep.push_back(r);
    rows.swap(keep);
  }
  out.consistent = static_cast<int64_t>(rows.size());
  if (opt.vote && !rows.empty()) {
    // `rows` is sorted by (score, id), so each label's rows come lowest first.
    std::map<int64_t, int64_t> count;
    std::map<int64_t, double> lowest_sum;
    for (auto r : rows) {
      auto& k = count[la[r]];
      if (opt.max_kept <= 0 || k < opt.max_kept) lowest_sum[la[r]] += sa[r];
      ++k;
    }
    int64_t best = -1, best_n = 0;
    double best_mean = 0;
    for (const auto& [label, k] : count) {  // ties go to the smaller label
      const double mean = lowest_sum[label] / static_cast<double>(opt.max_kept > 0 ? std::min(k, opt.max_kept) : k);
      const bool better = opt.vote_by == "lowest_mean" ? (best < 0 || mean < best_mean) : k > best_n;
      if (better) best = label, best_n = k, best_mean = mean;
    }
    out.voted_label = best;
    std::vector<int64_t> keep;
    if (opt.vote_by == "lowest_mean" ||
        static_cast<double>(best_n) >= opt.vote_min_share * static_cast<double>(rows.size()))
      for (auto r : rows)
        if (la[r] == best) keep.push_back(r);
    rows.swap(keep);
  }
  out.voted = static_cast<int64_t>(rows.size());
  if (opt.max_kept > 0 && static_cast<int64_t>(rows.size()) > opt.max_kept) rows.resize(opt.max_kept);
  out.kept = static_cast<int64_t>(rows.size());
  out.rows = torch::tensor(rows, torch::kLong);
  return out;
}

namespace {

struct Config {
  std::string recipe;
  // the shared loss
  double alpha = 0.3, kl_weight = 1.0, mse_weight = 1.0;
  bool mask_padding = false;
  std::string optimizer = "adam";
  double weight_decay = 0.0;
  // stage 1: directional mapping
  int64_t flip_per_class = 80, flip_shift = 1, flip_epochs = 20, flip_batch = 16;
  double flip_lr = 3e-5, flip_temperature = 1.5;
  // flip_alpha < 0: the same as alpha (the reference uses one loss for both stages)
  double flip_alpha = -1, flip_kl_weight = 1.0, flip_mse_weight = 1.0;
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
  int64_t max_flagged = 128, max_kept = 32;
  bool consistency = true, vote = false;
  double vote_min_share = 0.0;
  std::string vote_by = "count";
  int64_t score_batch = 512;
  // stage 3: adversarial distillation
  int64_t trust_per_class = 320, akd_epochs = 50, batch_size = 16, punish_batch = 16;
  // 0 = the whole of D_p in every punish pass; N = a fresh seeded draw of N rows of
  // D_p per epoch, so that no row is punished often enough to be memorised.
  int64_t punish_per_epoch = 0;
  double akd_lr = 3e-5, akd_temperature = 2.5, punish_weight = 1.0;
  // none | flipped (stop punishing rows the student no longer maps to their label) |
  // prob (stop once the student's probability of the label is at most punish_floor)
  std::string punish_stop = "none";
  double punish_floor = 0.1;
};

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
    // The mapping is trained with cross-entropy alone on the whole clean budget, at the
    // reference's slow rate, for 10 epochs, and every row is ranked by how far it moved
    // after each epoch. Clean rows give way as the flip spreads; rows held by a trigger
    // resist for longer, so their mean rank is the lowest. The label whose lowest rows
    // sit lowest is the target (a count among the lowest rows can be won by a class the
    // mapping flips late). docs/bedkd.md, session 7, has the measurements.
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
    // The feature MSE over real tokens only: the padding positions' states carry no
    // input, and leaving them out lets the AKD batches be cut to their longest row
    // (TrainBatches). Same outcome on the measured cells, AKD 1.3-1.9x faster
    // (docs/bedkd.md, session 8).
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
    // gradient ascent never stops (docs/bedkd.md, session 6).
    c.threshold = 0.003;
    c.max_flagged = 1024;
    c.max_kept = 1024;
    c.punish_per_epoch = 128;
  }
  return c;
}

// Parameters that the directional mapping may change: all, the classification head
// (the last module holding parameters), the body (everything else), or a comma list
// of parameter-name prefixes.
std::vector<torch::Tensor> select_parameters(Classifier& model, const std::string& which) {
  auto named = model.named_parameters(true);
  std::vector<std::string> names;
  for (const auto& kv : named) names.push_back(kv.key());
  if (names.empty()) fail("bedkd: the model has no parameters to train");
  auto module_of = [](const std::string& n) {
    auto pos = n.rfind('.');
    return pos == std::string::npos ? std::string() : n.substr(0, pos);
  };
  std::string head = module_of(names.back());
  auto starts = [](const std::string& n, const std::string& prefix) {
    return n == prefix || n.rfind(prefix + ".", 0) == 0;
  };
  std::vector<std::string> prefixes;
  bool invert = false;
  if (which == "all") {
    prefixes = {""};
  } else if (which == "head" || which == "body") {
    prefixes = {head};
    invert = which == "body";
  } else {
    size_t start = 0;
    while (start <= which.size()) {
      auto end = which.find(',', start);
      if (end == std::string::npos) end = which.size();
      auto item = which.substr(start, end - start);
      item.erase(0, item.find_first_not_of(' '));
      item.erase(item.find_last_not_of(' ') + 1);
      if (!item.empty()) prefixes.push_back(item);
      start = end + 1;
    }
    if (prefixes.empty()) fail("bedkd: flip_params is empty");
  }
  std::vector<torch::Tensor> out;
  std::vector<bool> prefix_used(prefixes.size(), false);
  for (const auto& kv : named) {
    bool match = false;
    for (size_t i = 0; i < prefixes.size(); ++i) {
      if (prefixes[i].empty() || starts(kv.key(), prefixes[i])) {
        match = true;
        prefix_used[i] = true;
      }
    }
    if (match != invert) {
      out.push_back(kv.value());
    } else {
      kv.value().set_requires_grad(false);
    }
  }
  for (size_t i = 0; i < prefixes.size(); ++i) {
    if (!prefix_used[i]) {
      std::string known;
      for (const auto& n : names) {
        auto m = module_of(n);
        if (known.find(m + ",") == std::string::npos && !m.empty()) known += m + ", ";
      }
      fail("bedkd: flip_params '{}' matches no parameter (modules: {}all, head, body)", prefixes[i], known);
    }
  }
  if (out.empty()) fail("bedkd: flip_params '{}' leaves nothing to train", which);
  return out;
}

torch::Tensor padding_mask(const Config& c, const torch::Tensor& x) {
  if (!c.mask_padding || x.scalar_type() != torch::kLong || x.dim() != 2) return {};
  return x.ne(Vocab::kPad);
}

// Whether L_KD with these weights reads the padding positions' token states: only a
// feature MSE that is computed (kd_terms skips a zero weight) and not masked. Batches
// for any other loss may be cut to their longest row (TrainBatches).
bool reads_padding_states(const Config& c, const KdWeights& w) {
  return !c.mask_padding && (1.0 - w.alpha) * w.mse != 0;
}

// The frozen teacher's outputs on every row of `x`, computed once in batches. The DMM
// and the trust pass visit the same rows every epoch and f_B is frozen in eval mode, so
// its outputs never change; caching them saves a third of the forward work
// (docs/speed.md). Batches are then cut from the cache with cached_batch.
ModelOutput teacher_outputs(Classifier& teacher, const torch::Tensor& x, int64_t batch) {
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> logits, features;
  for (int64_t i = 0; i < x.size(0); i += batch) {
    auto out = teacher.forward(x.slice(0, i, std::min(x.size(0), i + batch)));
    logits.push_back(out.logits);
    features.push_back(out.features);
  }
  ModelOutput all;
  if (!logits.empty()) {
    all.logits = torch::cat(logits);
    all.features = torch::cat(features);
  }
  return all;
}

ModelOutput cached_batch(const ModelOutput& all, const torch::Tensor& idx, int64_t width) {
  ModelOutput out;
  out.logits = all.logits.index_select(0, idx);
  out.features = all.features.index_select(0, idx);
  // Token states of a batch cut to its longest row (TrainBatches, which cuts only where
  // the loss leaves the padding states out: reads_padding_states).
  if (out.features.dim() == 3 && width < out.features.size(1)) out.features = out.features.slice(1, 0, width);
  return out;
}

struct BeDKD : Defense {
  Config c;

  explicit BeDKD(Config cfg) : c(std::move(cfg)) {}

  DefenseResult run(const ClassifierPtr& suspect, DefenseContext& ctx) override {
    if (!ctx.clean || ctx.clean_data.size() == 0) fail("bedkd needs a clean labelled set (clean pool)");
    if (ctx.num_classes < 2) fail("bedkd needs at least 2 classes, got {}", ctx.num_classes);
    const auto dev = ctx.device;
    Rng rng(ctx.seed ^ hash_string("bedkd"));
    DefenseResult result;
    nlohmann::json& details = result.details;
    details["recipe"] = c.recipe;

    auto teacher = suspect->clone_deep();
    teacher->to(dev);
    freeze(*teacher);

    KdWeights flip_w{c.flip_alpha, c.flip_kl_weight, c.flip_mse_weight};
    KdWeights akd_w{c.alpha, c.kl_weight, c.mse_weight};

    // ---- Stage 1: directional mapping module ------------------------------------
    StageTimer t_dmm("dmm");
    auto flip_rows = ctx.clean->per_class(c.flip_per_class + (c.flip_with_trust ? c.trust_per_class : 0), 0);
    {
      auto perm = rng.permutation(flip_rows.size(0));
      flip_rows = flip_rows.index_select(0, torch::tensor(perm, torch::kLong));
    }
    Dataset flip = ctx.clean_set(flip_rows).to(dev);
    auto flipped = flip_labels(flip.y, ctx.num_classes, c.flip_shift);
    auto mapped = suspect->clone_deep();
    mapped->to(dev);
    mapped->train();
    for (auto& p : mapped->parameters()) p.set_requires_grad(true);
    auto flip_params = select_parameters(*mapped, c.flip_params);
    auto flip_opt = make_optimizer(flip_params, OptimizerConfig{c.optimizer, c.flip_lr, 0.0, c.weight_decay});
    torch::manual_seed(rng.fork_seed("dmm"));
    Rng flip_shuffle(rng.fork_seed("dmm-order"));
    const auto flip_teacher = teacher_outputs(*teacher, flip.x, c.score_batch);
    const TrainBatches flip_batches(*mapped, flip.x, c.flip_batch, !reads_padding_states(c, flip_w));
    // The suspect's probabilities on the training rows, and the running sum of the
    // per-epoch scores when the score is averaged over the mapping's epochs. Time spent
    // scoring the training rows is identification, wherever it happens: it moves from
    // the dmm stage's seconds to the identify stage's.
    double scoring_seconds = 0;
    auto timed = [&](auto&& f) {
      auto t0 = std::chrono::steady_clock::now();
      auto out = f();
      scoring_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      return out;
    };
    auto pb = timed([&] { return predict_probs(*teacher, ctx.train.x, c.score_batch); });
    const bool per_epoch_scores = c.score_over == "epochs";
    torch::Tensor score_sum;
    int64_t scored_epochs = 0;
    auto score_now = [&](Classifier& m) {
      auto pd = predict_probs(m, ctx.train.x, c.score_batch);
      if (c.score == "target") {
        auto top = pb.argmax(1, true);
        return (pb.gather(1, top) - pd.gather(1, top)).abs().squeeze(1);
      }
      return direction_scores(pb, pd);
    };
    {
      Progress progress("bedkd dmm", c.flip_epochs * flip.size(), "samples");
      double last = 0, flip_acc = 0;
      int64_t epochs_run = 0;
      for (int64_t epoch = 0; epoch < c.flip_epochs; ++epoch) {
        double sum = 0;
        int64_t seen = 0;
        for (const auto& idx : flip_batches.epoch(c.reshuffle ? &flip_shuffle : nullptr)) {
          auto ib = idx.to(dev);
          auto xb = flip_batches.rows(idx);
          auto yb = flipped.index_select(0, ib);
          auto sout = mapped->forward(xb);
          auto loss = kd_loss(sout, cached_batch(flip_teacher, ib, xb.size(1)), yb, c.flip_temperature, flip_w, padding_mask(c, xb));
          check_finite(loss, "bedkd dmm");
          flip_opt->zero_grad();
          loss.backward();
          flip_opt->step();
          sum += loss.item<double>() * idx.size(0);
          seen += idx.size(0);
          progress.advance(idx.size(0));
        }
        last = seen ? sum / seen : 0;
        ++epochs_run;
        if (per_epoch_scores) {  // predict_probs evaluates in eval mode and restores train mode
          auto s = timed([&] { return fractional_ranks(score_now(*mapped)); });
          score_sum = score_sum.defined() ? score_sum + s : s;
          ++scored_epochs;
        }
        if (c.flip_stop_accuracy > 0) {
          flip_acc = accuracy(predict_probs(*mapped, flip.x, c.score_batch), flipped.to(torch::kCPU));
          if (flip_acc >= c.flip_stop_accuracy) break;
        }
      }
      // With the stop rule on, the last epoch already measured the mapping as it is now.
      if (!(c.flip_stop_accuracy > 0) || epochs_run == 0)
        flip_acc = accuracy(predict_probs(*mapped, flip.x, c.score_batch), flipped.to(torch::kCPU));
      progress.finish(fmt::format("loss {:.4f} flipped {:.1f}% after {} epochs", last, 100 * flip_acc, epochs_run));
      details["dmm"] = {{"rows", flip.size()},     {"final_loss", last}, {"flip_accuracy", flip_acc},
                        {"epochs", epochs_run},     {"lr", c.flip_lr},    {"alpha", c.flip_alpha},
                        {"params", c.flip_params}};
    }
    mapped->eval();
    auto dmm_cost = t_dmm.finish();
    dmm_cost.seconds -= scoring_seconds;
    result.stages.push_back(dmm_cost);

    // ---- Stage 2: identification --------------------------------------------------
    StageTimer t_id("identify");
    // With score_over: epochs the ranks were summed during the mapping (an empty
    // mapping, flip_epochs 0, scores the unchanged copy: all zeros).
    torch::Tensor scores = scored_epochs > 0 ? score_sum / static_cast<double>(scored_epochs) : score_now(*mapped);
    mapped.reset();
    auto pred_b = pb.argmax(1);
    auto sel = select_suspects(scores, pred_b, ctx.train.y, {c.threshold, c.max_flagged, c.consistency, c.vote, c.vote_min_share, c.vote_by, c.max_kept});
    result.flagged = sel.rows;
    result.scores = scores.to(torch::kFloat);
    details["identify"] = {{"rows", ctx.train.size()},   {"below_threshold", sel.below_threshold},
                           {"after_cap", sel.after_cap}, {"consistent", sel.consistent},
                           {"voted", sel.voted},         {"voted_label", sel.voted_label},
                           {"kept", sel.kept},           {"threshold", c.threshold},
                           {"score_over", c.score_over}, {"vote_by", c.vote_by}};
    log_info(fmt::format("bedkd identify: {} rows, {}, {} after cap, {} consistent, {} voted (label {}), {} kept",
                         ctx.train.size(),
                         c.threshold > 0 ? fmt::format("{} below {}", sel.below_threshold, c.threshold)
                                         : std::string("no threshold"),
                         sel.after_cap, sel.consistent, sel.voted, sel.voted_label, sel.kept));
    auto id_cost = t_id.finish();
    id_cost.seconds += scoring_seconds;
    result.stages.push_back(id_cost);

    // ---- Stage 3: adversarial knowledge distillation ------------------------------
    StageTimer t_akd("akd");
    auto trust_rows = ctx.clean->per_class(c.trust_per_class, c.flip_per_class);
    {
      auto perm = rng.permutation(trust_rows.size(0));
      trust_rows = trust_rows.index_select(0, torch::tensor(perm, torch::kLong));
    }
    Dataset trust = ctx.clean_set(trust_rows).to(dev);
    Dataset punish = ctx.train.select(sel.rows).to(dev);
    result.clean_samples = c.flip_with_trust ? flip.size() : flip.size() + trust.size();

    auto student = suspect->clone_deep();
    student->to(dev);
    student->train();
    for (auto& p : student->parameters()) p.set_requires_grad(true);
    auto opt = make_optimizer(student->parameters(), OptimizerConfig{c.optimizer, c.akd_lr, 0.0, c.weight_decay});
    torch::manual_seed(rng.fork_seed("akd"));
    Rng akd_shuffle(rng.fork_seed("akd-order"));
    // Forked only when used, so that the default recipe's random streams stay as they were.
    Rng punish_draw(c.punish_per_epoch > 0 ? rng.fork_seed("akd-punish-draw") : 0);
    const auto trust_teacher = teacher_outputs(*teacher, trust.x, c.score_batch);
    const bool akd_cut = !reads_padding_states(c, akd_w);
    const TrainBatches trust_batches(*student, trust.x, c.batch_size, akd_cut),
        punish_batches(*student, punish.x, c.punish_batch, akd_cut);
    nlohmann::json trajectory = nlohmann::json::array();
    Progress progress("bedkd akd", c.akd_epochs, "epochs");
    for (int64_t epoch = 0; epoch < c.akd_epochs; ++epoch) {
      double trust_sum = 0, punish_sum = 0;
      int64_t trust_seen = 0, punish_seen = 0, punished = 0;
      for (const auto& idx : trust_batches.epoch(c.reshuffle ? &akd_shuffle : nullptr)) {
        auto ib = idx.to(dev);
        auto xb = trust_batches.rows(idx);
        auto yb = trust.y.index_select(0, ib);
        auto loss = kd_loss(student->forward(xb), cached_batch(trust_teacher, ib, xb.size(1)), yb, c.akd_temperature, akd_w, padding_mask(c, xb));
        check_finite(loss, "bedkd akd trust pass");
        opt->zero_grad();
        loss.backward();
        opt->step();
        trust_sum += loss.item<double>() * idx.size(0);
        trust_seen += idx.size(0);
      }
      if (punish.size() > 0 && c.punish_weight > 0) {
        torch::Tensor drawn;  // this epoch's punish rows (indices into D_p), or all of them
        if (c.punish_per_epoch > 0 && c.punish_per_epoch < punish.size()) {
          auto perm = punish_draw.permutation(punish.size());
          perm.resize(static_cast<size_t>(c.punish_per_epoch));
          std::sort(perm.begin(), perm.end());
          drawn = torch::tensor(perm, torch::kLong);
        }
        const int64_t n_punish = drawn.defined() ? drawn.numel() : punish.size();
        for (const auto& idx : epoch_batches(n_punish, c.punish_batch, nullptr)) {
          auto ib = (drawn.defined() ? drawn.index_select(0, idx) : idx).to(dev);
          auto xb = punish_batches.rows(ib);
          auto yb = punish.y.index_select(0, ib);
          if (c.punish_stop != "none") {
            // Stopping rule: punish only the rows that the student still maps to their
            // (presumed target) label ("flipped"), or still gives more than punish_floor
            // of its probability ("prob"). Decided on the punish rows alone.
            torch::Tensor still;
            {
              torch::NoGradGuard ng;
              student->eval();
              auto logits = student->forward(xb).logits;
              still = c.punish_stop == "flipped"
                          ? logits.argmax(1).eq(yb)
                          : torch::softmax(logits, 1).gather(1, yb.unsqueeze(1)).squeeze(1).gt(c.punish_floor);
              still = still.nonzero().squeeze(1);
              student->train();
            }
            if (still.numel() == 0) continue;
            xb = xb.index_select(0, still);
            yb = yb.index_select(0, still);
          }
          auto sout = student->forward(xb);
          ModelOutput tout;
          {
            torch::NoGradGuard ng;
            tout = teacher->forward(xb);
          }
          auto l = kd_loss(sout, tout, yb, c.akd_temperature, akd_w, padding_mask(c, xb));
          check_finite(l, "bedkd akd punish pass");
          opt->zero_grad();
          (-c.punish_weight * l).backward();
          opt->step();
          punish_sum += l.item<double>() * xb.size(0);
          punish_seen += xb.size(0);
          ++punished;
        }
      }
      nlohmann::json row = {{"epoch", epoch + 1},
                            {"trust_loss", trust_seen ? trust_sum / trust_seen : 0.0},
                            {"punish_loss", punish_seen ? punish_sum / punish_seen : 0.0},
                            {"punish_rows", punish_seen}};
      std::string extra = fmt::format("trust {:.4f} punish {:.4f}", row["trust_loss"].get<double>(),
                                      row["punish_loss"].get<double>());
      if (ctx.monitor) {
        auto e = ctx.monitor(*student);
        student->train();
        row["cacc"] = e.cacc;
        row["asr"] = e.asr;
        row["ra"] = e.ra;
        extra += fmt::format(" | cacc {:.1f}% asr {:.1f}%", 100 * e.cacc, 100 * e.asr);
      }
      trajectory.push_back(row);
      progress.advance(1, extra);
      (void)punished;
    }
    progress.finish();
    details["trajectory"] = trajectory;
    details["akd"] = {{"trust_rows", trust.size()},
                      {"punish_rows", punish.size()},
                      {"punish_per_epoch", c.punish_per_epoch},
                      {"punish_stop", c.punish_stop},
                      {"punish_floor", c.punish_floor},
                      {"mask_padding", c.mask_padding}};
    student->eval();
    for (auto& p : student->parameters()) p.set_requires_grad(false);
    result.model = student;
    result.stages.push_back(t_akd.finish());
    return result;
  }
};

std::shared_ptr<Defense> make_bedkd(Params& p, const DefenseSetup& setup) {
  auto recipe = p.get<std::string>("recipe", "auto");
  if (recipe == "auto") recipe = builtin_arch(setup.arch) ? "tuned" : "reference";
  Config c = recipe_defaults(recipe, setup);
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

  const auto& ctx = p.context();
  if (!(c.alpha >= 0 && c.alpha <= 1) || !(c.flip_alpha >= 0 && c.flip_alpha <= 1))
    fail("{}: alpha and flip_alpha must lie in [0, 1]", ctx);
  if (c.flip_per_class < 1 || c.trust_per_class < 0) fail("{}: flip_per_class must be >= 1, trust_per_class >= 0", ctx);
  if (c.flip_epochs < 0 || c.akd_epochs < 0) fail("{}: epochs must be >= 0", ctx);
  if (c.flip_batch < 1 || c.batch_size < 1 || c.punish_batch < 1 || c.score_batch < 1)
    fail("{}: batch sizes must be positive", ctx);
  if (!(c.flip_lr > 0) || !(c.akd_lr > 0)) fail("{}: learning rates must be positive", ctx);
  if (!(c.flip_temperature > 0) || !(c.akd_temperature > 0)) fail("{}: temperatures must be positive", ctx);
  if (!(c.vote_min_share >= 0 && c.vote_min_share <= 1)) fail("{}: vote_min_share must lie in [0, 1]", ctx);
  if (c.vote_by != "count" && c.vote_by != "lowest_mean")
    fail("{}: vote_by must be count or lowest_mean, got '{}'", ctx, c.vote_by);
  if (c.punish_per_epoch < 0) fail("{}: punish_per_epoch must be >= 0 (0 = all of D_p)", ctx);
  if (c.max_flagged < 0 || c.max_kept < 0) fail("{}: max_flagged and max_kept must be >= 0 (0 = no cap)", ctx);
  if (c.punish_stop != "none" && c.punish_stop != "flipped" && c.punish_stop != "prob")
    fail("{}: punish_stop must be none, flipped or prob, got '{}'", ctx, c.punish_stop);
  if (!(c.punish_floor >= 0 && c.punish_floor < 1)) fail("{}: punish_floor must lie in [0, 1)", ctx);
  if (c.score != "prob" && c.score != "target") fail("{}: score must be prob or target, got '{}'", ctx, c.score);
  if (c.score_over != "last" && c.score_over != "epochs")
    fail("{}: score_over must be last or epochs, got '{}'", ctx, c.score_over);
  if (!(c.flip_stop_accuracy >= 0 && c.flip_stop_accuracy <= 1))
    fail("{}: flip_stop_accuracy must lie in [0, 1] (0 = off)", ctx);
  if (setup.num_classes > 0 && (c.flip_shift % setup.num_classes) == 0)
    fail("{}: flip_shift {} maps every label onto itself with {} classes", ctx, c.flip_shift, setup.num_classes);
  return std::make_shared<BeDKD>(c);
}

Registrar<DefenseRegistry> reg("bedkd", make_bedkd,
                               "BeDKD: directional label-flip mapping finds poisoned rows, then trust/punish "
                               "adversarial distillation (recipe: reference | tuned)");

}  // namespace
}  // namespace antidote::bedkd
