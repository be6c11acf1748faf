// The MLP the trainer learns, its FP32 and quantized forward passes, and their backward passes.
//
// The quantized forward is the accelerator's computation: input pixels are integers, each
// layer's input is quantized per token by the arith core's activation quantizer, accumulators
// are exact integers (float GEMMs on integer codes, exact below 2^24), the accumulator's
// overflow rule, requantization and ReLU run on integers. Real values exist only for the loss
// and gradients: a layer's real output is its integer z times a per-token unit, so the per-token
// absmax quantizer, being scale-invariant, sees exactly the integers the hardware sees.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "qathw/arith.h"

namespace qathw::training {

struct Layer {
  int in = 0, out = 0;
  bool relu = true;      // hidden layers; the output layer has none
  std::vector<float> w;  // FP32 master weights, row-major out x in
};

struct Mlp {
  std::vector<Layer> layers;
  int inputs() const { return layers.front().in; }
  int classes() const { return layers.back().out; }
};

// Layers inputs -> hidden... -> classes, weights uniform in +-1/sqrt(fan_in), seeded.
Mlp make_mlp(int inputs, const std::vector<int>& hidden, int classes, std::uint64_t seed);

// One layer's weights as the hardware holds them for a step: integer codes and scales.
struct QuantizedLayer {
  std::vector<float> codes;        // out x in, integer-valued
  std::vector<float> scales;       // per output channel, real units
  std::vector<float> dequantized;  // codes * scale, for the backward pass
  std::vector<float> ste_mask;     // 1 where the weight quantizer does not clip
  std::vector<arith::FixedPoint> requant;  // per output channel: scale / reference
  float reference = 0;                     // real value of one requantized z unit per input code unit
  std::vector<std::int8_t> codes_s8;       // the codes packed in column blocks, when the int8 GEMM runs
  std::vector<std::int32_t> code_offsets;  // its per-column offsets
};

// Quantizes every layer into `out`, reusing its buffers (this runs once per training step).
void quantize_weights(const Mlp& net, const arith::Format& f, std::vector<QuantizedLayer>& out);

// Per-batch state kept by the forward pass for the backward pass.
struct Activations {
  int batch = 0;
  std::vector<std::vector<float>> inputs;         // per layer: FP32 real inputs, or activation codes
  std::vector<std::vector<float>> code_scale;     // quantized: per layer, per token real value of one code
  std::vector<std::vector<std::int32_t>> z;       // quantized: per layer, requantized (and ReLU'd) integers
  std::vector<std::vector<float>> fp32_outputs;   // FP32: per layer, outputs after ReLU (logits last)
  std::vector<float> logits;                      // batch x classes, real
  std::vector<std::vector<std::uint8_t>> inputs_u8;  // quantized: codes + 128, padded rows (int8 GEMM)
  std::vector<std::int64_t> amax;                 // scratch
  std::vector<std::int32_t> acc_i32;              // scratch: int8 GEMM accumulators
  std::vector<float> acc;                         // scratch: batch x out
  std::vector<std::int64_t> acc_exact;            // scratch for layers whose float sums are not exact
  std::vector<float> grad_scratch[2];             // scratch of the backward passes
};

// FP32 twin: same architecture, no quantization. Input pixel / 255.
void forward_fp32(const Mlp& net, const std::uint8_t* pixels, int batch, Activations& act);

// The accelerator's computation; act.z.back() holds the output-layer integers. Accumulators come
// from the int8 GEMM where it runs and is exact, else from the float GEMM where that is exact,
// else from the array's chunked accumulation (`lanes`: the target's adder-tree width).
void forward_quantized(const Mlp& net, const std::vector<QuantizedLayer>& q, const arith::Format& f, int lanes,
                       const std::uint8_t* pixels, int batch, Activations& act);

// Mean softmax cross-entropy; writes d(loss)/d(logits) and counts correct argmax predictions.
float softmax_cross_entropy(const std::vector<float>& logits, const std::uint8_t* labels, int batch, int classes,
                            std::vector<float>& dlogits, int& correct);

// Knowledge distillation from a teacher's logits (Hinton et al., 2015): (1 - weight) x the
// cross-entropy with the labels + weight x T^2 x KL(softmax(teacher / T) || softmax(logits / T)),
// averaged over the batch; writes d(loss)/d(logits) and counts correct argmax predictions.
float distillation_loss(const std::vector<float>& logits, const std::vector<float>& teacher, const std::uint8_t* labels,
                        int batch, int classes, float temperature, float weight, std::vector<float>& dlogits,
                        int& correct);

// Gradients of the master weights (one vector per layer) from d(loss)/d(logits).
void backward_fp32(const Mlp& net, Activations& act, const std::vector<float>& dlogits,
                   std::vector<std::vector<float>>& grads);
// Straight-through estimator: the activation quantizer passes gradients unchanged (absmax never
// clips); the weight quantizer passes them where ste_mask is 1 (all weights when `clip` is off).
void backward_quantized(const Mlp& net, const std::vector<QuantizedLayer>& q, Activations& act,
                        const std::vector<float>& dlogits, bool clip, std::vector<std::vector<float>>& grads);

// Index of the first maximum of each row: the predicted class.
template <typename T>
int argmax(const T* row, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (row[i] > row[best]) best = i;
  return best;
}

}  // namespace qathw::training
