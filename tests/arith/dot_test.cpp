// The processing element and the accumulator.
#include <vector>

#include <gtest/gtest.h>

#include "qathw/arith/dot.h"
#include "test_support.h"

namespace qathw::arith {
namespace {

TEST(PeProduct, EveryInt8ActivationAgainstEveryTernaryAndInt4Weight) {
  for (int x = -128; x <= 127; ++x) {
    for (int w = -1; w <= 1; ++w) ASSERT_EQ(pe_product(x, w, WeightFormat::Ternary), x * w) << x << "*" << w;
    for (int w = -8; w <= 7; ++w) ASSERT_EQ(pe_product(x, w, WeightFormat::Int4), x * w) << x << "*" << w;
  }
}

TEST(PeProduct, EveryInt16ActivationAgainstEveryInt4Weight) {
  for (int x = -32768; x <= 32767; ++x)
    for (int w = -8; w <= 7; ++w) ASSERT_EQ(pe_product(x, w, WeightFormat::Int4), x * w) << x << "*" << w;
}

Format make_format(WeightFormat w, int acc_bits, Overflow o) {
  Format f;
  f.weights = w;
  f.acc_bits = acc_bits;
  f.overflow = o;
  return f;
}

TEST(Dot, RandomShapesAgainstPlainSum) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 3000; ++trial) {
    const WeightFormat wf = trial % 2 ? WeightFormat::Ternary : WeightFormat::Int4;
    const int k = 1 + static_cast<int>(rng() % 300);
    const int lanes = 1 + static_cast<int>(rng() % 40);
    std::vector<std::int8_t> x(k), w(k);
    std::int64_t exact = 0;
    for (int i = 0; i < k; ++i) {
      x[i] = static_cast<std::int8_t>(static_cast<int>(rng() % 256) - 128);
      w[i] = static_cast<std::int8_t>(wf == WeightFormat::Ternary ? static_cast<int>(rng() % 3) - 1
                                                                  : static_cast<int>(rng() % 16) - 8);
      exact += x[i] * w[i];
    }
    // Wide accumulator: nothing overflows, the result is the exact sum.
    EXPECT_EQ(dot(x.data(), w.data(), k, lanes, make_format(wf, 32, Overflow::Saturate)), exact) << test::seed_note(seed);
    // Wrapping is modular, so any chunking gives the exact sum wrapped once.
    for (int bits : {8, 10, 12}) {
      EXPECT_EQ(dot(x.data(), w.data(), k, lanes, make_format(wf, bits, Overflow::Wrap)), wrap(exact, bits))
          << "bits=" << bits << " " << test::seed_note(seed);
    }
  }
}

// Saturation is applied after each adder-tree partial sum, so the chunking matters.
TEST(Dot, SaturationIsPerPartialSum) {
  const Format f = make_format(WeightFormat::Ternary, 8, Overflow::Saturate);  // range [-128, 127]
  const std::int8_t x[4] = {100, 100, -100, -100};
  const std::int8_t w[4] = {1, 1, 1, 1};
  // lanes 1: 100, 127 (sat), 27, -73.  lanes 2: 127 (200 sat), 127 + (-200) = -73.  lanes 4: 0.
  EXPECT_EQ(dot(x, w, 4, 1, f), -73);
  EXPECT_EQ(dot(x, w, 4, 2, f), -73);
  EXPECT_EQ(dot(x, w, 4, 4, f), 0);
  const std::int8_t y[3] = {120, 120, -120};
  EXPECT_EQ(dot(y, w, 3, 1, f), 7);   // 120, 127, 7
  EXPECT_EQ(dot(y, w, 3, 3, f), 120);  // exact 120 fits
  EXPECT_TRUE(saturation_impossible(127, f));
  EXPECT_FALSE(saturation_impossible(128, f));
}

TEST(Dot, MaximumMagnitudesAtAccumulatorBoundary) {
  // 24-bit saturating accumulator, K chosen so the exact sum passes 2^23 - 1.
  const Format f = make_format(WeightFormat::Int4, 24, Overflow::Saturate);
  const int k = 10000;  // 10000 * 127 * 7 = 8,890,000 > 8,388,607
  std::vector<std::int8_t> x(k, 127), w(k, -8);
  EXPECT_EQ(dot(x.data(), w.data(), k, 16, f), signed_min(24));
  std::vector<std::int8_t> wp(k, 7);
  EXPECT_EQ(dot(x.data(), wp.data(), k, 16, f), signed_max(24));
  const Format g = make_format(WeightFormat::Int4, 24, Overflow::Wrap);
  EXPECT_EQ(dot(x.data(), w.data(), k, 16, g), wrap(-10160000, 24));
}

}  // namespace
}  // namespace qathw::arith
