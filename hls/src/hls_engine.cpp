#include "qathw/hls/hls_engine.h"

#include <algorithm>
#include <stdexcept>

#include "hls_build.h"
#include "qathw/hls/sequence_engine.h"
#include "qathw/target/target_spec.h"
#include "qathw/util/process.h"

namespace qathw::hls {

namespace {

using model::AcceleratorLayer;
using model::AcceleratorOp;

// A linear layer with a static quantizer runs on the conv top: a 1 x 1 map of `in` channels,
// whose one patch is the whole input (layer_top's quantizer is the dynamic one).
arith::Conv2dShape linear_as_conv(const AcceleratorLayer& l) {
  arith::Conv2dShape s;
  s.in_c = l.in;
  s.out_c = l.out;
  return s;
}

// The first layer larger than the tops' static sizes, named with its op and the limit.
std::optional<std::string> beyond_limits(const model::Graph& g, const std::vector<AcceleratorLayer>& layers) {
  for (const AcceleratorLayer& l : layers) {
    const model::Op& op = g.ops[l.linear_op];
    const auto over = [&](const std::string& what, long value, const char* bound, int limit) -> std::optional<std::string> {
      if (value <= limit) return std::nullopt;
      return "op '" + op.name + "' (" + model::to_string(op.type) + "): " + what + " of " + std::to_string(value) +
             " exceeds the HLS tops' " + bound + " = " + std::to_string(limit);
    };
    std::optional<std::string> why;
    switch (l.kind) {
      case AcceleratorOp::Linear:
        if (!(why = over("input width", l.in, "kMaxWidth", kMaxWidth))) why = over("output width", l.out, "kMaxWidth", kMaxWidth);
        break;
      case AcceleratorOp::Conv2d:
        if (!(why = over("input map", l.in, "kMaxMap", kMaxMap)) && !(why = over("output map", l.out, "kMaxMap", kMaxMap)) &&
            !(why = over("patch", l.map.patch(), "kMaxWidth", kMaxWidth)))
          why = over("output channels", l.map.out_c, "kMaxWidth", kMaxWidth);
        break;
      case AcceleratorOp::MaxPool:
      case AcceleratorOp::AvgPool:
      case AcceleratorOp::Add:
        if (!(why = over("input map", l.in, "kMaxMap", kMaxMap))) why = over("output map", l.out, "kMaxMap", kMaxMap);
        break;
    }
    if (why) return why;
  }
  return std::nullopt;
}

}  // namespace

std::vector<model::LayerOutputs> run_layers(const model::Bundle& bundle, const std::uint8_t* pixels,
                                            std::size_t count, const Tops& tops) {
  const model::AcceleratorLowering lowering = model::accelerator_layers(bundle.graph);
  if (lowering.unsupported) throw std::runtime_error("HLS: " + *lowering.unsupported);
  if (const auto why = beyond_limits(bundle.graph, lowering.layers)) throw std::runtime_error("HLS: " + *why);
  const std::vector<AcceleratorLayer>& layers = lowering.layers;
  // Per kernel layer its requantization pairs, as the tops' ports hold them (kMaxWidth each).
  std::vector<std::vector<std::int32_t>> mantissa(layers.size()), shift(layers.size());
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const AcceleratorLayer& layer = layers[l];
    const bool static_linear = layer.kind == AcceleratorOp::Linear && !layer.quantizer.empty();
    const bool present = layer.kind == AcceleratorOp::Linear ? (static_linear ? tops.conv != nullptr : tops.layer != nullptr)
                         : layer.kind == AcceleratorOp::Conv2d ? tops.conv != nullptr
                         : layer.kind == AcceleratorOp::Add    ? tops.add != nullptr
                                                               : tops.pool != nullptr;
    if (!present)
      throw std::runtime_error("HLS: op '" + bundle.graph.ops[layer.linear_op].name + "': no " +
                               model::to_string(layer.kind) + " top in the tops of target '" + bundle.target.name + "'");
    if (!layer.params) continue;
    mantissa[l].assign(kMaxWidth, 0);
    shift[l].assign(kMaxWidth, 0);
    for (std::size_t n = 0; n < layer.params->requant.size(); ++n) {
      mantissa[l][n] = static_cast<std::int32_t>(layer.params->requant[n].mantissa);
      shift[l][n] = layer.params->requant[n].shift;
    }
  }
  const std::size_t features = bundle.features();
  std::vector<model::LayerOutputs> outputs(count);
  // The tops' map ports: kMaxMap values each (a linear layer's ports, kMaxWidth, fit in them).
  std::vector<std::int32_t> a(kMaxMap), b(kMaxMap), out(kMaxMap);
  for (std::size_t i = 0; i < count; ++i) {
    model::LayerOutputs& done = outputs[i];
    const auto load = [&](std::size_t from, std::vector<std::int32_t>& port) {
      if (from == AcceleratorLayer::kPixels)
        std::copy(pixels + i * features, pixels + (i + 1) * features, port.begin());
      else
        std::copy(done[from].begin(), done[from].end(), port.begin());
    };
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const AcceleratorLayer& layer = layers[l];
      load(layer.input, a);
      const bool static_q = !layer.quantizer.empty();
      const arith::FixedPoint q = static_q ? layer.quantizer[0] : arith::FixedPoint{};
      switch (layer.kind) {
        case AcceleratorOp::Linear:
          if (static_q)
            tops.conv(a.data(), linear_as_conv(layer), true, q, layer.relu, layer.params->packed.data(), mantissa[l].data(),
                      shift[l].data(), out.data());
          else
            tops.layer(a.data(), layer.in, layer.out, layer.relu, layer.params->packed.data(), mantissa[l].data(),
                       shift[l].data(), out.data());
          break;
        case AcceleratorOp::Conv2d:
          tops.conv(a.data(), layer.map, static_q, q, layer.relu, layer.params->packed.data(), mantissa[l].data(),
                    shift[l].data(), out.data());
          break;
        case AcceleratorOp::MaxPool:
        case AcceleratorOp::AvgPool: {
          const bool average = layer.kind == AcceleratorOp::AvgPool;
          tops.pool(a.data(), layer.map, average, average ? layer.pairs.at(0) : arith::FixedPoint{}, layer.relu, out.data());
          break;
        }
        case AcceleratorOp::Add:
          load(layer.residual, b);
          tops.add(a.data(), layer.pairs.at(0), b.data(), layer.pairs.at(1), layer.out, layer.relu, out.data());
          break;
      }
      done.emplace_back(out.begin(), out.begin() + layer.out);
    }
  }
  return outputs;
}

std::optional<std::string> hls_unsupported(const model::Bundle& bundle) {
  if (!builtin_tops(bundle) && !util::program_available("c++"))
    return "no HLS top for target '" + bundle.target.name + "' and no C++ compiler (c++) to build one";
  if (bundle.sequence()) return sequence_unsupported(bundle);  // the transformer's tops (run_hls_sequences)
  const model::AcceleratorLowering lowering = model::accelerator_layers(bundle.graph);
  if (lowering.unsupported) return lowering.unsupported;
  return beyond_limits(bundle.graph, lowering.layers);
}

std::vector<model::LayerOutputs> run_hls(const model::Bundle& bundle, const std::uint8_t* pixels,
                                         std::size_t count) {
  return run_layers(bundle, pixels, count, tops_of(bundle));
}

}  // namespace qathw::hls
