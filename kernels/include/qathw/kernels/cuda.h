// The CUDA kernels: the trainer's fake quantization, its straight-through backward, the GEMMs on
// integer-valued codes, AdamW and the loss, and the packed-weight layer of the deployed model.
// Each launcher mirrors the CPU kernel of the same name (quant_ops.h, dense.h) on device
// pointers: the kernels hold index and reduction structure only, and every element rule is a call
// into the arith core, the same functions the CPU kernels call. docs/cuda.md describes them.
//
// Host code may include this header without CUDA's headers. The functions exist only in builds
// with CUDA support (QATHW_HAVE_CUDA); they run asynchronously in order on the default stream,
// and a failure surfaces as CudaError from the call or from the next synchronize().
#pragma once

#include <climits>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "qathw/arith.h"
#include "qathw/kernels/dense.h"

namespace qathw::kernels::cuda {

class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ---- memory ------------------------------------------------------------------------------

void* allocate(std::size_t bytes);
void release(void* p) noexcept;
void upload(void* device, const void* host, std::size_t bytes);
void download(void* host, const void* device, std::size_t bytes);
void fill_zero(void* device, std::size_t bytes);
// Waits for all queued work; throws CudaError with the first error it raised.
void synchronize();

// An owned device array of trivially copyable T.
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(std::size_t n) { resize(n); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray(DeviceArray&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    if (this != &o) {
      release(p_);
      p_ = o.p_, n_ = o.n_;
      o.p_ = nullptr, o.n_ = 0;
    }
    return *this;
  }
  ~DeviceArray() { release(p_); }

  // Reallocates when the size changes; contents are then undefined.
  void resize(std::size_t n) {
    if (n == n_) return;
    release(p_);
    p_ = nullptr, n_ = 0;
    if (n != 0) p_ = static_cast<T*>(allocate(n * sizeof(T)));
    n_ = n;
  }
  void assign(const T* host, std::size_t n) {
    resize(n);
    if (n) upload(p_, host, n * sizeof(T));
  }
  void assign(const std::vector<T>& host) { assign(host.data(), host.size()); }
  std::vector<T> to_host() const {
    std::vector<T> out(n_);
    if (n_) download(out.data(), p_, n_ * sizeof(T));
    return out;
  }
  void zero() {
    if (n_) fill_zero(p_, n_ * sizeof(T));
  }

  T* data() { return p_; }
  const T* data() const { return p_; }
  std::size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

// ---- fake quantization (quant_ops.h on device) ----------------------------------------------

inline constexpr int kNoBadChannel = INT_MAX;

// Device outputs of quantize_weights. `abs_sum` is scratch (one value); `reference` one float;
// `bad_channel` one int, kNoBadChannel until some channel's scale ratio is not representable in
// the target's fixed-point format (then the smallest such channel; it is never reset).
struct WeightQuantOutputs {
  float* codes = nullptr;        // out x in
  float* scales = nullptr;       // out
  float* dequantized = nullptr;  // out x in
  float* ste_mask = nullptr;     // out x in
  arith::FixedPoint* requant = nullptr;  // out
  float* reference = nullptr;
  unsigned long long* abs_sum = nullptr;
  int* bad_channel = nullptr;
};

// kernels::quantize_weights on device: the absmean of a ternary tensor is an integer sum of
// arith::abs_fixed (order-independent, so equal to the CPU's), the INT4 per-row absmax a max.
void quantize_weights(const float* w, int out, int in, const arith::Format& f, const WeightQuantOutputs& o);

// Per-token scale bookkeeping of the trainer, done by the token kernel: the real value of one
// code of token b, code_scale[b] = amax[b] * unit[b] / qmax, where unit[b] (the real value of one
// input integer) is first_unit for the first layer and prev_code_scale[b] * *prev_reference after.
struct TokenScales {
  float* code_scale = nullptr;
  const float* prev_code_scale = nullptr;
  const float* prev_reference = nullptr;
  float first_unit = 1.0f;
};

// kernels::quantize_tokens on device: one block per token, absmax reduction, the hardware
// reciprocal and the codes of arith::quantize_token (arith::token_quantizer). amax may be null.
void quantize_tokens(const std::uint8_t* values, int rows, int cols, const arith::Format& f, float* codes,
                     std::int64_t* amax, const TokenScales& scales = {});
void quantize_tokens(const std::int32_t* values, int rows, int cols, const arith::Format& f, float* codes,
                     std::int64_t* amax, const TokenScales& scales = {});
// The same, codes as integers for the deployed model's layers (int8 needs act_bits <= 8).
void quantize_tokens(const std::uint8_t* values, int rows, int cols, const arith::Format& f, std::int8_t* codes);
void quantize_tokens(const std::int32_t* values, int rows, int cols, const arith::Format& f, std::int8_t* codes);
void quantize_tokens(const std::uint8_t* values, int rows, int cols, const arith::Format& f, std::int16_t* codes);
void quantize_tokens(const std::int32_t* values, int rows, int cols, const arith::Format& f, std::int16_t* codes);

// kernels::accumulator_epilogue on device.
void accumulator_epilogue(const float* acc, int rows, int cols, const arith::FixedPoint* requant, bool relu,
                          const arith::Format& f, std::int32_t* z);
void accumulator_epilogue(const std::int64_t* acc, int rows, int cols, const arith::FixedPoint* requant, bool relu,
                          const arith::Format& f, std::int32_t* z);

// kernels::accumulate_exact on device for `rows` tokens: arith::dot per output, one thread each.
void accumulate_exact(const float* codes, const float* weight_codes, int rows, int out, int in, int lanes,
                      const arith::Format& f, std::int64_t* acc);

// ---- the trainer's other element-wise steps ------------------------------------------------

// out_pixels[r] = pixels[order[r]] (features bytes each), out_labels[r] = labels[order[r]].
void gather_rows(const std::uint8_t* pixels, const std::uint8_t* labels, const std::uint32_t* order, int rows,
                 int features, std::uint8_t* out_pixels, std::uint8_t* out_labels);
// x[i] = pixels[i] / 255 (the FP32 twin's input).
void pixels_to_unit(const std::uint8_t* pixels, std::size_t n, float* x);
// logits[b][c] = z[b][c] * (code_scale[b] * *reference): the output layer's integers as reals.
void integer_logits(const std::int32_t* z, int rows, int classes, const float* code_scale, const float* reference,
                    float* logits);
void relu(float* y, std::size_t n);
// Straight-through backward of ReLU: d[i] = 0 where the layer's output was not positive.
void zero_where_not_positive(float* d, const std::int32_t* z, std::size_t n);
void zero_where_not_positive(float* d, const float* y, std::size_t n);
// d[b][c] *= s[b]
void scale_rows(float* d, int rows, int cols, const float* s);
// g[i] *= mask[i] (the clipped straight-through estimator)
void multiply(float* g, const float* mask, std::size_t n);

// Sums over the steps of an epoch, kept on the device.
struct LossTotals {
  double loss_sum = 0;               // sum of each step's mean loss (as the float the CPU returns)
  unsigned long long correct = 0;    // correct argmax predictions
};
// softmax_cross_entropy of network.h on device; adds the step's mean loss and correct count to
// *totals (device memory).
void softmax_cross_entropy(const float* logits, const std::uint8_t* labels, int batch, int classes, float* dlogits,
                           LossTotals* totals);

// adamw_step of dense.h on device (arith of kernels::adamw_update).
void adamw_step(float* w, const float* grad, float* m, float* v, std::size_t n, const AdamWParams& p);

// ---- GEMMs (dense.h on device): plain FP32, never TF32; exact on integer-valued codes while
// every partial sum stays below 2^24 --------------------------------------------------------

void gemm_abt(const float* a, const float* b, int m, int n, int k, float* c);
void gemm_atb(const float* a, const float* b, int m, int n, int k, float* c);
void gemm_ab(const float* a, const float* b, int m, int n, int k, float* c);

// ---- the deployed model ----------------------------------------------------------------------

// device_packed_bytes below exists in every build. packed_layer sums in one exact pass where
// arith::accumulation_order_free(in, f) holds, else in the array's order.
inline constexpr int kPackedWordBytes = 16;

// Bytes a packed weight array of `count` codes occupies on the device: packed_bytes rounded up to
// 16, the padding zero, so the layer kernel reads whole 16-byte words.
std::size_t device_packed_bytes(std::size_t count, arith::WeightFormat w);

// One layer of the deployed model for `samples` tokens: z[s][n] = requantize(dot(x[s], W[n])),
// ReLU when `relu`, with W packed as the bundle holds it (row-major, 2 or 4 bits a code, rows not
// byte-aligned in general; the buffer padded as device_packed_bytes says). The dot product is the
// array's: when its result cannot depend on order (wrap, or no sum can saturate) one warp sums
// exactly and applies the overflow rule once; otherwise the warp forms `lanes`-wide partial sums
// and folds them in order with arith::accumulate, as arith::dot does.
void packed_layer(const std::uint8_t* packed, const std::int8_t* x, int samples, int in, int out, int lanes,
                  const arith::Format& f, const arith::FixedPoint* requant, bool relu, std::int32_t* z);
void packed_layer(const std::uint8_t* packed, const std::int16_t* x, int samples, int in, int out, int lanes,
                  const arith::Format& f, const arith::FixedPoint* requant, bool relu, std::int32_t* z);

// ---- the deployed model's feature-map ops (feature_map.cu) -----------------------------------

// codes[i] = arith::quantize_act(values[i], pair): a static quantizer's codes. In: uint8 pixels or
// int32 values; Code: int8 or int16.
template <typename In, typename Code>
void quantize_static(const In* values, std::size_t n, arith::FixedPoint pair, const arith::Format& f, Code* codes);

// Group g's patches of `samples` maps of codes (in_h x in_w x in_c each), one row of s.patch()
// codes per (sample, oy, ox), as arith::conv_patch gathers them: the packed-weight layer's input.
template <typename Code>
void conv_patches(const Code* codes, int samples, const arith::Conv2dShape& s, int g, Code* patches);

// dst[r][offset + c] = src[r][c] for rows x cols values (a group's channels into the map).
void place_columns(const std::int32_t* src, std::size_t rows, int cols, std::int32_t* dst, int dst_cols, int offset);

// A max or average pool (s: the in_h x in_w x in_c map and its window) of `samples` maps, then the
// fused ReLU: arith::max_pool, or arith::average_pool of arith::window_sum by `pair` (1 / area).
void pool(const std::int32_t* maps, int samples, const arith::Conv2dShape& s, bool average, arith::FixedPoint pair,
          bool relu, const arith::Format& f, std::int32_t* z);

// z[i] = arith::add_aligned(a[i], pair_a, b[i], pair_b), then the fused ReLU.
void add_aligned(const std::int32_t* a, const std::int32_t* b, std::size_t n, arith::FixedPoint pair_a,
                 arith::FixedPoint pair_b, bool relu, const arith::Format& f, std::int32_t* z);

// Host side (every build): group g's rows (output channels g group_out .. + group_out - 1, each of
// `patch` codes) of a kernel's packed codes, packed alone and padded as device_packed_bytes says.
std::vector<std::uint8_t> group_packed_codes(const std::vector<std::uint8_t>& packed, arith::WeightFormat w, int patch,
                                             int group_out, int g);

// ---- the model-file trainer (spec_train.cu): SpecNet's passes on the device -----------------
// Maps are channels last, `samples` of them; a pool's shape is a Conv2dShape whose in_h x in_w x
// in_c is its input map and whose window is the pool's (out_c and groups unused). Scalars that
// the host computes in SpecNet (a static quantizer's pair, an add's pairs) are computed here by
// one thread from device values, with the same float and double operations (the file is
// compiled with --fmad=false), so a step never waits for the host.

// Free and total bytes of device 0's memory.
struct DeviceMemory {
  std::size_t free = 0, total = 0;
};
DeviceMemory device_memory();

// z[i] = pixels[i] (the integers of the quantized input).
void widen_pixels(const std::uint8_t* pixels, std::size_t n, std::int32_t* z);
// x[i] = pixels[i] / 255.0f (the FP32 input values, the division the host does).
void pixels_over_255(const std::uint8_t* pixels, std::size_t n, float* x);
// p[i] = value
void fill(float* p, std::size_t n, float value);

// The per-sample scales of a dynamic quantizer from its token maxima: code_scale[b] = amax[b] *
// unit_in[b] / qmax, unit_out[b] = code_scale[b] * *reference (SpecNet::forward_quantized).
void dynamic_units(const std::int64_t* amax, const float* unit_in, int samples, int act_bits, const float* reference,
                   float* code_scale, float* unit_out);

// A static quantizer's pair for a step (one thread): pair = to_fixed_point(unit_in[0] / *step),
// pair_step = unit_in[0] / to_real(pair), then code_scale[b] = pair_step and unit_out[b] =
// pair_step * *reference for every sample. Where the ratio has no pair, *bad = 1 and *bad_value =
// the ratio (the pair is then 1 / 2^0, harmless), for the host to report.
struct StaticQuantizerOutputs {
  arith::FixedPoint* pair = nullptr;
  float* pair_step = nullptr;
  float* code_scale = nullptr;
  float* unit_out = nullptr;
  int* bad = nullptr;
  float* bad_value = nullptr;
};
void static_quantizer(const float* unit_in, const float* step, const float* reference, int samples,
                      const arith::Format& f, const StaticQuantizerOutputs& o);
// codes[i] = arith::quantize_act(x[i], *pair) as floats.
void quantize_static_codes(const std::int32_t* x, std::size_t n, const arith::FixedPoint* pair, const arith::Format& f,
                           float* codes);

// An add's pairs (one thread): unit_out = max(unit_a[0], unit_b[0]), pairs[0] and pairs[1] the
// operands' units over it (to_fixed_point); unit_out[b] for every sample; *bad = 1 where one has
// no pair.
void add_pairs(const float* unit_a, const float* unit_b, int samples, const arith::Format& f, arith::FixedPoint* pairs,
               float* unit_out, int* bad);
// z[i] = arith::add_aligned(a[i], pairs[0], b[i], pairs[1]).
void add_aligned(const std::int32_t* a, const std::int32_t* b, std::size_t n, const arith::FixedPoint* pairs,
                 const arith::Format& f, std::int32_t* z);
// y[i] = a[i] + b[i]
void add_values(const float* a, const float* b, std::size_t n, float* y);

// z[i] = arith::relu(x[i]); y[i] = max(x[i], 0).
void relu_integers(const std::int32_t* x, std::size_t n, std::int32_t* z);
void relu_values(const float* x, std::size_t n, float* y);

// Max pool of `samples` maps: z = arith::max_pool, argmax (per output: the in-sample map index
// that takes its gradient) the first window position holding it in arith::for_each_window_index
// order. The float form is the FP32 twin's (the first strictly larger value wins).
void max_pool(const std::int32_t* maps, int samples, const arith::Conv2dShape& s, std::int32_t* z,
              std::int32_t* argmax);
void max_pool(const float* maps, int samples, const arith::Conv2dShape& s, float* y, std::int32_t* argmax);
// The FP32 twin's average pool: the window's in-map values summed in walk order, over the area.
void average_pool_values(const float* maps, int samples, const arith::Conv2dShape& s, float* y);

// Group g's patches of `samples` float maps (codes or values), arith::conv_patch per row
// (sample, oy, ox): `samples` out_h out_w rows of s.patch().
void conv_patches(const float* maps, int samples, const arith::Conv2dShape& s, int g, float* patches);
// dst[r][c] = src[r][offset + c] for rows x cols values (a group's channels out of the map), and
// the reverse for float maps.
void take_columns(const float* src, std::size_t rows, int src_cols, int offset, int cols, float* dst);
void place_columns(const float* src, std::size_t rows, int cols, float* dst, int dst_cols, int offset);

// ---- the backward passes (every sum a gather in a fixed order: no atomics) ----

// Group g's channels of dmap (samples maps) from the patch gradients dcols (as conv_patches lays
// out patches): each element the sum of the patch elements that read it, in ascending output
// pixel order (gradient_sources.h), added to the element (`add`) or written over it.
void conv_input_gradient(const float* dcols, int samples, const arith::Conv2dShape& s, int g, bool add, float* dmap);
// dx += the pool's input gradient: a max pool passes dy to its argmax, an average pool dy / area
// to each in-map position of the window (argmax null).
void pool_input_gradient(const float* dy, const std::int32_t* argmax, int samples, const arith::Conv2dShape& s,
                         float* dx);
// dx[i] += dy[i] where the ReLU's input was positive: the QAT form tests the input integers
// (z[i] > 0, as SpecNet's backward_quantized does), the FP32 form the input values.
void relu_input_gradient(const float* dy, const std::int32_t* z, std::size_t n, float* dx);
void relu_input_gradient(const float* dy, const float* x, std::size_t n, float* dx);
// dst[i] += src[i]
void add_into(float* dst, const float* src, std::size_t n);
// out[b][c] = z[b][c] * unit[b] (a layer's integers as reals: the logits).
void integer_values(const std::int32_t* z, int samples, int per_sample, const float* unit, float* out);

// c[n x k] = a[m x n]^T b[m x k] with m split into split_chunks(m) fixed chunks of rows
// (gradient_sources.h), each chunk's product into `partials` (split_chunks(m) n k floats; unused
// for one chunk), then summed in chunk order into c.
void gemm_atb_split(const float* a, const float* b, int m, int n, int k, float* partials, float* c);

// LSQ (SpecNet::backward_quantized): for a static quantizer with input integers x, codes, input
// unit *unit_in and step *pair_step, over n values of gradient dcodes: the step's gradient
// sum(...) / sqrt(features qmax) into *step_grad (a double sum over fixed blocks, summed in
// order), and, where dx is not null, dx[i] += dcodes[i] where the quantizer does not clip.
// partials: lsq_partials(n) doubles.
std::size_t lsq_partials(std::size_t n);
void lsq_backward(const float* dcodes, const std::int32_t* x, const float* codes, std::size_t n, const float* unit_in,
                  const float* pair_step, int act_bits, double features, float* dx, double* partials,
                  float* step_grad);

}  // namespace qathw::kernels::cuda
