// bpp: the colour-depth reduction and its dithering against values worked by hand.
#include <gtest/gtest.h>

#include "antidote/attacks/attack.hpp"

namespace antidote {
namespace {

torch::Tensor apply(const std::string& yaml, const torch::Tensor& images) {
  AttackSettings s;
  s.num_classes = 10;
  auto attack = make_attack("bpp", YAML::Load(yaml), s);
  Rng rng(0);
  return attack->apply_image(images, rng);
}

// 0.35 of 8 levels: 0.35 · 7 = 2.45 rounds to 2, so 2/7 without dithering.
TEST(Bpp, WithoutDitheringEveryPixelRoundsToTheNearestLevel) {
  auto out = apply("{dithering: false}", torch::full({1, 1, 2, 2}, 0.35));
  EXPECT_TRUE(torch::allclose(out, torch::full({1, 1, 2, 2}, 2.0 / 7.0)));
  auto two = apply("{levels: 2, dithering: false}", torch::tensor({0.2, 0.6, 0.49, 1.0}).view({1, 1, 1, 4}));
  EXPECT_TRUE(torch::equal(two, torch::tensor({0.0, 1.0, 0.0, 1.0}).view({1, 1, 1, 4})));
}

// A flat 2×2 image of 0.35, 8 levels, dithered (worked by hand):
//   (0,0) 0.35 -> 2/7, error +0.0642857: (0,1) += 7/16 e, (1,0) += 5/16 e, (1,1) += 1/16 e
//   (0,1) 0.378125 -> 3/7, error -0.0504464: (1,0) += 3/16 e, (1,1) += 5/16 e
//   (1,0) 0.3606306 -> 3/7, error -0.0679408: (1,1) += 7/16 e
//   (1,1) 0.3085293 -> 2/7
// A checkerboard whose mean (5/14 = 0.357) stays near the flat 0.35.
TEST(Bpp, DitheringSpreadsTheRoundingErrorFloydSteinberg) {
  auto out = apply("{}", torch::full({1, 1, 2, 2}, 0.35));
  auto expected = torch::tensor({2.0 / 7, 3.0 / 7, 3.0 / 7, 2.0 / 7}).view({1, 1, 2, 2}).to(torch::kFloat32);
  EXPECT_TRUE(torch::allclose(out, expected, 1e-6, 1e-6)) << out;
  // Each channel and each image is dithered on its own.
  auto batch = apply("{}", torch::full({2, 3, 2, 2}, 0.35));
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < 3; ++c) EXPECT_TRUE(torch::allclose(batch[n][c], expected[0][0], 1e-6, 1e-6));
}

TEST(Bpp, OutputsStayInTheUnitRangeAndOnTheLevels) {
  auto images = torch::rand({4, 1, 8, 8}, torch::TensorOptions().dtype(torch::kFloat32));
  auto out = apply("{levels: 4}", images);
  EXPECT_GE(out.min().item<float>(), 0.0f);
  EXPECT_LE(out.max().item<float>(), 1.0f);
  auto scaled = out * 3;
  EXPECT_TRUE(torch::allclose(scaled, scaled.round(), 1e-5, 1e-5));
}

TEST(Bpp, RejectsBadOptionsAndInputs) {
  AttackSettings s;
  s.num_classes = 10;
  EXPECT_NO_THROW(make_attack("bpp", YAML::Load("{levels: 2}"), s));
  EXPECT_THROW(make_attack("bpp", YAML::Load("{levels: 1}"), s), Error);
  EXPECT_THROW(make_attack("bpp", YAML::Load("{levels: 300}"), s), Error);
  EXPECT_THROW(make_attack("bpp", YAML::Load("{bits: 3}"), s), Error);
  EXPECT_THROW(apply("{}", torch::rand({2, 8})), Error);
}

}  // namespace
}  // namespace antidote
