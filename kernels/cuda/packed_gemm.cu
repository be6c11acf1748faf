// The deployed model's layer on packed weights (2-bit ternary, 4-bit INT4 codes, as the bundle and
// the weight SRAM hold them): decode with arith::decode_code / arith::load_code, multiply with
// arith::pe_product, accumulate with arith::accumulate, requantize with arith::requantize.
#include <type_traits>

#include "common.cuh"

namespace qathw::kernels::cuda {
namespace {

constexpr int kWarps = detail::kThreads / 32;  // outputs per block
constexpr int kWordBytes = kPackedWordBytes;    // one uint4 load per lane
static_assert(kWordBytes == sizeof(uint4), "the layer kernel reads packed weights as uint4 words");

// One warp per (sample, output channel n): blockIdx.y is the sample.
template <typename Code>
__global__ void __launch_bounds__(detail::kThreads) packed_layer_kernel(
    const std::uint8_t* __restrict packed, const Code* __restrict x, int in, int out, int lanes, arith::Format f,
    bool order_free, const arith::FixedPoint* __restrict requant, bool relu, std::int32_t* __restrict z) {
  const int lane = threadIdx.x % 32;
  const int n = blockIdx.x * kWarps + threadIdx.x / 32;
  if (n >= out) return;  // the whole warp leaves together
  const std::size_t sample = blockIdx.y;
  const Code* xs = x + sample * in;
  const arith::WeightFormat format = f.weights;
  const int bits = arith::code_bits(format);
  const int per_byte = 8 / bits;
  const std::size_t first = static_cast<std::size_t>(n) * in;  // code index of W[n][0]
  const std::size_t end = first + in;
  std::int64_t acc = 0;
  if (order_free) {
    // The exact sum in any order, then the overflow rule once (equal to arith::dot here).
    const std::size_t codes_per_word = static_cast<std::size_t>(kWordBytes) * per_byte;
    const std::size_t word0 = first / codes_per_word, word1 = (end - 1) / codes_per_word;
    std::int64_t sum = 0;
    for (std::size_t w = word0 + lane; w <= word1; w += 32) {
      const uint4 v = reinterpret_cast<const uint4*>(packed)[w];
      const unsigned parts[4] = {v.x, v.y, v.z, v.w};
      const std::size_t base = w * codes_per_word;
      const bool inside = base >= first && base + codes_per_word <= end;
#pragma unroll
      for (int q = 0; q < 4; ++q)
#pragma unroll
        for (int byte = 0; byte < 4; ++byte) {
          const unsigned field = parts[q] >> (8 * byte);
          for (int slot = 0; slot < per_byte; ++slot) {
            const std::size_t i = base + static_cast<std::size_t>((q * 4 + byte) * per_byte + slot);
            if (inside || (i >= first && i < end)) {
              const int code = arith::decode_code(static_cast<std::uint8_t>(field >> (slot * bits)), format);
              sum += arith::pe_product(xs[i - first], code, format);
            }
          }
        }
    }
    sum = detail::warp_reduce(sum, detail::Sum{});
    acc = arith::accumulator_of_exact_sum(sum, f);
  } else {
    // The array's order: partial sums of `lanes` products (one chunk per warp lane), folded into
    // the accumulator chunk by chunk with the overflow rule, as arith::dot does.
    const int chunks = (in + lanes - 1) / lanes;
    for (int base = 0; base < chunks; base += 32) {
      std::int64_t partial = 0;
      const int chunk = base + lane;
      if (chunk < chunks) {
        const int k1 = (chunk + 1) * lanes < in ? (chunk + 1) * lanes : in;
        for (int k = chunk * lanes; k < k1; ++k)
          partial += arith::pe_product(xs[k], arith::load_code(packed, first + k, format), format);
      }
      for (int j = 0; j < 32 && base + j < chunks; ++j)
        acc = arith::accumulate(acc, __shfl_sync(detail::kFullMask, partial, j), f);
    }
  }
  if (lane == 0) {
    z[sample * out + n] = static_cast<std::int32_t>(arith::epilogue(acc, requant[n], relu, f));
  }
}

// The same layer for int8 codes where the sum is order-free and each row's packed bytes are a
// multiple of 4 (ternary: in % 16 == 0; INT4: in % 8 == 0): each 32-bit word of packed codes is
// expanded, byte by byte, through a table built with arith::decode_code into int8 lanes, and
// multiplied and summed four at a time with __dp4a. dp4a forms the exact products x * w, which
// equal arith::pe_product for every code (the arith tests check that exhaustively); the int32 sum
// wraps modulo 2^32 at worst, which wrap(sum, acc_bits <= 32) does not see, and under saturation
// an order-free sum stays within acc_bits.
__global__ void __launch_bounds__(detail::kThreads) packed_layer_dp4a_kernel(
    const std::uint8_t* __restrict packed, const std::int8_t* __restrict x, int in, int out, arith::Format f,
    const arith::FixedPoint* __restrict requant, bool relu, std::int32_t* __restrict z) {
  __shared__ unsigned table[256];  // byte -> its codes as int8 lanes (4 ternary, or 2 INT4 in the low half)
  const arith::WeightFormat format = f.weights;
  const int bits = arith::code_bits(format);
  const int per_byte = 8 / bits;
  for (int b = threadIdx.x; b < 256; b += blockDim.x) {
    unsigned lanes = 0;
    for (int slot = 0; slot < per_byte; ++slot) {
      const int code = arith::decode_code(static_cast<std::uint8_t>(b >> (slot * bits)), format);
      lanes |= (static_cast<unsigned>(code) & 0xffu) << (8 * slot);
    }
    table[b] = lanes;
  }
  __syncthreads();
  const int lane = threadIdx.x % 32;
  const int n = blockIdx.x * kWarps + threadIdx.x / 32;
  if (n >= out) return;
  const std::size_t sample = blockIdx.y;
  const int* xs = reinterpret_cast<const int*>(x + sample * in);  // 4-byte aligned: in % 8 == 0
  const int words = in / per_byte / 4;                              // 32-bit words of the row
  const unsigned* row = reinterpret_cast<const unsigned*>(packed) + static_cast<std::size_t>(n) * words;
  int sum = 0;
  for (int u = lane; u < words; u += 32) {
    const unsigned word = row[u];
    if (format == arith::WeightFormat::Ternary) {
      const int* xw = xs + u * 4;  // 16 codes: 4 int8x4 groups
#pragma unroll
      for (int j = 0; j < 4; ++j) sum = __dp4a(xw[j], static_cast<int>(table[(word >> (8 * j)) & 0xffu]), sum);
    } else {
      const int* xw = xs + u * 2;  // 8 codes: 2 int8x4 groups
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const unsigned lo = table[(word >> (16 * j)) & 0xffu], hi = table[(word >> (16 * j + 8)) & 0xffu];
        sum = __dp4a(xw[j], static_cast<int>((lo & 0xffffu) | (hi << 16)), sum);
      }
    }
  }
  // Summed as unsigned: modulo 2^32, without signed overflow.
  const unsigned total = detail::warp_reduce(static_cast<unsigned>(sum), detail::Sum{});
  if (lane == 0) {
    const std::int64_t acc = arith::accumulator_of_exact_sum(static_cast<std::int64_t>(static_cast<std::int32_t>(total)), f);
    z[sample * out + n] = static_cast<std::int32_t>(arith::epilogue(acc, requant[n], relu, f));
  }
}

template <typename Code>
void launch(const std::uint8_t* packed, const Code* x, int samples, int in, int out, int lanes, const arith::Format& f,
            const arith::FixedPoint* requant, bool relu, std::int32_t* z) {
  if (samples <= 0 || out <= 0 || in <= 0) return;
  if (samples > 65535) throw CudaError("packed_layer: at most 65535 samples per call");
  if (lanes < 1) throw CudaError("packed_layer: lanes must be at least 1");
  const dim3 grid((out + kWarps - 1) / kWarps, samples);
  const int row_bits = in * arith::code_bits(f.weights);
  if (std::is_same<Code, std::int8_t>::value && arith::accumulation_order_free(in, f) && row_bits % 32 == 0) {
    packed_layer_dp4a_kernel<<<grid, detail::kThreads>>>(packed, reinterpret_cast<const std::int8_t*>(x), in, out, f,
                                                          requant, relu, z);
    detail::check_launch("packed_layer");
    return;
  }
  packed_layer_kernel<Code><<<grid, detail::kThreads>>>(packed, x, in, out, lanes, f, arith::accumulation_order_free(in, f),
                                                         requant, relu, z);
  detail::check_launch("packed_layer");
}

}  // namespace

void packed_layer(const std::uint8_t* packed, const std::int8_t* x, int samples, int in, int out, int lanes,
                  const arith::Format& f, const arith::FixedPoint* requant, bool relu, std::int32_t* z) {
  launch(packed, x, samples, in, out, lanes, f, requant, relu, z);
}
void packed_layer(const std::uint8_t* packed, const std::int16_t* x, int samples, int in, int out, int lanes,
                  const arith::Format& f, const arith::FixedPoint* requant, bool relu, std::int32_t* z) {
  launch(packed, x, samples, in, out, lanes, f, requant, relu, z);
}

}  // namespace qathw::kernels::cuda
