// The trainer's fake-quantization, straight-through backward, loss and optimizer kernels on the
// GPU. Index and reduction structure only: every element rule is an arith core function (or
// adamw_update), called exactly as kernels/cpu/quant_ops.cpp and dense.cpp call it. This file is
// compiled with --fmad=false so that no float expression is contracted into a fused
// multiply-add the host does not do: the float steps of the rules (w / scale, scale ratios,
// per-token scales) give the host's bits.
#include <cmath>

#include "common.cuh"
#include "qathw/kernels/quant_ops.h"

namespace qathw::kernels::cuda {
namespace {

using detail::block_reduce;
using detail::check_launch;
using detail::grid_for;
using detail::kThreads;

// ---- weights -----------------------------------------------------------------------------------

// Ternary absmean: the integer sum of arith::abs_fixed over the tensor (atomic adds of integers:
// the same total in any order).
__global__ void abs_fixed_sum_kernel(const float* __restrict w, std::size_t n, unsigned long long* sum) {
  unsigned long long s = 0;
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x)
    s += arith::abs_fixed(w[i]);
  s = block_reduce(s, detail::Sum{}, 0ull);
  if (threadIdx.x == 0 && s != 0) atomicAdd(sum, s);
}

// INT4: per output channel, max |w| (a max: exact in any order), then arith::weight_scale.
__global__ void row_absmax_scale_kernel(const float* __restrict w, int in, arith::WeightFormat format,
                                        float* __restrict scales) {
  const float* row = w + static_cast<std::size_t>(blockIdx.x) * in;
  float amax = 0;
  for (int k = threadIdx.x; k < in; k += blockDim.x) amax = fmaxf(amax, fabsf(row[k]));
  amax = block_reduce(amax, detail::Max{}, 0.0f);
  if (threadIdx.x == 0) scales[blockIdx.x] = arith::weight_scale(amax, format);
}

// One block: the ternary scale from the sum (every channel the same), the reference (largest
// scale) and each channel's requantization pair scale / reference (arith::to_fixed_point).
__global__ void weight_scales_kernel(int out, std::size_t total, arith::Format f, const unsigned long long* abs_sum,
                                     float* __restrict scales, float* __restrict reference,
                                     arith::FixedPoint* __restrict requant, int* bad_channel) {
  float ref = 0;
  if (f.weights == arith::WeightFormat::Ternary) {
    ref = arith::weight_scale(arith::mean_from_abs_fixed(*abs_sum, total), f.weights);
    for (int n = threadIdx.x; n < out; n += blockDim.x) scales[n] = ref;
  } else {
    for (int n = threadIdx.x; n < out; n += blockDim.x) ref = fmaxf(ref, scales[n]);
    ref = block_reduce(ref, detail::Max{}, 0.0f);
  }
  if (threadIdx.x == 0) *reference = ref;
  for (int n = threadIdx.x; n < out; n += blockDim.x) {
    const float s = f.weights == arith::WeightFormat::Ternary ? ref : scales[n];
    const arith::FixedPointResult r = arith::requant_pair(s, ref, f);
    if (r.status == arith::FixedPointStatus::Ok) {
      requant[n] = r.value;
    } else {
      requant[n] = arith::FixedPoint{};
      atomicMin(bad_channel, n);
    }
  }
}

__global__ void weight_codes_kernel(const float* __restrict w, int out, int in, arith::WeightFormat format,
                                    arith::Rounding rounding, const float* __restrict scales, float* __restrict codes,
                                    float* __restrict dequantized, float* __restrict ste_mask) {
  for (int n = blockIdx.y; n < out; n += gridDim.y) {
    const float s = scales[n];
    const std::size_t row = static_cast<std::size_t>(n) * in;
    for (int k = blockIdx.x * blockDim.x + threadIdx.x; k < in; k += gridDim.x * blockDim.x) {
      const std::size_t i = row + k;
      const float c = arith::weight_code_value(w[i], s, format, rounding);
      codes[i] = c;
      dequantized[i] = c * s;
      ste_mask[i] = arith::weight_in_range(w[i], s, format) ? 1.0f : 0.0f;
    }
  }
}

// ---- activations -------------------------------------------------------------------------------

// One block per token: absmax (arith::magnitude, max), the reciprocal, the codes.
template <typename Int, typename Code>
__global__ void quantize_tokens_kernel(const Int* __restrict values, int cols, arith::Format f, Code* __restrict codes,
                                       std::int64_t* __restrict amax_out, TokenScales ts) {
  const std::size_t b = blockIdx.x;
  const Int* v = values + b * cols;
  std::int64_t amax = 0;
  for (int k = threadIdx.x; k < cols; k += blockDim.x) amax = arith::absmax_step(amax, static_cast<std::int64_t>(v[k]));
  amax = block_reduce(amax, detail::Max{}, std::int64_t{0});
  const arith::TokenQuantizer q = arith::token_quantizer(amax, f);
  Code* c = codes + b * cols;
  for (int k = threadIdx.x; k < cols; k += blockDim.x) c[k] = static_cast<Code>(q.code(static_cast<std::int64_t>(v[k])));
  if (threadIdx.x == 0) {
    if (amax_out) amax_out[b] = amax;
    if (ts.code_scale) {
      // As forward_quantized: unit = scale * reference, then amax * unit / qmax.
      const float unit = ts.prev_code_scale ? ts.prev_code_scale[b] * *ts.prev_reference : ts.first_unit;
      ts.code_scale[b] = static_cast<float>(amax) * unit / static_cast<float>(arith::act_qmax(f.act_bits));
    }
  }
}

template <typename Int, typename Code>
void launch_tokens(const Int* values, int rows, int cols, const arith::Format& f, Code* codes, std::int64_t* amax,
                   const TokenScales& ts) {
  if (rows <= 0 || cols <= 0) return;
  quantize_tokens_kernel<Int, Code><<<rows, kThreads>>>(values, cols, f, codes, amax, ts);
  check_launch("quantize_tokens");
}

// ---- accumulators ------------------------------------------------------------------------------

template <typename Acc>
__global__ void epilogue_kernel(const Acc* __restrict acc, int rows, int cols, const arith::FixedPoint* __restrict requant,
                                bool relu, arith::Format f, std::int32_t* __restrict z) {
  for (int b = blockIdx.y; b < rows; b += gridDim.y) {
    const std::size_t row = static_cast<std::size_t>(b) * cols;
    for (int n = blockIdx.x * blockDim.x + threadIdx.x; n < cols; n += gridDim.x * blockDim.x) {
      const std::int64_t a = arith::accumulator_of_exact_sum(static_cast<std::int64_t>(acc[row + n]), f);
      z[row + n] = static_cast<std::int32_t>(arith::epilogue(a, requant[n], relu, f));
    }
  }
}

template <typename Acc>
void launch_epilogue(const Acc* acc, int rows, int cols, const arith::FixedPoint* requant, bool relu,
                     const arith::Format& f, std::int32_t* z) {
  if (rows <= 0 || cols <= 0) return;
  epilogue_kernel<<<detail::grid_rows(rows, cols), kThreads>>>(acc, rows, cols, requant, relu, f, z);
  check_launch("accumulator_epilogue");
}

// One thread per (token, output): the array's chunked accumulation, arith::dot.
__global__ void accumulate_exact_kernel(const float* __restrict codes, const float* __restrict weight_codes, int out,
                                        int in, std::size_t total, int lanes, arith::Format f,
                                        std::int64_t* __restrict acc) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < total;
       i += std::size_t{gridDim.x} * blockDim.x) {
    const std::size_t b = i / static_cast<std::size_t>(out), n = i % static_cast<std::size_t>(out);
    acc[i] = arith::dot(codes + b * in, weight_codes + n * in, in, lanes, f);
  }
}

// ---- element-wise steps of the trainer --------------------------------------------------------

__global__ void gather_rows_kernel(const std::uint8_t* __restrict pixels, const std::uint8_t* __restrict labels,
                                   const std::uint32_t* __restrict order, int features,
                                   std::uint8_t* __restrict out_pixels, std::uint8_t* __restrict out_labels) {
  const std::size_t r = blockIdx.x, src = order[r];
  for (int k = threadIdx.x; k < features; k += blockDim.x)
    out_pixels[r * features + k] = pixels[src * features + k];
  if (threadIdx.x == 0) out_labels[r] = labels[src];
}

__global__ void pixels_to_unit_kernel(const std::uint8_t* __restrict pixels, std::size_t n, float* __restrict x) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x)
    x[i] = static_cast<float>(pixels[i]) * (1.0f / 255.0f);
}

__global__ void integer_logits_kernel(const std::int32_t* __restrict z, int classes, std::size_t total,
                                      const float* __restrict code_scale, const float* __restrict reference,
                                      float* __restrict logits) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < total;
       i += std::size_t{gridDim.x} * blockDim.x) {
    const float unit = code_scale[i / static_cast<std::size_t>(classes)] * *reference;
    logits[i] = static_cast<float>(z[i]) * unit;
  }
}

__global__ void relu_kernel(float* __restrict y, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x)
    y[i] = fmaxf(y[i], 0.0f);
}

template <typename T>
__global__ void zero_where_not_positive_kernel(float* __restrict d, const T* __restrict y, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x)
    if (y[i] <= T(0)) d[i] = 0.0f;
}

__global__ void scale_rows_kernel(float* __restrict d, int cols, std::size_t total, const float* __restrict s) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < total;
       i += std::size_t{gridDim.x} * blockDim.x)
    d[i] *= s[i / static_cast<std::size_t>(cols)];
}

__global__ void multiply_kernel(float* __restrict g, const float* __restrict mask, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x)
    g[i] *= mask[i];
}

__global__ void adamw_kernel(float* __restrict w, const float* __restrict grad, float* __restrict m,
                             float* __restrict v, std::size_t n, AdamWCoefficients k) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x)
    adamw_update(w[i], grad[i], m[i], v[i], k);
}

// One block: a thread per token (rows strided), the row's softmax cross-entropy as
// softmax_cross_entropy in network.cpp computes it; the loss summed in double in a fixed order.
__global__ void softmax_cross_entropy_kernel(const float* __restrict logits, const std::uint8_t* __restrict labels,
                                             int batch, int classes, float* __restrict dlogits, LossTotals* totals) {
  double loss = 0;
  unsigned long long correct = 0;
  for (int b = threadIdx.x; b < batch; b += blockDim.x) {
    const float* row = logits + static_cast<std::size_t>(b) * classes;
    float* d = dlogits + static_cast<std::size_t>(b) * classes;
    int best = 0;
    for (int c = 1; c < classes; ++c)
      if (row[c] > row[best]) best = c;
    const int label = labels[b];
    if (best == label) ++correct;
    const float top = row[best];
    float sum = 0;
    for (int c = 0; c < classes; ++c) sum += (d[c] = expf(row[c] - top));
    loss += static_cast<double>(logf(sum) - (row[label] - top));
    for (int c = 0; c < classes; ++c) d[c] = (d[c] / sum - (c == label ? 1.0f : 0.0f)) / static_cast<float>(batch);
  }
  loss = block_reduce(loss, detail::Sum{}, 0.0);
  correct = block_reduce(correct, detail::Sum{}, 0ull);
  if (threadIdx.x == 0) {
    totals->loss_sum += static_cast<double>(static_cast<float>(loss / batch));
    totals->correct += correct;
  }
}

}  // namespace

void quantize_weights(const float* w, int out, int in, const arith::Format& f, const WeightQuantOutputs& o) {
  if (out <= 0 || in <= 0) return;
  const std::size_t total = static_cast<std::size_t>(out) * static_cast<std::size_t>(in);
  if (f.weights == arith::WeightFormat::Ternary) {
    detail::check(cudaMemsetAsync(o.abs_sum, 0, sizeof *o.abs_sum), "cudaMemsetAsync");
    abs_fixed_sum_kernel<<<grid_for(total), kThreads>>>(w, total, o.abs_sum);
    check_launch("abs_fixed_sum");
  } else {
    row_absmax_scale_kernel<<<out, kThreads>>>(w, in, f.weights, o.scales);
    check_launch("row_absmax_scale");
  }
  weight_scales_kernel<<<1, kThreads>>>(out, total, f, o.abs_sum, o.scales, o.reference, o.requant, o.bad_channel);
  check_launch("weight_scales");
  weight_codes_kernel<<<detail::grid_rows(out, in), kThreads>>>(w, out, in, f.weights, f.rounding, o.scales, o.codes,
                                                                o.dequantized, o.ste_mask);
  check_launch("weight_codes");
}

void quantize_tokens(const std::uint8_t* values, int rows, int cols, const arith::Format& f, float* codes,
                     std::int64_t* amax, const TokenScales& scales) {
  launch_tokens(values, rows, cols, f, codes, amax, scales);
}
void quantize_tokens(const std::int32_t* values, int rows, int cols, const arith::Format& f, float* codes,
                     std::int64_t* amax, const TokenScales& scales) {
  launch_tokens(values, rows, cols, f, codes, amax, scales);
}
void quantize_tokens(const std::uint8_t* values, int rows, int cols, const arith::Format& f, std::int8_t* codes) {
  launch_tokens(values, rows, cols, f, codes, static_cast<std::int64_t*>(nullptr), TokenScales{});
}
void quantize_tokens(const std::int32_t* values, int rows, int cols, const arith::Format& f, std::int8_t* codes) {
  launch_tokens(values, rows, cols, f, codes, static_cast<std::int64_t*>(nullptr), TokenScales{});
}
void quantize_tokens(const std::uint8_t* values, int rows, int cols, const arith::Format& f, std::int16_t* codes) {
  launch_tokens(values, rows, cols, f, codes, static_cast<std::int64_t*>(nullptr), TokenScales{});
}
void quantize_tokens(const std::int32_t* values, int rows, int cols, const arith::Format& f, std::int16_t* codes) {
  launch_tokens(values, rows, cols, f, codes, static_cast<std::int64_t*>(nullptr), TokenScales{});
}

void accumulator_epilogue(const float* acc, int rows, int cols, const arith::FixedPoint* requant, bool relu,
                          const arith::Format& f, std::int32_t* z) {
  launch_epilogue(acc, rows, cols, requant, relu, f, z);
}
void accumulator_epilogue(const std::int64_t* acc, int rows, int cols, const arith::FixedPoint* requant, bool relu,
                          const arith::Format& f, std::int32_t* z) {
  launch_epilogue(acc, rows, cols, requant, relu, f, z);
}

void accumulate_exact(const float* codes, const float* weight_codes, int rows, int out, int in, int lanes,
                      const arith::Format& f, std::int64_t* acc) {
  const std::size_t total = static_cast<std::size_t>(rows) * static_cast<std::size_t>(out);
  if (total == 0) return;
  accumulate_exact_kernel<<<grid_for(total), kThreads>>>(codes, weight_codes, out, in, total, lanes, f, acc);
  check_launch("accumulate_exact");
}

void gather_rows(const std::uint8_t* pixels, const std::uint8_t* labels, const std::uint32_t* order, int rows,
                 int features, std::uint8_t* out_pixels, std::uint8_t* out_labels) {
  if (rows <= 0) return;
  gather_rows_kernel<<<rows, kThreads>>>(pixels, labels, order, features, out_pixels, out_labels);
  check_launch("gather_rows");
}

void pixels_to_unit(const std::uint8_t* pixels, std::size_t n, float* x) {
  if (n == 0) return;
  pixels_to_unit_kernel<<<grid_for(n), kThreads>>>(pixels, n, x);
  check_launch("pixels_to_unit");
}

void integer_logits(const std::int32_t* z, int rows, int classes, const float* code_scale, const float* reference,
                    float* logits) {
  const std::size_t total = static_cast<std::size_t>(rows) * static_cast<std::size_t>(classes);
  if (total == 0) return;
  integer_logits_kernel<<<grid_for(total), kThreads>>>(z, classes, total, code_scale, reference, logits);
  check_launch("integer_logits");
}

void relu(float* y, std::size_t n) {
  if (n == 0) return;
  relu_kernel<<<grid_for(n), kThreads>>>(y, n);
  check_launch("relu");
}

void zero_where_not_positive(float* d, const std::int32_t* z, std::size_t n) {
  if (n == 0) return;
  zero_where_not_positive_kernel<<<grid_for(n), kThreads>>>(d, z, n);
  check_launch("zero_where_not_positive");
}
void zero_where_not_positive(float* d, const float* y, std::size_t n) {
  if (n == 0) return;
  zero_where_not_positive_kernel<<<grid_for(n), kThreads>>>(d, y, n);
  check_launch("zero_where_not_positive");
}

void scale_rows(float* d, int rows, int cols, const float* s) {
  const std::size_t total = static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
  if (total == 0) return;
  scale_rows_kernel<<<grid_for(total), kThreads>>>(d, cols, total, s);
  check_launch("scale_rows");
}

void multiply(float* g, const float* mask, std::size_t n) {
  if (n == 0) return;
  multiply_kernel<<<grid_for(n), kThreads>>>(g, mask, n);
  check_launch("multiply");
}

void softmax_cross_entropy(const float* logits, const std::uint8_t* labels, int batch, int classes, float* dlogits,
                           LossTotals* totals) {
  if (batch <= 0 || classes <= 0) return;
  softmax_cross_entropy_kernel<<<1, kThreads>>>(logits, labels, batch, classes, dlogits, totals);
  check_launch("softmax_cross_entropy");
}

void adamw_step(float* w, const float* grad, float* m, float* v, std::size_t n, const AdamWParams& p) {
  if (n == 0) return;
  adamw_kernel<<<grid_for(n), kThreads>>>(w, grad, m, v, n, adamw_coefficients(p));
  check_launch("adamw_step");
}

}  // namespace qathw::kernels::cuda
