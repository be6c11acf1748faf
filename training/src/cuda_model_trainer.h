// The training step of a model file's network (training::SpecNet) on the GPU: quantize_kernels,
// forward_quantized, the loss and backward_quantized (QAT), or forward and backward (the FP32
// twin), each pass a sequence of kernels of qathw/kernels/cuda.h. The integers of the QAT forward
// are SpecNet's bit for bit (the same arith rules, pairs and units); the gradients are the same
// sums in another order. Kernels, their AdamW moments and the training set stay on the device
// for a phase. A static quantizer's step is learned as its logarithm on the host, as the CPU
// trainer does it (exp and AdamW there): the step waits once for the step gradients (a few
// floats) where the network has static quantizers, and never otherwise. docs/cuda.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "qathw/arith.h"
#include "qathw/kernels/dense.h"
#include "qathw/model/model_spec.h"
#include "qathw/training/idx.h"
#include "qathw/training/spec_net.h"

namespace qathw::training {

// ---- the layout of a spec's network on the device (host code, every build) --------------------

// Per layer: the layer it reads (kSpecInput: the pixels) and an add's residual operand; the
// same resolution of names as SpecNet's.
inline constexpr std::size_t kSpecInput = static_cast<std::size_t>(-1);
struct SpecGraph {
  std::vector<std::size_t> source, residual;
};
SpecGraph spec_graph(const model::ModelSpec& spec);

// A conv2d layer's shape, or a pool's (its input map and window; out_c = channels, one group).
arith::Conv2dShape layer_shape(const model::LayerSpec& l);

// Bytes of device memory a step of `batch` samples needs beyond the training set: every layer's
// outputs and their gradients, kept patches, kernels with moments and quantized forms, scratch.
std::size_t spec_step_device_bytes(const model::ModelSpec& spec, int batch, bool quantized);

class CudaModelTrainer {
 public:
  // net: the network (its spec; in QAT, which quantizers are static). parameters and moments as
  // the CPU trainer holds them: each kernel (layer order), then in QAT each static quantizer's
  // log step (1 value; layer order). Throws std::runtime_error when the device lacks the memory.
  CudaModelTrainer(const SpecNet& net, const std::vector<std::vector<float>*>& parameters,
                   const std::vector<std::vector<float>>& adam_m, const std::vector<std::vector<float>>& adam_v,
                   const arith::Format& f, int lanes, int batch, const Dataset& train, bool quantized, bool ste_clip);
  ~CudaModelTrainer();
  CudaModelTrainer(const CudaModelTrainer&) = delete;
  CudaModelTrainer& operator=(const CudaModelTrainer&) = delete;

  // The sample order of the epoch (train.count indices).
  void set_order(const std::vector<std::uint32_t>& order);
  // One training step on the batch starting at order[first]; queued, not waited for (except for
  // the step gradients of static quantizers). p.weight_decay applies to kernels only.
  void step(std::size_t first, const kernels::AdamWParams& p);

  struct Totals {
    double loss_sum = 0;
    long correct = 0;
  };
  // Waits for the queued steps, returns the sums since the last call and resets them. Throws
  // std::runtime_error where the CPU would have: a weight scale ratio, a static quantizer's or an
  // add's pair with no representation in the target's scale format.
  Totals take_totals();

  // The last step, for tests that hold it to SpecNet's passes.
  struct Inspection {
    std::vector<std::vector<std::int32_t>> integers;  // QAT: per layer, SpecNet::integers
    std::vector<float> logits;
    std::vector<std::vector<float>> gradients;  // per parameter (kernels; d loss / d log step)
    std::vector<float> step_gradients;          // per static quantizer: d loss / d step (LSQ)
  };
  Inspection inspect() const;

  // The parameters and moments back on the host (the layout of the constructor's).
  void download(const std::vector<std::vector<float>*>& parameters, std::vector<std::vector<float>>& adam_m,
                std::vector<std::vector<float>>& adam_v) const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace qathw::training
