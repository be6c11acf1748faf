// The deployed model on the GPU: the bundle's packed ternary or INT4 weights as they are, the
// activation quantizer and the packed-weight layer of qathw/kernels/cuda.h. Bit-exact with the
// integer engine (model::IntEngine), which tests and `qat-hw infer --engine cuda` hold it to.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "qathw/model/accelerator_layers.h"
#include "qathw/model/bundle.h"

namespace qathw::kernels {

class CudaEngine {
 public:
  // Uploads the bundle's weights. Throws std::runtime_error when CUDA support was not compiled
  // in or no device is usable (the message says which).
  explicit CudaEngine(const model::Bundle& bundle);
  ~CudaEngine();
  CudaEngine(const CudaEngine&) = delete;
  CudaEngine& operator=(const CudaEngine&) = delete;

  // Every fused layer's outputs of `count` samples (model::accelerator_layers).
  std::vector<model::LayerOutputs> run_all(const std::uint8_t* pixels, std::size_t count) const;
  // Output-layer integers of `count` samples (count x classes), as IntEngine::run_batch.
  std::vector<std::int32_t> run_batch(const std::uint8_t* pixels, std::size_t count) const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace qathw::kernels
