// antidote_bench: the speed of antidote's own code paths on this machine,
// written as JSON so that bench/python/twin.py can run the same work in PyTorch-Python
// and bench/python/report.py can put the two side by side in bench/RESULTS.md.
//
// Sections (--sections, comma list; default all):
//   matmul    float32 square matmul GFLOP/s (512², 2048²) at the configured threads
//   train     training-step throughput through train_supervised (small CNN, batch 128,
//             SGD; Transformer, batch 32, Adam) with analytic FLOPs and % of the matmul peak
//   eval      predict_probs throughput (eval batch 512)
//   defenses  seconds and peak RSS of every stage of bedkd, ntml, ft, fp, nad on fixed
//             cells (--cells): image = Fashion-MNIST badnets on the small CNN, 20k rows;
//             text = SST-2 addsent on the Transformer; preact = Fashion-MNIST badnets on
//             PreAct-ResNet-18 (width 64) at small stage sizes; through the pipeline API,
//             at --precision; the cell and the suspect are dumped for the twins
//
// Usage: antidote_bench --threads 2 --out DIR [--quick] [--sections train,eval]
//        antidote_bench --sections defenses --cells preact --precision bf16 --out DIR
#include <CLI/CLI.hpp>
#include <dlfcn.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

#include "antidote/metrics/metrics.hpp"
#include "antidote/pipeline/experiment.hpp"
#include "antidote/train/train.hpp"

using namespace antidote;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Args {
  int threads = 1;
  int blas_threads = -1;  // -1: as configure_threads sets it (1); otherwise override after it
  std::string out = "build-bench/bench-out";
  std::string sections = "matmul,train,eval,defenses";
  bool quick = false;
  int64_t cnn_steps = 0, transformer_steps = 0;  // 0: by --quick
  std::string fmnist = "/usr/share/datasets/fashion-mnist";
  std::string sst2 = "../shared/data/text/sst2";
  int64_t image_train_limit = 20000;
  int64_t test_limit = 2000;
  std::string cells = "image,text";
  std::string precision = "fp32";
};

// Which BLAS library the process mapped (reference or OpenBLAS), from /proc/self/maps.
std::string blas_library() {
  std::ifstream in("/proc/self/maps");
  std::string line;
  std::set<std::string> libs;
  while (std::getline(in, line)) {
    auto pos = line.find('/');
    if (pos == std::string::npos) continue;
    auto path = line.substr(pos);
    if (path.find("blas") != std::string::npos) libs.insert(path);
  }
  std::string s;
  for (const auto& l : libs) s += (s.empty() ? "" : ", ") + l;
  return s;
}

int blas_get_threads() {
  using Get = int (*)();
  if (auto fn = reinterpret_cast<Get>(::dlsym(RTLD_DEFAULT, "openblas_get_num_threads"))) return fn();
  return -1;  // not OpenBLAS
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "?";
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

// ---- matmul ---------------------------------------------------------------------------

json bench_matmul(int64_t n, double min_seconds) {
  torch::NoGradGuard ng;
  auto a = torch::randn({n, n}), b = torch::randn({n, n});
  auto c = torch::mm(a, b);  // warm-up (thread pools, page faults)
  int reps = 0;
  auto t0 = Clock::now();
  double el = 0;
  do {
    torch::mm_out(c, a, b);
    ++reps;
    el = since(t0);
  } while (el < min_seconds);
  double gflops = 2.0 * n * n * n * reps / el / 1e9;
  return {{"n", n}, {"reps", reps}, {"seconds", el}, {"gflops", gflops}};
}

// ---- analytic FLOPs -------------------------------------------------------------------

// Multiply-accumulates of one forward pass of one sample; `first` = MACs of the layer
// whose input needs no gradient (the first conv of the CNN), excluded from backward.
struct Macs {
  double forward = 0, first = 0;
  double train_flops() const { return 2.0 * (3.0 * forward - first); }
  double forward_flops() const { return 2.0 * forward; }
};

Macs cnn_macs(const InputSpec& in, int64_t width = 32, int64_t hidden = 128) {
  Macs m;
  double c1 = double(width) * in.height * in.width * in.channels * 9;
  double c2 = double(2 * width) * (in.height / 2) * (in.width / 2) * width * 9;
  double f1 = double(2 * width) * (in.height / 4) * (in.width / 4) * hidden;
  double f2 = double(hidden) * in.num_classes;
  m.forward = c1 + c2 + f1 + f2;
  m.first = c1;
  return m;
}

Macs transformer_macs(const InputSpec& in, int64_t d = 64, int64_t heads = 4, int64_t layers = 2, int64_t ff = 128) {
  Macs m;
  double L = double(in.max_len);
  double per_layer = L * (d * 3.0 * d + d * d + 2.0 * d * ff) + 2.0 * L * L * d;  // + QK^T and attn·V
  (void)heads;
  m.forward = layers * per_layer + double(d) * in.num_classes;
  return m;  // the embeddings train, so every layer's input gradient is needed
}

// ---- synthetic data -------------------------------------------------------------------

Dataset synthetic_images(int64_t n, const InputSpec& in) {
  Dataset d;
  d.x = torch::rand({n, in.channels, in.height, in.width});
  d.y = torch::randint(in.num_classes, {n}, torch::kLong);
  return d;
}

Dataset synthetic_tokens(int64_t n, const InputSpec& in) {
  Dataset d;
  auto ids = torch::randint(3, in.vocab_size, {n, in.max_len}, torch::kLong);
  auto len = torch::randint(6, in.max_len + 1, {n, 1}, torch::kLong);
  auto pos = torch::arange(in.max_len, torch::kLong).unsqueeze(0);
  ids.masked_fill_(pos.ge(len), Vocab::kPad);
  ids.select(1, 0).fill_(Vocab::kCls);
  d.x = ids;
  d.y = torch::randint(in.num_classes, {n}, torch::kLong);
  return d;
}

InputSpec image_spec() {
  InputSpec in;
  in.modality = Modality::Image;
  in.channels = 1, in.height = 28, in.width = 28, in.num_classes = 10;
  return in;
}

// SST-2's vocabulary size and max_len as the pipeline builds them (fallback ~SST-2).
InputSpec text_spec(const Args& a) {
  InputSpec in;
  in.modality = Modality::Text;
  in.num_classes = 2;
  in.vocab_size = 14000;
  in.max_len = 56;
  try {
    DatasetConfig d;
    d.name = "sst2";
    d.path = a.sst2;
    auto raw = load_dataset(d, 0);
    auto enc = make_encoder(raw.train, d);
    in.vocab_size = enc.vocab->size();
    in.max_len = enc.max_len;
  } catch (const std::exception& e) {
    std::cerr << "text spec: SST-2 not readable (" << e.what() << "), using vocab 14000, max_len 56\n";
  }
  return in;
}

// ---- training step throughput -----------------------------------------------------------

json bench_train(const std::string& arch, const InputSpec& in, const TrainOptions& base, int64_t steps,
                 const Macs& macs, double peak_gflops) {
  torch::manual_seed(1);
  auto model = make_model(arch, in, YAML::Node(YAML::NodeType::Map), "bench");
  int64_t B = base.batch_size;
  auto data = in.modality == Modality::Image ? synthetic_images(B * steps, in) : synthetic_tokens(B * steps, in);
  TrainOptions o = base;
  o.epochs = 1;
  o.label = "bench " + arch;
  Rng rng(7);
  // Warm-up: a few steps on a slice (allocator, thread pools, oneDNN primitives).
  Dataset warm{data.x.slice(0, 0, 3 * B), data.y.slice(0, 0, 3 * B), {}};
  train_supervised(*model, warm, o, rng);
  auto t0 = Clock::now();
  train_supervised(*model, data, o, rng);
  double el = since(t0);
  double sps = B * steps / el;
  double gflops = sps * macs.train_flops() / 1e9;
  return {{"model", arch},
          {"batch", B},
          {"steps", steps},
          {"optimizer", o.optimizer.name},
          {"lr", o.optimizer.lr},
          {"momentum", o.optimizer.momentum},
          {"weight_decay", o.optimizer.weight_decay},
          {"schedule", o.schedule},
          {"seconds", el},
          {"samples_per_s", sps},
          {"train_flops_per_sample", macs.train_flops()},
          {"gflops", gflops},
          {"peak_fraction", peak_gflops > 0 ? gflops / peak_gflops : 0.0}};
}

json bench_eval(const std::string& arch, const InputSpec& in, int64_t rows, int64_t batch, const Macs& macs,
                double peak_gflops) {
  torch::manual_seed(1);
  auto model = make_model(arch, in, YAML::Node(YAML::NodeType::Map), "bench");
  auto data = in.modality == Modality::Image ? synthetic_images(rows, in) : synthetic_tokens(rows, in);
  predict_probs(*model, data.x.slice(0, 0, batch), batch);  // warm-up
  auto t0 = Clock::now();
  auto p = predict_probs(*model, data.x, batch);
  double el = since(t0);
  double sps = rows / el;
  double gflops = sps * macs.forward_flops() / 1e9;
  return {{"model", arch},   {"rows", rows},   {"batch", batch}, {"seconds", el}, {"samples_per_s", sps},
          {"gflops", gflops}, {"peak_fraction", peak_gflops > 0 ? gflops / peak_gflops : 0.0}};
}

// ---- defense stages ---------------------------------------------------------------------

void dump_tensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& items) {
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& [k, v] : items) dict.insert(k, v.detach().cpu().contiguous());
  auto bytes = torch::pickle_save(c10::IValue(dict));
  write_file_atomic(path, std::string(bytes.begin(), bytes.end()));
}

YAML::Node yaml_of(const json& j) { return YAML::Load(j.dump()); }

struct CellPlan {
  CellPlan(std::string key_, std::string dataset_, std::string path_, std::string attack_, std::string arch_,
           int64_t target_)
      : key(std::move(key_)),
        dataset(std::move(dataset_)),
        path(std::move(path_)),
        attack(std::move(attack_)),
        arch(std::move(arch_)),
        target(target_) {}
  std::string key, dataset, path, attack, arch;
  int64_t target = 0, train_limit = 0, train_epochs = 1;
  int64_t test_limit = 0;  // 0: --test-limit
  double poison_rate = 0.1;
  std::vector<std::pair<std::string, json>> defenses;
};

json run_cell(const CellPlan& plan, const Args& a) {
  json out;
  out["cell"] = plan.key;
  out["dataset"] = plan.dataset;
  out["attack"] = plan.attack;
  out["arch"] = plan.arch;
  DatasetConfig dcfg;
  dcfg.name = plan.dataset;
  dcfg.path = plan.path;
  dcfg.train_limit = plan.train_limit;
  dcfg.test_limit = plan.test_limit > 0 ? plan.test_limit : a.test_limit;
  if (a.quick) dcfg.test_limit = std::min<int64_t>(dcfg.test_limit, 500);
  const uint64_t seed = 0;
  auto data = load_dataset(dcfg, seed);
  AttackConfig acfg;
  acfg.name = plan.attack;
  acfg.poison_rate = plan.poison_rate;
  acfg.target = plan.target;
  acfg.options = YAML::Node(YAML::NodeType::Map);
  auto cell = prepare_cell(data, dcfg, acfg, seed);
  TrainOptions topt = TrainConfig{}.resolve(cell.modality);
  topt.epochs = plan.train_epochs;
  StageTimer t_train("train");
  auto suspect = train_model(cell, plan.arch, YAML::Node(YAML::NodeType::Map), topt, derive_seed(seed, "bench/train"),
                             torch::kCPU, plan.key + " suspect");
  auto train_cost = t_train.finish();
  auto before = evaluate(*suspect, cell.test_clean, cell.test_triggered, acfg.target, 512);
  out["train"] = {{"epochs", topt.epochs},   {"batch", topt.batch_size}, {"rows", cell.train.size()},
                  {"seconds", train_cost.seconds}, {"peak_rss_mb", train_cost.peak_rss_mb},
                  {"optimizer", topt.optimizer.name}, {"lr", topt.optimizer.lr}};
  out["suspect"] = {{"cacc", before.cacc}, {"asr", before.asr}};
  out["input"] = {{"vocab_size", cell.input.vocab_size}, {"max_len", cell.input.max_len},
                  {"num_classes", cell.num_classes}};
  std::cerr << fmt::format("[{}] suspect trained in {:.1f}s: CACC {:.1f}% ASR {:.1f}%\n", plan.key, train_cost.seconds,
                           100 * before.cacc, 100 * before.asr);

  // What the twins need: the encoded cell (same rows, same tokens) and the suspect's weights.
  std::string dump = a.out + "/cell-" + plan.key + ".pt";
  dump_tensors(dump, {{"train_x", cell.train.x},
                      {"train_y", cell.train.y},
                      {"poisoned", cell.train.poisoned},
                      {"clean_x", cell.train_clean.x},
                      {"clean_y", cell.train_clean.y},
                      {"test_x", cell.test_clean.x},
                      {"test_y", cell.test_clean.y},
                      {"trig_x", cell.test_triggered.x},
                      {"trig_y", cell.test_triggered.y}});
  save_state_dict(*suspect, a.out + "/suspect-" + plan.key + ".pt");
  out["dump"] = dump;

  out["defenses"] = json::array();
  for (const auto& [name, options] : plan.defenses) {
    std::cerr << fmt::format("[{}] {} ...\n", plan.key, name);
    DefenseRequest rq{name, yaml_of(options), "bench " + name, derive_seed(seed, "bench/defense/" + name)};
    auto run = run_defense(cell, suspect, rq, &before);
    const auto& result = run.result;
    const auto& after = run.after;
    const double total = run.run_seconds;
    json row;
    row["defense"] = name;
    row["options"] = options;
    row["resolved"] = run.record.resolved_options;  // every key, defaults resolved: what the twins mirror
    row["seconds"] = total;
    row["clean_samples"] = result.clean_samples;
    row["cacc"] = after.cacc;
    row["asr"] = after.asr;
    row["stages"] = run.record.stages;
    // Sizes the twins replicate.
    const auto& d = result.details;
    if (name == "bedkd" && d.contains("dmm")) {
      row["sizes"] = {{"flip_rows", d["dmm"]["rows"]},
                      {"trust_rows", d["akd"]["trust_rows"]},
                      {"punish_rows", d["akd"]["punish_rows"]},
                      {"punish_per_epoch", d["akd"]["punish_per_epoch"]},
                      {"punish_stop", d["akd"]["punish_stop"]},
                      {"punish_floor", d["akd"]["punish_floor"]},
                      {"flip_epochs_run", d["dmm"]["epochs"]},
                      {"flip_lr", d["dmm"]["lr"]},
                      {"flip_alpha", d["dmm"]["alpha"]},
                      {"score_over", d["identify"]["score_over"]},
                      {"mask_padding", d["akd"]["mask_padding"]}};
    } else if (name == "ntml" && d.contains("dmm")) {
      row["sizes"] = {{"dmm", d["dmm"]}, {"identify", d["identify"]}, {"consensus", d.value("consensus", json())}};
    } else if (name == "fp") {
      row["sizes"] = {{"channels", d["channels"]}, {"pruned", d["pruned"]},
                      {"prune_evaluations", static_cast<int64_t>(d["prune_curve"].size()) - 1}};
    }
    std::string line = fmt::format("[{}] {}: {:.1f}s CACC {:.1f}% ASR {:.1f}% |", plan.key, name, total,
                                   100 * after.cacc, 100 * after.asr);
    for (const auto& s : result.stages) line += fmt::format(" {} {:.2f}s {:.0f}MB", s.name, s.seconds, s.peak_rss_mb);
    std::cerr << line << "\n";
    out["defenses"].push_back(row);
  }
  return out;
}

// PreAct-ResNet-18 (width 64) on Fashion-MNIST badnets. A training sample costs about
// 2.7 GFLOP, so every stage runs at a fraction of its default size: the table compares
// the two implementations stage by stage, not the defenses' efficacy.
CellPlan preact_plan(const Args& a) {
  const bool q = a.quick;
  CellPlan p("fmnist-badnets-preact", "fmnist", a.fmnist, "badnets", "preact_resnet18", 0);
  p.train_limit = q ? 1000 : 2000;
  p.test_limit = q ? 200 : 500;
  p.train_epochs = q ? 1 : 2;
  p.defenses = {{"bedkd",
                 {{"flip_epochs", q ? 1 : 3},
                  {"akd_epochs", 1},
                  {"flip_per_class", q ? 5 : 20},
                  {"trust_per_class", q ? 10 : 40}}},
                {"ntml",
                 {{"flip_epochs", q ? 1 : 3},
                  {"nt_epochs", 1},
                  {"ml_iterations", q ? 4 : 30},
                  {"consensus_iterations", q ? 4 : 20},
                  {"control", false}}},
                {"ft", {{"epochs", q ? 1 : 2}}},
                {"fp", {{"epochs", q ? 1 : 2}, {"prune_step", 0.05}}},
                {"nad", {{"teacher_epochs", q ? 1 : 2}, {"epochs", q ? 1 : 2}}}};
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  configure_allocator();
  print_libtorch_warnings_plainly();
  Args a;
  CLI::App app{"antidote speed benchmark; pair with bench/python/twin.py"};
  app.add_option("--threads", a.threads, "torch intra-op threads (OpenBLAS runs 1 thread, as configure_threads sets)");
  app.add_option("--blas-threads", a.blas_threads, "override OpenBLAS threads after configure_threads (-1: keep its 1)");
  app.add_option("--out", a.out, "output directory (antidote.json, cell dumps)");
  app.add_option("--sections", a.sections, "comma list: matmul,train,eval,defenses");
  app.add_flag("--quick", a.quick, "tiny step counts and epochs (smoke test)");
  app.add_option("--cnn-steps", a.cnn_steps, "timed CNN training steps");
  app.add_option("--transformer-steps", a.transformer_steps, "timed Transformer training steps");
  app.add_option("--fmnist", a.fmnist, "Fashion-MNIST IDX directory");
  app.add_option("--sst2", a.sst2, "SST-2 TSV directory");
  app.add_option("--image-train-limit", a.image_train_limit, "Fashion-MNIST training rows of the image cell");
  app.add_option("--test-limit", a.test_limit, "test rows of the cells (monitor evaluations)");
  app.add_option("--cells", a.cells, "comma list: image,text,preact");
  app.add_option("--precision", a.precision, "training precision of the defense cells: fp32 or bf16");
  CLI11_PARSE(app, argc, argv);

  try {
    set_quiet(true);
    make_dirs(a.out);
    int threads = configure_threads(a.threads);
    if (a.blas_threads >= 0) set_blas_threads(a.blas_threads);
    const std::string precision = set_training_precision(a.precision);
    auto has = [&](const std::string& list, const std::string& s) {
      return ("," + list + ",").find("," + s + ",") != std::string::npos;
    };

    json doc;
    doc["tool"] = "antidote";
    doc["machine"] = {{"cpu", cpu_model()},
                      {"cores", std::thread::hardware_concurrency()},
                      {"torch_threads", threads},
                      {"blas_threads", blas_get_threads()},
                      {"blas_library", blas_library()},
                      {"openblas_coretype", std::getenv("OPENBLAS_CORETYPE") ? std::getenv("OPENBLAS_CORETYPE") : ""},
                      {"load_average_start", load_average()},
                      {"libtorch", TORCH_VERSION}};
    doc["quick"] = a.quick;
    doc["precision"] = precision;
    auto write = [&] {
      doc["machine"]["load_average_end"] = load_average();
      write_file_atomic(a.out + "/antidote.json", doc.dump(1));
    };

    double peak = 0;
    if (has(a.sections, "matmul") || has(a.sections, "train") || has(a.sections, "eval")) {
      double secs = a.quick ? 0.3 : 2.0;
      // The machine's peak at this thread count: the BLAS on all the threads for this
      // section only (the training runs with configure_threads' single BLAS thread).
      set_blas_threads(threads);
      doc["matmul"] = json::array();
      for (int64_t n : {512, 2048}) {
        auto r = bench_matmul(n, secs);
        std::cerr << fmt::format("matmul {}²: {:.1f} GFLOP/s\n", n, r["gflops"].get<double>());
        doc["matmul"].push_back(r);
        if (n == 2048) peak = r["gflops"].get<double>();
      }
      set_blas_threads(a.blas_threads >= 0 ? a.blas_threads : 1);
      write();
    }

    InputSpec img = image_spec();
    InputSpec txt;
    bool need_text = has(a.sections, "train") || has(a.sections, "eval");
    if (need_text) txt = text_spec(a);
    if (has(a.sections, "train")) {
      doc["train"] = json::array();
      int64_t cnn_steps = a.cnn_steps > 0 ? a.cnn_steps : (a.quick ? 4 : 80);
      int64_t tf_steps = a.transformer_steps > 0 ? a.transformer_steps : (a.quick ? 4 : 100);
      auto r = bench_train("cnn", img, TrainConfig{}.resolve(Modality::Image), cnn_steps, cnn_macs(img), peak);
      std::cerr << fmt::format("train cnn: {:.0f} samples/s ({:.1f} GFLOP/s, {:.0f}% of peak)\n",
                               r["samples_per_s"].get<double>(), r["gflops"].get<double>(),
                               100 * r["peak_fraction"].get<double>());
      doc["train"].push_back(r);
      r = bench_train("transformer", txt, TrainConfig{}.resolve(Modality::Text), tf_steps, transformer_macs(txt), peak);
      r["vocab_size"] = txt.vocab_size;
      r["max_len"] = txt.max_len;
      std::cerr << fmt::format("train transformer: {:.0f} samples/s ({:.1f} GFLOP/s, {:.0f}% of peak)\n",
                               r["samples_per_s"].get<double>(), r["gflops"].get<double>(),
                               100 * r["peak_fraction"].get<double>());
      doc["train"].push_back(r);
      write();
    }
    if (has(a.sections, "eval")) {
      doc["eval"] = json::array();
      int64_t scale = a.quick ? 1 : 4;
      auto r = bench_eval("cnn", img, 2500 * scale, 512, cnn_macs(img), peak);
      std::cerr << fmt::format("eval cnn: {:.0f} samples/s\n", r["samples_per_s"].get<double>());
      doc["eval"].push_back(r);
      r = bench_eval("transformer", txt, 1000 * scale, 512, transformer_macs(txt), peak);
      r["vocab_size"] = txt.vocab_size;
      r["max_len"] = txt.max_len;
      std::cerr << fmt::format("eval transformer: {:.0f} samples/s\n", r["samples_per_s"].get<double>());
      doc["eval"].push_back(r);
      write();
    }
    if (has(a.sections, "defenses")) {
      const bool q = a.quick;
      doc["cells"] = json::array();
      if (has(a.cells, "image")) {
        CellPlan p("fmnist-badnets", "fmnist", a.fmnist, "badnets", "cnn", 0);
        p.train_limit = q ? 2000 : a.image_train_limit;
        p.train_epochs = q ? 1 : 2;
        json bedkd = {{"flip_epochs", q ? 2 : 20}, {"akd_epochs", q ? 1 : 5}};
        if (q) {  // the quick cells are small
          bedkd["flip_per_class"] = 10;
          bedkd["trust_per_class"] = 40;
        }
        p.defenses = {{"bedkd", bedkd},
                      {"ntml",
                       {{"nt_epochs", 1},
                        {"ml_iterations", q ? 10 : 300},
                        {"consensus_iterations", q ? 10 : 300},
                        {"control", false}}},
                      {"ft", {{"epochs", q ? 2 : 20}}},
                      {"fp", q ? json{{"epochs", 2}, {"prune_step", 0.1}} : json{{"epochs", 20}}},
                      {"nad", {{"teacher_epochs", q ? 1 : 10}, {"epochs", q ? 1 : 10}}}};
        doc["cells"].push_back(run_cell(p, a));
        write();
      }
      if (has(a.cells, "preact")) {
        doc["cells"].push_back(run_cell(preact_plan(a), a));
        write();
      }
      if (has(a.cells, "text")) {
        CellPlan p("sst2-addsent", "sst2", a.sst2, "addsent", "transformer", 1);
        p.train_limit = q ? 1000 : 0;
        p.train_epochs = 1;
        json bedkd = {{"flip_epochs", q ? 2 : 20}, {"akd_epochs", q ? 1 : 5}};
        if (q) {  // the quick cells are small
          bedkd["flip_per_class"] = 10;
          bedkd["trust_per_class"] = 40;
        }
        p.defenses = {{"bedkd", bedkd},
                      {"ntml", {{"nt_epochs", 1}, {"ml_iterations", q ? 10 : 300}, {"control", false}}},
                      {"ft", {{"epochs", q ? 1 : 10}}},
                      {"fp", q ? json{{"epochs", 1}, {"prune_step", 0.1}} : json{{"epochs", 10}}},
                      {"nad", {{"teacher_epochs", q ? 1 : 10}, {"epochs", q ? 1 : 10}}}};
        doc["cells"].push_back(run_cell(p, a));
        write();
      }
    }
    write();
    std::cerr << "wrote " << a.out << "/antidote.json\n";
  } catch (const std::exception& e) {
    std::cerr << "antidote_bench: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
