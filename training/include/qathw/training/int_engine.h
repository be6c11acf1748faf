// The integer engine: a deployed bundle run with integer arithmetic only, through the arith core,
// one sample at a time as the accelerator runs it. The reference the other engines are held to.
#pragma once

#include <cstdint>
#include <vector>

#include "qathw/training/bundle.h"

namespace qathw::training {

// Every layer's output integers (requantized, after ReLU for hidden layers) for one sample.
using LayerOutputs = std::vector<std::vector<std::int32_t>>;

class IntEngine {
 public:
  explicit IntEngine(const Bundle& bundle);

  LayerOutputs run(const std::uint8_t* pixels) const;

  // Every layer's outputs of `count` samples, samples in parallel.
  std::vector<LayerOutputs> run_all(const std::uint8_t* pixels, std::size_t count) const;

  // Output-layer integers of `count` samples (count x classes), samples in parallel.
  std::vector<std::int32_t> run_batch(const std::uint8_t* pixels, std::size_t count) const;

 private:
  Bundle bundle_;  // a copy: an engine outlives the bundle it was made from
  std::vector<std::vector<std::int8_t>> codes_;  // unpacked once
};

}  // namespace qathw::training
