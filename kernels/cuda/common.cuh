// What the CUDA kernel files share: error checks, launch shapes, block and warp reductions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <cuda_runtime.h>

#include "qathw/kernels/cuda.h"

namespace qathw::kernels::cuda::detail {

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw CudaError(std::string("CUDA: ") + what + ": " + cudaGetErrorString(err));
}

// After a launch: a bad configuration is reported here, faults at the next synchronize().
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

inline constexpr int kThreads = 256;
inline constexpr unsigned kFullMask = 0xffffffffu;

// Blocks for a grid-stride loop over n elements (capped: each thread then loops).
inline unsigned grid_for(std::size_t n, int threads = kThreads) {
  const std::size_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8);
}

// A grid for row-wise element loops: x over the columns of a row, y over rows (each loop strides
// by the grid, so any shape fits); no per-element index division.
inline dim3 grid_rows(int rows, int cols) {
  const int x = (cols + kThreads - 1) / kThreads;
  return dim3(static_cast<unsigned>(x < 64 ? x : 64), static_cast<unsigned>(rows < 65535 ? rows : 65535));
}

template <typename T, typename Op>
__device__ T warp_reduce(T v, Op op) {
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_down_sync(kFullMask, v, offset));
  return v;
}

// Reduction over a block of kThreads threads; every thread gets the result. `identity` is Op's
// neutral element (0 for sums, and for maxima of non-negative values). The combination order is
// fixed, so the result is deterministic (and, for maxima and integer sums, exact).
template <typename T, typename Op>
__device__ T block_reduce(T v, Op op, T identity) {
  __shared__ T partial[kThreads / 32];
  __shared__ T result;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = warp_reduce(v, op);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T w = lane < kThreads / 32 ? partial[lane] : identity;
    w = warp_reduce(w, op);
    if (lane == 0) result = w;
  }
  __syncthreads();
  const T out = result;
  __syncthreads();  // `result` and `partial` may be reused by a following reduction
  return out;
}

struct Max {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a > b ? a : b;
  }
};
struct Sum {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};

}  // namespace qathw::kernels::cuda::detail
