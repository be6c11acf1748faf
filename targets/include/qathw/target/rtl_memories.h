// The memory sizes of a target's RTL (rtl/top/qathw_accel.sv parameters MaxLayers, ActWords,
// CodeDepth, WeightWords, RequantDepth): every RTL build of the target uses them (rtl/harness, rtl/flow),
// and qathw/rtl/rtl_fit.h checks a bundle against them before the RTL runs. Header-only: the
// Verilator harness is also built as a shared object that links nothing of qat-hw.
#pragma once

#include <cstdint>

#include "qathw/arith/pack.h"
#include "qathw/target/config_port.h"
#include "qathw/target/target_spec.h"

namespace qathw::target {

struct RtlMemories {
  int max_layers = 0;     // layer descriptors
  int act_words = 0;      // activation memory: the pixels and every layer's output values
  int code_depth = 0;     // code memory: the activation codes of one linear or conv2d layer's input
  int weight_words = 0;   // weight words of Rows x Lanes codes: one tile x chunk block of a layer each
  int requant_depth = 0;  // requantization pairs: one per output channel of every layer, then the RMSNorm gains
  int table_depth = 0;    // embedding table integers: every embed layer's token and position tables
  int max_groups = 0;     // absmax registers per layer: a dynamic quantizer's groups (heads)
};

// Fixed by the RTL, the same for every target (a transformer's layers: bitnet-tiny has 39).
inline constexpr int kRtlMaxLayers = 64;
inline constexpr int kRtlActWords = 1 << 18;
inline constexpr int kRtlCodeDepth = 1 << 16;
inline constexpr int kRtlRequantDepth = 4096;
inline constexpr int kRtlTableDepth = 1 << 16;
inline constexpr int kRtlMaxGroups = 16;

// Weight words of a target's RTL: its weight SRAM (memory.weight_sram_kib) divided into words of
// rows x lanes codes, floor(weight_sram_kib * 8192 / (rows * lanes * code bits)); at least 2 (one
// address bit) and at most 2^16 (the configuration port's address and the descriptor's weight base).
inline int rtl_weight_words(const TargetSpec& t) {
  const std::int64_t bits = static_cast<std::int64_t>(t.memory.weight_sram_kib) * 8192;
  const std::int64_t word = static_cast<std::int64_t>(t.array.rows) * t.array.lanes * arith::code_bits(t.format.weights);
  const std::int64_t words = bits / word;
  const std::int64_t most = std::int64_t{1} << config_port::kDescWeightBase.width;
  return static_cast<int>(words < 2 ? 2 : words > most ? most : words);
}

inline RtlMemories rtl_memories(const TargetSpec& t) {
  return {kRtlMaxLayers, kRtlActWords, kRtlCodeDepth, rtl_weight_words(t), kRtlRequantDepth, kRtlTableDepth,
          kRtlMaxGroups};
}

}  // namespace qathw::target
