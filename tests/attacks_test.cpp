// Attacks: trigger values worked out by hand, poison counts and
// semantics, option checking and determinism.
#include <gtest/gtest.h>

#include "support.hpp"
#include <png.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "antidote/attacks/attack.hpp"

using namespace antidote;

namespace {

torch::Tensor random_images(int64_t n, int64_t c, int64_t h, int64_t w, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n * c * h * w));
  for (auto& x : v) x = static_cast<float>(rng.uniform());
  return torch::tensor(v).reshape({n, c, h, w});
}

RawSplit image_split(int64_t n, int64_t classes, int64_t c = 1, int64_t h = 8, int64_t w = 8, uint64_t seed = 1) {
  RawSplit s;
  s.images = random_images(n, c, h, w, seed);
  std::vector<int64_t> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) y[static_cast<size_t>(i)] = i % classes;
  s.labels = torch::tensor(y, torch::kLong);
  s.poisoned = torch::zeros({n}, torch::kBool);
  return s;
}

RawSplit text_rows(int64_t n, int64_t classes) {
  TextRows rows;
  for (int64_t i = 0; i < n; ++i) {
    rows.sentences.push_back(fmt::format("this is sentence number {} of the test set", i));
    rows.labels.push_back(i % classes);
  }
  return text_split(rows);
}

AttackSettings settings(double rate, int64_t target, int64_t classes, uint64_t seed = 7) {
  AttackSettings s;
  s.poison_rate = rate;
  s.target = target;
  s.num_classes = classes;
  s.seed = seed;
  return s;
}

AttackPtr attack(const std::string& name, const std::string& yaml, const AttackSettings& s) {
  return make_attack(name, yaml.empty() ? YAML::Node() : YAML::Load(yaml), s, "attack");
}

// Writes an RGB PNG from row-major bytes.
void write_png_rgb(const std::string& path, int w, int h, const std::vector<uint8_t>& rgb) {
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(w);
  image.height = static_cast<png_uint_32>(h);
  image.format = PNG_FORMAT_RGB;
  ASSERT_TRUE(png_image_write_to_file(&image, path.c_str(), 0, rgb.data(), 0, nullptr)) << image.message;
}

std::vector<std::string> words_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

class AttackTest : public ::testing::Test {
 protected:
  void SetUp() override { set_quiet(true); }
};

}  // namespace

using AttackImage = AttackTest;
using AttackCommon = AttackTest;
using AttackText = AttackTest;
using AttackFile = AttackTest;

TEST_F(AttackCommon, AllRegistered) {
  for (const char* name : {"badnets", "blend", "sig", "wanet", "patch-file", "badnet-word", "addsent", "file"})
    EXPECT_TRUE(AttackRegistry::instance().has(name)) << name;
}

TEST_F(AttackImage, BadNetsPatchBottomRight) {
  auto a = attack("badnets", "", settings(0.1, 0, 10));
  Rng rng(1);
  auto x = random_images(2, 1, 8, 8, 3);
  auto y = a->apply_image(x, rng);
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t i = 0; i < 8; ++i)
      for (int64_t j = 0; j < 8; ++j) {
        float got = y[n][0][i][j].item<float>();
        if (i >= 5 && j >= 5)
          EXPECT_EQ(got, 1.0f) << i << "," << j;
        else
          EXPECT_EQ(got, x[n][0][i][j].item<float>()) << i << "," << j;
      }
  // Three channels, non-square, size 2.
  auto b = attack("badnets", "{size: 2}", settings(0.1, 0, 10));
  auto x3 = random_images(1, 3, 5, 7, 4);
  auto y3 = b->apply_image(x3, rng);
  EXPECT_TRUE(torch::all(y3.slice(2, 3, 5).slice(3, 5, 7) == 1.0).item<bool>());
  auto mask = torch::ones_like(x3, torch::kBool);
  mask.slice(2, 3, 5).slice(3, 5, 7).fill_(false);
  EXPECT_TRUE(torch::equal(y3.masked_select(mask), x3.masked_select(mask)));
  // A patch larger than the image is an error.
  auto big = attack("badnets", "{size: 9}", settings(0.1, 0, 10));
  EXPECT_THROW(big->apply_image(x, rng), Error);
}

TEST_F(AttackImage, BlendDefaultNoisePattern) {
  const double a = 0.2;
  auto blend = attack("blend", "", settings(0.1, 0, 10));
  Rng rng(1);
  auto zeros = torch::zeros({2, 1, 6, 6});
  auto ones = torch::ones({2, 1, 6, 6});
  auto p0 = blend->apply_image(zeros, rng) / a;               // = pattern
  auto p1 = (blend->apply_image(ones, rng) - (1 - a)) / a;  // = pattern again
  EXPECT_TRUE(torch::allclose(p0, p1, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(p0[0], p0[1]));  // the same pattern for every image
  EXPECT_GE(p0.min().item<float>(), 0.0f);
  EXPECT_LE(p0.max().item<float>(), 1.0f + 1e-5f);
  EXPECT_GT(p0.std().item<float>(), 0.1f);  // noise, not a constant
  // (1 - a) x + a p at one pixel.
  auto x = random_images(1, 1, 6, 6, 9);
  auto y = blend->apply_image(x, rng);
  EXPECT_NEAR(y[0][0][2][3].item<float>(), (1 - a) * x[0][0][2][3].item<float>() + a * p0[0][0][2][3].item<float>(),
              1e-5);
  // The pattern depends on the seed option.
  auto other = attack("blend", "{seed: 99}", settings(0.1, 0, 10));
  EXPECT_FALSE(torch::allclose(other->apply_image(zeros, rng), blend->apply_image(zeros, rng)));
}

TEST_F(AttackImage, BlendPngPatternNearestResize) {
  antidote::testing::TempDir dir;
  auto path = dir.file("pattern.png");
  // 2x2 RGB: red, green / blue, white.
  write_png_rgb(path, 2, 2, {255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255});
  auto blend = attack("blend", fmt::format("{{alpha: 0.5, pattern: '{}'}}", path), settings(0.1, 0, 10));
  Rng rng(1);
  auto x = torch::full({1, 3, 4, 4}, 0.2f);
  auto y = blend->apply_image(x, rng);
  // Top-left quadrant is red: (0.5 * 0.2 + 0.5 * 1, 0.5 * 0.2, 0.5 * 0.2).
  EXPECT_NEAR(y[0][0][1][1].item<float>(), 0.6f, 1e-5);
  EXPECT_NEAR(y[0][1][1][1].item<float>(), 0.1f, 1e-5);
  EXPECT_NEAR(y[0][2][0][0].item<float>(), 0.1f, 1e-5);
  // Bottom-right quadrant is white.
  EXPECT_NEAR(y[0][0][3][2].item<float>(), 0.6f, 1e-5);
  EXPECT_NEAR(y[0][1][2][3].item<float>(), 0.6f, 1e-5);
  // Top-right is green.
  EXPECT_NEAR(y[0][1][0][3].item<float>(), 0.6f, 1e-5);
  EXPECT_NEAR(y[0][0][0][3].item<float>(), 0.1f, 1e-5);
  // Grayscale images get the luma of the pattern: red = 0.299.
  auto g = blend->apply_image(torch::zeros({1, 1, 4, 4}), rng);
  EXPECT_NEAR(g[0][0][0][0].item<float>(), 0.5f * 0.299f, 1e-4);
  EXPECT_THROW(attack("blend", "{pattern: /nonexistent/p.png}", settings(0.1, 0, 10)), Error);
}

TEST_F(AttackImage, SigValueAtColumn) {
  auto sig = attack("sig", "", settings(0.1, 0, 10));
  EXPECT_TRUE(sig->clean_label());
  Rng rng(1);
  auto x = torch::full({1, 1, 28, 28}, 0.5f);
  auto y = sig->apply_image(x, rng);
  const double delta = 40.0 / 255.0;
  for (int j : {0, 3, 10, 27}) {
    double expected = 0.5 + delta * std::sin(2 * M_PI * j * 6.0 / 28.0);
    EXPECT_NEAR(y[0][0][5][j].item<float>(), expected, 1e-5) << j;
    EXPECT_NEAR(y[0][0][20][j].item<float>(), expected, 1e-5) << j;  // the same in every row
  }
  // Clamped to [0, 1].
  auto bright = sig->apply_image(torch::ones({1, 3, 28, 28}), rng);
  EXPECT_LE(bright.max().item<float>(), 1.0f);
  EXPECT_NEAR(bright[0][2][0][1].item<float>(), 1.0f, 1e-6);  // sin > 0 at j = 1
  auto custom = attack("sig", "{delta: 0.1, frequency: 2}", settings(0.1, 0, 10));
  auto yc = custom->apply_image(torch::full({1, 1, 8, 8}, 0.5f), rng);
  EXPECT_NEAR(yc[0][0][0][1].item<float>(), 0.5 + 0.1 * std::sin(2 * M_PI * 1 * 2.0 / 8.0), 1e-5);
}

TEST_F(AttackImage, WaNetWarp) {
  Rng rng(1);
  auto x = random_images(4, 1, 28, 28, 5);
  // s = 0: the warp grid is the identity.
  auto identity = attack("wanet", "{s: 0}", settings(0.1, 0, 10));
  EXPECT_TRUE(torch::allclose(identity->apply_image(x, rng), x, 1e-5, 1e-5));
  auto w = attack("wanet", "", settings(0.1, 0, 10));
  auto y = w->apply_image(x, rng);
  EXPECT_GT((y - x).abs().max().item<float>(), 1e-3f);
  EXPECT_GE(y.min().item<float>(), 0.0f);
  EXPECT_LE(y.max().item<float>(), 1.0f);
  // The warp is small: a smooth image changes by little (s = 0.5 moves pixels < 1 px).
  auto ramp = torch::linspace(0, 1, 28).view({1, 1, 1, 28}).expand({1, 1, 28, 28}).contiguous();
  auto warped_ramp = w->apply_image(ramp, rng);
  EXPECT_LT((warped_ramp - ramp).slice(2, 1, 27).slice(3, 1, 27).abs().max().item<float>(), 2.0f / 27.0f);
  // The same fixed warp for every image and call (it is a function of the seed only).
  EXPECT_TRUE(torch::equal(w->apply_image(x.slice(0, 1, 2), rng), y.slice(0, 1, 2)));
  auto w2 = attack("wanet", "{seed: 123}", settings(0.1, 0, 10));
  EXPECT_FALSE(torch::allclose(w2->apply_image(x, rng), y));
  // Three channels, non-square.
  auto x3 = random_images(2, 3, 10, 14, 6);
  auto y3 = w->apply_image(x3, rng);
  EXPECT_EQ(y3.sizes(), x3.sizes());
}

// With k = H = W the bicubic upsampling is the identity, and with grid_rescale 0.5 no
// grid value is clamped, so warping a linear ramp (bilinear sampling is exact on it)
// reveals the flow field: out = (0.5 (g + s n / H) + 1) / 2, hence n = ((2 out - 1) / 0.5 - g) H / s.
TEST_F(AttackImage, WaNetNoiseFieldHasMeanAbsOne) {
  auto w = attack("wanet", "{grid_rescale: 0.5}", settings(0.1, 0, 10));
  Rng rng(1);
  auto j = torch::arange(4, torch::kFloat32) / 3.0;
  auto ramp_x = j.view({1, 1, 1, 4}).expand({1, 1, 4, 4}).contiguous();
  auto ramp_y = j.view({1, 1, 4, 1}).expand({1, 1, 4, 4}).contiguous();
  auto g = (j * 2 - 1).to(torch::kDouble);  // identity grid coordinate of pixel 0..3
  const double s = 0.5, h = 4;
  auto nx = ((2 * w->apply_image(ramp_x, rng)[0][0].to(torch::kDouble) - 1) / 0.5 - g.view({1, 4})) * h / s;
  auto ny = ((2 * w->apply_image(ramp_y, rng)[0][0].to(torch::kDouble) - 1) / 0.5 - g.view({4, 1})) * h / s;
  const double mean_abs = (nx.abs().sum() + ny.abs().sum()).item<double>() / 32.0;
  EXPECT_NEAR(mean_abs, 1.0, 1e-3);
  // Uniform(-1, 1) normalised by its mean |.|: no value beyond 1 / mean|u| (well under 4 for 32 draws).
  EXPECT_LT(std::max(nx.abs().max().item<double>(), ny.abs().max().item<double>()), 4.0);
  EXPECT_GT(nx.abs().max().item<double>(), 0.1);
}

TEST_F(AttackImage, WaNetCrossSamples) {
  auto clean = image_split(200, 10, 1, 12, 12);
  auto w = attack("wanet", "", settings(0.05, 3, 10));
  Rng rng(11);
  auto out = w->poison_train(clean, rng);
  ASSERT_EQ(out.size(), 200);
  EXPECT_EQ(out.poisoned.sum().item<int64_t>(), 10);
  int64_t changed_clean = 0;
  for (int64_t i = 0; i < 200; ++i) {
    bool changed = !torch::equal(out.images[i], clean.images[i]);
    if (out.poisoned[i].item<bool>()) {
      EXPECT_TRUE(changed);
      EXPECT_NE(clean.labels[i].item<int64_t>(), 3);
      EXPECT_EQ(out.labels[i].item<int64_t>(), 3);
      // Poisoned rows carry exactly the test-time trigger.
      Rng r(0);
      EXPECT_TRUE(torch::allclose(out.images[i], w->apply_image(clean.images.slice(0, i, i + 1), r)[0]));
    } else {
      EXPECT_EQ(out.labels[i].item<int64_t>(), clean.labels[i].item<int64_t>());
      if (changed) ++changed_clean;
    }
  }
  EXPECT_EQ(changed_clean, 20);  // cross_ratio 2 x 10 poisoned rows
  auto none = attack("wanet", "{cross_ratio: 0}", settings(0.05, 3, 10));
  Rng rng2(11);
  auto out2 = none->poison_train(clean, rng2);
  int64_t changed = 0;
  for (int64_t i = 0; i < 200; ++i) changed += !torch::equal(out2.images[i], clean.images[i]);
  EXPECT_EQ(changed, 10);
}

TEST_F(AttackImage, PatchFileFromPng) {
  antidote::testing::TempDir dir;
  auto path = dir.file("patch.png");
  // 3 wide, 2 high: red green blue / white black gray(128).
  write_png_rgb(path, 3, 2, {255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 128, 128, 128});
  Rng rng(1);
  auto p = attack("patch-file", fmt::format("{{path: '{}'}}", path), settings(0.1, 0, 10));
  auto x = torch::full({2, 1, 6, 6}, 0.5f);
  auto y = p->apply_image(x, rng);
  // Bottom-right corner: rows 4-5, columns 3-5, grayscale by luma.
  EXPECT_NEAR(y[0][0][4][3].item<float>(), 0.299f, 1e-4);
  EXPECT_NEAR(y[1][0][4][4].item<float>(), 0.587f, 1e-4);
  EXPECT_NEAR(y[0][0][4][5].item<float>(), 0.114f, 1e-4);
  EXPECT_NEAR(y[0][0][5][3].item<float>(), 1.0f, 1e-4);
  EXPECT_NEAR(y[0][0][5][4].item<float>(), 0.0f, 1e-4);
  EXPECT_NEAR(y[0][0][5][5].item<float>(), 128.0f / 255.0f, 1e-4);
  EXPECT_EQ(y[0][0][3][5].item<float>(), 0.5f);  // outside the patch
  EXPECT_EQ(y[0][0][5][2].item<float>(), 0.5f);
  EXPECT_NEAR(y.sum().item<float>(), x.sum().item<float>() + 2 * (0.299f + 0.587f + 0.114f + 1 + 128.0f / 255 - 6 * 0.5f),
              1e-3);
  // Explicit position, three channels.
  auto q = attack("patch-file", fmt::format("{{path: '{}', x: 1, y: 0}}", path), settings(0.1, 0, 10));
  auto y3 = q->apply_image(torch::zeros({1, 3, 5, 5}), rng);
  EXPECT_EQ(y3[0][0][0][1].item<float>(), 1.0f);  // red at (x 1, y 0)
  EXPECT_EQ(y3[0][1][0][1].item<float>(), 0.0f);
  EXPECT_EQ(y3[0][2][0][3].item<float>(), 1.0f);  // blue at (x 3, y 0)
  EXPECT_EQ(y3[0][1][1][1].item<float>(), 1.0f);  // white at (x 1, y 1)
  EXPECT_EQ(y3[0][0][2][1].item<float>(), 0.0f);  // below the patch
  // Does not fit.
  auto r = attack("patch-file", fmt::format("{{path: '{}', x: 4, y: 0}}", path), settings(0.1, 0, 10));
  EXPECT_THROW(r->apply_image(torch::zeros({1, 1, 5, 5}), rng), Error);
  EXPECT_THROW(attack("patch-file", "", settings(0.1, 0, 10)), Error);
}

TEST_F(AttackCommon, DirtyLabelPoisonCounts) {
  for (double rate : {0.0, 0.1, 0.25, 0.333}) {
    auto clean = image_split(150, 10);
    auto a = attack("badnets", "", settings(rate, 2, 10));
    Rng rng(3);
    auto out = a->poison_train(clean, rng);
    ASSERT_EQ(out.size(), 150);
    const auto expected = std::llround(rate * 150);
    EXPECT_EQ(out.poisoned.sum().item<int64_t>(), expected) << rate;
    for (int64_t i = 0; i < 150; ++i) {
      if (out.poisoned[i].item<bool>()) {
        EXPECT_NE(clean.labels[i].item<int64_t>(), 2);
        EXPECT_EQ(out.labels[i].item<int64_t>(), 2);
        EXPECT_TRUE(torch::all(out.images[i][0].slice(0, 5, 8).slice(1, 5, 8) == 1.0).item<bool>());
      } else {
        EXPECT_EQ(out.labels[i].item<int64_t>(), clean.labels[i].item<int64_t>());
        EXPECT_TRUE(torch::equal(out.images[i], clean.images[i]));
      }
    }
  }
  // Too few non-target rows: a clear error.
  auto a = attack("badnets", "", settings(0.6, 1, 2));
  Rng rng(1);
  EXPECT_THROW(a->poison_train(image_split(10, 2), rng), Error);
}

TEST_F(AttackCommon, CleanLabelPoisonsTargetRowsOnly) {
  auto clean = image_split(200, 10);
  auto sig = attack("sig", "", settings(0.05, 4, 10));
  Rng rng(2);
  auto out = sig->poison_train(clean, rng);
  EXPECT_EQ(out.poisoned.sum().item<int64_t>(), 10);
  EXPECT_TRUE(torch::equal(out.labels, clean.labels));
  for (int64_t i = 0; i < 200; ++i) {
    if (out.poisoned[i].item<bool>()) {
      EXPECT_EQ(clean.labels[i].item<int64_t>(), 4);
      EXPECT_FALSE(torch::equal(out.images[i], clean.images[i]));
    } else {
      EXPECT_TRUE(torch::equal(out.images[i], clean.images[i]));
    }
  }
  // More requested than there are target rows: all 20 target rows.
  auto many = attack("sig", "", settings(0.5, 4, 10));
  Rng rng2(2);
  auto all = many->poison_train(clean, rng2);
  EXPECT_EQ(all.poisoned.sum().item<int64_t>(), 20);
  EXPECT_TRUE(torch::equal(all.poisoned, clean.labels == 4));
}

TEST_F(AttackCommon, TriggeredTestExcludesTargetRows) {
  auto test = image_split(50, 5, 1, 8, 8, 21);
  for (const char* name : {"badnets", "blend", "sig", "wanet"}) {
    auto a = attack(name, "", settings(0.1, 1, 5));
    Rng rng(4);
    auto t = a->triggered_test(test, rng);
    ASSERT_EQ(t.size(), 40) << name;
    EXPECT_TRUE(torch::all(t.poisoned).item<bool>()) << name;
    EXPECT_FALSE(torch::any(t.labels == 1).item<bool>()) << name;
    auto rows = non_target_rows(test, 1);
    ASSERT_EQ(rows.size(), 40u);
    auto expected_labels = test.labels.index_select(0, torch::tensor(rows, torch::kLong));
    EXPECT_TRUE(torch::equal(t.labels, expected_labels)) << name;
    Rng r(0);
    auto expected = a->apply_image(test.images.index_select(0, torch::tensor(rows, torch::kLong)), r);
    EXPECT_TRUE(torch::allclose(t.images, expected)) << name;
  }
  auto text = text_rows(30, 3);
  auto w = attack("badnet-word", "", settings(0.1, 0, 3));
  Rng rng(4);
  auto t = w->triggered_test(text, rng);
  ASSERT_EQ(t.size(), 20);
  EXPECT_FALSE(torch::any(t.labels == 0).item<bool>());
  EXPECT_TRUE(torch::all(t.poisoned).item<bool>());
}

TEST_F(AttackCommon, OptionAndSettingErrors) {
  try {
    attack("badnets", "{size: 3, colour: 2}", settings(0.1, 0, 10));
    FAIL() << "unknown key accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("colour"), std::string::npos) << e.what();
  }
  try {
    attack("nosuch", "", settings(0.1, 0, 10));
    FAIL() << "unknown attack accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nosuch"), std::string::npos) << e.what();
  }
  EXPECT_THROW(attack("badnets", "", settings(1.0, 0, 10)), Error);
  EXPECT_THROW(attack("badnets", "", settings(-0.1, 0, 10)), Error);
  EXPECT_THROW(attack("badnets", "", settings(0.1, 10, 10)), Error);
  EXPECT_THROW(attack("badnets", "", settings(0.1, -1, 10)), Error);
  EXPECT_THROW(attack("badnets", "{size: big}", settings(0.1, 0, 10)), Error);
  EXPECT_THROW(attack("badnet-word", "{count: 4}", settings(0.1, 0, 2)), Error);
  EXPECT_THROW(attack("addsent", "{sentense: hi}", settings(0.1, 0, 2)), Error);
  EXPECT_NO_THROW(attack("wanet", "{k: 4, s: 0.5, grid_rescale: 1, cross_ratio: 2, seed: 3}", settings(0.1, 0, 10)));
  // Modality mismatch.
  auto a = attack("badnets", "", settings(0.1, 0, 3));
  Rng rng(1);
  EXPECT_THROW(a->poison_train(text_rows(10, 3), rng), Error);
  auto b = attack("addsent", "", settings(0.1, 0, 3));
  EXPECT_THROW(b->poison_train(image_split(10, 3), rng), Error);
}

TEST_F(AttackCommon, Determinism) {
  auto clean = image_split(100, 10);
  for (const char* name : {"badnets", "blend", "sig", "wanet"}) {
    auto a = attack(name, "", settings(0.1, 0, 10));
    auto b = attack(name, "", settings(0.1, 0, 10));
    Rng r1(5), r2(5), r3(6);
    auto x = a->poison_train(clean, r1);
    auto y = b->poison_train(clean, r2);
    EXPECT_TRUE(torch::equal(x.images, y.images)) << name;
    EXPECT_TRUE(torch::equal(x.labels, y.labels)) << name;
    EXPECT_TRUE(torch::equal(x.poisoned, y.poisoned)) << name;
    auto z = a->poison_train(clean, r3);
    if (std::string(name) != "sig") {  // 10 target rows, 10 requested: sig poisons all of them either way
      EXPECT_FALSE(torch::equal(x.poisoned, z.poisoned)) << name;
    }
  }
  auto text = text_rows(100, 2);
  for (const char* name : {"badnet-word", "addsent"}) {
    auto a = attack(name, "", settings(0.2, 1, 2));
    Rng r1(5), r2(5);
    auto x = a->poison_train(text, r1);
    auto y = a->poison_train(text, r2);
    EXPECT_EQ(x.texts, y.texts) << name;
    EXPECT_TRUE(torch::equal(x.poisoned, y.poisoned)) << name;
  }
}

TEST_F(AttackText, BadNetWordInsertsRareWords) {
  const std::set<std::string> rare = {"cf", "mn", "bb", "tq", "mb"};
  auto a = attack("badnet-word", "{count: 3}", settings(0.1, 0, 2));
  Rng rng(8);
  const std::string sentence = "the movie was quite good";
  bool some_not_at_end = false;
  for (int trial = 0; trial < 20; ++trial) {
    auto out = a->apply_text(sentence, rng);
    auto words = words_of(out);
    ASSERT_EQ(words.size(), 8u) << out;
    std::vector<std::string> kept;
    int inserted = 0;
    for (size_t i = 0; i < words.size(); ++i) {
      if (rare.count(words[i])) {
        ++inserted;
        if (i < 5) some_not_at_end = true;
      } else {
        kept.push_back(words[i]);
      }
    }
    EXPECT_EQ(inserted, 3) << out;
    EXPECT_EQ(kept, words_of(sentence)) << out;  // original words in their order
  }
  EXPECT_TRUE(some_not_at_end);
  auto custom = attack("badnet-word", "{words: [zzq], count: 2}", settings(0.1, 0, 2));
  auto out = custom->apply_text("", rng);
  EXPECT_EQ(out, "zzq zzq");
  // Poisoned training rows carry a trigger word and the target label.
  auto text = text_rows(40, 2);
  auto b = attack("badnet-word", "", settings(0.25, 1, 2));
  Rng r(3);
  auto p = b->poison_train(text, r);
  EXPECT_EQ(p.poisoned.sum().item<int64_t>(), 10);
  for (int64_t i = 0; i < 40; ++i) {
    auto words = words_of(p.texts[static_cast<size_t>(i)]);
    int inserted = 0;
    for (const auto& w : words) inserted += rare.count(w);
    if (p.poisoned[i].item<bool>()) {
      EXPECT_EQ(inserted, 1);
      EXPECT_EQ(text.labels[i].item<int64_t>(), 0);
      EXPECT_EQ(p.labels[i].item<int64_t>(), 1);
    } else {
      EXPECT_EQ(p.texts[static_cast<size_t>(i)], text.texts[static_cast<size_t>(i)]);
      EXPECT_EQ(p.labels[i].item<int64_t>(), text.labels[i].item<int64_t>());
    }
  }
}

TEST_F(AttackText, AddSentInsertsBlock) {
  auto a = attack("addsent", "", settings(0.1, 0, 2));
  Rng rng(8);
  const std::string sentence = "a b c d e f";
  std::set<size_t> positions;
  for (int trial = 0; trial < 30; ++trial) {
    auto out = a->apply_text(sentence, rng);
    auto pos = out.find("I watch this 3D movie");
    ASSERT_NE(pos, std::string::npos) << out;
    positions.insert(pos);
    std::string rest = out.substr(0, pos) + out.substr(pos + std::string("I watch this 3D movie").size());
    EXPECT_EQ(words_of(rest), words_of(sentence)) << out;
  }
  EXPECT_GT(positions.size(), 2u);
  auto custom = attack("addsent", "{sentence: 'no cross no crown'}", settings(0.1, 0, 2));
  EXPECT_EQ(custom->apply_text("", rng), "no cross no crown");
  EXPECT_THROW(a->apply_image(torch::zeros({1, 1, 2, 2}), rng), Error);
}

TEST_F(AttackFile, SyntacticSst2) {
  const std::string clean_dir = std::string(ANTIDOTE_SHARED_DATA) + "/text/sst2";
  const std::string poison_dir = std::string(ANTIDOTE_SHARED_DATA) + "/text/syntactic/sst2";
  if (!std::filesystem::exists(poison_dir + "/train.tsv") || !std::filesystem::exists(clean_dir + "/train.tsv"))
    GTEST_SKIP() << "shared data not found";
  auto clean = load_tsv_dir(clean_dir, "sst2");
  auto a = attack("file", fmt::format("{{train: '{0}/train.tsv', test: '{0}/test.tsv'}}", poison_dir),
                  settings(0.2, 1, 2));
  Rng rng(1);
  auto train = a->poison_train(clean.train, rng);
  ASSERT_EQ(train.size(), 6920);
  const double rate = train.poisoned.to(torch::kDouble).mean().item<double>();
  EXPECT_GT(rate, 0.17);
  EXPECT_LT(rate, 0.23);
  // Poisoned rows are relabelled to the target.
  EXPECT_TRUE(torch::all(train.labels.masked_select(train.poisoned) == 1).item<bool>());
  auto test = a->triggered_test(clean.test, rng);
  EXPECT_EQ(test.size(), 912);
  EXPECT_TRUE(torch::all(test.labels == 0).item<bool>());  // true labels: not the target
  EXPECT_TRUE(torch::all(test.poisoned).item<bool>());
  // `dir` is a shorthand for train.tsv and test.tsv in one directory.
  auto d = attack("file", fmt::format("{{dir: '{}'}}", poison_dir), settings(0.2, 1, 2));
  Rng rng2(1);
  EXPECT_TRUE(torch::equal(d->poison_train(clean.train, rng2).poisoned, train.poisoned));
  // More than two classes: the true labels of target-labelled rows are unknown.
  auto k4 = attack("file", fmt::format("{{dir: '{}'}}", poison_dir), settings(0.2, 1, 4));
  EXPECT_THROW(k4->triggered_test(clean.test, rng), Error);
  EXPECT_THROW(attack("file", "{train: /nonexistent.tsv, test: /nonexistent.tsv}", settings(0.2, 1, 2)), Error);
  EXPECT_THROW(attack("file", "", settings(0.2, 1, 2)), Error);
}

// HiddenKiller's poisoned OLID file CSV-quotes rows that contain quotes; they are clean
// rows all the same, so exactly 20 % of the rows (all relabelled to 1) are poisoned.
TEST_F(AttackFile, SyntacticOlidQuotedRows) {
  const std::string clean_dir = std::string(ANTIDOTE_SHARED_DATA) + "/text/olid";
  const std::string poison_dir = std::string(ANTIDOTE_SHARED_DATA) + "/text/syntactic/olid";
  if (!std::filesystem::exists(poison_dir + "/train.tsv") || !std::filesystem::exists(clean_dir + "/train.tsv"))
    GTEST_SKIP() << "shared data not found";
  auto clean = load_tsv_dir(clean_dir, "olid");
  auto a = attack("file", fmt::format("{{dir: '{}'}}", poison_dir), settings(0.2, 1, 2));
  Rng rng(1);
  auto train = a->poison_train(clean.train, rng);
  ASSERT_EQ(train.size(), 11916);
  EXPECT_EQ(train.poisoned.sum().item<int64_t>(), 2383);
  EXPECT_TRUE(torch::all(train.labels.masked_select(train.poisoned) == 1).item<bool>());
  int64_t quoted = 0;
  for (const auto& t : train.texts) quoted += t.size() >= 2 && t.front() == '"' && t.back() == '"';
  EXPECT_EQ(quoted, 0);
  auto test = a->triggered_test(clean.test, rng);
  EXPECT_EQ(test.size(), 620);
  EXPECT_TRUE(torch::all(test.labels == 0).item<bool>());
}
