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

}  // namespace qathw::training
