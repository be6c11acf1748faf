// Event counts of the accelerator model and the energy they cost. docs/sim.md states the cycle
// model these counts follow.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "qathw/target/target_spec.h"

namespace qathw::sim {

struct LayerStats {
  std::uint64_t cycles = 0;           // all units of the layer, end to end
  std::uint64_t quantizer_cycles = 0; // absmax pass, reciprocal, code pass
  std::uint64_t array_cycles = 0;     // PE array: tiles x chunks, plus the pipeline fill
  std::uint64_t requant_cycles = 0;   // the last tile's requantization; an average pool's
  std::uint64_t unit_cycles = 0;      // the pooling unit, the residual adder or a transformer unit
  std::uint64_t macs = 0;             // products of the array (in x out; conv2d: out x patch)
  std::uint64_t mac_slots = 0;        // rows x lanes x tile chunk cycles: what the array offered
  std::uint64_t adds = 0;             // adder-tree and accumulator adds; the pools' compares and adds; the adder's
  std::uint64_t weight_read_bits = 0;
  std::uint64_t act_read_bits = 0;
  std::uint64_t act_write_bits = 0;
  std::uint64_t register_write_bits = 0;  // accumulator register updates
  // The transformer units' multiplies (vector unit products, squares, pairs, norm), and their cost
  // as adds: an a x b multiply (b <= a) counts b (a + b) bit-adds. Image layers have none.
  std::uint64_t multiplies = 0;
  std::uint64_t multiplier_bits = 0;

  LayerStats& operator+=(const LayerStats& o);
};

// Per inference: one LayerStats per layer and their sum; a sequence's summed over its tokens, with
// the last token's step alone (what one generated token costs with the KV cache) and each token's
// cycles. An image is one token.
struct InferenceStats {
  std::vector<LayerStats> layers;
  LayerStats total;
  std::vector<LayerStats> last_token_layers;
  LayerStats last_token;
  std::vector<std::uint64_t> token_cycles;
};

// Energy in picojoules of a set of events, from the target's energy table.
double energy_pj(const LayerStats& s, const target::TargetSpec& t);

nlohmann::json to_json(const LayerStats& s);

}  // namespace qathw::sim
