// The arithmetic core compiled for the GPU: device results must equal host results, element for
// element, on millions of random inputs: the linear layer's rules, then the transformer's
// (transformer.h). Skips with a clear message where no GPU is present.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include "qathw/arith.h"

namespace qathw::arith {
namespace {

constexpr int kCount = 1 << 21;  // 2,097,152 inputs per rule

struct Inputs {
  std::int64_t value;   // accumulator-range integer
  std::int64_t amax;    // token absmax, >= |value|
  float weight;         // master weight
  float scale;          // weight scale
  std::int8_t x;        // activation code
  std::int8_t w;        // weight code (INT4 range)
};

struct Outputs {
  std::int64_t requantized;
  std::int64_t act_code;
  std::int64_t reciprocal_mantissa;
  std::int64_t product;
  std::int64_t accumulated;
  std::uint64_t abs_fixed;
  int reciprocal_shift;
  int ternary_code;
  int int4_code;
  int packed_roundtrip;
};

// One thread per input; every rule is the shared host/device function.
QATHW_HD Outputs apply_rules(const Inputs& in, const Format& f) {
  Outputs o{};
  const FixedPoint scale{(in.amax & 0xFFFF) | 1, static_cast<int>(in.amax % 40)};
  o.requantized = requantize(in.value, scale, f.rounding, f.acc_bits);
  const FixedPoint r = token_inv_scale(in.amax, f);
  o.reciprocal_mantissa = r.mantissa;
  o.reciprocal_shift = r.shift;
  o.act_code = quantize_act(in.value, r, f.act_bits, f.rounding);
  o.product = pe_product(in.x, in.w, WeightFormat::Int4) + pe_product(in.x, in.w % 2, WeightFormat::Ternary);
  o.accumulated = accumulate(in.value, o.product << 10, f);
  o.abs_fixed = abs_fixed(in.weight);
  o.ternary_code = weight_code(in.weight, in.scale, WeightFormat::Ternary, f.rounding);
  o.int4_code = weight_code(in.weight, in.scale / 7.0f, WeightFormat::Int4, f.rounding);
  std::uint8_t byte = 0;
  store_code(&byte, 1, in.w, WeightFormat::Int4);
  o.packed_roundtrip = load_code(&byte, 1, WeightFormat::Int4);
  return o;
}

__global__ void apply_rules_kernel(const Inputs* in, Outputs* out, int n, Format f) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = apply_rules(in[i], f);
}

bool device_present(std::string& why) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    why = std::string("no usable CUDA device (") + cudaGetErrorString(err) + ")";
    return false;
  }
  if (count == 0) {
    why = "no CUDA device present";
    return false;
  }
  return true;
}

bool same(const Outputs& a, const Outputs& b) { return std::memcmp(&a, &b, sizeof a) == 0; }

class ArithDevice : public ::testing::TestWithParam<int> {};

TEST_P(ArithDevice, DeviceEqualsHostOnRandomInputs) {
  std::string why;
  if (!device_present(why)) GTEST_SKIP() << "GPU test skipped: " << why;

  Format f;
  f.rounding = GetParam() == 0 ? Rounding::HalfAwayFromZero : Rounding::HalfEven;
  f.overflow = GetParam() == 0 ? Overflow::Saturate : Overflow::Wrap;
  f.acc_bits = GetParam() == 0 ? 24 : 32;
  f.scale_mantissa_bits = GetParam() == 0 ? 16 : 18;

  const std::uint64_t seed = 20261124 + GetParam();
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.1f);
  std::vector<Inputs> in(kCount);
  for (auto& v : in) {
    v.amax = static_cast<std::int64_t>(rng() % (std::uint64_t{1} << 31));
    v.value = v.amax == 0 ? 0 : static_cast<std::int64_t>(rng() % (2 * static_cast<std::uint64_t>(v.amax) + 1)) - v.amax;
    v.weight = normal(rng);
    v.scale = 0.01f + std::fabs(normal(rng));
    v.x = static_cast<std::int8_t>(static_cast<int>(rng() % 256) - 128);
    v.w = static_cast<std::int8_t>(static_cast<int>(rng() % 16) - 8);
  }
  // Ties on purpose: weights at exact half multiples of the scale.
  for (int i = 0; i < 1000; ++i) {
    in[i].scale = 0.25f;
    in[i].weight = 0.125f * static_cast<float>(i % 9 - 4);
  }

  Inputs* d_in = nullptr;
  Outputs* d_out = nullptr;
  ASSERT_EQ(cudaMalloc(&d_in, kCount * sizeof(Inputs)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_out, kCount * sizeof(Outputs)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d_in, in.data(), kCount * sizeof(Inputs), cudaMemcpyHostToDevice), cudaSuccess);
  apply_rules_kernel<<<(kCount + 255) / 256, 256>>>(d_in, d_out, kCount, f);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  std::vector<Outputs> out(kCount);
  ASSERT_EQ(cudaMemcpy(out.data(), d_out, kCount * sizeof(Outputs), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(d_in);
  cudaFree(d_out);

  int mismatches = 0;
  for (int i = 0; i < kCount; ++i) {
    Outputs host{};
    host = apply_rules(in[i], f);
    if (!same(host, out[i]) && ++mismatches <= 5)
      ADD_FAILURE() << "device differs from host at input " << i << " (seed " << seed << ")";
  }
  EXPECT_EQ(mismatches, 0) << "seed " << seed;
}

INSTANTIATE_TEST_SUITE_P(Formats, ArithDevice, ::testing::Values(0, 1));

// ---- the transformer's rules (transformer.h) -------------------------------------------------

// QATHW_TEST_SEED replays a failure; else a fixed seed.
std::uint64_t transformer_seed() {
  const char* env = std::getenv("QATHW_TEST_SEED");
  return env ? std::strtoull(env, nullptr, 10) : 20261125;
}
std::string seed_note(std::uint64_t seed) {
  return "seed " + std::to_string(seed) + " (replay with QATHW_TEST_SEED=" + std::to_string(seed) + ")";
}

// The exp2 tables of every shape: index_bits 0..8, value_bits 1..24, both roundings.
constexpr int kTableValueBits = kMaxExp2ValueBits;
constexpr int kTables = (kMaxExp2IndexBits + 1) * kTableValueBits * 2;
struct TableShape {
  int index_bits, value_bits;
  Rounding mode;
};
QATHW_HD TableShape table_shape(int t) {
  return {t / (kTableValueBits * 2), 1 + (t / 2) % kTableValueBits,
          t % 2 ? Rounding::HalfEven : Rounding::HalfAwayFromZero};
}

__global__ void exp2_tables_kernel(Exp2Table* tables) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= kTables) return;
  const TableShape s = table_shape(t);
  tables[t] = exp2_table(s.index_bits, s.value_bits, s.mode);
}

// Scalar rules: one input each.
struct ScalarIn {
  std::uint64_t n = 0;  // isqrt's input (< 2^sqrt_bits), round_shift_unsigned's
  int sqrt_bits = 64;
  int ushift = 1;       // [1, 63]
  std::int64_t v = 0;   // shift_round's (|v| < 2^40)
  int shift = 0;        // [-21, 70]
  std::int32_t r = 0;   // squared_relu's
  int r_shift = 0;      // [0, 62]
  int r_bits = 32;      // out_bits [1, 62]; squared_relu_shift's in_bits is r_bits % 31 + 1
  std::int64_t e = 0;   // exp2_neg's (>= 0)
  int table = 0;
  int query = 0, key = 0;
  Rounding mode = Rounding::HalfAwayFromZero;
};

struct ScalarOut {
  std::uint64_t root = 0, unsigned_shifted = 0;
  std::int64_t shifted = 0, squared = 0, exp = 0;
  int squared_shift = 0, sqrt_steps = 0, visible = 0, count = 0;
};

QATHW_HD ScalarOut scalar_rules(const ScalarIn& in, const Exp2Table* tables) {
  ScalarOut o;
  o.root = isqrt(in.n, in.sqrt_bits);
  o.sqrt_steps = isqrt_steps(in.sqrt_bits);
  o.unsigned_shifted = round_shift_unsigned(in.n, in.ushift, in.mode);
  o.shifted = shift_round(in.v, in.shift, in.mode);
  o.squared = squared_relu(in.r, in.r_shift, in.r_bits, in.mode);
  o.squared_shift = squared_relu_shift(in.r_bits % 31 + 1, in.r_bits);
  o.exp = exp2_neg(in.e, tables[in.table], in.mode);
  o.visible = causal_visible(in.query, in.key) ? 1 : 0;
  o.count = causal_count(in.query);
  return o;
}

__global__ void scalar_rules_kernel(const ScalarIn* in, const Exp2Table* tables, ScalarOut* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = scalar_rules(in[i], tables);
}

// Row rules: RMSNorm of a token, the softmax of an attention row, the vector unit's dot products.
constexpr int kMaxRow = 80;
constexpr int kMaxStride = 3;

struct RowIn {
  int n = 1, count = 1;  // features or scores; the softmax's unmasked count
  int in_bits = 24, out_bits = 32;
  std::uint64_t eps = 0;
  int table = 0, prob_bits = 8;
  Rounding mode = Rounding::HalfAwayFromZero;
  int mantissa_bits = 16;
  VectorUnit unit;
  int stride = 1;
  std::int32_t x[kMaxRow];  // RMSNorm's values, the softmax's scores
  FixedPoint gains[kMaxRow];
  std::int8_t a[kMaxRow];
  std::int8_t b[kMaxRow * kMaxStride];
  std::uint8_t p[kMaxRow * kMaxStride];  // unsigned probability codes (< 2^operand_bits)
};

struct RowOut {
  std::uint64_t sum_squares = 0;
  RmsInverse inv;
  RmsInverse token_inv;  // rmsnorm_token's
  std::int64_t norm[kMaxRow];
  SoftmaxRow softmax;
  std::uint16_t prob[kMaxRow];
  std::int64_t dot_signed = 0, dot_unsigned = 0;
  int order_free = 0, max_input_bits = 0, sum_fits = 0, softmax_fits = 0;
};

QATHW_HD Format row_format(const RowIn& in) {
  Format f;
  f.rounding = in.mode;
  f.scale_mantissa_bits = in.mantissa_bits;
  return f;
}

QATHW_HD void row_rules(const RowIn& in, const Exp2Table* tables, RowOut& o) {
  const Format f = row_format(in);
  o.sum_squares = sum_squares(in.x, in.n, in.in_bits);
  o.inv = rms_inverse(o.sum_squares, in.n, in.eps, f);
  o.token_inv = rmsnorm_token(in.x, in.n, in.in_bits, in.eps, in.gains, in.out_bits, o.norm, f);
  o.softmax = softmax_row(in.x, in.n, in.count, tables[in.table], in.prob_bits, f, o.prob);
  o.dot_signed = vector_dot(in.a, in.b, in.n, in.unit, in.stride);
  o.dot_unsigned = vector_dot(in.a, in.p, in.n, in.unit, in.stride);
  const std::int64_t top = signed_max(in.unit.operand_bits);
  o.order_free = vector_dot_order_free(in.n, top, 2 * top + 1, in.unit) ? 1 : 0;
  o.max_input_bits = rmsnorm_max_input_bits(in.n);
  o.sum_fits = rmsnorm_sum_fits(in.n, in.in_bits, in.eps) ? 1 : 0;
  o.softmax_fits = softmax_sum_fits(in.n, tables[in.table].value_bits) ? 1 : 0;
}

__global__ void row_rules_kernel(const RowIn* in, const Exp2Table* tables, RowOut* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) row_rules(in[i], tables, out[i]);
}

// The first field where two results differ ("" when none): compared field by field, so padding
// bytes never count.
bool same_inverse(const RmsInverse& a, const RmsInverse& b) {
  return a.sum == b.sum && a.k == b.k && a.mean_sq == b.mean_sq && a.root == b.root &&
         a.inv_rms.mantissa == b.inv_rms.mantissa && a.inv_rms.shift == b.inv_rms.shift;
}
std::string difference(const ScalarOut& h, const ScalarOut& d) {
  if (h.root != d.root || h.sqrt_steps != d.sqrt_steps) return "isqrt";
  if (h.unsigned_shifted != d.unsigned_shifted) return "round_shift_unsigned";
  if (h.shifted != d.shifted) return "shift_round";
  if (h.squared != d.squared) return "squared_relu";
  if (h.squared_shift != d.squared_shift) return "squared_relu_shift";
  if (h.exp != d.exp) return "exp2_neg";
  if (h.visible != d.visible || h.count != d.count) return "causal mask";
  return "";
}
std::string difference(const RowIn& in, const RowOut& h, const RowOut& d) {
  if (h.sum_squares != d.sum_squares) return "sum_squares";
  if (!same_inverse(h.inv, d.inv)) return "rms_inverse";
  if (!same_inverse(h.token_inv, d.token_inv)) return "rmsnorm_token (1/rms)";
  for (int j = 0; j < in.n; ++j)
    if (h.norm[j] != d.norm[j]) return "rmsnorm_token (feature " + std::to_string(j) + ")";
  if (h.softmax.max != d.softmax.max || h.softmax.sum != d.softmax.sum ||
      h.softmax.inv_sum.mantissa != d.softmax.inv_sum.mantissa || h.softmax.inv_sum.shift != d.softmax.inv_sum.shift)
    return "softmax_row (max, sum, 1/sum)";
  for (int j = 0; j < in.n; ++j)
    if (h.prob[j] != d.prob[j]) return "softmax_row (code " + std::to_string(j) + ")";
  if (h.dot_signed != d.dot_signed) return "vector_dot (int8 x int8)";
  if (h.dot_unsigned != d.dot_unsigned) return "vector_dot (int8 x unsigned)";
  if (h.order_free != d.order_free) return "vector_dot_order_free";
  if (h.max_input_bits != d.max_input_bits || h.sum_fits != d.sum_fits) return "rmsnorm_sum_fits";
  if (h.softmax_fits != d.softmax_fits) return "softmax_sum_fits";
  return "";
}

template <typename T>
T* to_device(const std::vector<T>& host) {
  T* p = nullptr;
  if (cudaMalloc(&p, host.size() * sizeof(T)) != cudaSuccess) return nullptr;
  if (cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice) != cudaSuccess) {
    cudaFree(p);
    return nullptr;
  }
  return p;
}

template <typename T>
std::vector<T> from_device(const T* p, std::size_t n) {
  std::vector<T> host(n);
  if (cudaMemcpy(host.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost) != cudaSuccess) host.clear();
  return host;
}

// Random scalar inputs, every one within its rule's stated domain; edge values on purpose.
std::vector<ScalarIn> scalar_inputs(std::mt19937_64& rng, int count) {
  std::vector<ScalarIn> in(count);
  const std::uint64_t edges[] = {0, 1, 2, 3, 4, (std::uint64_t{1} << 62) - 1, std::uint64_t{1} << 62,
                                 std::uint64_t{4294967295} * 4294967295, ~std::uint64_t{0}};
  for (int i = 0; i < count; ++i) {
    ScalarIn& s = in[i];
    s.sqrt_bits = 1 + static_cast<int>(rng() % 64);
    const std::uint64_t mask = s.sqrt_bits == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << s.sqrt_bits) - 1;
    switch (i % 4) {
      case 0: s.n = rng() & mask; break;
      case 1: {  // a perfect square's neighbours
        const std::uint64_t r = (rng() & mask) >> (s.sqrt_bits / 2);
        s.n = (r * r + rng() % 3 - 1) & mask;
        break;
      }
      case 2: s.n = edges[rng() % (sizeof edges / sizeof edges[0])] & mask; break;
      default: s.n = mask; break;
    }
    s.ushift = 1 + static_cast<int>(rng() % 63);
    s.mode = rng() % 2 ? Rounding::HalfEven : Rounding::HalfAwayFromZero;
    s.shift = static_cast<int>(rng() % 92) - 21;
    s.v = static_cast<std::int64_t>(rng() % (std::uint64_t{1} << 41)) - (std::int64_t{1} << 40);
    if (i % 7 == 0 && s.shift > 0)  // exact ties: v = (2 j + 1) 2^(shift - 1)
      s.v = (2 * static_cast<std::int64_t>(rng() % 1000) - 999) * (std::int64_t{1} << (std::min(s.shift, 30) - 1));
    s.r = static_cast<std::int32_t>(rng());
    if (i % 11 == 0) s.r = i % 2 ? INT32_MAX : INT32_MIN;
    s.r_shift = static_cast<int>(rng() % 63);
    s.r_bits = 1 + static_cast<int>(rng() % 62);
    s.table = static_cast<int>(rng() % kTables);
    s.e = i % 3 == 0 ? static_cast<std::int64_t>(rng() % (std::uint64_t{1} << 40))
                     : static_cast<std::int64_t>(rng() % 4096);
    s.query = static_cast<int>(rng() % 4096);
    s.key = s.query + static_cast<int>(rng() % 5) - 2;
  }
  return in;
}

// Random rows within the rules' requirements: RMSNorm's sum fits 64 bits, the softmax's sum
// fits the reciprocal's input (n 2^value_bits <= 2^31), probability codes below 2^15. Edge rows
// on purpose: all-zero tokens, every value at the saturation bound, n of 1 to 3 (the mean
// square's renormalisation), one dominant score, equal scores, scores 2^31 apart, a single
// unmasked key, saturating narrow vector accumulators.
std::vector<RowIn> row_inputs(std::mt19937_64& rng, int count) {
  std::vector<RowIn> rows(count);
  for (int i = 0; i < count; ++i) {
    RowIn& r = rows[i];
    r.n = i % 10 == 0 ? 1 + static_cast<int>(rng() % 3) : 1 + static_cast<int>(rng() % kMaxRow);
    r.count = i % 3 == 0 ? 1 + static_cast<int>(rng() % r.n) : r.n;
    r.mode = rng() % 2 ? Rounding::HalfEven : Rounding::HalfAwayFromZero;
    r.mantissa_bits = std::initializer_list<int>{8, 16, 18, 24}.begin()[rng() % 4];
    const Format f = row_format(r);
    r.in_bits = 1 + static_cast<int>(rng() % static_cast<std::uint64_t>(rmsnorm_max_input_bits(r.n)));
    r.eps = i % 4 == 0 ? rng() % 100000 : 0;
    if (!rmsnorm_sum_fits(r.n, r.in_bits, r.eps)) r.eps = 0;
    r.out_bits = 2 + static_cast<int>(rng() % 31);
    // Tables whose sum fits: value_bits <= 31 - bit_length(n).
    do r.table = static_cast<int>(rng() % kTables);
    while (!softmax_sum_fits(r.n, table_shape(r.table).value_bits) || table_shape(r.table).mode != r.mode);
    r.prob_bits = 1 + static_cast<int>(rng() % 15);
    r.unit.lanes = 1 + static_cast<int>(rng() % 32);
    r.unit.operand_bits = 2 + static_cast<int>(rng() % 7);
    r.unit.acc_bits = 8 + static_cast<int>(rng() % 25);
    r.unit.overflow = rng() % 2 ? Overflow::Wrap : Overflow::Saturate;
    r.stride = 1 + static_cast<int>(rng() % kMaxStride);
    const int kind = i % 8;
    const std::int64_t spread = std::int64_t{1} << (1 + rng() % 32);
    for (int j = 0; j < kMaxRow; ++j) {
      std::int64_t v = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(spread)) - spread / 2;
      if (kind == 1) v = 0;                                            // all-zero token
      if (kind == 2) v = j % 2 ? INT32_MIN : INT32_MAX;                // beyond every saturation
      if (kind == 3) v = -(std::int64_t{1} << (r.in_bits - 1));        // at the bound
      if (kind == 4) v = 5;                                            // equal scores
      if (kind == 5) v = j == r.count / 2 ? INT32_MAX : INT32_MIN;     // one dominant, 2^32 apart
      r.x[j] = static_cast<std::int32_t>(std::clamp<std::int64_t>(v, INT32_MIN, INT32_MAX));
      const double g = std::ldexp(1.0 + static_cast<double>(rng() % 1000) / 1000.0, static_cast<int>(rng() % 16) - 4);
      const FixedPointResult pair = to_fixed_point(g, f);
      r.gains[j] = pair.status == FixedPointStatus::Ok ? pair.value : FixedPoint{1, 0};
      const std::int64_t top = signed_max(r.unit.operand_bits);
      const auto code = [&] { return static_cast<std::int8_t>(static_cast<std::int64_t>(rng() % (2 * top + 1)) - top); };
      r.a[j] = kind == 6 ? static_cast<std::int8_t>(top) : code();
      for (int k = 0; k < kMaxStride; ++k) {
        r.b[j * kMaxStride + k] = kind == 6 ? static_cast<std::int8_t>(top) : code();
        r.p[j * kMaxStride + k] =
            static_cast<std::uint8_t>(kind == 6 ? (1 << r.unit.operand_bits) - 1 : rng() % (1u << r.unit.operand_bits));
      }
    }
  }
  return rows;
}

TEST(TransformerDevice, DeviceEqualsHostOnRandomAndEdgeInputs) {
  std::string why;
  if (!device_present(why)) GTEST_SKIP() << "GPU test skipped: " << why;
  const std::uint64_t seed = transformer_seed();
  std::mt19937_64 rng(seed);

  // The exp2 tables, built on both sides; the host's then serve both sides' rows.
  std::vector<Exp2Table> tables(kTables);
  for (int t = 0; t < kTables; ++t) {
    const TableShape s = table_shape(t);
    tables[t] = exp2_table(s.index_bits, s.value_bits, s.mode);
  }
  Exp2Table* d_tables = nullptr;
  ASSERT_EQ(cudaMalloc(&d_tables, tables.size() * sizeof(Exp2Table)), cudaSuccess);
  exp2_tables_kernel<<<(kTables + 63) / 64, 64>>>(d_tables);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const std::vector<Exp2Table> device_tables = from_device(d_tables, tables.size());
  ASSERT_EQ(device_tables.size(), tables.size());
  for (int t = 0; t < kTables; ++t) {
    const TableShape s = table_shape(t);
    ASSERT_EQ(device_tables[t].index_bits, s.index_bits);
    ASSERT_EQ(device_tables[t].value_bits, s.value_bits);
    for (int e = 0; e < (1 << s.index_bits); ++e)
      ASSERT_EQ(device_tables[t].entry[e], tables[t].entry[e])
          << "exp2_table(" << s.index_bits << ", " << s.value_bits << ") entry " << e;
  }
  ASSERT_EQ(cudaMemcpy(d_tables, tables.data(), tables.size() * sizeof(Exp2Table), cudaMemcpyHostToDevice),
            cudaSuccess);

  int mismatches = 0;
  {
    const int n = 1 << 20;
    const std::vector<ScalarIn> in = scalar_inputs(rng, n);
    ScalarIn* d_in = to_device(in);
    ScalarOut* d_out = nullptr;
    ASSERT_NE(d_in, nullptr);
    ASSERT_EQ(cudaMalloc(&d_out, n * sizeof(ScalarOut)), cudaSuccess);
    scalar_rules_kernel<<<(n + 255) / 256, 256>>>(d_in, d_tables, d_out, n);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    const std::vector<ScalarOut> out = from_device(d_out, n);
    cudaFree(d_in);
    cudaFree(d_out);
    ASSERT_EQ(out.size(), in.size());
    for (int i = 0; i < n; ++i) {
      const std::string what = difference(scalar_rules(in[i], tables.data()), out[i]);
      if (!what.empty() && ++mismatches <= 5)
        ADD_FAILURE() << what << ": device differs from host at scalar input " << i << " (" << seed_note(seed) << ")";
    }
  }
  {
    const int n = 1 << 14;
    const std::vector<RowIn> in = row_inputs(rng, n);
    RowIn* d_in = to_device(in);
    RowOut* d_out = nullptr;
    ASSERT_NE(d_in, nullptr);
    ASSERT_EQ(cudaMalloc(&d_out, n * sizeof(RowOut)), cudaSuccess);
    row_rules_kernel<<<(n + 127) / 128, 128>>>(d_in, d_tables, d_out, n);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    const std::vector<RowOut> out = from_device(d_out, n);
    cudaFree(d_in);
    cudaFree(d_out);
    ASSERT_EQ(out.size(), in.size());
    RowOut host;
    for (int i = 0; i < n; ++i) {
      row_rules(in[i], tables.data(), host);
      const std::string what = difference(in[i], host, out[i]);
      if (!what.empty() && ++mismatches <= 10)
        ADD_FAILURE() << what << ": device differs from host at row " << i << " (n " << in[i].n << "; "
                      << seed_note(seed) << ")";
    }
  }
  cudaFree(d_tables);
  EXPECT_EQ(mismatches, 0) << seed_note(seed);
}

}  // namespace
}  // namespace qathw::arith
