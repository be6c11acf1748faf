// The training loop's step on the GPU: the same passes as network.cpp (quantize_weights,
// forward_quantized, softmax_cross_entropy, backward_quantized, and the FP32 twin's), each kernel
// of qathw/kernels/cuda.h standing for the CPU kernel of the same name. Weights, optimizer
// moments and the training set live on the device for a whole phase; the host reads them back
// once an epoch, for the checkpoint and the test-set evaluation.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "qathw/arith.h"
#include "qathw/kernels/dense.h"
#include "qathw/training/idx.h"
#include "qathw/training/network.h"

namespace qathw::training {

class CudaTrainer {
 public:
  // quantized: QAT on `f` (lanes: the array's adder-tree width); else the FP32 twin.
  CudaTrainer(const Mlp& net, const std::vector<std::vector<float>>& adam_m,
              const std::vector<std::vector<float>>& adam_v, const arith::Format& f, int lanes, int batch,
              const Dataset& train, bool quantized, bool ste_clip);
  ~CudaTrainer();
  CudaTrainer(const CudaTrainer&) = delete;
  CudaTrainer& operator=(const CudaTrainer&) = delete;

  // The sample order of the epoch (train.count indices).
  void set_order(const std::vector<std::uint32_t>& order);
  // One training step on the batch starting at order[first]; queued, not waited for.
  void step(std::size_t first, const kernels::AdamWParams& p);

  struct Totals {
    double loss_sum = 0;  // sum of the steps' mean losses
    long correct = 0;
  };
  // Waits for the queued steps, returns the sums since the last call and resets them. Throws
  // std::runtime_error when a weight scale ratio was not representable (as the CPU does).
  Totals take_totals();

  // The last step's output-layer integers (QAT; empty for FP32), logits and weight gradients, for
  // tests that hold the step to the CPU's passes.
  struct Inspection {
    std::vector<std::int32_t> output_integers;
    std::vector<float> logits;
    std::vector<std::vector<float>> gradients;
  };
  Inspection inspect() const;

  // The weights and moments back on the host.
  void download(Mlp& net, std::vector<std::vector<float>>& adam_m, std::vector<std::vector<float>>& adam_v) const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace qathw::training
