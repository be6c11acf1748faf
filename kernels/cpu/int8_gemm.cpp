#include "qathw/kernels/int8_gemm.h"

#include <immintrin.h>

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

void pack_int8_rows(const float* codes, int rows, int cols, std::int8_t* packed, std::int32_t* offsets) {
  const int ld = padded_row(cols);
  for (int r = 0; r < rows; ++r) {
    std::int32_t sum = 0;
    for (int k = 0; k < ld; ++k) {
      const std::int8_t v = k < cols ? static_cast<std::int8_t>(codes[static_cast<long>(r) * cols + k]) : 0;
      packed[static_cast<long>(r) * ld + k] = v;
      sum += v;
    }
    offsets[r] = 128 * sum;
  }
}

namespace {

constexpr int kBlock = 4;  // 4 x 4 output block: 16 accumulators and 8 operand registers

// One 4 x 4 block of c. Rows past the end of a or b are read from row 0 and not stored.
__attribute__((target("avx512f,avx512bw,avx512vnni"))) inline void block_4x4(
    const std::uint8_t* a, const std::int8_t* b, const std::int32_t* b_offset, int m, int n, int lda, int i0, int j0,
    std::int32_t* c) {
  const std::uint8_t* arow[kBlock];
  const std::int8_t* brow[kBlock];
  for (int r = 0; r < kBlock; ++r) {
    arow[r] = a + static_cast<long>(i0 + r < m ? i0 + r : i0) * lda;
    brow[r] = b + static_cast<long>(j0 + r < n ? j0 + r : j0) * lda;
  }
  __m512i acc[kBlock][kBlock];
  for (auto& row : acc)
    for (auto& v : row) v = _mm512_setzero_si512();
  for (int k = 0; k < lda; k += kInt8RowAlign) {
    __m512i av[kBlock], bv[kBlock];
    for (int r = 0; r < kBlock; ++r) {
      av[r] = _mm512_loadu_si512(arow[r] + k);
      bv[r] = _mm512_loadu_si512(brow[r] + k);
    }
    for (int r = 0; r < kBlock; ++r)
      for (int s = 0; s < kBlock; ++s) acc[r][s] = _mm512_dpbusd_epi32(acc[r][s], av[r], bv[s]);
  }
  for (int r = 0; r < kBlock && i0 + r < m; ++r)
    for (int s = 0; s < kBlock && j0 + s < n; ++s)
      c[static_cast<long>(i0 + r) * n + j0 + s] = _mm512_reduce_add_epi32(acc[r][s]) - b_offset[j0 + s];
}

}  // namespace

__attribute__((target("avx512f,avx512bw,avx512vnni"))) void gemm_u8s8_abt(const std::uint8_t* a, const std::int8_t* b,
                                                                         const std::int32_t* b_offset, int m, int n,
                                                                         int lda, std::int32_t* c) {
  const int row_blocks = (m + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (static_cast<long>(m) * n * lda > (1L << 20))
  for (int bi = 0; bi < row_blocks; ++bi)
    for (int j0 = 0; j0 < n; j0 += kBlock) block_4x4(a, b, b_offset, m, n, lda, bi * kBlock, j0, c);
}

}  // namespace qathw::kernels
