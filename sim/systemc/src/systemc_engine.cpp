#include "qathw/sim/systemc_engine.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "accelerator.h"

namespace qathw::sim {
namespace {

// Where a model lives in the accelerator's SRAMs: one descriptor per layer, and the bytes used.
struct MemoryPlan {
  std::vector<LayerDescriptor> descriptors;
  std::size_t weight_bytes = 0, activation_bytes = 0;
  std::size_t cache_bytes = 0;  // of the activation bytes: the KV caches
  std::optional<std::string> overflow;  // the SRAM the model does not fit, naming the target field
};

std::size_t align4(std::size_t n) { return (n + 3) / 4 * 4; }

// First fit among the buffers live at a layer: a buffer is held from the layer that writes it
// until its last reader has run, then its bytes serve later layers.
class ActivationAllocator {
 public:
  explicit ActivationAllocator(std::size_t base) : base_(base), peak_(base) {}

  // Frees every buffer whose last reader ran before `layer`.
  void start_layer(std::size_t layer) {
    blocks_.erase(std::remove_if(blocks_.begin(), blocks_.end(), [&](const Block& b) { return b.last_reader < layer; }),
                  blocks_.end());
  }
  std::size_t allocate(std::size_t bytes, std::size_t last_reader) {
    std::sort(blocks_.begin(), blocks_.end(), [](const Block& a, const Block& b) { return a.offset < b.offset; });
    std::size_t at = base_;
    for (const Block& b : blocks_) {
      if (at + bytes <= b.offset) break;
      at = std::max(at, align4(b.offset + b.bytes));
    }
    blocks_.push_back({at, bytes, last_reader});
    peak_ = std::max(peak_, at + bytes);
    return at;
  }
  std::size_t peak() const { return peak_; }

 private:
  struct Block {
    std::size_t offset, bytes, last_reader;
  };
  std::size_t base_, peak_;
  std::vector<Block> blocks_;
};

Opcode opcode_of(const model::AcceleratorLayer& l) {
  switch (l.unit) {
    case model::TransformerOp::None: break;
    case model::TransformerOp::Embed: return Opcode::Embed;
    case model::TransformerOp::RmsNorm: return Opcode::RmsNorm;
    case model::TransformerOp::Quantize: return Opcode::Quantize;
    case model::TransformerOp::SquaredRelu: return Opcode::SquaredRelu;
    case model::TransformerOp::Scores: return Opcode::Scores;
    case model::TransformerOp::Softmax: return Opcode::Softmax;
    case model::TransformerOp::Attend: return Opcode::Attend;
  }
  switch (l.kind) {
    case model::AcceleratorOp::Linear: return Opcode::Linear;
    case model::AcceleratorOp::Conv2d: return Opcode::Conv2d;
    case model::AcceleratorOp::MaxPool: return Opcode::MaxPool;
    case model::AcceleratorOp::AvgPool: return Opcode::AvgPool;
    case model::AcceleratorOp::Add: return Opcode::Add;
  }
  return Opcode::Linear;
}

// The bytes of one token's output of a layer: int32 values, codes (a quantize layer), or 8-bit
// probability codes (softmax).
std::size_t output_bytes(const model::AcceleratorLayer& l, const arith::Format& f) {
  const std::size_t n = static_cast<std::size_t>(l.out);
  if (l.unit == model::TransformerOp::Quantize) return n * arith::act_code_bytes(f.act_bits);
  if (l.unit == model::TransformerOp::Softmax) return n;
  return 4 * n;
}

// Weight SRAM: every kernel layer's packed codes, then their requantization pairs, then the
// RMSNorm layers' gain pairs and the embedding tables. Activation SRAM: the pixels (a sequence's
// tokens) at 0, the KV caches, then each layer's outputs and each kernel layer's code scratch,
// allocated by liveness (docs/sim.md, "Memory layout").
MemoryPlan plan_memory(const model::Bundle& bundle, const model::AcceleratorLowering& lowering) {
  const std::vector<model::AcceleratorLayer>& layers = lowering.layers;
  const model::Graph& g = bundle.graph;
  const std::size_t T = static_cast<std::size_t>(lowering.tokens);
  const target::TargetSpec& t = bundle.target;
  constexpr std::size_t kNever = std::numeric_limits<std::size_t>::max();
  MemoryPlan plan;
  std::vector<LayerDescriptor>& d = plan.descriptors;
  d.resize(layers.size());
  // The last layer that reads each layer's output; the graph's output is never freed (the host
  // reads it after the inference).
  std::vector<std::size_t> last_reader(layers.size());
  for (std::size_t l = 0; l < layers.size(); ++l) last_reader[l] = l + 1 == layers.size() ? kNever : l;
  for (std::size_t l = 0; l < layers.size(); ++l)
    for (const std::size_t from : {layers[l].input, layers[l].residual})
      if (from != model::AcceleratorLayer::kPixels && last_reader[from] != kNever)
        last_reader[from] = std::max(last_reader[from], l);

  std::size_t weight_end = 0;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    if (!layers[l].params) continue;
    d[l].weight_offset = static_cast<std::uint32_t>(weight_end);
    weight_end += (layers[l].params->packed.size() + 7) / 8 * 8;
  }
  for (std::size_t l = 0; l < layers.size(); ++l) {
    if (!layers[l].params) continue;
    d[l].requant_offset = static_cast<std::uint32_t>(weight_end);
    weight_end += 8 * layers[l].params->requant.size();
  }
  for (std::size_t l = 0; l < layers.size(); ++l) {
    if (layers[l].unit != model::TransformerOp::RmsNorm) continue;
    d[l].requant_offset = static_cast<std::uint32_t>(weight_end);
    weight_end += 8 * layers[l].pairs.size();
  }
  for (std::size_t l = 0; l < layers.size(); ++l) {
    if (layers[l].unit != model::TransformerOp::Embed) continue;
    const model::EmbedParams& e = g.ops[layers[l].linear_op].embed;
    d[l].weight_offset = static_cast<std::uint32_t>(weight_end);
    weight_end += (e.tokens.size() * table_bytes(t.format) + 7) / 8 * 8;
    d[l].requant_offset = static_cast<std::uint32_t>(weight_end);
    weight_end += (e.positions_table.size() * table_bytes(t.format) + 7) / 8 * 8;
  }

  ActivationAllocator act(align4(bundle.features()));
  // The KV caches for the whole run, in the region the target reserves for them when it does
  // (memory.kv_cache_kib: the layers' buffers start after it).
  const std::vector<bool> cache = model::kv_cache_layers(layers);
  for (std::size_t l = 0; l < layers.size(); ++l) {
    if (!cache[l]) continue;
    const std::size_t bytes = T * output_bytes(layers[l], t.format);
    d[l].cache = 1;
    d[l].output_offset = static_cast<std::uint32_t>(act.allocate(bytes, kNever));
    plan.cache_bytes += bytes;
  }
  const std::size_t region = static_cast<std::size_t>(t.memory.kv_cache_kib) * 1024;
  if (plan.cache_bytes > 0 && region > plan.cache_bytes) act.allocate(region - plan.cache_bytes, kNever);
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const model::AcceleratorLayer& bl = layers[l];
    LayerDescriptor& dl = d[l];
    dl.opcode = static_cast<std::uint32_t>(opcode_of(bl));
    dl.in = static_cast<std::uint32_t>(bl.in);
    dl.out = static_cast<std::uint32_t>(bl.out);
    dl.relu = bl.relu ? 1 : 0;
    const bool pixels = bl.input == model::AcceleratorLayer::kPixels;
    dl.input_offset = pixels ? 0 : d[bl.input].output_offset;
    dl.input_bits = pixels ? 8 : 32;
    if (bl.residual != model::AcceleratorLayer::kPixels) dl.residual_offset = d[bl.residual].output_offset;
    dl.codes_input = bl.codes_input ? 1 : 0;
    if (bl.codes_input) dl.input_bits = static_cast<std::uint32_t>(8 * arith::act_code_bytes(t.format.act_bits));
    if (bl.unit != model::TransformerOp::None) {
      const model::Op& op = g.ops[bl.linear_op];
      dl.groups = static_cast<std::uint32_t>(op.groups);
      dl.eps_low = static_cast<std::uint32_t>(op.eps);
      dl.eps_high = static_cast<std::uint32_t>(op.eps >> 32);
      dl.shift = static_cast<std::uint32_t>(op.shift);
      dl.index_bits = static_cast<std::uint32_t>(op.softmax.index_bits);
      dl.value_bits = static_cast<std::uint32_t>(op.softmax.value_bits);
      dl.prob_bits = static_cast<std::uint32_t>(op.softmax.prob_bits);
      if (bl.unit == model::TransformerOp::Attend) dl.prob_bits = static_cast<std::uint32_t>(g.ops[layers[bl.input].linear_op].softmax.prob_bits);
      if (bl.unit == model::TransformerOp::Quantize && !bl.pairs.empty()) {
        dl.static_quantizer = 1;
        dl.quant_mantissa = static_cast<std::int32_t>(bl.pairs[0].mantissa);
        dl.quant_shift = bl.pairs[0].shift;
      }
    }
    dl.factor_count = static_cast<std::uint32_t>(std::min(bl.factors.size(), kMaxFactors));
    for (std::size_t k = 0; k < dl.factor_count; ++k) dl.factor_layer[k] = static_cast<std::uint32_t>(bl.factors[k]);
    if (bl.unit == model::TransformerOp::None && bl.kind != model::AcceleratorOp::Linear &&
        bl.kind != model::AcceleratorOp::Add) {
      const arith::Conv2dShape& c = bl.map;
      dl.in_h = static_cast<std::uint32_t>(c.in_h);
      dl.in_w = static_cast<std::uint32_t>(c.in_w);
      dl.in_c = static_cast<std::uint32_t>(c.in_c);
      dl.out_c = static_cast<std::uint32_t>(c.out_c);
      dl.kernel_h = static_cast<std::uint32_t>(c.window.kernel_h);
      dl.kernel_w = static_cast<std::uint32_t>(c.window.kernel_w);
      dl.stride_h = static_cast<std::uint32_t>(c.window.stride_h);
      dl.stride_w = static_cast<std::uint32_t>(c.window.stride_w);
      dl.pad_h = static_cast<std::uint32_t>(c.window.pad_h);
      dl.pad_w = static_cast<std::uint32_t>(c.window.pad_w);
      dl.groups = static_cast<std::uint32_t>(c.groups);
    }
    if (!bl.quantizer.empty()) {
      dl.static_quantizer = 1;
      dl.quant_mantissa = static_cast<std::int32_t>(bl.quantizer[0].mantissa);
      dl.quant_shift = bl.quantizer[0].shift;
    }
    for (std::size_t p = 0; p < bl.pairs.size() && p < 2 && bl.unit != model::TransformerOp::RmsNorm &&
                            bl.unit != model::TransformerOp::Quantize;
         ++p) {
      dl.pair_mantissa[p] = static_cast<std::int32_t>(bl.pairs[p].mantissa);
      dl.pair_shift[p] = bl.pairs[p].shift;
    }
    // The inputs are live until this layer has run; the output is held for its readers, the code
    // scratch for this layer only (placed after the output, which usually lives longer).
    act.start_layer(l);
    if (!cache[l])
      dl.output_offset = static_cast<std::uint32_t>(act.allocate(output_bytes(bl, t.format), last_reader[l]));
    if (bl.params && !bl.codes_input)
      dl.code_offset =
          static_cast<std::uint32_t>(act.allocate(static_cast<std::size_t>(bl.in) * arith::act_code_bytes(t.format.act_bits), l));
  }
  plan.weight_bytes = weight_end;
  plan.activation_bytes = act.peak();

  const std::size_t weight_capacity = static_cast<std::size_t>(t.memory.weight_sram_kib) * 1024;
  const std::size_t act_capacity = static_cast<std::size_t>(t.memory.activation_sram_kib) * 1024;
  if (const std::optional<std::string> kv = model::kv_cache_misfit(layers, lowering.tokens, t))
    plan.overflow = *kv;
  else if (plan.weight_bytes > weight_capacity)
    plan.overflow = "the model needs " + std::to_string(plan.weight_bytes) + " bytes of weight SRAM; target '" +
                    t.name + "' has " + std::to_string(weight_capacity) + " (memory.weight_sram_kib)";
  else if (plan.activation_bytes > act_capacity)
    plan.overflow = "the model needs " + std::to_string(plan.activation_bytes) + " bytes of activation SRAM" +
                    (plan.cache_bytes ? " (" + std::to_string(std::max(region, plan.cache_bytes)) + " of them the KV cache" +
                                            (region ? std::string(" region, memory.kv_cache_kib") : std::string()) + ")"
                                      : std::string()) +
                    "; target '" + t.name + "' has " + std::to_string(act_capacity) + " (memory.activation_sram_kib)";
  return plan;
}

// The host side of the TLM-2.0 interface: loads the model, then per sample writes the pixels,
// starts an inference and reads the output (every layer's through the observation port when
// keep_layers).
class Host : public sc_core::sc_module {
 public:
  tlm_utils::simple_initiator_socket<Host> socket;

  Host(sc_core::sc_module_name name, const model::Bundle& b, const model::AcceleratorLowering& lowering,
       const MemoryPlan& plan, const std::uint8_t* pixels, std::size_t count, bool keep_layers, Accelerator& acc,
       SimRun& out)
      : sc_module(name), socket("socket"), bundle_(b), layers_(lowering.layers), tokens_(lowering.tokens), plan_(plan),
        pixels_(pixels), count_(count), keep_(keep_layers), accelerator_(acc), out_(out) {
    SC_HAS_PROCESS(Host);
    SC_THREAD(run);
  }

  std::string error;

 private:
  void transfer(tlm::tlm_command cmd, std::uint64_t addr, void* data, std::size_t len, sc_core::sc_time& delay) {
    tlm::tlm_generic_payload t;
    t.set_command(cmd);
    t.set_address(addr);
    t.set_data_ptr(static_cast<unsigned char*>(data));
    t.set_data_length(static_cast<unsigned>(len));
    t.set_streaming_width(static_cast<unsigned>(len));
    t.set_byte_enable_ptr(nullptr);
    t.set_dmi_allowed(false);
    t.set_response_status(tlm::TLM_INCOMPLETE_RESPONSE);
    socket->b_transport(t, delay);
    if (t.is_response_error())
      throw std::runtime_error("TLM transaction to 0x" + hex(addr) + " (" + std::to_string(len) +
                               " bytes) failed: " + t.get_response_string());
  }
  void write(std::uint64_t addr, const void* data, std::size_t len, sc_core::sc_time& delay) {
    transfer(tlm::TLM_WRITE_COMMAND, addr, const_cast<void*>(data), len, delay);
  }
  void read(std::uint64_t addr, void* data, std::size_t len, sc_core::sc_time& delay) {
    transfer(tlm::TLM_READ_COMMAND, addr, data, len, delay);
  }
  static std::string hex(std::uint64_t v) {
    char buf[20];
    std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(v));
    return buf;
  }

  void run() {
    try {
      run_samples();
    } catch (const std::exception& e) {
      error = e.what();
    }
    // Returning ends the simulation: nothing else is scheduled, so sc_start() returns.
  }

  void run_samples() {
    sc_core::sc_time delay = sc_core::SC_ZERO_TIME;
    const std::vector<LayerDescriptor>& d = plan_.descriptors;
    const std::size_t features = bundle_.features();
    const std::uint32_t layers = static_cast<std::uint32_t>(d.size());
    write(address::kLayerCount, &layers, 4, delay);
    const std::uint32_t tokens = static_cast<std::uint32_t>(tokens_);
    write(address::kTokens, &tokens, 4, delay);
    const arith::Format& f = bundle_.target.format;
    const auto write_pairs = [&](std::uint32_t offset, const std::vector<arith::FixedPoint>& ps) {
      std::vector<std::int32_t> words;
      for (const auto& p : ps) {
        words.push_back(static_cast<std::int32_t>(p.mantissa));
        words.push_back(p.shift);
      }
      write(address::kWeights + offset, words.data(), 4 * words.size(), delay);
    };
    const auto write_table = [&](std::uint32_t offset, const std::vector<std::int32_t>& table) {
      const std::size_t tb = table_bytes(f);
      std::vector<std::uint8_t> bytes(table.size() * tb);
      for (std::size_t i = 0; i < table.size(); ++i)
        for (std::size_t k = 0; k < tb; ++k)
          bytes[i * tb + k] = static_cast<std::uint8_t>(static_cast<std::uint32_t>(table[i]) >> (8 * k));
      write(address::kWeights + offset, bytes.data(), bytes.size(), delay);
    };
    for (std::size_t l = 0; l < d.size(); ++l) {
      write(address::kDescriptors + l * sizeof(LayerDescriptor), &d[l], sizeof(LayerDescriptor), delay);
      if (layers_[l].unit == model::TransformerOp::RmsNorm) write_pairs(d[l].requant_offset, layers_[l].pairs);
      if (layers_[l].unit == model::TransformerOp::Embed) {
        const model::EmbedParams& e = bundle_.graph.ops[layers_[l].linear_op].embed;
        write_table(d[l].weight_offset, e.tokens);
        write_table(d[l].requant_offset, e.positions_table);
      }
      if (!layers_[l].params) continue;
      const model::LinearParams& bl = *layers_[l].params;
      write(address::kWeights + d[l].weight_offset, bl.packed.data(), bl.packed.size(), delay);
      std::vector<std::int32_t> pairs;
      for (const auto& p : bl.requant) {
        pairs.push_back(static_cast<std::int32_t>(p.mantissa));
        pairs.push_back(p.shift);
      }
      write(address::kWeights + d[l].requant_offset, pairs.data(), 4 * pairs.size(), delay);
    }
    wait(delay);
    delay = sc_core::SC_ZERO_TIME;

    model::LayerOutputs* sample = nullptr;
    // A sequence's outputs leave through the observation port token by token (the output buffer
    // holds one token's); an image's last layer is read from the SRAM unless every layer is kept.
    const bool sequence = tokens_ > 1;
    const std::size_t last = d.size() - 1;
    if (keep_ || sequence)
      accelerator_.observe_layers([&, this](std::size_t layer, const std::int32_t* z, std::uint32_t count) {
        if (!keep_ && layer != last) return;
        const std::size_t at = keep_ ? layer : 0;
        if (sample->size() <= at) sample->resize(at + 1);
        (*sample)[at].insert((*sample)[at].end(), z, z + count);
      });
    const sc_core::sc_time start = sc_core::sc_time_stamp();
    const std::uint32_t go = 1;
    out_.outputs.resize(count_);
    out_.stats.resize(count_);
    for (std::size_t i = 0; i < count_; ++i) {
      sample = &out_.outputs[i];
      write(address::kActivations, pixels_ + i * features, features, delay);
      write(address::kControl, &go, 4, delay);
      if (!keep_ && !sequence) {
        std::vector<std::int32_t> z(d.back().out);
        read(address::kActivations + d.back().output_offset, z.data(), 4 * z.size(), delay);
        sample->push_back(std::move(z));
      }
      out_.stats[i] = accelerator_.last_stats();
    }
    accelerator_.observe_layers(nullptr);
    wait(delay);
    out_.simulated_seconds = (sc_core::sc_time_stamp() - start).to_seconds();
  }

  const model::Bundle& bundle_;
  const std::vector<model::AcceleratorLayer>& layers_;
  int tokens_;
  const MemoryPlan& plan_;
  const std::uint8_t* pixels_;
  std::size_t count_;
  bool keep_;
  Accelerator& accelerator_;
  SimRun& out_;
};

std::atomic<bool> g_elaborated{false};

}  // namespace

std::optional<std::string> systemc_unsupported(const model::Bundle& bundle) {
  const model::AcceleratorLowering lowering = model::accelerator_layers(bundle.graph, true);
  if (lowering.unsupported) return lowering.unsupported;
  return plan_memory(bundle, lowering).overflow;
}

SimRun run_systemc(const model::Bundle& bundle, const std::uint8_t* pixels, std::size_t count, bool keep_layers) {
  const model::AcceleratorLowering lowering = model::accelerator_layers(bundle.graph, true);
  if (lowering.unsupported) throw std::runtime_error("SystemC model: " + *lowering.unsupported);
  const MemoryPlan plan = plan_memory(bundle, lowering);
  if (plan.overflow) throw std::runtime_error(*plan.overflow);
  if (g_elaborated.exchange(true))
    throw std::runtime_error("the SystemC model runs once per process (the SystemC kernel cannot be restarted)");
  setenv("SYSTEMC_DISABLE_COPYRIGHT_MESSAGE", "1", 1);
  SimRun out;
  Accelerator accelerator("accelerator", bundle.target);
  Host host("host", bundle, lowering, plan, pixels, count, keep_layers, accelerator, out);
  host.socket.bind(accelerator.socket);
  const auto t0 = std::chrono::steady_clock::now();
  sc_core::sc_start();
  out.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!host.error.empty()) throw std::runtime_error(host.error);
  return out;
}

}  // namespace qathw::sim

// libsystemc's own main() calls sc_main(); qat-hw and the tests have their own main() and start
// the kernel through run_systemc, so this entry point exists only to satisfy the library's link.
int sc_main(int, char*[]) { return 2; }
