// Image attacks: BadNets, Blend, SIG, WaNet and a user-supplied patch.
// Every trigger is a pure function of the attack's options and seeds, so the same
// configuration always produces the same poisoned images.
#include <png.h>

#include <cmath>
#include <cstring>

#include "antidote/attacks/attack.hpp"

namespace antidote {

namespace {

namespace F = torch::nn::functional;

void check_batch(const torch::Tensor& images, const char* attack) {
  if (!images.defined() || images.dim() != 4)
    fail("{}: expected an image batch [N, C, H, W], got {} dimensions", attack, images.defined() ? images.dim() : 0);
  if (images.size(1) != 1 && images.size(1) != 3)
    fail("{}: images must have 1 or 3 channels, got {}", attack, images.size(1));
}

// A PNG as float RGBA [4, H, W] in [0, 1] (libpng's simplified API converts any
// colour type and bit depth).
torch::Tensor read_png_rgba(const std::string& path, const std::string& what) {
  if (!file_exists(path)) fail("{}: PNG file not found: '{}'", what, path);
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&image, path.c_str()))
    fail("{}: cannot read PNG '{}': {}", what, path, image.message);
  image.format = PNG_FORMAT_RGBA;
  std::vector<png_byte> buffer(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, buffer.data(), 0, nullptr)) {
    std::string msg = image.message;
    png_image_free(&image);
    fail("{}: cannot decode PNG '{}': {}", what, path, msg);
  }
  const int64_t h = image.height, w = image.width;
  auto t = torch::from_blob(buffer.data(), {h, w, 4}, torch::kUInt8).clone();
  return t.permute({2, 0, 1}).to(torch::kFloat32).div(255.0).contiguous();
}

// RGBA [4, H, W] -> colour [C, H, W] (grayscale by ITU-R BT.601 luma for C = 1) and alpha [1, H, W].
std::pair<torch::Tensor, torch::Tensor> png_to_channels(const torch::Tensor& rgba, int64_t channels) {
  auto rgb = rgba.slice(0, 0, 3);
  auto alpha = rgba.slice(0, 3, 4);
  if (channels == 1) {
    auto gray = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
    return {gray.unsqueeze(0), alpha};
  }
  return {rgb, alpha};
}

// ---- BadNets ----------------------------------------------------------------------

class BadNets : public Attack {
 public:
  struct Options {
    int64_t size = 3;
  };
  static const OptionTable<Options>& table() {
    static const OptionTable<Options> t = [] {
      OptionTable<Options> t;
      t.add("size", &Options::size, "side of the white square, in pixels", at_least<int64_t>(1));
      return t;
    }();
    return t;
  }
  BadNets(Params& p, const AttackSettings& s) {
    settings_ = s;
    table().read(p, o_);
  }
  Modality modality() const override { return Modality::Image; }
  torch::Tensor apply_image(const torch::Tensor& images, Rng&) const override {
    check_batch(images, "badnets");
    const int64_t h = images.size(2), w = images.size(3);
    const int64_t size = o_.size;
    if (size > h || size > w) fail("badnets: patch size {} exceeds the image size {}x{}", size, h, w);
    auto out = images.clone();
    out.slice(2, h - size, h).slice(3, w - size, w).fill_(1.0);
    return out;
  }

 private:
  Options o_;
};

// ---- Blend ------------------------------------------------------------------------

class Blend : public Attack {
 public:
  struct Options {
    double alpha = 0.2;
    uint64_t seed = 0;  // the experiment's seed unless given
    std::string pattern;
  };
  static const OptionTable<Options>& table() {
    static const OptionTable<Options> t = [] {
      OptionTable<Options> t;
      t.add("alpha", &Options::alpha, "weight of the pattern in the blend", within(0, 1));
      t.add("seed", &Options::seed, "seed of the noise pattern (default: the experiment's)");
      t.add("pattern", &Options::pattern, "a PNG to blend instead of seeded noise");
      return t;
    }();
    return t;
  }
  Blend(Params& p, const AttackSettings& s) {
    settings_ = s;
    o_.seed = s.seed;
    table().read(p, o_);
    if (!o_.pattern.empty()) pattern_rgba_ = read_png_rgba(o_.pattern, p.context() + ".pattern");
  }
  Modality modality() const override { return Modality::Image; }

  // The pattern at the images' shape [C, H, W] in [0, 1].
  torch::Tensor pattern(int64_t c, int64_t h, int64_t w) const {
    if (pattern_rgba_.defined()) {
      auto colour = png_to_channels(pattern_rgba_, c).first;
      return F::interpolate(colour.unsqueeze(0),
                            F::InterpolateFuncOptions().size(std::vector<int64_t>{h, w}).mode(torch::kNearest))
          .squeeze(0)
          .contiguous();
    }
    Rng rng(o_.seed ^ hash_string("blend-pattern"));
    std::vector<float> values(static_cast<size_t>(c * h * w));
    for (auto& v : values) v = static_cast<float>(rng.uniform());
    return torch::tensor(values, torch::kFloat32).reshape({c, h, w});
  }

  torch::Tensor apply_image(const torch::Tensor& images, Rng&) const override {
    check_batch(images, "blend");
    auto p = pattern(images.size(1), images.size(2), images.size(3)).to(images.dtype()).unsqueeze(0);
    return ((1.0 - o_.alpha) * images + o_.alpha * p).clamp(0.0, 1.0);
  }

 private:
  Options o_;
  torch::Tensor pattern_rgba_;
};

// ---- SIG (clean label) --------------------------------------------------------------

class Sig : public Attack {
 public:
  struct Options {
    double delta = 40.0 / 255.0, frequency = 6.0;
  };
  static const OptionTable<Options>& table() {
    static const OptionTable<Options> t = [] {
      OptionTable<Options> t;
      t.add("delta", &Options::delta, "amplitude of the sinusoid (40/255 = 0.157)", at_least(0.0));
      t.add("frequency", &Options::frequency, "periods across the image's width", positive<double>());
      return t;
    }();
    return t;
  }
  Sig(Params& p, const AttackSettings& s) {
    settings_ = s;
    table().read(p, o_);
  }
  Modality modality() const override { return Modality::Image; }
  bool clean_label() const override { return true; }
  torch::Tensor apply_image(const torch::Tensor& images, Rng&) const override {
    check_batch(images, "sig");
    const int64_t w = images.size(3);
    std::vector<float> signal(static_cast<size_t>(w));
    for (int64_t j = 0; j < w; ++j)
      signal[static_cast<size_t>(j)] = static_cast<float>(
          o_.delta * std::sin(2.0 * M_PI * static_cast<double>(j) * o_.frequency / static_cast<double>(w)));
    auto s = torch::tensor(signal, torch::kFloat32).to(images.dtype()).reshape({1, 1, 1, w});
    return (images + s).clamp(0.0, 1.0);
  }

 private:
  Options o_;
};

// ---- WaNet ---------------------------------------------------------------------------
// Nguyen & Tran, "WaNet - Imperceptible Warping-based Backdoor Attack" (ICLR 2021),
// following BackdoorBench's implementation: a random k x k flow field, upsampled
// bicubically, scaled by s / H, added to the identity sampling grid.

class WaNet : public Attack {
 public:
  struct Options {
    int64_t k = 4;
    double s = 0.5, grid_rescale = 1.0, cross_ratio = 2.0;
    uint64_t seed = 0;  // the experiment's seed unless given
  };
  static const OptionTable<Options>& table() {
    static const OptionTable<Options> t = [] {
      OptionTable<Options> t;
      t.add("k", &Options::k, "side of the random flow grid", at_least<int64_t>(2));
      t.add("s", &Options::s, "strength of the warp", at_least(0.0));
      t.add("grid_rescale", &Options::grid_rescale, "scale of the warped grid", positive<double>());
      t.add("cross_ratio", &Options::cross_ratio, "noise-mode rows (random warps, true labels) per poisoned row",
            at_least(0.0));
      t.add("seed", &Options::seed, "seed of the flow field (default: the experiment's)");
      return t;
    }();
    return t;
  }
  WaNet(Params& p, const AttackSettings& s) {
    settings_ = s;
    o_.seed = s.seed;
    table().read(p, o_);
  }
  Modality modality() const override { return Modality::Image; }

  // The k x k flow field [1, 2, k, k], uniform in (-1, 1), normalised to mean |.| = 1.
  torch::Tensor noise_field() const {
    Rng rng(o_.seed ^ hash_string("wanet-noise"));
    std::vector<float> values(static_cast<size_t>(2 * o_.k * o_.k));
    for (auto& v : values) v = static_cast<float>(rng.uniform() * 2.0 - 1.0);
    auto ins = torch::tensor(values, torch::kFloat32).reshape({1, 2, o_.k, o_.k});
    return ins / ins.abs().mean();
  }

  // The warping grid [1, H, W, 2] (x, y in [-1, 1]) for images of size H x W.
  torch::Tensor warp_grid(int64_t h, int64_t w) const {
    auto noise = F::interpolate(noise_field(), F::InterpolateFuncOptions()
                                                   .size(std::vector<int64_t>{h, w})
                                                   .mode(torch::kBicubic)
                                                   .align_corners(true))
                     .permute({0, 2, 3, 1});  // [1, H, W, 2]
    auto ys = torch::linspace(-1, 1, h, torch::kFloat32);
    auto xs = torch::linspace(-1, 1, w, torch::kFloat32);
    auto grid_y = ys.view({h, 1}).expand({h, w});
    auto grid_x = xs.view({1, w}).expand({h, w});
    auto identity = torch::stack({grid_x, grid_y}, 2).unsqueeze(0);  // [1, H, W, 2], (x, y)
    // As in the reference, the displacement is divided by the image height.
    return ((identity + o_.s * noise / static_cast<double>(h)) * o_.grid_rescale).clamp(-1.0, 1.0);
  }

  static torch::Tensor warp(const torch::Tensor& images, const torch::Tensor& grid) {
    auto x = images.to(torch::kFloat32);
    auto out = F::grid_sample(x, grid.expand({x.size(0), grid.size(1), grid.size(2), 2}).contiguous(),
                              F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kZeros).align_corners(true));
    return out.clamp(0.0, 1.0).to(images.dtype());
  }

  torch::Tensor apply_image(const torch::Tensor& images, Rng&) const override {
    check_batch(images, "wanet");
    return warp(images, warp_grid(images.size(2), images.size(3)));
  }

  // Poisoned rows get the warp and the target label; "noise mode" cross rows
  // (cross_ratio x as many, drawn from the other rows) get the warp plus random
  // per-sample noise and keep their labels, so the model learns that only the exact
  // warp is the trigger. Cross rows are not poisoned.
  RawSplit poison_train(const RawSplit& clean_train, Rng& rng) const override {
    if (!clean_train.is_image()) fail("wanet is an image attack and cannot be applied to text data");
    auto rows = choose_rows(clean_train, rng);
    RawSplit out = apply_trigger(clean_train, rows, rng);
    const int64_t n = clean_train.size();
    std::vector<char> taken(static_cast<size_t>(n), 0);
    for (auto r : rows) taken[static_cast<size_t>(r)] = 1;
    std::vector<int64_t> rest;
    for (int64_t i = 0; i < n; ++i)
      if (!taken[static_cast<size_t>(i)]) rest.push_back(i);
    auto num_cross = static_cast<int64_t>(std::llround(o_.cross_ratio * static_cast<double>(rows.size())));
    num_cross = std::min<int64_t>(num_cross, static_cast<int64_t>(rest.size()));
    if (num_cross == 0) return out;
    rng.shuffle(rest);
    rest.resize(static_cast<size_t>(num_cross));
    std::sort(rest.begin(), rest.end());
    const int64_t h = clean_train.images.size(2), w = clean_train.images.size(3);
    auto grid = warp_grid(h, w);
    std::vector<float> values(static_cast<size_t>(num_cross * h * w * 2));
    for (auto& v : values) v = static_cast<float>(rng.uniform() * 2.0 - 1.0);
    auto ins = torch::tensor(values, torch::kFloat32).reshape({num_cross, h, w, 2});
    auto cross_grid = (grid.expand({num_cross, h, w, 2}) + ins / static_cast<double>(h)).clamp(-1.0, 1.0);
    auto index = torch::tensor(rest, torch::kLong);
    auto warped = warp(clean_train.images.index_select(0, index), cross_grid);
    out.images.index_copy_(0, index, warped);
    return out;
  }

 private:
  Options o_;
};

// ---- patch from a PNG file -------------------------------------------------------------

class PatchFile : public Attack {
 public:
  struct Options {
    std::string path;
    int64_t x = -1, y = -1;  // -1: flush with the right / bottom edge
  };
  static const OptionTable<Options>& table() {
    static const OptionTable<Options> t = [] {
      OptionTable<Options> t;
      t.add("path", &Options::path, "the PNG to paste (required; its alpha channel is kept)",
            Rule<std::string>{[](const std::string& v) { return !v.empty(); }, "must name a PNG file"});
      t.add("x", &Options::x, "left edge of the patch (-1: flush right)", at_least<int64_t>(-1));
      t.add("y", &Options::y, "top edge of the patch (-1: flush with the bottom)", at_least<int64_t>(-1));
      return t;
    }();
    return t;
  }
  PatchFile(Params& p, const AttackSettings& s) {
    settings_ = s;
    table().read(p, o_);
    rgba_ = read_png_rgba(o_.path, p.context() + ".path");
  }
  Modality modality() const override { return Modality::Image; }
  torch::Tensor apply_image(const torch::Tensor& images, Rng&) const override {
    check_batch(images, "patch-file");
    const int64_t h = images.size(2), w = images.size(3);
    const int64_t ph = rgba_.size(1), pw = rgba_.size(2);
    const int64_t x = o_.x < 0 ? w - pw : o_.x, y = o_.y < 0 ? h - ph : o_.y;
    if (x < 0 || y < 0 || x + pw > w || y + ph > h)
      fail("patch-file: the {}x{} patch '{}' at x={}, y={} does not fit in {}x{} images", pw, ph, o_.path, x, y, w, h);
    auto [colour, alpha] = png_to_channels(rgba_, images.size(1));
    colour = colour.to(images.dtype()).unsqueeze(0);
    alpha = alpha.to(images.dtype()).unsqueeze(0);
    auto out = images.clone();
    auto region = out.slice(2, y, y + ph).slice(3, x, x + pw);
    // Alpha compositing: opaque PNG pixels replace the image, transparent ones keep it.
    region.copy_(alpha * colour + (1.0 - alpha) * region);
    return out;
  }

 private:
  Options o_;
  torch::Tensor rgba_;
};

Registrar<AttackRegistry> reg_badnets("badnets", construct<BadNets>,
                                      "white square patch (size, default 3) at the bottom-right corner",
                                      docs_of<BadNets>);
Registrar<AttackRegistry> reg_blend("blend", construct<Blend>,
                                    "blend a pattern with alpha (default 0.2): seeded noise or a PNG (pattern)",
                                    docs_of<Blend>);
Registrar<AttackRegistry> reg_sig("sig", construct<Sig>,
                                  "clean-label horizontal sinusoid (delta 40/255, frequency 6) on target rows",
                                  docs_of<Sig>);
Registrar<AttackRegistry> reg_wanet("wanet", construct<WaNet>,
                                    "WaNet warping trigger (k 4, s 0.5, grid_rescale 1, cross_ratio 2 noise mode)",
                                    docs_of<WaNet>);
Registrar<AttackRegistry> reg_patch_file("patch-file", construct<PatchFile>,
                                         "a user PNG (path) pasted at x, y (default bottom-right corner)",
                                         docs_of<PatchFile>);

}  // namespace

}  // namespace antidote
