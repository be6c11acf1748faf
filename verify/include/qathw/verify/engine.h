// One engine interface and the registry of engines: the integer engine, the SystemC model, the
// RTL (Verilated), the HLS C simulation and the CUDA engine. Each says whether it can run a
// bundle (and why not) and returns every op's output integers it observes, per sample.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qathw/model/accelerator_layers.h"
#include "qathw/model/bundle.h"

namespace qathw::verify {

struct EngineRun {
  std::vector<model::OpOutputs> outputs;  // per sample
  double seconds = 0;                     // wall time of the run
  nlohmann::json stats = nlohmann::json::object();  // engine-specific figures (cycles)
  std::vector<std::vector<std::uint64_t>> layer_end;  // rtl: per sample, per fused layer, the clock cycle
};

struct Engine {
  std::string name;
  std::string description;
  // Why the engine cannot run the bundle, or nothing when it can.
  std::function<std::optional<std::string>(const model::Bundle&)> unsupported;
  // Runs `count` samples of the bundle's input size. The SystemC engine runs once per process.
  std::function<EngineRun(const model::Bundle&, const std::uint8_t* inputs, std::size_t count)> run;
  // Whether `run` may be called again and again in one process (generation's token after token);
  // the others run each call in a child process.
  bool runs_repeatedly = false;
};

const std::vector<Engine>& engines();
const Engine* find_engine(const std::string& name);  // null when there is none of that name

// A fused engine's per-sample, per-layer outputs placed at their ops.
std::vector<model::OpOutputs> fused_to_ops(const model::Bundle& b, std::vector<model::LayerOutputs>&& per_sample);

// The fused layer (model::accelerator_layers) whose output op is `op`, if any: where an RTL
// divergence is located in the waveform.
std::optional<std::size_t> fused_layer_of(const model::Graph& g, std::size_t op);

}  // namespace qathw::verify
