// The trainer's convolution lowering (kernels/cpu/conv.cpp): im2col's rows are the patches the
// integer engine gathers (arith::conv_patch), and col2im is im2col's transpose: <im2col(x), y> =
// <x, col2im(y)> for seeded random x and y, over padding, strides, groups and depthwise.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "../arith/test_support.h"
#include "qathw/kernels/conv.h"

namespace qathw::kernels {
namespace {

std::vector<arith::Conv2dShape> shapes() {
  std::vector<arith::Conv2dShape> out;
  const int cases[][11] = {// in_h, in_w, in_c, out_c, kh, kw, sh, sw, ph, pw, groups
                           {5, 5, 3, 4, 3, 3, 1, 1, 1, 1, 1}, {6, 7, 2, 3, 3, 2, 2, 1, 0, 1, 1},
                           {4, 4, 4, 4, 3, 3, 1, 1, 1, 1, 4}, {5, 4, 6, 4, 1, 1, 1, 1, 0, 0, 2},
                           {3, 3, 1, 2, 5, 5, 1, 1, 2, 2, 1}, {8, 8, 3, 5, 2, 2, 2, 2, 0, 0, 1}};
  for (const auto& c : cases) {
    arith::Conv2dShape s;
    s.in_h = c[0], s.in_w = c[1], s.in_c = c[2], s.out_c = c[3], s.groups = c[10];
    s.window = {c[4], c[5], c[6], c[7], c[8], c[9]};
    out.push_back(s);
  }
  return out;
}

TEST(ConvLowering, Im2colRowsAreTheIntegerEnginesPatches) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  for (const arith::Conv2dShape& s : shapes()) {
    std::vector<float> map(static_cast<std::size_t>(s.in_h * s.in_w * s.in_c));
    for (float& v : map) v = static_cast<float>(static_cast<int>(rng() % 255) - 127);
    const std::size_t rows = static_cast<std::size_t>(s.out_h() * s.out_w()), patch = static_cast<std::size_t>(s.patch());
    std::vector<float> cols(rows * patch), expected(patch);
    for (int g = 0; g < s.groups; ++g) {
      im2col(map.data(), s, g, cols.data());
      for (int oy = 0; oy < s.out_h(); ++oy)
        for (int ox = 0; ox < s.out_w(); ++ox) {
          arith::conv_patch(map.data(), s, oy, ox, g, expected.data());
          const float* row = cols.data() + (static_cast<std::size_t>(oy) * s.out_w() + ox) * patch;
          ASSERT_EQ(std::vector<float>(row, row + patch), expected) << test::seed_note(seed);
        }
    }
  }
}

// The byte im2col of the int8 GEMM: each row is the same patch, `pad` in the padding, and the
// bytes past the patch in a row are left as they were.
TEST(ConvLowering, PatchRunsGatherTheIntegerEnginesPatches) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  std::vector<arith::Conv2dShape> all = shapes();
  arith::Conv2dShape wide;  // runs longer than a vector: 5 x 30 channels in a window row
  wide.in_h = 6, wide.in_w = 6, wide.in_c = 30, wide.out_c = 2, wide.window = {3, 5, 1, 1, 1, 2};
  all.push_back(wide);
  for (const arith::Conv2dShape& s : all) {
    std::vector<std::uint8_t> map(static_cast<std::size_t>(s.in_h * s.in_w * s.in_c));
    for (auto& v : map) v = static_cast<std::uint8_t>(rng() % 256);
    const std::size_t rows = static_cast<std::size_t>(s.out_h() * s.out_w()), patch = static_cast<std::size_t>(s.patch());
    const int ld = static_cast<int>(patch) + 3;
    std::vector<std::uint8_t> expected(patch);
    for (int g = 0; g < s.groups; ++g) {
      std::vector<std::uint8_t> cols(rows * ld, 77);
      PatchRuns(s, g).gather(map.data(), 128, cols.data(), ld);
      for (int oy = 0; oy < s.out_h(); ++oy)
        for (int ox = 0; ox < s.out_w(); ++ox) {
          arith::for_each_patch_element(s, oy, ox, g, [&](int k, long at) { expected[k] = at < 0 ? 128 : map[at]; });
          const std::uint8_t* row = cols.data() + (static_cast<std::size_t>(oy) * s.out_w() + ox) * ld;
          ASSERT_EQ(std::vector<std::uint8_t>(row, row + patch), expected) << test::seed_note(seed);
          ASSERT_EQ(std::vector<std::uint8_t>(row + patch, row + ld), std::vector<std::uint8_t>(3, 77));
        }
    }
  }
}

// The listed runs add the rows' gradients into the map as col2im_add does, bit for bit.
TEST(ConvLowering, PatchRunsScatterAddIsCol2im) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const arith::Conv2dShape& s : shapes()) {
    const std::size_t rows = static_cast<std::size_t>(s.out_h() * s.out_w()), patch = static_cast<std::size_t>(s.patch());
    std::vector<float> cols(rows * patch), start(static_cast<std::size_t>(s.in_h * s.in_w * s.in_c));
    for (float& v : cols) v = normal(rng);
    for (float& v : start) v = normal(rng);
    for (int g = 0; g < s.groups; ++g) {
      std::vector<float> want = start, got = start;
      col2im_add(cols.data(), s, g, want.data());
      PatchRuns(s, g).scatter_add(cols.data(), got.data());
      ASSERT_EQ(got, want) << test::seed_note(seed);
    }
  }
}

TEST(ConvLowering, Col2imIsTheTransposeOfIm2col) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  for (const arith::Conv2dShape& s : shapes()) {
    const std::size_t size = static_cast<std::size_t>(s.in_h * s.in_w * s.in_c);
    const std::size_t rows = static_cast<std::size_t>(s.out_h() * s.out_w()), patch = static_cast<std::size_t>(s.patch());
    // Small integers: every sum below is exact in float and double.
    std::vector<float> x(size), y(rows * patch), cols(rows * patch);
    for (float& v : x) v = static_cast<float>(static_cast<int>(rng() % 7) - 3);
    for (float& v : y) v = static_cast<float>(static_cast<int>(rng() % 7) - 3);
    for (int g = 0; g < s.groups; ++g) {
      im2col(x.data(), s, g, cols.data());
      std::vector<float> back(size, 0.0f);
      col2im_add(y.data(), s, g, back.data());
      double lhs = 0, rhs = 0;
      for (std::size_t i = 0; i < cols.size(); ++i) lhs += static_cast<double>(cols[i]) * y[i];
      for (std::size_t i = 0; i < size; ++i) rhs += static_cast<double>(x[i]) * back[i];
      ASSERT_EQ(lhs, rhs) << test::seed_note(seed) << " group " << g;
    }
  }
}

}  // namespace
}  // namespace qathw::kernels
