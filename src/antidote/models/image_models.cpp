// Built-in image classifiers: a small CNN and a PreAct-ResNet-18 with a width option.
#include "antidote/models/model.hpp"

namespace antidote {
namespace {

namespace nn = torch::nn;

// conv(3x3) -> ReLU -> pool, twice, then a hidden fully connected layer whose
// output is the feature vector. The second conv layer is the prunable one.
struct SmallCnn : Classifier {
  nn::Conv2d conv1{nullptr}, conv2{nullptr};
  nn::Linear fc1{nullptr}, fc2{nullptr};

  struct Options {
    int64_t width = 32, hidden = 128;
  };
  static const OptionTable<Options>& table() {
    static const OptionTable<Options> t = [] {
      OptionTable<Options> t;
      t.add("width", &Options::width, "channels of the first conv layer (the second has twice as many)",
            positive<int64_t>());
      t.add("hidden", &Options::hidden, "units of the hidden fully connected layer", positive<int64_t>());
      return t;
    }();
    return t;
  }

  SmallCnn(const InputSpec& in, Params& p) {
    Options o;
    table().read(p, o);
    const int64_t width = o.width, hidden = o.hidden;
    if (in.height < 4 || in.width < 4) fail("model cnn needs images of at least 4x4, got {}x{}", in.height, in.width);
    conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(in.channels, width, 3).padding(1)));
    conv2 = register_module("conv2", nn::Conv2d(nn::Conv2dOptions(width, 2 * width, 3).padding(1)));
    fc1 = register_module("fc1", nn::Linear(2 * width * (in.height / 4) * (in.width / 4), hidden));
    fc2 = register_module("fc2", nn::Linear(hidden, in.num_classes));
    init_prune_mask(2 * width);
  }

  ModelOutput forward_impl(const torch::Tensor& input, bool keep) override {
    std::vector<torch::Tensor> acts;
    auto c2 = trunk(input, keep ? &acts : nullptr);
    auto out = after_prune_mask(c2, input);
    if (keep) {
      acts.push_back(apply_prune_mask(torch::relu(c2), 1));
      out.activations = std::move(acts);
    }
    return out;
  }
  // conv2's output, before the mask (`acts` receives conv1's ReLU output). max and ReLU
  // commute (and so does the 0/1 mask): pooling first runs the ReLU and its backward on
  // 4x fewer elements, with the same values.
  torch::Tensor trunk(const torch::Tensor& input, std::vector<torch::Tensor>* acts) override {
    auto c1 = conv1->forward(channels_last_input(input));
    if (!acts) return conv2->forward(torch::relu(torch::max_pool2d(c1, 2)));
    acts->push_back(torch::relu(c1));
    return conv2->forward(torch::max_pool2d(acts->back(), 2));
  }
  // The mask, pool and ReLU, then fc1 (the features) and fc2.
  ModelOutput after_prune_mask(const torch::Tensor& c2, const torch::Tensor&) override {
    ModelOutput out;
    auto h = torch::relu(torch::max_pool2d(apply_prune_mask(c2, 1), 2));
    out.features = torch::relu(fc1->forward(h.flatten(1)));
    out.logits = fc2->forward(out.features);
    return out;
  }
  // Channels-last: this LibTorch's NCHW max-pool is several times slower than its
  // NHWC one, and oneDNN convolutions skip their layout reorders (docs/speed.md).
  torch::Tensor channels_last_input(const torch::Tensor& input) {
    weights_channels_last();
    return input.dim() == 4 ? input.contiguous(at::MemoryFormat::ChannelsLast) : input;
  }
  int64_t prunable_channels() const override { return prune_mask_.numel(); }

  // The conv weights in channels-last too: with NCHW weights oneDNN reorders them on
  // every call (bench: 4.4k -> 6.0k samples/s in the PyTorch twin), and the weights
  // decide the layout of the output. Checked on every forward because loading, cloning
  // and .to(device) hand back contiguous tensors; set_data keeps the parameter (and an
  // optimizer's reference to it) the same.
  // The test is on the strides, not is_contiguous(ChannelsLast): conv1's weight has one
  // input channel, so its NCHW strides count as channels-last contiguous and
  // .contiguous(ChannelsLast) returns it unchanged, yet convolution reads them as NCHW
  // and hands back an NCHW output, whose max-pool is ~10x slower (docs/speed.md).
  void weights_channels_last() {
    for (auto* conv : {&conv1, &conv2}) {
      auto& w = (*conv)->weight;
      if (w.dim() == 4 && w.suggest_memory_format() != at::MemoryFormat::ChannelsLast) {
        torch::NoGradGuard ng;
        w.set_data(torch::empty(w.sizes(), w.options().memory_format(at::MemoryFormat::ChannelsLast)).copy_(w));
      }
    }
  }
};

struct PreActBlock : nn::Module {
  nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  nn::Conv2d conv1{nullptr}, conv2{nullptr}, shortcut{nullptr};

  PreActBlock(int64_t in, int64_t out, int64_t stride) {
    bn1 = register_module("bn1", nn::BatchNorm2d(in));
    conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false)));
    bn2 = register_module("bn2", nn::BatchNorm2d(out));
    conv2 = register_module("conv2", nn::Conv2d(nn::Conv2dOptions(out, out, 3).padding(1).bias(false)));
    if (stride != 1 || in != out)
      shortcut = register_module("shortcut", nn::Conv2d(nn::Conv2dOptions(in, out, 1).stride(stride).bias(false)));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto o = torch::relu(bn1->forward(x));
    auto sc = shortcut ? shortcut->forward(o) : x;
    o = conv1->forward(o);
    o = conv2->forward(torch::relu(bn2->forward(o)));
    return o + sc;
  }
};

struct PreActResNet18 : Classifier {
  nn::Conv2d conv1{nullptr};
  std::vector<std::shared_ptr<PreActBlock>> blocks;
  std::vector<int> stage_end;  // index of the last block of each of the 4 stages
  nn::BatchNorm2d bn{nullptr};
  nn::Linear fc{nullptr};

  struct Options {
    int64_t width = 64;
  };
  static const OptionTable<Options>& table() {
    static const OptionTable<Options> t = [] {
      OptionTable<Options> t;
      t.add("width", &Options::width, "channels of the first stage (64 = the usual; the stages double it)",
            positive<int64_t>());
      return t;
    }();
    return t;
  }

  PreActResNet18(const InputSpec& in, Params& p) {
    Options o;
    table().read(p, o);
    const int64_t w = o.width;
    conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(in.channels, w, 3).padding(1).bias(false)));
    int64_t channels = w;
    const int64_t widths[4] = {w, 2 * w, 4 * w, 8 * w};
    for (int s = 0; s < 4; ++s) {
      for (int b = 0; b < 2; ++b) {
        int64_t stride = (b == 0 && s > 0) ? 2 : 1;
        auto blk = std::make_shared<PreActBlock>(channels, widths[s], stride);
        register_module(fmt::format("layer{}_{}", s + 1, b), blk);
        blocks.push_back(blk);
        channels = widths[s];
      }
      stage_end.push_back(static_cast<int>(blocks.size()) - 1);
    }
    bn = register_module("bn", nn::BatchNorm2d(channels));
    fc = register_module("fc", nn::Linear(channels, in.num_classes));
    init_prune_mask(channels);
  }

  ModelOutput forward_impl(const torch::Tensor& x, bool keep) override {
    std::vector<torch::Tensor> stages;
    auto h = trunk(x, keep ? &stages : nullptr);
    auto out = after_prune_mask(h, x);
    if (keep) {
      stages.push_back(apply_prune_mask(h, 1));
      out.activations = std::move(stages);
    }
    return out;
  }
  // conv1 and the four stages; the last stage's output is where the mask acts.
  // `stages` (if given) receives the first three stages' outputs.
  torch::Tensor trunk(const torch::Tensor& x, std::vector<torch::Tensor>* stages) override {
    auto h = conv1->forward(x);
    size_t stage = 0;
    for (size_t i = 0; i < blocks.size(); ++i) {
      h = blocks[i]->forward(h);
      if (static_cast<int>(i) == stage_end[stage]) {
        if (stages && stage < 3) stages->push_back(h);
        ++stage;
      }
    }
    return h;
  }
  ModelOutput after_prune_mask(const torch::Tensor& h, const torch::Tensor&) override {
    ModelOutput out;
    out.features = torch::adaptive_avg_pool2d(torch::relu(bn->forward(apply_prune_mask(h, 1))), {1, 1}).flatten(1);
    out.logits = fc->forward(out.features);
    return out;
  }
  int64_t prunable_channels() const override { return prune_mask_.numel(); }
};

template <class M>
ClassifierPtr make_image_model(const InputSpec& in, Params& p) {
  if (in.modality != Modality::Image) fail("{}: this architecture takes images, the data is text", p.context());
  return std::make_shared<M>(in, p);
}

Registrar<ModelRegistry> reg_cnn("cnn", make_image_model<SmallCnn>,
                                 "small CNN: 2 conv layers (width, 2·width), hidden FC", docs_of<SmallCnn>);
Registrar<ModelRegistry> reg_resnet("preact_resnet18", make_image_model<PreActResNet18>,
                                    "PreAct-ResNet-18, width option (64 = the usual)", docs_of<PreActResNet18>);

}  // namespace
}  // namespace antidote
