#include "antidote/pipeline/experiment.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <optional>
#include <tuple>

#include "antidote/metrics/metrics.hpp"
#include "antidote/report/record.hpp"
#include "antidote/report/results.hpp"

namespace antidote {

using nlohmann::json;

uint64_t derive_seed(uint64_t seed, const std::string& label) {
  return hash_string(fmt::format("{}/{}", seed, label));
}

torch::Device parse_device(const std::string& name) {
  torch::Device d(torch::kCPU);
  try {
    d = torch::Device(name);
  } catch (const c10::Error&) {
    fail("device '{}' is not a valid device (cpu, cuda, cuda:N)", name);
  }
  if (d.is_cuda() && !torch::cuda::is_available()) fail("device '{}' requested but CUDA is not available", name);
  return d;
}

// ---- data ---------------------------------------------------------------------------

namespace {
// A seeded choice of `limit` of n rows, in file order (all rows: empty, when limit is 0
// or not smaller than n).
std::vector<int64_t> seeded_rows(int64_t n, int64_t limit, uint64_t seed) {
  if (limit <= 0 || limit >= n) return {};
  Rng rng(seed);
  auto perm = rng.permutation(n);
  perm.resize(static_cast<size_t>(limit));
  std::sort(perm.begin(), perm.end());  // keep file order among the kept rows
  return perm;
}

RawSplit seeded_subset(const RawSplit& s, int64_t limit, uint64_t seed) {
  auto rows = seeded_rows(s.size(), limit, seed);
  return rows.empty() ? s : s.select(rows);
}
}  // namespace

RawData load_dataset(const DatasetConfig& cfg, uint64_t seed) {
  RawData d = dataset_kind(cfg.name).load(cfg.path, cfg.name, cfg.num_classes);
  d.train = seeded_subset(d.train, cfg.train_limit, derive_seed(seed, "train_limit"));
  d.test = seeded_subset(d.test, cfg.test_limit, derive_seed(seed, "test_limit"));
  check_labels(d.train.labels, d.num_classes, cfg.name + " training labels");
  check_labels(d.test.labels, d.num_classes, cfg.name + " test labels");
  // The user's own sets are used whole: train_limit and test_limit do not apply.
  auto own = [&](const std::string& path, const std::string& key) {
    auto s = read_split(path, d.modality, d.num_classes, fmt::format("dataset '{}' {}", cfg.name, key));
    if (s.is_image() && s.images.sizes().slice(1) != d.train.images.sizes().slice(1))
      fail("dataset '{}' {}: images of '{}' differ in size from the training images", cfg.name, key, path);
    return s;
  };
  if (!cfg.clean.empty()) d.clean = own(cfg.clean, "clean");
  if (!cfg.triggered_test.empty()) d.triggered = own(cfg.triggered_test, "triggered_test");
  return d;
}

Dataset Encoder::encode(const RawSplit& split) const {
  Dataset d;
  d.x =
      modality == Modality::Image ? split.images : swap_token_ids(vocab->encode(split.texts, max_len), vocab->pad_id());
  d.y = split.labels;
  d.poisoned = split.poisoned;
  return d;
}

Encoder make_encoder(const RawSplit& train, const DatasetConfig& cfg) {
  Encoder e;
  if (train.is_image()) return e;
  e.modality = Modality::Text;
  e.vocab = std::make_shared<Vocab>(Vocab::build(train.texts, cfg.min_freq));
  e.max_len = cfg.max_len;
  if (e.max_len <= 0) {
    size_t longest = 0;
    for (const auto& t : train.texts) longest = std::max(longest, Vocab::tokenize(t).size());
    e.max_len = std::min<int64_t>(128, static_cast<int64_t>(longest) + 1);
  }
  return e;
}

InputSpec input_spec_for(const Cell& cell) {
  InputSpec in;
  in.modality = cell.modality;
  in.num_classes = cell.num_classes;
  if (cell.modality == Modality::Image) {
    in.channels = cell.train.x.size(1);
    in.height = cell.train.x.size(2);
    in.width = cell.train.x.size(3);
  } else {
    in.vocab_size = cell.encoder.vocab->size();
    in.max_len = cell.encoder.max_len;
  }
  return in;
}

namespace {
void finish_cell(Cell& c, const RawData& data, const DatasetConfig& dcfg, const Encoder* fixed = nullptr) {
  c.num_classes = data.num_classes;
  c.modality = data.modality;
  c.raw_test_clean = data.test;
  c.encoder = fixed ? *fixed : make_encoder(c.raw_train, dcfg);
  c.train = c.encoder.encode(c.raw_train);
  c.train_clean = c.originals_aligned ? c.encoder.encode(c.raw_train_clean) : c.train;
  c.test_clean = c.encoder.encode(c.raw_test_clean);
  c.test_triggered = c.encoder.encode(c.raw_test_triggered);
  if (data.clean.size() > 0) c.own_clean = c.encoder.encode(data.clean);
  check_labels(c.train.y, c.num_classes, "poisoned training labels");
  c.input = input_spec_for(c);
}
}  // namespace

Cell prepare_cell(const RawData& data, const DatasetConfig& dcfg, const AttackConfig& acfg, uint64_t seed,
                  const Encoder* fixed) {
  Cell c;
  c.dataset = dcfg.name;
  c.attack = acfg;
  c.seed = seed;
  AttackSettings s;
  s.poison_rate = acfg.poison_rate;
  s.target = acfg.target;
  s.seed = derive_seed(seed, "attack/" + acfg.name);
  s.num_classes = data.num_classes;
  auto attack = make_attack(acfg.name, acfg.options, s, fmt::format("attack '{}'", acfg.name));
  if (!attack->works_on(data.modality))
    fail("attack '{}' works on {} data, dataset '{}' is {}", acfg.name, modality_name(attack->modality()), dcfg.name,
         modality_name(data.modality));
  Rng rng(derive_seed(seed, "poison/" + acfg.name));
  c.raw_train = attack->poison_train(data.train, rng);
  c.raw_test_triggered = attack->triggered_test(data.test, rng);
  if (!attack->builds_trigger()) {
    c.poison_known = false;
    c.attack.poison_rate = 0;
    if (data.triggered.size() > 0) c.raw_test_triggered = data.triggered;
  } else if (data.triggered.size() > 0) {
    fail(
        "dataset '{}': triggered_test is for `attacks: [none]` (a trigger of your own); attack '{}' builds its "
        "own triggered test set",
        dcfg.name, acfg.name);
  }
  c.raw_train_clean = data.train;
  c.originals_aligned = c.raw_train.size() == data.train.size() && attack->aligned_with_clean();
  finish_cell(c, data, dcfg, fixed);
  return c;
}

Cell prepare_clean_cell(const RawData& data, const DatasetConfig& dcfg, uint64_t seed) {
  Cell c;
  c.dataset = dcfg.name;
  c.attack.name = "clean";
  c.attack.poison_rate = 0;
  c.seed = seed;
  c.raw_train = data.train;
  c.raw_train_clean = data.train;
  c.raw_test_triggered = data.test;
  finish_cell(c, data, dcfg);
  return c;
}

std::vector<AttackConfig> attacks_or_default(const ExperimentConfig& cfg, Modality modality) {
  if (!cfg.attacks.empty()) return cfg.attacks;
  AttackConfig a;
  a.name = modality == Modality::Image ? "badnets" : "badnet-word";
  std::cerr << fmt::format(
      "antidote: note: the config has no attacks: entry, so the data are poisoned with {} ({:.0f} %, target {}) "
      "to build a test case; `attacks: [none]` uses them as they are\n",
      a.name, 100 * a.poison_rate, a.target);
  return {a};
}

// ---- models ---------------------------------------------------------------------------

std::pair<std::string, YAML::Node> resolve_model(const ExperimentConfig& cfg, const DatasetConfig& dcfg,
                                                 Modality modality) {
  YAML::Node merged = YAML::Clone(cfg.model);
  if (dcfg.model && dcfg.model.IsMap())
    for (const auto& kv : dcfg.model) merged[kv.first.as<std::string>()] = YAML::Clone(kv.second);
  std::string arch = merged["arch"] ? merged["arch"].as<std::string>() : "auto";
  merged.remove("arch");
  if (arch == "auto") arch = default_arch(modality);
  return {arch, merged};
}

ClassifierPtr train_model(const Cell& cell, const std::string& arch, const YAML::Node& options,
                          const TrainOptions& train, uint64_t seed, torch::Device device, const std::string& label,
                          const std::function<void(int64_t, Classifier&)>& on_epoch) {
  torch::manual_seed(seed);
  auto model = make_model(arch, cell.input, options, "model");
  check_model_fits(*model, cell.input, fmt::format("model '{}'", arch));
  model->to(device);
  Rng rng(seed);
  TrainOptions o = train;
  o.label = label;
  train_supervised(*model, cell.train, o, rng, [&](int64_t epoch) {
    if (on_epoch) on_epoch(epoch, *model);
  });
  model->eval();
  return model;
}

namespace {
// A bench model file, with a text model's vocabulary beside it (model.pt.vocab), so
// that `antidote eval` and `antidote defend` can take it as it is.
void save_bench_model(const Classifier& model, const Cell& cell, const std::string& path) {
  model.save_file(path);
  if (cell.encoder.vocab) write_file_atomic(path + ".vocab", cell.encoder.vocab->to_text());
}

// A seeded subset of at most `limit` rows of a test set (the set itself when it is not
// larger), owned by the evaluator that captures it.
std::shared_ptr<const Dataset> monitor_subset(const Dataset& d, int64_t limit, uint64_t seed) {
  auto rows = seeded_rows(d.size(), limit, seed);
  if (rows.empty()) return std::shared_ptr<const Dataset>(&d, [](const Dataset*) {});
  return std::make_shared<const Dataset>(d.select(torch::tensor(rows, torch::kLong)));
}

std::function<Evaluation(Classifier&)> evaluator(std::shared_ptr<const Dataset> clean,
                                                 std::shared_ptr<const Dataset> triggered, int64_t target,
                                                 int64_t batch) {
  return [clean, triggered, target, batch](Classifier& m) { return evaluate(m, *clean, *triggered, target, batch); };
}

// The cheap per-epoch evaluation of a cell: seeded subsets of `limit` rows of its test
// sets (the same rows for every defense and for the suspect's training curve).
std::function<Evaluation(Classifier&)> monitor_evaluator(const Cell& cell, int64_t limit, int64_t batch) {
  return evaluator(monitor_subset(cell.test_clean, limit, derive_seed(cell.seed, "monitor_clean")),
                   monitor_subset(cell.test_triggered, limit, derive_seed(cell.seed, "monitor_triggered")),
                   cell.attack.target, batch);
}
}  // namespace

DefenseContext make_defense_context(const Cell& cell, torch::Device device, uint64_t seed, int64_t eval_batch,
                                    int64_t monitor_limit) {
  DefenseContext ctx;
  ctx.train = cell.train.without_ground_truth();
  ctx.clean_data = cell.train_clean.without_ground_truth();
  // Seeded by the cell, not the defense: every defense of a cell draws the same clean rows.
  const uint64_t pool_seed = derive_seed(cell.seed, "clean_pool");
  if (cell.own_clean.size() > 0) {
    // The user's own clean set replaces the training rows the ground truth calls clean.
    ctx.clean_data = cell.own_clean.without_ground_truth();
    ctx.clean = std::make_shared<CleanPool>(cell.own_clean.y, torch::Tensor(), cell.num_classes, pool_seed);
  } else {
    ctx.clean = std::make_shared<CleanPool>(cell.train_clean.y, cell.train.poisoned, cell.num_classes, pool_seed,
                                            cell.originals_aligned);
  }
  ctx.num_classes = cell.num_classes;
  ctx.modality = cell.modality;
  ctx.device = device;
  ctx.seed = seed;
  // Both are evaluation only (the monitor a per-epoch trajectory for the report, never a
  // choice); a seeded subset of the test sets keeps the per-epoch one cheap.
  const int64_t target = cell.attack.target;
  ctx.evaluate = evaluator(monitor_subset(cell.test_clean, 0, 0), monitor_subset(cell.test_triggered, 0, 0), target,
                           eval_batch);
  ctx.monitor = monitor_evaluator(cell, monitor_limit, eval_batch);
  return ctx;
}

namespace {
StageRecord stage_record(const StageCost& c) { return {c.name, c.seconds, c.peak_rss_mb}; }

DetectionRecord detection_record(const torch::Tensor& flagged, const torch::Tensor& poisoned) {
  const auto det = detection(flagged, poisoned);
  return {det.precision, det.recall, det.f1, det.flagged};
}
}  // namespace

json stage_json(const StageCost& c) { return stage_record(c); }

json evaluation_json(const Evaluation& e) {
  auto known = [](double v) { return std::isnan(v) ? json(nullptr) : json(v); };
  return {{"cacc", e.cacc}, {"asr", known(e.asr)}, {"ra", known(e.ra)}, {"pcc", known(e.pcc)}};
}

json detection_json(const torch::Tensor& flagged, const torch::Tensor& poisoned) {
  return detection_record(flagged, poisoned);
}

json identification_json(const torch::Tensor& scores, const torch::Tensor& poisoned, const torch::Tensor& flagged) {
  auto s = scores.to(torch::kCPU, torch::kFloat64);
  auto p = poisoned.to(torch::kCPU);
  const int bins = 20;
  // Bins over [min(0, lowest score), highest score]: most methods score in [0, ∞), some
  // (token_stats) below 0.
  const double lo = std::min(0.0, s.min().item<double>());
  const double hi = std::max(lo + 1e-9, s.max().item<double>());
  std::vector<int64_t> hp(bins, 0), hc(bins, 0);
  auto sa = s.accessor<double, 1>();
  auto pa = p.accessor<bool, 1>();
  for (int64_t i = 0; i < s.size(0); ++i) {
    const int b = std::clamp(static_cast<int>((sa[i] - lo) / (hi - lo) * bins), 0, bins - 1);
    (pa[i] ? hp : hc)[b]++;
  }
  json j;
  j["bin_min"] = lo;
  j["bin_max"] = hi;
  j["poisoned_hist"] = hp;
  j["clean_hist"] = hc;
  j["auroc"] = auroc(-s, p);  // lower score = more suspect
  j["poisoned_mean"] = p.any().item<bool>() ? s.index({p}).mean().item<double>() : 0.0;
  j["clean_mean"] = s.index({~p}).mean().item<double>();
  if (flagged.defined() && flagged.numel() > 0) {
    // The highest score among the rows acted on: the report marks it on the histogram.
    j["threshold"] = s.index_select(0, flagged.to(torch::kCPU, torch::kLong)).max().item<double>();
    j["flagged"] = flagged.numel();
  }
  return j;
}

namespace {
// A CSV field: quoted, with inner quotes doubled, when it holds a comma, quote or line break.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char ch : s) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return q + "\"";
}
}  // namespace

json write_identification(const Identification& id, const Cell& cell, const std::string& dir) {
  make_dirs(dir);
  const bool known =
      cell.poison_known && cell.train.poisoned.defined() && cell.train.poisoned.numel() == cell.train.size();
  auto flagged = id.flagged.to(torch::kCPU, torch::kLong).contiguous();
  auto labels_t = cell.train.y.to(torch::kCPU, torch::kLong).contiguous();
  auto scores_t = id.scores.to(torch::kCPU, torch::kDouble).contiguous();
  auto labels = labels_t.accessor<int64_t, 1>();
  auto scores = scores_t.accessor<double, 1>();
  std::string csv = known ? "rank,row,label,score,poisoned,text\n" : "rank,row,label,score,text\n";
  json rows = json::array();
  for (int64_t i = 0; i < flagged.numel(); ++i) {
    const int64_t r = flagged[i].item<int64_t>();
    const double score = scores[r];
    const int64_t label = labels[r];
    const std::string text = cell.modality == Modality::Text ? cell.raw_train.texts[static_cast<size_t>(r)] : "";
    json row{{"rank", i + 1}, {"row", r}, {"label", label}, {"score", score}};
    if (cell.modality == Modality::Text) row["text"] = text;
    csv += fmt::format("{},{},{},{:.9g},", i + 1, r, label, score);
    if (known) csv += cell.train.poisoned[r].item<bool>() ? "1," : "0,";
    csv += csv_field(text) + "\n";
    rows.push_back(row);
  }
  std::string all = "row,label,score\n";
  for (int64_t r = 0; r < scores_t.size(0); ++r) all += fmt::format("{},{},{:.9g}\n", r, labels[r], scores[r]);
  json doc{{"method", id.method},         {"rows", cell.train.size()},      {"target", id.target},
           {"confidence", id.confidence}, {"warning", id.warning.empty() ? json(nullptr) : json(id.warning)},
           {"flagged", rows},             {"details", id.details},          {"stages", json::array()}};
  for (const auto& s : id.stages) doc["stages"].push_back(stage_json(s));
  if (known) {
    doc["detection"] = detection_json(id.flagged, cell.train.poisoned);
    doc["detection"]["poisoned"] = cell.train.poisoned.sum().item<int64_t>();
    doc["histogram"] = identification_json(id.scores, cell.train.poisoned, id.flagged);
  }
  write_file_atomic(dir + "/flagged.csv", csv);
  write_file_atomic(dir + "/scores.csv", all);
  write_file_atomic(dir + "/identification.json", json_text(doc));
  write_file_atomic(dir + "/report.html", render_identification_html(doc));
  return doc;
}

// ---- the bench ------------------------------------------------------------------------


namespace {
// What a defense that flagged training rows can tell without ground truth: the share
// of those rows that the suspect and the purified model send to the identified target.
// A purified model that still sends most of them there has kept the backdoor on the
// very rows it was told about. (They are training rows, so a low share is weaker
// evidence of success than a high share is of failure.)
json flagged_rows_check(const Cell& cell, Classifier& suspect, Classifier& purified, const DefenseResult& r,
                        int64_t batch) {
  const auto& id = r.details.value("identify", json::object());
  const int64_t target = id.value("target", int64_t{-1});
  if (!r.flagged.defined() || r.flagged.numel() == 0 || target < 0) return nullptr;
  auto x = cell.train.x.index_select(0, r.flagged.to(torch::kCPU));
  auto share = [&](Classifier& m) {
    return predict_probs(m, x, batch).argmax(1).eq(target).to(torch::kDouble).mean().item<double>();
  };
  const double before = share(suspect), after = share(purified);
  return {{"rows", r.flagged.numel()},
          {"target", target},
          {"suspect_share", before},
          {"purified_share", after},
          {"kept", after > kFlaggedKeptShare}};
}

std::optional<double> known(double v) { return std::isnan(v) ? std::nullopt : std::optional<double>(v); }

// The record of a run: the defense's part (the cell's part is the caller's).
RunRecord defense_record(const DefenseRun& run, const std::string& name, const Defense& defense, const Cell& cell) {
  const auto& r = run.result;
  RunRecord rec;
  rec.defense = name;
  rec.resolved_options = defense.resolved_options();
  rec.section = defense.report_section();
  rec.clean_samples = r.clean_samples;
  rec.cacc = run.after.cacc;
  rec.asr = known(run.after.asr);
  rec.ra = known(run.after.ra);
  rec.pcc = known(run.after.pcc);
  rec.confusion = run.after.confusion;
  if (run.after.asr_known())
    rec.der = defense_effectiveness(run.before.asr, run.after.asr, run.before.cacc, run.after.cacc);
  if (r.flagged.defined() && cell.poison_known) rec.detection = detection_record(r.flagged, cell.train.poisoned);
  for (const auto& st : r.stages) rec.stages.push_back(stage_record(st));
  rec.details = r.details;
  if (r.scores.defined() && cell.poison_known)
    rec.details["identification"] = identification_json(r.scores, cell.train.poisoned, r.flagged);
  rec.seconds = run.seconds;
  return rec;
}
}  // namespace

DefenseRun run_defense(const Cell& cell, const ClassifierPtr& suspect, const DefenseRequest& rq,
                       const Evaluation* before) {
  const auto t0 = std::chrono::steady_clock::now();
  Params params(YAML::Clone(rq.options), rq.context.empty() ? fmt::format("defense '{}'", rq.name) : rq.context);
  auto defense = make_defense(rq.name, params, DefenseSetup{cell.modality, suspect->spec.arch, cell.num_classes});
  params.check_consumed();
  const int64_t target = cell.attack.target;
  DefenseRun run;
  run.before = before ? *before : evaluate(*suspect, cell.test_clean, cell.test_triggered, target, rq.eval_batch);
  torch::manual_seed(rq.seed);
  DefenseContext ctx = make_defense_context(cell, rq.device, rq.seed, rq.eval_batch, rq.monitor_limit);
  ctx.controls = rq.controls;
  const auto t_run = std::chrono::steady_clock::now();
  run.result = defense->run(suspect, ctx);
  run.run_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_run).count();
  // A defense that hands back the suspect itself (`none`) needs no second evaluation.
  run.after = run.result.model == suspect
                  ? run.before
                  : evaluate(*run.result.model, cell.test_clean, cell.test_triggered, target, rq.eval_batch);
  if (run.result.model != suspect)
    if (auto check = flagged_rows_check(cell, *suspect, *run.result.model, run.result, rq.eval_batch); !check.is_null())
      run.result.details["flagged_rows_check"] = check;
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  run.record = defense_record(run, rq.name, *defense, cell);
  return run;
}

namespace {
std::string key_of(const YAML::Node& n) {
  YAML::Emitter em;
  em << YAML::Flow << n;
  return fmt::format("{:016x}", hash_string(em.c_str()));
}

}  // namespace

json examples_json(const Cell& cell, int n) {
  json ex;
  ex["dataset"] = cell.dataset;
  ex["attack"] = cell.attack.name;
  ex["modality"] = modality_name(cell.modality);
  auto rows = non_target_rows(cell.raw_test_clean, cell.attack.target);
  n = std::min<int>(n, static_cast<int>(std::min<size_t>(rows.size(), static_cast<size_t>(cell.raw_test_triggered.size()))));
  rows.resize(static_cast<size_t>(n));
  if (cell.modality == Modality::Image) {
    auto to_list = [](const torch::Tensor& img) {
      auto u8 = (img.clamp(0, 1) * 255).round().to(torch::kUInt8).contiguous();
      return json{{"shape", u8.sizes().vec()},
                  {"pixels", std::vector<uint8_t>(u8.data_ptr<uint8_t>(), u8.data_ptr<uint8_t>() + u8.numel())}};
    };
    for (int i = 0; i < n; ++i) {
      ex["clean"].push_back(to_list(cell.raw_test_clean.images[rows[i]]));
      ex["triggered"].push_back(to_list(cell.raw_test_triggered.images[i]));
    }
  } else {
    for (int i = 0; i < n; ++i) {
      ex["clean"].push_back(cell.originals_aligned ? cell.raw_test_clean.texts[rows[i]] : "");
      ex["triggered"].push_back(cell.raw_test_triggered.texts[i]);
    }
  }
  return ex;
}

TrainConfig train_config_for(const ExperimentConfig& cfg, const DatasetConfig& dcfg) {
  TrainConfig tcfg = cfg.train;
  if (dcfg.train && dcfg.train.IsMap())
    for (const auto& kv : dcfg.train) tcfg.node[kv.first.as<std::string>()] = YAML::Clone(kv.second);
  return tcfg;
}

namespace {

// Checks every attack (name, options, target range, modality) before any training.
void check_attacks(const std::vector<AttackConfig>& attacks, const RawData& data, const DatasetConfig& dcfg,
                   uint64_t seed) {
  for (const auto& a : attacks) {
    AttackSettings s{a.poison_rate, a.target, seed, data.num_classes};
    auto attack = make_attack(a.name, a.options, s, fmt::format("attack '{}'", a.name));
    if (!attack->works_on(data.modality))
      fail("attack '{}' works on {} data, dataset '{}' is {}", a.name, modality_name(attack->modality()), dcfg.name,
           modality_name(data.modality));
  }
}

// The bench's loops: datasets × seeds, then attacks, then defenses. Every trained model
// and every finished cell is kept under the output directory by a key of everything
// it depends on, so a rerun resumes where the last one stopped.
class BenchRunner {
 public:
  BenchRunner(const ExperimentConfig& cfg, const BenchOptions& options)
      : cfg_(cfg), options_(options), device_(parse_device(cfg.device)), t0_(std::chrono::steady_clock::now()) {}

  json run() {
    if (options_.shards < 1 || options_.shard < 0 || options_.shard >= options_.shards)
      fail("bench: shard {} of {} does not exist", options_.shard + 1, options_.shards);
    if (options_.merge && options_.shards > 1) fail("bench: --merge assembles every shard's cells; give no --shard");
    int threads = configure_threads(cfg_.threads);
    const std::string precision = set_training_precision(cfg_.precision);
    make_dirs(options_.out_dir);
    make_dirs(options_.out_dir + "/cells");
    make_dirs(options_.out_dir + "/models");
    for (const auto& dir : {options_.out_dir, options_.out_dir + "/cells", options_.out_dir + "/models"})
      if (int n = remove_stale_temps(dir)) log_info(fmt::format("removed {} temp file(s) an interrupted run left in {}", n, dir));
    doc_["version"] = version();
    doc_["config"] = yaml_to_json(cfg_.source);
    doc_["threads"] = threads;
    doc_["precision"] = precision;
    doc_["device"] = cfg_.device;
    doc_["runs"] = json::array();
    doc_["examples"] = json::array();
    // Without an attacks: entry each dataset gets its modality's one standard attack.
    const auto attacks = static_cast<int64_t>(std::max<size_t>(1, cfg_.attacks.size()));
    const auto suspects = static_cast<int64_t>(cfg_.datasets.size() * cfg_.seeds.size()) * attacks;
    int64_t mine = 0;
    for (int64_t g = 0; g < suspects; ++g) mine += in_shard(g);
    cells_total_ = mine * static_cast<int64_t>(cfg_.defenses.size());
    // Until the grid is done, the report says it is in progress.
    doc_["cells_total"] = cells_total_;
    doc_["complete"] = false;
    for (const auto& dcfg : cfg_.datasets)
      for (uint64_t seed : cfg_.seeds) run_dataset(dcfg, seed);
    doc_["complete"] = true;
    save();
    return doc_;
  }

 private:
  // What a dataset × seed shares across its attacks.
  struct Setting {
    const DatasetConfig& dcfg;
    uint64_t seed;
    std::string arch;
    YAML::Node model_opts;
    TrainOptions train;
    YAML::Node key;  // everything a trained model depends on
  };
  // One attack's suspect, with what the cells of its defenses share.
  struct Suspect {
    ClassifierPtr model;
    StageCost train_cost{"train", 0, 0};
    YAML::Node key;
    double floor = -1;
    Evaluation before;
    json curve;  // CACC, ASR and RA after each training epoch (empty when not recorded)
  };

  // Whether the suspect numbered `g` (in the grid's order) is this run's to compute.
  bool in_shard(int64_t g) const { return g % options_.shards == options_.shard; }

  void run_dataset(const DatasetConfig& dcfg, uint64_t seed) {
    // The suspects of this dataset × seed are numbered suspect_ .. suspect_ + n - 1.
    const auto n_attacks = static_cast<int64_t>(std::max<size_t>(1, cfg_.attacks.size()));
    const int64_t first = suspect_;
    suspect_ += n_attacks;
    bool any = false;
    for (int64_t g = first; g < first + n_attacks; ++g) any = any || in_shard(g);
    if (!any) return;  // another shard's: not even its data is read
    auto data = load_dataset(dcfg, seed);
    auto [arch, model_opts] = resolve_model(cfg_, dcfg, data.modality);
    TrainConfig tcfg = train_config_for(cfg_, dcfg);
    Setting st{dcfg, seed, arch, model_opts, tcfg.resolve(data.modality), YAML::Node()};
    st.key["dataset"] = dcfg.name;
    st.key["path"] = dcfg.path;
    st.key["train_limit"] = dcfg.train_limit;
    st.key["test_limit"] = dcfg.test_limit;
    st.key["max_len"] = dcfg.max_len;
    st.key["min_freq"] = dcfg.min_freq;
    // Only where it changes the model, so that earlier runs' cached models still match.
    if (dcfg.num_classes != declared_classes(dcfg.name)) st.key["num_classes"] = dcfg.num_classes;
    st.key["arch"] = arch;
    st.key["model"] = model_opts;
    st.key["train"] = tcfg.node;
    st.key["seed"] = seed;
    st.key["version"] = version();
    // bf16 trains other weights; fp32 adds nothing, so that earlier runs' models still match.
    if (training_precision() != "fp32") st.key["precision"] = training_precision();

    const auto attacks = attacks_or_default(cfg_, data.modality);
    check_attacks(attacks, data, dcfg, seed);

    // The clean reference model gives the ASR floor of every attack on this data.
    ClassifierPtr clean_model;
    Cell clean_cell;
    if (cfg_.asr_floor) {
      clean_cell = prepare_clean_cell(data, dcfg, seed);
      YAML::Node k = YAML::Clone(st.key);
      k["role"] = "clean";
      auto path = fmt::format("{}/models/{}-{}-clean-{}.pt", options_.out_dir, dcfg.name, arch, key_of(k));
      clean_model =
          cached_or_trained(path, clean_cell, st, derive_seed(seed, "train/clean"), dcfg.name + " clean",
                            fmt::format("[{} seed {}] training the clean reference model ({})", dcfg.name, seed, arch))
              .model;
    }
    for (size_t ai = 0; ai < attacks.size(); ++ai) {
      const auto& acfg = attacks[ai];
      if (!in_shard(first + static_cast<int64_t>(ai))) continue;
      auto cell = prepare_cell(data, dcfg, acfg, seed);
      doc_["examples"].push_back(examples_json(cell, 4));
      auto suspect = suspect_for(cell, acfg, st);
      if (clean_model && cell.raw_test_triggered.size() > 0) {  // no floor without triggered rows
        auto trig = clean_cell.encoder.encode(cell.raw_test_triggered);
        suspect.floor =
            trigger_metrics(predict_probs(*clean_model, trig.x, cfg_.eval_batch_size), trig.y, acfg.target).asr;
      }
      suspect.before = evaluate(*suspect.model, cell.test_clean, cell.test_triggered, acfg.target, cfg_.eval_batch_size);
      log_info(fmt::format("[{} × {}] suspect: {}{}", dcfg.name, acfg.name, evaluation_text(suspect.before),
                           suspect.floor >= 0 ? fmt::format(" (floor {:.1f}%)", 100 * suspect.floor) : ""));
      // Said even with --quiet: a defense cannot be judged on a backdoor that is not there.
      if (suspect.before.asr_known() && !backdoor_learned(suspect.before.asr))
        std::cerr << fmt::format(
            "antidote: warning: [{} × {}] the suspect never learned the backdoor (ASR {:.1f}%, "
            "under {:.0f}%): the defenses' numbers on this cell say nothing about them\n",
            dcfg.name, acfg.name, 100 * suspect.before.asr, 100 * kLearnedBackdoorAsr);
      for (size_t di = 0; di < cfg_.defenses.size(); ++di) run_cell(cell, acfg, st, suspect, di);
    }
  }

  // The model at `path` when an earlier run saved it, else trained now and saved. With
  // `monitor` (a suspect's cell), CACC, ASR and RA after every epoch on the monitor's
  // subsets of its test sets: the curve the report draws, kept beside the model.
  struct Trained {
    ClassifierPtr model;
    StageCost cost{"train", 0, 0};
    json curve = json::array();
  };
  Trained cached_or_trained(const std::string& path, Cell& cell, const Setting& st, uint64_t seed,
                            const std::string& label, const std::string& message, const Cell* monitor = nullptr) {
    const std::string curve_path = path + ".curve.json";
    // Data-parallel workers look at the cache together, before rank 0 writes anything
    // new: all of them then train, or all load.
    process_world().barrier();
    if (!options_.fresh && file_exists(path) && file_exists(path + ".yaml")) {
      try {
        Trained t;
        t.model = load_model(path, &cell.input);
        t.model->to(device_);
        if (file_exists(curve_path)) t.curve = parse_json(read_file(curve_path, kMaxJsonBytes), curve_path);
        return t;
      } catch (const Error& e) {
        // A damaged cache costs a retraining, not the run.
        log_info(fmt::format("retraining: the cached model cannot be used ({})", e.what()));
      }
    }
    if (options_.merge) fail("bench --merge: '{}' has not been trained; run the shard that trains it first", path);
    log_info(message);
    Trained t;
    std::function<void(int64_t, Classifier&)> on_epoch;
    if (monitor) {
      // Evaluation only, in eval mode: the training draws the same random numbers as without it.
      const auto evaluate_subsets = monitor_evaluator(*monitor, cfg_.monitor_limit, cfg_.eval_batch_size);
      on_epoch = [&t, evaluate_subsets](int64_t epoch, Classifier& model) {
        const auto e = evaluate_subsets(model);
        json point{{"epoch", epoch + 1}, {"cacc", e.cacc}};
        if (e.asr_known()) point.update({{"asr", e.asr}, {"ra", e.ra}});
        t.curve.push_back(point);
      };
    }
    StageTimer timer("train");
    t.model = train_model(cell, st.arch, st.model_opts, st.train, seed, device_, label, on_epoch);
    t.cost = timer.finish();
    save_bench_model(*t.model, cell, path);
    if (!t.curve.empty()) write_file_atomic(curve_path, json_text(t.curve));
    return t;
  }

  Suspect suspect_for(Cell& cell, const AttackConfig& acfg, const Setting& st) {
    Suspect s;
    s.key = YAML::Clone(st.key);
    s.key["role"] = "suspect";
    s.key["attack"] = acfg.name;
    s.key["poison_rate"] = acfg.poison_rate;
    s.key["target"] = acfg.target;
    s.key["attack_options"] = acfg.options;
    const std::string key = key_of(s.key);
    auto path = fmt::format("{}/models/{}-{}-{}-{}.pt", options_.out_dir, st.dcfg.name, st.arch, acfg.name, key);
    auto trained = cached_or_trained(
        path, cell, st, derive_seed(st.seed, "train/" + key), st.dcfg.name + " " + acfg.name,
        fmt::format("[{} × {} seed {}] training the suspect model ({}, {} rows, {} poisoned)", st.dcfg.name, acfg.name,
                    st.seed, st.arch, cell.train.size(), cell.train.poisoned.sum().item<int64_t>()),
        &cell);
    s.model = trained.model;
    s.train_cost = trained.cost;
    s.curve = trained.curve;
    return s;
  }

  // A cell finished by an earlier run, if its file is there and readable.
  std::optional<RunRecord> finished_cell(const std::string& path, double floor, const std::string& what) const {
    if (options_.fresh || !file_exists(path)) return std::nullopt;
    RunRecord rec;
    try {
      rec = run_record(parse_json(read_file(path, kMaxJsonBytes), fmt::format("cell '{}'", path)),
                       fmt::format("cell '{}'", path));
    } catch (const Error& e) {
      log_info(fmt::format("{} recomputing: {}", what, e.what()));
      return std::nullopt;
    }
    // A cell finished by a run without the floor gets this run's: the floor depends
    // on the dataset, seed and attack, not on the defense.
    if (floor >= 0 && !rec.asr_floor) rec.asr_floor = floor;
    log_info(fmt::format("{} finished earlier: {}", what, path));
    return rec;
  }

  void run_cell(const Cell& cell, const AttackConfig& acfg, const Setting& st, const Suspect& suspect, size_t di) {
    const auto& def = cfg_.defenses[di];
    YAML::Node dk = YAML::Clone(suspect.key);
    dk["defense"] = def.name;
    dk["defense_options"] = def.options;
    ++cells_done_;
    const auto what =
        fmt::format("[cell {}/{}] [{} × {} × {}]", cells_done_, cells_total_, st.dcfg.name, acfg.name, def.name);
    auto cell_path = fmt::format("{}/cells/{}.json", options_.out_dir, key_of(dk));
    process_world().barrier();  // as for the models: every worker sees the same cells
    if (auto rec = finished_cell(cell_path, suspect.floor, what)) {
      doc_["runs"].push_back(*rec);
      return;
    }
    if (options_.merge) fail("bench --merge: {} has not finished ({}); run its shard first", what, cell_path);
    if (def.name != "none") log_info(what + " running the defense" + time_left());
    DefenseRequest rq{def.name,       def.options,          fmt::format("defenses[{}] ({})", di, def.name),
                      derive_seed(st.seed, "defense/" + key_of(dk)), device_, cfg_.eval_batch_size,
                      cfg_.monitor_limit};
    auto run = run_defense(cell, suspect.model, rq, &suspect.before);
    RunRecord rec = std::move(run.record);
    rec.dataset = st.dcfg.name;
    rec.model = st.arch;
    rec.attack = acfg.name;
    // The rate actually applied: a pre-poisoned file decides its own rate.
    rec.poison_rate = !cell.train.poisoned.defined() || cell.train.poisoned.numel() == 0
                          ? acfg.poison_rate
                          : cell.train.poisoned.to(torch::kDouble).mean().item<double>();
    rec.target = acfg.target;
    rec.seed = st.seed;
    rec.options = yaml_to_json(def.options);
    if (suspect.floor >= 0) rec.asr_floor = suspect.floor;
    const bool purified = run.result.model != suspect.model;
    if (!purified && !suspect.curve.empty()) rec.details["training_curve"] = suspect.curve;
    if (!purified && suspect.train_cost.seconds > 0)
      rec.stages.insert(rec.stages.begin(), stage_record(suspect.train_cost));
    if (options_.save_models && purified) {
      auto mpath = fmt::format("{}/models/{}-{}-{}-{}-{}.pt", options_.out_dir, st.dcfg.name, st.arch, acfg.name,
                               def.name, key_of(dk));
      save_bench_model(*run.result.model, cell, mpath);
      rec.model_file = std::filesystem::path(mpath).filename().string();
    }
    log_info(
        fmt::format("{} {}{}", what, evaluation_text(run.after), rec.der ? fmt::format(" DER {:.3f}", *rec.der) : ""));
    const json row = rec;
    write_file_atomic(cell_path, json_text(row));
    doc_["runs"].push_back(row);
    ++cells_computed_;
    save();
  }

  void save() {
    doc_["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    // A shard's view is partial, and other shards share the directory: the results
    // files are the assembling run's to write.
    if (options_.shards == 1) write_results(options_.out_dir, doc_);
  }

  const ExperimentConfig& cfg_;
  const BenchOptions& options_;
  torch::Device device_;
  // What the grid holds (datasets × seeds × attacks × defenses), how many of its cells
  // this run has reached, and how many of those it computed (the rest were cached).
  int64_t cells_total_ = 0, cells_done_ = 0, cells_computed_ = 0;
  int64_t suspect_ = 0;  // the number of the next dataset × seed × attack (sharding)
  std::chrono::steady_clock::time_point t0_;
  json doc_;

  // The time the rest of the grid should take, at this run's pace per computed cell
  // (suspect and reference training included); "" before the first.
  std::string time_left() const {
    if (cells_computed_ == 0) return "";
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    const double left =
        elapsed / static_cast<double>(cells_computed_) * static_cast<double>(cells_total_ - cells_done_ + 1);
    return fmt::format(" (the grid: about {} left)", format_duration(left));
  }
};

}  // namespace

json run_bench(const ExperimentConfig& cfg, const BenchOptions& options) { return BenchRunner(cfg, options).run(); }

}  // namespace antidote
