// The SystemC model of the accelerator as an engine: loads a deployed bundle through the
// accelerator's TLM-2.0 host interface, runs samples, returns every layer's output integers and
// the timing and traffic counts. SystemC cannot restart its kernel, so a process holds at most
// one SystemCEngine, and each engine runs once.
#pragma once

#include <cstdint>
#include <vector>

#include <optional>
#include <string>

#include "qathw/model/accelerator_layers.h"
#include "qathw/model/bundle.h"
#include "qathw/sim/stats.h"

namespace qathw::sim {

struct SimRun {
  std::vector<model::LayerOutputs> outputs;  // per sample, per layer of model::accelerator_layers with the
                                             // transformer units (only the last unless keep_layers); a
                                             // sequence's layers hold every token's row, in order
  std::vector<InferenceStats> stats;            // per sample
  double wall_seconds = 0;
  double simulated_seconds = 0;
};

// Why the model cannot run the bundle: a graph that is not the accelerator's layers
// (model::accelerator_layers), or a model larger than the target's SRAMs (naming the field);
// nothing when it can.
std::optional<std::string> systemc_unsupported(const model::Bundle& bundle);

// Runs `count` samples (row-major uint8 pixels, or a sequence bundle's `context` byte tokens each)
// through the model; a sequence runs token by token (docs/sim.md, "Transformer layers"). Throws std::runtime_error when
// the model cannot run it (systemc_unsupported), or if called twice in one process.
SimRun run_systemc(const model::Bundle& bundle, const std::uint8_t* pixels, std::size_t count, bool keep_layers);

}  // namespace qathw::sim
