// The one interface every classifier implements (built-in or imported TorchScript):
// logits plus features, optional per-block activations, a prunable channel mask.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "antidote/core/common.hpp"
#include "antidote/core/registry.hpp"
#include "antidote/data/data.hpp"

namespace antidote {

// What the model is fed: fixed by the data, checked before any training starts.
struct InputSpec {
  Modality modality = Modality::Image;
  int64_t channels = 1, height = 28, width = 28;  // images
  int64_t vocab_size = 0, max_len = 0;            // text (token ids [B, max_len])
  int64_t num_classes = 2;

  YAML::Node to_yaml() const;
  // Every field checked against a sane range; errors name `origin`.
  static InputSpec from_yaml(const YAML::Node& n, const std::string& origin = "input spec");
  // A batch of valid dummy inputs (zeros / [CLS] tokens) for shape checks.
  torch::Tensor example(int64_t batch) const;
};

struct ModelOutput {
  torch::Tensor logits;    // [B, K]
  torch::Tensor features;  // images: penultimate [B, H]; Transformer: last layer's token states [B, L, H]
  // Filled only when asked for: the output of each block, the last one being the
  // layer whose channels can be pruned (images [B, C, H, W]; text [B, L, H] or [B, H]).
  std::vector<torch::Tensor> activations;
};

// Everything needed to rebuild the same architecture: registry name, its options, the input.
struct ModelSpec {
  std::string arch;
  YAML::Node options;
  InputSpec input;
};

class Classifier : public torch::nn::Module {
 public:
  // Logits, features and (when asked) per-block activations of a batch. Under bf16
  // training (PrecisionScope) the model computes in bfloat16 and its outputs come back
  // in float32, so that every loss is computed in float32.
  ModelOutput forward_full(const torch::Tensor& x, bool keep_activations);
  ModelOutput forward(const torch::Tensor& x) { return forward_full(x, false); }
  torch::Tensor logits(const torch::Tensor& x) { return forward_full(x, false).logits; }

  // Fine-pruning switches off channels of the last block (images: the last conv
  // layer's output channels; text: the units of the final hidden states).
  virtual int64_t prunable_channels() const = 0;
  void set_prune_mask(const torch::Tensor& keep);  // [C], 1 keeps a channel, 0 zeroes it
  torch::Tensor prune_mask() const { return prune_mask_; }
  // The forward pass split where the mask acts, so that fine-pruning computes the part
  // before it once per clean row instead of once per pruning step:
  // logits_after_prune_mask(before_prune_mask(x), x) is logits(x), op for op (eval
  // mode). A model without the split (an imported TorchScript graph) returns an
  // undefined tensor from before_prune_mask.
  torch::Tensor before_prune_mask(const torch::Tensor& x) { return trunk(x, nullptr); }
  torch::Tensor logits_after_prune_mask(const torch::Tensor& before, const torch::Tensor& x) {
    return after_prune_mask(before, x).logits;
  }

  // The channel dimension of one of this model's per-block activations (attention
  // maps sum |a|^p over it; fine-pruning averages over the rest): 1 for [B, C, H, W]
  // feature maps and [B, F, L] convolutions over time, 2 for token states [B, L, H],
  // -1 for [B, H] vectors (no positions). A model whose 3-D activations are
  // convolutions over time says so by overriding.
  virtual int64_t activation_channel_dim(const torch::Tensor& activation) const;

  // True for a text model whose logits do not depend on the [PAD] ids after a row's
  // last token (attention masks them, pooling skips them): inference may then cut each
  // batch to its longest row (predict_probs). False where padding is read (TextCNN's
  // max over time sees it) or unknown (imported TorchScript).
  virtual bool ignores_trailing_padding() const { return false; }
  // Per-row lengths of token-id rows (1 + the position of the last non-[PAD] id), on
  // the CPU, when this model ignores trailing padding and `x` is token ids; undefined
  // otherwise (images, TextCNN, imported graphs), where every position must be kept.
  torch::Tensor cuttable_lengths(const torch::Tensor& x) const;

  // True for a model brought in as a graph (TorchScript): it saves as that graph (which
  // PyTorch loads as it is, so no separate state dict), and its input spec is the data's.
  virtual bool imported() const { return false; }

  // An independent copy with the same weights (teacher/student copies in defenses).
  virtual std::shared_ptr<Classifier> clone_deep() const;
  // Save to `path` (weights) + `path.json` (spec); TorchScript models save as TorchScript.
  virtual void save_file(const std::string& path) const;

  ModelSpec spec;

 protected:
  // What forward_full returns, computed by each model in the precision it is given.
  virtual ModelOutput forward_impl(const torch::Tensor& x, bool keep_activations) = 0;
  // The two halves of the split, which each built-in model's forward_impl also uses:
  // everything before the mask (`activations`, if given, receives the blocks' outputs
  // ahead of it), then the mask and the rest (features and logits). The defaults have
  // no split: an undefined trunk, and after_prune_mask fails.
  virtual torch::Tensor trunk(const torch::Tensor& x, std::vector<torch::Tensor>* activations);
  virtual ModelOutput after_prune_mask(const torch::Tensor& before, const torch::Tensor& x);
  void init_prune_mask(int64_t channels);
  // Multiplies `t` by the mask along `dim` (a no-op while nothing is pruned).
  torch::Tensor apply_prune_mask(const torch::Tensor& t, int64_t dim) const;
  torch::Tensor prune_mask_;
  bool pruned_ = false;
};

using ClassifierPtr = std::shared_ptr<Classifier>;

// The precision of training: "fp32", or "bf16" where convolutions and matrix products
// of training forward passes autocast to bfloat16 (oneDNN's bf16 kernels on a CPU with
// AVX-512 BF16 or AMX) while weights, gradients, optimizer state, the models' outputs,
// every loss and every evaluation stay float32. bf16 on a CPU without bfloat16
// arithmetic falls back to fp32 with a note. Returns the precision now in force.
std::string set_training_precision(const std::string& name);
const std::string& training_precision();
// True where /proc/cpuinfo lists avx512_bf16 or amx_bf16.
bool cpu_has_bf16();

// While alive, forward passes run in the training precision (training = true: every
// Trainer holds one) or in float32 (training = false: evaluation inside a training);
// the previous state is restored after.
class PrecisionScope {
 public:
  explicit PrecisionScope(bool training);
  ~PrecisionScope();
  PrecisionScope(const PrecisionScope&) = delete;
  PrecisionScope& operator=(const PrecisionScope&) = delete;
  // After an optimizer step: bfloat16 copies of the weights that autocast keeps for the
  // step are stale once the weights change.
  static void weights_changed();

 private:
  bool cpu_enabled_, gpu_enabled_;
  at::ScalarType cpu_dtype_, gpu_dtype_;
};

// While alive, the batch-norm layers of a model in training mode leave their running
// statistics unchanged and normalise with them (kRunning, as in evaluation) or with the
// batch's own (kBatch, as in training); the rest of the model trains as it was. For the
// passes over a handful of identified (likely triggered) rows that BeDKD punishes and
// NT-ML anchors: a batch made only of such rows would otherwise drag the running
// statistics, which every later evaluation uses, toward triggered inputs. A model
// without batch norm is untouched.
class KeepRunningStatistics {
 public:
  enum class Normalise { kRunning, kBatch };
  KeepRunningStatistics(torch::nn::Module& model, Normalise with);
  ~KeepRunningStatistics();
  KeepRunningStatistics(const KeepRunningStatistics&) = delete;
  KeepRunningStatistics& operator=(const KeepRunningStatistics&) = delete;

 private:
  struct Layer {
    std::shared_ptr<torch::nn::Module> module;
    c10::optional<double>* momentum;  // kBatch: the layer's momentum option, 0 while alive
    c10::optional<double> saved;
  };
  std::vector<Layer> layers_;
};

using ModelRegistry = Registry<Classifier, const InputSpec&, Params&>;

// Build a registered architecture ("cnn", "preact_resnet18", "transformer", "textcnn").
ClassifierPtr make_model(const std::string& arch, const InputSpec& input, const YAML::Node& options,
                         const std::string& context = "model");
// Load a model saved by Classifier::save, or a user's TorchScript file.
ClassifierPtr load_model(const std::string& path, const InputSpec* expected = nullptr);
// Fail with a clear message if `model` cannot consume inputs of `input` or emits the
// wrong number of classes or no features.
void check_model_fits(Classifier& model, const InputSpec& input, const std::string& what);
// Copy parameters and buffers (same architecture).
void copy_state(const Classifier& from, Classifier& to);
// A Python-readable state_dict (torch.load gives {name: tensor}).
void save_state_dict(const Classifier& model, const std::string& path);
int64_t count_parameters(const Classifier& model);
// Set by the TorchScript module: load_model hands it files that carry no antidote metadata.
std::function<ClassifierPtr(const std::string&, const InputSpec*)>& torchscript_loader();
std::string default_arch(Modality m);

}  // namespace antidote
