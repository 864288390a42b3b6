// Bring your own PyTorch model: a TorchScript module exported from
// Python (torch.jit.script / torch.jit.trace) wrapped as a Classifier, so every defense
// trains its parameters in C++, and saved back as TorchScript that torch.jit.load reads.
//
// Contract (docs/torchscript.md):
//   forward(x) -> logits [B, K]              and a method features(x) -> [B, H] (or [B, L, H]),
//   forward(x) -> (logits, features)         (a tuple; cheaper: one pass).
// Images: x is float [B, C, H, W] in [0, 1]. Text: x is int64 token ids [B, L]; the
// vocabulary is `model.pt.vocab` beside the model (antidote's word vocabulary or a
// WordPiece vocab.txt) and the module carries its tokenizer's sequence length as an int
// attribute (or integer buffer) `max_len`. A BERT-style text module whose methods take
// more tensors gets forward(input_ids, attention_mask[, token_type_ids]): the mask is
// 1 on every token that is not [PAD], the token types are zeros (one segment).
//
// Batches are never cut to their longest row (ignores_trailing_padding stays false):
// a traced graph may have the sequence length built in, and whether the module ignores
// padding is its own affair, so it always sees rows of max_len as in Python.
//
// The jit module's parameters and buffers are registered on this nn::Module under the
// same dotted names as in Python (an empty nn::Module per submodule), sharing the same
// tensors: optimizers built from parameters() train the jit module, to(device) moves
// it, and named_parameters() reads like the Python state_dict.
#include <torch/script.h>

#include <filesystem>
#include <sstream>
#include <unordered_set>

#include "antidote/data/wordpiece.hpp"
#include "antidote/models/model.hpp"

namespace antidote {
namespace {

const char* kInputExtra = "antidote/input.yaml";  // the InputSpec, written into saved modules

// A submodule of the jit module, mirrored so that parameter names keep their dots.
struct JitScope : torch::nn::Module {};

bool takes_tensor(const c10::Argument& a) {
  auto type = a.type();
  if (auto optional = type->cast<c10::OptionalType>()) type = optional->getElementType();
  return type->kind() == c10::TypeKind::TensorType;
}

// How many of input_ids, attention_mask, token_type_ids a text module's `method` takes:
// its leading tensor arguments, at most three. Arguments after them need defaults.
int64_t text_inputs(const torch::jit::Module& module, const char* method, const std::string& origin) {
  const auto& args = module.get_method(method).function().getSchema().arguments();  // args[0] is self
  if (args.size() < 2) fail("TorchScript model '{}': {}() takes no input", origin, method);
  size_t used = 1;
  while (used < 3 && used + 1 < args.size() && takes_tensor(args[used + 1])) ++used;
  for (size_t i = used + 1; i < args.size(); ++i)
    if (!args[i].default_value())
      fail(
          "TorchScript model '{}': {}() has an argument '{}' without a default that antidote cannot supply (it "
          "passes input_ids, attention_mask and token_type_ids)",
          origin, method, args[i].name());
  return static_cast<int64_t>(used);
}

enum class FeatureSource { Tuple, Method };

class TorchScriptClassifier : public Classifier {
 public:
  bool imported() const override { return true; }
  // `pad_id`: the id of [PAD] in the model's vocabulary (text); the data's token ids
  // have it at 0 (swap_token_ids), so it is swapped back before the module sees them.
  TorchScriptClassifier(torch::jit::Module module, const InputSpec& input, std::string origin, int64_t pad_id)
      : jit_(std::move(module)), origin_(std::move(origin)), pad_id_(pad_id) {
    spec.arch = "torchscript";  // the name results and the model's metadata record
    spec.options = YAML::Node(YAML::NodeType::Map);
    spec.input = input;
    if (!jit_.find_method("forward")) fail("TorchScript model '{}' has no forward method", origin_);
    has_features_method_ = jit_.find_method("features").has_value();
    if (input.modality == Modality::Text) {
      forward_inputs_ = text_inputs(jit_, "forward", origin_);
      if (has_features_method_) features_inputs_ = text_inputs(jit_, "features", origin_);
    }
    mirror_state();
    torch::nn::Module::train(jit_.is_training());
  }

  ModelOutput forward_impl(const torch::Tensor& x, bool keep_activations) override {
    ModelOutput out;
    auto result = call("forward", forward_inputs_, x);
    if (result.isTuple()) {
      const auto& elems = result.toTupleRef().elements();
      if (elems.size() < 2 || !elems[0].isTensor() || !elems[1].isTensor())
        fail_call("forward returned a tuple that is not (logits, features)");
      out.logits = elems[0].toTensor();
      out.features = elems[1].toTensor();
    } else if (result.isTensor()) {
      out.logits = result.toTensor();
      if (has_features_method_) {
        auto f = call("features", features_inputs_, x);
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
    auto copy = std::make_shared<TorchScriptClassifier>(jit_.deepcopy(), spec.input, origin_, pad_id_);
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
  // `inputs`: 1 passes `x` alone; for BERT-style text modules 2 adds the attention
  // mask and 3 the token type ids.
  torch::jit::IValue call(const char* method, int64_t inputs, const torch::Tensor& x) {
    std::vector<torch::jit::IValue> args;
    if (spec.input.modality == Modality::Text) {
      auto ids = swap_token_ids(x, pad_id_);  // the vocabulary's own ids
      if (inputs >= 2) args.emplace_back(ids.ne(pad_id_).to(torch::kLong));
      if (inputs >= 3) args.emplace_back(torch::zeros_like(ids));
      args.insert(args.begin(), ids);
    } else {
      args.emplace_back(x);
    }
    try {
      return jit_.get_method(method)(std::move(args));
    } catch (const c10::Error&) {
      throw;  // shape errors: callers (check_model_fits) add the context
    } catch (const std::exception& e) {
      // Exceptions raised by the script itself (torch::jit::JITException).
      TORCH_CHECK(false, "TorchScript model '", origin_, "' ", method, "(x) failed: ", e.what());
    }
  }
  [[noreturn]] void fail_call(const std::string& what) const {
    fail(
        "TorchScript model '{}': {} (contract: forward(x) returns logits with a features(x) method, or a "
        "(logits, features) tuple; BERT-style text models take (input_ids, attention_mask[, token_type_ids]))",
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
  int64_t pad_id_ = Vocab::kPad;
  bool has_features_method_ = false;
  int64_t forward_inputs_ = 1, features_inputs_ = 1;
};

// The module's `max_len`: an int attribute (torch.jit.script keeps it), or a one-element
// integer buffer (torch.jit.trace drops plain attributes but keeps buffers); 0 if none.
int64_t module_max_len(const torch::jit::Module& module, const std::string& path) {
  if (!module.hasattr("max_len")) return 0;
  const auto v = module.attr("max_len");
  if (v.isInt()) return v.toInt();
  if (v.isTensor()) {
    const auto t = v.toTensor();
    if (t.numel() == 1 && at::isIntegralType(t.scalar_type(), /*includeBool=*/false)) return t.item<int64_t>();
  }
  fail(
      "TorchScript model '{}': max_len must be an int attribute, or with torch.jit.trace an integer buffer "
      "(self.register_buffer(\"max_len\", torch.tensor(N)))",
      path);
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
  const int64_t attr_max_len = module_max_len(module, path);

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
  int64_t pad_id = Vocab::kPad;
  if (input.modality == Modality::Text) {
    if (!has_vocab)
      fail(
          "text TorchScript model '{}' needs its vocabulary '{}.vocab' (one word per line, [PAD], [UNK], [CLS] "
          "first, or a WordPiece vocab.txt) and an int attribute max_len{}",
          path, path, expected && expected->modality == Modality::Text ? " (the data is text)" : "");
    const auto vocab = read_tokenizer(path + ".vocab");
    input.vocab_size = vocab->size();
    pad_id = vocab->pad_id();
    if (attr_max_len > 0) input.max_len = attr_max_len;
    if (input.max_len < 2)
      fail(
          "text TorchScript model '{}' must carry its tokenizer's sequence length: set an int attribute "
          "`self.max_len = N` (N >= 2) in the module before torch.jit.script, or before torch.jit.trace a buffer "
          "`self.register_buffer(\"max_len\", torch.tensor(N))`",
          path);
  }

  if (expected) {
    if (input.modality == Modality::Text && expected->max_len != input.max_len)
      fail("TorchScript model '{}' takes sequences of max_len {}, the data is encoded with max_len {}", path,
           input.max_len, expected->max_len);
    input = *expected;
  }
  auto model = std::make_shared<TorchScriptClassifier>(std::move(module), input, path, pad_id);
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
