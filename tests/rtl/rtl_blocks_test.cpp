// RTL blocks (Verilated with the parameters of QATHW_RTL_TARGET) against the arith core, on
// seeded random inputs with the corners forced in: every result must be identical.
#include <cstdint>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "../arith/test_support.h"
#include "block_test_support.h"
#include "Vact_code.h"
#include "Vpe_array.h"
#include "Vpe_row.h"
#include "Vpe_row_narrow.h"
#include "Vreciprocal.h"
#include "Vrequant.h"
#include "qathw/arith.h"
#include "qathw/rtl/port_bits.h"
#include "qathw/target/target_spec.h"

namespace qathw::rtl {
namespace {

// Weight codes reach the RTL as the bundle stores them: arith::encode_code's fields of
// arith::code_bits bits (2-bit ternary, 4-bit INT4).
std::uint64_t weight_field(int code, arith::WeightFormat w) { return arith::encode_code(code, w); }

// Streams one dot product through a PE row, a chunk of `lanes` per cycle; returns the accumulator.
template <typename Model>
std::int64_t row_dot(Model& m, const std::vector<int>& x, const std::vector<int>& w, int lanes, int act_bits,
                     int acc_bits, arith::WeightFormat wf) {
  const int k = static_cast<int>(x.size());
  const int wbits = arith::code_bits(wf);
  for (int base = 0; base < k; base += lanes) {
    for (int l = 0; l < lanes; ++l) {
      const bool on = base + l < k;
      put_bits(m.x_i, l * act_bits, act_bits, on ? static_cast<std::uint64_t>(x[base + l]) : 0);
      put_bits(m.w_i, l * wbits, wbits, on ? weight_field(w[base + l], wf) : 0);
      put_bits(m.lane_en_i, l, 1, on ? 1 : 0);
    }
    m.clear_i = base == 0;
    m.valid_i = 1;
    tick(m);
  }
  m.valid_i = 0;
  m.clear_i = 0;
  m.eval();
  return sign_extend(m.acc_o, acc_bits);
}

template <typename Model>
void check_pe_row(int acc_bits, std::uint64_t seed) {
  arith::Format f = spec().format;
  f.acc_bits = acc_bits;
  const int lanes = spec().array.lanes;
  const int qmax = static_cast<int>(arith::act_qmax(f.act_bits));
  const bool int4 = f.weights == arith::WeightFormat::Int4;
  Model m;
  reset(m);
  std::mt19937_64 rng(seed);
  int differs_from_exact = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    const int k = 1 + static_cast<int>(rng() % (5 * lanes + 3));
    const int mode = trial % 4;  // 0, 1: random; 2: all +qmax and +max weight; 3: alternating extremes
    std::vector<int> x(k), w(k);
    for (int i = 0; i < k; ++i) {
      x[i] = mode >= 2 ? ((mode == 3 && i % 2) ? -qmax : qmax) : static_cast<int>(rng() % (2 * qmax + 1)) - qmax;
      const int wmax = int4 ? 7 : 1;
      w[i] = mode == 2 ? wmax : (int4 ? static_cast<int>(rng() % 16) - 8 : static_cast<int>(rng() % 3) - 1);
    }
    const std::int64_t want = arith::dot(x.data(), w.data(), k, lanes, f);
    const std::int64_t got = row_dot(m, x, w, lanes, f.act_bits, acc_bits, f.weights);
    ASSERT_EQ(got, want) << "k=" << k << " trial " << trial << " " << test::seed_note(seed);
    std::int64_t exact = 0;
    for (int i = 0; i < k; ++i) exact += static_cast<std::int64_t>(x[i]) * w[i];
    differs_from_exact += exact != want;
  }
  if (acc_bits < 16) {
    EXPECT_GT(differs_from_exact, 0) << "the overflow corner was never reached";
  }
}

TEST(RtlPeRow, EqualsArithDotWithTheTargetsAccumulator) {
  check_pe_row<Vpe_row>(spec().format.acc_bits, test::test_seed(21));
}

TEST(RtlPeRow, EqualsArithDotWithANarrowAccumulatorAtItsLimits) {
  check_pe_row<Vpe_row_narrow>(QATHW_RTL_NARROW_ACC_BITS, test::test_seed(22));
}

// One tile: up to Rows output channels of one input, Lanes products per row per cycle.
TEST(RtlPeArray, EveryRowOfATileEqualsArithDot) {
  const arith::Format& f = spec().format;
  const int rows = spec().array.rows, lanes = spec().array.lanes;
  const int qmax = static_cast<int>(arith::act_qmax(f.act_bits));
  const bool int4 = f.weights == arith::WeightFormat::Int4;
  const int wbits = arith::code_bits(f.weights);
  const std::uint64_t seed = test::test_seed(26);
  std::mt19937_64 rng(seed);
  Vpe_array m;
  reset(m);
  for (int trial = 0; trial < 300; ++trial) {
    const int k = 1 + static_cast<int>(rng() % (4 * lanes + 5));
    const int active = 1 + static_cast<int>(rng() % rows);
    std::vector<int> x(k);
    std::vector<std::vector<int>> w(active, std::vector<int>(k));
    for (auto& v : x) v = static_cast<int>(rng() % (2 * qmax + 1)) - qmax;
    for (auto& row : w)
      for (auto& v : row) v = int4 ? static_cast<int>(rng() % 15) - 7 : static_cast<int>(rng() % 3) - 1;
    for (int base = 0; base < k; base += lanes) {
      for (int l = 0; l < lanes; ++l) {
        const bool on = base + l < k;
        put_bits(m.x_i, l * f.act_bits, f.act_bits, on ? static_cast<std::uint64_t>(x[base + l]) : 0);
        put_bits(m.lane_en_i, l, 1, on);
        for (int r = 0; r < rows; ++r)
          put_bits(m.w_i, (r * lanes + l) * wbits, wbits, (on && r < active) ? weight_field(w[r][base + l], f.weights) : 0);
      }
      for (int r = 0; r < rows; ++r) put_bits(m.row_en_i, r, 1, r < active);
      m.clear_i = base == 0;
      m.valid_i = 1;
      tick(m);
    }
    m.valid_i = 0;
    m.clear_i = 0;
    m.eval();
    for (int r = 0; r < active; ++r)
      ASSERT_EQ(sign_extend(get_bits(m.acc_o, r * f.acc_bits, f.acc_bits), f.acc_bits),
                arith::dot(x.data(), w[r].data(), k, lanes, f))
          << "row " << r << " k=" << k << " trial " << trial << " " << test::seed_note(seed);
  }
}

TEST(RtlRequant, EqualsArithRequantizeAndRelu) {
  const arith::Format& f = spec().format;
  const std::uint64_t seed = test::test_seed(23);
  std::mt19937_64 rng(seed);
  Vrequant m;
  const std::int64_t lo = arith::signed_min(f.acc_bits), hi = arith::signed_max(f.acc_bits);
  for (int i = 0; i < 200000; ++i) {
    std::int64_t acc = lo + static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(hi - lo + 1));
    if (i % 7 == 0) acc = (i % 14 == 0) ? lo : hi;
    const arith::FixedPoint p{static_cast<std::int64_t>(rng() % (std::uint64_t{1} << f.scale_mantissa_bits)),
                              static_cast<int>(rng() % 63)};
    const bool relu = rng() % 2;
    m.acc_i = static_cast<std::uint32_t>(acc) & ((std::uint64_t{1} << f.acc_bits) - 1);
    m.mantissa_i = static_cast<std::uint32_t>(p.mantissa);
    m.shift_i = static_cast<std::uint8_t>(p.shift);
    m.relu_i = relu;
    m.eval();
    std::int64_t want = arith::requantize(acc, p, f.rounding, f.acc_bits);
    if (relu) want = arith::relu(want);
    ASSERT_EQ(sign_extend(m.z_o, f.acc_bits), want)
        << "acc=" << acc << " m=" << p.mantissa << " s=" << p.shift << " " << test::seed_note(seed);
  }
}

TEST(RtlActCode, EqualsArithQuantizeAct) {
  const arith::Format& f = spec().format;
  const std::uint64_t seed = test::test_seed(24);
  std::mt19937_64 rng(seed);
  Vact_code m;
  const std::int64_t top = arith::signed_max(f.acc_bits);
  for (int i = 0; i < 200000; ++i) {
    // A token's absmax and one of its values, with the reciprocal the quantizer would use; every
    // fourth case an arbitrary pair, to cover the rounding and the clamp off the usual path.
    const int bits = 1 + static_cast<int>(rng() % (f.acc_bits - 1));
    const std::int64_t amax = static_cast<std::int64_t>(rng() % (std::uint64_t{1} << bits)) + 1;
    std::int64_t v = static_cast<std::int64_t>(rng() % (2 * static_cast<std::uint64_t>(amax) + 1)) - amax;
    if (i % 5 == 0) v = (i % 10 == 0) ? amax : -amax;
    arith::FixedPoint r = arith::token_inv_scale(std::min(amax, top), f);
    if (i % 4 == 3) r = {static_cast<std::int64_t>(rng() % (std::uint64_t{1} << f.scale_mantissa_bits)),
                         static_cast<int>(rng() % 63)};
    v = std::max(std::min(v, top), -top);
    m.v_i = static_cast<std::uint32_t>(v) & ((std::uint64_t{1} << f.acc_bits) - 1);
    m.mantissa_i = static_cast<std::uint32_t>(r.mantissa);
    m.shift_i = static_cast<std::uint8_t>(r.shift);
    m.eval();
    ASSERT_EQ(sign_extend(m.code_o, f.act_bits), arith::quantize_act(v, r, f.act_bits, f.rounding))
        << "v=" << v << " m=" << r.mantissa << " s=" << r.shift << " " << test::seed_note(seed);
  }
}

TEST(RtlReciprocal, EqualsArithReciprocalInMantissaBitsCycles) {
  const arith::Format& f = spec().format;
  const std::uint64_t seed = test::test_seed(25);
  std::mt19937_64 rng(seed);
  Vreciprocal m;
  reset(m);
  const std::int64_t top = std::int64_t{1} << (f.acc_bits - 1);
  for (int i = 0; i < 20000; ++i) {
    std::int64_t amax = static_cast<std::int64_t>(rng() % (std::uint64_t{1} << (1 + rng() % (f.acc_bits - 1))));
    if (i < 64) amax = i < 32 ? i : top - (i - 32);  // small values, and the largest magnitudes
    m.amax_i = static_cast<std::uint32_t>(amax);
    m.qbits_i = static_cast<std::uint8_t>(f.act_bits - 1);
    m.start_i = 1;
    tick(m);
    m.start_i = 0;
    int cycles = 1;
    while (!m.done_o && cycles < 200) {
      tick(m);
      ++cycles;
    }
    ASSERT_TRUE(m.done_o) << "no result for amax=" << amax;
    EXPECT_EQ(cycles, f.scale_mantissa_bits + 1) << "start cycle + one cycle per mantissa bit";
    const arith::FixedPoint want = arith::token_inv_scale(amax, f);
    ASSERT_EQ(static_cast<std::int64_t>(m.mantissa_o), want.mantissa) << "amax=" << amax << " " << test::seed_note(seed);
    ASSERT_EQ(static_cast<int>(m.shift_o), want.shift) << "amax=" << amax << " " << test::seed_note(seed);
  }
}

}  // namespace
}  // namespace qathw::rtl
