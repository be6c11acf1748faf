// How a deployed model's fused layers lie in the memories of the accelerator's RTL
// (qathw/target/rtl_memories.h) and what each layer's descriptor holds, and whether they fit,
// checked before the RTL runs. Header-only: the Verilator harness (also built as a shared object
// that links nothing of qat-hw) and the engine registry both call it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "qathw/arith/transformer.h"
#include "qathw/model/accelerator_layers.h"
#include "qathw/target/config_port.h"
#include "qathw/target/rtl_memories.h"

namespace qathw::rtl {

// How much of each RTL memory the layers take on an array of `rows` x `lanes`.
struct RtlMemoryUse {
  std::size_t layers = 0;         // layer descriptors
  std::size_t act_words = 0;      // the pixels and every layer's outputs, one buffer each
  std::size_t codes = 0;          // the largest input of a linear or conv2d layer
  std::size_t weight_words = 0;   // per kernel layer: groups x ceil(group_out / rows) x ceil(patch / lanes)
  std::size_t requant_pairs = 0;  // per kernel layer: one per output channel; per rms_norm layer its gains
  std::size_t table_words = 0;    // per embed layer: its token and position tables
  std::size_t groups = 0;         // the most absmax registers of one layer (a quantize layer's groups)
  std::size_t factors = 0;        // the most factors of one layer's pair
  std::size_t tokens = 0;         // a sequence's tokens (0: an image)
  bool exp2_tables_differ = false;  // two softmax layers with different exp2 tables (the RTL has one)
};

// What the layout of a sequence needs beyond the layers: the graph's ops (the transformer layers'
// eps, shift, softmax sizes and embedding tables) and the tokens (accelerator_layers' `tokens`).
struct RtlSequence {
  const model::Graph* graph = nullptr;
  int tokens = 0;
  int acc_bits = 32;
};

// The exp2 table the RTL's softmax unit holds (every softmax layer's: they must agree), or none.
inline std::optional<model::SoftmaxParams> rtl_softmax(const std::vector<model::AcceleratorLayer>& layers,
                                                      const model::Graph& g) {
  for (const model::AcceleratorLayer& l : layers)
    if (l.unit == model::TransformerOp::Softmax) return g.ops[l.linear_op].softmax;
  return std::nullopt;
}

// A layer's descriptor as (field, value) pairs of config_port's table, and the memory use.
struct RtlLayout {
  std::vector<std::vector<std::pair<target::config_port::Field, std::uint64_t>>> descriptors;
  RtlMemoryUse use;
};

// A layer's map and window as the controller walks it: a linear layer is a 1 x 1 map of `in`
// channels and a 1 x 1 kernel; a pool is a convolution of one channel per group.
inline arith::Conv2dShape rtl_map(const model::AcceleratorLayer& l) {
  arith::Conv2dShape s = l.map;
  if (l.kind == model::AcceleratorOp::Linear) {
    s = arith::Conv2dShape{};
    s.in_c = l.in;
    s.out_c = l.out;
  } else if (l.kind == model::AcceleratorOp::MaxPool || l.kind == model::AcceleratorOp::AvgPool) {
    s.out_c = s.in_c;
    s.groups = s.in_c;
  }
  return s;
}

inline std::size_t rtl_chunks(std::size_t n, int lanes) { return (n + static_cast<std::size_t>(lanes) - 1) / lanes; }

// Buffers in layer order after the pixels (no reuse: the outputs leave after the last layer);
// weight words of a kernel layer per group, tile and chunk; requantization pairs per channel.
// A sequence (docs/rtl.md, "Transformer layers"): the tokens at 0, then per layer one token's
// output (a KV cache: `tokens` rows); RMSNorm gains after the requantization pairs of the layers
// before them; embedding tables in the table memory.
inline RtlLayout rtl_layout(const std::vector<model::AcceleratorLayer>& layers, int rows, int lanes,
                            const RtlSequence& sequence = {}) {
  namespace cp = target::config_port;
  using model::TransformerOp;
  RtlLayout out;
  RtlMemoryUse& u = out.use;
  u.layers = layers.size();
  const bool seq = sequence.graph && sequence.tokens > 0 &&
                   std::any_of(layers.begin(), layers.end(), [](const model::AcceleratorLayer& l) { return l.unit != TransformerOp::None; });
  const std::size_t T = seq ? static_cast<std::size_t>(sequence.tokens) : 1;
  u.tokens = seq ? T : 0;
  u.act_words = seq ? T : layers.empty() ? 0 : static_cast<std::size_t>(layers.front().in);
  const std::vector<bool> cache = model::kv_cache_layers(layers);
  std::optional<model::SoftmaxParams> softmax;
  if (seq) softmax = rtl_softmax(layers, *sequence.graph);
  std::vector<std::size_t> output_base;
  // A sequence layer's factors (the layers whose per-token absmax multiply its last pair) as
  // descriptor fields, and which of them are per-head quantizers.
  const auto factor_fields = [&](const model::AcceleratorLayer& l, std::uint64_t& heads) {
    std::vector<std::pair<cp::Field, std::uint64_t>> fields;
    heads = 0;
    u.factors = std::max(u.factors, l.factors.size());
    for (std::size_t k = 0; k < l.factors.size() && k < static_cast<std::size_t>(cp::kMaxFactors); ++k) {
      const model::AcceleratorLayer& f = layers.at(l.factors[k]);
      if (f.unit == TransformerOp::Quantize && sequence.graph->ops[f.linear_op].groups > 1) heads |= 1u << k;
      fields.push_back({cp::kDescFactors[k], static_cast<std::uint64_t>(l.factors[k])});
    }
    return fields;
  };
  const auto base_of = [&](std::size_t layer) {
    return layer == model::AcceleratorLayer::kPixels ? std::size_t{0} : output_base.at(layer);
  };
  for (std::size_t li = 0; li < layers.size(); ++li) {
    const model::AcceleratorLayer& l = layers[li];
    const bool unit = l.unit != TransformerOp::None;
    if (unit && seq) {
      const model::Op& op = sequence.graph->ops[l.linear_op];
      cp::Opcode code = cp::Opcode::Embed;
      switch (l.unit) {
        case TransformerOp::None: break;
        case TransformerOp::Embed: code = cp::Opcode::Embed; break;
        case TransformerOp::RmsNorm: code = cp::Opcode::RmsNorm; break;
        case TransformerOp::Quantize: code = cp::Opcode::Quantize; break;
        case TransformerOp::SquaredRelu: code = cp::Opcode::SquaredRelu; break;
        case TransformerOp::Scores: code = cp::Opcode::Scores; break;
        case TransformerOp::Softmax: code = cp::Opcode::Softmax; break;
        case TransformerOp::Attend: code = cp::Opcode::Attend; break;
      }
      const std::size_t groups = static_cast<std::size_t>(std::max(1, op.groups));
      std::uint64_t weight_base = 0, requant_base = 0, head_dim = 0;
      if (l.unit == TransformerOp::Embed) {
        weight_base = u.table_words;
        requant_base = u.table_words + op.embed.tokens.size();
        u.table_words += op.embed.tokens.size() + op.embed.positions_table.size();
      }
      if (l.unit == TransformerOp::RmsNorm) {
        requant_base = u.requant_pairs;
        u.requant_pairs += l.pairs.size();
      }
      if (l.unit == TransformerOp::Quantize) {
        head_dim = static_cast<std::uint64_t>(l.out) / groups;
        if (l.pairs.empty()) u.groups = std::max(u.groups, groups);
      }
      if (l.unit == TransformerOp::Scores) head_dim = static_cast<std::uint64_t>(l.in) / groups;
      if (l.unit == TransformerOp::Attend) head_dim = static_cast<std::uint64_t>(l.out) / groups;
      if (l.unit == TransformerOp::Softmax && softmax &&
          (op.softmax.index_bits != softmax->index_bits || op.softmax.value_bits != softmax->value_bits))
        u.exp2_tables_differ = true;
      const bool pairs = l.unit == TransformerOp::Embed || l.unit == TransformerOp::Scores;
      const arith::FixedPoint base = l.unit == TransformerOp::Quantize && !l.pairs.empty() ? l.pairs[0] : arith::FixedPoint{};
      const arith::FixedPoint pair_a = pairs && l.pairs.size() > 0 ? l.pairs[0] : arith::FixedPoint{};
      const arith::FixedPoint pair_b = pairs && l.pairs.size() > 1 ? l.pairs[1] : arith::FixedPoint{};
      std::uint64_t factor_heads = 0;
      const std::vector<std::pair<cp::Field, std::uint64_t>> factors = factor_fields(l, factor_heads);
      const std::size_t out_base = u.act_words;
      const std::size_t n = static_cast<std::size_t>(l.out);
      const int norm_bits = std::min(sequence.acc_bits, arith::rmsnorm_max_input_bits(l.out));
      out.descriptors.push_back({
          {cp::kDescOpcode, static_cast<std::uint64_t>(code)},
          {cp::kDescRelu, l.relu ? 1u : 0u},
          {cp::kDescStatic, l.unit == TransformerOp::Quantize && !l.pairs.empty() ? 1u : 0u},
          {cp::kDescIn, static_cast<std::uint64_t>(l.in)},
          {cp::kDescOut, static_cast<std::uint64_t>(l.out)},
          {cp::kDescWeightBase, weight_base},
          {cp::kDescRequantBase, requant_base},
          {cp::kDescInputBase, base_of(l.input)},
          {cp::kDescOutputBase, out_base},
          {cp::kDescResidualBase, l.residual == model::AcceleratorLayer::kPixels ? 0 : base_of(l.residual)},
          {cp::kDescGroups, groups},
          {cp::kDescQuantMantissa, static_cast<std::uint64_t>(base.mantissa)},
          {cp::kDescQuantShift, static_cast<std::uint64_t>(base.shift)},
          {cp::kDescPairAMantissa, static_cast<std::uint64_t>(pair_a.mantissa)},
          {cp::kDescPairAShift, static_cast<std::uint64_t>(pair_a.shift)},
          {cp::kDescPairBMantissa, static_cast<std::uint64_t>(pair_b.mantissa)},
          {cp::kDescPairBShift, static_cast<std::uint64_t>(pair_b.shift)},
          {cp::kDescCache, cache[li] ? 1u : 0u},
          {cp::kDescEps, l.unit == TransformerOp::RmsNorm ? op.eps : 0},
          {cp::kDescNormBits, l.unit == TransformerOp::RmsNorm ? static_cast<std::uint64_t>(norm_bits) : 0},
          {cp::kDescShift, l.unit == TransformerOp::SquaredRelu ? static_cast<std::uint64_t>(op.shift) : 0},
          {cp::kDescIndexBits, l.unit == TransformerOp::Softmax ? static_cast<std::uint64_t>(op.softmax.index_bits) : 0},
          {cp::kDescProbBits, l.unit == TransformerOp::Softmax ? static_cast<std::uint64_t>(op.softmax.prob_bits) : 0},
          {cp::kDescHeadDim, head_dim},
          {cp::kDescFactorCount, static_cast<std::uint64_t>(l.factors.size())},
          {cp::kDescFactorHeads, factor_heads},
      });
      for (const auto& f : factors) out.descriptors.back().push_back(f);
      output_base.push_back(out_base);
      u.act_words += cache[li] ? T * n : n;
      continue;
    }
    const bool kernel = l.kind == model::AcceleratorOp::Linear || l.kind == model::AcceleratorOp::Conv2d;
    const arith::Conv2dShape s = rtl_map(l);
    const int gi = s.group_in(), kw = s.window.kernel_w;
    cp::Opcode op = cp::Opcode::Linear;
    switch (l.kind) {
      case model::AcceleratorOp::Linear: op = cp::Opcode::Linear; break;
      case model::AcceleratorOp::Conv2d: op = cp::Opcode::Conv2d; break;
      case model::AcceleratorOp::MaxPool: op = cp::Opcode::MaxPool; break;
      case model::AcceleratorOp::AvgPool: op = cp::Opcode::AvgPool; break;
      case model::AcceleratorOp::Add: op = cp::Opcode::Add; break;
    }
    const arith::FixedPoint quant = l.quantizer.empty() ? arith::FixedPoint{} : l.quantizer.front();
    const arith::FixedPoint pair_a = l.pairs.size() > 0 ? l.pairs[0] : arith::FixedPoint{};
    const arith::FixedPoint pair_b = l.pairs.size() > 1 ? l.pairs[1] : arith::FixedPoint{};
    const std::size_t out_base = u.act_words;
    out.descriptors.push_back({
        {cp::kDescOpcode, static_cast<std::uint64_t>(op)},
        {cp::kDescRelu, l.relu ? 1u : 0u},
        {cp::kDescStatic, kernel && !l.quantizer.empty() ? 1u : 0u},
        {cp::kDescIn, static_cast<std::uint64_t>(l.in)},
        {cp::kDescOut, static_cast<std::uint64_t>(l.out)},
        {cp::kDescWeightBase, kernel ? u.weight_words : 0},
        {cp::kDescRequantBase, kernel ? u.requant_pairs : 0},
        {cp::kDescInputBase, base_of(l.input)},
        {cp::kDescOutputBase, out_base},
        {cp::kDescResidualBase, l.kind == model::AcceleratorOp::Add ? base_of(l.residual) : 0},
        {cp::kDescInH, static_cast<std::uint64_t>(s.in_h)},
        {cp::kDescInW, static_cast<std::uint64_t>(s.in_w)},
        {cp::kDescInC, static_cast<std::uint64_t>(s.in_c)},
        {cp::kDescOutH, static_cast<std::uint64_t>(s.out_h())},
        {cp::kDescOutW, static_cast<std::uint64_t>(s.out_w())},
        {cp::kDescOutC, static_cast<std::uint64_t>(s.out_c)},
        {cp::kDescGroups, static_cast<std::uint64_t>(s.groups)},
        {cp::kDescGroupIn, static_cast<std::uint64_t>(gi)},
        {cp::kDescGroupOut, static_cast<std::uint64_t>(s.group_out())},
        {cp::kDescKernelH, static_cast<std::uint64_t>(s.window.kernel_h)},
        {cp::kDescKernelW, static_cast<std::uint64_t>(kw)},
        {cp::kDescStrideH, static_cast<std::uint64_t>(s.window.stride_h)},
        {cp::kDescStrideW, static_cast<std::uint64_t>(s.window.stride_w)},
        {cp::kDescPadH, static_cast<std::uint64_t>(s.window.pad_h)},
        {cp::kDescPadW, static_cast<std::uint64_t>(s.window.pad_w)},
        {cp::kDescPatch, static_cast<std::uint64_t>(s.patch())},
        {cp::kDescStepY, static_cast<std::uint64_t>(lanes / (gi * kw))},
        {cp::kDescStepX, static_cast<std::uint64_t>((lanes / gi) % kw)},
        {cp::kDescStepC, static_cast<std::uint64_t>(lanes % gi)},
        {cp::kDescQuantMantissa, static_cast<std::uint64_t>(quant.mantissa)},
        {cp::kDescQuantShift, static_cast<std::uint64_t>(quant.shift)},
        {cp::kDescPairAMantissa, static_cast<std::uint64_t>(pair_a.mantissa)},
        {cp::kDescPairAShift, static_cast<std::uint64_t>(pair_a.shift)},
        {cp::kDescPairBMantissa, static_cast<std::uint64_t>(pair_b.mantissa)},
        {cp::kDescPairBShift, static_cast<std::uint64_t>(pair_b.shift)},
    });
    if (seq) {  // a layer of the array or the adder in a sequence
      std::uint64_t factor_heads = 0;
      for (const auto& f : factor_fields(l, factor_heads)) out.descriptors.back().push_back(f);
      out.descriptors.back().push_back({cp::kDescFactorCount, static_cast<std::uint64_t>(l.factors.size())});
      out.descriptors.back().push_back({cp::kDescFactorHeads, factor_heads});
      out.descriptors.back().push_back({cp::kDescCodesInput, l.codes_input ? 1u : 0u});
      if (kernel && !l.quantizer.empty()) u.groups = std::max<std::size_t>(u.groups, 1);
    }
    output_base.push_back(out_base);
    u.act_words += static_cast<std::size_t>(l.out);
    if (kernel) {
      const std::size_t tiles = rtl_chunks(static_cast<std::size_t>(s.group_out()), rows);
      u.weight_words += static_cast<std::size_t>(s.groups) * tiles * rtl_chunks(static_cast<std::size_t>(s.patch()), lanes);
      u.requant_pairs += static_cast<std::size_t>(s.out_c);
      if (!l.codes_input) u.codes = std::max(u.codes, static_cast<std::size_t>(l.in));
    }
  }
  return out;
}

inline RtlMemoryUse rtl_memory_use(const std::vector<model::AcceleratorLayer>& layers, int rows, int lanes,
                                   const RtlSequence& sequence = {}) {
  return rtl_layout(layers, rows, lanes, sequence).use;
}

// The reason the layers do not fit the RTL's memories `m` (which memory, how much the model needs,
// how much there is) or a descriptor field, or nothing when they fit.
inline std::optional<std::string> rtl_memory_misfit(const std::vector<model::AcceleratorLayer>& layers, int rows,
                                                    int lanes, int mantissa_bits, const target::RtlMemories& m,
                                                    const RtlSequence& sequence = {}) {
  const RtlLayout layout = rtl_layout(layers, rows, lanes, sequence);
  const RtlMemoryUse& u = layout.use;
  const auto need = [](const char* memory, std::size_t needed, int has, const char* unit, const char* rule) {
    return std::string("the model needs ") + std::to_string(needed) + " " + unit + " of the RTL's " + memory +
           ", which holds " + std::to_string(has) + " (" + rule + ")";
  };
  if (u.layers > static_cast<std::size_t>(m.max_layers))
    return need("layer descriptor memory", u.layers, m.max_layers, "layers", "MaxLayers");
  if (u.act_words > static_cast<std::size_t>(m.act_words))
    return need("activation memory", u.act_words, m.act_words, "values",
                "ActWords: the pixels and every layer's outputs");
  if (u.codes > static_cast<std::size_t>(m.code_depth))
    return need("code memory", u.codes, m.code_depth, "codes", "CodeDepth, the largest input of a linear or conv2d layer");
  if (u.weight_words > static_cast<std::size_t>(m.weight_words))
    return need("weight memory", u.weight_words, m.weight_words, "words",
                "WeightWords: memory.weight_sram_kib in words of rows x lanes codes");
  if (u.requant_pairs > static_cast<std::size_t>(m.requant_depth))
    return need("requantization memory", u.requant_pairs, m.requant_depth, "pairs",
                "RequantDepth, one pair per output channel");
  if (u.table_words > static_cast<std::size_t>(m.table_depth))
    return need("table memory", u.table_words, m.table_depth, "integers",
                "TableDepth: every embedding's token and position tables");
  if (u.groups > static_cast<std::size_t>(m.max_groups))
    return need("absmax registers", u.groups, m.max_groups, "groups of one quantizer", "MaxGroups");
  namespace cp = target::config_port;
  if (u.factors > static_cast<std::size_t>(cp::kMaxFactors))
    return "a pair with " + std::to_string(u.factors) + " factors; the RTL takes at most " +
           std::to_string(cp::kMaxFactors);
  if (u.exp2_tables_differ) return std::string("softmax layers with different exp2 tables; the RTL holds one");
  if (u.tokens >= (std::size_t{1} << cp::kTokenCount.width))
    return std::to_string(u.tokens) + " tokens do not fit the RTL's token count (" +
           std::to_string(cp::kTokenCount.width) + " bits)";
  for (std::size_t l = 0; l < layout.descriptors.size(); ++l)
    for (const auto& [field, value] : layout.descriptors[l]) {
      const bool mantissa = std::string(field.name).find("Mantissa") != std::string::npos;
      const int width = mantissa ? mantissa_bits : field.width;
      if (width < 64 && value >= (std::uint64_t{1} << width))
        return "layer " + std::to_string(l) + ": " + std::to_string(value) + " does not fit the RTL descriptor's " +
               field.name + " (" + std::to_string(width) + " bits)";
    }
  return std::nullopt;
}

// The same for a bundle's target, and a sequence's KV caches against the target's region for
// them (memory.kv_cache_kib), as the SystemC model checks.
inline std::optional<std::string> rtl_memory_misfit(const std::vector<model::AcceleratorLayer>& layers,
                                                    const target::TargetSpec& t, const RtlSequence& sequence = {}) {
  if (sequence.graph && sequence.tokens > 0)
    if (std::optional<std::string> kv = model::kv_cache_misfit(layers, sequence.tokens, t)) return kv;
  return rtl_memory_misfit(layers, t.array.rows, t.array.lanes, t.format.scale_mantissa_bits, target::rtl_memories(t),
                           sequence);
}

}  // namespace qathw::rtl
