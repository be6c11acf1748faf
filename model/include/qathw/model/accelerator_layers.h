// The op graph as the accelerator's controller executes it: a list of layers, each one op of
// the array or a unit beside it, with what it fuses: a kernel layer (linear or conv2d) takes the
// quantize op before it, and a relu joins the layer whose output it alone reads. Flatten is no
// layer (a map is stored channels last, so flattening moves nothing). The engines observe each
// layer's output, not the codes.
#pragma once

#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "qathw/model/graph.h"

namespace qathw::model {

enum class AcceleratorOp : std::uint8_t { Linear, Conv2d, MaxPool, AvgPool, Add };

struct AcceleratorLayer {
  static constexpr std::size_t kPixels = std::numeric_limits<std::size_t>::max();

  AcceleratorOp kind = AcceleratorOp::Linear;
  std::size_t quantize_op = 0;  // kernel layers: the quantize op before the kernel
  std::size_t linear_op = 0;    // the layer's own op (its linear, conv2d, pool or add)
  std::size_t output_op = 0;    // the op whose output the layer writes (its relu, else its own op)
  int in = 0, out = 0;          // integers per sample read (the input) and written
  bool relu = false;
  const LinearParams* params = nullptr;      // kernel layers; points into the graph
  arith::Conv2dShape map{};                  // conv2d: its shape; pools: the input map and window
  std::vector<arith::FixedPoint> quantizer;  // kernel layers: {} dynamic, {pair} static
  std::vector<arith::FixedPoint> pairs;      // avg_pool: {1 / area}; add: {input's, residual's}
  std::size_t input = kPixels;               // the layer whose output it reads, or the pixels
  std::size_t residual = kPixels;            // add: the layer of its second operand
};

std::string to_string(AcceleratorOp k);

// The layers of a graph, or the reason it does not map onto the accelerator's controller.
struct AcceleratorLowering {
  std::vector<AcceleratorLayer> layers;
  std::optional<std::string> unsupported;
};
AcceleratorLowering accelerator_layers(const Graph& g);

// Per fused layer, the output integers of one sample.
using LayerOutputs = std::vector<std::vector<std::int32_t>>;

// A fused engine's per-layer outputs placed at their ops (the other ops' entries empty).
OpOutputs op_outputs(const Graph& g, const std::vector<AcceleratorLayer>& layers, LayerOutputs&& per_layer);

// The inverse: each fused layer's output taken from every op's outputs.
LayerOutputs layer_outputs(const std::vector<AcceleratorLayer>& layers, const OpOutputs& ops);

}  // namespace qathw::model
