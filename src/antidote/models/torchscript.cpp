// Bring your own PyTorch model: a TorchScript module exported from
// Python (torch.jit.script / torch.jit.trace) wrapped as a Classifier, so every defense
// trains its parameters in C++, and saved back as TorchScript that torch.jit.load reads.
//
// Contract (docs/torchscript.md):
//   forward(x) -> logits [B, K]              and a method features(x) -> [B, H] (or [B, L, H]),
//   forward(x) -> (logits, features)         (a tuple; cheaper: one pass).
// Images: x is float [B, C, H, W] in [0, 1]. Text: x is int64 token ids [B, L]; the
// vocabulary is `model.pt.vocab` beside the model and the module carries its
// tokenizer's sequence length as an int attribute `max_len`.
//
// The jit module's parameters and buffers are registered on this nn::Module under the
// same dotted names as in Python (an empty nn::Module per submodule), sharing the same
// tensors: optimizers built from parameters() train the jit module, to(device) moves
// it, and named_parameters() reads like the Python state_dict.
#include <torch/script.h>

#include <filesystem>
#include <sstream>
#include <unordered_set>

#include "antidote/models/model.hpp"

namespace antidote {
namespace {

const char* kInputExtra = "antidote/input.yaml";  // the InputSpec, written into saved modules

// A submodule of the jit module, mirrored so that parameter names keep their dots.
struct JitScope : torch::nn::Module {};

enum class FeatureSource { Tuple, Method };

class TorchScriptClassifier : public Classifier {
 public:
  bool imported() const override { return true; }
  TorchScriptClassifier(torch::jit::Module module, const InputSpec& input, std::string origin)
      : jit_(std::move(module)), origin_(std::move(origin)) {
    spec.arch = "torchscript";  // the name results and the model's metadata record
    spec.options = YAML::Node(YAML::NodeType::Map);
    spec.input = input;
    if (!jit_.find_method("forward")) fail("TorchScript model '{}' has no forward method", origin_);
    has_features_method_ = jit_.find_method("features").has_value();
    mirror_state();
    torch::nn::Module::train(jit_.is_training());
  }

  ModelOutput forward_full(const torch::Tensor& x, bool keep_activations) override {
    ModelOutput out;
    auto result = call("forward", x);
    if (result.isTuple()) {
      const auto& elems = result.toTupleRef().elements();
      if (elems.size() < 2 || !elems[0].isTensor() || !elems[1].isTensor())
        fail_call("forward returned a tuple that is not (logits, features)");
      out.logits = elems[0].toTensor();
      out.features = elems[1].toTensor();
    } else if (result.isTensor()) {
      out.logits = result.toTensor();
      if (has_features_method_) {
        auto f = call("features", x);
        if (!f.isTensor()) fail_call("features(x) did not return a tensor");
        out.features = f.toTensor();
      }
    } else {
      fail_call(fmt::format("forward returned {}, expected logits or (logits, features)", result.tagKind()));
    }
    if (keep_activations && out.features.defined()) out.activations = {out.features};
    return out;
  }

  // Channels of an imported graph cannot be masked from outside it.
  int64_t prunable_channels() const override { return 0; }

  ClassifierPtr clone_deep() const override {
    torch::NoGradGuard ng;  // the copies are fresh leaves, not clones in the autograd graph
    auto copy = std::make_shared<TorchScriptClassifier>(jit_.deepcopy(), spec.input, origin_);
    copy->spec = ModelSpec{spec.arch, YAML::Clone(spec.options), spec.input};
    copy->train(is_training());
    return copy;
  }

  // TorchScript, on the CPU, in eval mode, written atomically; the input spec rides
  // along as an extra file (Python ignores it).
  void save_file(const std::string& path) const override {
    torch::jit::Module copy;
    {
      torch::NoGradGuard ng;
      copy = jit_.deepcopy();
    }
    copy.to(torch::kCPU);
    copy.eval();
    YAML::Emitter em;
    em << spec.input.to_yaml();
    torch::jit::ExtraFilesMap extra{{kInputExtra, em.c_str()}};
    // Into memory first: LibTorch's file writer aborts the process when the disk fills.
    std::ostringstream bytes;
    try {
      copy.save(bytes, extra);
    } catch (const c10::Error& e) {
      fail("cannot serialise TorchScript model '{}': {}", path, e.what_without_backtrace());
    }
    write_file_atomic(path, bytes.str());
  }

  void train(bool on = true) override {
    torch::nn::Module::train(on);
    jit_.train(on);
  }
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override {
    torch::nn::Module::to(device, dtype, non_blocking);
    jit_.to(device, dtype, non_blocking);
  }
  void to(torch::Dtype dtype, bool non_blocking = false) override {
    torch::nn::Module::to(dtype, non_blocking);
    jit_.to(dtype, non_blocking);
  }
  void to(torch::Device device, bool non_blocking = false) override {
    torch::nn::Module::to(device, non_blocking);
    jit_.to(device, non_blocking);
  }

  const torch::jit::Module& jit() const { return jit_; }

 private:
  torch::jit::IValue call(const char* method, const torch::Tensor& x) {
    try {
      return jit_.get_method(method)({x});
    } catch (const c10::Error&) {
      throw;  // shape errors: callers (check_model_fits) add the context
    } catch (const std::exception& e) {
      // Exceptions raised by the script itself (torch::jit::JITException).
      TORCH_CHECK(false, "TorchScript model '", origin_, "' ", method, "(x) failed: ", e.what());
    }
  }
  [[noreturn]] void fail_call(const std::string& what) const {
    fail("TorchScript model '{}': {} (contract: forward(x) returns logits with a features(x) method, or a "
         "(logits, features) tuple)",
         origin_, what);
  }

  // Register every jit parameter and buffer here under its dotted name, same tensor.
  void mirror_state() {
    std::unordered_set<const void*> seen;
    auto place = [&](const std::string& dotted, const torch::Tensor& t, bool is_param) {
      if (!seen.insert(t.unsafeGetTensorImpl()).second) return;  // tied weights: register once
      std::vector<std::string> parts;
      std::stringstream ss(dotted);
      for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
      torch::nn::Module* scope = this;
      for (size_t i = 0; i + 1 < parts.size(); ++i) {
        auto children = scope->named_children();
        auto* found = children.find(parts[i]);
        scope = found ? found->get() : scope->register_module(parts[i], std::make_shared<JitScope>()).get();
      }
      if (is_param) {
        scope->register_parameter(parts.back(), t, /*requires_grad=*/true);
      } else {
        scope->register_buffer(parts.back(), t);
      }
    };
    for (const auto& p : jit_.named_parameters(true)) place(p.name, p.value, true);
    for (const auto& b : jit_.named_buffers(true)) place(b.name, b.value, false);
    init_prune_mask(0);  // nothing prunable; set_prune_mask fails with a clear message
  }

  torch::jit::Module jit_;
  std::string origin_;
  bool has_features_method_ = false;
};

int64_t count_vocab(const std::string& path) {
  std::istringstream in(read_file(path));
  int64_t n = 0;
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line != "\r") ++n;
  return n;
}

// What the module itself says about its input: the spec antidote saved into it, and
// for text the tokenizer's `max_len` attribute.
ClassifierPtr load_torchscript(const std::string& path, const InputSpec* expected) {
  torch::jit::Module module;
  torch::jit::ExtraFilesMap extra{{kInputExtra, ""}};
  check_zip_archive(path);
  try {
    module = torch::jit::load(path, torch::Device(torch::kCPU), extra);
  } catch (const std::exception& e) {
    fail("model '{}' is neither an antidote model (no '{}.yaml' beside it) nor a TorchScript file: {}", path, path,
         std::string(e.what()).substr(0, 300));
  }
  const bool has_vocab = file_exists(path + ".vocab");
  int64_t attr_max_len = 0;
  if (module.hasattr("max_len")) {
    auto v = module.attr("max_len");
    if (!v.isInt()) fail("TorchScript model '{}': attribute max_len must be an int", path);
    attr_max_len = v.toInt();
  }

  InputSpec input;
  if (!extra[kInputExtra].empty()) {
    const auto origin = fmt::format("'{}' {}", path, kInputExtra);
    input = InputSpec::from_yaml(load_yaml(extra[kInputExtra], origin), origin);
  } else {
    bool text = has_vocab || attr_max_len > 0 || (expected && expected->modality == Modality::Text);
    input.modality = text ? Modality::Text : Modality::Image;
    input.num_classes = 0;  // unknown until the data is known
  }
  if (expected && expected->modality != input.modality)
    fail("TorchScript model '{}' takes {} input{}, the data is {}", path, modality_name(input.modality),
         has_vocab ? fmt::format(" (it has a vocabulary '{}.vocab')", path) : std::string(),
         modality_name(expected->modality));
  if (input.modality == Modality::Text) {
    if (!has_vocab)
      fail("text TorchScript model '{}' needs its vocabulary '{}.vocab' (one word per line, [PAD], [UNK], [CLS] "
           "first) and an int attribute max_len{}",
           path, path, expected && expected->modality == Modality::Text ? " (the data is text)" : "");
    input.vocab_size = count_vocab(path + ".vocab");
    if (attr_max_len > 0) input.max_len = attr_max_len;
    if (input.max_len < 2)
      fail("text TorchScript model '{}' must carry its tokenizer's sequence length: set an int attribute "
           "`self.max_len = N` (N >= 2) in the module before torch.jit.script",
           path);
  }

  if (expected) {
    if (input.modality == Modality::Text && expected->max_len != input.max_len)
      fail("TorchScript model '{}' takes sequences of max_len {}, the data is encoded with max_len {}", path,
           input.max_len, expected->max_len);
    input = *expected;
  }
  auto model = std::make_shared<TorchScriptClassifier>(std::move(module), input, path);
  if (expected) {
    auto what = fmt::format("TorchScript model '{}'", path);
    check_model_fits(*model, *expected, what);
    if (expected->modality == Modality::Text && expected->vocab_size > 0) {
      // The highest token id must index the model's embedding.
      torch::NoGradGuard ng;
      bool was_training = model->is_training();
      model->eval();
      auto x = expected->example(2);
      x.select(1, std::min<int64_t>(1, x.size(1) - 1)).fill_(expected->vocab_size - 1);
      try {
        model->forward_full(x, false);
      } catch (const c10::Error& e) {
        fail("{} does not accept token ids up to {} (vocabulary of {} words): {}", what, expected->vocab_size - 1,
             expected->vocab_size, e.what_without_backtrace());
      }
      model->train(was_training);
    }
  }
  return model;
}

struct InstallTorchScriptLoader {
  InstallTorchScriptLoader() { torchscript_loader() = load_torchscript; }
} install_torchscript_loader;

}  // namespace
}  // namespace antidote
