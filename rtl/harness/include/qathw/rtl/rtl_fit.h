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
  std::size_t requant_pairs = 0;  // per kernel layer: one per output channel
};

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
inline RtlLayout rtl_layout(const std::vector<model::AcceleratorLayer>& layers, int rows, int lanes) {
  namespace cp = target::config_port;
  RtlLayout out;
  RtlMemoryUse& u = out.use;
  u.layers = layers.size();
  u.act_words = layers.empty() ? 0 : static_cast<std::size_t>(layers.front().in);
  std::vector<std::size_t> output_base;
  const auto base_of = [&](std::size_t layer) {
    return layer == model::AcceleratorLayer::kPixels ? std::size_t{0} : output_base.at(layer);
  };
  for (const model::AcceleratorLayer& l : layers) {
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
    output_base.push_back(out_base);
    u.act_words += static_cast<std::size_t>(l.out);
    if (kernel) {
      const std::size_t tiles = rtl_chunks(static_cast<std::size_t>(s.group_out()), rows);
      u.weight_words += static_cast<std::size_t>(s.groups) * tiles * rtl_chunks(static_cast<std::size_t>(s.patch()), lanes);
      u.requant_pairs += static_cast<std::size_t>(s.out_c);
      u.codes = std::max(u.codes, static_cast<std::size_t>(l.in));
    }
  }
  return out;
}

inline RtlMemoryUse rtl_memory_use(const std::vector<model::AcceleratorLayer>& layers, int rows, int lanes) {
  return rtl_layout(layers, rows, lanes).use;
}

// The reason the layers do not fit the RTL's memories `m` (which memory, how much the model needs,
// how much there is) or a descriptor field, or nothing when they fit.
inline std::optional<std::string> rtl_memory_misfit(const std::vector<model::AcceleratorLayer>& layers, int rows,
                                                    int lanes, int mantissa_bits, const target::RtlMemories& m) {
  const RtlLayout layout = rtl_layout(layers, rows, lanes);
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
  namespace cp = target::config_port;
  for (std::size_t l = 0; l < layout.descriptors.size(); ++l)
    for (const auto& [field, value] : layout.descriptors[l]) {
      const bool mantissa = std::string(field.name).find("Mantissa") != std::string::npos;
      const int width = mantissa ? mantissa_bits : field.width;
      if (value >= (std::uint64_t{1} << width))
        return "layer " + std::to_string(l) + ": " + std::to_string(value) + " does not fit the RTL descriptor's " +
               field.name + " (" + std::to_string(width) + " bits)";
    }
  return std::nullopt;
}

// The same for a bundle's target.
inline std::optional<std::string> rtl_memory_misfit(const std::vector<model::AcceleratorLayer>& layers,
                                                    const target::TargetSpec& t) {
  return rtl_memory_misfit(layers, t.array.rows, t.array.lanes, t.format.scale_mantissa_bits, target::rtl_memories(t));
}

}  // namespace qathw::rtl
