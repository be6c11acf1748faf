#include "qathw/kernels/quant_ops.h"

#include "qathw/kernels/int8_gemm.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <immintrin.h>

namespace qathw::kernels {
namespace {

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMajorMap = Eigen::Map<RowMajor>;
using ConstRowMajorMap = Eigen::Map<const RowMajor>;

}  // namespace

float quantize_weights(const float* w, int out, int in, const arith::Format& f, float* codes, float* scales,
                       float* dequantized, float* ste_mask, arith::FixedPoint* requant) {
  const std::size_t per_row = static_cast<std::size_t>(in);
  if (f.weights == arith::WeightFormat::Ternary) {
    std::uint64_t sum = 0;  // integer sum: the same whatever the thread split
    const long total = static_cast<long>(per_row) * out;
#pragma omp parallel for simd schedule(static) reduction(+ : sum) if (total > 32768)
    for (long i = 0; i < total; ++i) sum += arith::abs_fixed(w[i]);
    const float scale = arith::weight_scale(arith::mean_from_abs_fixed(sum, static_cast<std::uint64_t>(total)), f.weights);
    std::fill(scales, scales + out, scale);
  } else {
#pragma omp parallel for schedule(static) if (static_cast<long>(out) * in > 32768)
    for (int n = 0; n < out; ++n) {
      float amax = 0;
#pragma omp simd reduction(max : amax)
      for (std::size_t k = 0; k < per_row; ++k) amax = std::max(amax, std::fabs(w[n * per_row + k]));
      scales[n] = arith::weight_scale(amax, f.weights);
    }
  }
  const float reference = *std::max_element(scales, scales + out);
  // Local copies: the enums are char-sized, so loads through `f` could alias the float outputs
  // and would keep the loop from vectorizing.
  const arith::WeightFormat format = f.weights;
  const arith::Rounding rounding = f.rounding;
#pragma omp parallel for schedule(static) if (static_cast<long>(out) * in > 32768)
  for (int n = 0; n < out; ++n) {
    const float s = scales[n];
    const float* __restrict wr = w + n * per_row;
    float* __restrict cr = codes + n * per_row;
    float* __restrict dr = dequantized + n * per_row;
    float* __restrict mr = ste_mask + n * per_row;
    for (std::size_t k = 0; k < per_row; ++k) {
      const float c = arith::weight_code_value(wr[k], s, format, rounding);
      cr[k] = c;
      dr[k] = c * s;
      mr[k] = arith::weight_in_range(wr[k], s, format) ? 1.0f : 0.0f;
    }
  }
  // Requantization pairs after the parallel loop: an exception must not leave an OpenMP region.
  for (int n = 0; n < out; ++n) {
    const auto r = arith::requant_pair(scales[n], reference, f);
    if (r.status != arith::FixedPointStatus::Ok)
      throw std::runtime_error("weight scale ratio " + std::to_string(scales[n] / reference) + " of output channel " +
                               std::to_string(n) + " is not representable in the target's scale format");
    requant[n] = r.value;
  }
  return reference;
}

template <typename Int>
void quantize_tokens(const Int* values, int rows, int cols, const arith::Format& format, float* codes,
                     std::int64_t* amax, std::uint8_t* offset_codes, int ld) {
  const arith::Format f = format;  // a local copy: outputs cannot alias it, so loops vectorize
#pragma omp parallel for schedule(static) if (static_cast<long>(rows) * cols > 32768)
  for (int b = 0; b < rows; ++b) {
    float* c = codes + static_cast<std::size_t>(b) * cols;
    amax[b] = arith::quantize_token(values + static_cast<std::size_t>(b) * cols, cols, c, f).amax;
    if (offset_codes) {
      std::uint8_t* o = offset_codes + static_cast<std::size_t>(b) * ld;
      for (int k = 0; k < cols; ++k) o[k] = static_cast<std::uint8_t>(static_cast<int>(c[k]) + 128);
    }
  }
}

template void quantize_tokens<std::uint8_t>(const std::uint8_t*, int, int, const arith::Format&, float*,
                                            std::int64_t*, std::uint8_t*, int);
template void quantize_tokens<std::int32_t>(const std::int32_t*, int, int, const arith::Format&, float*,
                                            std::int64_t*, std::uint8_t*, int);

namespace {

// One row of accumulators through the epilogue, with the rounding and overflow modes constants
// of the instance: the per-element mode tests fold away. GCC still leaves it scalar (a 64-bit
// shift by each channel's 32-bit shift count has no vector form), hence the AVX-512 rows below.
template <arith::Rounding R, arith::Overflow O, typename Acc>
void epilogue_rows(const Acc* __restrict in, std::int32_t* __restrict out, int rows, int cols,
                   const std::int64_t* __restrict m, const std::int64_t* __restrict s, bool relu, arith::Format g) {
  g.rounding = R;
  g.overflow = O;
  for (long e = 0; e < static_cast<long>(rows) * cols; e += cols)
    for (int n = 0; n < cols; ++n) {
      const std::int64_t a = arith::accumulator_of_exact_sum(static_cast<std::int64_t>(in[e + n]), g);
      out[e + n] =
          static_cast<std::int32_t>(arith::epilogue(a, arith::FixedPoint{m[n], static_cast<int>(s[n])}, relu, g));
    }
}

// ---- the same row with AVX-512, 8 accumulators in 64-bit lanes at a time -------------------
// Each step is the arith rule it names, lane by lane (tests/training/network_test.cpp holds the
// results equal to arith::epilogue over every mode, shift and accumulator width).

// Accumulators in int64 lanes: exact integers whose overflow rule has yet to apply. Float
// accumulators are exact integers below 2^24 (float_accumulation_exact), int32 ones anything.
__attribute__((target("avx512f,avx512vl"))) inline __m512i load_lanes(const float* p, __mmask8 k) {
  return _mm512_cvtepi32_epi64(_mm256_cvttps_epi32(_mm256_maskz_loadu_ps(k, p)));
}
__attribute__((target("avx512f,avx512vl"))) inline __m512i load_lanes(const std::int32_t* p, __mmask8 k) {
  return _mm512_cvtepi32_epi64(_mm256_maskz_loadu_epi32(k, p));
}
__attribute__((target("avx512f,avx512vl"))) inline __m512i load_lanes(const std::int64_t* p, __mmask8 k) {
  return _mm512_maskz_loadu_epi64(k, p);
}

template <arith::Rounding R, arith::Overflow O, typename Acc>
__attribute__((target("avx512f,avx512vl"))) void epilogue_rows_avx512(const Acc* __restrict in,
                                                                     std::int32_t* __restrict out, int rows, int cols,
                                                                     const std::int64_t* __restrict m,
                                                                     const std::int64_t* __restrict s, bool relu,
                                                                     arith::Format g) {
  const __m512i acc_min = _mm512_set1_epi64(arith::signed_min(g.acc_bits));
  const __m512i acc_max = _mm512_set1_epi64(arith::signed_max(g.acc_bits));
  const __m512i wrap_shift = _mm512_set1_epi64(64 - g.acc_bits);
  const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi64(1);
  for (long e = 0; e < static_cast<long>(rows) * cols; e += cols)
  for (int n = 0; n < cols; n += 8) {
    const __mmask8 k = cols - n >= 8 ? 0xFF : static_cast<__mmask8>((1u << (cols - n)) - 1);
    __m512i a = load_lanes(in + e + n, k);
    // accumulator_of_exact_sum: saturate to acc_bits, or wrap (sign-extend the low acc_bits).
    if (O == arith::Overflow::Saturate) a = _mm512_min_epi64(_mm512_max_epi64(a, acc_min), acc_max);
    else a = _mm512_srav_epi64(_mm512_sllv_epi64(a, wrap_shift), wrap_shift);
    // requantize: the product (|a| <= 2^31 and mantissa < 2^31: both fit the low 32 bits that
    // vpmuldq multiplies, signed), round_shift, saturate to acc_bits.
    const __m512i shift = _mm512_maskz_loadu_epi64(k, s + n);
    const __m512i v = _mm512_mul_epi32(a, _mm512_maskz_loadu_epi64(k, m + n));
    const __m512i half = _mm512_srli_epi64(_mm512_sllv_epi64(one, shift), 1);  // 0 for shift 0
    __m512i q;
    if (R == arith::Rounding::HalfAwayFromZero) {
      const __m512i mag = _mm512_srlv_epi64(_mm512_add_epi64(_mm512_abs_epi64(v), half), shift);
      q = _mm512_mask_sub_epi64(mag, _mm512_cmplt_epi64_mask(v, zero), zero, mag);
    } else {
      const __m512i floor = _mm512_srav_epi64(v, shift);
      const __m512i rem = _mm512_sub_epi64(v, _mm512_sllv_epi64(floor, shift));
      const __mmask8 odd = _mm512_test_epi64_mask(floor, one);
      const __mmask8 up = _mm512_cmpgt_epi64_mask(rem, half) | (_mm512_cmpeq_epi64_mask(rem, half) & odd);
      // Shift 0 returns the product as it is (rem == half == 0 would otherwise round odd ones up).
      q = _mm512_mask_add_epi64(floor, up & _mm512_cmpneq_epi64_mask(shift, zero), floor, one);
    }
    q = _mm512_min_epi64(_mm512_max_epi64(q, acc_min), acc_max);
    if (relu) q = _mm512_max_epi64(q, zero);
    _mm256_mask_storeu_epi32(out + e + n, k, _mm512_cvtepi64_epi32(q));
  }
}

template <typename Acc>
using EpilogueRows = void (*)(const Acc*, std::int32_t*, int, int, const std::int64_t*, const std::int64_t*, bool,
                              arith::Format);

template <typename Acc>
EpilogueRows<Acc> epilogue_rows_for(const arith::Format& f) {
  using R = arith::Rounding;
  using O = arith::Overflow;
  static const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
  const bool even = f.rounding == R::HalfEven, wrap = f.overflow == O::Wrap;
  if (avx512) {
    if (even) return wrap ? epilogue_rows_avx512<R::HalfEven, O::Wrap, Acc> : epilogue_rows_avx512<R::HalfEven, O::Saturate, Acc>;
    return wrap ? epilogue_rows_avx512<R::HalfAwayFromZero, O::Wrap, Acc>
                : epilogue_rows_avx512<R::HalfAwayFromZero, O::Saturate, Acc>;
  }
  if (even) return wrap ? epilogue_rows<R::HalfEven, O::Wrap, Acc> : epilogue_rows<R::HalfEven, O::Saturate, Acc>;
  return wrap ? epilogue_rows<R::HalfAwayFromZero, O::Wrap, Acc> : epilogue_rows<R::HalfAwayFromZero, O::Saturate, Acc>;
}

}  // namespace

template <typename Acc>
void accumulator_epilogue(const Acc* acc, int rows, int cols, const arith::FixedPoint* requant, bool relu,
                          const arith::Format& format, std::int32_t* z) {
  const arith::Format f = format;
  // The pairs as two arrays of 64-bit lanes, read once per element.
  std::vector<std::int64_t> mantissa(cols), shift(cols);
  for (int n = 0; n < cols; ++n) {
    mantissa[n] = requant[n].mantissa;
    shift[n] = requant[n].shift;
  }
  const EpilogueRows<Acc> epilogue = epilogue_rows_for<Acc>(f);
  constexpr int kBlock = 64;  // rows a call
  const int blocks = (rows + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (static_cast<long>(rows) * cols > 32768)
  for (int b = 0; b < blocks; ++b)
    epilogue(acc + static_cast<std::size_t>(b) * kBlock * cols, z + static_cast<std::size_t>(b) * kBlock * cols,
             std::min(kBlock, rows - b * kBlock), cols, mantissa.data(), shift.data(), relu, f);
}

template void accumulator_epilogue<float>(const float*, int, int, const arith::FixedPoint*, bool,
                                          const arith::Format&, std::int32_t*);
template void accumulator_epilogue<std::int32_t>(const std::int32_t*, int, int, const arith::FixedPoint*, bool,
                                                 const arith::Format&, std::int32_t*);
template void accumulator_epilogue<std::int64_t>(const std::int64_t*, int, int, const arith::FixedPoint*, bool,
                                                 const arith::Format&, std::int32_t*);

bool float_accumulation_exact(int in, const arith::Format& f) {
  const bool float_exact = arith::dot_abs_bound(in, f) <= (std::int64_t{1} << 24);  // every integer up to 2^24 is a float
  return float_exact && arith::accumulation_order_free(in, f);
}

bool int8_accumulation_exact(int in, const arith::Format& f) {
  return f.act_bits <= 8 && arith::dot_abs_bound(in, f) < (std::int64_t{1} << 31) && arith::accumulation_order_free(in, f);
}

namespace {

// The int8 GEMM's layout of accumulate_exact: the k axis in chunks of the adder tree's `lanes`
// codes (the whole row where the order of summation is free), each padded to whole groups of 4.
struct ChunkLayout {
  int chunk, chunks, chunk_groups, depth;  // depth: the padded k
  bool wide;                               // codes above 8 bits: split into high and low bytes
};

ChunkLayout chunk_layout(int in, int lanes, const arith::Format& f) {
  ChunkLayout l;
  l.chunk = arith::accumulation_order_free(in, f) ? in : std::max(1, lanes);
  l.chunks = (in + l.chunk - 1) / l.chunk;
  l.chunk_groups = padded_depth(l.chunk) / 4;
  l.depth = l.chunks * l.chunk_groups * 4;
  l.wide = f.act_bits > 8;
  return l;
}

// Whether the int8 GEMM forms the accumulators exactly: codes up to 16 bits (two bytes), weight
// codes in a byte, and, when chunks accumulate under saturation, every accumulator plus a chunk's
// partial sum within int32.
bool int8_chunks_exact(int in, int lanes, const arith::Format& f) {
  if (in < 1 || !int8_gemm_enabled() || f.act_bits > 16 || arith::weight_qmax(f.weights) > 127) return false;
  if (arith::accumulation_order_free(in, f)) return true;
  const std::int64_t chunk_bound = static_cast<std::int64_t>(std::min(in, std::max(1, lanes))) *
                                   arith::act_qmax(f.act_bits) * arith::weight_qmax(f.weights);
  return -arith::signed_min(f.acc_bits) + chunk_bound <= arith::signed_max(32);
}

// accumulate_exact on the int8 GEMM. Codes above 8 bits are split x = 256 hi + lo (hi signed, lo
// unsigned), each half an exact int32 product (|hi| <= 128, lo <= 255). Order-free formats: one
// product of the whole row, the overflow rule applied once; otherwise the chunked, saturating
// kernel (arith::dot's accumulation, chunk by chunk).
void accumulate_exact_int8(const float* codes, const float* weight_codes, int rows, int out, int in, int lanes,
                           const arith::Format& f, std::int64_t* acc) {
  const ChunkLayout l = chunk_layout(in, lanes, f);
  // Weights in the padded layout, packed once (pack_int8_column); each chunk's offsets 128 sum(b).
  std::vector<std::int8_t> packed(packed_columns_bytes(out, l.depth), 0);
  std::vector<std::int32_t> chunk_offsets(static_cast<std::size_t>(l.chunks) * out, 0);
  {
    std::vector<std::int8_t> row(l.depth, 0);
    for (int n = 0; n < out; ++n) {
      const float* w = weight_codes + static_cast<std::size_t>(n) * in;
      for (int c = 0; c < l.chunks; ++c) {
        const int k0 = c * l.chunk, len = std::min(l.chunk, in - k0);
        std::int8_t* dst = row.data() + static_cast<std::size_t>(c) * l.chunk_groups * 4;
        std::int32_t sum = 0;
        for (int j = 0; j < len; ++j) {
          dst[j] = static_cast<std::int8_t>(w[k0 + j]);
          sum += dst[j];
        }
        chunk_offsets[static_cast<std::size_t>(c) * out + n] = 128 * sum;
      }
      pack_int8_column(row.data(), n, l.depth, packed.data());
    }
  }
  // The codes as bytes in the padded layout (padding bytes multiply zero weights).
  std::vector<std::uint8_t> high(static_cast<std::size_t>(rows) * l.depth, 128), low;
  if (l.wide) low.assign(high.size(), 0);
#pragma omp parallel for schedule(static) if (static_cast<long>(rows) * in > 32768)
  for (int r = 0; r < rows; ++r) {
    const float* x = codes + static_cast<std::size_t>(r) * in;
    for (int c = 0; c < l.chunks; ++c) {
      const int k0 = c * l.chunk, len = std::min(l.chunk, in - k0);
      const std::size_t at = static_cast<std::size_t>(r) * l.depth + static_cast<std::size_t>(c) * l.chunk_groups * 4;
      std::uint8_t* __restrict h = high.data() + at;
      if (l.wide) {
        std::uint8_t* __restrict lo = low.data() + at;
        for (int j = 0; j < len; ++j) {
          const int v = static_cast<int>(x[k0 + j]);
          h[j] = static_cast<std::uint8_t>((v >> 8) + 128);  // floor(v / 256), in [-128, 127]
          lo[j] = static_cast<std::uint8_t>(v & 255);
        }
      } else {
        for (int j = 0; j < len; ++j) h[j] = static_cast<std::uint8_t>(static_cast<int>(x[k0 + j]) + 128);
      }
    }
  }
  const std::size_t size = static_cast<std::size_t>(rows) * out;
  std::vector<std::int32_t> part(size);
  if (l.chunks == 1 && f.overflow == arith::Overflow::Wrap) {
    // One product of the whole row (order-free): the exact sum, then the overflow rule once.
    gemm_u8s8_packed(high.data(), l.depth, packed.data(), chunk_offsets.data(), rows, out, l.depth, part.data(), out);
    std::vector<std::int32_t> part_low(l.wide ? size : 0);
    if (l.wide)
      gemm_u8s8_packed(low.data(), l.depth, packed.data(), nullptr, rows, out, l.depth, part_low.data(), out);
    const arith::Format g = f;
    for (std::size_t i = 0; i < size; ++i)
      acc[i] = arith::accumulate(0, l.wide ? 256 * static_cast<std::int64_t>(part[i]) + part_low[i] : part[i], g);
    return;
  }
  // Saturating (order-free or not: one chunk is the whole row where no partial sum can saturate).
  const ChunkedOperands x{high.data(),  l.wide ? low.data() : nullptr,
                          l.depth,      packed.data(),
                          chunk_offsets.data(), l.chunks,
                          l.chunk_groups,       static_cast<std::int32_t>(arith::signed_min(f.acc_bits)),
                          static_cast<std::int32_t>(arith::signed_max(f.acc_bits))};
  gemm_u8s8_chunked_saturate(x, rows, out, part.data(), out);
  for (std::size_t i = 0; i < size; ++i) acc[i] = part[i];
}

}  // namespace

void accumulate_exact(const float* codes, const float* weight_codes, int rows, int out, int in, int lanes,
                      const arith::Format& f, std::int64_t* acc) {
  if (int8_chunks_exact(in, lanes, f))
    return accumulate_exact_int8(codes, weight_codes, rows, out, in, lanes, f, acc);
  const bool order_free = arith::accumulation_order_free(in, f);
  const int chunk = order_free ? in : std::max(1, lanes);
  const std::int64_t wmax = arith::weight_qmax(f.weights), float_exact = std::int64_t{1} << 24;
  const std::int64_t acc_max = arith::signed_max(f.acc_bits);
  // Weights transposed ([in x out]): the inner loops run over output channels, contiguous.
  std::vector<float> wt(static_cast<std::size_t>(in) * out);
  for (int n = 0; n < out; ++n)
    for (int k = 0; k < in; ++k) wt[static_cast<std::size_t>(k) * out + n] = weight_codes[static_cast<std::size_t>(n) * in + k];
  // Tokens in blocks, each block's pieces one single-threaded GEMM; blocks are independent (any
  // thread count gives the same integers).
  constexpr int kBlock = 64;
  const int blocks = (rows + kBlock - 1) / kBlock;
  const long work = static_cast<long>(rows) * out * in;
#pragma omp parallel for schedule(dynamic, 1) if (blocks > 1 && work > (1L << 18))
  for (int blk = 0; blk < blocks; ++blk) {
    const int r0 = blk * kBlock, count = std::min(kBlock, rows - r0);
    const std::size_t size = static_cast<std::size_t>(count) * out;
    std::vector<float> part(size);
    std::vector<std::int64_t> sum(size);
    // abs_prefix[r][k]: sum of |x| over the row's first k codes, which bounds any partial sum.
    std::vector<std::int64_t> abs_prefix(static_cast<std::size_t>(count) * (in + 1), 0);
    for (int r = 0; r < count; ++r)
      for (int k = 0; k < in; ++k) {
        const std::size_t at = static_cast<std::size_t>(r) * (in + 1) + k;
        abs_prefix[at + 1] =
            abs_prefix[at] + static_cast<std::int64_t>(std::fabs(codes[static_cast<std::size_t>(r0 + r) * in + k]));
      }
    auto bound = [&](int from, int to) {  // most |partial sum| of codes [from, to) in the block
      std::int64_t most = 0;
      for (int r = 0; r < count; ++r) {
        const std::int64_t* p = abs_prefix.data() + static_cast<std::size_t>(r) * (in + 1);
        most = std::max(most, (p[to] - p[from]) * wmax);
      }
      return most;
    };
    std::int64_t* a = acc + static_cast<std::size_t>(r0) * out;
    std::fill(a, a + size, 0);
    std::int64_t acc_abs = 0;  // most |accumulator| in the block so far
    for (int base = 0; base < in;) {
      // The longest run of whole chunks from `base` in which no accumulator of the block can
      // saturate: there, the chunks' partial sums accumulate exactly, so one sum of the run gives
      // what arith::dot's chunk-by-chunk accumulation gives. Without such a run: one chunk.
      int end = std::min(in, base + chunk);
      bool exact_run = f.overflow == arith::Overflow::Saturate && acc_abs + bound(base, end) <= acc_max;
      while (exact_run && end < in && acc_abs + bound(base, std::min(in, end + chunk)) <= acc_max) end = std::min(in, end + chunk);
      // The run (or chunk) in pieces whose float sums are exact.
      std::fill(sum.begin(), sum.end(), 0);
      for (int p0 = base; p0 < end;) {
        int p1 = p0 + 1;
        while (p1 < end && bound(p0, p1 + 1) < float_exact) ++p1;
        RowMajorMap(part.data(), count, out).noalias() =
            ConstRowMajorMap(codes + static_cast<std::size_t>(r0) * in, count, in).middleCols(p0, p1 - p0) *
            ConstRowMajorMap(wt.data(), in, out).middleRows(p0, p1 - p0);
        for (std::size_t i = 0; i < size; ++i) sum[i] += static_cast<std::int64_t>(part[i]);
        p0 = p1;
      }
      // The partial sum enters the accumulator under the overflow rule (a no-op inside a run).
      for (std::size_t i = 0; i < size; ++i) {
        a[i] = arith::accumulate(a[i], sum[i], f);
        acc_abs = std::max(acc_abs, a[i] < 0 ? -a[i] : a[i]);
      }
      base = end;
    }
  }
}

}  // namespace qathw::kernels
