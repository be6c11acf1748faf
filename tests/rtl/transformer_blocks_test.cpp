// The transformer's RTL units (rtl/transformer/, Verilated with the parameters of QATHW_RTL_TARGET
// and arith::VectorUnit{}) against the arith core's transformer rules, on seeded random inputs
// with the corners forced in: every result, and every unit's cycle count, must be identical.
#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "../arith/test_support.h"
#include "block_test_support.h"
#include "Vexp2_neg.h"
#include "Vrms_inverse.h"
#include "Vrms_value.h"
#include "Vrms_value_narrow.h"
#include "Vsoftmax_row.h"
#include "Vsquared_relu.h"
#include "Vtoken_pair.h"
#include "qathw/arith.h"
#include "qathw/arith/transformer.h"
#include "qathw/rtl/port_bits.h"
#include "qathw/target/target_spec.h"

#ifdef QATHW_RTL_TARGET_FREE_UNITS
#include "Visqrt64.h"
#include "Visqrt9.h"
#include "Vvector_dot.h"
#include "Vvector_dot_narrow.h"
#include "Vvector_dot_wrap.h"
#endif

namespace qathw::rtl {
namespace {

// A random value of a random bit length in [0, bits] (so small and large magnitudes both occur).
std::uint64_t random_magnitude(std::mt19937_64& rng, int bits) {
  const int b = static_cast<int>(rng() % static_cast<std::uint64_t>(bits + 1));
  return b == 0 ? 0 : (rng() & mask(b)) | (std::uint64_t{1} << (b - 1));
}

// A random signed value in [-2^(bits-1), 2^(bits-1) - 1] of random magnitude.
std::int64_t random_signed(std::mt19937_64& rng, int bits) {
  const std::int64_t v = static_cast<std::int64_t>(random_magnitude(rng, bits - 1));
  if (rng() % 64 == 0) return arith::signed_min(bits);
  return rng() % 2 ? -v : v;
}

// ---- the square root and the vector unit (the same for every target) ----------------------------

#ifdef QATHW_RTL_TARGET_FREE_UNITS
// Runs one square root; returns the root of the last step's cycle, after checking the cycles and
// that the root is held after it.
template <typename Model>
std::uint64_t run_isqrt(Model& m, std::uint64_t n, int in_bits, std::uint64_t seed) {
  m.n_i = n;
  m.start_i = 1;
  m.eval();
  int cycles = 1;
  while (!m.done_o && cycles < 100) {
    tick(m);
    m.start_i = 0;
    m.eval();
    ++cycles;
  }
  EXPECT_EQ(cycles, arith::isqrt_steps(in_bits)) << "n=" << n << " " << test::seed_note(seed);
  const std::uint64_t root = m.root_o;
  m.start_i = 0;
  tick(m);
  EXPECT_FALSE(m.busy_o);
  EXPECT_EQ(static_cast<std::uint64_t>(m.root_o), root) << "the root is held";
  return root;
}

TEST(RtlIsqrt, EqualsArithIsqrtIn32StepsFor64BitInputs) {
  const std::uint64_t seed = test::test_seed(41);
  std::mt19937_64 rng(seed);
  Visqrt64 m;
  reset(m);
  std::vector<std::uint64_t> inputs = {0, 1, 2, 3, 4, 5, ~std::uint64_t{0}, std::uint64_t{1} << 62,
                                       (std::uint64_t{1} << 62) - 1, std::uint64_t{1} << 63};
  for (int i = 0; i < 3000; ++i) {
    const std::uint64_t r = rng() & mask(32);
    if (i % 3 == 0) inputs.push_back(r * r);
    else if (i % 3 == 1) inputs.push_back(r * r - 1);
    else inputs.push_back(random_magnitude(rng, 64));
  }
  for (const std::uint64_t n : inputs)
    ASSERT_EQ(run_isqrt(m, n, 64, seed), arith::isqrt(n, 64)) << "n=" << n << " " << test::seed_note(seed);
}

TEST(RtlIsqrt, EqualsArithIsqrtOnEveryNineBitInput) {
  Visqrt9 m;
  reset(m);
  for (std::uint64_t n = 0; n < 512; ++n) ASSERT_EQ(run_isqrt(m, n, 9, 0), arith::isqrt(n, 9)) << "n=" << n;
}

// One dot product through the vector unit, VecLanes per cycle.
template <typename Model>
std::int64_t vector_dot_rtl(Model& m, const std::vector<int>& a, const std::vector<int>& b, const arith::VectorUnit& u) {
  const int k = static_cast<int>(a.size());
  const int op = u.operand_bits + 1;
  for (int base = 0; base < k; base += u.lanes) {
    for (int l = 0; l < u.lanes; ++l) {
      const bool on = base + l < k;
      // Lanes that are off carry garbage: the unit must ignore them.
      put_bits(m.a_i, l * op, op, on ? static_cast<std::uint64_t>(a[base + l]) : 0x1AB);
      put_bits(m.b_i, l * op, op, on ? static_cast<std::uint64_t>(b[base + l]) : 0x0FF);
      put_bits(m.lane_en_i, l, 1, on);
    }
    m.clear_i = base == 0;
    m.valid_i = 1;
    tick(m);
  }
  m.valid_i = 0;
  m.clear_i = 0;
  m.eval();
  return sign_extend(m.acc_o, u.acc_bits);
}

template <typename Model>
void check_vector_dot(const arith::VectorUnit& u, std::uint64_t seed) {
  Model m;
  reset(m);
  std::mt19937_64 rng(seed);
  const int smax = static_cast<int>(arith::signed_max(u.operand_bits));
  const int pmax = (1 << u.operand_bits) - 1;
  int differs_from_exact = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    const int k = 1 + static_cast<int>(rng() % static_cast<std::uint64_t>(5 * u.lanes + 3));
    const int mode = trial % 5;  // 0, 1: Q K^T; 2: P V; 3: all largest; 4: alternating extremes
    std::vector<int> a(k), b(k);
    for (int i = 0; i < k; ++i) {
      a[i] = static_cast<int>(rng() % static_cast<std::uint64_t>(2 * smax + 1)) - smax;
      b[i] = mode == 2 ? static_cast<int>(rng() % static_cast<std::uint64_t>(pmax + 1))
                       : static_cast<int>(rng() % static_cast<std::uint64_t>(2 * smax + 1)) - smax;
      if (mode == 3) a[i] = smax, b[i] = pmax;
      if (mode == 4) a[i] = i % 2 ? -smax : smax, b[i] = i % 2 ? -smax : pmax;
    }
    const std::int64_t want = arith::vector_dot(a.data(), b.data(), k, u);
    ASSERT_EQ(vector_dot_rtl(m, a, b, u), want) << "k=" << k << " trial " << trial << " " << test::seed_note(seed);
    std::int64_t exact = 0;
    for (int i = 0; i < k; ++i) exact += static_cast<std::int64_t>(a[i]) * b[i];
    differs_from_exact += exact != want;
  }
  if (u.acc_bits < 20) {
    EXPECT_GT(differs_from_exact, 0) << "the overflow corner was never reached";
  }
}

TEST(RtlVectorDot, EqualsArithVectorDotWithTheVectorUnit) {
  check_vector_dot<Vvector_dot>(arith::VectorUnit{}, test::test_seed(42));
}

TEST(RtlVectorDot, EqualsArithVectorDotWithANarrowSaturatingAccumulator) {
  arith::VectorUnit u{};
  u.acc_bits = 14;
  check_vector_dot<Vvector_dot_narrow>(u, test::test_seed(43));
}

TEST(RtlVectorDot, EqualsArithVectorDotWithANarrowWrappingAccumulator) {
  arith::VectorUnit u{};
  u.acc_bits = 14;
  u.overflow = arith::Overflow::Wrap;
  check_vector_dot<Vvector_dot_wrap>(u, test::test_seed(44));
}
#endif  // QATHW_RTL_TARGET_FREE_UNITS

// ---- RMSNorm ------------------------------------------------------------------------------------

constexpr int kVecLanes = arith::VectorUnit{}.lanes;

struct RmsCase {
  std::vector<std::int64_t> x;
  int in_bits = 0;
  std::uint64_t eps = 0;
};

// A token: n features of random magnitude up to the accumulator's width, the saturation width
// of the engines (at most rmsnorm_max_input_bits) or a narrower one, and eps where it fits.
RmsCase random_token(std::mt19937_64& rng, int n, int trial) {
  const arith::Format& f = spec().format;
  RmsCase c;
  const int widest = std::min(f.acc_bits, arith::rmsnorm_max_input_bits(n));
  c.in_bits = trial % 4 == 3 ? 1 + static_cast<int>(rng() % static_cast<std::uint64_t>(widest)) : widest;
  const int mag_bits = 1 + static_cast<int>(rng() % static_cast<std::uint64_t>(f.acc_bits));
  c.x.resize(static_cast<std::size_t>(n));
  for (auto& v : c.x) v = random_signed(rng, mag_bits);
  if (trial % 17 == 5) std::fill(c.x.begin(), c.x.end(), 0);  // the zero token
  if (trial % 17 == 6) std::fill(c.x.begin(), c.x.end(), arith::signed_min(f.acc_bits));
  if (trial % 5 == 1) {
    c.eps = random_magnitude(rng, 62);
    while (c.eps > 0 && !arith::rmsnorm_sum_fits(n, c.in_bits, c.eps)) c.eps >>= 1;
  }
  return c;
}

// Streams the token's sum of squares in, starts 1/rms, and returns the cycles from the start's
// to done_o's.
int run_rms_inverse(Vrms_inverse& m, const RmsCase& c) {
  const arith::Format& f = spec().format;
  const int n = static_cast<int>(c.x.size());
  m.in_bits_i = static_cast<std::uint8_t>(c.in_bits);
  for (int base = 0; base < n; base += kVecLanes) {
    for (int l = 0; l < kVecLanes; ++l) {
      const bool on = base + l < n;
      put_bits(m.x_i, l * f.acc_bits, f.acc_bits,
               on ? static_cast<std::uint64_t>(c.x[static_cast<std::size_t>(base + l)]) : mask(f.acc_bits));
      put_bits(m.lane_en_i, l, 1, on);
    }
    m.clear_i = base == 0;
    m.valid_i = 1;
    tick(m);
  }
  m.valid_i = 0;
  m.clear_i = 0;
  m.n_i = static_cast<std::uint32_t>(n);
  m.eps_i = c.eps;
  m.start_i = 1;
  m.eval();
  int cycles = 0;
  while (!m.done_o && cycles < 1000) {
    tick(m);
    m.start_i = 0;
    m.eval();
    ++cycles;
  }
  return cycles;
}

TEST(RtlRmsNorm, InverseRmsEqualsArithRmsInverseInTheSystemCModelsCycles) {
  const arith::Format& f = spec().format;
  const std::uint64_t seed = test::test_seed(45);
  std::mt19937_64 rng(seed);
  Vrms_inverse m;
  reset(m);
  int adjusted = 0;
  for (int trial = 0; trial < 600; ++trial) {
    int n = 1 + static_cast<int>(rng() % 70);
    if (trial < 12) n = 1 + trial % 4;  // n <= 3 reaches the mean square's adjustment
    if (trial == 12) n = 1000;
    if (trial == 13) n = arith::kRmsNormMaxFeatures;  // the divider's widest divisor
    const RmsCase c = random_token(rng, n, trial);
    const int cycles = run_rms_inverse(m, c);
    ASSERT_TRUE(m.done_o) << "no result, n=" << n << " " << test::seed_note(seed);
    EXPECT_EQ(cycles, 64 + arith::isqrt_steps(64) + f.scale_mantissa_bits)
        << "the divider, the square root, the reciprocal";
    const arith::RmsInverse want = arith::rms_inverse(arith::sum_squares(c.x.data(), n, c.in_bits), n, c.eps, f);
    const std::string where = "n=" + std::to_string(n) + " in_bits=" + std::to_string(c.in_bits) +
                              " eps=" + std::to_string(c.eps) + " trial " + std::to_string(trial) + " " +
                              test::seed_note(seed);
    ASSERT_EQ(static_cast<std::uint64_t>(m.sum_o), want.sum) << where;
    ASSERT_EQ(sign_extend(m.k_o, 7), want.k) << where;
    ASSERT_EQ(static_cast<std::uint64_t>(m.mean_sq_o), want.mean_sq) << where;
    ASSERT_EQ(static_cast<std::uint64_t>(m.root_o), want.root) << where;
    ASSERT_EQ(static_cast<std::int64_t>(m.inv_mant_o), want.inv_rms.mantissa) << where;
    ASSERT_EQ(static_cast<int>(static_cast<std::int8_t>(m.inv_shift_o)), want.inv_rms.shift) << where;
    if (want.sum != 0) {
      const int unadjusted_k = (64 - arith::bit_length(want.sum)) / 2;
      adjusted += want.k != unadjusted_k;
    }
  }
  EXPECT_GT(adjusted, 0) << "the mean square's adjustment (>= 2^62) was never reached";
}

// The output saturates only past 2^(out_bits - 1) / 2^8 features' worth of x / rms at the
// accumulator's width; a 10-bit output reaches it on small tokens.
template <typename Model>
void check_rms_value(int out_bits, std::uint64_t seed) {
  const arith::Format& f = spec().format;
  std::mt19937_64 rng(seed);
  Model m;
  int saturated = 0, left_shifts = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 70);
    RmsCase c = random_token(rng, n, trial);
    const arith::RmsInverse inv =
        arith::rms_inverse(arith::sum_squares(c.x.data(), n, c.in_bits), n, c.eps, f);
    left_shifts += inv.inv_rms.shift < arith::kRmsNormFracBits;
    for (int i = 0; i < n; ++i) {
      for (int g = 0; g < 4; ++g) {
        arith::FixedPoint gain{static_cast<std::int64_t>(rng() & mask(f.scale_mantissa_bits)),
                               static_cast<int>(rng() % 63)};
        if (g == 0) gain = {static_cast<std::int64_t>(mask(f.scale_mantissa_bits)), 0};  // saturates
        m.x_i = static_cast<std::uint32_t>(static_cast<std::uint64_t>(c.x[static_cast<std::size_t>(i)]) &
                                           mask(f.acc_bits));
        m.in_bits_i = static_cast<std::uint8_t>(c.in_bits);
        m.inv_mant_i = static_cast<std::uint32_t>(inv.inv_rms.mantissa);
        m.inv_shift_i = static_cast<std::uint8_t>(static_cast<std::int8_t>(inv.inv_rms.shift));
        m.gain_mant_i = static_cast<std::uint32_t>(gain.mantissa);
        m.gain_shift_i = static_cast<std::uint8_t>(gain.shift);
        m.eval();
        const std::int64_t want = arith::rmsnorm_value(c.x[static_cast<std::size_t>(i)], c.in_bits, inv.inv_rms, gain,
                                                       out_bits, f.rounding);
        ASSERT_EQ(sign_extend(m.y_o, out_bits), want)
            << "x=" << c.x[static_cast<std::size_t>(i)] << " in_bits=" << c.in_bits << " inv=(" << inv.inv_rms.mantissa
            << ", " << inv.inv_rms.shift << ") gain=(" << gain.mantissa << ", " << gain.shift << ") trial " << trial
            << " " << test::seed_note(seed);
        saturated += want == arith::signed_max(out_bits) || want == arith::signed_min(out_bits);
      }
    }
  }
  if (out_bits < f.acc_bits) {
    EXPECT_GT(saturated, 0) << "the output's saturation was never reached";
  }
  EXPECT_GT(left_shifts, 0) << "1/rms never needed a left shift";
}

TEST(RtlRmsNorm, FeatureValueEqualsArithRmsnormValue) {
  check_rms_value<Vrms_value>(spec().format.acc_bits, test::test_seed(46));
}

TEST(RtlRmsNorm, FeatureValueEqualsArithRmsnormValueSaturatingANarrowOutput) {
  check_rms_value<Vrms_value_narrow>(10, test::test_seed(51));
}

// ---- the softmax unit ---------------------------------------------------------------------------

TEST(RtlSoftmax, Exp2NegEqualsArithExp2Neg) {
  const arith::Format& f = spec().format;
  const std::uint64_t seed = test::test_seed(47);
  std::mt19937_64 rng(seed);
  Vexp2_neg m;
  for (int trial = 0; trial < 200; ++trial) {
    const int L = trial % (arith::kMaxExp2IndexBits + 1);
    const int P = 1 + static_cast<int>(rng() % arith::kMaxExp2ValueBits);
    const arith::Exp2Table t = arith::exp2_table(L, P, f.rounding);
    for (int i = 0; i < 500; ++i) {
      std::int64_t e = static_cast<std::int64_t>(random_magnitude(rng, 33));
      const std::int64_t frac = static_cast<std::int64_t>(rng() & mask(L));
      if (i == 0) e = 0;
      if (i == 1) e = static_cast<std::int64_t>(mask(33));
      if (i >= 2 && i < 6) e = ((std::int64_t{60} + i) << L) + frac;  // whole shifts 62, 63 and around
      if (i % 7 == 3) e = static_cast<std::int64_t>(rng() % 40) << L | frac;  // the rounding's range
      m.e_i = static_cast<std::uint64_t>(e);
      m.index_bits_i = static_cast<std::uint8_t>(L);
      m.eval();
      ASSERT_EQ(static_cast<std::int64_t>(m.index_o), e & static_cast<std::int64_t>(mask(L))) << "e=" << e;
      m.entry_i = t.entry[m.index_o];
      m.eval();
      ASSERT_EQ(static_cast<std::int64_t>(m.value_o), arith::exp2_neg(e, t, f.rounding))
          << "e=" << e << " L=" << L << " P=" << P << " " << test::seed_note(seed);
    }
  }
}

struct SoftmaxResult {
  std::int64_t max = 0, sum = 0;
  arith::FixedPoint inv;
  std::vector<int> codes;
  int cycles = 0;
};

SoftmaxResult run_softmax_row(Vsoftmax_row& m, const std::vector<std::int32_t>& z, int count, const arith::Exp2Table& t,
                              int prob_bits, std::mt19937_64& rng) {
  constexpr int kScoreBits = 32;
  const int prob_port = arith::VectorUnit{}.operand_bits;
  for (int i = 0; i < (1 << t.index_bits); ++i) {
    m.tbl_we_i = 1;
    m.tbl_addr_i = static_cast<std::uint8_t>(i);
    m.tbl_data_i = t.entry[i];
    tick(m);
  }
  m.tbl_we_i = 0;
  SoftmaxResult r;
  const int chunks = (count + kVecLanes - 1) / kVecLanes;
  r.codes.assign(static_cast<std::size_t>(chunks * kVecLanes), -1);
  m.start_i = 1;
  m.count_i = static_cast<std::uint16_t>(count);
  m.index_bits_i = static_cast<std::uint8_t>(t.index_bits);
  m.prob_bits_i = static_cast<std::uint8_t>(prob_bits);
  for (r.cycles = 0; r.cycles < 2000; ++r.cycles) {
    m.eval();
    if (m.done_o) break;
    const int chunk = m.rd_chunk_o;
    for (int l = 0; l < kVecLanes; ++l) {
      const std::size_t j = static_cast<std::size_t>(chunk * kVecLanes + l);
      // Past the row: garbage, which the unit must ignore like the masked scores.
      const std::uint64_t v = j < z.size() ? static_cast<std::uint64_t>(static_cast<std::int64_t>(z[j])) : rng();
      put_bits(m.z_i, l * kScoreBits, kScoreBits, v);
    }
    m.eval();
    if (m.code_valid_o)
      for (int l = 0; l < kVecLanes; ++l)
        r.codes[static_cast<std::size_t>(chunk * kVecLanes + l)] =
            static_cast<int>(get_bits(m.code_o, l * prob_port, prob_port));
    tick(m);
    m.start_i = 0;
  }
  r.max = sign_extend(m.max_o, kScoreBits);
  r.sum = m.sum_o;
  r.inv = {static_cast<std::int64_t>(m.inv_mant_o), static_cast<int>(m.inv_shift_o)};
  return r;
}

TEST(RtlSoftmax, RowEqualsArithSoftmaxRowInTheSystemCModelsCycles) {
  const arith::Format& f = spec().format;
  const std::uint64_t seed = test::test_seed(48);
  std::mt19937_64 rng(seed);
  Vsoftmax_row m;
  reset(m);
  const int max_prob_bits = std::min(arith::VectorUnit{}.operand_bits, 15);
  int clamped = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const int L = static_cast<int>(rng() % (arith::kMaxExp2IndexBits + 1));
    const int P = 1 + static_cast<int>(rng() % arith::kMaxExp2ValueBits);
    const int prob_bits = 1 + static_cast<int>(rng() % static_cast<std::uint64_t>(max_prob_bits));
    int count = 1 + static_cast<int>(rng() % 70);
    if (trial % 10 == 0) count = 1;  // the first token: one visible key
    const int n = count + static_cast<int>(rng() % 20);
    ASSERT_TRUE(arith::softmax_sum_fits(count, P));
    std::vector<std::int32_t> z(static_cast<std::size_t>(n));
    const int spread = static_cast<int>(rng() % 33);
    const std::int64_t centre = random_signed(rng, 32);
    for (auto& v : z)
      v = static_cast<std::int32_t>(arith::saturate(centre + random_signed(rng, std::max(spread, 1)), 32));
    if (trial % 10 == 1) std::fill(z.begin(), z.end(), z[0]);  // all equal
    if (trial % 10 == 2) {  // both extremes: the largest distance
      z[0] = static_cast<std::int32_t>(arith::signed_min(32));
      z[static_cast<std::size_t>(count - 1)] = static_cast<std::int32_t>(arith::signed_max(32));
    }
    const arith::Exp2Table t = arith::exp2_table(L, P, f.rounding);
    std::vector<int> want(static_cast<std::size_t>(n));
    const arith::SoftmaxRow row = arith::softmax_row(z.data(), n, count, t, prob_bits, f, want.data());
    const SoftmaxResult got = run_softmax_row(m, z, count, t, prob_bits, rng);
    const std::string where = "count=" + std::to_string(count) + " L=" + std::to_string(L) + " P=" +
                              std::to_string(P) + " prob_bits=" + std::to_string(prob_bits) + " trial " +
                              std::to_string(trial) + " " + test::seed_note(seed);
    ASSERT_TRUE(m.done_o) << where;
    const int chunks = (count + kVecLanes - 1) / kVecLanes;
    EXPECT_EQ(got.cycles, 3 * chunks + f.scale_mantissa_bits) << where;
    ASSERT_EQ(got.max, row.max) << where;
    ASSERT_EQ(got.sum, row.sum) << where;
    ASSERT_EQ(got.inv.mantissa, row.inv_sum.mantissa) << where;
    ASSERT_EQ(got.inv.shift, row.inv_sum.shift) << where;
    for (int j = 0; j < chunks * kVecLanes; ++j) {
      const int expect = j < n ? want[static_cast<std::size_t>(j)] : 0;  // past the row: masked too
      ASSERT_EQ(got.codes[static_cast<std::size_t>(j)], expect) << "code " << j << " " << where;
      clamped += j < count && expect == static_cast<int>(arith::prob_qmax(prob_bits));
    }
  }
  EXPECT_GT(clamped, 0) << "no code reached qp";
}

// ---- squared ReLU and the per-token pairs -----------------------------------------------------

TEST(RtlSquaredRelu, EqualsArithSquaredRelu) {
  const arith::Format& f = spec().format;
  const std::uint64_t seed = test::test_seed(49);
  std::mt19937_64 rng(seed);
  Vsquared_relu m;
  const int natural = arith::squared_relu_shift(f.acc_bits, f.acc_bits);
  for (int i = 0; i < 200000; ++i) {
    std::int64_t v = random_signed(rng, 32);
    int shift = static_cast<int>(rng() % 63);
    if (i % 5 == 0) shift = natural - static_cast<int>(rng() % 3);
    shift = std::max(shift, 0);
    if (i % 101 == 0) v = arith::signed_max(32);
    if (i % 103 == 0) v = arith::signed_max(f.acc_bits);
    m.v_i = static_cast<std::uint32_t>(v);
    m.shift_i = static_cast<std::uint8_t>(shift);
    m.eval();
    ASSERT_EQ(sign_extend(m.y_o, f.acc_bits), arith::squared_relu(v, shift, f.acc_bits, f.rounding))
        << "v=" << v << " shift=" << shift << " " << test::seed_note(seed);
  }
}

TEST(RtlTokenPair, EqualsArithTokenPairOneFactorPerCycle) {
  const arith::Format& f = spec().format;
  const std::uint64_t seed = test::test_seed(50);
  std::mt19937_64 rng(seed);
  Vtoken_pair m;
  reset(m);
  int too_large = 0, ok = 0;
  for (int trial = 0; trial < 50000; ++trial) {
    const arith::FixedPoint base{static_cast<std::int64_t>(random_magnitude(rng, f.scale_mantissa_bits)),
                                 f.scale_shift_min + static_cast<int>(rng() % static_cast<std::uint64_t>(
                                                                          f.scale_shift_max - f.scale_shift_min + 1))};
    const int k = static_cast<int>(rng() % 9);
    std::vector<std::int64_t> factors(static_cast<std::size_t>(k));
    for (auto& v : factors) v = static_cast<std::int64_t>(random_magnitude(rng, 32));
    if (trial % 13 == 0 && k > 0) factors[0] = static_cast<std::int64_t>(mask(32));
    // Drive: a load cycle that also takes the first factor, then one factor per cycle.
    m.base_mant_i = static_cast<std::uint32_t>(base.mantissa);
    m.base_shift_i = static_cast<std::uint8_t>(base.shift);
    m.load_i = 1;
    for (int i = 0; i < std::max(k, 1); ++i) {
      m.step_i = i < k;
      m.factor_i = i < k ? static_cast<std::uint32_t>(factors[static_cast<std::size_t>(i)]) : 0;
      tick(m);
      m.load_i = 0;
    }
    m.step_i = 0;
    m.eval();
    const arith::FixedPointResult want = arith::token_pair(base, factors.data(), k, f);
    const bool large = want.status == arith::FixedPointStatus::TooLarge;
    ASSERT_EQ(static_cast<bool>(m.too_large_o), large) << "trial " << trial << " " << test::seed_note(seed);
    ASSERT_EQ(static_cast<std::int64_t>(m.mant_o), want.value.mantissa) << "trial " << trial << " " << test::seed_note(seed);
    ASSERT_EQ(static_cast<int>(m.shift_o), want.value.shift) << "trial " << trial << " " << test::seed_note(seed);
    too_large += large;
    ok += !large;
  }
  EXPECT_GT(too_large, 0) << "no pair became too large";
  EXPECT_GT(ok, 0);
}

}  // namespace
}  // namespace qathw::rtl
