// Rounding and overflow rules, against independent references from the C library.
#include <cfenv>
#include <cmath>
#include <cstring>
#include <limits>

#include <gtest/gtest.h>

#include "qathw/arith/core.h"
#include "test_support.h"

namespace qathw::arith {
namespace {

double reference_round(double x, Rounding mode) {
  // std::round rounds halves away from zero; nearbyint in FE_TONEAREST rounds them to even.
  return mode == Rounding::HalfAwayFromZero ? std::round(x) : std::nearbyint(x);
}

TEST(RoundShift, EveryValueAndTieUpToTwelveBits) {
  ASSERT_EQ(std::fegetround(), FE_TONEAREST);
  for (Rounding mode : {Rounding::HalfAwayFromZero, Rounding::HalfEven}) {
    for (int shift = 0; shift <= 10; ++shift) {
      for (std::int64_t v = -(1 << 12); v <= (1 << 12); ++v) {
        const double expect = reference_round(std::ldexp(static_cast<double>(v), -shift), mode);
        ASSERT_EQ(round_shift(v, shift, mode), static_cast<std::int64_t>(expect))
            << "v=" << v << " shift=" << shift << " mode=" << static_cast<int>(mode);
      }
    }
  }
}

TEST(RoundShift, TiesAtLargeShifts) {
  for (int shift = 1; shift <= 52; ++shift) {
    const std::int64_t half = std::int64_t{1} << (shift - 1);
    const std::int64_t one = std::int64_t{1} << shift;
    for (std::int64_t k = -3; k <= 3; ++k) {
      const std::int64_t v = k * one + half;  // exactly (k + 1/2) * 2^shift
      EXPECT_EQ(round_shift(v, shift, Rounding::HalfAwayFromZero), k >= 0 ? k + 1 : k) << v;
      EXPECT_EQ(round_shift(v, shift, Rounding::HalfEven), (k % 2 == 0) ? k : k + 1) << v;
      EXPECT_EQ(round_shift(-v, shift, Rounding::HalfAwayFromZero), k >= 0 ? -(k + 1) : -k) << v;
    }
  }
}

TEST(RoundShift, RandomAgainstLongDouble) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 1000000; ++i) {
    const int shift = static_cast<int>(rng() % 40);
    const std::int64_t v = static_cast<std::int64_t>(rng() >> 3) - (std::int64_t{1} << 60);
    for (Rounding mode : {Rounding::HalfAwayFromZero, Rounding::HalfEven}) {
      const long double x = std::ldexp(static_cast<long double>(v), -shift);  // exact: 64-bit mantissa
      const long double r = mode == Rounding::HalfAwayFromZero ? std::round(x) : std::nearbyint(x);
      ASSERT_EQ(round_shift(v, shift, mode), static_cast<std::int64_t>(r))
          << "v=" << v << " shift=" << shift << " " << test::seed_note(seed);
    }
  }
}

TEST(RoundDiv, EveryNumeratorAndDenominatorUpTo300) {
  for (Rounding mode : {Rounding::HalfAwayFromZero, Rounding::HalfEven})
    for (std::uint64_t den = 1; den <= 300; ++den)
      for (std::uint64_t num = 0; num <= 3000; ++num)
        ASSERT_EQ(round_div(num, den, mode),
                  static_cast<std::uint64_t>(reference_round(static_cast<double>(num) / den, mode)))
            << num << "/" << den;
}

TEST(RoundToInteger, EveryFloatTieBelowTwoToTheTwentyThree) {
  for (std::int32_t k = -(1 << 22); k < (1 << 22); ++k) {
    const float x = static_cast<float>(k) + 0.5f;  // exact for |k| < 2^23
    ASSERT_EQ(round_to_integer(x, Rounding::HalfAwayFromZero), std::round(x)) << x;
    ASSERT_EQ(round_to_integer(x, Rounding::HalfEven), std::nearbyint(x)) << x;
  }
}

TEST(RoundToInteger, RandomFloatsAndDoubles) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937 rng(static_cast<std::uint32_t>(seed));
  for (int i = 0; i < 2000000; ++i) {
    std::uint32_t bits = rng();
    float x;
    std::memcpy(&x, &bits, sizeof x);
    if (!std::isfinite(x)) continue;
    ASSERT_EQ(round_to_integer(x, Rounding::HalfAwayFromZero), std::round(x)) << x << " " << test::seed_note(seed);
    ASSERT_EQ(round_to_integer(x, Rounding::HalfEven), std::nearbyint(x)) << x << " " << test::seed_note(seed);
    const double d = static_cast<double>(x) * 0.75;
    ASSERT_EQ(round_to_integer(d, Rounding::HalfEven), std::nearbyint(d)) << d << " " << test::seed_note(seed);
  }
  EXPECT_EQ(round_to_integer(0.49999997f, Rounding::HalfAwayFromZero), 0.0f);  // floor(x + 0.5) gets this wrong
  EXPECT_EQ(round_to_integer(-2.5f, Rounding::HalfEven), -2.0f);
  EXPECT_EQ(round_to_integer(-2.5f, Rounding::HalfAwayFromZero), -3.0f);
}

TEST(Overflow, BothModesAtEveryWidthBoundary) {
  for (int bits = kMinAccBits; bits <= kMaxAccBits; ++bits) {
    const std::int64_t hi = (std::int64_t{1} << (bits - 1)) - 1;
    const std::int64_t lo = -(std::int64_t{1} << (bits - 1));
    const std::int64_t modulus = std::int64_t{1} << bits;
    for (std::int64_t v : {lo - 2, lo - 1, lo, lo + 1, std::int64_t{-1}, std::int64_t{0}, std::int64_t{1}, hi - 1, hi,
                           hi + 1, hi + 2, 3 * hi, 3 * lo}) {
      EXPECT_EQ(saturate(v, bits), v < lo ? lo : (v > hi ? hi : v)) << "bits=" << bits << " v=" << v;
      // Reference wrap: the representative of v mod 2^bits in [lo, hi].
      std::int64_t w = ((v - lo) % modulus + modulus) % modulus + lo;
      EXPECT_EQ(wrap(v, bits), w) << "bits=" << bits << " v=" << v;
      EXPECT_EQ(apply_overflow(v, bits, Overflow::Saturate), saturate(v, bits));
      EXPECT_EQ(apply_overflow(v, bits, Overflow::Wrap), wrap(v, bits));
    }
    EXPECT_EQ(wrap(hi + 1, bits), lo);
    EXPECT_EQ(wrap(lo - 1, bits), hi);
  }
}

TEST(BitLength, PowersOfTwo) {
  EXPECT_EQ(bit_length(0), 0);
  for (int b = 0; b < 64; ++b) {
    EXPECT_EQ(bit_length(std::uint64_t{1} << b), b + 1);
    if (b > 0) {
      EXPECT_EQ(bit_length((std::uint64_t{1} << b) - 1), b);
    }
  }
}

}  // namespace
}  // namespace qathw::arith
