#include "qathw/model/int_engine.h"

#include <algorithm>
#include <limits>

namespace qathw::model {

namespace {
constexpr std::size_t kFromInput = std::numeric_limits<std::size_t>::max();
}

IntEngine::IntEngine(const Bundle& bundle) : bundle_(bundle) {
  const Graph& g = bundle_.graph;
  for (const Op& op : g.ops) {
    codes_.push_back(op.type == OpType::Linear ? op.linear.codes() : std::vector<std::int8_t>{});
    input_of_.push_back(op.input == g.input ? kFromInput : g.producer(op.input).value());
  }
  output_op_ = g.producer(g.output).value();
}

OpOutputs IntEngine::run(const std::uint8_t* input) const {
  const Graph& g = bundle_.graph;
  const arith::Format& f = bundle_.target.format;
  const int lanes = bundle_.target.array.lanes;
  const std::vector<std::int32_t> pixels(input, input + g.tensor(g.input).size());
  OpOutputs out(g.ops.size());
  for (std::size_t i = 0; i < g.ops.size(); ++i) {
    const Op& op = g.ops[i];
    const std::vector<std::int32_t>& x = input_of_[i] == kFromInput ? pixels : out[input_of_[i]];
    const Tensor& shape = g.tensor(op.input);
    std::vector<std::int32_t>& y = out[i];
    switch (op.type) {
      case OpType::Quantize:
        y.resize(x.size());
        for (int t = 0; t < shape.tokens; ++t) {
          const std::size_t at = static_cast<std::size_t>(t) * shape.features;
          arith::quantize_token(x.data() + at, shape.features, y.data() + at, f);
        }
        break;
      case OpType::Relu:
        y.resize(x.size());
        std::transform(x.begin(), x.end(), y.begin(), [](std::int32_t v) { return static_cast<std::int32_t>(arith::relu(v)); });
        break;
      case OpType::Linear: {
        // The PE array: chunked dot products under the accumulator's overflow rule, then the
        // epilogue (requantization; the activation is an op of its own).
        const LinearParams& p = op.linear;
        const std::int8_t* w = codes_[i].data();
        // Codes are at most 16 bits: the dot product runs on int16, twice the int32 SIMD width.
        const std::vector<std::int16_t> codes(x.begin(), x.end());
        y.resize(static_cast<std::size_t>(shape.tokens) * p.out);
        for (int t = 0; t < shape.tokens; ++t) {
          const std::int16_t* xt = codes.data() + static_cast<std::size_t>(t) * p.in;
          for (int n = 0; n < p.out; ++n) {
            const std::int64_t acc = arith::dot(xt, w + static_cast<std::size_t>(n) * p.in, p.in, lanes, f);
            y[static_cast<std::size_t>(t) * p.out + n] = static_cast<std::int32_t>(arith::epilogue(acc, p.requant[n], false, f));
          }
        }
        break;
      }
    }
  }
  return out;
}

std::vector<OpOutputs> IntEngine::run_all(const std::uint8_t* inputs, std::size_t count) const {
  const std::size_t features = bundle_.graph.tensor(bundle_.graph.input).size();
  std::vector<OpOutputs> out(count);
#pragma omp parallel for schedule(dynamic, 16)
  for (long i = 0; i < static_cast<long>(count); ++i) out[i] = run(inputs + static_cast<std::size_t>(i) * features);
  return out;
}

std::vector<std::int32_t> IntEngine::run_batch(const std::uint8_t* inputs, std::size_t count) const {
  const std::size_t features = bundle_.graph.tensor(bundle_.graph.input).size();
  const std::size_t classes = bundle_.graph.tensor(bundle_.graph.output).size();
  std::vector<std::int32_t> out(count * classes);
#pragma omp parallel for schedule(dynamic, 16)
  for (long i = 0; i < static_cast<long>(count); ++i) {
    const OpOutputs o = run(inputs + static_cast<std::size_t>(i) * features);
    std::copy(o[output_op_].begin(), o[output_op_].end(), out.begin() + static_cast<std::size_t>(i) * classes);
  }
  return out;
}

}  // namespace qathw::model
