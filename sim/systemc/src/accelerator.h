// SystemC modules of the adder-only accelerator. Values are computed by the arith core's
// functions; SystemC provides the structure, the host interface (TLM-2.0, loosely timed) and time.
#pragma once

#define SC_INCLUDE_DYNAMIC_PROCESSES
#include <systemc>
#include <tlm>
#include <tlm_utils/simple_initiator_socket.h>
#include <tlm_utils/simple_target_socket.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "qathw/arith.h"
#include "qathw/sim/stats.h"
#include "qathw/target/target_spec.h"

namespace qathw::sim {

// The host-visible memory map.
namespace address {
inline constexpr std::uint64_t kControl = 0x0000'0000;      // write 1: run one inference
inline constexpr std::uint64_t kLayerCount = 0x0000'0008;   // number of layer descriptors
inline constexpr std::uint64_t kDescriptors = 0x0000'1000;  // LayerDescriptor[layer count]
inline constexpr std::uint64_t kWeights = 0x1000'0000;      // weight SRAM: packed codes, then requant pairs
inline constexpr std::uint64_t kActivations = 0x2000'0000;  // activation SRAM
inline constexpr std::uint64_t kRegionMask = 0xF000'0000;
}  // namespace address

// Bytes of one activation code in the activation SRAM's code scratch area.
inline std::size_t code_bytes(const arith::Format& f) { return f.act_bits <= 8 ? 1 : 2; }

// One layer as the controller executes it. Offsets are byte offsets into the SRAMs.
struct LayerDescriptor {
  std::uint32_t in = 0, out = 0, relu = 0;
  std::uint32_t weight_offset = 0;   // packed codes, row-major out x in
  std::uint32_t requant_offset = 0;  // out pairs of {int32 mantissa, int32 shift}
  std::uint32_t input_offset = 0;    // activation SRAM: the layer's input values
  std::uint32_t input_bits = 0;      // 8: uint8 pixels (first layer); 32: int32 outputs of the previous layer
  std::uint32_t output_offset = 0;   // activation SRAM: int32 outputs
  std::uint32_t code_offset = 0;     // activation SRAM: scratch for the input's activation codes
                                     // (int8 when the target's act_bits <= 8, else int16)
};

// Behavioural single-port SRAM.
class Sram {
 public:
  Sram(std::string name, std::size_t bytes) : name_(std::move(name)), data_(bytes, 0) {}
  std::size_t size() const { return data_.size(); }
  std::uint8_t* at(std::size_t offset, std::size_t bytes);
  const std::uint8_t* at(std::size_t offset, std::size_t bytes) const;

 private:
  std::string name_;
  std::vector<std::uint8_t> data_;
};

// The activation quantizer unit: absmax over a token, the reciprocal, codes. Returns cycles.
class ActivationQuantizer : public sc_core::sc_module {
 public:
  ActivationQuantizer(sc_core::sc_module_name name, const target::TargetSpec& t);
  template <typename Value, typename Code>
  std::uint64_t quantize(const Value* values, std::uint32_t count, Code* codes, LayerStats& s) const;

 private:
  const target::TargetSpec& target_;
};

// rows x lanes adder-only PEs: each row sums `lanes` sign-selected (ternary) or shift-and-added
// (INT4) products per cycle in its adder tree and adds the sum into its accumulator.
class PeArray : public sc_core::sc_module {
 public:
  PeArray(sc_core::sc_module_name name, const target::TargetSpec& t);
  // Accumulators of `out` output channels for one input, tile by tile. Returns cycles.
  template <typename Code>
  std::uint64_t run_layer(const Code* codes, const std::int8_t* weights, std::uint32_t in, std::uint32_t out,
                          std::int64_t* acc, LayerStats& s) const;

 private:
  const target::TargetSpec& target_;
};

// Requantization (and ReLU) of accumulators, `rows` per cycle. Returns cycles.
class RequantUnit : public sc_core::sc_module {
 public:
  RequantUnit(sc_core::sc_module_name name, const target::TargetSpec& t);
  std::uint64_t run(const std::int64_t* acc, const std::int32_t* pairs, std::uint32_t out, bool relu,
                    std::int32_t* z, LayerStats& s) const;

 private:
  const target::TargetSpec& target_;
};

// The accelerator: SRAMs, units, and the controller that executes the layer descriptors when the
// host writes the control register. Loosely timed: one wait per layer.
class Accelerator : public sc_core::sc_module {
 public:
  tlm_utils::simple_target_socket<Accelerator> socket;

  Accelerator(sc_core::sc_module_name name, const target::TargetSpec& t);
  const InferenceStats& last_stats() const { return stats_; }

 private:
  void b_transport(tlm::tlm_generic_payload& trans, sc_core::sc_time& delay);
  void run_inference(sc_core::sc_time& delay);
  void decode_weights();
  template <typename Code>
  void run_layer(const LayerDescriptor& d, const std::vector<std::int8_t>& weights, LayerStats& s);

  const target::TargetSpec& target_;
  sc_core::sc_time period_;
  Sram weights_, activations_;
  std::vector<LayerDescriptor> layers_;
  std::vector<std::vector<std::int8_t>> decoded_;  // weight codes as the PE rows see them
  std::vector<std::int64_t> acc_;                   // the array's accumulators of one layer
  bool decoded_valid_ = false;
  ActivationQuantizer quantizer_;
  PeArray array_;
  RequantUnit requant_;
  InferenceStats stats_;
};

}  // namespace qathw::sim
