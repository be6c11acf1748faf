#include "qathw/training/export.h"

namespace qathw::training {

model::Bundle make_bundle(const Mlp& net, const target::TargetSpec& target, int rows, int cols, nlohmann::json training) {
  model::Bundle b;
  b.target = target;
  b.target_hash = target::content_hash(target);
  b.rows = rows;
  b.cols = cols;
  b.classes = net.classes();
  b.training = std::move(training);
  std::vector<QuantizedLayer> q;
  quantize_weights(net, target.format, q);
  std::vector<model::LinearParams> layers;
  std::vector<bool> relu;
  for (std::size_t l = 0; l < net.layers.size(); ++l) {
    const Layer& layer = net.layers[l];
    model::LinearParams p;
    p.in = layer.in;
    p.out = layer.out;
    p.format = target.format.weights;
    p.packed.assign(arith::packed_bytes(layer.w.size(), target.format.weights), 0);
    for (std::size_t i = 0; i < layer.w.size(); ++i)
      arith::store_code(p.packed.data(), i, static_cast<int>(q[l].codes[i]), target.format.weights);
    p.requant = q[l].requant;
    p.scales = q[l].scales;
    p.reference = q[l].reference;
    layers.push_back(std::move(p));
    relu.push_back(layer.relu);
  }
  b.graph = model::mlp_graph(rows * cols, std::move(layers), relu);
  return b;
}

}  // namespace qathw::training
