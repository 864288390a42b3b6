// BeDKD's Directional Mapping Module as an identification method ("dmm", the paper's):
// a copy of the suspect is trained on clean rows with cyclically flipped labels, and
// the training rows whose prediction the mapping did not move are the suspects (the
// backdoor survives the mapping). Rows are scored by the mean absolute change of their
// probabilities, after the last epoch (the reference) or as the mean rank over every
// epoch, then filtered (threshold, cap, consistency, the all-to-one vote).
#include <chrono>

#include "antidote/defenses/bedkd/recipe.hpp"
#include "antidote/metrics/metrics.hpp"
#include "antidote/train/train.hpp"

namespace antidote::bedkd {
namespace {


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

// The mapping's scores of the training rows and the seconds spent computing them (which
// count as identification, wherever they happen).
struct MappingScores {
  torch::Tensor scores, suspect_probs;
  double scoring_seconds = 0;
};

class Dmm : public Identifier {
 public:
  explicit Dmm(Config c) : c_(std::move(c)) {}

  Identification identify(const ClassifierPtr& suspect, const DefenseContext& ctx, Rng& rng) override {
    if (!ctx.clean || ctx.clean_data.size() == 0) fail("identify dmm needs a clean labelled set (clean pool)");
    Identification id;
    id.method = "dmm";
    id.clean_per_class = c_.flip_per_class;
    StageTimer t_dmm("dmm");
    auto mapping = map_and_score(suspect, ctx, rng, id);
    auto dmm_cost = t_dmm.finish();
    dmm_cost.seconds -= mapping.scoring_seconds;
    id.stages.push_back(dmm_cost);

    StageTimer t_id("identify");
    select(mapping, ctx, id);
    auto id_cost = t_id.finish();
    id_cost.seconds += mapping.scoring_seconds;
    id.stages.push_back(id_cost);
    return id;
  }

 private:
  // Stage 1: train the mapping on the flip rows, scoring the training rows after every
  // epoch (score_over: epochs) or after the last.
  MappingScores map_and_score(const ClassifierPtr& suspect, const DefenseContext& ctx, Rng& rng, Identification& id) {
    const auto dev = ctx.device;
    const KdWeights flip_w{c_.flip_alpha, c_.flip_kl_weight, c_.flip_mse_weight};
    auto teacher = suspect->clone_deep();
    teacher->to(dev);
    freeze(*teacher);
    auto flip_rows = ctx.clean->per_class(c_.flip_per_class + (c_.flip_with_trust ? c_.trust_per_class : 0), 0,
                                          c_.flip_with_trust ? "flip_per_class + trust_per_class" : "flip_per_class");
    flip_rows = flip_rows.index_select(0, torch::tensor(rng.permutation(flip_rows.size(0)), torch::kLong));
    Dataset flip = ctx.clean_set(flip_rows).to(dev);
    auto flipped = flip_labels(flip.y, ctx.num_classes, c_.flip_shift);
    auto mapped = trainable_copy(*suspect);
    mapped->to(dev);
    Trainer flip_trainer(select_parameters(*mapped, c_.flip_params),
                         OptimizerConfig{c_.optimizer, c_.flip_lr, 0.0, c_.weight_decay}, "bedkd dmm");
    torch::manual_seed(rng.fork_seed("dmm"));
    Rng flip_shuffle(rng.fork_seed("dmm-order"));
    const auto flip_teacher = teacher_outputs(*teacher, flip.x, c_.score_batch);
    const TrainBatches flip_batches(*mapped, flip.x, c_.flip_batch, !reads_padding_states(c_, flip_w));
    MappingScores out;
    auto timed = [&](auto&& f) {
      auto t0 = std::chrono::steady_clock::now();
      auto r = f();
      out.scoring_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      return r;
    };
    out.suspect_probs = timed([&] { return predict_probs(*teacher, ctx.train.x, c_.score_batch); });
    auto score_now = [&](Classifier& m) {
      auto pd = predict_probs(m, ctx.train.x, c_.score_batch);
      const auto& pb = out.suspect_probs;
      if (c_.score == "target") {
        auto top = pb.argmax(1, true);
        return (pb.gather(1, top) - pd.gather(1, top)).abs().squeeze(1);
      }
      return direction_scores(pb, pd);
    };
    torch::Tensor score_sum;
    int64_t scored_epochs = 0;
    Progress progress("bedkd dmm", c_.flip_epochs * flip.size(), "samples");
    double last = 0, flip_acc = 0;
    int64_t epochs_run = 0;
    for (int64_t epoch = 0; epoch < c_.flip_epochs; ++epoch) {
      double sum = 0;
      int64_t seen = 0;
      for (const auto& idx :
           flip_batches.epoch(c_.reshuffle ? &flip_shuffle : nullptr, flip_trainer.rank(), flip_trainer.world_size())) {
        auto ib = idx.to(dev);
        auto xb = flip_batches.rows(idx);
        auto loss = kd_loss(mapped->forward(xb), cached_batch(flip_teacher, ib, xb.size(1)),
                            flipped.index_select(0, ib), c_.flip_temperature, flip_w, padding_mask(c_, xb));
        sum += flip_trainer.step(loss) * idx.size(0);
        seen += idx.size(0);
        progress.advance(idx.size(0));
      }
      last = seen ? sum / seen : 0;
      ++epochs_run;
      if (c_.score_over == "epochs") {  // predict_probs evaluates in eval mode and restores train mode
        auto s = timed([&] { return fractional_ranks(score_now(*mapped)); });
        score_sum = score_sum.defined() ? score_sum + s : s;
        ++scored_epochs;
      }
      if (c_.flip_stop_accuracy > 0) {
        flip_acc = accuracy(predict_probs(*mapped, flip.x, c_.score_batch), flipped.to(torch::kCPU));
        if (flip_acc >= c_.flip_stop_accuracy) break;
      }
    }
    // With the stop rule on, the last epoch already measured the mapping as it is now.
    if (!(c_.flip_stop_accuracy > 0) || epochs_run == 0)
      flip_acc = accuracy(predict_probs(*mapped, flip.x, c_.score_batch), flipped.to(torch::kCPU));
    progress.finish(fmt::format("loss {:.4f} flipped {:.1f}% after {} epochs", last, 100 * flip_acc, epochs_run));
    id.details["dmm"] = {{"rows", flip.size()},  {"final_loss", last}, {"flip_accuracy", flip_acc},
                         {"epochs", epochs_run}, {"lr", c_.flip_lr},   {"alpha", c_.flip_alpha},
                         {"params", c_.flip_params}};
    mapped->eval();
    // With score_over: epochs the ranks were summed during the mapping (an empty
    // mapping, flip_epochs 0, scores the unchanged copy: all zeros).
    out.scores = scored_epochs > 0 ? score_sum / static_cast<double>(scored_epochs)
                                   : timed([&] { return score_now(*mapped); });
    return out;
  }

  // Stage 2: the filters, the vote and the confidence.
  void select(const MappingScores& m, const DefenseContext& ctx, Identification& id) const {
    auto pred = m.suspect_probs.argmax(1);
    auto sel = select_suspects(m.scores, pred, ctx.train.y,
                               {c_.threshold, c_.max_flagged, c_.consistency, c_.vote, c_.vote_min_share, c_.vote_by,
                                c_.max_kept});
    id.flagged = sel.rows;
    id.scores = m.scores.to(torch::kCPU, torch::kDouble);
    id.target = sel.voted_label;
    if (id.target < 0 && sel.rows.numel() > 0)  // no vote: the most common label of the kept rows
      id.target = std::get<0>(torch::mode(ctx.train.y.to(torch::kCPU).index_select(0, sel.rows))).item<int64_t>();
    const int64_t n = std::max<int64_t>(1, sel.kept);
    set_confidence(id, label_share(id.scores, pred, ctx.train.y, id.target, n, c_.consistency),
                   c_.min_confidence, n);
    id.details["identify"] = {{"rows", ctx.train.size()},   {"below_threshold", sel.below_threshold},
                              {"after_cap", sel.after_cap}, {"consistent", sel.consistent},
                              {"voted", sel.voted},         {"voted_label", sel.voted_label},
                              {"kept", sel.kept},           {"threshold", c_.threshold},
                              {"score_over", c_.score_over}, {"vote_by", c_.vote_by}};
    // Without a vote (vote: false, or a majority short of vote_min_share) no label is chosen.
    const std::string vote_text = sel.voted_label >= 0
                                      ? fmt::format("{} of label {} (the vote's choice)", sel.voted, sel.voted_label)
                                      : fmt::format("{} (no label chosen by a vote)", sel.voted);
    log_info(fmt::format("bedkd identify: {} rows, {}, {} after cap, {} consistent, {}, {} kept", ctx.train.size(),
                         c_.threshold > 0 ? fmt::format("{} below {}", sel.below_threshold, c_.threshold)
                                          : std::string("no threshold"),
                         sel.after_cap, sel.consistent, vote_text, sel.kept));
  }

  Config c_;
};

IdentifierPtr make_dmm_from_params(Params& p, const DefenseSetup& setup) {
  if (p.has("identify")) fail("{}: the method is dmm itself; it takes no 'identify' key", p.context());
  p.set("identify", YAML::Node("dmm"));
  return make_dmm(read_config(p, setup));
}

Registrar<IdentifierRegistry> reg("dmm", make_dmm_from_params,
                                  "BeDKD's directional mapping (the paper's): rows whose prediction a label-flip "
                                  "mapping of the suspect does not move",
                                  [] {
                                    // BeDKD's keys that the mapping and its scoring read.
                                    OptionDocs docs;
                                    for (auto& d : option_docs())
                                      if (d.group == "dmm" || d.key == "recipe" || d.key == "min_confidence" ||
                                          d.key == "score_batch")
                                        docs.push_back(d);
                                    return docs;
                                  });

}  // namespace

IdentifierPtr make_dmm(const Config& c) { return std::make_shared<Dmm>(c); }

}  // namespace antidote::bedkd
