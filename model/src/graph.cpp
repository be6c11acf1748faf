#include "qathw/model/graph.h"

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
    {OpType::Add, "add"},           {OpType::Flatten, "flatten"}};

std::string shape_text(const Tensor& t) {
  if (t.is_map())
    return "[" + std::to_string(t.height) + ", " + std::to_string(t.width) + ", " + std::to_string(t.channels()) + "]";
  return "[" + std::to_string(t.tokens) + ", " + std::to_string(t.features) + "]";
}

bool same_shape(const Tensor& a, const Tensor& b) {
  return a.tokens == b.tokens && a.features == b.features && a.height == b.height && a.width == b.width;
}

const std::pair<DType, const char*> kDTypeNames[] = {
    {DType::Pixels, "uint8"}, {DType::Values, "values"}, {DType::Codes, "codes"}};

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

void validate(const Graph& g, const arith::Format& f) {
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
    switch (op.type) {
      case OpType::Quantize:
        expect(x.dtype == DType::Pixels || x.dtype == DType::Values, "input", "input must be uint8 or values");
        expect(y.dtype == DType::Codes, "output", "output must be codes");
        expect(same_shape(x, y), "output", "output shape must equal the input shape " + shape_text(x));
        expect(op.pairs.size() <= 1, "pairs", "a quantizer has no pair (dynamic) or one: 1 / scale (static)");
        for (const arith::FixedPoint& pair : op.pairs) check_pair(pair, "pairs", f, expect);
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
        expect(g.find_tensor(op.residual).has_value(), "residual", "residual tensor '" + op.residual + "' is not defined");
        expect(written.count(op.residual) > 0, "residual", "reads '" + op.residual + "' before any op writes it");
        const Tensor& r = g.tensor(op.residual);
        expect(x.dtype == DType::Values && r.dtype == DType::Values, "input", "both inputs must be values");
        expect(same_shape(x, r), "residual",
               "the inputs' shapes differ: " + shape_text(x) + " and " + shape_text(r));
        expect(y.dtype == DType::Values && same_shape(x, y), "output", "output must be values of the inputs' shape");
        expect(op.pairs.size() == 2, "pairs", "an add has two pairs: the input's and the residual's");
        for (const arith::FixedPoint& pair : op.pairs) check_pair(pair, "pairs", f, expect);
        break;
      }
      case OpType::Flatten:
        expect(x.is_map(), "input", "input must be a feature map");
        expect(y.dtype == x.dtype && !y.is_map() && y.tokens == 1 && y.features == x.features, "output",
               "output must be [1, " + std::to_string(x.features) + "] of the input's type");
        break;
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

AcceleratorLowering accelerator_layers(const Graph& g) {
  AcceleratorLowering r;
  auto refuse = [&](const std::string& why) {
    r.layers.clear();
    r.unsupported = why;
    return r;
  };
  std::map<std::string, int> readers;
  for (const Op& op : g.ops) {
    ++readers[op.input];
    if (op.type == OpType::Add) ++readers[op.residual];
  }
  ++readers[g.output];
  // Tensor -> the layer holding its integers (kPixels: the input), as the ops are walked.
  std::map<std::string, std::size_t> layer_of = {{g.input, AcceleratorLayer::kPixels}};
  const auto source = [&](const std::string& tensor) -> std::optional<std::size_t> {
    const auto it = layer_of.find(tensor);
    if (it == layer_of.end()) return std::nullopt;
    return it->second;
  };
  for (std::size_t i = 0; i < g.ops.size(); ++i) {
    const Op& op = g.ops[i];
    const std::string where = "op '" + op.name + "' (" + to_string(op.type) + "): ";
    AcceleratorLayer l;
    l.linear_op = l.output_op = i;
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
            g.ops[r.layers[*from].output_op].output != op.input || readers[op.input] != 1)
          return refuse(where + "the accelerator applies ReLU only in the unit of the op before it, whose " +
                        "output nothing else reads");
        r.layers[*from].relu = true;
        r.layers[*from].output_op = i;
        layer_of[op.output] = *from;
        continue;
      }
      case OpType::Quantize: {
        if (i + 1 >= g.ops.size() || (g.ops[i + 1].type != OpType::Linear && g.ops[i + 1].type != OpType::Conv2d) ||
            g.ops[i + 1].input != op.output || readers[op.output] != 1)
          return refuse(where + "the accelerator quantizes activations only as the input of the linear or conv2d " +
                        "op after it");
        if (g.tensor(op.input).tokens != 1)
          return refuse(where + "the accelerator's quantizer takes one token per sample");
        const auto from = source(op.input);
        if (!from) return refuse(where + "quantizes a tensor the accelerator does not hold");
        const Op& k = g.ops[i + 1];
        l.kind = k.type == OpType::Linear ? AcceleratorOp::Linear : AcceleratorOp::Conv2d;
        l.quantize_op = i;
        l.linear_op = l.output_op = i + 1;
        l.params = &k.linear;
        l.quantizer = op.pairs;
        l.input = *from;
        l.in = static_cast<int>(g.tensor(op.input).size());
        l.out = static_cast<int>(g.tensor(k.output).size());
        if (l.kind == AcceleratorOp::Conv2d) l.map = k.conv_shape(g.tensor(op.output));
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
        l.in = static_cast<int>(g.tensor(op.input).size());
        l.out = static_cast<int>(g.tensor(op.output).size());
        l.pairs = op.pairs;
        if (op.type == OpType::Add) {
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
      case OpType::Conv2d:
        return refuse(where + "the accelerator's array reads codes of the quantize op just before it");
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
