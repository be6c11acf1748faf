// The transformer on the HLS tops: the controller's walk of a sequence bundle's graph. Each op
// runs token by token (attention also head by head) on its top; the tops read the outputs of
// earlier ops as the activation SRAM holds them (a token's row; for attention the key and value
// codes of every position as the caches), and the controller hands each pair that follows the
// token the absmax its factors' quantizers found at that token (and head).
#include "qathw/hls/sequence_engine.h"

#include <initializer_list>
#include <limits>
#include <stdexcept>
#include <tuple>

#include "hls_build.h"
#include "qathw/target/target_spec.h"

namespace qathw::hls {

namespace {

using model::Op;
using model::OpType;

constexpr std::size_t kFromInput = std::numeric_limits<std::size_t>::max();
constexpr int kVocabularySize = 256;  // the embedding top's token table rows (transformer.h, kVocabulary)

std::string over(const Op& op, const std::string& what, long value, const char* bound, long limit) {
  return "op '" + op.name + "' (" + model::to_string(op.type) + "): " + what + " of " + std::to_string(value) +
         " exceeds the HLS tops' " + bound + " = " + std::to_string(limit);
}

// The first op beyond the tops' static sizes (or with no top), named with the limit.
std::optional<std::string> op_unsupported(const model::Graph& g, const Op& op) {
  const model::Tensor& in = g.tensor(op.input);
  const long F = in.features;
  const long factors = static_cast<long>(op.factors.size());
  const auto check = [&](std::initializer_list<std::tuple<const char*, long, const char*, long>> limits)
      -> std::optional<std::string> {
    for (const auto& [what, value, bound, limit] : limits)
      if (value > limit) return over(op, what, value, bound, limit);
    return std::nullopt;
  };
  switch (op.type) {
    case OpType::Embed:
      if (op.embed.vocabulary != kVocabularySize)
        return "op '" + op.name + "' (embed): a vocabulary of " + std::to_string(op.embed.vocabulary) +
               " (the HLS embedding top has a row per byte value, 256)";
      return check({{"width", op.embed.width, "kMaxWidth", kMaxWidth}});
    case OpType::RmsNorm:
      return check({{"width", F, "kMaxWidth", kMaxWidth}});
    case OpType::Quantize:
      return check({{"features", F, "kMaxFfn", kMaxFfn},
                    {"groups", op.groups, "kMaxHeads", kMaxHeads},
                    {"factors", factors, "kMaxFactors", kMaxFactors}});
    case OpType::Linear:
      return check({{"input width", op.linear.in, "kMaxFfn", kMaxFfn},
                    {"output width", op.linear.out, "kMaxFfn", kMaxFfn},
                    {"weight count", static_cast<long>(op.linear.in) * op.linear.out, "kMaxTokenWeightBytes",
                     kMaxTokenWeightBytes}});
    case OpType::SquaredRelu:
      return check({{"features", F, "kMaxFfn", kMaxFfn}});
    case OpType::Add:
      return check({{"width", F, "kMaxWidth", kMaxWidth}, {"factors", factors, "kMaxFactors", kMaxFactors}});
    case OpType::Scores:
      return check({{"width", F, "kMaxWidth", kMaxWidth},
                    {"heads", op.groups, "kMaxHeads", kMaxHeads},
                    {"factors", factors, "kMaxFactors", kMaxFactors}});
    case OpType::Softmax:
      return check({{"heads", op.groups, "kMaxHeads", kMaxHeads}});
    case OpType::Attend:
      return check({{"width", g.tensor(op.residual).features, "kMaxWidth", kMaxWidth},
                    {"heads", op.groups, "kMaxHeads", kMaxHeads}});
    default:
      return "op '" + op.name + "' (" + model::to_string(op.type) + "): no HLS top runs it in a sequence bundle";
  }
}

// What the controller holds per op before the first sequence: where its inputs come from, its
// factors' quantizers, a linear layer's requantization pairs as the ports hold them, a softmax's
// exp2 table.
struct OpPlan {
  std::size_t input = kFromInput, residual = kFromInput;
  std::vector<std::size_t> factors;
  std::vector<std::int32_t> mantissa, shift;
  arith::Exp2Table table;
};

}  // namespace

std::optional<std::string> sequence_unsupported(const model::Bundle& bundle) {
  if (!bundle.sequence()) return "not a sequence bundle";
  if (bundle.context > kMaxContext)
    return "context of " + std::to_string(bundle.context) + " tokens exceeds the HLS tops' kMaxContext = " +
           std::to_string(kMaxContext);
  for (const Op& op : bundle.graph.ops)
    if (auto why = op_unsupported(bundle.graph, op)) return why;
  return std::nullopt;
}

std::vector<model::OpOutputs> run_sequences(const model::Bundle& bundle, const std::uint8_t* tokens,
                                            std::size_t count, const Tops& tops) {
  if (const auto why = sequence_unsupported(bundle)) throw std::runtime_error("HLS: " + *why);
  if (!tops.embed || !tops.rmsnorm || !tops.group_quantizer || !tops.static_quantizer || !tops.token_linear ||
      !tops.squared_relu || !tops.token_add || !tops.scores || !tops.softmax || !tops.attend)
    throw std::runtime_error("HLS: the tops of target '" + bundle.target.name + "' leave out the transformer's units");
  const model::Graph& g = bundle.graph;
  const arith::Format& f = bundle.target.format;
  const auto source = [&](const std::string& name) { return name == g.input ? kFromInput : g.producer(name).value(); };
  std::vector<OpPlan> plan(g.ops.size());
  for (std::size_t i = 0; i < g.ops.size(); ++i) {
    const Op& op = g.ops[i];
    OpPlan& p = plan[i];
    p.input = source(op.input);
    if (op.type == OpType::Add || op.type == OpType::Scores || op.type == OpType::Attend) p.residual = source(op.residual);
    for (const std::string& name : op.factors) p.factors.push_back(g.producer(name).value());
    if (op.type == OpType::Linear)
      for (const arith::FixedPoint& q : op.linear.requant) {
        p.mantissa.push_back(static_cast<std::int32_t>(q.mantissa));
        p.shift.push_back(q.shift);
      }
    if (op.type == OpType::Softmax) p.table = arith::exp2_table(op.softmax.index_bits, op.softmax.value_bits, f.rounding);
  }
  const int T = bundle.context;
  const std::size_t Tz = static_cast<std::size_t>(T);
  std::vector<model::OpOutputs> outputs(count);
  std::vector<std::int32_t> input(Tz);
  for (std::size_t s = 0; s < count; ++s) {
    const std::uint8_t* sequence = tokens + s * Tz;
    input.assign(sequence, sequence + Tz);
    model::OpOutputs& out = outputs[s];
    out.assign(g.ops.size(), {});
    // Per dynamic quantizer, each token's (and group's) absmax: the factors of later pairs.
    std::vector<std::vector<std::int64_t>> amax(g.ops.size());
    std::int64_t factors[kMaxFactors] = {};
    const auto token_factors = [&](const OpPlan& p, int t, int h) {
      int n = 0;
      for (const std::size_t q : p.factors) {
        const std::size_t groups = static_cast<std::size_t>(g.ops[q].groups);
        factors[n++] = amax[q][static_cast<std::size_t>(t) * groups + (groups == 1 ? 0 : static_cast<std::size_t>(h))];
      }
      return n;
    };
    for (std::size_t i = 0; i < g.ops.size(); ++i) {
      const Op& op = g.ops[i];
      const OpPlan& p = plan[i];
      const std::int32_t* x = p.input == kFromInput ? input.data() : out[p.input].data();
      const std::int32_t* r = p.residual == kFromInput ? input.data() : out[p.residual].data();
      const int F = g.tensor(op.input).features;
      std::vector<std::int32_t>& y = out[i];
      y.assign(g.tensor(op.output).size(), 0);
      const auto row = [&](std::vector<std::int32_t>& v, int t, int width) { return v.data() + static_cast<std::size_t>(t) * width; };
      const auto at = [](const std::int32_t* v, int t, int width) { return v + static_cast<std::size_t>(t) * width; };
      switch (op.type) {
        case OpType::Embed: {
          const model::EmbedParams& e = op.embed;
          for (int t = 0; t < T; ++t)
            tops.embed(static_cast<std::uint8_t>(x[t]), t, e.width, e.tokens.data(), e.positions_table.data(), op.pairs[0],
                       op.pairs[1], row(y, t, e.width));
          break;
        }
        case OpType::RmsNorm:
          for (int t = 0; t < T; ++t) tops.rmsnorm(at(x, t, F), F, op.eps, op.pairs.data(), row(y, t, F));
          break;
        case OpType::Quantize:
          if (op.pairs.empty()) {  // dynamic, per token and group
            amax[i].assign(Tz * static_cast<std::size_t>(op.groups), 0);
            for (int t = 0; t < T; ++t)
              tops.group_quantizer(at(x, t, F), F, op.groups, row(y, t, F), amax[i].data() + static_cast<std::size_t>(t) * op.groups);
          } else {  // static, its pair following the token's factors (none: the calibrated pair)
            for (int t = 0; t < T; ++t) {
              const int n = token_factors(p, t, 0);
              tops.static_quantizer(at(x, t, F), F, op.pairs[0], factors, n, row(y, t, F));
            }
          }
          break;
        case OpType::Linear: {
          const model::LinearParams& l = op.linear;
          for (int t = 0; t < T; ++t)
            tops.token_linear(at(x, t, l.in), l.in, l.out, l.packed.data(), p.mantissa.data(), p.shift.data(), row(y, t, l.out));
          break;
        }
        case OpType::SquaredRelu:
          for (int t = 0; t < T; ++t) tops.squared_relu(at(x, t, F), F, op.shift, row(y, t, F));
          break;
        case OpType::Add:
          for (int t = 0; t < T; ++t) {
            const int n = token_factors(p, t, 0);
            tops.token_add(at(x, t, F), op.pairs[0], at(r, t, F), op.pairs[1], factors, n, F, row(y, t, F));
          }
          break;
        case OpType::Scores:  // row (t, h) of T scores at (t H + h) T
          for (int t = 0; t < T; ++t)
            for (int h = 0; h < op.groups; ++h) {
              const int n = token_factors(p, t, h);
              tops.scores(at(x, t, F), r, F, op.groups, h, t, T, op.pairs[0], factors, n, row(y, t * op.groups + h, T));
            }
          break;
        case OpType::Softmax:
          for (int t = 0; t < T; ++t)
            for (int h = 0; h < op.groups; ++h)
              tops.softmax(at(x, t * op.groups + h, T), t, T, p.table, op.softmax.prob_bits, row(y, t * op.groups + h, T));
          break;
        case OpType::Attend: {
          const int D = g.tensor(op.residual).features;
          for (int t = 0; t < T; ++t)
            for (int h = 0; h < op.groups; ++h) tops.attend(at(x, t * op.groups + h, T), r, D, op.groups, h, t, row(y, t, D));
          break;
        }
        default:
          throw std::logic_error("HLS: op '" + op.name + "' has no top");  // sequence_unsupported refused it
      }
    }
  }
  return outputs;
}

std::vector<model::OpOutputs> run_hls_sequences(const model::Bundle& bundle, const std::uint8_t* tokens,
                                                std::size_t count) {
  return run_sequences(bundle, tokens, count, tops_of(bundle));
}

}  // namespace qathw::hls
