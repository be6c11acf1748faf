#include "qathw/model/graph.h"

#include <algorithm>
#include <map>
#include <set>

#include "qathw/model/accelerator_layers.h"

namespace qathw::model {

int LinearParams::code(int n, int k) const {
  return arith::load_code(packed.data(), static_cast<std::size_t>(n) * in + k, format);
}

std::vector<std::int8_t> LinearParams::codes() const {
  const std::size_t count = static_cast<std::size_t>(in) * out;
  std::vector<std::int8_t> out_codes(count);
  for (std::size_t i = 0; i < count; ++i) out_codes[i] = static_cast<std::int8_t>(arith::load_code(packed.data(), i, format));
  return out_codes;
}

Tensor map_tensor(std::string name, DType dtype, int height, int width, int channels) {
  return Tensor{std::move(name), dtype, 1, height * width * channels, height, width};
}

arith::Conv2dShape Op::conv_shape(const Tensor& input) const {
  arith::Conv2dShape s;
  s.in_h = input.height;
  s.in_w = input.width;
  s.in_c = input.channels();
  s.out_c = linear.out;
  s.window = window;
  s.groups = groups;
  return s;
}

const Tensor& Graph::tensor(const std::string& name) const {
  const auto i = find_tensor(name);
  if (!i) throw GraphError("tensor '" + name + "' is not defined");
  return tensors[*i];
}

std::optional<std::size_t> Graph::find_tensor(const std::string& name) const {
  for (std::size_t i = 0; i < tensors.size(); ++i)
    if (tensors[i].name == name) return i;
  return std::nullopt;
}

std::optional<std::size_t> Graph::producer(const std::string& name) const {
  for (std::size_t i = 0; i < ops.size(); ++i)
    if (ops[i].output == name) return i;
  return std::nullopt;
}

namespace {

const std::pair<OpType, const char*> kOpNames[] = {
    {OpType::Quantize, "quantize"}, {OpType::Linear, "linear"},    {OpType::Relu, "relu"},
    {OpType::Conv2d, "conv2d"},     {OpType::MaxPool, "max_pool"}, {OpType::AvgPool, "avg_pool"},
    {OpType::Add, "add"},           {OpType::Flatten, "flatten"},  {OpType::Embed, "embed"},
    {OpType::RmsNorm, "rms_norm"},  {OpType::SquaredRelu, "squared_relu"}, {OpType::Scores, "scores"},
    {OpType::Softmax, "softmax"},   {OpType::Attend, "attend"}};

std::string shape_text(const Tensor& t) {
  if (t.is_map())
    return "[" + std::to_string(t.height) + ", " + std::to_string(t.width) + ", " + std::to_string(t.channels()) + "]";
  return "[" + std::to_string(t.tokens) + ", " + std::to_string(t.features) + "]";
}

bool same_shape(const Tensor& a, const Tensor& b) {
  return a.tokens == b.tokens && a.features == b.features && a.height == b.height && a.width == b.width;
}

const std::pair<DType, const char*> kDTypeNames[] = {
    {DType::Pixels, "uint8"}, {DType::Values, "values"}, {DType::Codes, "codes"}, {DType::Probs, "probs"}};

// Most tensors one op's pair may follow (factors), and the exp2 table's limits.
constexpr std::size_t kMaxFactors = 8;

// The work of one window op on one sample (multiply-accumulates, or pooled reads): a bound that
// keeps every engine's run of a loaded bundle finite in time (a ResNet-50 layer is below 2^30).
constexpr std::size_t kMaxWindowWork = std::size_t{1} << 32;

// The checks of an op's fields below: `expect(ok, field, rule)` throws naming the op and the
// field. A pair (requantization, a static quantizer, a pool or an add) in the target's format:
template <typename Expect>
void check_pair(const arith::FixedPoint& r, const std::string& field, const arith::Format& f, Expect& expect) {
  expect(r.mantissa >= 0 && r.mantissa < (std::int64_t{1} << f.scale_mantissa_bits) && r.shift >= f.scale_shift_min &&
             r.shift <= f.scale_shift_max,
         field,
         "requantization pair {" + std::to_string(r.mantissa) + ", " + std::to_string(r.shift) +
             "} outside the target's scale format");
}

// The weights and requantization pairs of an op with a kernel (linear, conv2d).
template <typename Expect>
void check_weights(const LinearParams& p, const arith::Format& f, Expect& expect) {
  expect(p.format == f.weights, "weights", "weights are not in the target's format");
  const std::size_t count = static_cast<std::size_t>(p.in) * static_cast<std::size_t>(p.out);
  expect(p.packed.size() == arith::packed_bytes(count, p.format), "weights.bytes", "packed weights do not match in x out");
  expect(p.requant.size() == static_cast<std::size_t>(p.out), "requant", "needs one requantization pair per output channel");
  for (const arith::FixedPoint& r : p.requant) check_pair(r, "requant", f, expect);
  // Codes beyond the quantizer's range (the ternary field 0b10, INT4 -8) are not weights any
  // trained model has, and the engines' exactness bounds assume |code| <= qmax.
  const int qmax = arith::weight_qmax(p.format);
  for (std::size_t k = 0; k < count; ++k) {
    const int c = arith::load_code(p.packed.data(), k, p.format);
    expect(c >= -qmax && c <= qmax, "weights",
           "invalid weight code " + std::to_string(c) + " at index " + std::to_string(k) + " (codes lie in [-" +
               std::to_string(qmax) + ", " + std::to_string(qmax) + "])");
  }
}

// A window over map x: kernel and stride in [1, 256], padding below the kernel (so every window
// covers at least one position of the map), and the kernel within the padded map.
template <typename Expect>
void check_window(const arith::Window& w, const Tensor& x, Expect& expect) {
  const auto side = [&](int kernel, int stride, int pad, int in, const char* name) {
    expect(kernel >= 1 && kernel <= 256 && stride >= 1 && stride <= 256 && pad >= 0 && pad < kernel &&
               in + 2 * pad >= kernel,
           "window",
           std::string("window ") + name + ": kernel " + std::to_string(kernel) + ", stride " + std::to_string(stride) +
               ", padding " + std::to_string(pad) + " over " + std::to_string(in) +
               " (kernel and stride in [1, 256], padding below the kernel, the kernel within the padded map)");
  };
  side(w.kernel_h, w.stride_h, w.pad_h, x.height, "height");
  side(w.kernel_w, w.stride_w, w.pad_w, x.width, "width");
}

}  // namespace

std::string to_string(OpType t) {
  for (const auto& [v, name] : kOpNames)
    if (v == t) return name;
  return "?";
}

std::string to_string(DType t) {
  for (const auto& [v, name] : kDTypeNames)
    if (v == t) return name;
  return "?";
}

std::optional<OpType> op_type_from_string(const std::string& s) {
  for (const auto& [v, name] : kOpNames)
    if (s == name) return v;
  return std::nullopt;
}

std::optional<DType> dtype_from_string(const std::string& s) {
  for (const auto& [v, name] : kDTypeNames)
    if (s == name) return v;
  return std::nullopt;
}

void validate(const Graph& g, const arith::Format& f, const arith::VectorUnit& vector_unit) {
  std::set<std::string> names;
  for (std::size_t i = 0; i < g.tensors.size(); ++i) {
    const Tensor& t = g.tensors[i];
    const std::string field = "tensors[" + std::to_string(i) + "]";
    if (t.name.empty()) throw GraphError(field + ".name", field + ": empty name");
    if (!names.insert(t.name).second)
      throw GraphError(field + ".name", field + ": tensor '" + t.name + "' defined twice");
    // Bounds that keep every size and index in int range (a sample is at most 2^26 integers).
    if (t.tokens < 1 || t.features < 1 || t.size() > (std::size_t{1} << 26))
      throw GraphError(field + ".shape", "tensor '" + t.name + "': shape [" + std::to_string(t.tokens) + ", " +
                                             std::to_string(t.features) + "] is not in [1, 2^26] elements");
    if (t.height != 0 || t.width != 0) {
      const long area = static_cast<long>(t.height) * t.width;
      if (t.height < 1 || t.width < 1 || t.tokens != 1 || area > t.features || t.features % area != 0)
        throw GraphError(field + ".shape", "tensor '" + t.name + "': a feature map is one token of height x width x "
                                           "channels, each at least 1");
    }
  }
  if (!g.find_tensor(g.input)) throw GraphError("input_tensor", "input tensor '" + g.input + "' is not defined");
  const Tensor& input = g.tensor(g.input);
  if (input.dtype != DType::Pixels) throw GraphError("input_tensor", "input tensor '" + g.input + "' must be uint8");
  std::set<std::string> written = {g.input};
  std::set<std::string> op_names;
  for (std::size_t i = 0; i < g.ops.size(); ++i) {
    const Op& op = g.ops[i];
    const std::string field = "ops[" + std::to_string(i) + "]";
    const std::string where = "op '" + op.name + "' (" + to_string(op.type) + ")";
    if (op.name.empty()) throw GraphError(field + ".name", field + ": empty name");
    if (!op_names.insert(op.name).second) throw GraphError(field + ".name", where + ": op name used twice");
    if (!g.find_tensor(op.input))
      throw GraphError(field + ".input", where + ": input tensor '" + op.input + "' is not defined");
    if (!g.find_tensor(op.output))
      throw GraphError(field + ".output", where + ": output tensor '" + op.output + "' is not defined");
    if (!written.count(op.input))
      throw GraphError(field + ".input", where + ": reads '" + op.input + "' before any op writes it");
    if (!written.insert(op.output).second)
      throw GraphError(field + ".output", where + ": tensor '" + op.output + "' is written twice");
    const Tensor& x = g.tensor(op.input);
    const Tensor& y = g.tensor(op.output);
    auto expect = [&](bool ok, const std::string& key, const std::string& rule) {
      if (!ok) throw GraphError(field + "." + key, where + ": " + rule);
    };
    // The second input (add's residual, the keys of scores, the values of attend), named in the
    // manifest by `key`: defined and written before the op.
    auto second = [&](const char* key) -> const Tensor& {
      expect(g.find_tensor(op.residual).has_value(), key, "tensor '" + op.residual + "' is not defined");
      expect(written.count(op.residual) > 0 && op.residual != op.output, key,
             "reads '" + op.residual + "' before any op writes it");
      return g.tensor(op.residual);
    };
    // The tensors whose per-token absmax the op's last pair follows (arith::token_pair): each the
    // codes of `tokens` tokens written by an earlier dynamic quantize op of one group, or, where
    // heads > 1 (scores), of one group per head.
    auto check_factors = [&](int tokens, int heads) {
      expect(op.factors.size() <= kMaxFactors, "factors", "at most " + std::to_string(kMaxFactors) + " factors");
      for (std::size_t k = 0; k < op.factors.size(); ++k) {
        const std::string key = "factors[" + std::to_string(k) + "]";
        const std::string& name = op.factors[k];
        expect(g.find_tensor(name).has_value(), key, "factor tensor '" + name + "' is not defined");
        const auto p = g.producer(name);
        expect(p && *p < i, key, "factor '" + name + "' is not written before the op");
        const Op& q = g.ops[*p];
        expect(q.type == OpType::Quantize && q.pairs.empty(), key,
               "factor '" + name + "' is not the codes of a dynamic quantize op (whose per-token absmax it gives)");
        expect(q.groups == 1 || (heads > 1 && q.groups == heads), key,
               "factor '" + name + "' is quantized in " + std::to_string(q.groups) + " groups; a factor has one " +
                   (heads > 1 ? "or one per head (" + std::to_string(heads) + ")" : std::string("group")));
        expect(g.tensor(name).tokens == tokens, key,
               "factor '" + name + "' has " + std::to_string(g.tensor(name).tokens) + " tokens, the op " +
                   std::to_string(tokens));
      }
    };
    // The heads of an attention op: dividing the model width `features`.
    auto check_heads = [&](int features) {
      expect(op.groups >= 1 && features % op.groups == 0, "groups",
             "groups = " + std::to_string(op.groups) + " (the heads) must divide the width (" +
                 std::to_string(features) + ")");
    };
    auto plain = [](const Tensor& t) { return !t.is_map(); };
    const bool grouped = op.type == OpType::Conv2d || op.type == OpType::Quantize || op.type == OpType::Scores ||
                         op.type == OpType::Softmax || op.type == OpType::Attend;
    expect(grouped || op.groups == 1, "groups", "only conv2d, quantize and the attention ops have groups");
    expect(op.factors.empty() || op.type == OpType::Quantize || op.type == OpType::Add || op.type == OpType::Scores,
           "factors", "only quantize (static), add and scores have a pair that follows the token");
    switch (op.type) {
      case OpType::Quantize:
        expect(x.dtype == DType::Pixels || x.dtype == DType::Values, "input", "input must be uint8 or values");
        expect(y.dtype == DType::Codes, "output", "output must be codes");
        expect(same_shape(x, y), "output", "output shape must equal the input shape " + shape_text(x));
        expect(op.pairs.size() <= 1, "pairs", "a quantizer has no pair (dynamic) or one: 1 / scale (static)");
        for (const arith::FixedPoint& pair : op.pairs) check_pair(pair, "pairs", f, expect);
        expect(op.groups >= 1 && x.features % op.groups == 0, "groups",
               "groups = " + std::to_string(op.groups) + " must divide the features (" + std::to_string(x.features) +
                   ")");
        expect(op.pairs.empty() || op.groups == 1, "groups", "a static quantizer has one pair: groups must be 1");
        expect(op.factors.empty() || op.pairs.size() == 1, "factors",
               "a dynamic quantizer has no pair for its factors to multiply");
        check_factors(x.tokens, 1);
        break;
      case OpType::Relu:
        expect(x.dtype == DType::Values, "input", "input and output must be values");
        expect(y.dtype == DType::Values, "output", "input and output must be values");
        expect(same_shape(x, y), "output", "output shape must equal the input shape " + shape_text(x));
        break;
      case OpType::Linear: {
        const LinearParams& p = op.linear;
        expect(x.dtype == DType::Codes, "input", "input must be codes");
        expect(y.dtype == DType::Values, "output", "output must be values");
        expect(!x.is_map() && !y.is_map(), "input", "a linear op takes plain tensors: flatten a feature map first");
        expect(p.in == x.features, "in",
               "in = " + std::to_string(p.in) + " does not match input features " + std::to_string(x.features));
        expect(p.out == y.features, "out",
               "out = " + std::to_string(p.out) + " does not match output features " + std::to_string(y.features));
        expect(x.tokens == y.tokens, "output",
               "output shape must be [" + std::to_string(x.tokens) + ", " + std::to_string(p.out) + "]");
        check_weights(p, f, expect);
        break;
      }
      case OpType::Conv2d: {
        const LinearParams& p = op.linear;
        expect(x.dtype == DType::Codes && x.is_map(), "input", "input must be a feature map of codes");
        expect(y.dtype == DType::Values && y.is_map(), "output", "output must be a feature map of values");
        check_window(op.window, x, expect);
        expect(op.groups >= 1 && x.channels() % op.groups == 0 && p.out % op.groups == 0, "groups",
               "groups = " + std::to_string(op.groups) + " must divide the input channels (" +
                   std::to_string(x.channels()) + ") and the output channels (" + std::to_string(p.out) + ")");
        const arith::Conv2dShape c = op.conv_shape(x);
        expect(p.in == c.patch(), "in",
               "in = " + std::to_string(p.in) + " must be the patch size kernel_h x kernel_w x input channels / "
               "groups = " + std::to_string(c.patch()));
        expect(y.height == c.out_h() && y.width == c.out_w() && y.channels() == p.out, "output",
               "output shape must be [" + std::to_string(c.out_h()) + ", " + std::to_string(c.out_w()) + ", " +
                   std::to_string(p.out) + "]");
        expect(y.size() * static_cast<std::size_t>(p.in) <= kMaxWindowWork, "in",
               "more than 2^32 multiply-accumulates per sample");
        check_weights(p, f, expect);
        break;
      }
      case OpType::MaxPool:
      case OpType::AvgPool: {
        expect(x.dtype == DType::Values && x.is_map(), "input", "input must be a feature map of values");
        expect(y.dtype == DType::Values && y.is_map(), "output", "output must be a feature map of values");
        check_window(op.window, x, expect);
        const int oh = op.window.out_h(x.height), ow = op.window.out_w(x.width);
        expect(y.height == oh && y.width == ow && y.channels() == x.channels(), "output",
               "output shape must be [" + std::to_string(oh) + ", " + std::to_string(ow) + ", " +
                   std::to_string(x.channels()) + "]");
        expect(y.size() * static_cast<std::size_t>(op.window.kernel_h) * op.window.kernel_w <= kMaxWindowWork, "window",
               "more than 2^32 window reads per sample");
        if (op.type == OpType::AvgPool) {
          expect(op.pairs.size() == 1, "pairs", "an average pool has one pair: 1 / window area");
          check_pair(op.pairs[0], "pairs", f, expect);
        }
        break;
      }
      case OpType::Add: {
        const Tensor& r = second("residual");
        expect(x.dtype == DType::Values && r.dtype == DType::Values, "input", "both inputs must be values");
        expect(same_shape(x, r), "residual",
               "the inputs' shapes differ: " + shape_text(x) + " and " + shape_text(r));
        expect(y.dtype == DType::Values && same_shape(x, y), "output", "output must be values of the inputs' shape");
        expect(op.pairs.size() == 2, "pairs", "an add has two pairs: the input's and the residual's");
        for (const arith::FixedPoint& pair : op.pairs) check_pair(pair, "pairs", f, expect);
        check_factors(x.tokens, 1);
        break;
      }
      case OpType::Flatten:
        expect(x.is_map(), "input", "input must be a feature map");
        expect(y.dtype == x.dtype && !y.is_map() && y.tokens == 1 && y.features == x.features, "output",
               "output must be [1, " + std::to_string(x.features) + "] of the input's type");
        break;
      case OpType::Embed: {
        const EmbedParams& e = op.embed;
        expect(x.dtype == DType::Pixels && plain(x) && x.features == 1, "input", "input must be byte tokens [T, 1] (uint8)");
        expect(y.dtype == DType::Values && plain(y) && y.tokens == x.tokens, "output",
               "output must be values [" + std::to_string(x.tokens) + ", width]");
        expect(e.vocabulary == 256, "embed.vocabulary",
               "vocabulary = " + std::to_string(e.vocabulary) + " must be 256 (a row per byte value)");
        expect(e.width == y.features, "embed.width",
               "width = " + std::to_string(e.width) + " does not match the output's features " +
                   std::to_string(y.features));
        expect(e.positions >= x.tokens, "embed.positions",
               "positions = " + std::to_string(e.positions) + " is fewer than the " + std::to_string(x.tokens) +
                   " tokens of the input");
        const auto check_table = [&](const std::vector<std::int32_t>& table, int rows, const char* key) {
          expect(table.size() == static_cast<std::size_t>(rows) * static_cast<std::size_t>(e.width), key,
                 "holds " + std::to_string(table.size()) + " integers, not rows x width = " +
                     std::to_string(static_cast<std::size_t>(rows) * static_cast<std::size_t>(e.width)));
          for (std::size_t k = 0; k < table.size(); ++k)
            expect(arith::saturate(table[k], f.acc_bits) == table[k], key,
                   "integer " + std::to_string(table[k]) + " at index " + std::to_string(k) + " outside the " +
                       std::to_string(f.acc_bits) + "-bit accumulator range");
        };
        check_table(e.tokens, e.vocabulary, "embed.token_table");
        check_table(e.positions_table, e.positions, "embed.position_table");
        expect(op.pairs.size() == 2, "pairs", "an embedding has two pairs: the token table's and the position table's");
        for (const arith::FixedPoint& pair : op.pairs) check_pair(pair, "pairs", f, expect);
        break;
      }
      case OpType::RmsNorm: {
        expect(x.dtype == DType::Values && plain(x), "input", "input must be values [tokens, features]");
        expect(y.dtype == DType::Values && same_shape(x, y), "output", "output must be values of the input's shape");
        expect(x.features <= arith::kRmsNormMaxFeatures, "input",
               "more than " + std::to_string(arith::kRmsNormMaxFeatures) + " features per token");
        expect(op.pairs.size() == static_cast<std::size_t>(x.features), "pairs",
               "has " + std::to_string(op.pairs.size()) + " pairs; needs a gain pair per feature (" +
                   std::to_string(x.features) + ")");
        for (const arith::FixedPoint& pair : op.pairs) check_pair(pair, "pairs", f, expect);
        const int in_bits = std::min(f.acc_bits, arith::rmsnorm_max_input_bits(x.features));
        expect(op.eps < (std::uint64_t{1} << 63) && arith::rmsnorm_sum_fits(x.features, in_bits, op.eps), "eps",
               "eps = " + std::to_string(op.eps) + ": the sum of squares of " + std::to_string(x.features) + " " +
                   std::to_string(in_bits) + "-bit inputs plus features x eps exceeds 64 bits");
        break;
      }
      case OpType::SquaredRelu:
        expect(x.dtype == DType::Values, "input", "input and output must be values");
        expect(y.dtype == DType::Values && same_shape(x, y), "output", "output must be values of the input's shape");
        expect(op.shift >= 0 && op.shift <= arith::kMaxShift, "shift",
               "shift = " + std::to_string(op.shift) + " is not in [0, " + std::to_string(arith::kMaxShift) + "]");
        break;
      case OpType::Scores: {
        expect(x.dtype == DType::Codes && plain(x), "input", "input must be the query codes [tokens, width]");
        const Tensor& k = second("keys");
        expect(k.dtype == DType::Codes && same_shape(x, k), "keys",
               "keys must be codes of the queries' shape " + shape_text(x) + ", not " + shape_text(k));
        check_heads(x.features);
        expect(y.dtype == DType::Values && plain(y) && y.tokens == x.tokens &&
                   y.features == op.groups * x.tokens, "output",
               "output must be values [" + std::to_string(x.tokens) + ", heads x tokens = " +
                   std::to_string(op.groups * x.tokens) + "]");
        expect(f.act_bits <= vector_unit.operand_bits, "input",
               std::to_string(f.act_bits) + "-bit codes are wider than the vector unit's " +
                   std::to_string(vector_unit.operand_bits) + "-bit operands");
        expect(op.pairs.size() == 1, "pairs", "scores have one pair: the rows' static pair");
        check_pair(op.pairs[0], "pairs", f, expect);
        check_factors(x.tokens, op.groups);
        break;
      }
      case OpType::Softmax: {
        expect(x.dtype == DType::Values && plain(x), "input", "input must be the score values [tokens, heads x tokens]");
        expect(op.groups >= 1 && x.features == op.groups * x.tokens, "groups",
               "groups = " + std::to_string(op.groups) + " heads of " + std::to_string(x.tokens) +
                   " tokens do not make the input's " + std::to_string(x.features) + " features");
        expect(y.dtype == DType::Probs && same_shape(x, y), "output", "output must be probs of the input's shape");
        const SoftmaxParams& s = op.softmax;
        expect(s.index_bits >= 0 && s.index_bits <= arith::kMaxExp2IndexBits, "softmax.index_bits",
               "index_bits = " + std::to_string(s.index_bits) + " is not in [0, " +
                   std::to_string(arith::kMaxExp2IndexBits) + "]");
        expect(s.value_bits >= 1 && s.value_bits <= arith::kMaxExp2ValueBits, "softmax.value_bits",
               "value_bits = " + std::to_string(s.value_bits) + " is not in [1, " +
                   std::to_string(arith::kMaxExp2ValueBits) + "]");
        // Probabilities are unsigned operands of the vector unit, and the reciprocal unit's qmax.
        const int prob_max = std::min(vector_unit.operand_bits, 15);
        expect(s.prob_bits >= 1 && s.prob_bits <= prob_max, "softmax.prob_bits",
               "prob_bits = " + std::to_string(s.prob_bits) + " is not in [1, " + std::to_string(prob_max) +
                   "] (the vector unit's operands)");
        expect(arith::softmax_sum_fits(x.tokens, s.value_bits), "softmax.value_bits",
               "a row of " + std::to_string(x.tokens) + " exp values of " + std::to_string(s.value_bits) +
                   " fraction bits may exceed the reciprocal unit's 2^31");
        break;
      }
      case OpType::Attend: {
        expect(x.dtype == DType::Probs && plain(x), "input", "input must be the probabilities [tokens, heads x tokens]");
        const Tensor& v = second("values");
        expect(v.dtype == DType::Codes && plain(v) && v.tokens == x.tokens, "values",
               "values must be codes [" + std::to_string(x.tokens) + ", width], not " + shape_text(v));
        check_heads(v.features);
        expect(x.features == op.groups * x.tokens, "input",
               "input must be [" + std::to_string(x.tokens) + ", heads x tokens = " +
                   std::to_string(op.groups * x.tokens) + "]");
        expect(y.dtype == DType::Values && same_shape(v, y), "output", "output must be values of the values' shape " +
                                                                         shape_text(v));
        expect(f.act_bits <= vector_unit.operand_bits, "values",
               std::to_string(f.act_bits) + "-bit codes are wider than the vector unit's " +
                   std::to_string(vector_unit.operand_bits) + "-bit operands");
        break;
      }
    }
  }
  if (!g.find_tensor(g.output)) throw GraphError("output_tensor", "output tensor '" + g.output + "' is not defined");
  const Tensor& output = g.tensor(g.output);
  if (!g.producer(g.output)) throw GraphError("output_tensor", "output tensor '" + g.output + "' is written by no op");
  if (output.dtype != DType::Values)
    throw GraphError("output_tensor", "output tensor '" + g.output + "' must be values");
  // A tensor no op writes holds nothing: a stray entry, not part of the graph.
  for (std::size_t i = 0; i < g.tensors.size(); ++i)
    if (g.tensors[i].name != g.input && !g.producer(g.tensors[i].name))
      throw GraphError("tensors[" + std::to_string(i) + "]",
                       "tensor '" + g.tensors[i].name + "' is written by no op (nor the graph's input)");
}

Graph mlp_graph(int features, std::vector<LinearParams> layers, const std::vector<bool>& relu) {
  Graph g;
  g.input = "input";
  g.tensors.push_back({"input", DType::Pixels, 1, features});
  std::string x = "input";
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const std::string p = "layer" + std::to_string(l);
    const int in = layers[l].in, out = layers[l].out;
    g.tensors.push_back({p + ".codes", DType::Codes, 1, in});
    g.tensors.push_back({p + ".linear", DType::Values, 1, out});
    g.ops.push_back({OpType::Quantize, p + ".quantize", x, p + ".codes", {}});
    g.ops.push_back({OpType::Linear, p + ".linear", p + ".codes", p + ".linear", std::move(layers[l])});
    x = p + ".linear";
    if (l < relu.size() && relu[l]) {
      g.tensors.push_back({p + ".relu", DType::Values, 1, out});
      g.ops.push_back({OpType::Relu, p + ".relu", x, p + ".relu", {}});
      x = p + ".relu";
    }
  }
  g.output = x;
  return g;
}

// ---- the accelerator's layer chain -----------------------------------------------------------

std::string to_string(AcceleratorOp k) {
  switch (k) {
    case AcceleratorOp::Linear: return "linear";
    case AcceleratorOp::Conv2d: return "conv2d";
    case AcceleratorOp::MaxPool: return "max_pool";
    case AcceleratorOp::AvgPool: return "avg_pool";
    case AcceleratorOp::Add: return "add";
  }
  return "?";
}

std::string to_string(TransformerOp k) {
  switch (k) {
    case TransformerOp::None: return "none";
    case TransformerOp::Embed: return "embed";
    case TransformerOp::RmsNorm: return "rms_norm";
    case TransformerOp::Quantize: return "quantize";
    case TransformerOp::SquaredRelu: return "squared_relu";
    case TransformerOp::Scores: return "scores";
    case TransformerOp::Softmax: return "softmax";
    case TransformerOp::Attend: return "attend";
  }
  return "?";
}

std::string kind_name(const AcceleratorLayer& l) {
  return l.unit != TransformerOp::None ? to_string(l.unit) : to_string(l.kind);
}

AcceleratorLowering accelerator_layers(const Graph& g, bool transformer_units) {
  AcceleratorLowering r;
  auto refuse = [&](const std::string& why) {
    r.layers.clear();
    r.unsupported = why;
    return r;
  };
  std::map<std::string, int> readers;
  for (const Op& op : g.ops) {
    ++readers[op.input];
    if (op.type == OpType::Add || op.type == OpType::Scores || op.type == OpType::Attend) ++readers[op.residual];
  }
  ++readers[g.output];
  // With transformer units every layer runs per token: sizes below are per token.
  const int T = transformer_units ? g.tensor(g.input).tokens : 1;
  r.tokens = T;
  const auto per_token = [&](const std::string& tensor) { return static_cast<int>(g.tensor(tensor).size() / T); };
  // Tensor -> the layer holding its integers (kPixels: the input), as the ops are walked.
  std::map<std::string, std::size_t> layer_of = {{g.input, AcceleratorLayer::kPixels}};
  // Codes tensor of a dynamic quantizer -> the layer whose quantizer finds its per-token absmax.
  std::map<std::string, std::size_t> amax_of;
  const auto source = [&](const std::string& tensor) -> std::optional<std::size_t> {
    const auto it = layer_of.find(tensor);
    if (it == layer_of.end()) return std::nullopt;
    return it->second;
  };
  const auto unit_of = [&](std::optional<std::size_t> layer) {
    return !layer || *layer == AcceleratorLayer::kPixels ? TransformerOp::None : r.layers[*layer].unit;
  };
  for (std::size_t i = 0; i < g.ops.size(); ++i) {
    const Op& op = g.ops[i];
    const std::string where = "op '" + op.name + "' (" + to_string(op.type) + "): ";
    AcceleratorLayer l;
    l.linear_op = l.output_op = i;
    if (transformer_units && g.tensor(op.output).tokens != T)
      return refuse(where + "the controller runs every layer on the sequence's " + std::to_string(T) +
                    " tokens, one at a time; its output has " + std::to_string(g.tensor(op.output).tokens));
    const auto factor_layers = [&]() -> std::optional<std::string> {
      for (const std::string& name : op.factors) {
        const auto it = amax_of.find(name);
        if (it == amax_of.end())
          return where + "factor '" + name + "' is not the codes of a dynamic quantizer the accelerator runs";
        l.factors.push_back(it->second);
      }
      return std::nullopt;
    };
    switch (op.type) {
      case OpType::Flatten: {
        const auto from = source(op.input);
        if (!from) return refuse(where + "flattens a tensor the accelerator does not hold");
        layer_of[op.output] = *from;  // channels last: the same integers in the same place
        continue;
      }
      case OpType::Relu: {
        const auto from = source(op.input);
        if (!from || *from == AcceleratorLayer::kPixels || r.layers[*from].relu ||
            r.layers[*from].unit != TransformerOp::None ||
            g.ops[r.layers[*from].output_op].output != op.input || readers[op.input] != 1)
          return refuse(where + "the accelerator applies ReLU only in the unit of the op before it, whose " +
                        "output nothing else reads");
        r.layers[*from].relu = true;
        r.layers[*from].output_op = i;
        layer_of[op.output] = *from;
        continue;
      }
      case OpType::Quantize: {
        const bool fused = i + 1 < g.ops.size() &&
                           (g.ops[i + 1].type == OpType::Linear || g.ops[i + 1].type == OpType::Conv2d) &&
                           g.ops[i + 1].input == op.output && readers[op.output] == 1;
        if (transformer_units && (!fused || op.groups != 1 || !op.factors.empty())) {
          // A quantize layer of its own: codes per token (and group), dynamic or by its pair.
          const auto from = source(op.input);
          if (!from || *from == AcceleratorLayer::kPixels)
            return refuse(where + "the accelerator's quantize layer reads the values of an earlier layer");
          if (const auto why = factor_layers()) return refuse(*why);
          l.kind = AcceleratorOp::Add;
          l.unit = TransformerOp::Quantize;
          l.input = *from;
          l.in = l.out = per_token(op.input);
          l.pairs = op.pairs;
          if (op.pairs.empty()) amax_of[op.output] = r.layers.size();
          break;
        }
        if (!fused)
          return refuse(where + "the accelerator quantizes activations only as the input of the linear or conv2d " +
                        "op after it");
        if (!transformer_units && g.tensor(op.input).tokens != 1)
          return refuse(where + "the accelerator's quantizer takes one token per sample");
        if (op.groups != 1 || !op.factors.empty())
          return refuse(where + "the accelerator's quantizer has one scale per token, from its own absmax or one "
                        "static pair (no groups, no factors)");
        const auto from = source(op.input);
        if (!from) return refuse(where + "quantizes a tensor the accelerator does not hold");
        const Op& k = g.ops[i + 1];
        l.kind = k.type == OpType::Linear ? AcceleratorOp::Linear : AcceleratorOp::Conv2d;
        l.quantize_op = i;
        l.linear_op = l.output_op = i + 1;
        l.params = &k.linear;
        l.quantizer = op.pairs;
        l.input = *from;
        l.in = per_token(op.input);
        l.out = per_token(k.output);
        if (l.kind == AcceleratorOp::Conv2d) l.map = k.conv_shape(g.tensor(op.output));
        if (op.pairs.empty()) amax_of[op.output] = r.layers.size();
        ++i;  // the kernel op
        break;
      }
      case OpType::MaxPool:
      case OpType::AvgPool:
      case OpType::Add: {
        const auto from = source(op.input);
        if (!from || *from == AcceleratorLayer::kPixels)
          return refuse(where + "the accelerator's units read the values of an earlier layer, not the pixels");
        l.input = *from;
        l.in = per_token(op.input);
        l.out = per_token(op.output);
        l.pairs = op.pairs;
        if (op.type == OpType::Add) {
          if (!op.factors.empty() && !transformer_units)
            return refuse(where + "the accelerator's adder aligns by static pairs only (no factors)");
          if (const auto why = factor_layers()) return refuse(*why);
          l.kind = AcceleratorOp::Add;
          const auto res = source(op.residual);
          if (!res || *res == AcceleratorLayer::kPixels)
            return refuse(where + "the accelerator's adder reads the values of earlier layers, not the pixels");
          l.residual = *res;
        } else {
          l.kind = op.type == OpType::MaxPool ? AcceleratorOp::MaxPool : AcceleratorOp::AvgPool;
          const Tensor& x = g.tensor(op.input);
          l.map.in_h = x.height;
          l.map.in_w = x.width;
          l.map.in_c = l.map.out_c = x.channels();
          l.map.window = op.window;
        }
        break;
      }
      case OpType::Linear:
      case OpType::Conv2d: {
        const auto from = source(op.input);
        if (!transformer_units || op.type != OpType::Linear || unit_of(from) != TransformerOp::Quantize)
          return refuse(where + "the accelerator's array reads codes of the quantize op just before it");
        // The codes of a quantize layer (Q, K and V share one quantization of the norm's output).
        l.kind = AcceleratorOp::Linear;
        l.codes_input = true;
        l.quantize_op = g.producer(op.input).value();
        l.params = &op.linear;
        l.input = *from;
        l.in = per_token(op.input);
        l.out = per_token(op.output);
        break;
      }
      case OpType::Embed:
      case OpType::RmsNorm:
      case OpType::SquaredRelu:
      case OpType::Scores:
      case OpType::Softmax:
      case OpType::Attend: {
        if (!transformer_units)
          return refuse(where + "the engines without the transformer units (the CUDA engine, the HLS image " +
                        "tops) do not run the transformer's ops (the integer engine, the SystemC model, the RTL and " +
                        "the HLS transformer tops do)");
        const auto from = source(op.input);
        l.kind = AcceleratorOp::Add;
        l.in = per_token(op.input);
        l.out = per_token(op.output);
        l.pairs = op.pairs;
        if (op.type == OpType::Embed) {
          if (!from || *from != AcceleratorLayer::kPixels)
            return refuse(where + "the accelerator's embedding unit reads the tokens");
          l.unit = TransformerOp::Embed;
          break;
        }
        if (!from || *from == AcceleratorLayer::kPixels)
          return refuse(where + "the accelerator's units read an earlier layer's output, not the tokens");
        l.input = *from;
        switch (op.type) {
          case OpType::RmsNorm: l.unit = TransformerOp::RmsNorm; break;
          case OpType::SquaredRelu: l.unit = TransformerOp::SquaredRelu; break;
          case OpType::Softmax:
            l.unit = TransformerOp::Softmax;
            if (unit_of(from) != TransformerOp::Scores)
              return refuse(where + "the accelerator's softmax unit reads the scores layer's rows");
            break;
          default: {  // scores, attend: the second operand is a KV cache, written by a quantize layer
            l.unit = op.type == OpType::Scores ? TransformerOp::Scores : TransformerOp::Attend;
            const auto res = source(op.residual);
            if (unit_of(from) != (op.type == OpType::Scores ? TransformerOp::Quantize : TransformerOp::Softmax) ||
                unit_of(res) != TransformerOp::Quantize)
              return refuse(where + "the accelerator's vector unit reads " +
                            (op.type == OpType::Scores ? "query" : "probability") +
                            " rows of the layer before and a KV cache of codes a quantize layer writes");
            l.residual = *res;
            if (const auto why = factor_layers()) return refuse(*why);
            break;
          }
        }
        break;
      }
    }
    r.layers.push_back(l);
    layer_of[g.ops[i].output] = r.layers.size() - 1;
  }
  if (r.layers.empty()) return refuse("the graph has no linear or conv2d op");
  const auto out = layer_of.find(g.output);
  if (out == layer_of.end() || out->second != r.layers.size() - 1)
    return refuse("the last layer's output is not the graph's output tensor");
  return r;
}

OpOutputs op_outputs(const Graph& g, const std::vector<AcceleratorLayer>& layers, LayerOutputs&& per_layer) {
  OpOutputs out(g.ops.size());
  for (std::size_t l = 0; l < layers.size() && l < per_layer.size(); ++l)
    out[layers[l].output_op] = std::move(per_layer[l]);
  return out;
}

LayerOutputs layer_outputs(const std::vector<AcceleratorLayer>& layers, const OpOutputs& ops) {
  LayerOutputs out;
  for (const AcceleratorLayer& l : layers) out.push_back(ops.at(l.output_op));
  return out;
}

}  // namespace qathw::model
