// The RTL of the accelerator (Verilated) as an engine over deployed bundles: loads the bundle
// through the configuration port, streams each sample's pixels in and every layer's outputs out,
// and counts each layer's cycles. The RTL is built for each built-in target's parameters.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "qathw/model/accelerator_layers.h"
#include "qathw/model/bundle.h"

namespace qathw::rtl {

struct RtlRun {
  std::vector<model::LayerOutputs> outputs;  // per sample, every fused layer (model::accelerator_layers)
  std::vector<std::uint64_t> layer_cycles;      // per layer, of the first sample (the same for all)
  std::vector<std::vector<std::uint64_t>> layer_end;  // per sample, per layer: the clock cycle (from the
                                                       // run's start) of the layer's last computing cycle
  std::uint64_t cycles = 0;                     // every simulated clock cycle, I/O included
  double wall_seconds = 0;
};

// The signature of every RTL build's entry point: the bundle and its graph's fused layers. The
// entry uses nothing of qat-hw's libraries but headers (it is also built as a shared object).
using RtlRunFunction = RtlRun(const model::Bundle&, const std::vector<model::AcceleratorLayer>& layers,
                              const std::uint8_t* pixels, std::size_t count, const std::string& fst_path);

// Why the RTL cannot run the bundle, or nothing: the graph does not map onto the accelerator's
// layer chain (model::accelerator_layers), or its fused layers do not fit the RTL's memories
// (qathw/rtl/rtl_fit.h; the sizes of qathw/target/rtl_memories.h, docs/rtl.md). Says nothing
// about whether a model of the target is compiled in or can be built.
std::optional<std::string> rtl_unsupported(const model::Bundle& bundle);

// The RTL model built into this program for the bundle's target (matched by content hash), or null:
// for a sequence bundle the model with the transformer's units, for an image the image-only one.
RtlRunFunction* builtin_rtl(const model::Bundle& bundle);

// Throws std::runtime_error when no RTL model was built for the bundle's target (matched by
// content hash) or the bundle exceeds the RTL's memories.
// With `fst_path`, the run's waveform (every signal, every cycle) is written there as FST: tracing
// is compiled in and costs nothing unless switched on here.
// Runs `entry` on the bundle's fused layers; throws when rtl_unsupported gives a reason.
RtlRun run_rtl_entry(RtlRunFunction* entry, const model::Bundle& bundle, const std::uint8_t* pixels, std::size_t count,
                     const std::string& fst_path);

RtlRun run_rtl(const model::Bundle& bundle, const std::uint8_t* pixels, std::size_t count,
               const std::string& fst_path = "");

}  // namespace qathw::rtl
