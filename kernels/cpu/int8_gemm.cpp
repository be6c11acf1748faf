#include "qathw/kernels/int8_gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace qathw::kernels {

bool int8_gemm_available() {
  static const bool available = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                                __builtin_cpu_supports("avx512vnni");
  return available;
}

namespace {
bool g_enabled = true;
}  // namespace

bool int8_gemm_enabled() { return g_enabled && int8_gemm_available(); }
void set_int8_gemm_enabled(bool enabled) { g_enabled = enabled; }

// ---- packed columns --------------------------------------------------------------------------

namespace {

constexpr int kColumns = 16;  // output columns per vector (int32 lanes)
constexpr int kGroupBytes = 4 * kColumns;

int column_blocks(int n) { return (n + kColumns - 1) / kColumns; }

// A tile of R rows by NV blocks of 16 columns: R x NV accumulators, each k group one broadcast of
// 4 bytes per row and one load of 64 packed codes per block. Rows past m repeat row m - 1 and are
// not stored.
template <int R, int NV>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void packed_tile(const std::uint8_t* a, int lda, int m, int i0,
                                                                        const std::int8_t* b, int groups, int block0,
                                                                        int n, const std::int32_t* b_offset,
                                                                        std::int32_t* c, int ldc) {
  const std::uint8_t* arow[R];
  for (int r = 0; r < R; ++r) arow[r] = a + static_cast<long>(std::min(i0 + r, m - 1)) * lda;
  const std::int8_t* bblock[NV];
  for (int v = 0; v < NV; ++v) bblock[v] = b + static_cast<long>(block0 + v) * groups * kGroupBytes;
  __m512i acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_si512();
  for (int g = 0; g < groups; ++g) {
    __m512i bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_si512(bblock[v] + static_cast<long>(g) * kGroupBytes);
    for (int r = 0; r < R; ++r) {
      std::int32_t four;
      std::memcpy(&four, arow[r] + 4 * g, 4);
      const __m512i av = _mm512_set1_epi32(four);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], av, bv[v]);
    }
  }
  for (int v = 0; v < NV; ++v) {
    const int j = (block0 + v) * kColumns;
    const int left = n - j;
    const __mmask16 mask = left >= kColumns ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1);
    const __m512i offset = b_offset ? _mm512_maskz_loadu_epi32(mask, b_offset + j) : _mm512_setzero_si512();
    for (int r = 0; r < R && i0 + r < m; ++r)
      _mm512_mask_storeu_epi32(c + static_cast<long>(i0 + r) * ldc + j, mask, _mm512_sub_epi32(acc[r][v], offset));
  }
}

// The tiles of rows [i0, i0 + R) across every column block, NV blocks at a time.
template <int R, int NV>
void packed_row_tile(const std::uint8_t* a, int lda, int m, int i0, const std::int8_t* b, int groups, int n,
                     const std::int32_t* b_offset, std::int32_t* c, int ldc) {
  const int blocks = column_blocks(n);
  int block = 0;
  for (; block + NV <= blocks; block += NV) packed_tile<R, NV>(a, lda, m, i0, b, groups, block, n, b_offset, c, ldc);
  for (; block < blocks; ++block) packed_tile<R, 1>(a, lda, m, i0, b, groups, block, n, b_offset, c, ldc);
}

// ---- chunked saturating accumulation ----------------------------------------------------------

// A tile of R rows by NV blocks of 16 columns: per chunk the exact partial sums (the high bytes'
// and, Wide, the low bytes'), then acc = clamp(acc + partial, lo, hi) in registers.
template <int R, int NV, bool Wide>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void chunked_tile(const ChunkedOperands& x, int m, int i0,
                                                                         int block0, int n, std::int32_t* c, int ldc) {
  const int groups = x.chunks * x.chunk_groups;
  const std::uint8_t* high[R];
  const std::uint8_t* low[R];
  for (int r = 0; r < R; ++r) {
    const long row = static_cast<long>(std::min(i0 + r, m - 1)) * x.lda;
    high[r] = x.a_high + row;
    low[r] = Wide ? x.a_low + row : nullptr;
  }
  const std::int8_t* bblock[NV];
  __mmask16 mask[NV];
  for (int v = 0; v < NV; ++v) {
    bblock[v] = x.packed_b + static_cast<long>(block0 + v) * groups * kGroupBytes;
    const int left = n - (block0 + v) * kColumns;
    mask[v] = left >= kColumns ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1);
  }
  const __m512i lo = _mm512_set1_epi32(x.lo), hi = _mm512_set1_epi32(x.hi);
  __m512i acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_si512();
  for (int chunk = 0; chunk < x.chunks; ++chunk) {
    __m512i p[R][NV], q[R][NV];
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < NV; ++v) p[r][v] = q[r][v] = _mm512_setzero_si512();
    const int g0 = chunk * x.chunk_groups;
    for (int g = g0; g < g0 + x.chunk_groups; ++g) {
      __m512i bv[NV];
      for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_si512(bblock[v] + static_cast<long>(g) * kGroupBytes);
      for (int r = 0; r < R; ++r) {
        std::int32_t four;
        std::memcpy(&four, high[r] + 4 * g, 4);
        const __m512i av = _mm512_set1_epi32(four);
        for (int v = 0; v < NV; ++v) p[r][v] = _mm512_dpbusd_epi32(p[r][v], av, bv[v]);
        if (Wide) {
          std::memcpy(&four, low[r] + 4 * g, 4);
          const __m512i al = _mm512_set1_epi32(four);
          for (int v = 0; v < NV; ++v) q[r][v] = _mm512_dpbusd_epi32(q[r][v], al, bv[v]);
        }
      }
    }
    for (int v = 0; v < NV; ++v) {
      const __m512i offset =
          _mm512_maskz_loadu_epi32(mask[v], x.chunk_offsets + static_cast<long>(chunk) * n + (block0 + v) * kColumns);
      for (int r = 0; r < R; ++r) {
        __m512i partial = _mm512_sub_epi32(p[r][v], offset);
        if (Wide) partial = _mm512_add_epi32(_mm512_slli_epi32(partial, 8), q[r][v]);
        acc[r][v] = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(acc[r][v], partial), lo), hi);
      }
    }
  }
  for (int v = 0; v < NV; ++v)
    for (int r = 0; r < R && i0 + r < m; ++r)
      _mm512_mask_storeu_epi32(c + static_cast<long>(i0 + r) * ldc + (block0 + v) * kColumns, mask[v], acc[r][v]);
}

template <int R, int NV, bool Wide>
void chunked_row_tile(const ChunkedOperands& x, int m, int i0, int n, std::int32_t* c, int ldc) {
  const int blocks = column_blocks(n);
  int block = 0;
  for (; block + NV <= blocks; block += NV) chunked_tile<R, NV, Wide>(x, m, i0, block, n, c, ldc);
  for (; block < blocks; ++block) chunked_tile<R, 1, Wide>(x, m, i0, block, n, c, ldc);
}

}  // namespace

void gemm_u8s8_chunked_saturate(const ChunkedOperands& x, int m, int n, std::int32_t* c, int ldc) {
  // Accumulators, partial sums (two with low bytes) and operands within the 32 vector registers.
  const int rows = 4;
  const int tiles = (m + rows - 1) / rows;
  const long work = static_cast<long>(m) * n * x.chunks * x.chunk_groups;
#pragma omp parallel for schedule(static) if (work > (1L << 20))
  for (int t = 0; t < tiles; ++t) {
    if (x.a_low) chunked_row_tile<rows, 2, true>(x, m, t * rows, n, c, ldc);
    else chunked_row_tile<rows, 3, false>(x, m, t * rows, n, c, ldc);
  }
}

std::size_t packed_columns_bytes(int n, int k) {
  return static_cast<std::size_t>(column_blocks(n)) * (padded_depth(k) / 4) * kGroupBytes;
}

void pack_int8_column(const std::int8_t* row, int j, int k, std::int8_t* packed) {
  const int groups = padded_depth(k) / 4;
  std::int8_t* block = packed + static_cast<long>(j / kColumns) * groups * kGroupBytes + (j % kColumns) * 4;
  for (int g = 0; g < groups; ++g) std::memcpy(block + static_cast<long>(g) * kGroupBytes, row + 4 * g, 4);
}

void pack_int8_columns(const float* codes, int n, int k, std::int8_t* packed, std::int32_t* offsets) {
  std::fill_n(packed, packed_columns_bytes(n, k), std::int8_t{0});
#pragma omp parallel if (static_cast<long>(n) * k > 32768)
  {
    std::vector<std::int8_t> row(static_cast<std::size_t>(padded_depth(k)), 0);
#pragma omp for schedule(static)
    for (int j = 0; j < n; ++j) {
      std::int32_t sum = 0;
      for (int kk = 0; kk < k; ++kk) {
        row[static_cast<std::size_t>(kk)] = static_cast<std::int8_t>(codes[static_cast<long>(j) * k + kk]);
        sum += row[static_cast<std::size_t>(kk)];
      }
      pack_int8_column(row.data(), j, k, packed);
      offsets[j] = 128 * sum;
    }
  }
}

void gemm_u8s8_packed(const std::uint8_t* a, int lda, const std::int8_t* packed_b, const std::int32_t* b_offset, int m,
                      int n, int k, std::int32_t* c, int ldc) {
  // Tiles of 24 accumulators: more rows where fewer column blocks share a broadcast.
  const int groups = padded_depth(k) / 4, blocks = column_blocks(n);
  const int rows = blocks >= 4 ? 6 : blocks == 3 ? 8 : blocks == 2 ? 12 : 24;
  const int tiles = (m + rows - 1) / rows;
#pragma omp parallel for schedule(static) if (static_cast<long>(m) * n * k > (1L << 22))
  for (int t = 0; t < tiles; ++t) {
    const int i0 = t * rows;
    if (blocks >= 4) packed_row_tile<6, 4>(a, lda, m, i0, packed_b, groups, n, b_offset, c, ldc);
    else if (blocks == 3) packed_row_tile<8, 3>(a, lda, m, i0, packed_b, groups, n, b_offset, c, ldc);
    else if (blocks == 2) packed_row_tile<12, 2>(a, lda, m, i0, packed_b, groups, n, b_offset, c, ldc);
    else packed_row_tile<24, 1>(a, lda, m, i0, packed_b, groups, n, b_offset, c, ldc);
  }
}

}  // namespace qathw::kernels
