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
    const bool kernel = op.type == OpType::Linear || op.type == OpType::Conv2d;
    codes_.push_back(kernel ? op.linear.codes() : std::vector<std::int8_t>{});
    input_of_.push_back(op.input == g.input ? kFromInput : g.producer(op.input).value());
    residual_of_.push_back(op.type != OpType::Add ? 0 : op.residual == g.input ? kFromInput : g.producer(op.residual).value());
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
        if (!op.pairs.empty()) {  // static: one calibrated pair for the whole tensor
          for (std::size_t k = 0; k < x.size(); ++k)
            y[k] = static_cast<std::int32_t>(arith::quantize_act(x[k], op.pairs[0], f.act_bits, f.rounding));
          break;
        }
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
      case OpType::Conv2d: {
        // The array on patches: each output pixel's patch, gathered in (ky, kx, ci) order, times
        // every kernel of its group (docs/arith.md, "Feature maps").
        const LinearParams& p = op.linear;
        const arith::Conv2dShape c = op.conv_shape(shape);
        const std::int8_t* w = codes_[i].data();
        const std::vector<std::int16_t> codes(x.begin(), x.end());
        std::vector<std::int16_t> patch(static_cast<std::size_t>(c.patch()));
        y.resize(static_cast<std::size_t>(c.out_h()) * c.out_w() * c.out_c);
        for (int oy = 0; oy < c.out_h(); ++oy)
          for (int ox = 0; ox < c.out_w(); ++ox) {
            std::int32_t* pixel = y.data() + (static_cast<std::size_t>(oy) * c.out_w() + ox) * c.out_c;
            for (int g0 = 0; g0 < c.groups; ++g0) {
              arith::conv_patch(codes.data(), c, oy, ox, g0, patch.data());
              for (int n = g0 * c.group_out(); n < (g0 + 1) * c.group_out(); ++n)
                pixel[n] = static_cast<std::int32_t>(arith::conv_output(
                    patch.data(), w + static_cast<std::size_t>(n) * p.in, c, lanes, p.requant[n], f));
            }
          }
        break;
      }
      case OpType::MaxPool:
      case OpType::AvgPool: {
        const arith::Window& w = op.window;
        const int oh = w.out_h(shape.height), ow = w.out_w(shape.width), ch = shape.channels();
        y.resize(static_cast<std::size_t>(oh) * ow * ch);
        std::size_t at = 0;
        for (int oy = 0; oy < oh; ++oy)
          for (int ox = 0; ox < ow; ++ox)
            for (int c = 0; c < ch; ++c)
              y[at++] = static_cast<std::int32_t>(
                  op.type == OpType::MaxPool
                      ? arith::max_pool(x.data(), shape.height, shape.width, ch, w, oy, ox, c)
                      : arith::average_pool(arith::window_sum(x.data(), shape.height, shape.width, ch, w, oy, ox, c),
                                            op.pairs[0], f));
        break;
      }
      case OpType::Add: {
        const std::vector<std::int32_t>& r = residual_of_[i] == kFromInput ? pixels : out[residual_of_[i]];
        y.resize(x.size());
        for (std::size_t k = 0; k < x.size(); ++k)
          y[k] = static_cast<std::int32_t>(arith::add_aligned(x[k], op.pairs[0], r[k], op.pairs[1], f));
        break;
      }
      case OpType::Flatten:
        y = x;
        break;
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
