// The op graph as the accelerator's controller executes it: a list of layers, each one op of
// the array or a unit beside it, with what it fuses: a kernel layer (linear or conv2d) takes the
// quantize op before it, and a relu joins the layer whose output it alone reads. Flatten is no
// layer (a map is stored channels last, so flattening moves nothing). The engines observe each
// layer's output, not the codes it fuses.
//
// With the transformer's units (the SystemC model and the RTL have them; the CUDA engine and the
// HLS image tops do not) a sequence graph lowers too: every layer runs per token
// (`AcceleratorLowering::tokens` rows), the transformer's ops are layers of their own
// (`TransformerOp`), a quantize op that is not the sole input of the kernel op after it (groups,
// factors, or several readers) is a layer writing codes, and a kernel layer may read such a
// layer's codes (`codes_input`). docs/sim.md, "Transformer layers".
#pragma once

#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "qathw/model/graph.h"
#include "qathw/target/target_spec.h"

namespace qathw::model {

enum class AcceleratorOp : std::uint8_t { Linear, Conv2d, MaxPool, AvgPool, Add };

// A transformer layer's unit; None for the layers of `AcceleratorOp` (a layer of the transformer
// unit has `kind` Add and no meaning in it: only the SystemC model lowers them).
enum class TransformerOp : std::uint8_t { None, Embed, RmsNorm, Quantize, SquaredRelu, Scores, Softmax, Attend };

struct AcceleratorLayer {
  static constexpr std::size_t kPixels = std::numeric_limits<std::size_t>::max();

  AcceleratorOp kind = AcceleratorOp::Linear;
  std::size_t quantize_op = 0;  // kernel layers: the quantize op before the kernel
  std::size_t linear_op = 0;    // the layer's own op (its linear, conv2d, pool, add or transformer op)
  std::size_t output_op = 0;    // the op whose output the layer writes (its relu, else its own op)
  int in = 0, out = 0;          // integers per token read (the input) and written (an image: per sample)
  bool relu = false;
  const LinearParams* params = nullptr;      // kernel layers; points into the graph
  arith::Conv2dShape map{};                  // conv2d: its shape; pools: the input map and window
  std::vector<arith::FixedPoint> quantizer;  // kernel layers: {} dynamic, {pair} static
  std::vector<arith::FixedPoint> pairs;      // avg_pool: {1 / area}; add: {input's, residual's}; the
                                             // transformer's layers: their op's pairs
  std::size_t input = kPixels;               // the layer whose output it reads, or the pixels
  std::size_t residual = kPixels;            // add: the layer of its second operand; scores: the key
                                             // codes' layer; attend: the value codes' layer
  // The transformer's layers (only with transformer units): the unit, and for a layer of the
  // array whether it reads the codes of a quantize layer (`input`) instead of quantizing itself.
  TransformerOp unit = TransformerOp::None;
  bool codes_input = false;
  // Quantize (static), add, scores: the layers whose quantizer's per-token absmax multiply the last
  // pair (the op's `factors`, in order; a kernel layer's fused quantizer or a quantize layer).
  std::vector<std::size_t> factors;
};

std::string to_string(AcceleratorOp k);
std::string to_string(TransformerOp k);
// The layer's kind as the engines name it: its transformer unit, else its AcceleratorOp.
std::string kind_name(const AcceleratorLayer& l);

// The layers of a graph, or the reason it does not map onto the accelerator's controller.
struct AcceleratorLowering {
  std::vector<AcceleratorLayer> layers;
  std::optional<std::string> unsupported;
  int tokens = 1;  // rows of every layer's input and output: the controller runs each layer per token
};
// transformer_units: lower the transformer's ops and sequences (the SystemC model); without, a
// graph with them is refused naming the op, as the RTL, the CUDA engine and the HLS image tops need.
AcceleratorLowering accelerator_layers(const Graph& g, bool transformer_units = false);

// The KV caches: the layers whose codes scores and attend read as their second operand (the keys
// and the values), kept for every token of the sequence. Inline, as the RTL's fit check is.
inline std::vector<bool> kv_cache_layers(const std::vector<AcceleratorLayer>& layers) {
  std::vector<bool> cache(layers.size(), false);
  for (const AcceleratorLayer& l : layers)
    if ((l.unit == TransformerOp::Scores || l.unit == TransformerOp::Attend) && l.residual < layers.size())
      cache[l.residual] = true;
  return cache;
}

// Bytes one token adds to the KV caches: every cache's codes of it.
inline std::size_t kv_cache_bytes_per_token(const std::vector<AcceleratorLayer>& layers, const arith::Format& f) {
  const std::vector<bool> cache = kv_cache_layers(layers);
  std::size_t bytes = 0;
  for (std::size_t l = 0; l < layers.size(); ++l)
    if (cache[l]) bytes += static_cast<std::size_t>(layers[l].out) * arith::act_code_bytes(f.act_bits);
  return bytes;
}

// Whether the caches of `tokens` tokens fit the target's KV cache region (memory.kv_cache_kib,
// when it reserves one): the reason they do not, or nothing. The SystemC model and the RTL both
// check it before they run.
inline std::optional<std::string> kv_cache_misfit(const std::vector<AcceleratorLayer>& layers, int tokens,
                                                  const target::TargetSpec& t) {
  const std::size_t per_token = kv_cache_bytes_per_token(layers, t.format);
  if (t.memory.kv_cache_kib == 0 || per_token == 0) return std::nullopt;
  const std::size_t need = per_token * static_cast<std::size_t>(tokens);
  const std::size_t region = static_cast<std::size_t>(t.memory.kv_cache_kib) * 1024;
  if (need <= region) return std::nullopt;
  return "the model's KV caches need " + std::to_string(need) + " bytes (" + std::to_string(tokens) + " tokens x " +
         std::to_string(per_token) + "); target '" + t.name + "' reserves " + std::to_string(region) +
         " (memory.kv_cache_kib): room for " + std::to_string(region / per_token) + " tokens";
}

// Per fused layer, the output integers of one sample (a sequence: every token's row, in order).
using LayerOutputs = std::vector<std::vector<std::int32_t>>;

// A fused engine's per-layer outputs placed at their ops (the other ops' entries empty).
OpOutputs op_outputs(const Graph& g, const std::vector<AcceleratorLayer>& layers, LayerOutputs&& per_layer);

// The inverse: each fused layer's output taken from every op's outputs.
LayerOutputs layer_outputs(const std::vector<AcceleratorLayer>& layers, const OpOutputs& ops);

}  // namespace qathw::model
