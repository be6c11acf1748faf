// The deployed model's feature-map ops on the GPU, each element by the arithmetic core's rule: a
// static quantizer (arith::quantize_act), a convolution's patches (arith::conv_patch, the order
// of arith::for_each_patch_run) for the packed-weight layer, max and average pools
// (arith::max_pool, arith::window_sum, arith::average_pool) and the residual add
// (arith::add_aligned). One thread per output element.
#include "common.cuh"

namespace qathw::kernels::cuda {
namespace {

using detail::kThreads;

template <typename In, typename Code>
__global__ void quantize_static_kernel(const In* __restrict values, std::size_t n, arith::FixedPoint pair,
                                       arith::Format f, Code* __restrict codes) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    codes[i] = static_cast<Code>(arith::quantize_act(static_cast<std::int64_t>(values[i]), pair, f.act_bits, f.rounding));
}

// Row r = (sample, oy, ox) of group g's patch matrix.
template <typename Code>
__global__ void conv_patches_kernel(const Code* __restrict codes, std::size_t rows, arith::Conv2dShape s, int g,
                                    Code* __restrict patches) {
  const std::size_t pixels = static_cast<std::size_t>(s.out_h()) * s.out_w();
  const std::size_t map = static_cast<std::size_t>(s.in_h) * s.in_w * s.in_c;
  for (std::size_t r = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t sample = r / pixels, pixel = r % pixels;
    const int oy = static_cast<int>(pixel / s.out_w()), ox = static_cast<int>(pixel % s.out_w());
    arith::conv_patch(codes + sample * map, s, oy, ox, g, patches + r * s.patch());
  }
}

__global__ void place_columns_kernel(const std::int32_t* __restrict src, std::size_t rows, int cols,
                                     std::int32_t* __restrict dst, int dst_cols, int offset) {
  const std::size_t n = rows * cols;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    dst[(i / cols) * dst_cols + offset + i % cols] = src[i];
}

// Output (sample, oy, ox, c) of a pool over the in_h x in_w x in_c map (s.window its window).
__global__ void pool_kernel(const std::int32_t* __restrict maps, std::size_t outputs, arith::Conv2dShape s,
                            bool average, arith::FixedPoint pair, bool relu, arith::Format f,
                            std::int32_t* __restrict z) {
  const std::size_t per_sample = static_cast<std::size_t>(s.out_h()) * s.out_w() * s.in_c;
  const std::size_t map = static_cast<std::size_t>(s.in_h) * s.in_w * s.in_c;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < outputs;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t sample = i / per_sample, at = i % per_sample;
    const int c = static_cast<int>(at % s.in_c);
    const std::size_t pixel = at / s.in_c;
    const int oy = static_cast<int>(pixel / s.out_w()), ox = static_cast<int>(pixel % s.out_w());
    const std::int32_t* m = maps + sample * map;
    const std::int64_t v =
        average ? arith::average_pool(arith::window_sum(m, s.in_h, s.in_w, s.in_c, s.window, oy, ox, c), pair, f)
                : arith::max_pool(m, s.in_h, s.in_w, s.in_c, s.window, oy, ox, c);
    z[i] = static_cast<std::int32_t>(relu ? arith::relu(v) : v);
  }
}

__global__ void add_kernel(const std::int32_t* __restrict a, const std::int32_t* __restrict b, std::size_t n,
                           arith::FixedPoint pair_a, arith::FixedPoint pair_b, bool relu, arith::Format f,
                           std::int32_t* __restrict z) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::int64_t v = arith::add_aligned(a[i], pair_a, b[i], pair_b, f);
    z[i] = static_cast<std::int32_t>(relu ? arith::relu(v) : v);
  }
}

}  // namespace

template <typename In, typename Code>
void quantize_static(const In* values, std::size_t n, arith::FixedPoint pair, const arith::Format& f, Code* codes) {
  if (n == 0) return;
  quantize_static_kernel<<<detail::grid_for(n), kThreads>>>(values, n, pair, f, codes);
  detail::check_launch("quantize_static");
}

template <typename Code>
void conv_patches(const Code* codes, int samples, const arith::Conv2dShape& s, int g, Code* patches) {
  const std::size_t rows = static_cast<std::size_t>(samples) * s.out_h() * s.out_w();
  if (rows == 0) return;
  conv_patches_kernel<<<detail::grid_for(rows), kThreads>>>(codes, rows, s, g, patches);
  detail::check_launch("conv_patches");
}

void place_columns(const std::int32_t* src, std::size_t rows, int cols, std::int32_t* dst, int dst_cols, int offset) {
  if (rows == 0 || cols == 0) return;
  place_columns_kernel<<<detail::grid_for(rows * cols), kThreads>>>(src, rows, cols, dst, dst_cols, offset);
  detail::check_launch("place_columns");
}

void pool(const std::int32_t* maps, int samples, const arith::Conv2dShape& s, bool average, arith::FixedPoint pair,
          bool relu, const arith::Format& f, std::int32_t* z) {
  const std::size_t outputs = static_cast<std::size_t>(samples) * s.out_h() * s.out_w() * s.in_c;
  if (outputs == 0) return;
  pool_kernel<<<detail::grid_for(outputs), kThreads>>>(maps, outputs, s, average, pair, relu, f, z);
  detail::check_launch("pool");
}

void add_aligned(const std::int32_t* a, const std::int32_t* b, std::size_t n, arith::FixedPoint pair_a,
                 arith::FixedPoint pair_b, bool relu, const arith::Format& f, std::int32_t* z) {
  if (n == 0) return;
  add_kernel<<<detail::grid_for(n), kThreads>>>(a, b, n, pair_a, pair_b, relu, f, z);
  detail::check_launch("add_aligned");
}

template void quantize_static(const std::uint8_t*, std::size_t, arith::FixedPoint, const arith::Format&, std::int8_t*);
template void quantize_static(const std::uint8_t*, std::size_t, arith::FixedPoint, const arith::Format&, std::int16_t*);
template void quantize_static(const std::int32_t*, std::size_t, arith::FixedPoint, const arith::Format&, std::int8_t*);
template void quantize_static(const std::int32_t*, std::size_t, arith::FixedPoint, const arith::Format&, std::int16_t*);
template void conv_patches(const std::int8_t*, int, const arith::Conv2dShape&, int, std::int8_t*);
template void conv_patches(const std::int16_t*, int, const arith::Conv2dShape&, int, std::int16_t*);

}  // namespace qathw::kernels::cuda
