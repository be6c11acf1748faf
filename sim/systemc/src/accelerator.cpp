#include "accelerator.h"

#include <algorithm>
#include <cstring>

namespace qathw::sim {
namespace {

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; }

}  // namespace

LayerStats& LayerStats::operator+=(const LayerStats& o) {
  cycles += o.cycles;
  quantizer_cycles += o.quantizer_cycles;
  array_cycles += o.array_cycles;
  requant_cycles += o.requant_cycles;
  macs += o.macs;
  mac_slots += o.mac_slots;
  adds += o.adds;
  weight_read_bits += o.weight_read_bits;
  act_read_bits += o.act_read_bits;
  act_write_bits += o.act_write_bits;
  register_write_bits += o.register_write_bits;
  return *this;
}

std::uint8_t* Sram::at(std::size_t offset, std::size_t bytes) {
  if (offset > data_.size() || bytes > data_.size() - offset)
    throw std::runtime_error(name_ + ": access [" + std::to_string(offset) + ", +" + std::to_string(bytes) +
                             ") outside its " + std::to_string(data_.size()) + " bytes");
  return data_.data() + offset;
}

const std::uint8_t* Sram::at(std::size_t offset, std::size_t bytes) const {
  return const_cast<Sram*>(this)->at(offset, bytes);
}

ActivationQuantizer::ActivationQuantizer(sc_core::sc_module_name name, const target::TargetSpec& t)
    : sc_module(name), target_(t) {}

template <typename Value, typename Code>
std::uint64_t ActivationQuantizer::quantize(const Value* values, std::uint32_t count, Code* codes,
                                            LayerStats& s) const {
  const arith::Format& f = target_.format;
  // Pass 1: absmax, `lanes` comparisons per cycle; the reciprocal, one mantissa bit per cycle;
  // pass 2: the codes.
  arith::quantize_token(values, static_cast<int>(count), codes, f);
  const std::uint64_t passes = ceil_div(count, static_cast<std::uint64_t>(target_.array.lanes));
  const std::uint64_t in_bits = sizeof(Value) == 1 ? 8 : static_cast<std::uint64_t>(f.acc_bits);
  s.act_read_bits += 2 * count * in_bits;
  s.act_write_bits += static_cast<std::uint64_t>(count) * f.act_bits;
  return 2 * passes + static_cast<std::uint64_t>(f.scale_mantissa_bits);
}


PeArray::PeArray(sc_core::sc_module_name name, const target::TargetSpec& t) : sc_module(name), target_(t) {}

template <typename Code>
std::uint64_t PeArray::run_layer(const Code* codes, const std::int8_t* weights, std::uint32_t in,
                                 std::uint32_t out, std::int64_t* acc, LayerStats& s) const {
  const arith::Format& f = target_.format;
  const std::uint32_t rows = static_cast<std::uint32_t>(target_.array.rows);
  const std::uint32_t lanes = static_cast<std::uint32_t>(target_.array.lanes);
  const std::uint64_t chunks = ceil_div(in, lanes);
  std::uint64_t cycles = 0;
  for (std::uint32_t n0 = 0; n0 < out; n0 += rows) {  // one tile: up to `rows` output channels
    const std::uint32_t active = std::min(rows, out - n0);
    for (std::uint32_t r = 0; r < active; ++r) {
      const std::int8_t* w = weights + static_cast<std::size_t>(n0 + r) * in;
      std::int64_t a = 0;
      for (std::uint32_t base = 0; base < in; base += lanes) {  // one cycle
        const std::uint32_t end = std::min(in, base + lanes);
        std::int64_t partial = 0;  // adder tree
        for (std::uint32_t k = base; k < end; ++k) partial += arith::pe_product(codes[k], w[k], f.weights);
        a = arith::accumulate(a, partial, f);
      }
      acc[n0 + r] = a;
    }
    cycles += chunks;
    s.mac_slots += chunks * rows * lanes;
    s.weight_read_bits += static_cast<std::uint64_t>(active) * in * arith::code_bits(f.weights);
    s.act_read_bits += static_cast<std::uint64_t>(in) * f.act_bits;  // codes broadcast to the rows
    s.register_write_bits += static_cast<std::uint64_t>(active) * chunks * f.acc_bits;
  }
  s.macs += static_cast<std::uint64_t>(in) * out;
  s.adds += static_cast<std::uint64_t>(in) * out;  // per chunk: (len - 1) tree adds + 1 accumulator add
  return cycles;  // the adder tree and the accumulator update complete within each cycle
}

RequantUnit::RequantUnit(sc_core::sc_module_name name, const target::TargetSpec& t) : sc_module(name), target_(t) {}

std::uint64_t RequantUnit::run(const std::int64_t* acc, const std::int32_t* pairs, std::uint32_t out, bool relu,
                               std::int32_t* z, LayerStats& s) const {
  const arith::Format& f = target_.format;
  for (std::uint32_t n = 0; n < out; ++n) {
    z[n] = static_cast<std::int32_t>(arith::epilogue(acc[n], arith::FixedPoint{pairs[2 * n], pairs[2 * n + 1]}, relu, f));
  }
#ifdef QATHW_SYSTEMC_FAULT_REQUANT
  // Injected fault (tests only): the requantization unit of a layer without ReLU is off by one
  // on channel 0.
  if (!relu && out > 0) z[0] += 1;
#endif
  s.act_write_bits += static_cast<std::uint64_t>(out) * f.acc_bits;
  // Each tile's accumulators are requantized (rows units in parallel) in the cycle after its
  // last chunk, while the array starts the next tile; only the last tile's cycle adds to the layer.
  return 1;
}

Accelerator::Accelerator(sc_core::sc_module_name name, const target::TargetSpec& t)
    : sc_module(name),
      socket("socket"),
      target_(t),
      period_(1.0 / t.clock_mhz, sc_core::SC_US),
      weights_("weight SRAM", static_cast<std::size_t>(t.memory.weight_sram_kib) * 1024),
      activations_("activation SRAM", static_cast<std::size_t>(t.memory.activation_sram_kib) * 1024),
      quantizer_("quantizer", t),
      array_("pe_array", t),
      requant_("requant", t) {
  socket.register_b_transport(this, &Accelerator::b_transport);
}

void Accelerator::b_transport(tlm::tlm_generic_payload& trans, sc_core::sc_time& delay) {
  const std::uint64_t addr = trans.get_address();
  const std::size_t len = trans.get_data_length();
  std::uint8_t* data = trans.get_data_ptr();
  const bool write = trans.is_write();
  try {
    switch (addr & address::kRegionMask) {
      case address::kWeights: {
        std::uint8_t* p = weights_.at(addr - address::kWeights, len);
        if (write) {
          std::memcpy(p, data, len);
          decoded_valid_ = false;
        } else {
          std::memcpy(data, p, len);
        }
        break;
      }
      case address::kActivations: {
        std::uint8_t* p = activations_.at(addr - address::kActivations, len);
        write ? std::memcpy(p, data, len) : std::memcpy(data, p, len);
        break;
      }
      default:
        if (addr == address::kLayerCount && write && len == 4) {
          std::uint32_t n = 0;
          std::memcpy(&n, data, 4);
          layers_.assign(n, LayerDescriptor{});
          decoded_valid_ = false;
        } else if (addr >= address::kDescriptors && write &&
                   (addr - address::kDescriptors) % sizeof(LayerDescriptor) == 0 && len == sizeof(LayerDescriptor) &&
                   (addr - address::kDescriptors) / sizeof(LayerDescriptor) < layers_.size()) {
          std::memcpy(&layers_[(addr - address::kDescriptors) / sizeof(LayerDescriptor)], data, len);
          decoded_valid_ = false;
        } else if (addr == address::kControl && write && len == 4) {
          run_inference(delay);
        } else {
          trans.set_response_status(tlm::TLM_ADDRESS_ERROR_RESPONSE);
          return;
        }
    }
  } catch (const std::runtime_error&) {
    trans.set_response_status(tlm::TLM_ADDRESS_ERROR_RESPONSE);
    return;
  }
  trans.set_response_status(tlm::TLM_OK_RESPONSE);
}

// The weight SRAM's packed fields as codes, decoded once per load (the decoder is combinational).
void Accelerator::decode_weights() {
  decoded_.clear();
  for (const LayerDescriptor& d : layers_) {
    const std::size_t count = static_cast<std::size_t>(d.in) * d.out;
    const std::uint8_t* packed = weights_.at(d.weight_offset, arith::packed_bytes(count, target_.format.weights));
    std::vector<std::int8_t> codes(count);
    for (std::size_t i = 0; i < count; ++i)
      codes[i] = static_cast<std::int8_t>(arith::load_code(packed, i, target_.format.weights));
    decoded_.push_back(std::move(codes));
  }
  decoded_valid_ = true;
}

// One layer: the input's codes (int8 or int16 as the target's act_bits need) into the scratch
// area, the PE array, the requantization units.
template <typename Code>
void Accelerator::run_layer(const LayerDescriptor& d, const std::vector<std::int8_t>& weights, LayerStats& s) {
  Code* codes = reinterpret_cast<Code*>(activations_.at(d.code_offset, sizeof(Code) * std::size_t{d.in}));
  if (d.input_bits == 8) {
    s.quantizer_cycles = quantizer_.quantize(activations_.at(d.input_offset, d.in), d.in, codes, s);
  } else {
    const auto* in = reinterpret_cast<const std::int32_t*>(activations_.at(d.input_offset, 4 * std::size_t{d.in}));
    s.quantizer_cycles = quantizer_.quantize(in, d.in, codes, s);
  }
  acc_.assign(d.out, 0);
  s.array_cycles = array_.run_layer(codes, weights.data(), d.in, d.out, acc_.data(), s);
  const auto* pairs = reinterpret_cast<const std::int32_t*>(weights_.at(d.requant_offset, 8 * std::size_t{d.out}));
  auto* z = reinterpret_cast<std::int32_t*>(activations_.at(d.output_offset, 4 * std::size_t{d.out}));
  s.requant_cycles = requant_.run(acc_.data(), pairs, d.out, d.relu != 0, z, s);
}

void Accelerator::run_inference(sc_core::sc_time& delay) {
  if (!decoded_valid_) decode_weights();
  stats_ = InferenceStats{};
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    const LayerDescriptor& d = layers_[l];
    LayerStats s;
    if (code_bytes(target_.format) == 1)
      run_layer<std::int8_t>(d, decoded_[l], s);
    else
      run_layer<std::int16_t>(d, decoded_[l], s);
    s.cycles = s.quantizer_cycles + s.array_cycles + s.requant_cycles;
    // Loosely timed: the layer's time is annotated, then the initiator and the kernel synchronise.
    delay += period_ * static_cast<double>(s.cycles);
    sc_core::wait(delay);
    delay = sc_core::SC_ZERO_TIME;
    stats_.layers.push_back(s);
    stats_.total += s;
  }
}

double energy_pj(const LayerStats& s, const target::TargetSpec& t) {
  const target::Energy& e = t.energy;
  return static_cast<double>(s.adds) * t.format.acc_bits * e.add_pj_per_bit +
         static_cast<double>(s.weight_read_bits + s.act_read_bits) * e.sram_read_pj_per_bit +
         static_cast<double>(s.act_write_bits) * e.sram_write_pj_per_bit +
         static_cast<double>(s.register_write_bits) * e.register_pj_per_bit;
}

nlohmann::json to_json(const LayerStats& s) {
  return {{"cycles", s.cycles},
          {"quantizer_cycles", s.quantizer_cycles},
          {"array_cycles", s.array_cycles},
          {"requant_cycles", s.requant_cycles},
          {"macs", s.macs},
          {"mac_slots", s.mac_slots},
          {"utilization", s.mac_slots ? static_cast<double>(s.macs) / static_cast<double>(s.mac_slots) : 0.0},
          {"adds", s.adds},
          {"weight_read_bits", s.weight_read_bits},
          {"act_read_bits", s.act_read_bits},
          {"act_write_bits", s.act_write_bits},
          {"register_write_bits", s.register_write_bits}};
}

}  // namespace qathw::sim
