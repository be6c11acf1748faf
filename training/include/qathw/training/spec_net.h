// A network built from a model spec (models/*.toml) and its FP32 forward and backward passes on
// a batch: the FP32 twin of a convolutional QAT run, and the float half of its QAT passes.
// Activations are channels last, as the op graph holds them; a convolution is im2col and a GEMM
// per group (kernels/conv.h), pools walk arith's windows.
#pragma once

#include <cstdint>
#include <vector>

#include "qathw/arith.h"
#include "qathw/kernels/conv.h"
#include "qathw/model/model_spec.h"

namespace qathw::training {

class SpecNet {
 public:
  // Kernels uniform in +-1/sqrt(fan_in), seeded.
  SpecNet(model::ModelSpec spec, std::uint64_t seed);

  const model::ModelSpec& spec() const { return spec_; }
  // Per layer: its kernel (conv2d: out x patch, linear: out x in), empty for other layers.
  std::vector<std::vector<float>>& weights() { return w_; }
  const std::vector<std::vector<float>>& weights() const { return w_; }

  // Runs `batch` samples (input values, batch x input size); returns the logits (batch x classes).
  const std::vector<float>& forward(const float* input, int batch);

  // From d(loss)/d(logits) of the last forward: every kernel's gradient (the layout of weights()).
  void backward(const std::vector<float>& dlogits, std::vector<std::vector<float>>& grads);

  // The most patch values a convolution keeps from its forward pass for the kernel gradient
  // (default 2^25 per layer, 128 MiB); a larger layer builds its patches again in the backward
  // pass. The gradients are the same either way, up to float rounding.
  void set_max_kept_patches(std::size_t values) { max_kept_patches_ = values; }

  // ---- the accelerator's computation (QAT) ---------------------------------------------------

  // One layer's kernel as the hardware holds it for a step (arith's weight quantizer).
  struct QuantizedKernel {
    std::vector<float> codes, scales, dequantized, ste_mask;
    std::vector<arith::FixedPoint> requant;
    float reference = 0;
    // Each group's codes packed for the int8 GEMM (kernels/int8_gemm.h) and their offsets; empty
    // where it does not apply (no VNNI, or sums that may not fit int32 exactly).
    std::vector<std::int8_t> packed;
    std::vector<std::int32_t> packed_offsets;
  };
  // Quantizes every conv2d and linear kernel for the target's format.
  void quantize_kernels(const arith::Format& f);
  const std::vector<QuantizedKernel>& quantized() const { return q_; }

  // The integers the accelerator computes for `batch` samples of pixels, layer by layer, through
  // the quantized kernels: a dynamic quantizer before each conv2d and linear layer (the whole
  // feature map of a sample is one token), accumulators exact under the target's overflow rule
  // (chunks of `lanes` where they can saturate), the requantization epilogue, pools on integers.
  // integers(i) is layer i's output (batch x its size), what the integer engine computes on the
  // lowered graph. Static quantizers must be calibrated first (calibrate_static).
  // Returns the logits' real values (batch x classes): the last layer's integers times each
  // sample's unit (its input pixels' 1/255 through every quantizer's scale and kernel's reference).
  const std::vector<float>& forward_quantized(const std::uint8_t* pixels, int batch, const arith::Format& f,
                                              int lanes);
  const std::vector<std::int32_t>& integers(std::size_t layer) const { return z_[layer]; }

  // ---- static activation quantizers ---------------------------------------------------------
  // A kernel layer's input quantizer is static (one pair for the tensor, docs/models.md) when the
  // target's quantizer is, or when the layer's output reaches a residual add: the add aligns its
  // operands by fixed pairs, so their units, and every unit upstream, must not vary by sample.
  // The rest stay dynamic per token. Per layer: whether its quantizer is static.
  std::vector<bool> static_quantizers(const arith::Format& f) const;
  // Per layer: the learned step (real value of one code) of its static quantizer; 0 until
  // calibrated. The QAT forward quantizes by the pair input unit / step.
  std::vector<float>& steps() { return steps_; }
  const std::vector<float>& steps() const { return steps_; }
  // Sets every static quantizer's step from `batch` samples, layer by layer in one quantized
  // forward: the `fraction` percentile of its input's magnitudes (1: the largest) over qmax.
  void calibrate_static(const std::uint8_t* pixels, int batch, const arith::Format& f, int lanes, double fraction);
  // The pairs of the last forward_quantized: a static quantizer's ({} for dynamic), an add's two.
  const std::vector<arith::FixedPoint>& input_pairs(std::size_t layer) const { return input_pairs_[layer]; }
  const std::vector<arith::FixedPoint>& add_pairs(std::size_t layer) const { return add_pairs_[layer]; }
  // Per layer: d(loss)/d(step) of the last backward_quantized (LSQ), 0 for dynamic quantizers.
  const std::vector<float>& step_gradients() const { return step_grads_; }

  // The QAT backward of the last forward_quantized: the float passes on its real values, through
  // the dequantized kernels and the quantized inputs (straight-through estimators); with `clip`,
  // each kernel's gradient is zero where its weight quantizer clips.
  void backward_quantized(const std::vector<float>& dlogits, bool clip, std::vector<std::vector<float>>& grads);

 private:
  const float* input_of(std::size_t layer) const;  // the output the layer reads, or the input

  model::ModelSpec spec_;
  std::vector<std::vector<float>> w_;
  int batch_ = 0;
  const float* input_ = nullptr;
  std::vector<std::vector<float>> out_;           // per layer: batch x out_shape
  std::vector<std::vector<std::int32_t>> argmax_;  // max pools: the input index of each output
  std::vector<std::size_t> source_, residual_;    // per layer: the layer it reads (and adds)
  std::vector<QuantizedKernel> q_;                 // per layer (empty for layers without a kernel)
  std::vector<std::vector<std::int32_t>> z_;       // per layer: the integers of the last forward_quantized
  std::vector<std::vector<float>> kin_;            // per kernel layer: its input codes times their scale
  std::vector<float> chunk_grads_;                 // a convolution's kernel gradient, chunk by chunk
  std::vector<std::vector<float>> dout_;           // backward: d(loss)/d(each layer's output)
  // Per convolution: the last forward's patches ([group][sample][pixel][patch]; codes in QAT),
  // for the kernel gradient; empty when too large to keep. In QAT, each sample's code scale.
  std::vector<std::vector<float>> patches_, code_scale_;
  // Per convolution, the same when the int8 GEMM ran the QAT forward: byte codes + 128, rows
  // padded to 4 bytes ([group][sample][pixel][padded patch]).
  std::vector<std::vector<std::uint8_t>> code_patches_;
  std::size_t max_kept_patches_ = std::size_t{1} << 25;
  void keep_patches(std::size_t layer, int batch, const arith::Conv2dShape& s, bool codes);
  template <typename T>
  T* kept_patches(std::vector<T>& kept, int g, int b0, int batch, const arith::Conv2dShape& s, int row) const;
  std::vector<std::vector<kernels::PatchRuns>> patch_runs_;  // per convolution and group
  // Buffers of every step, kept with their memory: the input pixels as integers, and the
  // passes' scratch.
  std::vector<std::int32_t> input_integers_;
  std::vector<float> scratch_[2];
  std::vector<std::uint8_t> input_codes_;                   // a kernel layer's input codes + 128 (int8 GEMM)
  std::vector<float> steps_, step_grads_;          // per layer: static quantizer steps, their gradients
  std::vector<float> pair_steps_;                  // per layer: the step its pair gives (last forward)
  std::vector<std::vector<float>> xs_;             // per static layer: its input over the step
  std::vector<std::vector<arith::FixedPoint>> input_pairs_, add_pairs_;
  std::int64_t qmax_ = 0;
  bool calibrating_ = false;
  double calibration_fraction_ = 1.0;
  std::int64_t calibrate(const std::vector<std::int32_t>& values) const;
  float lsq_backward(std::size_t layer, const std::vector<float>& dcodes, float* dx) const;
  bool quantized_pass_ = false;                    // whether the last forward was forward_quantized
  void backward_pass(const std::vector<float>& dlogits, std::vector<std::vector<float>>& grads);
};

}  // namespace qathw::training
