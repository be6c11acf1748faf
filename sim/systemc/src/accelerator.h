// SystemC modules of the adder-only accelerator. Values are computed by the arith core's
// functions; SystemC provides the structure, the host interface (TLM-2.0, loosely timed) and time.
#pragma once

#define SC_INCLUDE_DYNAMIC_PROCESSES
#include <systemc>
#include <tlm>
#include <tlm_utils/simple_initiator_socket.h>
#include <tlm_utils/simple_target_socket.h>

#include <cstdint>
#include <functional>
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
inline constexpr std::uint64_t kTokens = 0x0000'0010;       // tokens of a sequence (1: an image)
inline constexpr std::uint64_t kDescriptors = 0x0000'1000;  // LayerDescriptor[layer count]
inline constexpr std::uint64_t kWeights = 0x1000'0000;      // weight SRAM: packed codes, then requant pairs
inline constexpr std::uint64_t kActivations = 0x2000'0000;  // activation SRAM
inline constexpr std::uint64_t kRegionMask = 0xF000'0000;
}  // namespace address

// Bytes of one embedding table integer in the weight SRAM: acc_bits rounded up to bytes, little-endian,
// two's complement (sign-extended when read).
inline std::size_t table_bytes(const arith::Format& f) { return (static_cast<std::size_t>(f.acc_bits) + 7) / 8; }

// What a layer descriptor asks of the controller: the unit that runs it.
enum class Opcode : std::uint32_t {
  Linear = 0, Conv2d = 1, MaxPool = 2, AvgPool = 3, Add = 4,
  // The transformer's layers (docs/sim.md, "Transformer layers").
  Embed = 5, RmsNorm = 6, Quantize = 7, SquaredRelu = 8, Scores = 9, Softmax = 10, Attend = 11,
};

// Most factors a pair that follows the token may name (docs/bundle.md, `ops[i].factors`).
inline constexpr std::size_t kMaxFactors = 8;

// One layer as the controller executes it: 32-bit words, byte offsets into the SRAMs
// (docs/sim.md, "Layer descriptors").
struct LayerDescriptor {
  std::uint32_t opcode = 0;          // Opcode
  std::uint32_t in = 0, out = 0;     // integers per sample read (the input) and written
  std::uint32_t relu = 0;            // 1: ReLU fused after the layer's unit
  std::uint32_t weight_offset = 0;   // linear, conv2d: packed codes, row-major out x patch; embed: the token table
  std::uint32_t requant_offset = 0;  // linear, conv2d: out channels' pairs of {int32 mantissa, int32 shift};
                                     // rms_norm: the gain pairs; embed: the position table
  std::uint32_t input_offset = 0;    // activation SRAM: the layer's input values
  std::uint32_t input_bits = 0;      // 8: uint8 pixels; 32: int32 outputs of an earlier layer
  std::uint32_t output_offset = 0;   // activation SRAM: int32 outputs
  std::uint32_t code_offset = 0;     // linear, conv2d: scratch for the input's activation codes
                                     // (int8 when the target's act_bits <= 8, else int16)
  std::uint32_t residual_offset = 0; // add: the second operand's int32 values
  // conv2d: its shape; pools: the input map (in_c = out_c) and the window.
  std::uint32_t in_h = 0, in_w = 0, in_c = 0, out_c = 0;
  std::uint32_t kernel_h = 0, kernel_w = 0, stride_h = 0, stride_w = 0, pad_h = 0, pad_w = 0;
  std::uint32_t groups = 0;            // conv2d; quantize: scales per token; scores, softmax, attend: heads
  std::uint32_t static_quantizer = 0;  // linear, conv2d, quantize: 1: codes by the quant pair; 0: dynamic absmax
  std::int32_t quant_mantissa = 0, quant_shift = 0;
  // avg_pool: pair 0 is 1 / area; add, embed: pair 0 the input's, pair 1 the residual's; scores:
  // pair 0 the rows' static pair.
  std::int32_t pair_mantissa[2] = {0, 0}, pair_shift[2] = {0, 0};
  // The transformer's layers.
  std::uint32_t cache = 0;        // quantize: 1: the output is a KV cache of `tokens` rows, token t's at row t
  std::uint32_t codes_input = 0;  // linear: 1: the input is a quantize layer's codes (no quantizer of its own)
  std::uint32_t eps_low = 0, eps_high = 0;  // rms_norm: eps, 64 bits
  std::uint32_t shift = 0;                  // squared_relu
  std::uint32_t index_bits = 0, value_bits = 0, prob_bits = 0;  // softmax: the exp2 table, the codes
  std::uint32_t factor_count = 0;           // quantize (static), add, scores: factors of the last pair
  std::uint32_t factor_layer[kMaxFactors] = {};  // the layers whose absmax registers they are

  arith::Conv2dShape map() const;
};
static_assert(sizeof(LayerDescriptor) == 46 * 4, "docs/sim.md, \"Layer descriptors\": 46 words");

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

// The activation quantizer unit: dynamic (absmax over the sample's token, the reciprocal, codes)
// or static (codes by the layer's calibrated pair). Returns cycles.
class ActivationQuantizer : public sc_core::sc_module {
 public:
  ActivationQuantizer(sc_core::sc_module_name name, const target::TargetSpec& t);
  template <typename Value, typename Code>
  std::uint64_t quantize(const Value* values, std::uint32_t count, Code* codes, LayerStats& s,
                         std::int64_t* amax = nullptr) const;
  template <typename Value, typename Code>
  std::uint64_t quantize_static(const Value* values, std::uint32_t count, arith::FixedPoint pair, Code* codes,
                                LayerStats& s) const;

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
  // A convolution, weight-stationary: per group and tile of up to `rows` of its output channels,
  // the kernels stay in the rows while the window walks the output pixels; `map` is the input's
  // codes (in_h x in_w x in_c), `acc` out_h x out_w x out_c. Returns cycles.
  template <typename Code>
  std::uint64_t run_conv(const Code* map, const std::int8_t* weights, const arith::Conv2dShape& c, std::int64_t* acc,
                         LayerStats& s) const;

 private:
  // One row's accumulator over k codes: chunks of `lanes` through the adder tree, then the
  // accumulator's overflow rule.
  template <typename Code>
  std::int64_t row_dot(const Code* codes, const std::int8_t* w, std::uint32_t k) const;

  const target::TargetSpec& target_;
};

// Requantization (and ReLU) of accumulators, `rows` per cycle. Channel n % channels's pair
// requantizes accumulator n (a feature map's pixels hold `channels` channels each). Returns cycles.
class RequantUnit : public sc_core::sc_module {
 public:
  RequantUnit(sc_core::sc_module_name name, const target::TargetSpec& t);
  std::uint64_t run(const std::int64_t* acc, const std::int32_t* pairs, std::uint32_t out, std::uint32_t channels,
                    bool relu, std::int32_t* z, LayerStats& s) const;

 private:
  const target::TargetSpec& target_;
};

// Max and average pooling on requantized values: one output value at a time, its window's
// in-map values `lanes` per cycle. Returns cycles.
class PoolUnit : public sc_core::sc_module {
 public:
  PoolUnit(sc_core::sc_module_name name, const target::TargetSpec& t);
  std::uint64_t run(const std::int32_t* map, const LayerDescriptor& d, std::int32_t* z, LayerStats& s) const;

 private:
  const target::TargetSpec& target_;
};

// The residual adder: two tensors aligned to the output's scale and added, `lanes` per cycle.
// Returns cycles.
class AddUnit : public sc_core::sc_module {
 public:
  AddUnit(sc_core::sc_module_name name, const target::TargetSpec& t);
  // residual_pair: the residual's pair of this token (a pair that follows the token), in place of
  // the descriptor's.
  std::uint64_t run(const std::int32_t* a, const std::int32_t* b, const LayerDescriptor& d, std::int32_t* z,
                    LayerStats& s, const arith::FixedPoint* residual_pair = nullptr) const;

 private:
  const target::TargetSpec& target_;
};

// The transformer's units beside the array (docs/sim.md, "Transformer layers"): the vector unit
// (the target's arith::VectorUnit: Q K^T and P V, `lanes` products per cycle), the softmax unit, the RMSNorm
// unit, the squared ReLU, and the per-token pairs (arith::token_pair). Each runs one token of its
// layer; values come from the arith core. Return cycles.
class TransformerUnits : public sc_core::sc_module {
 public:
  TransformerUnits(sc_core::sc_module_name name, const target::TargetSpec& t);
  // The pair of a layer's token: `base` times the factors' absmax, one multiply per factor.
  std::uint64_t token_pair(arith::FixedPoint base, const std::int64_t* factors, std::uint32_t count,
                           arith::FixedPoint& pair, LayerStats& s) const;
  // The token's and the position's table rows (table_bytes per integer) added.
  std::uint64_t embed(const std::uint8_t* token_row, const std::uint8_t* position_row, const LayerDescriptor& d,
                      std::int32_t* z, LayerStats& s) const;
  std::uint64_t rms_norm(const std::int32_t* x, const std::int32_t* gains, const LayerDescriptor& d, std::int32_t* z,
                         LayerStats& s) const;
  std::uint64_t squared_relu(const std::int32_t* x, const LayerDescriptor& d, std::int32_t* z, LayerStats& s) const;
  // Row t of the scores: query codes q (one token) against keys [0, t] of the cache.
  std::uint64_t scores(const std::int8_t* q, const std::int8_t* keys, std::uint32_t t, std::uint32_t tokens,
                       const arith::FixedPoint* pairs, const LayerDescriptor& d, std::int32_t* z, LayerStats& s) const;
  std::uint64_t softmax(const std::int32_t* x, std::uint32_t t, std::uint32_t tokens, const LayerDescriptor& d,
                        std::uint8_t* p, LayerStats& s) const;
  std::uint64_t attend(const std::uint8_t* p, const std::int8_t* values, std::uint32_t t, std::uint32_t tokens,
                       const LayerDescriptor& d, std::int32_t* z, LayerStats& s) const;

  const arith::VectorUnit unit;  // the target's

 private:
  const target::TargetSpec& target_;
};

// The accelerator: SRAMs, units, and the controller that executes the layer descriptors when the
// host writes the control register: every layer for token 0, then every layer for token 1, ...
// (an image is one token). Loosely timed: one wait per layer and token.
class Accelerator : public sc_core::sc_module {
 public:
  tlm_utils::simple_target_socket<Accelerator> socket;
  // An observation port, not SRAM traffic: each finished layer's outputs, handed over before a
  // later layer may reuse their buffer.
  // A sequence's layers hand over one token's output at a time, in token order.
  using LayerObserver = std::function<void(std::size_t layer, const std::int32_t* z, std::uint32_t count)>;

  Accelerator(sc_core::sc_module_name name, const target::TargetSpec& t);
  const InferenceStats& last_stats() const { return stats_; }
  void observe_layers(LayerObserver observer) { observer_ = std::move(observer); }

 private:
  void b_transport(tlm::tlm_generic_payload& trans, sc_core::sc_time& delay);
  void run_inference(sc_core::sc_time& delay);
  void decode_weights();
  template <typename Code>
  void run_kernel_layer(const LayerDescriptor& d, std::size_t layer, LayerStats& s);
  template <typename Code>
  std::uint64_t quantize_input(const LayerDescriptor& d, Code* codes, LayerStats& s, std::int64_t* amax);
  template <typename Code>
  void run_quantize_layer(const LayerDescriptor& d, std::size_t layer, LayerStats& s);
  void run_transformer_layer(const LayerDescriptor& d, std::size_t layer, std::vector<std::int32_t>& seen,
                             LayerStats& s);
  // The factors' absmax registers of the current token (a head's where the factor has one per head).
  const std::int64_t* factors(const LayerDescriptor& d, std::uint32_t head);
  const std::int32_t* values(std::uint32_t offset, std::uint32_t count);

  const target::TargetSpec& target_;
  sc_core::sc_time period_;
  Sram weights_, activations_;
  std::vector<LayerDescriptor> layers_;
  std::vector<std::vector<std::int8_t>> decoded_;  // weight codes as the PE rows see them
  std::vector<std::int64_t> acc_;                   // the array's accumulators of one layer
  std::uint32_t tokens_ = 1;                        // the sequence's tokens (the kTokens register)
  std::uint32_t token_ = 0;                         // the token the controller is running
  // Per layer with a dynamic quantizer: the current token's absmax, per group (registers).
  std::vector<std::vector<std::int64_t>> amax_;
  std::vector<std::int64_t> factor_values_;
  bool decoded_valid_ = false;
  ActivationQuantizer quantizer_;
  PeArray array_;
  RequantUnit requant_;
  PoolUnit pool_;
  AddUnit adder_;
  TransformerUnits transformer_;
  LayerObserver observer_;
  InferenceStats stats_;
};

}  // namespace qathw::sim
