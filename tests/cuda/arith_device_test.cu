// The arithmetic core compiled for the GPU: device results must equal host results, element for
// element, on millions of random inputs. Skips with a clear message where no GPU is present.
#include <cstdint>
#include <cstring>
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

}  // namespace
}  // namespace qathw::arith
