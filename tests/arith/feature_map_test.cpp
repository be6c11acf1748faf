// The feature-map rules (sim/arith/include/qathw/arith/feature_map.h): convolution against a
// direct six-loop convolution written here without the patch gather, padding, strides, groups and
// depthwise; pooling and the residual add on worked examples.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "qathw/arith.h"
#include "test_support.h"

namespace qathw::arith {
namespace {

// The direct convolution: every (ky, kx, ci) product of output (oy, ox, co), the padding skipped,
// summed exactly (no overflow rule): what the patch rule must equal when no partial sum can
// saturate.
std::int64_t direct_conv(const std::vector<int>& map, const std::vector<int>& w, const Conv2dShape& s, int oy, int ox,
                         int co) {
  const int g = co / s.group_out(), gi = s.group_in();
  std::int64_t sum = 0;
  for (int ky = 0; ky < s.window.kernel_h; ++ky)
    for (int kx = 0; kx < s.window.kernel_w; ++kx)
      for (int ci = 0; ci < gi; ++ci) {
        const int y = oy * s.window.stride_h + ky - s.window.pad_h, x = ox * s.window.stride_w + kx - s.window.pad_w;
        if (y < 0 || x < 0 || y >= s.in_h || x >= s.in_w) continue;
        const int code = map[(y * s.in_w + x) * s.in_c + g * gi + ci];
        sum += static_cast<std::int64_t>(code) * w[((co * s.window.kernel_h + ky) * s.window.kernel_w + kx) * gi + ci];
      }
  return sum;
}

struct Case {
  int in_h, in_w, in_c, out_c, kh, kw, sh, sw, ph, pw, groups;
};

TEST(Conv2dRule, OutputSizes) {
  EXPECT_EQ(Window::out_size(28, 3, 1, 1), 28);
  EXPECT_EQ(Window::out_size(28, 5, 1, 0), 24);
  EXPECT_EQ(Window::out_size(28, 3, 2, 1), 14);
  EXPECT_EQ(Window::out_size(7, 7, 1, 0), 1);
  EXPECT_EQ(Window::out_size(5, 2, 2, 0), 2);  // the last column is not covered
}

// Seeded random maps and kernels in both weight formats, every output of each shape: the patch
// rule with a wide wrapping accumulator equals the direct sum, and with a narrow saturating one
// equals arith::dot over the direct patch order.
TEST(Conv2dRule, EqualsTheDirectConvolution) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  const Case cases[] = {
      {5, 5, 3, 4, 3, 3, 1, 1, 1, 1, 1},  // same padding
      {6, 7, 2, 3, 3, 2, 2, 1, 0, 1, 1},  // rectangular kernel, strides and padding differ per side
      {4, 4, 4, 4, 3, 3, 1, 1, 1, 1, 4},  // depthwise
      {5, 4, 6, 4, 1, 1, 1, 1, 0, 0, 2},  // pointwise, two groups
      {3, 3, 1, 2, 5, 5, 1, 1, 2, 2, 1},  // kernel wider than the map
      {8, 8, 3, 5, 2, 2, 2, 2, 0, 0, 1},  // 2x2 stride 2
  };
  for (const WeightFormat wf : {WeightFormat::Ternary, WeightFormat::Int4})
    for (const Case& c : cases) {
      Conv2dShape s;
      s.in_h = c.in_h, s.in_w = c.in_w, s.in_c = c.in_c, s.out_c = c.out_c, s.groups = c.groups;
      s.window = {c.kh, c.kw, c.sh, c.sw, c.ph, c.pw};
      const int qw = weight_qmax(wf);
      std::uniform_int_distribution<int> code(-127, 127), weight(-qw, qw);
      std::vector<int> map(static_cast<std::size_t>(s.in_h * s.in_w * s.in_c)), w(static_cast<std::size_t>(s.out_c * s.patch()));
      for (int& v : map) v = code(rng);
      for (int& v : w) v = weight(rng);
      Format wide;
      wide.weights = wf;
      wide.acc_bits = 32;
      wide.overflow = Overflow::Wrap;
      Format narrow = wide;
      narrow.acc_bits = 10;
      narrow.overflow = Overflow::Saturate;
      std::vector<int> patch(static_cast<std::size_t>(s.patch()));
      for (int oy = 0; oy < s.out_h(); ++oy)
        for (int ox = 0; ox < s.out_w(); ++ox)
          for (int co = 0; co < s.out_c; ++co) {
            conv_patch(map.data(), s, oy, ox, co / s.group_out(), patch.data());
            const int* kernel = w.data() + static_cast<std::size_t>(co) * s.patch();
            const std::string where = test::seed_note(seed) + " shape " + std::to_string(&c - cases) + " at (" +
                                      std::to_string(oy) + ", " + std::to_string(ox) + ", " + std::to_string(co) + ")";
            ASSERT_EQ(dot(patch.data(), kernel, s.patch(), 3, wide), direct_conv(map, w, s, oy, ox, co)) << where;
            // The saturating accumulator follows the chunks of the (ky, kx, ci) order.
            std::vector<int> direct_patch;
            const int g = co / s.group_out();
            for (int ky = 0; ky < s.window.kernel_h; ++ky)
              for (int kx = 0; kx < s.window.kernel_w; ++kx)
                for (int ci = 0; ci < s.group_in(); ++ci) {
                  const int y = oy * s.window.stride_h + ky - s.window.pad_h, x = ox * s.window.stride_w + kx - s.window.pad_w;
                  const bool in = y >= 0 && x >= 0 && y < s.in_h && x < s.in_w;
                  direct_patch.push_back(in ? map[(y * s.in_w + x) * s.in_c + g * s.group_in() + ci] : 0);
                }
            ASSERT_EQ(patch, direct_patch) << where;
            const FixedPoint pair{3, 2};
            ASSERT_EQ(conv_output(patch.data(), kernel, s, 3, pair, narrow),
                      epilogue(dot(direct_patch.data(), kernel, s.patch(), 3, narrow), pair, false, narrow))
                << where;
          }
    }
}

// In a depthwise convolution each output channel reads its own input channel only.
TEST(Conv2dRule, DepthwiseReadsOneChannel) {
  Conv2dShape s;
  s.in_h = s.in_w = 3;
  s.in_c = s.out_c = s.groups = 2;
  s.window = {3, 3, 1, 1, 1, 1};
  std::vector<int> map(18, 0), patch(static_cast<std::size_t>(s.patch()));
  for (int p = 0; p < 9; ++p) map[p * 2 + 1] = p + 1;  // channel 1 holds 1..9, channel 0 zeros
  conv_patch(map.data(), s, 1, 1, 0, patch.data());
  EXPECT_EQ(patch, std::vector<int>(9, 0));
  conv_patch(map.data(), s, 1, 1, 1, patch.data());
  EXPECT_EQ(patch, (std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9}));
  conv_patch(map.data(), s, 0, 0, 1, patch.data());  // the top-left corner: padding reads 0
  EXPECT_EQ(patch, (std::vector<int>{0, 0, 0, 0, 1, 2, 0, 4, 5}));
}

TEST(PoolRule, MaxPoolIgnoresThePadding) {
  // 2x3 map, one channel; a 2x2 window, stride 2, padding 1: every window partly in the padding.
  const std::vector<int> map = {-5, -7, -2, -9, -1, -3};
  const Window w{2, 2, 2, 2, 1, 1};
  EXPECT_EQ(w.out_h(2), 2);
  EXPECT_EQ(w.out_w(3), 2);
  EXPECT_EQ(max_pool(map.data(), 2, 3, 1, w, 0, 0, 0), -5);  // not 0: padding is not a value
  EXPECT_EQ(max_pool(map.data(), 2, 3, 1, w, 0, 1, 0), -2);
  EXPECT_EQ(max_pool(map.data(), 2, 3, 1, w, 1, 0, 0), -9);
  EXPECT_EQ(max_pool(map.data(), 2, 3, 1, w, 1, 1, 0), -1);
}

TEST(PoolRule, AveragePoolIsTheRequantizedSum) {
  // Two channels of a 2x2 map; the global average pool's window is the whole map.
  const std::vector<int> map = {1, -1, 2, -2, 3, -3, 4, -4};
  const Window global{2, 2, 1, 1, 0, 0};
  EXPECT_EQ(window_sum(map.data(), 2, 2, 2, global, 0, 0, 0), 10);
  EXPECT_EQ(window_sum(map.data(), 2, 2, 2, global, 0, 0, 1), -10);
  Format f;  // ternary-asic: M = 16, half away from zero, 24-bit accumulator
  const FixedPointResult quarter = to_fixed_point(0.25, f);
  ASSERT_EQ(quarter.status, FixedPointStatus::Ok);
  EXPECT_EQ(average_pool(10, quarter.value, f), 3);  // 2.5 rounds away from zero
  EXPECT_EQ(average_pool(-10, quarter.value, f), -3);
  f.rounding = Rounding::HalfEven;
  EXPECT_EQ(average_pool(10, quarter.value, f), 2);
  // A sum beyond 32 bits saturates before the multiply, then to the accumulator's range.
  f.rounding = Rounding::HalfAwayFromZero;
  EXPECT_EQ(average_pool(std::int64_t{1} << 40, quarter.value, f), signed_max(24));
}

TEST(AddRule, OperandsAlignedByTheirPairsThenSaturated) {
  Format f;
  f.acc_bits = 12;  // [-2048, 2047]
  const FixedPoint half{1, 1}, one{1, 0};
  EXPECT_EQ(add_aligned(100, one, 7, half, f), 104);   // 100 + round(3.5) = 100 + 4
  EXPECT_EQ(add_aligned(-100, one, -7, half, f), -104);
  f.rounding = Rounding::HalfEven;
  EXPECT_EQ(add_aligned(100, one, 7, half, f), 104);   // 3.5 -> 4 (even)
  EXPECT_EQ(add_aligned(100, one, 5, half, f), 102);   // 2.5 -> 2 (even)
  EXPECT_EQ(add_aligned(2000, one, 200, one, f), 2047);  // the sum saturates
  EXPECT_EQ(add_aligned(-2000, one, -200, one, f), -2048);
}

}  // namespace
}  // namespace qathw::arith
