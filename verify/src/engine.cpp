#include "qathw/verify/engine.h"

#include <chrono>

#include "qathw/hls/hls_engine.h"
#include "qathw/hls/sequence_engine.h"
#include "qathw/kernels/cuda_engine.h"
#include "qathw/kernels/device.h"
#include "qathw/model/accelerator_layers.h"
#include "qathw/model/int_engine.h"
#include "qathw/rtl/point_rtl.h"
#include "qathw/rtl/rtl_engine.h"
#include "qathw/sim/systemc_engine.h"
#include "qathw/util/timing.h"

namespace qathw::verify {
namespace {

std::optional<std::string> lowering_unsupported(const model::Bundle& b) {
  return model::accelerator_layers(b.graph).unsupported;
}

EngineRun run_int(const model::Bundle& b, const std::uint8_t* inputs, std::size_t count) {
  EngineRun r;
  const auto t0 = std::chrono::steady_clock::now();
  r.outputs = model::IntEngine(b).run_all(inputs, count);
  r.seconds = util::seconds_since(t0);
  return r;
}

EngineRun run_systemc(const model::Bundle& b, const std::uint8_t* inputs, std::size_t count) {
  sim::SimRun s = sim::run_systemc(b, inputs, count, true);
  EngineRun r;
  // The model's own lowering (with the transformer's units; an image graph lowers as for the
  // other fused engines): a sequence's layers hold every token's row, as the ops' tensors do.
  const model::AcceleratorLowering lowering = model::accelerator_layers(b.graph, true);
  for (auto& sample : s.outputs) r.outputs.push_back(model::op_outputs(b.graph, lowering.layers, std::move(sample)));
  r.seconds = s.wall_seconds;
  nlohmann::json layers = nlohmann::json::array();
  if (!s.stats.empty()) {
    const sim::InferenceStats& st = s.stats.front();  // the counts depend on the shapes only
    for (const auto& l : st.layers) layers.push_back(l.cycles);
    r.stats = {{"cycles_per_inference", st.total.cycles}, {"cycles_per_layer", layers}};
    if (b.sequence()) {
      // Per op (layer): the whole sequence, token by token, and the last position's step alone:
      // what one generated token costs with the KV cache.
      const auto per_layer = [&](const std::vector<sim::LayerStats>& ls) {
        nlohmann::json j = nlohmann::json::array();
        for (std::size_t l = 0; l < ls.size() && l < lowering.layers.size(); ++l)
          j.push_back({{"op", b.graph.ops[lowering.layers[l].output_op].name},
                       {"kind", model::kind_name(lowering.layers[l])},
                       {"cycles", ls[l].cycles},
                       {"energy_pj", sim::energy_pj(ls[l], b.target)}});
        return j;
      };
      r.stats["tokens"] = b.context;
      r.stats["energy_pj_per_inference"] = sim::energy_pj(st.total, b.target);
      r.stats["layers"] = per_layer(st.layers);
      r.stats["per_token"] = {{"cycles", st.last_token.cycles},
                              {"energy_pj", sim::energy_pj(st.last_token, b.target)},
                              {"layers", per_layer(st.last_token_layers)}};
    }
  }
  return r;
}

EngineRun run_rtl(const model::Bundle& b, const std::uint8_t* inputs, std::size_t count) {
  rtl::RtlRun s = rtl::run_rtl_any(b, inputs, count);
  EngineRun r;
  // The lowering with the transformer's units, as the SystemC model's: a sequence's layers hold
  // every token's row.
  const model::AcceleratorLowering lowering = model::accelerator_layers(b.graph, true);
  for (auto& sample : s.outputs) r.outputs.push_back(model::op_outputs(b.graph, lowering.layers, std::move(sample)));
  r.layer_end = std::move(s.layer_end);
  r.seconds = s.wall_seconds;
  std::uint64_t total = 0;
  for (auto c : s.layer_cycles) total += c;
  r.stats = {{"cycles_per_inference", total},
             {"cycles_per_layer", s.layer_cycles},
             {"simulated_cycles", s.cycles},
             {"cycles_per_s", s.wall_seconds > 0 ? static_cast<double>(s.cycles) / s.wall_seconds : 0.0}};
  return r;
}

EngineRun run_hls(const model::Bundle& b, const std::uint8_t* inputs, std::size_t count) {
  EngineRun r;
  const auto t0 = std::chrono::steady_clock::now();
  if (b.sequence()) {  // the transformer's tops return every op's outputs
    r.outputs = hls::run_hls_sequences(b, inputs, count);
    r.seconds = util::seconds_since(t0);
    return r;
  }
  std::vector<model::LayerOutputs> per_sample = hls::run_hls(b, inputs, count);
  r.seconds = util::seconds_since(t0);
  r.outputs = fused_to_ops(b, std::move(per_sample));
  return r;
}

EngineRun run_cuda(const model::Bundle& b, const std::uint8_t* inputs, std::size_t count) {
  const kernels::CudaEngine engine(b);  // weights uploaded before the clock starts
  EngineRun r;
  const auto t0 = std::chrono::steady_clock::now();
  r.outputs = fused_to_ops(b, engine.run_all(inputs, count));
  r.seconds = util::seconds_since(t0);
  return r;
}

}  // namespace

const std::vector<Engine>& engines() {
  static const std::vector<Engine> all = {
      {"int", "integer reference engine (model/)", [](const model::Bundle&) { return std::optional<std::string>(); },
       run_int, true},
      {"systemc", "SystemC model of the accelerator", sim::systemc_unsupported, run_systemc},
      {"rtl", "the accelerator's RTL, Verilated (built at run time for targets without a built-in model)",
       rtl::rtl_unsupported, run_rtl},
      {"hls", "HLS C++ of the datapath, C-simulated", hls::hls_unsupported, run_hls},
      {"cuda", "CUDA engine on the packed weights",
       [](const model::Bundle& b) -> std::optional<std::string> {
         const kernels::CudaProbe probe = kernels::probe_cuda();
         if (!probe.available) return "no CUDA device: " + probe.reason;
         return lowering_unsupported(b);
       },
       run_cuda},
  };
  return all;
}

std::vector<model::OpOutputs> fused_to_ops(const model::Bundle& b, std::vector<model::LayerOutputs>&& per_sample) {
  const model::AcceleratorLowering lowering = model::accelerator_layers(b.graph);
  std::vector<model::OpOutputs> out;
  out.reserve(per_sample.size());
  for (auto& s : per_sample) out.push_back(model::op_outputs(b.graph, lowering.layers, std::move(s)));
  return out;
}

const Engine* find_engine(const std::string& name) {
  for (const Engine& e : engines())
    if (e.name == name) return &e;
  return nullptr;
}

std::optional<std::size_t> fused_layer_of(const model::Graph& g, std::size_t op) {
  const model::AcceleratorLowering lowering = model::accelerator_layers(g, true);
  for (std::size_t l = 0; l < lowering.layers.size(); ++l)
    if (lowering.layers[l].output_op == op) return l;
  return std::nullopt;
}

}  // namespace qathw::verify
