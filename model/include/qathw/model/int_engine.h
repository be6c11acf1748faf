// The integer engine: the op graph interpreted with integer arithmetic only, through the arith
// core, one sample at a time. The reference every other engine is held to.
#pragma once

#include <cstdint>
#include <vector>

#include "qathw/model/bundle.h"

namespace qathw::model {

class IntEngine {
 public:
  explicit IntEngine(const Bundle& bundle);

  // Every op's output integers for one sample of the input tensor's size.
  OpOutputs run(const std::uint8_t* input) const;

  // Every op's outputs of `count` samples, samples in parallel.
  std::vector<OpOutputs> run_all(const std::uint8_t* inputs, std::size_t count) const;

  // Output-tensor integers of `count` samples (count x output size), samples in parallel.
  std::vector<std::int32_t> run_batch(const std::uint8_t* inputs, std::size_t count) const;

  // Index of the op writing the graph's output tensor.
  std::size_t output_op() const { return output_op_; }

 private:
  Bundle bundle_;  // a copy: an engine outlives the bundle it was made from
  std::vector<std::vector<std::int8_t>> codes_;  // per op: linear weight codes, unpacked once
  std::vector<std::size_t> input_of_;            // per op: the op producing its input, or npos for the input
  std::vector<std::size_t> residual_of_;         // per add, scores, attend op: the op producing its second input
  std::vector<std::vector<std::size_t>> factors_of_;  // per op: the dynamic quantize ops of its factors
  std::vector<arith::Exp2Table> tables_;         // per softmax op: its exp2 table, built once
  std::size_t output_op_ = 0;
};

}  // namespace qathw::model
