// Every CUDA kernel against its CPU reference on the same cases (one table, in the manner of
// ggml's test-backend-ops): exact where the result is integer, or a float the same arith rules
// produce; a tolerance only where the CPU and the GPU sum reals in different orders (gradient
// GEMMs, the loss) or contract differently (AdamW). Odd shapes and tails, all-zero rows and
// tokens, maximum magnitudes, saturating accumulators, ties. Without a CUDA device every case is
// skipped with the reason.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <ostream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "../../training/src/cuda_trainer.h"
#include "../arith/test_support.h"
#include "../model/random_model.h"
#include "qathw/kernels/cuda.h"
#include "qathw/kernels/dense.h"
#include "qathw/kernels/device.h"
#include "qathw/kernels/quant_ops.h"
#include "qathw/target/target_spec.h"
#include "qathw/model/accelerator_layers.h"
#include "qathw/model/bundle.h"
#include "qathw/training/export.h"
#include "qathw/kernels/cuda_engine.h"
#include "qathw/model/int_engine.h"
#include "qathw/training/network.h"

namespace qathw::kernels {
namespace {

template <typename T>
using DeviceArray = cuda::DeviceArray<T>;
using arith::Format;
using arith::WeightFormat;

#define SKIP_WITHOUT_DEVICE()                                                        \
  do {                                                                               \
    const CudaProbe probe_ = probe_cuda();                                           \
    if (!probe_.available) GTEST_SKIP() << "no CUDA device: " << probe_.reason;      \
  } while (0)

enum class Fill { Random, ZeroRows, MaxMagnitude, Ties, HugeChannel };

struct Case {
  const char* name;
  int rows, out, in;  // tokens, output channels, inputs
  WeightFormat weights;
  arith::Rounding rounding;
  arith::Overflow overflow;
  int acc_bits, lanes;
  Fill fill;
};

// The table. Shapes straddle the kernels' tiles (64) and words (16 bytes), and the ragged rows of
// packed weights (in not a multiple of 4 or 2).
const Case kCases[] = {
    {"single_element", 1, 1, 1, WeightFormat::Ternary, arith::Rounding::HalfAwayFromZero, arith::Overflow::Saturate, 24, 16, Fill::Random},
    {"odd_ternary", 7, 13, 33, WeightFormat::Ternary, arith::Rounding::HalfAwayFromZero, arith::Overflow::Saturate, 24, 16, Fill::Random},
    {"mlp_ternary", 64, 256, 784, WeightFormat::Ternary, arith::Rounding::HalfAwayFromZero, arith::Overflow::Saturate, 24, 16, Fill::Random},
    {"odd_int4_half_even_wrap", 5, 17, 257, WeightFormat::Int4, arith::Rounding::HalfEven, arith::Overflow::Wrap, 32, 32, Fill::Random},
    {"mlp_int4", 33, 256, 784, WeightFormat::Int4, arith::Rounding::HalfEven, arith::Overflow::Wrap, 32, 32, Fill::Random},
    {"zero_rows_ternary", 9, 10, 100, WeightFormat::Ternary, arith::Rounding::HalfEven, arith::Overflow::Saturate, 24, 16, Fill::ZeroRows},
    {"zero_rows_int4", 9, 10, 101, WeightFormat::Int4, arith::Rounding::HalfAwayFromZero, arith::Overflow::Saturate, 24, 8, Fill::ZeroRows},
    {"max_magnitude_ternary_saturating", 6, 11, 300, WeightFormat::Ternary, arith::Rounding::HalfAwayFromZero, arith::Overflow::Saturate, 12, 16, Fill::MaxMagnitude},
    {"max_magnitude_int4_saturating", 4, 7, 130, WeightFormat::Int4, arith::Rounding::HalfEven, arith::Overflow::Saturate, 16, 4, Fill::MaxMagnitude},
    {"max_magnitude_int4_wrap", 4, 9, 77, WeightFormat::Int4, arith::Rounding::HalfAwayFromZero, arith::Overflow::Wrap, 16, 32, Fill::MaxMagnitude},
    {"max_magnitude_int4_wrap_aligned", 4, 9, 96, WeightFormat::Int4, arith::Rounding::HalfEven, arith::Overflow::Wrap, 16, 32, Fill::MaxMagnitude},
    {"max_magnitude_ternary_wrap_aligned", 4, 9, 64, WeightFormat::Ternary, arith::Rounding::HalfAwayFromZero, arith::Overflow::Wrap, 8, 16, Fill::MaxMagnitude},
    {"ties_int4", 3, 12, 29, WeightFormat::Int4, arith::Rounding::HalfEven, arith::Overflow::Saturate, 24, 16, Fill::Ties},
    {"ties_int4_away", 3, 12, 29, WeightFormat::Int4, arith::Rounding::HalfAwayFromZero, arith::Overflow::Saturate, 24, 16, Fill::Ties},
    {"wide_int4", 3, 65, 4100, WeightFormat::Int4, arith::Rounding::HalfEven, arith::Overflow::Wrap, 32, 32, Fill::Random},
    {"huge_channel_int4", 2, 5, 40, WeightFormat::Int4, arith::Rounding::HalfEven, arith::Overflow::Wrap, 32, 32, Fill::HugeChannel},
    {"huge_channel_ternary", 2, 5, 40, WeightFormat::Ternary, arith::Rounding::HalfAwayFromZero, arith::Overflow::Saturate, 24, 16, Fill::HugeChannel},
    {"wide_ternary", 2, 70, 5003, WeightFormat::Ternary, arith::Rounding::HalfAwayFromZero, arith::Overflow::Saturate, 24, 16, Fill::Random},
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

Format format_of(const Case& c, int act_bits = 8) {
  Format f;
  f.weights = c.weights;
  f.act_bits = act_bits;
  f.rounding = c.rounding;
  f.overflow = c.overflow;
  f.acc_bits = c.acc_bits;
  f.scale_mantissa_bits = c.rounding == arith::Rounding::HalfEven ? 18 : 16;
  return f;
}

std::size_t index_of(const Case& c) { return static_cast<std::size_t>(&c - kCases); }

class KernelTable : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    seed_ = test::test_seed() + 1000 * index_of(GetParam());
    rng_.seed(seed_);
  }
  std::string note() const { return std::string(GetParam().name) + ", " + test::seed_note(seed_); }

  std::vector<float> weights() {
    const Case& c = GetParam();
    std::vector<float> w(static_cast<std::size_t>(c.out) * c.in);
    std::normal_distribution<float> normal(0.0f, 0.05f);
    for (auto& x : w) x = normal(rng_);
    for (int n = 0; n < c.out; ++n) {
      float* row = w.data() + static_cast<std::size_t>(n) * c.in;
      switch (c.fill) {
        case Fill::ZeroRows:
          if (n % 3 == 1) std::fill(row, row + c.in, 0.0f);
          break;
        case Fill::MaxMagnitude:
          // abs_fixed saturates at 256; INT4 channels whose ratio to the largest scale is not
          // representable make both sides report the channel.
          row[0] = n % 2 ? 300.0f : -300.0f;
          if (c.in > 1) row[1] = n == 0 ? 1e6f : 255.999f;
          break;
        case Fill::Ties:
          // absmax 0.875 gives the INT4 scale 0.125: multiples of 0.0625 are exact halves.
          for (int k = 0; k < c.in; ++k) row[k] = 0.0625f * static_cast<float>(k % 29 - 14);
          row[0] = 0.875f;
          break;
        case Fill::HugeChannel:
          // INT4: channel 0's scale dwarfs the others so much that their ratio to it is below the
          // scale format's smallest step (both sides must report it); ternary: |w| capped at 256.
          if (n == 0) row[0] = 1e30f;
          break;
        case Fill::Random:
          break;
      }
    }
    return w;
  }

  std::vector<std::int32_t> integers(int rows, int cols) {
    const Case& c = GetParam();
    std::vector<std::int32_t> v(static_cast<std::size_t>(rows) * cols);
    std::uniform_int_distribution<std::int32_t> u(-100000, 100000);
    for (auto& x : v) x = u(rng_);
    for (int r = 0; r < rows; ++r) {
      std::int32_t* row = v.data() + static_cast<std::size_t>(r) * cols;
      if (c.fill == Fill::ZeroRows && r % 2 == 0) std::fill(row, row + cols, 0);
      if (c.fill == Fill::MaxMagnitude) {
        for (int k = 0; k < cols; ++k) row[k] = k % 2 ? std::numeric_limits<std::int32_t>::max() - k : -(std::numeric_limits<std::int32_t>::max() - k);
      }
      if (c.fill == Fill::Ties) {  // amax 254: qmax / amax = 0.5, so the codes of odd values tie
        for (int k = 0; k < cols; ++k) row[k] %= 255;
        row[0] = 254;
      }
    }
    return v;
  }

  std::vector<std::uint8_t> pixels(int rows, int cols) {
    const Case& c = GetParam();
    std::vector<std::uint8_t> v(static_cast<std::size_t>(rows) * cols);
    std::uniform_int_distribution<int> u(0, 255);
    for (auto& x : v) x = static_cast<std::uint8_t>(c.fill == Fill::MaxMagnitude ? 255 - u(rng_) % 2 : u(rng_));
    if (c.fill == Fill::ZeroRows)
      for (int r = 0; r < rows; r += 2) std::fill_n(v.data() + static_cast<std::size_t>(r) * cols, cols, 0);
    return v;
  }

  // Activation codes in [-qmax, qmax] (all +-qmax for maximum magnitudes), as floats.
  std::vector<float> act_codes(int rows, int cols, int qmax = 127) {
    const Case& c = GetParam();
    std::vector<float> v(static_cast<std::size_t>(rows) * cols);
    std::uniform_int_distribution<int> u(-qmax, qmax);
    for (std::size_t i = 0; i < v.size(); ++i)
      v[i] = static_cast<float>(c.fill == Fill::MaxMagnitude ? (i % 5 == 4 ? -qmax : qmax) : u(rng_));
    if (c.fill == Fill::ZeroRows)
      for (int r = 0; r < rows; r += 2) std::fill_n(v.data() + static_cast<std::size_t>(r) * cols, cols, 0.0f);
    return v;
  }

  std::vector<float> weight_codes(int rows, int cols) {
    const Case& c = GetParam();
    const int q = arith::weight_qmax(c.weights);
    std::vector<float> v(static_cast<std::size_t>(rows) * cols);
    std::uniform_int_distribution<int> u(-q, q);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(c.fill == Fill::MaxMagnitude ? q : u(rng_));
    return v;
  }

  std::vector<arith::FixedPoint> requant_pairs(int n, const Format& f) {
    std::vector<arith::FixedPoint> p(n);
    std::uniform_int_distribution<std::int64_t> m(1, (std::int64_t{1} << f.scale_mantissa_bits) - 1);
    std::uniform_int_distribution<int> s(f.scale_mantissa_bits - 6, f.scale_mantissa_bits + 6);
    for (auto& x : p) x = {m(rng_), s(rng_)};
    if (n > 0) p[0] = {1, 1};  // halves: ties in both rounding modes
    return p;
  }

  std::uint64_t seed_ = 0;
  std::mt19937_64 rng_;
};

template <typename T>
void expect_same(const std::vector<T>& host, const std::vector<T>& device, const std::string& what, const std::string& note) {
  ASSERT_EQ(host.size(), device.size()) << what << ": " << note;
  std::size_t bad = 0;
  for (std::size_t i = 0; i < host.size(); ++i) {
    if (std::memcmp(&host[i], &device[i], sizeof(T)) != 0 && ++bad <= 5)
      ADD_FAILURE() << what << "[" << i << "]: host " << +host[i] << ", device " << +device[i] << " (" << note << ")";
  }
  EXPECT_EQ(bad, 0u) << what << ": " << note;
}

void expect_same(const std::vector<arith::FixedPoint>& host, const std::vector<arith::FixedPoint>& device,
                 const std::string& what, const std::string& note) {
  ASSERT_EQ(host.size(), device.size()) << what;
  for (std::size_t i = 0; i < host.size(); ++i) {
    EXPECT_EQ(host[i].mantissa, device[i].mantissa) << what << "[" << i << "] (" << note << ")";
    EXPECT_EQ(host[i].shift, device[i].shift) << what << "[" << i << "] (" << note << ")";
  }
}

// Equal as values (a GEMM may give +0 where another summation order gives -0).
void expect_equal_values(const std::vector<float>& host, const std::vector<float>& device, const std::string& what,
                         const std::string& note) {
  ASSERT_EQ(host.size(), device.size()) << what;
  std::size_t bad = 0;
  for (std::size_t i = 0; i < host.size(); ++i)
    if (!(host[i] == device[i]) && ++bad <= 5)
      ADD_FAILURE() << what << "[" << i << "]: host " << host[i] << ", device " << device[i] << " (" << note << ")";
  EXPECT_EQ(bad, 0u) << what << ": " << note;
}

// |host - device| <= tol * max(1, max |host|) element-wise.
void expect_close(const std::vector<float>& host, const std::vector<float>& device, float tol, const std::string& what,
                  const std::string& note) {
  ASSERT_EQ(host.size(), device.size()) << what;
  float scale = 1.0f;
  for (float x : host) scale = std::max(scale, std::fabs(x));
  std::size_t bad = 0;
  for (std::size_t i = 0; i < host.size(); ++i)
    if (!(std::fabs(host[i] - device[i]) <= tol * scale) && ++bad <= 5)
      ADD_FAILURE() << what << "[" << i << "]: host " << host[i] << ", device " << device[i] << " (" << note << ")";
  EXPECT_EQ(bad, 0u) << what << ": " << note;
}

// ---- fake quantization -------------------------------------------------------------------------

TEST_P(KernelTable, QuantizeWeights) {
  SKIP_WITHOUT_DEVICE();
  const Case& c = GetParam();
  const Format f = format_of(c);
  const std::vector<float> w = weights();
  const std::size_t n = w.size();
  std::vector<float> codes(n), scales(c.out), deq(n), mask(n);
  std::vector<arith::FixedPoint> requant(c.out);
  bool host_throws = false;
  float reference = 0;
  try {
    reference = quantize_weights(w.data(), c.out, c.in, f, codes.data(), scales.data(), deq.data(), mask.data(), requant.data());
  } catch (const std::runtime_error&) {
    host_throws = true;
  }
  DeviceArray<float> dw, dcodes(n), dscales(c.out), ddeq(n), dmask(n), dref(1);
  dw.assign(w);
  DeviceArray<arith::FixedPoint> drequant(c.out);
  DeviceArray<unsigned long long> dsum(1);
  DeviceArray<int> dbad;
  dbad.assign(std::vector<int>{cuda::kNoBadChannel});
  cuda::quantize_weights(dw.data(), c.out, c.in, f,
                         {dcodes.data(), dscales.data(), ddeq.data(), dmask.data(), drequant.data(), dref.data(),
                          dsum.data(), dbad.data()});
  cuda::synchronize();
  const int bad = dbad.to_host()[0];
  EXPECT_EQ(host_throws, bad != cuda::kNoBadChannel) << "unrepresentable scale ratio reported on one side only: " << note();
  expect_same(scales, dscales.to_host(), "scales", note());
  if (host_throws) return;
  EXPECT_EQ(reference, dref.to_host()[0]) << note();
  expect_same(codes, dcodes.to_host(), "codes", note());
  expect_same(deq, ddeq.to_host(), "dequantized", note());
  expect_same(mask, dmask.to_host(), "ste_mask", note());
  expect_same(requant, drequant.to_host(), "requant", note());
}

template <typename Int>
void check_tokens(const std::vector<Int>& values, int rows, int cols, const Format& f, const std::string& note) {
  std::vector<float> codes(values.size());
  std::vector<std::int64_t> amax(rows);
  quantize_tokens(values.data(), rows, cols, f, codes.data(), amax.data());
  DeviceArray<Int> dv;
  dv.assign(values);
  DeviceArray<float> dcodes(values.size()), dscale(rows), dprev(rows), dref(1);
  DeviceArray<std::int64_t> damax(rows);
  // Per-token scales after a layer whose reference is 0.37 and whose code scales were 0.01 * (b + 1).
  std::vector<float> prev(rows);
  for (int b = 0; b < rows; ++b) prev[b] = 0.01f * static_cast<float>(b + 1);
  const float ref = 0.37f;
  dprev.assign(prev);
  dref.assign(std::vector<float>{ref});
  cuda::quantize_tokens(dv.data(), rows, cols, f, dcodes.data(), damax.data(),
                        {dscale.data(), dprev.data(), dref.data(), 1.0f});
  DeviceArray<std::int16_t> d16(values.size());
  cuda::quantize_tokens(dv.data(), rows, cols, f, d16.data());
  DeviceArray<std::int8_t> d8(values.size());
  if (f.act_bits <= 8) cuda::quantize_tokens(dv.data(), rows, cols, f, d8.data());
  cuda::synchronize();
  expect_same(codes, dcodes.to_host(), "codes", note);
  expect_same(amax, damax.to_host(), "amax", note);
  std::vector<float> scale(rows);
  const float qmax = static_cast<float>(arith::act_qmax(f.act_bits));
  for (int b = 0; b < rows; ++b) {
    const float unit = prev[b] * ref;  // as forward_quantized
    scale[b] = static_cast<float>(amax[b]) * unit / qmax;
  }
  expect_same(scale, dscale.to_host(), "code_scale", note);
  std::vector<std::int16_t> c16(codes.begin(), codes.end());
  expect_same(c16, d16.to_host(), "int16 codes", note);
  if (f.act_bits <= 8) {
    std::vector<std::int8_t> c8(codes.begin(), codes.end());
    expect_same(c8, d8.to_host(), "int8 codes", note);
  }
}

TEST_P(KernelTable, QuantizeTokens) {
  SKIP_WITHOUT_DEVICE();
  const Case& c = GetParam();
  check_tokens(pixels(c.rows, c.in), c.rows, c.in, format_of(c), note() + ", pixels");
  check_tokens(integers(c.rows, c.out), c.rows, c.out, format_of(c), note() + ", integers");
  check_tokens(integers(c.rows, c.out), c.rows, c.out, format_of(c, 4), note() + ", integers, 4-bit codes");
  check_tokens(integers(c.rows, c.out), c.rows, c.out, format_of(c, 16), note() + ", integers, 16-bit codes");
}

// ---- accumulators --------------------------------------------------------------------------------

TEST_P(KernelTable, AccumulatorEpilogue) {
  SKIP_WITHOUT_DEVICE();
  const Case& c = GetParam();
  const Format f = format_of(c);
  const std::size_t n = static_cast<std::size_t>(c.rows) * c.out;
  std::uniform_int_distribution<std::int64_t> small(-(1 << 24), 1 << 24);
  std::uniform_int_distribution<std::int64_t> large(-(std::int64_t{1} << 31) + 1, (std::int64_t{1} << 31) - 1);
  std::vector<float> acc_f(n);
  std::vector<std::int64_t> acc_i(n);
  for (std::size_t i = 0; i < n; ++i) {
    acc_f[i] = static_cast<float>(small(rng_));
    acc_i[i] = c.fill == Fill::MaxMagnitude ? (i % 2 ? large.max() : large.min()) : large(rng_);
  }
  const std::vector<arith::FixedPoint> requant = requant_pairs(c.out, f);
  DeviceArray<arith::FixedPoint> drequant;
  drequant.assign(requant);
  for (bool relu : {false, true}) {
    std::vector<std::int32_t> zf(n), zi(n);
    accumulator_epilogue(acc_f.data(), c.rows, c.out, requant.data(), relu, f, zf.data());
    accumulator_epilogue(acc_i.data(), c.rows, c.out, requant.data(), relu, f, zi.data());
    DeviceArray<float> dacc_f;
    dacc_f.assign(acc_f);
    DeviceArray<std::int64_t> dacc_i;
    dacc_i.assign(acc_i);
    DeviceArray<std::int32_t> dzf(n), dzi(n);
    cuda::accumulator_epilogue(dacc_f.data(), c.rows, c.out, drequant.data(), relu, f, dzf.data());
    cuda::accumulator_epilogue(dacc_i.data(), c.rows, c.out, drequant.data(), relu, f, dzi.data());
    cuda::synchronize();
    expect_same(zf, dzf.to_host(), relu ? "z (float acc, relu)" : "z (float acc)", note());
    expect_same(zi, dzi.to_host(), relu ? "z (int64 acc, relu)" : "z (int64 acc)", note());
  }
}

TEST_P(KernelTable, AccumulateExact) {
  SKIP_WITHOUT_DEVICE();
  const Case& c = GetParam();
  const Format f = format_of(c);
  const std::vector<float> x = act_codes(c.rows, c.in), w = weight_codes(c.out, c.in);
  std::vector<std::int64_t> acc(static_cast<std::size_t>(c.rows) * c.out);
  accumulate_exact(x.data(), w.data(), c.rows, c.out, c.in, c.lanes, f, acc.data());
  DeviceArray<float> dx, dw;
  dx.assign(x);
  dw.assign(w);
  DeviceArray<std::int64_t> dacc(acc.size());
  cuda::accumulate_exact(dx.data(), dw.data(), c.rows, c.out, c.in, c.lanes, f, dacc.data());
  cuda::synchronize();
  expect_same(acc, dacc.to_host(), "accumulators", note());
}

// ---- GEMMs ---------------------------------------------------------------------------------------

TEST_P(KernelTable, Gemms) {
  SKIP_WITHOUT_DEVICE();
  const Case& c = GetParam();
  const int m = c.rows, n = c.out, k = c.in;
  // Integer-valued codes: exact on both sides while sums stay below 2^24.
  const std::vector<float> a = act_codes(m, k), b = weight_codes(n, k);
  const bool exact = static_cast<std::int64_t>(127) * arith::weight_qmax(c.weights) * k <= (std::int64_t{1} << 24);
  DeviceArray<float> da, db;
  da.assign(a);
  db.assign(b);
  {
    std::vector<float> host(static_cast<std::size_t>(m) * n);
    gemm_abt(a.data(), b.data(), m, n, k, host.data());
    DeviceArray<float> dc(host.size());
    cuda::gemm_abt(da.data(), db.data(), m, n, k, dc.data());
    cuda::synchronize();
    if (exact)
      expect_equal_values(host, dc.to_host(), "gemm_abt on codes", note());
    else
      expect_close(host, dc.to_host(), 1e-6f, "gemm_abt on codes", note());
  }
  // Real values (gradients): summation order differs, so a tolerance.
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> dy(static_cast<std::size_t>(m) * n), x(static_cast<std::size_t>(m) * k), wr(static_cast<std::size_t>(n) * k);
  for (auto& v : dy) v = normal(rng_);
  for (auto& v : x) v = normal(rng_);
  for (auto& v : wr) v = normal(rng_);
  DeviceArray<float> ddy, dxr, dwr;
  ddy.assign(dy);
  dxr.assign(x);
  dwr.assign(wr);
  {
    std::vector<float> host(static_cast<std::size_t>(n) * k);
    gemm_atb(dy.data(), x.data(), m, n, k, host.data());
    DeviceArray<float> dc(host.size());
    cuda::gemm_atb(ddy.data(), dxr.data(), m, n, k, dc.data());
    cuda::synchronize();
    expect_close(host, dc.to_host(), 1e-5f, "gemm_atb", note());
  }
  {
    std::vector<float> host(static_cast<std::size_t>(m) * k);
    gemm_ab(dy.data(), wr.data(), m, n, k, host.data());
    DeviceArray<float> dc(host.size());
    cuda::gemm_ab(ddy.data(), dwr.data(), m, n, k, dc.data());
    cuda::synchronize();
    expect_close(host, dc.to_host(), 1e-5f, "gemm_ab", note());
  }
}

// ---- the trainer's element-wise steps and the straight-through backward ------------------------

TEST_P(KernelTable, ElementwiseSteps) {
  SKIP_WITHOUT_DEVICE();
  const Case& c = GetParam();
  const int rows = c.rows, cols = c.out;
  const std::size_t n = static_cast<std::size_t>(rows) * cols;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> d(n), y(n), mask(n), s(rows), prev_scale(rows);
  for (auto& v : d) v = normal(rng_);
  for (auto& v : y) v = normal(rng_);
  for (std::size_t i = 0; i < n; ++i) mask[i] = (i % 3) ? 1.0f : 0.0f;
  for (auto& v : s) v = std::fabs(normal(rng_));
  const std::vector<std::int32_t> z = integers(rows, cols);
  // Host references: the loops of network.cpp.
  std::vector<float> by_z = d, by_y = d, scaled = d, masked = d, relu = y;
  for (std::size_t i = 0; i < n; ++i) {
    if (z[i] <= 0) by_z[i] = 0.0f;
    if (y[i] <= 0.0f) by_y[i] = 0.0f;
    masked[i] *= mask[i];
    relu[i] = std::max(relu[i], 0.0f);
    scaled[i] *= s[i / cols];
  }
  const float reference = 0.0123f;
  std::vector<float> logits(n);
  for (std::size_t i = 0; i < n; ++i) {
    const float unit = s[i / cols] * reference;
    logits[i] = static_cast<float>(z[i]) * unit;
  }
  DeviceArray<float> dd1, dd2, dd3, dd4, dy, dmask, ds, dref, dlogits(n);
  dd1.assign(d), dd2.assign(d), dd3.assign(d), dd4.assign(d), dy.assign(y), dmask.assign(mask), ds.assign(s);
  dref.assign(std::vector<float>{reference});
  DeviceArray<std::int32_t> dz;
  dz.assign(z);
  cuda::zero_where_not_positive(dd1.data(), dz.data(), n);
  cuda::zero_where_not_positive(dd2.data(), dy.data(), n);
  cuda::scale_rows(dd3.data(), rows, cols, ds.data());
  cuda::multiply(dd4.data(), dmask.data(), n);
  cuda::relu(dy.data(), n);
  cuda::integer_logits(dz.data(), rows, cols, ds.data(), dref.data(), dlogits.data());
  // pixels_to_unit and gather_rows
  const std::vector<std::uint8_t> px = pixels(rows, c.in);
  std::vector<std::uint8_t> labels(rows);
  for (int r = 0; r < rows; ++r) labels[r] = static_cast<std::uint8_t>(r % 10);
  std::vector<std::uint32_t> order(rows);
  std::iota(order.begin(), order.end(), 0u);
  std::shuffle(order.begin(), order.end(), rng_);
  std::vector<float> unit(px.size());
  for (std::size_t i = 0; i < px.size(); ++i) unit[i] = static_cast<float>(px[i]) * (1.0f / 255.0f);
  std::vector<std::uint8_t> gathered(px.size()), gathered_labels(rows);
  for (int r = 0; r < rows; ++r) {
    std::copy_n(px.data() + static_cast<std::size_t>(order[r]) * c.in, c.in, gathered.data() + static_cast<std::size_t>(r) * c.in);
    gathered_labels[r] = labels[order[r]];
  }
  DeviceArray<std::uint8_t> dpx, dlabels, dgathered(px.size()), dgathered_labels(rows);
  dpx.assign(px);
  dlabels.assign(labels);
  DeviceArray<std::uint32_t> dorder;
  dorder.assign(order);
  DeviceArray<float> dunit(px.size());
  cuda::pixels_to_unit(dpx.data(), px.size(), dunit.data());
  cuda::gather_rows(dpx.data(), dlabels.data(), dorder.data(), rows, c.in, dgathered.data(), dgathered_labels.data());
  cuda::synchronize();
  expect_same(by_z, dd1.to_host(), "zero_where_not_positive (integers)", note());
  expect_same(by_y, dd2.to_host(), "zero_where_not_positive (reals)", note());
  expect_same(scaled, dd3.to_host(), "scale_rows", note());
  expect_same(masked, dd4.to_host(), "multiply", note());
  expect_same(relu, dy.to_host(), "relu", note());
  expect_same(logits, dlogits.to_host(), "integer_logits", note());
  expect_same(unit, dunit.to_host(), "pixels_to_unit", note());
  expect_same(gathered, dgathered.to_host(), "gather_rows pixels", note());
  expect_same(gathered_labels, dgathered_labels.to_host(), "gather_rows labels", note());
}

TEST_P(KernelTable, SoftmaxCrossEntropy) {
  SKIP_WITHOUT_DEVICE();
  const Case& c = GetParam();
  const int batch = c.rows, classes = std::min(c.out, 255);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(static_cast<std::size_t>(batch) * classes);
  for (auto& v : logits) v = normal(rng_);
  if (c.fill == Fill::MaxMagnitude)
    for (std::size_t i = 0; i < logits.size(); i += 3) logits[i] = 80.0f;  // ties for the argmax, exp near overflow
  std::vector<std::uint8_t> labels(batch);
  for (int b = 0; b < batch; ++b) labels[b] = static_cast<std::uint8_t>(rng_() % classes);
  std::vector<float> dlogits;
  int correct = 0;
  const float loss = training::softmax_cross_entropy(logits, labels.data(), batch, classes, dlogits, correct);
  DeviceArray<float> dl, dd(logits.size());
  dl.assign(logits);
  DeviceArray<std::uint8_t> dlab;
  dlab.assign(labels);
  DeviceArray<cuda::LossTotals> totals;
  totals.assign(std::vector<cuda::LossTotals>{cuda::LossTotals{}});
  cuda::softmax_cross_entropy(dl.data(), dlab.data(), batch, classes, dd.data(), totals.data());
  cuda::synchronize();
  const cuda::LossTotals t = totals.to_host()[0];
  EXPECT_EQ(static_cast<unsigned long long>(correct), t.correct) << note();
  EXPECT_NEAR(loss, t.loss_sum, 1e-5 * std::max(1.0f, std::fabs(loss))) << note();
  expect_close(dlogits, dd.to_host(), 1e-6f, "dlogits", note());
}

TEST_P(KernelTable, AdamW) {
  SKIP_WITHOUT_DEVICE();
  const Case& c = GetParam();
  const std::size_t n = static_cast<std::size_t>(c.out) * c.in;
  std::normal_distribution<float> normal(0.0f, 0.1f);
  std::vector<float> w(n), g(n), m(n), v(n);
  for (std::size_t i = 0; i < n; ++i) {
    w[i] = normal(rng_);
    g[i] = normal(rng_);
    m[i] = normal(rng_) * 0.1f;
    v[i] = std::fabs(normal(rng_)) * 0.01f;
  }
  if (c.fill == Fill::ZeroRows) std::fill(g.begin(), g.begin() + static_cast<std::ptrdiff_t>(n / 2), 0.0f);
  DeviceArray<float> dw, dg, dm, dv;
  dw.assign(w), dg.assign(g), dm.assign(m), dv.assign(v);
  AdamWParams p;
  p.lr = 4e-3f;
  p.weight_decay = 0.05f;
  p.step = 7;
  adamw_step(w.data(), g.data(), m.data(), v.data(), n, p);
  cuda::adamw_step(dw.data(), dg.data(), dm.data(), dv.data(), n, p);
  cuda::synchronize();
  // The host may contract into fused multiply-adds where the device (--fmad=false) does not.
  expect_close(w, dw.to_host(), 1e-6f, "w", note());
  expect_close(m, dm.to_host(), 1e-6f, "m", note());
  expect_close(v, dv.to_host(), 1e-6f, "v", note());
}

// ---- the deployed model's packed layer ---------------------------------------------------------

template <typename Code>
void check_packed_layer(const std::vector<std::int8_t>& w, const std::vector<Code>& x, int samples, int in, int out,
                        int lanes, const Format& f, const std::vector<arith::FixedPoint>& requant, bool relu,
                        const std::string& note) {
  std::vector<std::uint8_t> packed(cuda::device_packed_bytes(w.size(), f.weights), 0);
  for (std::size_t i = 0; i < w.size(); ++i) arith::store_code(packed.data(), i, w[i], f.weights);
  std::vector<std::int32_t> z(static_cast<std::size_t>(samples) * out);
  for (int s = 0; s < samples; ++s)
    for (int n = 0; n < out; ++n) {
      // As IntEngine::run: arith::dot in the array's order, requantize, ReLU.
      const std::int64_t acc = arith::dot(x.data() + static_cast<std::size_t>(s) * in, w.data() + static_cast<std::size_t>(n) * in,
                                          in, lanes, f);
      const std::int64_t q = arith::requantize(acc, requant[n], f.rounding, f.acc_bits);
      z[static_cast<std::size_t>(s) * out + n] = static_cast<std::int32_t>(relu ? arith::relu(q) : q);
    }
  DeviceArray<std::uint8_t> dp;
  dp.assign(packed);
  DeviceArray<Code> dx;
  dx.assign(x);
  DeviceArray<arith::FixedPoint> dr;
  dr.assign(requant);
  DeviceArray<std::int32_t> dz(z.size());
  cuda::packed_layer(dp.data(), dx.data(), samples, in, out, lanes, f, dr.data(), relu, dz.data());
  cuda::synchronize();
  expect_same(z, dz.to_host(), std::string("packed layer (") + (arith::accumulation_order_free(in, f) ? "exact sum" : "array order") + ")", note);
}

TEST_P(KernelTable, PackedLayer) {
  SKIP_WITHOUT_DEVICE();
  const Case& c = GetParam();
  const Format f = format_of(c);
  const int q = arith::weight_qmax(c.weights);
  std::vector<std::int8_t> w(static_cast<std::size_t>(c.out) * c.in);
  std::uniform_int_distribution<int> u(-q, q);
  for (std::size_t i = 0; i < w.size(); ++i)
    w[i] = static_cast<std::int8_t>(c.fill == Fill::MaxMagnitude ? (c.weights == WeightFormat::Int4 && i % 7 == 0 ? -8 : q) : u(rng_));
  if (c.fill == Fill::ZeroRows)
    for (int n = 0; n < c.out; n += 3) std::fill_n(w.data() + static_cast<std::size_t>(n) * c.in, c.in, 0);
  const std::vector<float> xf = act_codes(c.rows, c.in);
  const std::vector<std::int8_t> x8(xf.begin(), xf.end());
  const std::vector<arith::FixedPoint> requant = requant_pairs(c.out, f);
  for (bool relu : {false, true}) check_packed_layer(w, x8, c.rows, c.in, c.out, c.lanes, f, requant, relu, note());
  // 16-bit activation codes.
  const Format f16 = format_of(c, 16);
  const std::vector<float> xw = act_codes(c.rows, c.in, 32767);
  const std::vector<std::int16_t> x16(xw.begin(), xw.end());
  check_packed_layer(w, x16, c.rows, c.in, c.out, c.lanes, f16, requant_pairs(c.out, f16), true, note() + ", 16-bit codes");
}

INSTANTIATE_TEST_SUITE_P(Cases, KernelTable, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

// ---- whole passes: the training step and the deployed model ------------------------------------

target::TargetSpec builtin(const std::string& name) {
  return target::resolve_target(std::string(QATHW_BUILTIN_TARGETS_DIR) + "/" + name + ".toml");
}

class Passes : public ::testing::TestWithParam<const char*> {};

// One QAT step with a zero learning rate: the GPU's output-layer integers and logits equal the
// CPU's forward_quantized for the same weights; its gradients equal backward_quantized's up to
// summation order; the weights do not move.
TEST_P(Passes, TrainingStepMatchesCpu) {
  SKIP_WITHOUT_DEVICE();
  const std::uint64_t seed = test::test_seed() + 31;
  SCOPED_TRACE(test::seed_note(seed));
  const target::TargetSpec t = builtin(GetParam());
  std::mt19937_64 rng(seed);
  training::Dataset data;
  data.count = 96;
  data.rows = 6, data.cols = 7;
  data.features = 42;
  data.classes = 5;
  data.pixels.resize(data.count * data.features);
  data.labels.resize(data.count);
  for (auto& p : data.pixels) p = static_cast<std::uint8_t>(rng() % 256);
  for (std::size_t i = 0; i < data.count; ++i) data.labels[i] = static_cast<std::uint8_t>(rng() % 5);
  std::fill_n(data.pixels.begin(), data.features, 0);  // an all-zero image
  const int batch = 32;
  for (bool quantized : {true, false}) {
    SCOPED_TRACE(quantized ? "QAT" : "FP32");
    training::Mlp net = training::make_mlp(42, {19, 8}, 5, seed);
    std::vector<std::vector<float>> m, v;
    for (const auto& l : net.layers) {
      m.emplace_back(l.w.size(), 0.0f);
      v.emplace_back(l.w.size(), 0.0f);
    }
    // CPU: the passes on samples 0..batch-1.
    training::Activations act;
    std::vector<training::QuantizedLayer> q;
    std::vector<float> dlogits;
    std::vector<std::vector<float>> grads;
    int correct = 0;
    float loss = 0;
    if (quantized) {
      training::quantize_weights(net, t.format, q);
      training::forward_quantized(net, q, t.format, t.array.lanes, data.pixels.data(), batch, act);
      loss = training::softmax_cross_entropy(act.logits, data.labels.data(), batch, 5, dlogits, correct);
      training::backward_quantized(net, q, act, dlogits, false, grads);
    } else {
      training::forward_fp32(net, data.pixels.data(), batch, act);
      loss = training::softmax_cross_entropy(act.logits, data.labels.data(), batch, 5, dlogits, correct);
      training::backward_fp32(net, act, dlogits, grads);
    }
    // GPU: one step, learning rate 0.
    training::CudaTrainer gpu(net, m, v, t.format, t.array.lanes, batch, data, quantized, false);
    std::vector<std::uint32_t> order(data.count);
    std::iota(order.begin(), order.end(), 0u);
    gpu.set_order(order);
    AdamWParams p;
    p.lr = 0.0f;
    gpu.step(0, p);
    const training::CudaTrainer::Totals totals = gpu.take_totals();
    EXPECT_EQ(totals.correct, correct);
    EXPECT_NEAR(totals.loss_sum, loss, 1e-5 * std::max(1.0f, loss));
    const training::CudaTrainer::Inspection got = gpu.inspect();
    if (quantized) expect_same(act.z.back(), got.output_integers, "output-layer integers", test::seed_note(seed));
    if (quantized)
      expect_same(act.logits, got.logits, "logits", test::seed_note(seed));
    else
      expect_close(act.logits, got.logits, 1e-5f, "logits", test::seed_note(seed));
    for (std::size_t l = 0; l < grads.size(); ++l)
      expect_close(grads[l], got.gradients[l], 1e-4f, "gradient of layer " + std::to_string(l), test::seed_note(seed));
    training::Mlp after = net;
    gpu.download(after, m, v);
    for (std::size_t l = 0; l < net.layers.size(); ++l)
      expect_same(net.layers[l].w, after.layers[l].w, "weights after a step at lr 0", test::seed_note(seed));
  }
}

// The deployed model on the GPU equals the integer engine, every layer of every sample.
TEST_P(Passes, CudaEngineMatchesIntEngine) {
  SKIP_WITHOUT_DEVICE();
  const std::uint64_t seed = test::test_seed() + 77;
  SCOPED_TRACE(test::seed_note(seed));
  const target::TargetSpec t = builtin(GetParam());
  // Ragged rows (the general kernel) and rows of whole 32-bit words (the dp4a form).
  struct Shape {
    int rows, cols;
    std::vector<int> hidden;
  };
  for (const Shape& shape : {Shape{6, 5, {33, 17}}, Shape{8, 4, {48, 16}}}) {
    const int features = shape.rows * shape.cols;
    SCOPED_TRACE("inputs " + std::to_string(features));
    const training::Mlp net = training::make_mlp(features, shape.hidden, 7, seed);
    const model::Bundle bundle = training::make_bundle(net, t, shape.rows, shape.cols, nlohmann::json{{"note", "test"}});
    std::mt19937_64 rng(seed);
    const std::size_t count = 300;
    std::vector<std::uint8_t> px(count * features);
    for (auto& p : px) p = static_cast<std::uint8_t>(rng() % 256);
    std::fill_n(px.begin(), features, 0);             // an all-zero sample
    std::fill_n(px.begin() + features, features, 255);  // maximum magnitude
    const std::vector<model::AcceleratorLayer> layers = model::accelerator_layers(bundle.graph).layers;
    std::vector<model::LayerOutputs> want;
    for (const model::OpOutputs& o : model::IntEngine(bundle).run_all(px.data(), count))
      want.push_back(model::layer_outputs(layers, o));
    const kernels::CudaEngine engine(bundle);
    const std::vector<model::LayerOutputs> got = engine.run_all(px.data(), count);
    ASSERT_EQ(want.size(), got.size());
    for (std::size_t i = 0; i < count; ++i)
      for (std::size_t l = 0; l < want[i].size(); ++l)
        ASSERT_EQ(want[i][l], got[i][l]) << "sample " << i << ", layer " << l << " (" << test::seed_note(seed) << ")";
    EXPECT_EQ(model::IntEngine(bundle).run_batch(px.data(), count), engine.run_batch(px.data(), count));
  }
}

// The feature-map ops on the GPU (convolutions with padding, strides and groups down to depthwise,
// max and average pools, residual adds, static and dynamic quantizers): the built-in CNNs with
// seeded random kernels equal the integer engine on every layer of every sample.
TEST_P(Passes, CudaEngineRunsTheBuiltInCnns) {
  SKIP_WITHOUT_DEVICE();
  const std::uint64_t seed = test::test_seed() + 78;
  SCOPED_TRACE(test::seed_note(seed));
  const target::TargetSpec t = builtin(GetParam());
  for (const auto& [name, static_quantizers] : {std::pair{"lenet", false}, std::pair{"cnv-tiny", false},
                                                std::pair{"dscnn-tiny", true}, std::pair{"resnet-tiny", true}}) {
    SCOPED_TRACE(name);
    std::mt19937_64 rng(seed);
    const model::Bundle bundle = test::random_model_bundle(name, t, static_quantizers, rng);
    const std::size_t count = 40, features = bundle.features();
    std::vector<std::uint8_t> px(count * features);
    for (auto& p : px) p = static_cast<std::uint8_t>(rng() % 256);
    const std::vector<model::AcceleratorLayer> layers = model::accelerator_layers(bundle.graph).layers;
    const kernels::CudaEngine engine(bundle);
    const std::vector<model::LayerOutputs> got = engine.run_all(px.data(), count);
    ASSERT_EQ(got.size(), count);
    const model::IntEngine reference(bundle);
    for (std::size_t i = 0; i < count; ++i) {
      const model::LayerOutputs want = model::layer_outputs(layers, reference.run(px.data() + i * features));
      for (std::size_t l = 0; l < want.size(); ++l)
        ASSERT_EQ(want[l], got[i][l]) << "sample " << i << ", layer " << l << " (" << model::to_string(layers[l].kind)
                                      << ")";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, Passes, ::testing::Values("ternary-asic", "int4-fpga"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string s = info.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

}  // namespace
}  // namespace qathw::kernels
