// Fixed-point scales: float -> (mantissa, shift), the reciprocal unit and requantization.
#include <cmath>

#include <gtest/gtest.h>

#include "qathw/arith/fixed_point.h"
#include "qathw/arith/quantize.h"
#include "test_support.h"
#include "wide_reference.h"

namespace qathw::arith {
namespace {

Format format_with(int mantissa_bits, Rounding mode = Rounding::HalfAwayFromZero, int smin = 0, int smax = 62) {
  Format f;
  f.scale_mantissa_bits = mantissa_bits;
  f.rounding = mode;
  f.scale_shift_min = smin;
  f.scale_shift_max = smax;
  return f;
}

// The worked examples of docs/arith.md.
TEST(ToFixedPoint, WorkedExamples) {
  const Format f = format_with(16);
  auto r = to_fixed_point(0.1, f);
  ASSERT_EQ(r.status, FixedPointStatus::Ok);
  EXPECT_EQ(r.value.mantissa, 52429);  // 0.1 * 2^19 = 52428.8
  EXPECT_EQ(r.value.shift, 19);
  r = to_fixed_point(1.0, f);
  EXPECT_EQ(r.value.mantissa, 32768);
  EXPECT_EQ(r.value.shift, 15);
  r = to_fixed_point(3.0, f);
  EXPECT_EQ(r.value.mantissa, 49152);
  EXPECT_EQ(r.value.shift, 14);
  // 0.99999 * 2^16 = 65535.3 rounds to 65535 (fits); 0.999999 * 2^16 rounds up to 2^16, so shift drops.
  r = to_fixed_point(0.999999, f);
  EXPECT_EQ(r.value.mantissa, 32768);
  EXPECT_EQ(r.value.shift, 15);
}

TEST(ToFixedPoint, RangeErrors) {
  EXPECT_EQ(to_fixed_point(0.0, format_with(16)).status, FixedPointStatus::NotPositive);
  EXPECT_EQ(to_fixed_point(-1.0, format_with(16)).status, FixedPointStatus::NotPositive);
  EXPECT_EQ(to_fixed_point(std::nan(""), format_with(16)).status, FixedPointStatus::NotPositive);
  EXPECT_EQ(to_fixed_point(70000.0, format_with(16, Rounding::HalfEven, 0, 62)).status, FixedPointStatus::TooLarge);
  EXPECT_EQ(to_fixed_point(1e-30, format_with(16, Rounding::HalfEven, 0, 62)).status, FixedPointStatus::TooSmall);
  // Clamped shift range: still representable with fewer mantissa bits.
  const auto r = to_fixed_point(0.5, format_with(16, Rounding::HalfEven, 0, 4));
  ASSERT_EQ(r.status, FixedPointStatus::Ok);
  EXPECT_EQ(r.value.mantissa, 8);
  EXPECT_EQ(r.value.shift, 4);
}

TEST(ToFixedPoint, RelativeErrorWithinHalfAnLsb) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  for (int m_bits : {2, 8, 16, 24, 31}) {
    const Format f = format_with(m_bits);
    // Values up to 2^(M-1): at shift 0 the mantissa must still fit M bits.
    std::uniform_real_distribution<double> exponent(-20.0, m_bits - 1.0);
    for (int i = 0; i < 20000; ++i) {
      const double v = std::exp2(exponent(rng));
      const auto r = to_fixed_point(v, f);
      ASSERT_EQ(r.status, FixedPointStatus::Ok) << v << " " << test::seed_note(seed);
      ASSERT_LT(r.value.mantissa, std::int64_t{1} << m_bits);
      ASSERT_GE(r.value.mantissa, std::int64_t{1} << (m_bits - 1)) << "not normalised: " << v;
      ASSERT_LE(std::fabs(to_real(r.value) - v), std::ldexp(0.5, -r.value.shift) * (1 + 1e-12))
          << v << " " << test::seed_note(seed);
    }
  }
}

// Reciprocal: mantissa normalised to M bits and within half an LSB of qmax / amax.
TEST(Reciprocal, NormalisedAndWithinHalfAnLsbForEveryAmaxUpTo2To16) {
  for (int m_bits : {8, 16, 18, 31}) {
    for (Rounding mode : {Rounding::HalfAwayFromZero, Rounding::HalfEven}) {
      const Format f = format_with(m_bits, mode);
      for (std::int64_t amax = 1; amax <= (1 << 16); ++amax) {
        const FixedPoint r = reciprocal(amax, 127, f);
        ASSERT_GE(r.mantissa, std::int64_t{1} << (m_bits - 1)) << amax;
        ASSERT_LT(r.mantissa, std::int64_t{1} << m_bits) << amax;
        // |m - 127 * 2^s / amax| <= 1/2  <=>  |2 * m * amax - 254 * 2^s| <= amax
        const test::i128 lhs = 2 * static_cast<test::i128>(r.mantissa) * amax - (static_cast<test::i128>(254) << r.shift);
        ASSERT_LE(lhs < 0 ? -lhs : lhs, amax) << "amax=" << amax << " m_bits=" << m_bits;
      }
    }
  }
}

TEST(Reciprocal, LargeAmaxRandom) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  const Format f = format_with(16);
  for (int i = 0; i < 200000; ++i) {
    const std::int64_t amax = static_cast<std::int64_t>(rng() % (std::uint64_t{1} << 31)) + 1;
    const std::int64_t qmax = static_cast<std::int64_t>(rng() % 32767) + 1;
    const FixedPoint r = reciprocal(amax, qmax, f);
    ASSERT_GE(r.mantissa, 1 << 15) << test::seed_note(seed);
    ASSERT_LT(r.mantissa, 1 << 16) << test::seed_note(seed);
    const test::i128 lhs =
        2 * static_cast<test::i128>(r.mantissa) * amax - ((static_cast<test::i128>(qmax) * 2) << r.shift);
    ASSERT_LE(lhs < 0 ? -lhs : lhs, amax) << "amax=" << amax << " qmax=" << qmax << " " << test::seed_note(seed);
  }
}

TEST(Reciprocal, ZeroAndClampedShifts) {
  const Format f = format_with(16, Rounding::HalfAwayFromZero, 3, 20);
  EXPECT_EQ(reciprocal(0, 127, f).mantissa, 0);
  // 127 / 1 needs shift 15-7+1 = 9 for a 16-bit mantissa: in range.
  EXPECT_EQ(reciprocal(1, 127, f).shift, 9);
  EXPECT_EQ(reciprocal(1, 127, f).mantissa, 127 << 9);
  // Huge amax wants a shift above 20: capped there, mantissa loses precision but stays exact-rounded.
  const FixedPoint big = reciprocal(1 << 30, 127, f);
  EXPECT_EQ(big.shift, 20);
  EXPECT_EQ(big.mantissa, 0);  // 127 * 2^20 / 2^30 = 0.124 rounds to 0
  // Minimum shift above what normalisation wants: mantissa saturates.
  const Format g = format_with(8, Rounding::HalfAwayFromZero, 10, 20);
  const FixedPoint sat = reciprocal(1, 127, g);
  EXPECT_EQ(sat.shift, 10);
  EXPECT_EQ(sat.mantissa, 255);
}

// A pair times an integer: the worked examples of docs/arith.md ("Pairs that follow the token").
TEST(ScalePair, WorkedExamples) {
  const Format f = format_with(16);
  // 52429 x 3 = 157287 < 2^18: two bits too many, 157287 / 4 = 39321.75 -> 39322, shift 19 - 2.
  FixedPointResult r = scale_pair({52429, 19}, 3, f);
  ASSERT_EQ(r.status, FixedPointStatus::Ok);
  EXPECT_EQ(r.value.mantissa, 39322);
  EXPECT_EQ(r.value.shift, 17);
  // A product within 16 bits is kept exactly.
  r = scale_pair({1000, 30}, 65, f);
  EXPECT_EQ(r.value.mantissa, 65000);
  EXPECT_EQ(r.value.shift, 30);
  // Rounding carries into bit 16: 65535 x 65537 = 2^32 - 1, 16 bits dropped round up to 2^16, so
  // the mantissa is 2^15 with one bit more dropped.
  r = scale_pair({65535, 40}, 65537, f);
  EXPECT_EQ(r.value.mantissa, 32768);
  EXPECT_EQ(r.value.shift, 40 - 17);
  // Zero, and a shift that would fall below shift_min.
  r = scale_pair({52429, 19}, 0, f);
  EXPECT_EQ(r.status, FixedPointStatus::Ok);
  EXPECT_EQ(r.value.mantissa, 0);
  r = scale_pair({52429, 2}, 1 << 20, f);
  EXPECT_EQ(r.status, FixedPointStatus::TooLarge);
  // token_pair folds the factors in order and stops at the first failure.
  const std::int64_t factors[] = {3, 5};
  r = token_pair({52429, 19}, factors, 2, f);
  EXPECT_EQ(r.value.mantissa, scale_pair(scale_pair({52429, 19}, 3, f).value, 5, f).value.mantissa);
}

// The product's value within half an LSB of the result's mantissa, against an exact product.
TEST(ScalePair, RandomAgainstWideIntegerReference) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 200000; ++i) {
    const int m_bits = 8 + static_cast<int>(rng() % 24);
    const Rounding mode = rng() % 2 ? Rounding::HalfEven : Rounding::HalfAwayFromZero;
    const Format f = format_with(m_bits, mode, 0, 62);
    const FixedPoint p{static_cast<std::int64_t>(rng() % (std::uint64_t{1} << m_bits)), 62};
    const std::int64_t n = static_cast<std::int64_t>(rng() % (std::uint64_t{1} << (rng() % 33)));
    const FixedPointResult r = scale_pair(p, n, f);
    ASSERT_EQ(r.status, FixedPointStatus::Ok) << test::seed_note(seed);
    ASSERT_LT(r.value.mantissa, std::int64_t{1} << m_bits) << test::seed_note(seed);
    const test::i128 exact = static_cast<test::i128>(p.mantissa) * n;
    const int drop = p.shift - r.value.shift;
    ASSERT_GE(drop, 0) << test::seed_note(seed);
    if (drop == 0) {
      ASSERT_EQ(static_cast<test::i128>(r.value.mantissa), exact) << test::seed_note(seed);
      continue;
    }
    const test::i128 rounded = test::reference_round_pow2(exact, drop, mode);
    // Either the rounded product, or (after a carry into bit M) exactly half of it.
    ASSERT_TRUE(static_cast<test::i128>(r.value.mantissa) == rounded ||
                static_cast<test::i128>(r.value.mantissa) * 2 == test::reference_round_pow2(exact, drop - 1, mode))
        << "m=" << p.mantissa << " n=" << n << " bits=" << m_bits << " " << test::seed_note(seed);
  }
}

TEST(Requantize, RandomAgainstWideIntegerReference) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  for (Rounding mode : {Rounding::HalfAwayFromZero, Rounding::HalfEven}) {
    for (int i = 0; i < 1000000; ++i) {
      const std::int64_t v = static_cast<std::int64_t>(rng() % (std::uint64_t{1} << 32)) - (std::int64_t{1} << 31);
      const int m_bits = 1 + static_cast<int>(rng() % 31);
      const FixedPoint s{static_cast<std::int64_t>(rng() % (std::uint64_t{1} << m_bits)), static_cast<int>(rng() % 63)};
      const int out_bits = 8 + static_cast<int>(rng() % 25);
      const test::i128 exact = test::reference_round_pow2(static_cast<test::i128>(v) * s.mantissa, s.shift, mode);
      ASSERT_EQ(requantize(v, s, mode, out_bits), test::reference_clamp(exact, signed_min(out_bits), signed_max(out_bits)))
          << "v=" << v << " m=" << s.mantissa << " s=" << s.shift << " " << test::seed_note(seed);
    }
  }
}

TEST(Requantize, IdentityScaleIsExact) {
  const Format f = format_with(16);
  const auto one = to_fixed_point(1.0, f).value;
  for (std::int64_t v = -100000; v <= 100000; v += 7) EXPECT_EQ(requantize(v, one, f.rounding, 24), v);
}

}  // namespace
}  // namespace qathw::arith
