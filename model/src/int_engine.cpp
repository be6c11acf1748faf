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
    const bool second = op.type == OpType::Add || op.type == OpType::Scores || op.type == OpType::Attend;
    residual_of_.push_back(!second ? 0 : op.residual == g.input ? kFromInput : g.producer(op.residual).value());
    std::vector<std::size_t> factors;
    for (const std::string& name : op.factors) factors.push_back(g.producer(name).value());
    factors_of_.push_back(std::move(factors));
    tables_.push_back(op.type == OpType::Softmax
                          ? arith::exp2_table(op.softmax.index_bits, op.softmax.value_bits, bundle_.target.format.rounding)
                          : arith::Exp2Table{});
  }
  output_op_ = g.producer(g.output).value();
}

OpOutputs IntEngine::run(const std::uint8_t* input) const {
  const Graph& g = bundle_.graph;
  const arith::Format& f = bundle_.target.format;
  const int lanes = bundle_.target.array.lanes;
  const std::vector<std::int32_t> pixels(input, input + g.tensor(g.input).size());
  OpOutputs out(g.ops.size());
  // Per dynamic quantize op: each token's (and group's) absmax, for the pairs that follow it.
  std::vector<std::vector<std::int64_t>> amax(g.ops.size());
  // The factors of op i at token t (and head h, for a factor quantized per head): their absmax.
  std::vector<std::int64_t> factors;
  const auto token_factors = [&](std::size_t i, int t, int h) {
    factors.clear();
    for (const std::size_t q : factors_of_[i]) {
      const int groups = g.ops[q].groups;
      factors.push_back(amax[q][static_cast<std::size_t>(t) * groups + (groups == 1 ? 0 : h)]);
    }
    return static_cast<int>(factors.size());
  };
  const arith::VectorUnit vu = bundle_.target.vector_unit;
  for (std::size_t i = 0; i < g.ops.size(); ++i) {
    const Op& op = g.ops[i];
    const std::vector<std::int32_t>& x = input_of_[i] == kFromInput ? pixels : out[input_of_[i]];
    const std::vector<std::int32_t>& r =
        residual_of_[i] == kFromInput ? pixels : out[residual_of_[i]];  // the second input, where the op has one
    const Tensor& shape = g.tensor(op.input);
    const std::size_t T = static_cast<std::size_t>(shape.tokens), F = static_cast<std::size_t>(shape.features);
    std::vector<std::int32_t>& y = out[i];
    switch (op.type) {
      case OpType::Quantize:
        y.resize(x.size());
        if (!op.pairs.empty() && op.factors.empty()) {  // static: one calibrated pair for the whole tensor
          for (std::size_t k = 0; k < x.size(); ++k)
            y[k] = static_cast<std::int32_t>(arith::quantize_act(x[k], op.pairs[0], f.act_bits, f.rounding));
          break;
        }
        if (!op.pairs.empty()) {  // static, its pair following the token's factors
          for (std::size_t t = 0; t < T; ++t) {
            const int n = token_factors(i, static_cast<int>(t), 0);
            const arith::FixedPoint pt = arith::token_pair(op.pairs[0], factors.data(), n, f).value;
            for (std::size_t k = t * F; k < (t + 1) * F; ++k)
              y[k] = static_cast<std::int32_t>(arith::quantize_act(x[k], pt, f.act_bits, f.rounding));
          }
          break;
        }
        {  // dynamic: per token and group
          const std::size_t G = static_cast<std::size_t>(op.groups), width = F / G;
          amax[i].resize(T * G);
          for (std::size_t t = 0; t < T; ++t)
            for (std::size_t q = 0; q < G; ++q) {
              const std::size_t at = t * F + q * width;
              amax[i][t * G + q] =
                  arith::quantize_token(x.data() + at, static_cast<int>(width), y.data() + at, f).amax;
            }
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
        // Where no order of the additions changes the accumulator (arith::accumulation_order_free)
        // and the exact sum fits int32, the exact sum in one vectorised pass, the overflow rule once.
        const bool order_free = arith::accumulation_order_free(p.in, f) &&
                                arith::dot_abs_bound(p.in, f) < (std::int64_t{1} << 31);
        for (int t = 0; t < shape.tokens; ++t) {
          const std::int16_t* xt = codes.data() + static_cast<std::size_t>(t) * p.in;
          for (int n = 0; n < p.out; ++n) {
            const std::int8_t* wn = w + static_cast<std::size_t>(n) * p.in;
            std::int64_t acc;
            if (order_free) {
              std::int32_t sum = 0;
              for (int k = 0; k < p.in; ++k) sum += static_cast<std::int32_t>(xt[k]) * wn[k];
              acc = arith::accumulator_of_exact_sum(sum, f);
            } else {
              acc = arith::dot(xt, wn, p.in, lanes, f);
            }
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
        y.resize(x.size());
        if (op.factors.empty()) {
          for (std::size_t k = 0; k < x.size(); ++k)
            y[k] = static_cast<std::int32_t>(arith::add_aligned(x[k], op.pairs[0], r[k], op.pairs[1], f));
          break;
        }
        for (std::size_t t = 0; t < T; ++t) {  // the residual's pair follows the token
          const int n = token_factors(i, static_cast<int>(t), 0);
          const arith::FixedPoint pt = arith::token_pair(op.pairs[1], factors.data(), n, f).value;
          for (std::size_t k = t * F; k < (t + 1) * F; ++k)
            y[k] = static_cast<std::int32_t>(arith::add_aligned(x[k], op.pairs[0], r[k], pt, f));
        }
        break;
      }
      case OpType::Flatten:
        y = x;
        break;
      case OpType::Embed: {
        const EmbedParams& e = op.embed;
        const std::size_t W = static_cast<std::size_t>(e.width);
        y.resize(T * W);
        for (std::size_t t = 0; t < T; ++t) {
          const std::size_t id = static_cast<std::uint8_t>(x[t]);
          for (std::size_t k = 0; k < W; ++k)
            y[t * W + k] = static_cast<std::int32_t>(
                arith::add_aligned(e.tokens[id * W + k], op.pairs[0], e.positions_table[t * W + k], op.pairs[1], f));
        }
        break;
      }
      case OpType::RmsNorm: {
        const int in_bits = std::min(f.acc_bits, arith::rmsnorm_max_input_bits(static_cast<int>(F)));
        y.resize(x.size());
        for (std::size_t t = 0; t < T; ++t)
          arith::rmsnorm_token(x.data() + t * F, static_cast<int>(F), in_bits, op.eps, op.pairs.data(), f.acc_bits,
                               y.data() + t * F, f);
        break;
      }
      case OpType::SquaredRelu:
        y.resize(x.size());
        for (std::size_t k = 0; k < x.size(); ++k)
          y[k] = static_cast<std::int32_t>(arith::squared_relu(x[k], op.shift, f.acc_bits, f.rounding));
        break;
      case OpType::Scores: {
        // Q [T, D] . K [T, D] per head over its dh features; row (t, h) at t H T + h T.
        const std::size_t H = static_cast<std::size_t>(op.groups), D = F, dh = D / H;
        y.assign(T * H * T, 0);
        for (std::size_t t = 0; t < T; ++t)
          for (std::size_t h = 0; h < H; ++h) {
            const int n = token_factors(i, static_cast<int>(t), static_cast<int>(h));
            const arith::FixedPoint pt = arith::token_pair(op.pairs[0], factors.data(), n, f).value;
            std::int32_t* row = y.data() + (t * H + h) * T;
            for (int j = 0; j < arith::causal_count(static_cast<int>(t)); ++j) {
              const std::int64_t acc = arith::vector_dot(x.data() + t * D + h * dh,
                                                         r.data() + static_cast<std::size_t>(j) * D + h * dh,
                                                         static_cast<int>(dh), vu);
              row[j] = static_cast<std::int32_t>(arith::requantize(acc, pt, f.rounding, 32));
            }
          }
        break;
      }
      case OpType::Softmax: {
        // Every row (t, h) of T scores, the first causal_count(t) taking part; the rest get 0.
        const std::size_t H = static_cast<std::size_t>(op.groups);
        y.resize(x.size());
        for (std::size_t t = 0; t < T; ++t)
          for (std::size_t h = 0; h < H; ++h) {
            const std::size_t at = (t * H + h) * T;
            arith::softmax_row(x.data() + at, static_cast<int>(T), arith::causal_count(static_cast<int>(t)), tables_[i],
                               op.softmax.prob_bits, f, y.data() + at);
          }
        break;
      }
      case OpType::Attend: {
        // Each row's probabilities . the value codes' column (stride D) of the head's features.
        const std::size_t H = static_cast<std::size_t>(op.groups);
        const std::size_t D = g.tensor(op.residual).features, dh = D / H;
        y.resize(T * D);
        for (std::size_t t = 0; t < T; ++t)
          for (std::size_t h = 0; h < H; ++h)
            for (std::size_t e = 0; e < dh; ++e)
              y[t * D + h * dh + e] = static_cast<std::int32_t>(
                  arith::vector_dot(x.data() + (t * H + h) * T, r.data() + h * dh + e,
                                    arith::causal_count(static_cast<int>(t)), vu, static_cast<int>(D)));
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
