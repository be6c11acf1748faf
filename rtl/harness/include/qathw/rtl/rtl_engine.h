// The RTL of the accelerator (Verilated) as an engine over deployed bundles: loads the bundle
// through the configuration port, streams each sample's pixels in and every layer's outputs out,
// and counts each layer's cycles. The RTL is built for each built-in target's parameters.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qathw/training/bundle.h"
#include "qathw/training/int_engine.h"

namespace qathw::rtl {

struct RtlRun {
  std::vector<training::LayerOutputs> outputs;  // per sample, every layer
  std::vector<std::uint64_t> layer_cycles;      // per layer, of the first sample (the same for all)
  std::vector<std::vector<std::uint64_t>> layer_end;  // per sample, per layer: the clock cycle (from the
                                                       // run's start) of the layer's last computing cycle
  std::uint64_t cycles = 0;                     // every simulated clock cycle, I/O included
  double wall_seconds = 0;
};

// The signature of every RTL build's entry point.
using RtlRunFunction = RtlRun(const training::Bundle&, const std::uint8_t* pixels, std::size_t count,
                              const std::string& fst_path);

// The RTL model built into this program for the bundle's target (matched by content hash), or null.
RtlRunFunction* builtin_rtl(const training::Bundle& bundle);

// Throws std::runtime_error when no RTL model was built for the bundle's target (matched by
// content hash) or the bundle exceeds the RTL's memories.
// With `fst_path`, the run's waveform (every signal, every cycle) is written there as FST: tracing
// is compiled in and costs nothing unless switched on here.
RtlRun run_rtl(const training::Bundle& bundle, const std::uint8_t* pixels, std::size_t count,
               const std::string& fst_path = "");

}  // namespace qathw::rtl
