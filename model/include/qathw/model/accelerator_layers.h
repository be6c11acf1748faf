// The op graph as the accelerator's controller executes it: a chain of fused layers, each
// quantize -> linear [-> relu], the first fed by the input. The hardware engines (SystemC, RTL,
// HLS) and the CUDA engine run this form; they observe each layer's output, not the codes.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "qathw/model/graph.h"

namespace qathw::model {

struct AcceleratorLayer {
  std::size_t quantize_op = 0, linear_op = 0;
  std::size_t output_op = 0;  // the op whose output the layer writes (its relu, else its linear)
  int in = 0, out = 0;
  bool relu = false;
  const LinearParams* params = nullptr;  // points into the graph
};

// The layers of a graph, or the reason it does not map onto the accelerator's layer chain.
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
