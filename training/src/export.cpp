#include "qathw/training/export.h"

namespace qathw::training {
namespace {

// One kernel as the deployed model holds it: its codes packed in the weight format, with the
// quantizer's pairs and scales.
model::LinearParams kernel_params(int in, int out, const std::vector<float>& codes,
                                  const std::vector<arith::FixedPoint>& requant, const std::vector<float>& scales,
                                  float reference, arith::WeightFormat format) {
  model::LinearParams p;
  p.in = in;
  p.out = out;
  p.format = format;
  p.packed.assign(arith::packed_bytes(codes.size(), format), 0);
  for (std::size_t i = 0; i < codes.size(); ++i) arith::store_code(p.packed.data(), i, static_cast<int>(codes[i]), format);
  p.requant = requant;
  p.scales = scales;
  p.reference = reference;
  return p;
}

model::Bundle bundle_header(const target::TargetSpec& target, int rows, int cols, int classes, nlohmann::json training) {
  model::Bundle b;
  b.target = target;
  b.target_hash = target::content_hash(target);
  b.rows = rows;
  b.cols = cols;
  b.classes = classes;
  b.training = std::move(training);
  return b;
}

}  // namespace

model::Bundle make_bundle(const Mlp& net, const target::TargetSpec& target, int rows, int cols, nlohmann::json training) {
  model::Bundle b = bundle_header(target, rows, cols, net.classes(), std::move(training));
  std::vector<QuantizedLayer> q;
  quantize_weights(net, target.format, q);
  std::vector<model::LinearParams> layers;
  std::vector<bool> relu;
  for (std::size_t l = 0; l < net.layers.size(); ++l) {
    const Layer& layer = net.layers[l];
    layers.push_back(kernel_params(layer.in, layer.out, q[l].codes, q[l].requant, q[l].scales, q[l].reference,
                                   target.format.weights));
    relu.push_back(layer.relu);
  }
  b.graph = model::mlp_graph(rows * cols, std::move(layers), relu);
  return b;
}

model::Bundle make_bundle(SpecNet& net, const target::TargetSpec& target, nlohmann::json training) {
  const model::ModelSpec& m = net.spec();
  if (m.input.channels != 1)
    throw std::runtime_error(m.origin + ": field 'input': a deployed model reads one channel of pixels, not " +
                             std::to_string(m.input.channels));
  model::Bundle b = bundle_header(target, m.input.height, m.input.width, m.classes(), std::move(training));
  net.quantize_kernels(target.format);
  // The static quantizers' and adds' pairs follow from the steps and kernels alone: one forward
  // of any image gives them.
  const std::vector<std::uint8_t> image(static_cast<std::size_t>(m.input.size()), 0);
  net.forward_quantized(image.data(), 1, target.format, target.array.lanes);
  std::vector<model::LayerParams> params(m.layers.size());
  for (std::size_t i = 0; i < m.layers.size(); ++i) {
    params[i].input_quantizer = net.input_pairs(i);
    params[i].pairs = net.add_pairs(i);
    const SpecNet::QuantizedKernel& q = net.quantized()[i];
    if (q.codes.empty()) continue;
    params[i].kernel = kernel_params(model::kernel_fan_in(m.layers[i]), m.layers[i].out, q.codes, q.requant, q.scales,
                                     q.reference, target.format.weights);
  }
  b.graph = model::lower_model(m, std::move(params), target.format);
  return b;
}

model::Bundle make_bundle(TransformerNet& net, const target::TargetSpec& target, nlohmann::json training) {
  const TransformerSpec& spec = net.spec();
  const arith::Format& f = target.format;
  const int T = spec.context, D = spec.width, H = spec.heads, F = spec.ffn, V = spec.vocabulary;
  model::Bundle b = bundle_header(target, 0, 0, V, std::move(training));
  b.input_kind = model::InputKind::Sequence;
  b.context = T;
  net.quantize_weights(f);
  const TransformerNet::Datapath dp = net.datapath(f);

  model::Graph& g = b.graph;
  using model::DType;
  using model::OpType;
  const auto tensor = [&](const std::string& name, DType dtype, int features) {
    g.tensors.push_back({name, dtype, T, features});
    return name;
  };
  const auto op = [&](OpType type, const std::string& name, const std::string& input, const std::string& output) -> model::Op& {
    model::Op o;
    o.type = type;
    o.name = name;
    o.input = input;
    o.output = output;
    g.ops.push_back(std::move(o));
    return g.ops.back();
  };
  const auto matrix = [&](const std::string& name, const std::string& codes, const std::string& output) {
    std::size_t i = 0;
    while (net.params()[i].name != name) ++i;
    const TransformerNet::Param& p = net.params()[i];
    const TransformerNet::QuantizedMatrix& q = net.quantized(i);
    tensor(output, DType::Values, p.rows);
    op(OpType::Linear, name, codes, output).linear =
        kernel_params(p.cols, p.rows, q.codes, q.requant, q.scales, q.reference, f.weights);
  };
  // A dynamic per-token (per-group) quantizer of `input`; returns its codes tensor.
  const auto quantize = [&](const std::string& input, int features, int groups = 1) {
    const std::string codes = tensor(input + ".codes", DType::Codes, features);
    op(OpType::Quantize, input + ".quantize", input, codes).groups = groups;
    return codes;
  };
  const auto norm = [&](const std::string& name, const std::string& input, const TransformerNet::NormConstants& c) {
    tensor(name, DType::Values, D);
    model::Op& o = op(OpType::RmsNorm, name, input, name);
    o.pairs = c.gains;
    o.eps = dp.eps;
    return name;
  };

  g.input = tensor("tokens", DType::Pixels, 1);
  std::string x = tensor("embedding", DType::Values, D);
  {
    model::Op& e = op(OpType::Embed, "embedding", g.input, x);
    e.pairs = {dp.one, dp.one};
    e.embed = model::EmbedParams{V, T, D, dp.token_table, dp.position_table};
  }
  for (int l = 0; l < spec.layers; ++l) {
    const TransformerNet::LayerConstants& c = dp.layers[l];
    const std::string p = "layer" + std::to_string(l) + ".";
    const std::string n1 = quantize(norm(p + "attention_norm", x, c.attention_norm), D);
    matrix(p + "wq", n1, p + "q");
    matrix(p + "wk", n1, p + "k");
    matrix(p + "wv", n1, p + "v");
    const std::string qc = quantize(p + "q", D, H);
    const auto static_quantizer = [&](const std::string& input, arith::FixedPoint pair) {
      const std::string codes = tensor(input + ".codes", DType::Codes, D);
      model::Op& o = op(OpType::Quantize, input + ".quantize", input, codes);
      o.pairs = {pair};
      o.factors = {n1};
      return codes;
    };
    const std::string kc = static_quantizer(p + "k", c.k), vc = static_quantizer(p + "v", c.v);
    model::Op& scores = op(OpType::Scores, p + "scores", qc, tensor(p + "scores", DType::Values, H * T));
    scores.residual = kc;
    scores.groups = H;
    scores.pairs = {c.scores};
    scores.factors = {n1, qc};
    model::Op& softmax = op(OpType::Softmax, p + "softmax", p + "scores", tensor(p + "probs", DType::Probs, H * T));
    softmax.groups = H;
    softmax.softmax = model::SoftmaxParams{kExp2IndexBits, kExp2ValueBits, kProbBits};
    model::Op& attend = op(OpType::Attend, p + "attend", p + "probs", tensor(p + "attention", DType::Values, D));
    attend.residual = vc;
    attend.groups = H;
    const std::string ac = quantize(p + "attention", D);
    matrix(p + "wo", ac, p + "o");
    model::Op& add1 = op(OpType::Add, p + "attention_add", x, tensor(p + "attention_add", DType::Values, D));
    add1.residual = p + "o";
    add1.pairs = {dp.one, c.o_add};
    add1.factors = {ac};
    x = p + "attention_add";
    const std::string n2 = quantize(norm(p + "ffn_norm", x, c.ffn_norm), D);
    matrix(p + "wup", n2, p + "up");
    op(OpType::SquaredRelu, p + "squared_relu", p + "up", tensor(p + "squared_relu", DType::Values, F)).shift =
        dp.relu_shift;
    const std::string rc = quantize(p + "squared_relu", F);
    matrix(p + "wdown", rc, p + "down");
    model::Op& add2 = op(OpType::Add, p + "ffn_add", x, tensor(p + "ffn_add", DType::Values, D));
    add2.residual = p + "down";
    add2.pairs = {dp.one, c.down_add};
    add2.factors = {rc, n2, n2};
    x = p + "ffn_add";
  }
  matrix("head", quantize(norm("final_norm", x, dp.final_norm), D), "logits");
  g.output = "logits";
  model::validate(g, f, target.vector_unit);
  return b;
}

}  // namespace qathw::training
