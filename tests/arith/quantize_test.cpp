// Weight quantizers (ternary absmean, INT4 per channel) and the activation quantizer unit.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include <gtest/gtest.h>

#include "qathw/arith/quantize.h"
#include "test_support.h"
#include "wide_reference.h"

namespace qathw::arith {
namespace {

float reference_round(float x, Rounding mode) {
  return mode == Rounding::HalfAwayFromZero ? std::round(x) : std::nearbyint(x);
}

TEST(WeightQuantizer, TernaryAbsmeanMatchesBitNetRule) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937 rng(static_cast<std::uint32_t>(seed));
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::vector<float> w(4096);
  for (auto& x : w) x = normal(rng);
  std::uint64_t sum = 0;
  double exact = 0;
  for (float x : w) {
    sum += abs_fixed(x);
    exact += std::fabs(static_cast<double>(x));
  }
  const float gamma = mean_from_abs_fixed(sum, w.size());
  EXPECT_NEAR(gamma, exact / w.size(), 1e-7) << test::seed_note(seed);
  const float scale = weight_scale(gamma, WeightFormat::Ternary);
  EXPECT_EQ(scale, gamma);
  for (Rounding mode : {Rounding::HalfAwayFromZero, Rounding::HalfEven}) {
    for (float x : w) {
      const float expect = std::clamp(reference_round(x / scale, mode), -1.0f, 1.0f);
      ASSERT_EQ(weight_code(x, scale, WeightFormat::Ternary, mode), static_cast<int>(expect))
          << x << " " << test::seed_note(seed);
    }
  }
  // Ties: w = 0.5 * gamma rounds to 1 away from zero and to 0 by half-even; 1.5 * gamma to 1 (clamped 2).
  EXPECT_EQ(weight_code(0.5f, 1.0f, WeightFormat::Ternary, Rounding::HalfAwayFromZero), 1);
  EXPECT_EQ(weight_code(-0.5f, 1.0f, WeightFormat::Ternary, Rounding::HalfAwayFromZero), -1);
  EXPECT_EQ(weight_code(0.5f, 1.0f, WeightFormat::Ternary, Rounding::HalfEven), 0);
  EXPECT_EQ(weight_code(1.5f, 1.0f, WeightFormat::Ternary, Rounding::HalfEven), 1);
  EXPECT_EQ(weight_code(-9.0f, 1.0f, WeightFormat::Ternary, Rounding::HalfEven), -1);
}

TEST(WeightQuantizer, AbsmeanSumIsOrderIndependent) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937 rng(static_cast<std::uint32_t>(seed));
  std::uniform_real_distribution<float> u(-3.0f, 3.0f);
  std::vector<float> w(10000);
  for (auto& x : w) x = u(rng);
  auto fixed_sum = [](const std::vector<float>& v) {
    std::uint64_t s = 0;
    for (float x : v) s += abs_fixed(x);
    return s;
  };
  const std::uint64_t forward = fixed_sum(w);
  std::shuffle(w.begin(), w.end(), rng);
  EXPECT_EQ(fixed_sum(w), forward) << test::seed_note(seed);
  EXPECT_EQ(abs_fixed(-1.0f), std::uint64_t{1} << kAbsFracBits);
  EXPECT_EQ(abs_fixed(1e9f), std::uint64_t{256} << kAbsFracBits);  // saturated
  EXPECT_EQ(weight_scale(0.0f, WeightFormat::Ternary), kWeightScaleEps);
}

TEST(WeightQuantizer, Int4SymmetricPerChannel) {
  // absmax 0.7 -> scale 0.1: codes are round(w / 0.1) within [-7, 7].
  const float scale = weight_scale(0.7f, WeightFormat::Int4);
  EXPECT_FLOAT_EQ(scale, 0.1f);
  EXPECT_EQ(weight_code(0.7f, scale, WeightFormat::Int4, Rounding::HalfEven), 7);
  EXPECT_EQ(weight_code(-0.7f, scale, WeightFormat::Int4, Rounding::HalfEven), -7);
  EXPECT_EQ(weight_code(0.31f, scale, WeightFormat::Int4, Rounding::HalfEven), 3);
  EXPECT_EQ(weight_code(5.0f, scale, WeightFormat::Int4, Rounding::HalfEven), 7);
  const std::uint64_t seed = test::test_seed();
  std::mt19937 rng(static_cast<std::uint32_t>(seed));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (Rounding mode : {Rounding::HalfAwayFromZero, Rounding::HalfEven}) {
    for (int i = 0; i < 100000; ++i) {
      const float x = u(rng);
      const float s = weight_scale(std::fabs(u(rng)) + 0.01f, WeightFormat::Int4);
      const float expect = std::clamp(reference_round(x / s, mode), -7.0f, 7.0f);
      ASSERT_EQ(weight_code(x, s, WeightFormat::Int4, mode), static_cast<int>(expect)) << test::seed_note(seed);
    }
  }
  EXPECT_TRUE(weight_in_range(0.74f, scale, WeightFormat::Int4));
  EXPECT_FALSE(weight_in_range(0.76f, scale, WeightFormat::Int4));
}

// Every element of every token with amax up to 2000, for INT8 and INT4 codes: the unit's code
// equals the wide-integer reference of its own formula, lies within 1 LSB of the ideal
// round(v * qmax / amax), maps +-amax to +-qmax, and is monotone.
TEST(ActivationQuantizer, ExhaustiveSmallTokens) {
  for (int act_bits : {8, 4}) {
    for (Rounding mode : {Rounding::HalfAwayFromZero, Rounding::HalfEven}) {
      Format f;
      f.act_bits = act_bits;
      f.rounding = mode;
      f.scale_mantissa_bits = 16;
      const std::int64_t qmax = act_qmax(act_bits);
      for (std::int64_t amax = 1; amax <= 2000; ++amax) {
        const FixedPoint r = token_inv_scale(amax, f);
        std::int64_t previous = -qmax;
        for (std::int64_t v = -amax; v <= amax; ++v) {
          const std::int64_t code = quantize_act(v, r, act_bits, mode);
          const test::i128 wide = test::reference_round_pow2(static_cast<test::i128>(v) * r.mantissa, r.shift, mode);
          ASSERT_EQ(code, test::reference_clamp(wide, -qmax, qmax)) << "v=" << v << " amax=" << amax;
          const double ideal = static_cast<double>(v) * static_cast<double>(qmax) / static_cast<double>(amax);
          ASSERT_LE(std::fabs(code - ideal), 1.0) << "v=" << v << " amax=" << amax;
          ASSERT_GE(code, previous) << "not monotone at v=" << v << " amax=" << amax;
          previous = code;
        }
        ASSERT_EQ(quantize_act(amax, r, act_bits, mode), qmax) << amax;
        ASSERT_EQ(quantize_act(-amax, r, act_bits, mode), -qmax) << amax;
      }
    }
  }
}

TEST(ActivationQuantizer, AllZeroTokenGivesZeroCodes) {
  Format f;
  const FixedPoint r = token_inv_scale(0, f);
  EXPECT_EQ(quantize_act(0, r, 8, f.rounding), 0);
}

TEST(ActivationQuantizer, LargeTokensRandom) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  Format f;
  f.scale_mantissa_bits = 16;
  for (int i = 0; i < 1000000; ++i) {
    const std::int64_t amax = static_cast<std::int64_t>(rng() % ((std::uint64_t{1} << 31) - 1)) + 1;
    const std::int64_t v = static_cast<std::int64_t>(rng() % (2 * static_cast<std::uint64_t>(amax) + 1)) - amax;
    const FixedPoint r = token_inv_scale(amax, f);
    const std::int64_t code = quantize_act(v, r, 8, f.rounding);
    const double ideal = static_cast<double>(v) * 127.0 / static_cast<double>(amax);
    ASSERT_LE(std::fabs(code - ideal), 1.0) << "v=" << v << " amax=" << amax << " " << test::seed_note(seed);
    ASSERT_EQ(quantize_act(amax, r, 8, f.rounding), 127) << amax << " " << test::seed_note(seed);
  }
}

TEST(ActivationQuantizer, StaticScaleThroughFixedPoint) {
  // A static per-tensor quantizer with calibrated real scale 0.05 multiplies by 1/0.05 = 20.
  Format f;
  f.rounding = Rounding::HalfEven;
  const auto inv = to_fixed_point(1.0 / 0.05, f);
  ASSERT_EQ(inv.status, FixedPointStatus::Ok);
  EXPECT_EQ(quantize_act(3, inv.value, 8, f.rounding), 60);
  EXPECT_EQ(quantize_act(7, inv.value, 8, f.rounding), 127);  // clamped
  EXPECT_EQ(quantize_act(-7, inv.value, 8, f.rounding), -127);
}

}  // namespace
}  // namespace qathw::arith
