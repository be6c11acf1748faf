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
  unit_cycles += o.unit_cycles;
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

arith::Conv2dShape LayerDescriptor::map() const {
  arith::Conv2dShape c;
  c.in_h = static_cast<int>(in_h);
  c.in_w = static_cast<int>(in_w);
  c.in_c = static_cast<int>(in_c);
  c.out_c = static_cast<int>(out_c);
  c.window.kernel_h = static_cast<int>(kernel_h);
  c.window.kernel_w = static_cast<int>(kernel_w);
  c.window.stride_h = static_cast<int>(stride_h);
  c.window.stride_w = static_cast<int>(stride_w);
  c.window.pad_h = static_cast<int>(pad_h);
  c.window.pad_w = static_cast<int>(pad_w);
  c.groups = static_cast<int>(groups);
  return c;
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

template <typename Value, typename Code>
std::uint64_t ActivationQuantizer::quantize_static(const Value* values, std::uint32_t count, arith::FixedPoint pair,
                                                   Code* codes, LayerStats& s) const {
  const arith::Format& f = target_.format;
  // One pass: the calibrated pair is known, so there is no absmax and no reciprocal.
  for (std::uint32_t k = 0; k < count; ++k)
    codes[k] =
        static_cast<Code>(arith::quantize_act(static_cast<std::int64_t>(values[k]), pair, f.act_bits, f.rounding));
  const std::uint64_t in_bits = sizeof(Value) == 1 ? 8 : static_cast<std::uint64_t>(f.acc_bits);
  s.act_read_bits += count * in_bits;
  s.act_write_bits += static_cast<std::uint64_t>(count) * f.act_bits;
  return ceil_div(count, static_cast<std::uint64_t>(target_.array.lanes));
}

PeArray::PeArray(sc_core::sc_module_name name, const target::TargetSpec& t) : sc_module(name), target_(t) {}

template <typename Code>
std::int64_t PeArray::row_dot(const Code* codes, const std::int8_t* w, std::uint32_t k) const {
  const arith::Format& f = target_.format;
  const std::uint32_t lanes = static_cast<std::uint32_t>(target_.array.lanes);
  std::int64_t a = 0;
  for (std::uint32_t base = 0; base < k; base += lanes) {  // one cycle
    const std::uint32_t end = std::min(k, base + lanes);
    std::int64_t partial = 0;  // adder tree
    for (std::uint32_t i = base; i < end; ++i) partial += arith::pe_product(codes[i], w[i], f.weights);
    a = arith::accumulate(a, partial, f);
  }
  return a;
}

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
    for (std::uint32_t r = 0; r < active; ++r)
      acc[n0 + r] = row_dot(codes, weights + static_cast<std::size_t>(n0 + r) * in, in);
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

template <typename Code>
std::uint64_t PeArray::run_conv(const Code* map, const std::int8_t* weights, const arith::Conv2dShape& c,
                                std::int64_t* acc, LayerStats& s) const {
  const arith::Format& f = target_.format;
  const std::uint32_t rows = static_cast<std::uint32_t>(target_.array.rows);
  const std::uint32_t lanes = static_cast<std::uint32_t>(target_.array.lanes);
  const std::uint32_t patch = static_cast<std::uint32_t>(c.patch());
  const std::uint32_t group_out = static_cast<std::uint32_t>(c.group_out());
  const std::uint64_t chunks = ceil_div(patch, lanes);
  const int out_h = c.out_h(), out_w = c.out_w();
  std::vector<Code> window(patch);  // the patch as the address generator streams it to the lanes
  std::uint64_t cycles = 0;
  for (int g = 0; g < c.groups; ++g) {
    for (std::uint32_t n0 = 0; n0 < group_out; n0 += rows) {  // one tile: up to `rows` of the group's channels
      const std::uint32_t active = std::min(rows, group_out - n0);
      const std::uint32_t first = static_cast<std::uint32_t>(g) * group_out + n0;
      // Weight-stationary: the tile's kernels are read into the rows once, for every pixel.
      s.weight_read_bits += static_cast<std::uint64_t>(active) * patch * arith::code_bits(f.weights);
      for (int oy = 0; oy < out_h; ++oy)
        for (int ox = 0; ox < out_w; ++ox) {
          // The sliding window: padding positions give code 0 without an SRAM read.
          std::uint64_t inside = 0;
          arith::for_each_patch_element(c, oy, ox, g, [&](int k, long at) {
            window[static_cast<std::size_t>(k)] = at >= 0 ? map[at] : Code{0};
            inside += at >= 0 ? 1 : 0;
          });
          std::int64_t* pixel = acc + (static_cast<std::size_t>(oy) * out_w + ox) * c.out_c;
          for (std::uint32_t r = 0; r < active; ++r)
            pixel[first + r] = row_dot(window.data(), weights + static_cast<std::size_t>(first + r) * patch, patch);
          cycles += chunks;
          s.mac_slots += chunks * rows * lanes;
          s.act_read_bits += inside * f.act_bits;  // codes broadcast to the rows
          s.register_write_bits += static_cast<std::uint64_t>(active) * chunks * f.acc_bits;
        }
    }
  }
  const std::uint64_t products = static_cast<std::uint64_t>(out_h) * out_w * c.out_c * patch;
  s.macs += products;
  s.adds += products;
  return cycles;
}

RequantUnit::RequantUnit(sc_core::sc_module_name name, const target::TargetSpec& t) : sc_module(name), target_(t) {}

std::uint64_t RequantUnit::run(const std::int64_t* acc, const std::int32_t* pairs, std::uint32_t out,
                               std::uint32_t channels, bool relu, std::int32_t* z, LayerStats& s) const {
  const arith::Format& f = target_.format;
  for (std::uint32_t n = 0, ch = 0; n < out; ++n, ch = ch + 1 == channels ? 0 : ch + 1)
    z[n] = static_cast<std::int32_t>(
        arith::epilogue(acc[n], arith::FixedPoint{pairs[2 * ch], pairs[2 * ch + 1]}, relu, f));
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

PoolUnit::PoolUnit(sc_core::sc_module_name name, const target::TargetSpec& t) : sc_module(name), target_(t) {}

std::uint64_t PoolUnit::run(const std::int32_t* map, const LayerDescriptor& d, std::int32_t* z, LayerStats& s) const {
  const arith::Format& f = target_.format;
  const arith::Conv2dShape c = d.map();
  const arith::Window& w = c.window;
  const bool average = static_cast<Opcode>(d.opcode) == Opcode::AvgPool;
  const arith::FixedPoint pair{d.pair_mantissa[0], d.pair_shift[0]};
  std::uint64_t reads = 0;
  std::size_t at = 0;
  for (int oy = 0; oy < c.out_h(); ++oy)
    for (int ox = 0; ox < c.out_w(); ++ox) {
      std::uint64_t inside = 0;  // the window's positions inside the map: the same for every channel
      arith::for_each_window_index(c.in_h, c.in_w, c.in_c, w, oy, ox, 0, [&](long) { ++inside; });
      reads += inside * static_cast<std::uint64_t>(c.in_c);
      for (int ch = 0; ch < c.in_c; ++ch) {
        const std::int64_t v =
            average ? arith::average_pool(arith::window_sum(map, c.in_h, c.in_w, c.in_c, w, oy, ox, ch), pair, f)
                    : arith::max_pool(map, c.in_h, c.in_w, c.in_c, w, oy, ox, ch);
        z[at++] = static_cast<std::int32_t>(d.relu ? arith::relu(v) : v);
      }
    }
  s.adds += reads;  // one compare (max) or add (average) per value read
  s.act_read_bits += reads * static_cast<std::uint64_t>(f.acc_bits);
  s.act_write_bits += static_cast<std::uint64_t>(d.out) * f.acc_bits;
  // The window is walked `lanes` positions per cycle, one output value after another.
  const std::uint64_t area = static_cast<std::uint64_t>(w.kernel_h) * w.kernel_w;
  return static_cast<std::uint64_t>(d.out) * ceil_div(area, static_cast<std::uint64_t>(target_.array.lanes));
}

AddUnit::AddUnit(sc_core::sc_module_name name, const target::TargetSpec& t) : sc_module(name), target_(t) {}

std::uint64_t AddUnit::run(const std::int32_t* a, const std::int32_t* b, const LayerDescriptor& d, std::int32_t* z,
                           LayerStats& s) const {
  const arith::Format& f = target_.format;
  const arith::FixedPoint pair_a{d.pair_mantissa[0], d.pair_shift[0]}, pair_b{d.pair_mantissa[1], d.pair_shift[1]};
  for (std::uint32_t k = 0; k < d.out; ++k) {
    const std::int64_t v = arith::add_aligned(a[k], pair_a, b[k], pair_b, f);
    z[k] = static_cast<std::int32_t>(d.relu ? arith::relu(v) : v);
  }
  const std::uint64_t n = d.out;
  s.adds += n;
  s.act_read_bits += 2 * n * static_cast<std::uint64_t>(f.acc_bits);
  s.act_write_bits += n * static_cast<std::uint64_t>(f.acc_bits);
  return ceil_div(n, static_cast<std::uint64_t>(target_.array.lanes));
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
      requant_("requant", t),
      pool_("pool", t),
      adder_("adder", t) {
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
    std::size_t count = 0;
    if (static_cast<Opcode>(d.opcode) == Opcode::Linear) count = static_cast<std::size_t>(d.in) * d.out;
    if (static_cast<Opcode>(d.opcode) == Opcode::Conv2d) count = static_cast<std::size_t>(d.map().patch()) * d.out_c;
    const std::uint8_t* packed = weights_.at(d.weight_offset, arith::packed_bytes(count, target_.format.weights));
    std::vector<std::int8_t> codes(count);
    for (std::size_t i = 0; i < count; ++i)
      codes[i] = static_cast<std::int8_t>(arith::load_code(packed, i, target_.format.weights));
    decoded_.push_back(std::move(codes));
  }
  decoded_valid_ = true;
}

const std::int32_t* Accelerator::values(std::uint32_t offset, std::uint32_t count) {
  return reinterpret_cast<const std::int32_t*>(activations_.at(offset, 4 * std::size_t{count}));
}

// The input's codes, by the layer's static pair or the dynamic absmax quantizer.
template <typename Code>
std::uint64_t Accelerator::quantize_input(const LayerDescriptor& d, Code* codes, LayerStats& s) {
  const arith::FixedPoint pair{d.quant_mantissa, d.quant_shift};
  if (d.input_bits == 8) {
    const std::uint8_t* in = activations_.at(d.input_offset, d.in);
    return d.static_quantizer ? quantizer_.quantize_static(in, d.in, pair, codes, s)
                              : quantizer_.quantize(in, d.in, codes, s);
  }
  const std::int32_t* in = values(d.input_offset, d.in);
  return d.static_quantizer ? quantizer_.quantize_static(in, d.in, pair, codes, s)
                            : quantizer_.quantize(in, d.in, codes, s);
}

// A linear or conv2d layer: the input's codes (int8 or int16 as the target's act_bits need) into
// the scratch area, the PE array, the requantization units.
template <typename Code>
void Accelerator::run_kernel_layer(const LayerDescriptor& d, const std::vector<std::int8_t>& weights, LayerStats& s) {
  Code* codes = reinterpret_cast<Code*>(activations_.at(d.code_offset, sizeof(Code) * std::size_t{d.in}));
  s.quantizer_cycles = quantize_input(d, codes, s);
  const bool conv = static_cast<Opcode>(d.opcode) == Opcode::Conv2d;
  acc_.assign(d.out, 0);
  s.array_cycles = conv ? array_.run_conv(codes, weights.data(), d.map(), acc_.data(), s)
                        : array_.run_layer(codes, weights.data(), d.in, d.out, acc_.data(), s);
  const std::uint32_t channels = conv ? d.out_c : d.out;
  const auto* pairs = reinterpret_cast<const std::int32_t*>(weights_.at(d.requant_offset, 8 * std::size_t{channels}));
  auto* z = reinterpret_cast<std::int32_t*>(activations_.at(d.output_offset, 4 * std::size_t{d.out}));
  s.requant_cycles = requant_.run(acc_.data(), pairs, d.out, channels, d.relu != 0, z, s);
}

void Accelerator::run_inference(sc_core::sc_time& delay) {
  if (!decoded_valid_) decode_weights();
  stats_ = InferenceStats{};
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    const LayerDescriptor& d = layers_[l];
    LayerStats s;
    auto* z = reinterpret_cast<std::int32_t*>(activations_.at(d.output_offset, 4 * std::size_t{d.out}));
    switch (static_cast<Opcode>(d.opcode)) {
      case Opcode::Linear:
      case Opcode::Conv2d:
        if (code_bytes(target_.format) == 1)
          run_kernel_layer<std::int8_t>(d, decoded_[l], s);
        else
          run_kernel_layer<std::int16_t>(d, decoded_[l], s);
        break;
      case Opcode::MaxPool:
      case Opcode::AvgPool:
        s.unit_cycles = pool_.run(values(d.input_offset, d.in), d, z, s);
        // An average's requantization follows the pool's last sum, one cycle.
        s.requant_cycles = static_cast<Opcode>(d.opcode) == Opcode::AvgPool ? 1 : 0;
        break;
      case Opcode::Add:
        s.unit_cycles = adder_.run(values(d.input_offset, d.in), values(d.residual_offset, d.out), d, z, s);
        break;
      default:
        throw std::runtime_error("layer " + std::to_string(l) + ": unknown opcode " + std::to_string(d.opcode));
    }
    s.cycles = s.quantizer_cycles + s.array_cycles + s.requant_cycles + s.unit_cycles;
    if (observer_) observer_(l, z, d.out);
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
          {"unit_cycles", s.unit_cycles},
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
