#include "antidote/models/model.hpp"

#include <ATen/autocast_mode.h>
#include <torch/serialize.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace antidote {

YAML::Node InputSpec::to_yaml() const {
  YAML::Node n;
  n["modality"] = modality_name(modality);
  if (modality == Modality::Image) {
    n["channels"] = channels;
    n["height"] = height;
    n["width"] = width;
  } else {
    n["vocab_size"] = vocab_size;
    n["max_len"] = max_len;
  }
  n["num_classes"] = num_classes;
  return n;
}

InputSpec InputSpec::from_yaml(const YAML::Node& n, const std::string& origin) {
  if (!n || !n.IsMap()) fail("{}: expected a mapping with modality, num_classes and the input's sizes", origin);
  // Bounds far beyond any real model, small enough that no allocation they imply fails.
  auto field = [&](const char* key, int64_t lo, int64_t hi) {
    if (!n[key]) fail("{}: '{}' is missing", origin, key);
    const auto v = read_option<int64_t>(n, key, 0, origin);
    if (v < lo || v > hi) fail("{}.{}: {} is outside [{}, {}]", origin, key, v, lo, hi);
    return v;
  };
  InputSpec s;
  const auto m = read_option<std::string>(n, "modality", "", origin);
  if (m != "text" && m != "image") fail("{}.modality: expected 'image' or 'text', got '{}'", origin, excerpt(m));
  s.modality = m == "text" ? Modality::Text : Modality::Image;
  if (s.modality == Modality::Image) {
    s.channels = field("channels", 1, 64);
    s.height = field("height", 1, 4096);
    s.width = field("width", 1, 4096);
  } else {
    s.vocab_size = field("vocab_size", 3, 10000000);
    s.max_len = field("max_len", 2, 65536);
  }
  s.num_classes = field("num_classes", 2, kMaxClasses);
  return s;
}

torch::Tensor InputSpec::example(int64_t batch) const {
  if (modality == Modality::Image) return torch::zeros({batch, channels, height, width});
  auto t = torch::zeros({batch, max_len}, torch::kLong);
  t.select(1, 0).fill_(Vocab::kCls);
  return t;
}

namespace {
// A reduced-precision floating-point output back in float32.
torch::Tensor as_float32(const torch::Tensor& t) {
  if (!t.defined() || !t.is_floating_point() || t.scalar_type() == torch::kFloat || t.scalar_type() == torch::kDouble)
    return t;
  return t.to(torch::kFloat);
}

std::string g_training_precision = "fp32";
}  // namespace

ModelOutput Classifier::forward_full(const torch::Tensor& x, bool keep_activations) {
  ModelOutput out = forward_impl(x, keep_activations);
  out.logits = as_float32(out.logits);
  out.features = as_float32(out.features);
  for (auto& a : out.activations) a = as_float32(a);
  return out;
}

bool cpu_has_bf16() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("flags", 0) == 0)
      return line.find(" avx512_bf16") != std::string::npos || line.find(" amx_bf16") != std::string::npos;
  return false;
}

std::string set_training_precision(const std::string& name) {
  if (name != "fp32" && name != "bf16") fail("precision must be fp32 or bf16, got '{}'", excerpt(name));
  g_training_precision = name;
  if (name == "bf16" && !cpu_has_bf16()) {
    log_info("antidote: note: this CPU has no bfloat16 arithmetic (avx512_bf16, amx_bf16); training in fp32");
    g_training_precision = "fp32";
  }
  return g_training_precision;
}

const std::string& training_precision() { return g_training_precision; }

PrecisionScope::PrecisionScope(bool training)
    : cpu_enabled_(at::autocast::is_cpu_enabled()),
      gpu_enabled_(at::autocast::is_enabled()),
      cpu_dtype_(at::autocast::get_autocast_cpu_dtype()),
      gpu_dtype_(at::autocast::get_autocast_gpu_dtype()) {
  const bool bf16 = training && g_training_precision == "bf16";
  at::autocast::set_cpu_enabled(bf16);
  at::autocast::set_enabled(bf16);
  if (bf16) {
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
  }
}

PrecisionScope::~PrecisionScope() {
  if (at::autocast::is_cpu_enabled() || at::autocast::is_enabled()) at::autocast::clear_cache();
  at::autocast::set_cpu_enabled(cpu_enabled_);
  at::autocast::set_enabled(gpu_enabled_);
  at::autocast::set_autocast_cpu_dtype(cpu_dtype_);
  at::autocast::set_autocast_gpu_dtype(gpu_dtype_);
}

void PrecisionScope::weights_changed() {
  if (at::autocast::is_cpu_enabled() || at::autocast::is_enabled()) at::autocast::clear_cache();
}

namespace {
// The momentum option of a batch-norm layer, or null for any other module.
c10::optional<double>* batch_norm_momentum(torch::nn::Module& m) {
  if (auto* b = m.as<torch::nn::BatchNorm1d>()) return &b->options.momentum();
  if (auto* b = m.as<torch::nn::BatchNorm2d>()) return &b->options.momentum();
  if (auto* b = m.as<torch::nn::BatchNorm3d>()) return &b->options.momentum();
  return nullptr;
}
}  // namespace

KeepRunningStatistics::KeepRunningStatistics(torch::nn::Module& model, Normalise with) {
  for (const auto& m : model.modules(/*include_self=*/false)) {
    auto* momentum = batch_norm_momentum(*m);
    if (!momentum || !m->is_training()) continue;
    if (with == Normalise::kRunning) {
      m->eval();
      layers_.push_back({m, nullptr, {}});
    } else {
      // A momentum of 0 keeps the running statistics as they are: r ← (1 − 0)·r + 0·batch.
      layers_.push_back({m, momentum, *momentum});
      *momentum = 0.0;
    }
  }
}

KeepRunningStatistics::~KeepRunningStatistics() {
  for (auto& l : layers_) {
    if (l.momentum)
      *l.momentum = l.saved;
    else
      l.module->train();
  }
}

void Classifier::init_prune_mask(int64_t channels) {
  prune_mask_ = register_buffer("prune_mask", torch::ones({channels}));
}

void Classifier::set_prune_mask(const torch::Tensor& keep) {
  if (keep.numel() != prune_mask_.numel())
    fail("prune mask has {} entries, the model has {} prunable channels", keep.numel(), prune_mask_.numel());
  torch::NoGradGuard ng;
  prune_mask_.copy_(keep.to(prune_mask_.dtype()).reshape_as(prune_mask_));
  pruned_ = prune_mask_.min().item<float>() < 1.0f;
}

torch::Tensor Classifier::trunk(const torch::Tensor& x, std::vector<torch::Tensor>* activations) {
  (void)x;
  (void)activations;
  return {};
}

ModelOutput Classifier::after_prune_mask(const torch::Tensor& before, const torch::Tensor& x) {
  (void)before;
  (void)x;
  fail("model '{}' does not split its forward pass at the prune mask", spec.arch);
}

torch::Tensor Classifier::apply_prune_mask(const torch::Tensor& t, int64_t dim) const {
  if (!pruned_) return t;
  std::vector<int64_t> shape(static_cast<size_t>(t.dim()), 1);
  int64_t d = dim < 0 ? dim + t.dim() : dim;
  shape[static_cast<size_t>(d)] = prune_mask_.numel();
  return t * prune_mask_.view(shape);
}

int64_t Classifier::activation_channel_dim(const torch::Tensor& a) const {
  switch (a.dim()) {
    case 2:
      return -1;
    case 3:
      return 2;
    case 4:
      return 1;
    default:
      fail("activations of {} dimensions are not supported (need [B,H], [B,L,H], [B,F,L] or [B,C,H,W])", a.dim());
  }
}

torch::Tensor Classifier::cuttable_lengths(const torch::Tensor& x) const {
  if (!ignores_trailing_padding() || x.dim() != 2 || x.is_floating_point()) return {};
  auto positions = torch::arange(1, x.size(1) + 1, torch::TensorOptions(torch::kLong).device(x.device())).unsqueeze(0);
  return (x.ne(Vocab::kPad).to(torch::kLong) * positions).amax(1).to(torch::kCPU);
}

ClassifierPtr make_model(const std::string& arch, const InputSpec& input, const YAML::Node& options,
                         const std::string& context) {
  Params params(options ? YAML::Clone(options) : YAML::Node(), context);
  auto model = ModelRegistry::instance().create("model architecture", arch, input, params);
  params.check_consumed();
  model->spec.arch = arch;
  model->spec.options = options ? YAML::Clone(options) : YAML::Node(YAML::NodeType::Map);
  model->spec.input = input;
  return model;
}

void copy_state(const Classifier& from, Classifier& to) {
  torch::NoGradGuard ng;
  auto src = from.named_parameters(true);
  auto dst = to.named_parameters(true);
  for (auto& item : dst) {
    auto* s = src.find(item.key());
    if (!s) fail("copy_state: parameter '{}' missing in source", item.key());
    item.value().copy_(*s);
  }
  auto sb = from.named_buffers(true);
  for (auto& item : to.named_buffers(true)) {
    auto* s = sb.find(item.key());
    if (!s) fail("copy_state: buffer '{}' missing in source", item.key());
    item.value().copy_(*s);
  }
}

ClassifierPtr Classifier::clone_deep() const {
  auto copy = make_model(spec.arch, spec.input, spec.options);
  copy_state(*this, *copy);
  copy->pruned_ = pruned_;
  copy->train(is_training());
  auto dev = parameters().empty() ? torch::Device(torch::kCPU) : parameters().front().device();
  copy->to(dev);
  return copy;
}

void Classifier::save_file(const std::string& path) const {
  torch::serialize::OutputArchive archive;
  save(archive);
  // Into memory first: LibTorch's file writer aborts the process when the disk fills.
  std::ostringstream bytes;
  archive.save_to(bytes);
  write_file_atomic(path, bytes.str());
  YAML::Node meta;
  meta["format"] = "antidote-model";
  meta["version"] = version();
  meta["arch"] = spec.arch;
  meta["options"] = spec.options;
  meta["input"] = spec.input.to_yaml();
  YAML::Emitter em;
  em << meta;
  write_file_atomic(path + ".yaml", em.c_str());
}

std::function<ClassifierPtr(const std::string&, const InputSpec*)>& torchscript_loader() {
  static std::function<ClassifierPtr(const std::string&, const InputSpec*)> loader;
  return loader;
}

ClassifierPtr load_model(const std::string& path, const InputSpec* expected) {
  if (!file_exists(path)) fail("model file not found: '{}'", path);
  if (!file_exists(path + ".yaml")) {
    if (torchscript_loader()) return torchscript_loader()(path, expected);
    fail("model '{}': no '{}.yaml' beside it (not an antidote model)", path, path);
  }
  const YAML::Node meta = load_yaml_file(path + ".yaml");
  if (!meta.IsMap() || !meta["arch"] || !meta["input"]) fail("model metadata '{}.yaml' lacks 'arch' or 'input'", path);
  auto input = InputSpec::from_yaml(meta["input"], fmt::format("'{}.yaml' input", path));
  if (expected) {
    if (expected->modality != input.modality) fail("model '{}' takes {} input, the data is {}", path,
                                                   modality_name(input.modality), modality_name(expected->modality));
    if (expected->num_classes != input.num_classes)
      fail("model '{}' predicts {} classes, the data has {}", path, input.num_classes, expected->num_classes);
  }
  auto model = make_model(read_option<std::string>(meta, "arch", "", path + ".yaml"), input, meta["options"]);
  check_zip_archive(path);
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path);
    model->load(archive);
  } catch (const c10::Error& e) {
    fail("model '{}' cannot be loaded: {}", path, e.what_without_backtrace());
  }
  model->set_prune_mask(model->prune_mask().clone());
  return model;
}

void check_model_fits(Classifier& model, const InputSpec& input, const std::string& what) {
  torch::NoGradGuard ng;
  bool was_training = model.is_training();
  model.eval();
  ModelOutput out;
  auto dev = model.parameters().empty() ? torch::Device(torch::kCPU) : model.parameters().front().device();
  try {
    out = model.forward_full(input.example(2).to(dev), false);
  } catch (const c10::Error& e) {
    fail("{} does not accept the data's input ({}): {}", what, YAML::Dump(input.to_yaml()), e.what_without_backtrace());
  }
  model.train(was_training);
  if (!out.logits.defined() || out.logits.dim() != 2 || out.logits.size(0) != 2)
    fail("{}: forward must return logits of shape [batch, classes]", what);
  if (out.logits.size(1) != input.num_classes)
    fail("{} predicts {} classes, the data has {}", what, out.logits.size(1), input.num_classes);
  if (!out.features.defined() || out.features.size(0) != 2)
    fail("{}: no features (expected a features(x) method or a (logits, features) tuple)", what);
}

void save_state_dict(const Classifier& model, const std::string& path) {
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& p : model.named_parameters(true)) dict.insert(p.key(), p.value().detach().cpu().contiguous());
  for (const auto& b : model.named_buffers(true)) dict.insert(b.key(), b.value().detach().cpu().contiguous());
  auto bytes = torch::pickle_save(c10::IValue(dict));
  write_file_atomic(path, std::string(bytes.begin(), bytes.end()));
}

int64_t count_parameters(const Classifier& model) {
  int64_t n = 0;
  for (const auto& p : model.parameters()) n += p.numel();
  return n;
}

std::string default_arch(Modality m) { return m == Modality::Image ? "cnn" : "transformer"; }

}  // namespace antidote
