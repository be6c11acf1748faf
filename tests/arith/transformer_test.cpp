// The transformer's integer rules (sim/arith/include/qathw/arith/transformer.h): the square root
// against 128-bit bounds, the vector unit against plain sums, RMSNorm and the softmax against
// long-double references within the bounds docs/arith.md states, and the worked examples there.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <random>
#include <vector>

#include "qathw/arith.h"
#include "test_support.h"
#include "wide_reference.h"

namespace qathw::arith {
namespace {

using test::i128;
__extension__ typedef unsigned __int128 u128;

Format format(int mantissa_bits, Rounding r) {
  Format f;
  f.scale_mantissa_bits = mantissa_bits;
  f.rounding = r;
  return f;
}

// ---- square root ---------------------------------------------------------------------------

::testing::AssertionResult is_floor_sqrt(std::uint64_t n, std::uint64_t r) {
  const u128 lo = static_cast<u128>(r) * r, hi = static_cast<u128>(r + 1) * (r + 1);
  if (lo <= n && n < hi) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "isqrt(" << n << ") = " << r;
}

TEST(Isqrt, Edges) {
  EXPECT_EQ(isqrt(0), 0u);
  EXPECT_EQ(isqrt(1), 1u);
  EXPECT_EQ(isqrt(2), 1u);
  EXPECT_EQ(isqrt(3), 1u);
  EXPECT_EQ(isqrt(4), 2u);
  EXPECT_EQ(isqrt(99), 9u);
  EXPECT_EQ(isqrt(100), 10u);
  EXPECT_EQ(isqrt(~std::uint64_t{0}), 4294967295u);
  EXPECT_EQ(isqrt(std::uint64_t{1} << 62), std::uint64_t{1} << 31);
  EXPECT_EQ(isqrt((std::uint64_t{1} << 62) - 1), (std::uint64_t{1} << 31) - 1);
  EXPECT_EQ(isqrt(std::uint64_t{4294967295} * 4294967295), 4294967295u);
  EXPECT_EQ(isqrt(std::uint64_t{4294967295} * 4294967295 - 1), 4294967294u);
  EXPECT_EQ(isqrt_steps(64), 32);
  EXPECT_EQ(isqrt_steps(48), 24);
  EXPECT_EQ(isqrt_steps(17), 9);
}

TEST(Isqrt, EveryValueBelow2To20AndEveryPerfectSquareNeighbour) {
  for (std::uint64_t n = 0; n < (1u << 20); ++n) ASSERT_TRUE(is_floor_sqrt(n, isqrt(n, 20)));
  for (std::uint64_t r = 1; r < (1u << 20); r += 7) {  // r^2 - 1, r^2, r^2 + 1 up to 2^40
    for (std::uint64_t n : {r * r - 1, r * r, r * r + 1}) ASSERT_TRUE(is_floor_sqrt(n, isqrt(n)));
  }
  for (std::uint64_t r : {std::uint64_t{1} << 31, std::uint64_t{3037000499}, std::uint64_t{4294967295}})
    for (std::uint64_t n : {r * r - 1, r * r}) ASSERT_TRUE(is_floor_sqrt(n, isqrt(n)));
}

// 2^20 seeded values of every bit length, each against the 128-bit bounds and against a
// long-double square root; a narrower unit (input_bits) gives the same root for its inputs.
TEST(Isqrt, RandomValuesAgainst128BitBounds) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  for (int i = 0; i < (1 << 20); ++i) {
    const int bits = 1 + static_cast<int>(rng() % 64);
    const std::uint64_t n = bits == 64 ? rng() : rng() & ((std::uint64_t{1} << bits) - 1);
    const std::uint64_t r = isqrt(n);
    ASSERT_TRUE(is_floor_sqrt(n, r)) << test::seed_note(seed);
    ASSERT_LE(std::fabs(static_cast<long double>(r) - std::sqrt(static_cast<long double>(n))), 1.0L)
        << n << " " << test::seed_note(seed);
    ASSERT_EQ(isqrt(n, bits), r) << n << " bits " << bits << " " << test::seed_note(seed);
  }
}

TEST(ShiftRound, BothDirectionsAndBeyondTheRange) {
  for (const Rounding r : {Rounding::HalfAwayFromZero, Rounding::HalfEven}) {
    EXPECT_EQ(shift_round(-3, -4, r), -48);
    EXPECT_EQ(shift_round(5, 0, r), 5);
    EXPECT_EQ(shift_round(7, 1, r), 4);
    EXPECT_EQ(shift_round((std::int64_t{1} << 61) + 5, 63, r), 0);
    EXPECT_EQ(shift_round(-(std::int64_t{1} << 61), 70, r), 0);
  }
  EXPECT_EQ(shift_round(-5, 1, Rounding::HalfAwayFromZero), -3);
  EXPECT_EQ(shift_round(-5, 1, Rounding::HalfEven), -2);
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 100000; ++i) {
    const std::uint64_t v = rng();
    const int s = 1 + static_cast<int>(rng() % 63);
    for (const Rounding r : {Rounding::HalfAwayFromZero, Rounding::HalfEven})
      ASSERT_EQ(static_cast<u128>(round_shift_unsigned(v, s, r)),
                static_cast<u128>(test::reference_round_pow2(static_cast<i128>(v), s, r)))
          << v << " >> " << s << " " << test::seed_note(seed);
  }
}

// ---- vector unit ---------------------------------------------------------------------------

TEST(VectorUnit, RandomInt8RowsAgainstPlainSums) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 3000; ++trial) {
    const int k = 1 + static_cast<int>(rng() % 300);
    VectorUnit u;
    u.lanes = 1 + static_cast<int>(rng() % 40);
    const int stride = 1 + static_cast<int>(rng() % 3);
    std::vector<std::int8_t> a(k);
    std::vector<std::uint8_t> p(k);  // unsigned probability codes against signed V codes
    std::vector<std::int8_t> b(static_cast<std::size_t>(k) * stride);
    std::int64_t exact = 0, exact_p = 0;
    for (int i = 0; i < k; ++i) {
      a[i] = static_cast<std::int8_t>(static_cast<int>(rng() % 255) - 127);
      p[i] = static_cast<std::uint8_t>(rng() % 256);
      b[static_cast<std::size_t>(i) * stride] = static_cast<std::int8_t>(static_cast<int>(rng() % 255) - 127);
      exact += a[i] * b[static_cast<std::size_t>(i) * stride];
      exact_p += p[i] * b[static_cast<std::size_t>(i) * stride];
    }
    ASSERT_TRUE(vector_dot_order_free(k, 127, 127, u));
    EXPECT_EQ(vector_dot(a.data(), b.data(), k, u, stride), exact) << test::seed_note(seed);
    EXPECT_EQ(vector_dot(p.data(), b.data(), k, u, stride), exact_p) << test::seed_note(seed);
    u.overflow = Overflow::Wrap;
    for (int bits : {12, 16, 20}) {
      u.acc_bits = bits;
      EXPECT_EQ(vector_dot(a.data(), b.data(), k, u, stride), wrap(exact, bits)) << test::seed_note(seed);
    }
  }
}

// docs/arith.md: five products of +-16129 into a 16-bit saturating accumulator.
TEST(VectorUnit, SaturationIsPerPartialSum) {
  const std::int8_t a[5] = {127, 127, 127, -127, -127}, b[5] = {127, 127, 127, 127, 127};
  VectorUnit u;
  u.acc_bits = 16;
  u.lanes = 1;
  EXPECT_EQ(vector_dot(a, b, 5, u), 509);  // 16129, 32258, 32767 (48387 saturated), 16638, 509
  u.lanes = 2;
  EXPECT_EQ(vector_dot(a, b, 5, u), 16129);  // 32258, 32258, 16129
  u.overflow = Overflow::Wrap;
  u.lanes = 1;
  EXPECT_EQ(vector_dot(a, b, 5, u), 16129);
  // The largest order-free lengths with a 32-bit saturating accumulator.
  const VectorUnit wide;
  EXPECT_TRUE(vector_dot_order_free(133144, 127, 127, wide));
  EXPECT_FALSE(vector_dot_order_free(133145, 127, 127, wide));
  EXPECT_TRUE(vector_dot_order_free(66311, 255, 127, wide));
  EXPECT_FALSE(vector_dot_order_free(66312, 255, 127, wide));
}

// ---- RMSNorm -------------------------------------------------------------------------------

TEST(RmsNorm, InputSaturationThatKeepsTheSumIn64Bits) {
  EXPECT_EQ(rmsnorm_max_input_bits(1), 32);
  EXPECT_EQ(rmsnorm_max_input_bits(64), 29);
  EXPECT_EQ(rmsnorm_max_input_bits(256), 28);
  EXPECT_EQ(rmsnorm_max_input_bits((1 << 18) - 1), 24);
  EXPECT_EQ(rmsnorm_max_input_bits(1 << 18), 23);
  EXPECT_TRUE(rmsnorm_sum_fits(256, 28, 0));
  EXPECT_FALSE(rmsnorm_sum_fits(256, 28, std::uint64_t{1} << 56));
  // At the limit every value at -2^27: the sum 2^62 256 - ... stays exact.
  std::vector<std::int32_t> x(256, -(1 << 27));
  EXPECT_EQ(sum_squares(x.data(), 256, 28), std::uint64_t{1} << 62);
  x.assign(255, -(1 << 27));
  x.push_back(std::int32_t{1} << 30);  // saturated to 2^27 - 1 first
  EXPECT_EQ(sum_squares(x.data(), 256, 28), 255 * (std::uint64_t{1} << 54) + ((std::uint64_t{1} << 27) - 1) * ((std::uint64_t{1} << 27) - 1));
}

// docs/arith.md: x = {3, -4, 12, 0}, rms = 6.5, gains 64 and 32 (M = 16).
TEST(RmsNorm, WorkedExample) {
  for (const Rounding r : {Rounding::HalfAwayFromZero, Rounding::HalfEven}) {
    const Format f = format(16, r);
    const std::int32_t x[4] = {3, -4, 12, 0};
    const FixedPoint g64 = to_fixed_point(64.0, f).value, g32 = to_fixed_point(32.0, f).value;
    EXPECT_EQ(g64.mantissa, 32768);
    EXPECT_EQ(g64.shift, 9);
    const FixedPoint gains[4] = {g64, g64, g32, g64};
    std::int64_t y[4];
    const RmsInverse inv = rmsnorm_token(x, 4, 24, 0, gains, 24, y, f);
    EXPECT_EQ(inv.sum, 169u);
    EXPECT_EQ(inv.k, 28);
    EXPECT_EQ(inv.mean_sq, std::uint64_t{169} << 54);  // 42.25 * 2^56
    EXPECT_EQ(inv.root, std::uint64_t{1744830464});     // 6.5 * 2^28
    EXPECT_EQ(inv.inv_rms.mantissa, 40330);
    EXPECT_EQ(inv.inv_rms.shift, 18);
    EXPECT_EQ(shift_round(3 * inv.inv_rms.mantissa, inv.inv_rms.shift - kRmsNormFracBits, r), 30248);
    EXPECT_EQ(y[0], 30);
    EXPECT_EQ(y[1], -39);
    EXPECT_EQ(y[2], 59);
    EXPECT_EQ(y[3], 0);
    // One feature: rms = |x|, so the output is sign(x) times the gain.
    const std::int32_t one[1] = {-5};
    std::int64_t y1[1];
    const RmsInverse inv1 = rmsnorm_token(one, 1, 24, 0, gains, 24, y1, f);
    EXPECT_EQ(inv1.inv_rms.mantissa, 52429);
    EXPECT_EQ(inv1.inv_rms.shift, 18);
    EXPECT_EQ(y1[0], -64);
  }
}

TEST(RmsNorm, AllZeroTokenAndEps) {
  const Format f = format(16, Rounding::HalfAwayFromZero);
  const std::int32_t zeros[3] = {0, 0, 0};
  const FixedPoint g = to_fixed_point(64.0, f).value;
  const FixedPoint gains[3] = {g, g, g};
  std::int64_t y[3] = {9, 9, 9};
  const RmsInverse inv = rmsnorm_token(zeros, 3, 24, 0, gains, 24, y, f);
  EXPECT_EQ(inv.inv_rms.mantissa, 0);
  EXPECT_EQ(y[0], 0);
  EXPECT_EQ(y[2], 0);
  // eps = 4 (units of x^2): rms of {3, -4, 12, 0} becomes sqrt(42.25 + 4) = 6.8007...
  const std::int32_t x[4] = {3, -4, 12, 0};
  const FixedPoint gains4[4] = {g, g, g, g};
  std::int64_t y4[4];
  const RmsInverse inv4 = rmsnorm_token(x, 4, 24, 4, gains4, 24, y4, f);
  EXPECT_EQ(inv4.sum, 185u);
  EXPECT_EQ(y4[2], 113);  // 12 * 64 / sqrt(46.25) = 112.93
}

// Scaling a token by 2^j changes S by 4^j, k by -j and the pair's shift by +j: the outputs are
// identical integers, as the real RMSNorm's are.
TEST(RmsNorm, PowerOfTwoScalingOfTheInputLeavesTheOutputUnchanged) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  const Format f = format(16, Rounding::HalfEven);
  for (int trial = 0; trial < 2000; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 64);
    std::vector<std::int64_t> x(n), x2(n), y(n), y2(n);
    std::vector<FixedPoint> gains(n);
    for (int i = 0; i < n; ++i) {
      x[i] = static_cast<std::int64_t>(rng() % 20001) - 10000;
      x2[i] = x[i] * 8;
      gains[i] = to_fixed_point(0.5 + static_cast<double>(rng() % 1000), f).value;
    }
    rmsnorm_token(x.data(), n, 24, 0, gains.data(), 24, y.data(), f);
    rmsnorm_token(x2.data(), n, 24, 0, gains.data(), 24, y2.data(), f);
    ASSERT_EQ(y, y2) << test::seed_note(seed);
  }
}

// Seeded random tokens against long double: the 1/rms pair within 2^-M + sqrt(n) 2^-30 (relative),
// every output within 1/2 + G 2^-(F+1) + |y| (2^-M + sqrt(n) 2^-30).
TEST(RmsNorm, RandomTokensWithinTheStatedBound) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  double worst_inv = 0;
  for (int trial = 0; trial < 4000; ++trial) {
    const int m_bits = std::initializer_list<int>{8, 16, 18, 31}.begin()[trial % 4];
    const Format f = format(m_bits, trial % 3 ? Rounding::HalfAwayFromZero : Rounding::HalfEven);
    const int n = trial % 50 == 0 ? 1 + static_cast<int>(rng() % 3) : 1 + static_cast<int>(rng() % 2048);
    const int in_bits = 24;
    const int mag_bits = 1 + static_cast<int>(rng() % 23);
    const std::uint64_t eps = trial % 5 == 0 ? rng() % 1000 : 0;
    std::vector<std::int32_t> x(n);
    std::vector<FixedPoint> gains(n);
    std::vector<std::int64_t> y(n);
    long double sum = 0;
    for (int i = 0; i < n; ++i) {
      x[i] = static_cast<std::int32_t>(static_cast<std::int64_t>(rng() % (std::uint64_t{1} << mag_bits)) -
                                       (std::int64_t{1} << (mag_bits - 1)));
      sum += static_cast<long double>(x[i]) * x[i];
      gains[i] = to_fixed_point(std::ldexp(1.0 + static_cast<double>(rng() % 1000) / 1000.0,
                                           static_cast<int>(rng() % 16) - 4),
                                f)
                     .value;
    }
    const RmsInverse inv = rmsnorm_token(x.data(), n, in_bits, eps, gains.data(), 32, y.data(), f);
    if (sum + eps == 0) continue;
    const long double exact_inv = 1.0L / std::sqrt(sum / n + eps);
    const long double got_inv = std::ldexp(static_cast<long double>(inv.inv_rms.mantissa), -inv.inv_rms.shift);
    const long double rel_bound = std::ldexp(1.0L, -m_bits) + std::sqrt(static_cast<long double>(n)) * std::ldexp(1.0L, -30);
    const long double rel = std::fabs(got_inv / exact_inv - 1);
    worst_inv = std::max(worst_inv, static_cast<double>(rel / rel_bound));
    ASSERT_LE(rel, rel_bound) << "n " << n << " M " << m_bits << " " << test::seed_note(seed);
    for (int i = 0; i < n; ++i) {
      const long double g = std::ldexp(static_cast<long double>(gains[i].mantissa), -gains[i].shift);
      const long double exact = x[i] * exact_inv * g;
      const long double bound = 0.5L + g * std::ldexp(1.0L, -(kRmsNormFracBits + 1)) + std::fabs(exact) * rel_bound;
      ASSERT_LE(std::fabs(static_cast<long double>(y[i]) - exact), bound)
          << "n " << n << " i " << i << " x " << x[i] << " M " << m_bits << " " << test::seed_note(seed);
    }
  }
  RecordProperty("worst_inv_rms_error_over_bound", std::to_string(worst_inv));
}

// ---- causal mask and softmax ---------------------------------------------------------------

TEST(CausalMask, KeysUpToTheQuery) {
  EXPECT_TRUE(causal_visible(0, 0));
  EXPECT_FALSE(causal_visible(0, 1));
  EXPECT_TRUE(causal_visible(5, 3));
  EXPECT_TRUE(causal_visible(5, 5));
  EXPECT_FALSE(causal_visible(5, 6));
  EXPECT_EQ(causal_count(0), 1);
  EXPECT_EQ(causal_count(7), 8);
  for (int q = 0; q < 16; ++q)
    for (int k = 0; k < 16; ++k) EXPECT_EQ(causal_visible(q, k), k < causal_count(q));
}

// Every table size and precision: entry[0] = 2^P_e, entries non-increasing, each within
// 1/2 + 2^-6 of 2^P_e 2^(-f/2^L).
TEST(Exp2Table, EveryShapeWithinHalfAnLsbPlus2ToMinus6) {
  for (const Rounding r : {Rounding::HalfAwayFromZero, Rounding::HalfEven})
    for (int l = 0; l <= kMaxExp2IndexBits; ++l)
      for (int pb = 1; pb <= kMaxExp2ValueBits; ++pb) {
        const Exp2Table t = exp2_table(l, pb, r);
        ASSERT_EQ(t.entry[0], std::uint32_t{1} << pb);
        for (int f = 0; f < (1 << l); ++f) {
          const long double exact = std::ldexp(std::exp2(-static_cast<long double>(f) / (1 << l)), pb);
          ASSERT_LE(std::fabs(t.entry[f] - exact), 0.5L + 1.0L / 64) << "L " << l << " P_e " << pb << " f " << f;
          if (f > 0) {
            ASSERT_LE(t.entry[f], t.entry[f - 1]);
          }
        }
      }
  const Exp2Table t = exp2_table(3, 8, Rounding::HalfAwayFromZero);  // docs/arith.md
  const std::uint32_t expected[8] = {256, 235, 215, 197, 181, 166, 152, 140};
  for (int f = 0; f < 8; ++f) EXPECT_EQ(t.entry[f], expected[f]);
  EXPECT_EQ(exp2_neg(60, t, Rounding::HalfAwayFromZero), 1);  // 181 / 2^7 = 1.41
  EXPECT_EQ(exp2_neg(8 * 9, t, Rounding::HalfAwayFromZero), 1);  // 256 / 2^9 = 0.5
  EXPECT_EQ(exp2_neg(8 * 9, t, Rounding::HalfEven), 0);
  EXPECT_EQ(exp2_neg(8 * 70, t, Rounding::HalfAwayFromZero), 0);
  EXPECT_EQ(exp2_neg(std::int64_t{1} << 40, t, Rounding::HalfAwayFromZero), 0);
}

// docs/arith.md: a row of six scores, the last masked, L = 3, P_e = 8, 8-bit codes, M = 16.
TEST(Softmax, WorkedExample) {
  for (const Rounding r : {Rounding::HalfAwayFromZero, Rounding::HalfEven}) {
    const Format f = format(16, r);
    const Exp2Table t = exp2_table(3, 8, r);
    const std::int32_t z[6] = {40, 32, 27, 8, -20, 100};
    std::uint8_t p[6];
    const SoftmaxRow row = softmax_row(z, 6, 5, t, 8, f, p);
    EXPECT_EQ(row.max, 40);
    EXPECT_EQ(row.sum, 484);  // 256 + 128 + 83 + 16 + 1
    EXPECT_EQ(row.inv_sum.mantissa, 34528);
    EXPECT_EQ(row.inv_sum.shift, 16);
    const std::uint8_t expected[6] = {135, 67, 44, 8, 1, 0};
    for (int j = 0; j < 6; ++j) EXPECT_EQ(p[j], expected[j]) << j;
  }
}

TEST(Softmax, EqualValuesOneDominantAndOneUnmasked) {
  const Format f = format(16, Rounding::HalfAwayFromZero);
  const Exp2Table t = exp2_table(6, 20, f.rounding);
  std::vector<std::int32_t> z(100, -12345);
  std::vector<std::uint8_t> p(100);
  for (int n : {1, 2, 3, 7, 100}) {  // equal values: every code round(255 / n)
    softmax_row(z.data(), n, n, t, 8, f, p.data());
    for (int j = 0; j < n; ++j) EXPECT_EQ(p[j], std::lround(255.0 / n)) << "n " << n;
  }
  z[37] = -12345 + 64 * 40;  // 2^40 times the others: they round to 0
  softmax_row(z.data(), 100, 100, t, 8, f, p.data());
  for (int j = 0; j < 100; ++j) EXPECT_EQ(p[j], j == 37 ? 255 : 0) << j;
  z[0] = -(1 << 30);  // all masked but the first, however small it is
  z[1] = 1 << 30;
  softmax_row(z.data(), 100, 1, t, 8, f, p.data());
  EXPECT_EQ(p[0], 255);
  for (int j = 1; j < 100; ++j) EXPECT_EQ(p[j], 0) << j;
  // Extremes of int32 scores: the distance is taken in 64 bits.
  const std::int32_t wide[2] = {INT32_MIN, INT32_MAX};
  std::uint8_t q[2];
  softmax_row(wide, 2, 2, t, 8, f, q);
  EXPECT_EQ(q[0], 0);
  EXPECT_EQ(q[1], 255);
  EXPECT_TRUE(softmax_sum_fits(1 << 11, 20));
  EXPECT_FALSE(softmax_sum_fits((1 << 11) + 1, 20));
  EXPECT_EQ(prob_qmax(8), 255);
}

long double softmax_reference(const std::vector<std::int32_t>& z, int count, int l, int j) {
  std::int32_t mx = z[0];
  for (int i = 1; i < count; ++i) mx = std::max(mx, z[i]);
  long double sum = 0;
  for (int i = 0; i < count; ++i) sum += std::exp2(static_cast<long double>(z[i] - mx) / (1 << l));
  return std::exp2(static_cast<long double>(z[j] - mx) / (1 << l)) / sum;
}

// Seeded random rows against the long-double softmax of the same log2-domain scores:
// |p_j / qp - softmax_j| <= 1/(2 qp) + 2^-M + n 2^-P_e, masked positions 0.
TEST(Softmax, RandomRowsWithinTheStatedBound) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 3000; ++trial) {
    const int l = 3 + static_cast<int>(rng() % 6);
    const int n = 1 + static_cast<int>(rng() % 300);
    const int widest = std::min(kMaxExp2ValueBits, 31 - bit_length(static_cast<std::uint64_t>(n)));
    const int pb = 8 + static_cast<int>(rng() % static_cast<std::uint64_t>(widest - 7));
    const int prob_bits = std::initializer_list<int>{4, 8, 12}.begin()[trial % 3];
    const int m_bits = trial % 2 ? 16 : 18;
    const Format f = format(m_bits, trial % 4 < 2 ? Rounding::HalfAwayFromZero : Rounding::HalfEven);
    ASSERT_TRUE(softmax_sum_fits(n, pb));
    const Exp2Table t = exp2_table(l, pb, f.rounding);
    const std::int64_t spread = std::int64_t{1} << (1 + rng() % 16);  // scores within 2^16 of each other
    std::vector<std::int32_t> z(n);
    for (auto& v : z) v = static_cast<std::int32_t>(static_cast<std::int64_t>(rng() % spread) - spread / 2);
    const int count = trial % 3 == 0 ? 1 + static_cast<int>(rng() % n) : n;
    std::vector<std::uint16_t> p(n);
    softmax_row(z.data(), n, count, t, prob_bits, f, p.data());
    const long double qp = static_cast<long double>(prob_qmax(prob_bits));
    const long double bound =
        0.5L / qp + std::ldexp(1.0L, -m_bits) + static_cast<long double>(n) * std::ldexp(1.0L, -pb);
    for (int j = 0; j < n; ++j) {
      if (j >= count) {
        ASSERT_EQ(p[j], 0) << test::seed_note(seed);
        continue;
      }
      const long double exact = softmax_reference(z, count, l, j);
      ASSERT_LE(std::fabs(p[j] / qp - exact), bound)
          << "n " << n << " j " << j << " L " << l << " P_e " << pb << " " << test::seed_note(seed);
    }
  }
}

// From the real scores: Q K^T of INT8 codes, requantized to the log2 domain by the pair of
// c log2(e) 2^L. The codes stay within the op's bound plus what the log2 step costs: each score
// within d of its exact log2-domain value moves a probability by a factor within 2^(+-2d/2^L).
TEST(Softmax, FromRealScoresWithinTheBoundPlusTheLog2Step) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  const Format f = format(16, Rounding::HalfAwayFromZero);
  const int l = 8, pb = 20, d_head = 32, n = 64;
  const Exp2Table t = exp2_table(l, pb, f.rounding);
  VectorUnit u;
  for (int trial = 0; trial < 200; ++trial) {
    const double c = std::ldexp(1.0 + static_cast<double>(rng() % 1000) / 1000.0, -12) / std::sqrt(double(d_head));
    const FixedPoint pair = to_fixed_point(c * std::log2(std::exp(1.0)) * (1 << l), f).value;
    std::vector<std::int8_t> q(d_head), k(static_cast<std::size_t>(n) * d_head);
    for (auto& v : q) v = static_cast<std::int8_t>(static_cast<int>(rng() % 255) - 127);
    for (auto& v : k) v = static_cast<std::int8_t>(static_cast<int>(rng() % 255) - 127);
    std::vector<std::int32_t> z(n);
    std::vector<long double> real(n);
    long double worst_step = 0;
    for (int j = 0; j < n; ++j) {
      const std::int64_t acc = vector_dot(q.data(), k.data() + static_cast<std::size_t>(j) * d_head, d_head, u);
      z[j] = static_cast<std::int32_t>(requantize(acc, pair, f.rounding, 32));
      real[j] = c * static_cast<long double>(acc);
      const long double exact_z = real[j] * std::log2(std::exp(1.0L)) * (1 << l);
      worst_step = std::max(worst_step, std::fabs(z[j] - exact_z));
    }
    std::vector<std::uint8_t> p(n);
    softmax_row(z.data(), n, n, t, 8, f, p.data());
    long double mx = real[0], sum = 0;
    for (auto v : real) mx = std::max(mx, v);
    for (auto v : real) sum += std::exp(v - mx);
    const long double op_bound = 0.5L / 255 + std::ldexp(1.0L, -16) + n * std::ldexp(1.0L, -pb);
    const long double step_factor = std::exp2(2 * worst_step / (1 << l)) - 1;
    for (int j = 0; j < n; ++j) {
      const long double exact = std::exp(real[j] - mx) / sum;
      ASSERT_LE(std::fabs(p[j] / 255.0L - exact), op_bound + step_factor * exact) << j << " " << test::seed_note(seed);
    }
  }
}

// ---- squared ReLU --------------------------------------------------------------------------

TEST(SquaredRelu, ExamplesAndTheShiftThatNeverSaturates) {
  const Rounding haz = Rounding::HalfAwayFromZero, he = Rounding::HalfEven;
  EXPECT_EQ(squared_relu(-5, 8, 16, haz), 0);
  EXPECT_EQ(squared_relu(3, 8, 16, haz), 0);      // 9 / 256
  EXPECT_EQ(squared_relu(100, 8, 16, haz), 39);   // 10000 / 256 = 39.06
  EXPECT_EQ(squared_relu(16, 9, 16, haz), 1);     // 256 / 512 = 0.5
  EXPECT_EQ(squared_relu(16, 9, 16, he), 0);
  EXPECT_EQ(squared_relu(2896, 8, 16, haz), 32761);
  EXPECT_EQ(squared_relu(2897, 8, 16, haz), 32767);  // 32784 saturated
  EXPECT_EQ(squared_relu_shift(24, 24), 23);
  EXPECT_EQ(squared_relu_shift(16, 24), 7);
  EXPECT_EQ(squared_relu_shift(24, 8), 40);
  EXPECT_EQ(squared_relu_shift(8, 16), 0);
  // Every 16-bit input at that shift: the 128-bit reference, never saturated.
  for (const Rounding r : {haz, he}) {
    const int shift = squared_relu_shift(16, 24);
    for (std::int64_t v = -32768; v <= 32767; ++v) {
      const std::int64_t p = v > 0 ? v : 0;
      const i128 ref = test::reference_round_pow2(static_cast<i128>(p) * p, shift, r);
      ASSERT_LE(ref, signed_max(24));
      ASSERT_EQ(squared_relu(v, shift, 24, r), static_cast<std::int64_t>(ref)) << v;
    }
    for (int in_bits = 2; in_bits <= 31; ++in_bits)
      for (int out_bits = 8; out_bits <= 32; ++out_bits) {
        const int s = squared_relu_shift(in_bits, out_bits);
        ASSERT_LE(round_shift(signed_max(in_bits) * signed_max(in_bits), s, r), signed_max(out_bits));
        if (s > 0) {  // the shift is the smallest: one less saturates the largest input
          ASSERT_GT(round_shift(signed_max(in_bits) * signed_max(in_bits), s - 1, haz), signed_max(out_bits));
        }
      }
  }
}

}  // namespace
}  // namespace qathw::arith
