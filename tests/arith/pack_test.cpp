// Packed weight storage.
#include <vector>

#include <gtest/gtest.h>

#include "qathw/arith/pack.h"
#include "test_support.h"

namespace qathw::arith {
namespace {

TEST(Pack, BitLayoutIsFixed) {
  std::uint8_t t[1] = {0};
  const int ternary[4] = {1, -1, 0, 1};
  for (int i = 0; i < 4; ++i) store_code(t, i, ternary[i], WeightFormat::Ternary);
  EXPECT_EQ(t[0], 0b01001101);  // codes from the low bits: 01, 11, 00, 01
  std::uint8_t q[2] = {0, 0};
  const int int4[3] = {-8, 7, -1};
  for (int i = 0; i < 3; ++i) store_code(q, i, int4[i], WeightFormat::Int4);
  EXPECT_EQ(q[0], 0x78);
  EXPECT_EQ(q[1], 0x0F);
  EXPECT_EQ(packed_bytes(5, WeightFormat::Ternary), 2u);
  EXPECT_EQ(packed_bytes(5, WeightFormat::Int4), 3u);
  EXPECT_EQ(decode_code(0b10, WeightFormat::Ternary), -2);  // not a ternary code
}

TEST(Pack, EveryCodeRoundTrips) {
  for (int c = -1; c <= 1; ++c) EXPECT_EQ(decode_code(encode_code(c, WeightFormat::Ternary), WeightFormat::Ternary), c);
  for (int c = -8; c <= 7; ++c) EXPECT_EQ(decode_code(encode_code(c, WeightFormat::Int4), WeightFormat::Int4), c);
}

TEST(Pack, RandomRoundTripsAndOverwrites) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  for (WeightFormat wf : {WeightFormat::Ternary, WeightFormat::Int4}) {
    for (int trial = 0; trial < 500; ++trial) {
      const std::size_t n = 1 + rng() % 1000;
      std::vector<int> codes(n);
      const int lo = wf == WeightFormat::Ternary ? -1 : -8;
      const int span = wf == WeightFormat::Ternary ? 3 : 16;
      for (auto& c : codes) c = lo + static_cast<int>(rng() % span);
      std::vector<std::uint8_t> packed(packed_bytes(n, wf), 0xA5);  // junk: store_code must overwrite
      for (std::size_t i = 0; i < n; ++i) store_code(packed.data(), i, codes[i], wf);
      for (std::size_t i = 0; i < n; ++i)
        ASSERT_EQ(load_code(packed.data(), i, wf), codes[i]) << "i=" << i << " " << test::seed_note(seed);
    }
  }
}

}  // namespace
}  // namespace qathw::arith
