// Whether a deployed model's fused layers fit the memories of the accelerator's RTL
// (qathw/target/rtl_memories.h), checked before the RTL runs. Header-only: the Verilator harness
// (also built as a shared object that links nothing of qat-hw) and the engine registry both call it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "qathw/model/accelerator_layers.h"
#include "qathw/target/rtl_memories.h"

namespace qathw::rtl {

// How much of each RTL memory a chain of fused layers takes on an array of `rows` x `lanes`.
struct RtlMemoryUse {
  std::size_t layers = 0;        // layer descriptors
  std::size_t widest = 0;        // the widest layer input or output
  std::size_t weight_words = 0;  // sum over layers of ceil(out / rows) * ceil(in / lanes)
  std::size_t requant_pairs = 0; // sum over layers of out
};

inline RtlMemoryUse rtl_memory_use(const std::vector<model::AcceleratorLayer>& layers, int rows, int lanes) {
  RtlMemoryUse u;
  u.layers = layers.size();
  for (const model::AcceleratorLayer& l : layers) {
    const std::size_t in = static_cast<std::size_t>(l.in), out = static_cast<std::size_t>(l.out);
    const std::size_t r = static_cast<std::size_t>(rows), c = static_cast<std::size_t>(lanes);
    u.widest = std::max(u.widest, std::max(in, out));
    u.weight_words += ((out + r - 1) / r) * ((in + c - 1) / c);
    u.requant_pairs += out;
  }
  return u;
}

// The reason the layers do not fit the RTL's memories `m` (which memory, how much the model needs,
// how much there is), or nothing when they fit.
inline std::optional<std::string> rtl_memory_misfit(const std::vector<model::AcceleratorLayer>& layers, int rows,
                                                    int lanes, const target::RtlMemories& m) {
  const RtlMemoryUse u = rtl_memory_use(layers, rows, lanes);
  const auto need = [](const char* memory, std::size_t needed, int has, const char* unit, const char* rule) {
    return std::string("the model needs ") + std::to_string(needed) + " " + unit + " of the RTL's " + memory +
           ", which holds " + std::to_string(has) + " (" + rule + ")";
  };
  if (u.layers > static_cast<std::size_t>(m.max_layers))
    return need("layer descriptor memory", u.layers, m.max_layers, "layers", "MaxLayers");
  if (u.widest > static_cast<std::size_t>(m.max_width))
    return need("activation memory", u.widest, m.max_width, "values per layer", "MaxWidth, the widest layer");
  if (u.weight_words > static_cast<std::size_t>(m.weight_words))
    return need("weight memory", u.weight_words, m.weight_words, "words",
                "WeightWords: memory.weight_sram_kib in words of rows x lanes codes");
  if (u.requant_pairs > static_cast<std::size_t>(m.requant_depth))
    return need("requantization memory", u.requant_pairs, m.requant_depth, "pairs",
                "RequantDepth, one pair per output channel");
  return std::nullopt;
}

// The same for a bundle's target.
inline std::optional<std::string> rtl_memory_misfit(const std::vector<model::AcceleratorLayer>& layers,
                                                    const target::TargetSpec& t) {
  return rtl_memory_misfit(layers, t.array.rows, t.array.lanes, target::rtl_memories(t));
}

}  // namespace qathw::rtl
