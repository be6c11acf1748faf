// The trainer's GEMMs in plain FP32 (no tensor cores, so no TF32 rounding of the operands): on
// integer-valued codes every product and partial sum is an exact float while it stays below 2^24,
// in whatever order the tiles add them, so these GEMMs return the CPU's accumulators exactly.
#include "common.cuh"

namespace qathw::kernels::cuda {
namespace {

constexpr int kTile = 64;       // output tile kTile x kTile
constexpr int kDepth = 16;      // inner-dimension slice per step
constexpr int kPerThread = 4;   // each thread computes kPerThread x kPerThread outputs
static_assert(kTile / kPerThread * (kTile / kPerThread) == detail::kThreads, "one thread per 4x4 sub-tile");

// C[M x N] (row-major, ldc = N) = sum_p A(i, p) B(p, j), where
//   A(i, p) = a[i * lda + p] if AAlongK (rows of a run along p), else a[p * lda + i];
//   B(p, j) = b[j * ldb + p] if BAlongK, else b[p * ldb + j].
// Tiles are staged in shared memory with loads that run along the contiguous dimension.
template <bool AAlongK, bool BAlongK>
__global__ void __launch_bounds__(detail::kThreads) gemm_kernel(const float* __restrict a, const float* __restrict b,
                                                                float* __restrict c, int M, int N, int K, int lda,
                                                                int ldb) {
  __shared__ float as[kDepth][kTile + 1];
  __shared__ float bs[kDepth][kTile + 1];
  const int tid = threadIdx.x;
  const int row0 = blockIdx.y * kTile, col0 = blockIdx.x * kTile;
  const int ty = tid / (kTile / kPerThread), tx = tid % (kTile / kPerThread);
  float acc[kPerThread][kPerThread] = {};
  for (int p0 = 0; p0 < K; p0 += kDepth) {
    for (int e = tid; e < kTile * kDepth; e += detail::kThreads) {
      // A tile element (i, p): consecutive threads take consecutive addresses.
      const int ai = AAlongK ? e / kDepth : e % kTile;
      const int ap = AAlongK ? e % kDepth : e / kTile;
      const int gi = row0 + ai, gp = p0 + ap;
      as[ap][ai] = (gi < M && gp < K)
                       ? (AAlongK ? a[static_cast<std::size_t>(gi) * lda + gp] : a[static_cast<std::size_t>(gp) * lda + gi])
                       : 0.0f;
      const int bj = BAlongK ? e / kDepth : e % kTile;
      const int bp = BAlongK ? e % kDepth : e / kTile;
      const int gj = col0 + bj, gq = p0 + bp;
      bs[bp][bj] = (gj < N && gq < K)
                       ? (BAlongK ? b[static_cast<std::size_t>(gj) * ldb + gq] : b[static_cast<std::size_t>(gq) * ldb + gj])
                       : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int p = 0; p < kDepth; ++p) {
      float av[kPerThread], bv[kPerThread];
#pragma unroll
      for (int r = 0; r < kPerThread; ++r) av[r] = as[p][ty + r * (kTile / kPerThread)];
#pragma unroll
      for (int s = 0; s < kPerThread; ++s) bv[s] = bs[p][tx + s * (kTile / kPerThread)];
#pragma unroll
      for (int r = 0; r < kPerThread; ++r)
#pragma unroll
        for (int s = 0; s < kPerThread; ++s) acc[r][s] += av[r] * bv[s];
    }
    __syncthreads();
  }
#pragma unroll
  for (int r = 0; r < kPerThread; ++r) {
    const int i = row0 + ty + r * (kTile / kPerThread);
    if (i >= M) continue;
#pragma unroll
    for (int s = 0; s < kPerThread; ++s) {
      const int j = col0 + tx + s * (kTile / kPerThread);
      if (j < N) c[static_cast<std::size_t>(i) * N + j] = acc[r][s];
    }
  }
}

template <bool AAlongK, bool BAlongK>
void launch(const float* a, const float* b, float* c, int M, int N, int K, int lda, int ldb) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    fill_zero(c, static_cast<std::size_t>(M) * N * sizeof(float));
    return;
  }
  const dim3 grid((N + kTile - 1) / kTile, (M + kTile - 1) / kTile);
  gemm_kernel<AAlongK, BAlongK><<<grid, detail::kThreads>>>(a, b, c, M, N, K, lda, ldb);
  detail::check_launch("gemm");
}

}  // namespace

// c[m x n] = a[m x k] * b[n x k]^T
void gemm_abt(const float* a, const float* b, int m, int n, int k, float* c) { launch<true, true>(a, b, c, m, n, k, k, k); }
// c[n x k] = a[m x n]^T * b[m x k]
void gemm_atb(const float* a, const float* b, int m, int n, int k, float* c) { launch<false, false>(a, b, c, n, k, m, n, k); }
// c[m x k] = a[m x n] * b[n x k]
void gemm_ab(const float* a, const float* b, int m, int n, int k, float* c) { launch<true, false>(a, b, c, m, k, n, n, k); }

}  // namespace qathw::kernels::cuda
