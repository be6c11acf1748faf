#include "qathw/kernels/dense.h"

#include <omp.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include <algorithm>
#include <cmath>

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

}  // namespace

void set_threads(int threads) {
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
  for_each_tile(n, k, m, [&](int i0, int rows, int j0, int cols) {
    Map(c, n, k).block(i0, j0, rows, cols).noalias() =
        ConstMap(a, m, n).middleCols(i0, rows).transpose() * ConstMap(b, m, k).middleCols(j0, cols);
  });
}

void gemm_ab(const float* a, const float* b, int m, int n, int k, float* c) {
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
