// Built-in text classifiers over token ids [B, L]: a small Transformer encoder
// (features = the last layer's token states) and a convolutional TextCNN.
#include <cmath>

#include "antidote/models/model.hpp"

namespace antidote {
namespace {

namespace nn = torch::nn;

// Inverted dropout with the mask drawn as uniform >= p. nn::Dropout draws it with
// bernoulli_, which this LibTorch build samples element by element, 2.7x slower
// (docs/speed.md); the distribution is the same.
torch::Tensor inverted_dropout(const torch::Tensor& x, double p, bool training) {
  if (!training || p <= 0) return x;
  auto keep = torch::rand_like(x).ge_(p).mul_(1.0 / (1.0 - p));
  return x * keep;
}

// Pre-LayerNorm encoder layer with batch-first tensors; padding keys are masked.
struct EncoderLayer : nn::Module {
  int64_t heads, dim;
  nn::LayerNorm ln1{nullptr}, ln2{nullptr};
  nn::Linear qkv{nullptr}, proj{nullptr}, ff1{nullptr}, ff2{nullptr};
  double p_drop;

  EncoderLayer(int64_t d, int64_t h, int64_t ff, double dropout) : heads(h), dim(d), p_drop(dropout) {
    ln1 = register_module("ln1", nn::LayerNorm(nn::LayerNormOptions({d})));
    qkv = register_module("qkv", nn::Linear(d, 3 * d));
    proj = register_module("proj", nn::Linear(d, d));
    ln2 = register_module("ln2", nn::LayerNorm(nn::LayerNormOptions({d})));
    ff1 = register_module("ff1", nn::Linear(d, ff));
    ff2 = register_module("ff2", nn::Linear(ff, d));
  }

  // x [B, L, D]; key_bias [B, 1, 1, L]: 0 for tokens, -inf for padding.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& key_bias) {
    auto B = x.size(0), L = x.size(1), dh = dim / heads;
    auto q_k_v = qkv->forward(ln1->forward(x)).view({B, L, 3, heads, dh}).permute({2, 0, 3, 1, 4});
    auto q = q_k_v[0], k = q_k_v[1], v = q_k_v[2];  // [B, heads, L, dh]
    auto scores = torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(dh))) + key_bias;
    const bool train = is_training();
    auto attn = inverted_dropout(torch::softmax(scores, -1), p_drop, train);
    auto ctx = torch::matmul(attn, v).transpose(1, 2).reshape({B, L, dim});
    auto h = x + inverted_dropout(proj->forward(ctx), p_drop, train);
    auto f = ff2->forward(inverted_dropout(torch::gelu(ff1->forward(ln2->forward(h))), p_drop, train));
    return h + inverted_dropout(f, p_drop, train);
  }
};

struct TransformerClassifier : Classifier {
  nn::Embedding tok{nullptr}, pos{nullptr};
  std::vector<std::shared_ptr<EncoderLayer>> layers;
  nn::LayerNorm ln{nullptr};
  nn::Linear head{nullptr};
  double p_drop = 0.1;
  std::string pool;  // mean (over non-padding positions) | cls (the first position's state)

  struct Options {
    int64_t dim = 64, heads = 4, layers = 2, ff = 128;
    double dropout = 0.1;
    std::string pool = "mean";
    double embed_init_std = 0.02;
  };
  static const OptionTable<Options>& table() {
    static const OptionTable<Options> t = [] {
      OptionTable<Options> t;
      t.add("dim", &Options::dim, "width of the token states (a multiple of heads)", positive<int64_t>());
      t.add("heads", &Options::heads, "attention heads per layer", positive<int64_t>());
      t.add("layers", &Options::layers, "encoder layers", positive<int64_t>());
      t.add("ff", &Options::ff, "width of each layer's feed-forward block", positive<int64_t>());
      t.add("dropout", &Options::dropout, "dropout in the layers", within_below(0, 1));
      t.add("pool", &Options::pool, "the head reads the mean of the token states or the first ([CLS]) one",
            one_of({"mean", "cls"}));
      t.add("embed_init_std", &Options::embed_init_std, "standard deviation of the initial embeddings",
            positive<double>());
      return t;
    }();
    return t;
  }

  TransformerClassifier(const InputSpec& in, Params& p) {
    Options o;
    table().read(p, o);
    const int64_t d = o.dim, h = o.heads, n = o.layers, ff = o.ff;
    const double dropout = o.dropout;
    if (d % h != 0) fail("{}: dim {} is not divisible by heads {}", p.context(), d, h);
    tok = register_module("tok", nn::Embedding(nn::EmbeddingOptions(in.vocab_size, d).padding_idx(Vocab::kPad)));
    pos = register_module("pos", nn::Embedding(in.max_len, d));
    for (int64_t i = 0; i < n; ++i)
      layers.push_back(register_module(fmt::format("layer{}", i), std::make_shared<EncoderLayer>(d, h, ff, dropout)));
    ln = register_module("ln", nn::LayerNorm(nn::LayerNormOptions({d})));
    head = register_module("head", nn::Linear(d, in.num_classes));
    p_drop = dropout;
    pool = o.pool;
    // Small embeddings (BERT's N(0, 0.02)) instead of the N(0, 1) default: with unit
    // embeddings the residual stream is ~8x larger than what the layers add to it, so
    // a from-scratch model learns mostly by moving embedding rows by lr per step and
    // under-fits (SST-2: 79 % train / 67 % test accuracy after 6 epochs).
    const double init_std = o.embed_init_std;
    {
      torch::NoGradGuard ng;
      tok->weight.normal_(0.0, init_std);
      tok->weight[Vocab::kPad].zero_();
      pos->weight.normal_(0.0, init_std);
    }
    init_prune_mask(d);
  }

  ModelOutput forward_impl(const torch::Tensor& ids, bool keep) override {
    std::vector<torch::Tensor> states;
    auto out = after_prune_mask(trunk(ids, keep ? &states : nullptr), ids);
    if (keep) {
      states.back() = out.features;  // the last layer's states after the final LayerNorm and the mask
      out.activations = std::move(states);
    }
    return out;
  }
  // Embeddings, the layers and the final LayerNorm; `states` (if given) receives each
  // layer's output.
  torch::Tensor trunk(const torch::Tensor& ids, std::vector<torch::Tensor>* states) override {
    auto L = ids.size(1);
    auto positions = torch::arange(L, ids.options());
    auto h = inverted_dropout(tok->forward(ids) + pos->forward(positions).unsqueeze(0), p_drop, is_training());
    auto pad = ids.eq(Vocab::kPad);
    auto key_bias = torch::zeros(pad.sizes(), h.options()).masked_fill(pad, -1e9).view({ids.size(0), 1, 1, L});
    for (auto& layer : layers) {
      h = layer->forward(h, key_bias);
      if (states) states->push_back(h);
    }
    return ln->forward(h);
  }
  // The mask, then the pooled head.
  ModelOutput after_prune_mask(const torch::Tensor& normed, const torch::Tensor& ids) override {
    ModelOutput out;
    auto h = apply_prune_mask(normed, -1);
    out.features = h;
    // pool: mean (default) averages the non-padding positions ([CLS] included);
    // pool: cls reads the [CLS] state, which learns sentence-level structure (the
    // syntactic backdoor) better: configs/sst2.yaml uses it.
    if (pool == "cls") {
      out.logits = head->forward(h.select(1, 0));
    } else {
      auto tokens = (~ids.eq(Vocab::kPad)).to(h.dtype()).unsqueeze(-1);
      out.logits = head->forward((h * tokens).sum(1) / tokens.sum(1).clamp_min(1.0));
    }
    return out;
  }
  int64_t prunable_channels() const override { return prune_mask_.numel(); }
  // Padding keys get -1e9 before the softmax (weight exactly 0), and both poolings skip
  // padding positions; positions are absolute, so cutting trailing padding changes the
  // logits only by float rounding (other GEMM shapes).
  bool ignores_trailing_padding() const override { return true; }
};

// Kim-style CNN: parallel 1-D convolutions, max over time, concatenated features.
struct TextCnn : Classifier {
  nn::Embedding tok{nullptr};
  std::vector<nn::Conv1d> convs;
  nn::Dropout drop{nullptr};
  nn::Linear head{nullptr};

  struct Options {
    int64_t dim = 128, filters = 100;
    std::vector<int64_t> kernels{3, 4, 5};
    double dropout = 0.5;
  };
  static const OptionTable<Options>& table() {
    static const OptionTable<Options> t = [] {
      OptionTable<Options> t;
      t.add("dim", &Options::dim, "width of the word embeddings", positive<int64_t>());
      t.add("filters", &Options::filters, "filters per kernel width", positive<int64_t>());
      t.add("kernels", &Options::kernels, "the convolutions' widths (each at most max_len)",
            Rule<std::vector<int64_t>>{[](const std::vector<int64_t>& k) {
                                         return !k.empty() &&
                                                std::all_of(k.begin(), k.end(), [](int64_t v) { return v >= 1; });
                                       },
                                       "must list positive widths, at least one"});
      t.add("dropout", &Options::dropout, "dropout before the head", within_below(0, 1));
      return t;
    }();
    return t;
  }

  TextCnn(const InputSpec& in, Params& p) {
    Options o;
    table().read(p, o);
    const int64_t d = o.dim, filters = o.filters;
    const auto& kernels = o.kernels;
    const double dropout = o.dropout;
    tok = register_module("tok", nn::Embedding(nn::EmbeddingOptions(in.vocab_size, d).padding_idx(Vocab::kPad)));
    for (size_t i = 0; i < kernels.size(); ++i) {
      if (kernels[i] < 1 || kernels[i] > in.max_len) fail("{}: kernel {} does not fit max_len {}", p.context(), kernels[i], in.max_len);
      convs.push_back(register_module(fmt::format("conv{}", i), nn::Conv1d(d, filters, kernels[i])));
    }
    drop = register_module("drop", nn::Dropout(dropout));
    head = register_module("head", nn::Linear(filters * static_cast<int64_t>(kernels.size()), in.num_classes));
    init_prune_mask(filters * static_cast<int64_t>(kernels.size()));
  }

  ModelOutput forward_impl(const torch::Tensor& ids, bool keep) override {
    std::vector<torch::Tensor> maps;
    auto out = after_prune_mask(trunk(ids, keep ? &maps : nullptr), ids);
    if (keep) {
      maps.push_back(out.features);
      out.activations = std::move(maps);
    }
    return out;
  }
  // Embeddings, the convolutions and the max over time, concatenated; `maps` (if given)
  // receives each convolution's ReLU output.
  torch::Tensor trunk(const torch::Tensor& ids, std::vector<torch::Tensor>* maps) override {
    auto e = tok->forward(ids).transpose(1, 2);  // [B, D, L]
    std::vector<torch::Tensor> pooled;
    for (auto& c : convs) {
      auto a = torch::relu(c->forward(e));
      if (maps) maps->push_back(a);
      pooled.push_back(std::get<0>(a.max(2)));
    }
    return torch::cat(pooled, 1);
  }
  ModelOutput after_prune_mask(const torch::Tensor& pooled, const torch::Tensor&) override {
    ModelOutput out;
    out.features = apply_prune_mask(pooled, 1);
    out.logits = head->forward(drop->forward(out.features));
    return out;
  }
  int64_t prunable_channels() const override { return prune_mask_.numel(); }
  // The convolutions' maps are [B, F, L']: filters first.
  int64_t activation_channel_dim(const torch::Tensor& a) const override {
    return a.dim() == 3 ? 1 : Classifier::activation_channel_dim(a);
  }
};

template <class M>
ClassifierPtr make_text_model(const InputSpec& in, Params& p) {
  if (in.modality != Modality::Text) fail("{}: this architecture takes text, the data is images", p.context());
  if (in.vocab_size < 3 || in.max_len < 2) fail("{}: text models need a vocabulary and max_len >= 2", p.context());
  return std::make_shared<M>(in, p);
}

Registrar<ModelRegistry> reg_transformer(
    "transformer", make_text_model<TransformerClassifier>,
    "Transformer encoder (pre-LN), mean- or [CLS]-pooled head; features = last token states",
    docs_of<TransformerClassifier>);
Registrar<ModelRegistry> reg_textcnn("textcnn", make_text_model<TextCnn>, "TextCNN (kernels 3,4,5 × 100 filters)",
                                     docs_of<TextCnn>);

}  // namespace
}  // namespace antidote
