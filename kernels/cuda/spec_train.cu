// The model-file trainer's kernels (training::SpecNet's passes on the GPU): the units and pairs of
// its quantizers and adds, feature-map ops with what their backward passes need (argmax, patches),
// and the backward gathers. Index structure only: each element rule is an arith core call
// (quantize_act, to_fixed_point, add_aligned, relu, max_pool, conv_patch, the window and patch
// walks), and each float expression is the one SpecNet writes, in the same order. Compiled with
// --fmad=false: no multiply-add is contracted where the host rounds twice.
#include <cuda_runtime.h>

#include "common.cuh"
#include "gradient_sources.h"

namespace qathw::kernels::cuda {
namespace {

using detail::check_launch;
using detail::grid_for;
using detail::kThreads;

#define QATHW_GRID_STRIDE(i, n)                                                                 \
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)

// ---- units and pairs -------------------------------------------------------------------------

__global__ void widen_pixels_kernel(const std::uint8_t* __restrict p, std::size_t n, std::int32_t* __restrict z) {
  QATHW_GRID_STRIDE(i, n) z[i] = p[i];
}

__global__ void pixels_over_255_kernel(const std::uint8_t* __restrict p, std::size_t n, float* __restrict x) {
  QATHW_GRID_STRIDE(i, n) x[i] = static_cast<float>(p[i]) / 255.0f;
}

__global__ void fill_kernel(float* __restrict p, std::size_t n, float value) {
  QATHW_GRID_STRIDE(i, n) p[i] = value;
}

__global__ void dynamic_units_kernel(const std::int64_t* __restrict amax, const float* __restrict unit_in, int samples,
                                     float qmax, const float* __restrict reference, float* __restrict code_scale,
                                     float* __restrict unit_out) {
  QATHW_GRID_STRIDE(b, static_cast<std::size_t>(samples)) {
    const float scale = static_cast<float>(amax[b]) * unit_in[b] / qmax;
    code_scale[b] = scale;
    unit_out[b] = scale * *reference;
  }
}

// One block: thread 0 forms the pair, then every thread fills the samples' scales.
__global__ void static_quantizer_kernel(const float* __restrict unit_in, const float* __restrict step,
                                        const float* __restrict reference, int samples, arith::Format f,
                                        StaticQuantizerOutputs o) {
  __shared__ float pair_step;
  if (threadIdx.x == 0) {
    const float ratio = unit_in[0] / *step;
    const arith::FixedPointResult pair = arith::to_fixed_point(ratio, f);
    arith::FixedPoint p = pair.value;
    if (pair.status != arith::FixedPointStatus::Ok) {
      *o.bad = 1;
      *o.bad_value = ratio;
      p = arith::FixedPoint{1, 0};
    }
    *o.pair = p;
    pair_step = static_cast<float>(unit_in[0] / arith::to_real(p));
    *o.pair_step = pair_step;
  }
  __syncthreads();
  const float unit = pair_step * *reference;
  for (int b = threadIdx.x; b < samples; b += blockDim.x) {
    o.code_scale[b] = pair_step;
    o.unit_out[b] = unit;
  }
}

__global__ void quantize_static_codes_kernel(const std::int32_t* __restrict x, std::size_t n,
                                             const arith::FixedPoint* __restrict pair, arith::Format f,
                                             float* __restrict codes) {
  const arith::FixedPoint p = *pair;
  QATHW_GRID_STRIDE(i, n) codes[i] = static_cast<float>(arith::quantize_act(x[i], p, f.act_bits, f.rounding));
}

__global__ void add_pairs_kernel(const float* __restrict unit_a, const float* __restrict unit_b, int samples,
                                 arith::Format f, arith::FixedPoint* __restrict pairs, float* __restrict unit_out,
                                 int* __restrict bad) {
  const float a = unit_a[0], b = unit_b[0];
  const float out = a < b ? b : a;  // std::max(a, b)
  if (threadIdx.x == 0) {
    const arith::FixedPointResult pa = arith::to_fixed_point(a / out, f);
    const arith::FixedPointResult pb = arith::to_fixed_point(b / out, f);
    const bool ok = pa.status == arith::FixedPointStatus::Ok && pb.status == arith::FixedPointStatus::Ok;
    if (!ok) *bad = 1;
    pairs[0] = ok ? pa.value : arith::FixedPoint{1, 0};
    pairs[1] = ok ? pb.value : arith::FixedPoint{1, 0};
  }
  for (int s = threadIdx.x; s < samples; s += blockDim.x) unit_out[s] = out;
}

__global__ void add_aligned_kernel(const std::int32_t* __restrict a, const std::int32_t* __restrict b, std::size_t n,
                                   const arith::FixedPoint* __restrict pairs, arith::Format f,
                                   std::int32_t* __restrict z) {
  const arith::FixedPoint pa = pairs[0], pb = pairs[1];
  QATHW_GRID_STRIDE(i, n) z[i] = static_cast<std::int32_t>(arith::add_aligned(a[i], pa, b[i], pb, f));
}

__global__ void add_values_kernel(const float* __restrict a, const float* __restrict b, std::size_t n,
                                  float* __restrict y) {
  QATHW_GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}

__global__ void relu_integers_kernel(const std::int32_t* __restrict x, std::size_t n, std::int32_t* __restrict z) {
  QATHW_GRID_STRIDE(i, n) z[i] = static_cast<std::int32_t>(arith::relu(x[i]));
}

__global__ void relu_values_kernel(const float* __restrict x, std::size_t n, float* __restrict y) {
  QATHW_GRID_STRIDE(i, n) y[i] = x[i] < 0.0f ? 0.0f : x[i];  // std::max(x, 0.0f)
}

// ---- pools and patches -----------------------------------------------------------------------

// Output i = (sample, oy, ox, c) of a pool over s's input map.
struct PoolOutput {
  std::size_t sample;
  int oy, ox, c;
};
__device__ PoolOutput pool_output(std::size_t i, const arith::Conv2dShape& s) {
  const std::size_t per_sample = static_cast<std::size_t>(s.out_h()) * s.out_w() * s.in_c;
  const std::size_t at = i % per_sample, pixel = at / s.in_c;
  return {i / per_sample, static_cast<int>(pixel / s.out_w()), static_cast<int>(pixel % s.out_w()),
          static_cast<int>(at % s.in_c)};
}

__global__ void max_pool_integers_kernel(const std::int32_t* __restrict maps, std::size_t outputs, arith::Conv2dShape s,
                                         std::int32_t* __restrict z, std::int32_t* __restrict argmax) {
  const std::size_t map = static_cast<std::size_t>(s.in_h) * s.in_w * s.in_c;
  QATHW_GRID_STRIDE(i, outputs) {
    const PoolOutput o = pool_output(i, s);
    const std::int32_t* m = maps + o.sample * map;
    const std::int64_t best = arith::max_pool(m, s.in_h, s.in_w, s.in_c, s.window, o.oy, o.ox, o.c);
    long first = -1;
    arith::for_each_window_index(s.in_h, s.in_w, s.in_c, s.window, o.oy, o.ox, o.c, [&](long at) {
      if (first < 0 && m[at] == best) first = at;
    });
    z[i] = static_cast<std::int32_t>(best);
    argmax[i] = static_cast<std::int32_t>(first);
  }
}

__global__ void max_pool_values_kernel(const float* __restrict maps, std::size_t outputs, arith::Conv2dShape s,
                                       float* __restrict y, std::int32_t* __restrict argmax) {
  const std::size_t map = static_cast<std::size_t>(s.in_h) * s.in_w * s.in_c;
  QATHW_GRID_STRIDE(i, outputs) {
    const PoolOutput o = pool_output(i, s);
    const float* m = maps + o.sample * map;
    float acc = -INFINITY;
    long best = -1;
    arith::for_each_window_index(s.in_h, s.in_w, s.in_c, s.window, o.oy, o.ox, o.c, [&](long at) {
      if (m[at] > acc) acc = m[at], best = at;
    });
    y[i] = acc;
    argmax[i] = static_cast<std::int32_t>(best);
  }
}

__global__ void average_pool_values_kernel(const float* __restrict maps, std::size_t outputs, arith::Conv2dShape s,
                                           float* __restrict y) {
  const std::size_t map = static_cast<std::size_t>(s.in_h) * s.in_w * s.in_c;
  const float area = static_cast<float>(s.window.kernel_h * s.window.kernel_w);
  QATHW_GRID_STRIDE(i, outputs) {
    const PoolOutput o = pool_output(i, s);
    const float* m = maps + o.sample * map;
    float acc = 0.0f;
    arith::for_each_window_index(s.in_h, s.in_w, s.in_c, s.window, o.oy, o.ox, o.c, [&](long at) { acc += m[at]; });
    y[i] = acc / area;
  }
}

__global__ void conv_patches_kernel(const float* __restrict maps, std::size_t rows, arith::Conv2dShape s, int g,
                                    float* __restrict patches) {
  const std::size_t pixels = static_cast<std::size_t>(s.out_h()) * s.out_w();
  const std::size_t map = static_cast<std::size_t>(s.in_h) * s.in_w * s.in_c;
  QATHW_GRID_STRIDE(r, rows) {
    const std::size_t sample = r / pixels, pixel = r % pixels;
    arith::conv_patch(maps + sample * map, s, static_cast<int>(pixel / s.out_w()), static_cast<int>(pixel % s.out_w()),
                      g, patches + r * s.patch());
  }
}

__global__ void take_columns_kernel(const float* __restrict src, std::size_t rows, int src_cols, int offset, int cols,
                                    float* __restrict dst) {
  QATHW_GRID_STRIDE(i, rows * cols) dst[i] = src[(i / cols) * src_cols + offset + i % cols];
}

__global__ void place_columns_kernel(const float* __restrict src, std::size_t rows, int cols, float* __restrict dst,
                                     int dst_cols, int offset) {
  QATHW_GRID_STRIDE(i, rows * cols) dst[(i / cols) * dst_cols + offset + i % cols] = src[i];
}

// ---- backward gathers --------------------------------------------------------------------------

// Element (sample, y, x, c) of group g's channels.
__global__ void conv_input_gradient_kernel(const float* __restrict dcols, std::size_t elements, arith::Conv2dShape s,
                                           int g, bool add, float* __restrict dmap) {
  const int gi = s.group_in();
  const std::size_t pixels = static_cast<std::size_t>(s.out_h()) * s.out_w();
  const std::size_t per_sample = static_cast<std::size_t>(s.in_h) * s.in_w * gi;
  const int patch = s.patch();
  QATHW_GRID_STRIDE(i, elements) {
    const std::size_t sample = i / per_sample, at = i % per_sample;
    const int ci = static_cast<int>(at % gi);
    const std::size_t position = at / gi;
    const int y = static_cast<int>(position / s.in_w), x = static_cast<int>(position % s.in_w);
    const int c = g * gi + ci;
    float* out = dmap + ((sample * s.in_h + y) * s.in_w + x) * s.in_c + c;
    const float* rows = dcols + sample * pixels * patch;
    float sum = add ? *out : 0.0f;
    for_each_patch_reader(s, y, x, c, [&](int pixel, int k) { sum += rows[static_cast<std::size_t>(pixel) * patch + k]; });
    *out = sum;
  }
}

// Input element (sample, y, x, c) of a pool.
__global__ void pool_input_gradient_kernel(const float* __restrict dy, const std::int32_t* __restrict argmax,
                                           std::size_t elements, arith::Conv2dShape s, float* __restrict dx) {
  const int out_h = s.out_h(), out_w = s.out_w();
  const std::size_t per_sample_in = static_cast<std::size_t>(s.in_h) * s.in_w * s.in_c;
  const std::size_t per_sample_out = static_cast<std::size_t>(out_h) * out_w * s.in_c;
  const float area = static_cast<float>(s.window.kernel_h * s.window.kernel_w);
  QATHW_GRID_STRIDE(i, elements) {
    const std::size_t sample = i / per_sample_in, at = i % per_sample_in;
    const int c = static_cast<int>(at % s.in_c);
    const std::size_t position = at / s.in_c;
    const int y = static_cast<int>(position / s.in_w), x = static_cast<int>(position % s.in_w);
    const float* dys = dy + sample * per_sample_out;
    float sum = dx[i];
    for_each_window_reader(s.window, out_h, out_w, y, x, [&](int pixel) {
      const std::size_t o = static_cast<std::size_t>(pixel) * s.in_c + c;
      if (!argmax) sum += dys[o] / area;
      else if (argmax[sample * per_sample_out + o] == static_cast<std::int32_t>(at)) sum += dys[o];
    });
    dx[i] = sum;
  }
}

// SpecNet's QAT test: the input integer is positive (not its real value z unit, which differs
// where a unit is 0, infinite or NaN, and costs a load and a multiply).
__global__ void relu_input_gradient_integers_kernel(const float* __restrict dy, const std::int32_t* __restrict z,
                                                    std::size_t n, float* __restrict dx) {
  QATHW_GRID_STRIDE(i, n) {
    if (z[i] > 0) dx[i] += dy[i];
  }
}

__global__ void relu_input_gradient_values_kernel(const float* __restrict dy, const float* __restrict x, std::size_t n,
                                                  float* __restrict dx) {
  QATHW_GRID_STRIDE(i, n) {
    if (x[i] > 0.0f) dx[i] += dy[i];
  }
}

__global__ void add_into_kernel(float* __restrict dst, const float* __restrict src, std::size_t n) {
  QATHW_GRID_STRIDE(i, n) dst[i] += src[i];
}

__global__ void integer_values_kernel(const std::int32_t* __restrict z, std::size_t n, int per_sample,
                                      const float* __restrict unit, float* __restrict out) {
  QATHW_GRID_STRIDE(i, n) out[i] = static_cast<float>(z[i]) * unit[i / static_cast<std::size_t>(per_sample)];
}

// ---- split A^T B -----------------------------------------------------------------------------

constexpr int kTile = 64, kDepth = 16, kPerThread = 4;
static_assert(kTile / kPerThread * (kTile / kPerThread) == kThreads, "one thread per 4x4 sub-tile");

// Chunk chunk0 + blockIdx.z of the rows: c_chunk[i][j] = sum over its rows p of a[p][i] b[p][j]
// (a: m x n, b: m x k, c_chunk: n x k), gemm.cu's tiling with both operands read along their rows.
__global__ void __launch_bounds__(kThreads) gemm_atb_chunk_kernel(const float* __restrict a, const float* __restrict b,
                                                                  int m, int n, int k, int chunk0,
                                                                  float* __restrict partials) {
  __shared__ float as[kDepth][kTile + 1];
  __shared__ float bs[kDepth][kTile + 1];
  const int tid = threadIdx.x;
  const int row0 = blockIdx.y * kTile, col0 = blockIdx.x * kTile;
  const int ty = tid / (kTile / kPerThread), tx = tid % (kTile / kPerThread);
  const int chunk = chunk0 + static_cast<int>(blockIdx.z);
  const int p_begin = chunk * kSplitRows;
  const int p_end = p_begin + kSplitRows < m ? p_begin + kSplitRows : m;
  float acc[kPerThread][kPerThread] = {};
  for (int p0 = p_begin; p0 < p_end; p0 += kDepth) {
    for (int e = tid; e < kTile * kDepth; e += kThreads) {
      const int i = e % kTile, p = e / kTile;
      const int gp = p0 + p;
      as[p][i] = (row0 + i < n && gp < p_end) ? a[static_cast<std::size_t>(gp) * n + row0 + i] : 0.0f;
      bs[p][i] = (col0 + i < k && gp < p_end) ? b[static_cast<std::size_t>(gp) * k + col0 + i] : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int p = 0; p < kDepth; ++p) {
      float av[kPerThread], bv[kPerThread];
#pragma unroll
      for (int r = 0; r < kPerThread; ++r) av[r] = as[p][ty + r * (kTile / kPerThread)];
#pragma unroll
      for (int q = 0; q < kPerThread; ++q) bv[q] = bs[p][tx + q * (kTile / kPerThread)];
#pragma unroll
      for (int r = 0; r < kPerThread; ++r)
#pragma unroll
        for (int q = 0; q < kPerThread; ++q) acc[r][q] += av[r] * bv[q];
    }
    __syncthreads();
  }
  float* c = partials + static_cast<std::size_t>(chunk) * n * k;
#pragma unroll
  for (int r = 0; r < kPerThread; ++r) {
    const int i = row0 + ty + r * (kTile / kPerThread);
    if (i >= n) continue;
#pragma unroll
    for (int q = 0; q < kPerThread; ++q) {
      const int j = col0 + tx + q * (kTile / kPerThread);
      if (j < k) c[static_cast<std::size_t>(i) * k + j] = acc[r][q];
    }
  }
}

__global__ void sum_chunks_kernel(const float* __restrict partials, int chunks, std::size_t size, float* __restrict c) {
  QATHW_GRID_STRIDE(i, size) {
    float sum = partials[i];
    for (int chunk = 1; chunk < chunks; ++chunk) sum += partials[static_cast<std::size_t>(chunk) * size + i];
    c[i] = sum;
  }
}

// ---- LSQ ---------------------------------------------------------------------------------------

__global__ void lsq_kernel(const float* __restrict dcodes, const std::int32_t* __restrict x,
                           const float* __restrict codes, std::size_t n, const float* __restrict unit_in,
                           const float* __restrict pair_step, float q, float* __restrict dx,
                           double* __restrict partials) {
  const float unit = unit_in[0], step = *pair_step;
  double ds = 0;
  QATHW_GRID_STRIDE(i, n) {
    const float g = dcodes[i];
    const float t = static_cast<float>(x[i]) * unit / step;  // SpecNet's xs: the input over the step
    if (t < -q) {
      ds -= g * q;
    } else if (t > q) {
      ds += g * q;
    } else {
      const float kin = codes[i] * step;  // SpecNet's kin: the codes' real values
      ds += g * (kin / step - t);
      if (dx) dx[i] += g;
    }
  }
  ds = detail::block_reduce(ds, detail::Sum{}, 0.0);
  if (threadIdx.x == 0) partials[blockIdx.x] = ds;
}

__global__ void lsq_total_kernel(const double* __restrict partials, int blocks, double features, float q,
                                 float* __restrict step_grad) {
  double ds = 0;
  for (int b = 0; b < blocks; ++b) ds += partials[b];
  *step_grad = static_cast<float>(ds / sqrt(features * q));
}

}  // namespace

DeviceMemory device_memory() {
  DeviceMemory m;
  detail::check(cudaMemGetInfo(&m.free, &m.total), "cudaMemGetInfo");
  return m;
}

void widen_pixels(const std::uint8_t* pixels, std::size_t n, std::int32_t* z) {
  if (n == 0) return;
  widen_pixels_kernel<<<grid_for(n), kThreads>>>(pixels, n, z);
  check_launch("widen_pixels");
}

void pixels_over_255(const std::uint8_t* pixels, std::size_t n, float* x) {
  if (n == 0) return;
  pixels_over_255_kernel<<<grid_for(n), kThreads>>>(pixels, n, x);
  check_launch("pixels_over_255");
}

void fill(float* p, std::size_t n, float value) {
  if (n == 0) return;
  fill_kernel<<<grid_for(n), kThreads>>>(p, n, value);
  check_launch("fill");
}

void dynamic_units(const std::int64_t* amax, const float* unit_in, int samples, int act_bits, const float* reference,
                   float* code_scale, float* unit_out) {
  if (samples <= 0) return;
  const float qmax = static_cast<float>(arith::act_qmax(act_bits));
  dynamic_units_kernel<<<grid_for(static_cast<std::size_t>(samples)), kThreads>>>(amax, unit_in, samples, qmax,
                                                                                  reference, code_scale, unit_out);
  check_launch("dynamic_units");
}

void static_quantizer(const float* unit_in, const float* step, const float* reference, int samples,
                      const arith::Format& f, const StaticQuantizerOutputs& o) {
  static_quantizer_kernel<<<1, kThreads>>>(unit_in, step, reference, samples, f, o);
  check_launch("static_quantizer");
}

void quantize_static_codes(const std::int32_t* x, std::size_t n, const arith::FixedPoint* pair, const arith::Format& f,
                           float* codes) {
  if (n == 0) return;
  quantize_static_codes_kernel<<<grid_for(n), kThreads>>>(x, n, pair, f, codes);
  check_launch("quantize_static_codes");
}

void add_pairs(const float* unit_a, const float* unit_b, int samples, const arith::Format& f, arith::FixedPoint* pairs,
               float* unit_out, int* bad) {
  add_pairs_kernel<<<1, kThreads>>>(unit_a, unit_b, samples, f, pairs, unit_out, bad);
  check_launch("add_pairs");
}

void add_aligned(const std::int32_t* a, const std::int32_t* b, std::size_t n, const arith::FixedPoint* pairs,
                 const arith::Format& f, std::int32_t* z) {
  if (n == 0) return;
  add_aligned_kernel<<<grid_for(n), kThreads>>>(a, b, n, pairs, f, z);
  check_launch("add_aligned");
}

void add_values(const float* a, const float* b, std::size_t n, float* y) {
  if (n == 0) return;
  add_values_kernel<<<grid_for(n), kThreads>>>(a, b, n, y);
  check_launch("add_values");
}

void relu_integers(const std::int32_t* x, std::size_t n, std::int32_t* z) {
  if (n == 0) return;
  relu_integers_kernel<<<grid_for(n), kThreads>>>(x, n, z);
  check_launch("relu_integers");
}

void relu_values(const float* x, std::size_t n, float* y) {
  if (n == 0) return;
  relu_values_kernel<<<grid_for(n), kThreads>>>(x, n, y);
  check_launch("relu_values");
}

namespace {
std::size_t pool_outputs(int samples, const arith::Conv2dShape& s) {
  return static_cast<std::size_t>(samples) * s.out_h() * s.out_w() * s.in_c;
}
}  // namespace

void max_pool(const std::int32_t* maps, int samples, const arith::Conv2dShape& s, std::int32_t* z,
              std::int32_t* argmax) {
  const std::size_t n = pool_outputs(samples, s);
  if (n == 0) return;
  max_pool_integers_kernel<<<grid_for(n), kThreads>>>(maps, n, s, z, argmax);
  check_launch("max_pool");
}

void max_pool(const float* maps, int samples, const arith::Conv2dShape& s, float* y, std::int32_t* argmax) {
  const std::size_t n = pool_outputs(samples, s);
  if (n == 0) return;
  max_pool_values_kernel<<<grid_for(n), kThreads>>>(maps, n, s, y, argmax);
  check_launch("max_pool");
}

void average_pool_values(const float* maps, int samples, const arith::Conv2dShape& s, float* y) {
  const std::size_t n = pool_outputs(samples, s);
  if (n == 0) return;
  average_pool_values_kernel<<<grid_for(n), kThreads>>>(maps, n, s, y);
  check_launch("average_pool_values");
}

void conv_patches(const float* maps, int samples, const arith::Conv2dShape& s, int g, float* patches) {
  const std::size_t rows = static_cast<std::size_t>(samples) * s.out_h() * s.out_w();
  if (rows == 0) return;
  conv_patches_kernel<<<grid_for(rows), kThreads>>>(maps, rows, s, g, patches);
  check_launch("conv_patches");
}

void take_columns(const float* src, std::size_t rows, int src_cols, int offset, int cols, float* dst) {
  if (rows == 0 || cols == 0) return;
  take_columns_kernel<<<grid_for(rows * cols), kThreads>>>(src, rows, src_cols, offset, cols, dst);
  check_launch("take_columns");
}

void place_columns(const float* src, std::size_t rows, int cols, float* dst, int dst_cols, int offset) {
  if (rows == 0 || cols == 0) return;
  place_columns_kernel<<<grid_for(rows * cols), kThreads>>>(src, rows, cols, dst, dst_cols, offset);
  check_launch("place_columns");
}

void conv_input_gradient(const float* dcols, int samples, const arith::Conv2dShape& s, int g, bool add, float* dmap) {
  const std::size_t n = static_cast<std::size_t>(samples) * s.in_h * s.in_w * s.group_in();
  if (n == 0) return;
  conv_input_gradient_kernel<<<grid_for(n), kThreads>>>(dcols, n, s, g, add, dmap);
  check_launch("conv_input_gradient");
}

void pool_input_gradient(const float* dy, const std::int32_t* argmax, int samples, const arith::Conv2dShape& s,
                         float* dx) {
  const std::size_t n = static_cast<std::size_t>(samples) * s.in_h * s.in_w * s.in_c;
  if (n == 0) return;
  pool_input_gradient_kernel<<<grid_for(n), kThreads>>>(dy, argmax, n, s, dx);
  check_launch("pool_input_gradient");
}

void relu_input_gradient(const float* dy, const std::int32_t* z, std::size_t n, float* dx) {
  if (n == 0) return;
  relu_input_gradient_integers_kernel<<<grid_for(n), kThreads>>>(dy, z, n, dx);
  check_launch("relu_input_gradient");
}

void relu_input_gradient(const float* dy, const float* x, std::size_t n, float* dx) {
  if (n == 0) return;
  relu_input_gradient_values_kernel<<<grid_for(n), kThreads>>>(dy, x, n, dx);
  check_launch("relu_input_gradient");
}

void add_into(float* dst, const float* src, std::size_t n) {
  if (n == 0) return;
  add_into_kernel<<<grid_for(n), kThreads>>>(dst, src, n);
  check_launch("add_into");
}

void integer_values(const std::int32_t* z, int samples, int per_sample, const float* unit, float* out) {
  const std::size_t n = static_cast<std::size_t>(samples) * per_sample;
  if (n == 0) return;
  integer_values_kernel<<<grid_for(n), kThreads>>>(z, n, per_sample, unit, out);
  check_launch("integer_values");
}

void gemm_atb_split(const float* a, const float* b, int m, int n, int k, float* partials, float* c) {
  if (n <= 0 || k <= 0) return;
  if (m <= 0) {
    fill_zero(c, static_cast<std::size_t>(n) * k * sizeof(float));
    return;
  }
  const int chunks = split_chunks(m);
  // gridDim.z takes at most 65535 chunks (67 M rows) at once: more go in further launches.
  constexpr int kMaxGridZ = 65535;
  for (int chunk0 = 0; chunk0 < chunks; chunk0 += kMaxGridZ) {
    const int slice = chunks - chunk0 < kMaxGridZ ? chunks - chunk0 : kMaxGridZ;
    const dim3 grid((k + kTile - 1) / kTile, (n + kTile - 1) / kTile, static_cast<unsigned>(slice));
    gemm_atb_chunk_kernel<<<grid, kThreads>>>(a, b, m, n, k, chunk0, chunks == 1 ? c : partials);
    check_launch("gemm_atb_split");
  }
  if (chunks == 1) return;
  const std::size_t size = static_cast<std::size_t>(n) * k;
  sum_chunks_kernel<<<grid_for(size), kThreads>>>(partials, chunks, size, c);
  check_launch("gemm_atb_split (sum)");
}

std::size_t lsq_partials(std::size_t n) { return n == 0 ? 1 : grid_for(n); }

void lsq_backward(const float* dcodes, const std::int32_t* x, const float* codes, std::size_t n, const float* unit_in,
                  const float* pair_step, int act_bits, double features, float* dx, double* partials,
                  float* step_grad) {
  const float q = static_cast<float>(arith::act_qmax(act_bits));
  const unsigned blocks = static_cast<unsigned>(lsq_partials(n));
  if (n == 0) {
    fill_zero(partials, sizeof(double));
  } else {
    lsq_kernel<<<blocks, kThreads>>>(dcodes, x, codes, n, unit_in, pair_step, q, dx, partials);
    check_launch("lsq_backward");
  }
  lsq_total_kernel<<<1, 1>>>(partials, static_cast<int>(blocks), features, q, step_grad);
  check_launch("lsq_backward (total)");
}

}  // namespace qathw::kernels::cuda

#undef QATHW_GRID_STRIDE
