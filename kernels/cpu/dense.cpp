#include "qathw/kernels/dense.h"

#include <omp.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#if defined(__SSE__)
#include <xmmintrin.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <Eigen/Core>

namespace qathw::kernels {
namespace {

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMajor>;
using Map = Eigen::Map<RowMajor>;

// Flush-to-zero and denormals-are-zero in the calling thread. Late in training, gradients and
// optimizer moments fall into the denormal range, where arithmetic on some x86 processors is many
// times slower: there a run lost half its speed in its second half, at the same accuracy.
void flush_denormals() {
#if defined(__SSE__)
  _mm_setcsr(_mm_getcsr() | 0x8040);  // FTZ (bit 15) | DAZ (bit 6)
#endif
}

// The GEMMs share out fixed tiles of C, each computed by single-threaded Eigen, to the threads
// dynamically. Every element is then summed the same way whatever the thread count (so the
// count may follow the machine's load during a run without changing a bit), and a thread the OS
// holds back delays one tile rather than a fixed share of the work.
constexpr int kTileRows = 128, kTileCols = 128;

template <typename Tile>
void for_each_tile(int rows, int cols, int depth, Tile&& tile) {
  const int across = (cols + kTileCols - 1) / kTileCols;
  const int tiles = (rows + kTileRows - 1) / kTileRows * across;
  const long flops = static_cast<long>(rows) * cols * depth;
#pragma omp parallel for schedule(dynamic, 1) if (tiles > 1 && flops > (1L << 18))
  for (int t = 0; t < tiles; ++t) {
    const int i0 = t / across * kTileRows, j0 = t % across * kTileCols;
    tile(i0, std::min(kTileRows, rows - i0), j0, std::min(kTileCols, cols - j0));
  }
}

#if defined(__x86_64__)
// The kernel gradient of a convolution, c = a^T b: a is the chunk's output gradients (m rows of n,
// n a group's output channels, at most 32), b its patches (m rows of k). Eigen's micro kernel is
// 48 rows of c high, three times a 16-channel layer's; here c's columns are held in registers, n
// output channels to a vector (one or two vectors), P patch elements to a tile, and every element
// is summed over the rows in order: the same sums whatever the machine's thread count.
template <int NB, int P>
__attribute__((target("avx512f"))) void atb_tile(const float* a, const float* b, int m, int n, int k, int j0,
                                                 float* c) {
  __m512 acc[NB][P];
  #pragma GCC unroll 32
  for (int v = 0; v < NB; ++v)
    #pragma GCC unroll 32
    for (int p = 0; p < P; ++p) acc[v][p] = _mm512_setzero_ps();
  const __mmask16 tail = static_cast<__mmask16>((1u << (n - 16 * (NB - 1))) - 1);
  for (int r = 0; r < m; ++r) {
    const float* ar = a + static_cast<std::size_t>(r) * n;
    const float* br = b + static_cast<std::size_t>(r) * k + j0;
    __m512 av[NB];
    #pragma GCC unroll 32
    for (int v = 0; v < NB; ++v) av[v] = _mm512_maskz_loadu_ps(v + 1 == NB ? tail : __mmask16{0xFFFF}, ar + 16 * v);
    #pragma GCC unroll 32
    for (int p = 0; p < P; ++p) {
      const __m512 bp = _mm512_set1_ps(br[p]);
      #pragma GCC unroll 32
      for (int v = 0; v < NB; ++v) acc[v][p] = _mm512_fmadd_ps(av[v], bp, acc[v][p]);
    }
  }
  alignas(64) float column[16 * NB];
  #pragma GCC unroll 32
  for (int p = 0; p < P; ++p) {
    #pragma GCC unroll 32
    for (int v = 0; v < NB; ++v) _mm512_store_ps(column + 16 * v, acc[v][p]);
    for (int i = 0; i < n; ++i) c[static_cast<std::size_t>(i) * k + j0 + p] = column[i];
  }
}

// c's columns in tiles of 24 / NB, then 8, 4 and 1: a partition fixed by the shape, each tile
// summed by one thread, so the thread count changes no bit.
template <int NB>
void atb_narrow(const float* a, const float* b, int m, int n, int k, float* c) {
  constexpr int wide = 24 / NB;
  const int wide_tiles = k / wide;
  const int rest = k - wide_tiles * wide;  // in tiles of 8, 4, 1
  const int tiles = wide_tiles + rest / 8 + rest % 8 / 4 + rest % 4;
#pragma omp parallel for schedule(dynamic, 1) if (static_cast<long>(m) * n * k > (1L << 20))
  for (int t = 0; t < tiles; ++t) {
    if (t < wide_tiles) {
      atb_tile<NB, wide>(a, b, m, n, k, t * wide, c);
      continue;
    }
    int j0 = wide_tiles * wide, u = t - wide_tiles;
    if (u < rest / 8) {
      atb_tile<NB, 8>(a, b, m, n, k, j0 + 8 * u, c);
      continue;
    }
    j0 += rest / 8 * 8, u -= rest / 8;
    if (u < rest % 8 / 4) {
      atb_tile<NB, 4>(a, b, m, n, k, j0, c);
      continue;
    }
    j0 += rest % 8 / 4 * 4, u -= rest % 8 / 4;
    atb_tile<NB, 1>(a, b, m, n, k, j0 + u, c);
  }
}

// c = a b with a's rows short (n, a group's output channels, at most 64): the input gradient of
// a convolution's patches. Six rows of c by four vectors of its columns per tile, b's rows read in
// place (no packing: b is the kernel, a few KiB, in cache), each element summed over n in order.
template <int R, int V>
__attribute__((target("avx512f"))) void ab_tile(const float* a, const float* b, int n, int k, int i0, int j0,
                                                __mmask16 last, float* c) {
  __m512 acc[R][V];
  #pragma GCC unroll 32
  for (int r = 0; r < R; ++r)
    #pragma GCC unroll 32
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int o = 0; o < n; ++o) {
    const float* bo = b + static_cast<std::size_t>(o) * k + j0;
    __m512 bv[V];
    #pragma GCC unroll 32
    for (int v = 0; v < V; ++v) bv[v] = _mm512_maskz_loadu_ps(v + 1 == V ? last : __mmask16{0xFFFF}, bo + 16 * v);
    #pragma GCC unroll 32
    for (int r = 0; r < R; ++r) {
      const __m512 ar = _mm512_set1_ps(a[static_cast<std::size_t>(i0 + r) * n + o]);
      #pragma GCC unroll 32
      for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(ar, bv[v], acc[r][v]);
    }
  }
  #pragma GCC unroll 32
  for (int r = 0; r < R; ++r)
    #pragma GCC unroll 32
    for (int v = 0; v < V; ++v)
      _mm512_mask_storeu_ps(c + static_cast<std::size_t>(i0 + r) * k + j0 + 16 * v,
                            v + 1 == V ? last : __mmask16{0xFFFF}, acc[r][v]);
}

template <int R>
void ab_rows(const float* a, const float* b, int n, int k, int i0, float* c) {
  int j0 = 0;
  for (; j0 + 64 <= k; j0 += 64) ab_tile<R, 4>(a, b, n, k, i0, j0, 0xFFFF, c);
  for (; j0 < k; j0 += 16) {
    const int left = std::min(16, k - j0);
    ab_tile<R, 1>(a, b, n, k, i0, j0, static_cast<__mmask16>((1u << left) - 1), c);
  }
}

void ab_short(const float* a, const float* b, int m, int n, int k, float* c) {
  const int blocks = m / 6, tiles = blocks + m % 6;  // rows by six, then one by one
#pragma omp parallel for schedule(dynamic, 1) if (static_cast<long>(m) * n * k > (1L << 20))
  for (int t = 0; t < tiles; ++t) {
    if (t < blocks) ab_rows<6>(a, b, n, k, 6 * t, c);
    else ab_rows<1>(a, b, n, k, 6 * blocks + (t - blocks), c);
  }
}

// c[i][j] = sum over o < depth of A(i, o) b[o][j], A(i, o) = a[i * ai + o * ao]: a^T b and a b
// with both operands wide (the MLP's and the transformer's gradients), without Eigen's repacking
// per tile. A task is a panel of V vectors of c's columns by 16 tiles of R rows: b's columns are
// first copied to a contiguous panel (wide rows a power-of-two bytes apart would otherwise fall
// into the same cache sets), then each tile keeps R x V = 24 sums in registers, each element
// summed over o in order: the same sums whatever the thread count.
template <int R, int V>
__attribute__((target("avx512f"))) void broadcast_tile(const float* a, long ai, long ao, const float* panel,
                                                       int depth, int rows, int i0, int cols, float* c, long ldc) {
  const float* arow[R];
  for (int r = 0; r < R; ++r) arow[r] = a + static_cast<long>(std::min(i0 + r, rows - 1)) * ai;
  __m512 acc[R][V];
  #pragma GCC unroll 32
  for (int r = 0; r < R; ++r)
    #pragma GCC unroll 32
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int o = 0; o < depth; ++o) {
    const float* po = panel + static_cast<long>(o) * 16 * V;
    __m512 bv[V];
    #pragma GCC unroll 32
    for (int v = 0; v < V; ++v) bv[v] = _mm512_loadu_ps(po + 16 * v);
    #pragma GCC unroll 32
    for (int r = 0; r < R; ++r) {
      const __m512 ar = _mm512_set1_ps(arow[r][o * ao]);
      #pragma GCC unroll 32
      for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(ar, bv[v], acc[r][v]);
    }
  }
  #pragma GCC unroll 32
  for (int v = 0; v < V; ++v) {
    const int left = std::clamp(cols - 16 * v, 0, 16);
    const __mmask16 mask = static_cast<__mmask16>((1u << left) - 1);
    for (int r = 0; r < R && i0 + r < rows; ++r)
      _mm512_mask_storeu_ps(c + static_cast<long>(i0 + r) * ldc + 16 * v, mask, acc[r][v]);
  }
}

template <int R, int V>
void broadcast_panels(const float* a, long ai, long ao, const float* b, int rows, int depth, int k, float* c) {
  constexpr int kCols = 16 * V, kTaskRows = 32 * R;
  const int col_blocks = (k + kCols - 1) / kCols, row_blocks = (rows + kTaskRows - 1) / kTaskRows;
  const long flops = static_cast<long>(rows) * k * depth;
#pragma omp parallel if (col_blocks * row_blocks > 1 && flops > (1L << 18))
  {
    // 64-byte aligned: every row of the panel a whole number of cache lines.
    std::vector<float> buffer(static_cast<std::size_t>(depth) * kCols + 16);
    float* const panel = buffer.data() + (16 - reinterpret_cast<std::uintptr_t>(buffer.data()) / 4 % 16) % 16;
#pragma omp for schedule(dynamic, 1)
    for (int t = 0; t < col_blocks * row_blocks; ++t) {
      const int j0 = t / row_blocks * kCols, i0 = t % row_blocks * kTaskRows;
      const int cols = std::min(kCols, k - j0);
      for (int o = 0; o < depth; ++o) {
        float* po = panel + static_cast<long>(o) * kCols;
        std::copy_n(b + static_cast<long>(o) * k + j0, cols, po);
        std::fill(po + cols, po + kCols, 0.0f);
      }
      for (int i = i0; i < std::min(rows, i0 + kTaskRows); i += R)
        broadcast_tile<R, V>(a, ai, ao, panel, depth, rows, i, cols, c + j0, k);
    }
  }
}

// Panels of three or four vectors, whichever pads c's columns less (three on a tie).
void broadcast_gemm(const float* a, long ai, long ao, const float* b, int rows, int depth, int k, float* c) {
  const auto padded = [k](int cols) { return (k + cols - 1) / cols * cols; };
  if (padded(64) < padded(48)) broadcast_panels<6, 4>(a, ai, ao, b, rows, depth, k, c);
  else broadcast_panels<8, 3>(a, ai, ao, b, rows, depth, k, c);
}

const bool kAvx512 = __builtin_cpu_supports("avx512f");
#else
const bool kAvx512 = false;
#endif

}  // namespace

void set_threads(int threads) {
#if defined(__GLIBC__)
  // Eigen allocates its GEMM packing buffers (hundreds of KiB) in every call. By default glibc
  // maps buffers that large afresh and unmaps them after: every GEMM then faults in new zeroed
  // pages, which doubled the MLP's FP32 forward. Keep them on the heap, and the heap's top.
  static const bool heap = [] {
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    return true;
  }();
  (void)heap;
#endif
  omp_set_num_threads(threads);
  // A kernel called from a parallel region (a convolution's chunks) runs in the calling thread.
  omp_set_max_active_levels(1);
  Eigen::setNbThreads(1);  // Eigen runs inside the tiles
  // The calling thread first: LLVM's OpenMP gives each worker the caller's FP control at every
  // parallel region (and restores the caller's after one). Then every thread of the pool, for
  // GCC's OpenMP, whose threads keep their own (and stay alive between regions).
  flush_denormals();
#pragma omp parallel num_threads(threads)
  flush_denormals();
}

int threads() { return omp_get_max_threads(); }

void gemm_abt(const float* a, const float* b, int m, int n, int k, float* c) {
  for_each_tile(m, n, k, [&](int i0, int rows, int j0, int cols) {
    Map(c, m, n).block(i0, j0, rows, cols).noalias() =
        ConstMap(a, m, k).middleRows(i0, rows) * ConstMap(b, n, k).middleRows(j0, cols).transpose();
  });
}

void gemm_atb(const float* a, const float* b, int m, int n, int k, float* c) {
#if defined(__x86_64__)
  if (kAvx512 && n <= 32) {  // narrow: a convolution's kernel gradient
    if (n <= 16) atb_narrow<1>(a, b, m, n, k, c);
    else atb_narrow<2>(a, b, m, n, k, c);
    return;
  }
  if (kAvx512) return broadcast_gemm(a, 1, n, b, n, m, k, c);
#endif
  for_each_tile(n, k, m, [&](int i0, int rows, int j0, int cols) {
    Map(c, n, k).block(i0, j0, rows, cols).noalias() =
        ConstMap(a, m, n).middleCols(i0, rows).transpose() * ConstMap(b, m, k).middleCols(j0, cols);
  });
}

void gemm_ab(const float* a, const float* b, int m, int n, int k, float* c) {
#if defined(__x86_64__)
  if (kAvx512 && n <= 64) return ab_short(a, b, m, n, k, c);  // a convolution's patch gradient
  if (kAvx512) return broadcast_gemm(a, n, 1, b, m, n, k, c);
#endif
  for_each_tile(m, k, n, [&](int i0, int rows, int j0, int cols) {
    Map(c, m, k).block(i0, j0, rows, cols).noalias() =
        ConstMap(a, m, n).middleRows(i0, rows) * ConstMap(b, n, k).middleCols(j0, cols);
  });
}

void adamw_step(float* __restrict w, const float* __restrict grad, float* __restrict m, float* __restrict v,
                std::size_t n, const AdamWParams& p) {
  const AdamWCoefficients k = adamw_coefficients(p);
  const long count = static_cast<long>(n);
#pragma omp parallel for simd schedule(static)
  for (long i = 0; i < count; ++i) adamw_update(w[i], grad[i], m[i], v[i], k);
}

}  // namespace qathw::kernels
