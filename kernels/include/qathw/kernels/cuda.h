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

}  // namespace qathw::kernels::cuda
