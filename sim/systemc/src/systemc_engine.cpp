#include "qathw/sim/systemc_engine.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "accelerator.h"

namespace qathw::sim {
namespace {

// The host side of the TLM-2.0 interface: loads the model, then per sample writes the pixels,
// starts an inference and reads every layer's outputs.
class Host : public sc_core::sc_module {
 public:
  tlm_utils::simple_initiator_socket<Host> socket;

  Host(sc_core::sc_module_name name, const model::Bundle& b, const std::vector<model::AcceleratorLayer>& layers, const std::uint8_t* pixels, std::size_t count,
       bool keep_layers, const Accelerator& acc, SimRun& out)
      : sc_module(name), socket("socket"), bundle_(b), layers_(layers), pixels_(pixels), count_(count), keep_(keep_layers),
        accelerator_(acc), out_(out) {
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
    const target::TargetSpec& t = bundle_.target;
    sc_core::sc_time delay = sc_core::SC_ZERO_TIME;
    // Memory layout: weights then requantization pairs in the weight SRAM; input, per-layer
    // outputs and a code scratch area in the activation SRAM.
    std::vector<LayerDescriptor> d(layers_.size());
    std::size_t weight_end = 0;
    const std::size_t features = bundle_.features();
    std::size_t act_end = (features + 3) / 4 * 4;
    std::size_t widest = features;
    for (std::size_t l = 0; l < d.size(); ++l) {
      const model::AcceleratorLayer& bl = layers_[l];
      d[l].in = static_cast<std::uint32_t>(bl.in);
      d[l].out = static_cast<std::uint32_t>(bl.out);
      d[l].relu = bl.relu ? 1 : 0;
      d[l].weight_offset = static_cast<std::uint32_t>(weight_end);
      weight_end += (bl.params->packed.size() + 7) / 8 * 8;
      d[l].input_offset = l == 0 ? 0 : d[l - 1].output_offset;
      d[l].input_bits = l == 0 ? 8 : 32;
      d[l].output_offset = static_cast<std::uint32_t>(act_end);
      act_end += 4 * static_cast<std::size_t>(bl.out);
      widest = std::max(widest, static_cast<std::size_t>(bl.in));
    }
    for (std::size_t l = 0; l < d.size(); ++l) {
      d[l].requant_offset = static_cast<std::uint32_t>(weight_end);
      weight_end += 8 * static_cast<std::size_t>(layers_[l].out);
      d[l].code_offset = static_cast<std::uint32_t>(act_end);
    }
    act_end += widest * code_bytes(t.format);
    const std::size_t weight_capacity = static_cast<std::size_t>(t.memory.weight_sram_kib) * 1024;
    const std::size_t act_capacity = static_cast<std::size_t>(t.memory.activation_sram_kib) * 1024;
    if (weight_end > weight_capacity)
      throw std::runtime_error("the model needs " + std::to_string(weight_end) + " bytes of weight SRAM; target '" +
                               t.name + "' has " + std::to_string(weight_capacity) + " (memory.weight_sram_kib)");
    if (act_end > act_capacity)
      throw std::runtime_error("the model needs " + std::to_string(act_end) + " bytes of activation SRAM; target '" +
                               t.name + "' has " + std::to_string(act_capacity) + " (memory.activation_sram_kib)");

    const std::uint32_t layers = static_cast<std::uint32_t>(d.size());
    write(address::kLayerCount, &layers, 4, delay);
    for (std::size_t l = 0; l < d.size(); ++l) {
      write(address::kDescriptors + l * sizeof(LayerDescriptor), &d[l], sizeof(LayerDescriptor), delay);
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

    const sc_core::sc_time start = sc_core::sc_time_stamp();
    const std::uint32_t go = 1;
    out_.outputs.resize(count_);
    out_.stats.resize(count_);
    for (std::size_t i = 0; i < count_; ++i) {
      write(address::kActivations, pixels_ + i * features, features, delay);
      write(address::kControl, &go, 4, delay);
      model::LayerOutputs& o = out_.outputs[i];
      for (std::size_t l = keep_ ? 0 : d.size() - 1; l < d.size(); ++l) {
        std::vector<std::int32_t> z(d[l].out);
        read(address::kActivations + d[l].output_offset, z.data(), 4 * z.size(), delay);
        o.push_back(std::move(z));
      }
      out_.stats[i] = accelerator_.last_stats();
    }
    wait(delay);
    out_.simulated_seconds = (sc_core::sc_time_stamp() - start).to_seconds();
  }

  const model::Bundle& bundle_;
  const std::vector<model::AcceleratorLayer>& layers_;
  const std::uint8_t* pixels_;
  std::size_t count_;
  bool keep_;
  const Accelerator& accelerator_;
  SimRun& out_;
};

std::atomic<bool> g_elaborated{false};

}  // namespace

std::optional<std::string> systemc_unsupported(const model::Bundle& bundle) {
  return model::linear_chain(bundle.graph).unsupported;
}

SimRun run_systemc(const model::Bundle& bundle, const std::uint8_t* pixels, std::size_t count, bool keep_layers) {
  const model::AcceleratorLowering lowering = model::linear_chain(bundle.graph);
  if (lowering.unsupported) throw std::runtime_error("SystemC model: " + *lowering.unsupported);
  if (g_elaborated.exchange(true))
    throw std::runtime_error("the SystemC model runs once per process (the SystemC kernel cannot be restarted)");
  setenv("SYSTEMC_DISABLE_COPYRIGHT_MESSAGE", "1", 1);
  SimRun out;
  Accelerator accelerator("accelerator", bundle.target);
  Host host("host", bundle, lowering.layers, pixels, count, keep_layers, accelerator, out);
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
