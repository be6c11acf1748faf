// The harness of one Verilated accelerator model; compiled once per built-in target with
// QATHW_RTL_MODEL naming the model class and QATHW_RTL_ENTRY this file's entry point. The run-time
// builds of other targets' RTL (rtl/flow, point_rtl.cpp) compile it into a shared object with
// QATHW_RTL_SHARED: it then uses nothing of qat-hw's libraries but headers, and exports its entry.
#include <chrono>
#include <stdexcept>

#include <verilated.h>
#if VM_TRACE
#include <verilated_fst_c.h>
#endif

#include <memory>

#include "qathw/arith.h"
#include "qathw/rtl/port_bits.h"
#include "qathw/rtl/rtl_engine.h"
#include "qathw/rtl/rtl_fit.h"
#include "qathw/target/config_port.h"

#define QATHW_STRINGIFY2(x) #x
#define QATHW_STRINGIFY(x) QATHW_STRINGIFY2(x)
#include QATHW_STRINGIFY(QATHW_RTL_MODEL.h)

namespace qathw::rtl {
namespace {

namespace cp = target::config_port;

#if VM_TRACE
using Waveform = VerilatedFstC;
#else
// A build without tracing compiled in (a run-time build unless a waveform is asked for): no
// waveform is ever opened.
struct Waveform {
  void dump(std::uint64_t) {}
  void close() {}
};
#endif

template <typename Port>
void put_field(Port& port, const cp::Field& f, std::uint64_t value) {
  put_bits(port, f.lsb, f.width, value);
}

class Harness {
 public:
  Harness(const model::Bundle& b, const std::vector<model::AcceleratorLayer>& layers)
      : b_(b), layers_(layers), rows_(b.target.array.rows), lanes_(b.target.array.lanes),
        sequence_{&b.graph, b.sequence() ? static_cast<int>(b.features()) : 0, b.target.format.acc_bits} {
    // Every RTL build of the target has the memories of qathw/target/rtl_memories.h.
    if (const auto misfit = rtl_memory_misfit(layers, b.target, sequence_)) throw std::runtime_error("RTL: " + *misfit);
    m_.clk_i = 0;
    m_.rst_ni = 0;
    m_.eval();
    m_.rst_ni = 1;
    m_.eval();
    configure();
  }

  void trace_to(const std::string& path) {
#if VM_TRACE
    Verilated::traceEverOn(true);
    fst_ = std::make_unique<Waveform>();
    m_.trace(fst_.get(), 99);
    fst_->open(path.c_str());
    if (!fst_->isOpen()) throw std::runtime_error(path + ": cannot open the waveform file");
#else
    throw std::logic_error(path + ": this RTL build has no tracing compiled in");
#endif
  }

  void close_trace() {
    if (fst_) fst_->close();
  }

  model::LayerOutputs run(const std::uint8_t* pixels, std::vector<std::uint64_t>& layer_cycles,
                             std::vector<std::uint64_t>& layer_end) {
    const std::size_t features = b_.features();
    layer_cycles.assign(layers_.size(), 0);
    layer_end.assign(layers_.size(), 0);
    model::LayerOutputs out(layers_.size());
    std::size_t fed = 0;
    m_.out_ready_i = 1;
    // The values on the stream: AccBits, or 32 bits in a build with the transformer's units.
    const int out_bits = m_.out_bits_o;
    // A sequence's tokens go in one per beat, each token's layers run before the next is taken.
    const bool seq = b_.sequence();
    const std::size_t step = seq ? 1 : static_cast<std::size_t>(lanes_);
    for (std::uint64_t guard = 0; guard < 1000000000; ++guard) {
      // A beat of lanes pixels; lanes past the image are zero.
      m_.in_valid_i = fed < features && m_.in_ready_o;
      clear_bits(m_.in_data_i);
      for (std::size_t i = 0; i < step && fed + i < features; ++i) put_bits(m_.in_data_i, 8 * static_cast<int>(i), 8, pixels[fed + i]);
      fall();
      if (m_.computing_o) {
        ++layer_cycles.at(m_.layer_o);
        layer_end.at(m_.layer_o) = cycles_;
      }
      const bool took = m_.in_valid_i && m_.in_ready_o;
      const bool gave = m_.out_valid_o && m_.out_ready_i;
      const bool last = m_.out_last_o;
      if (gave) {
        // A beat of up to lanes values of one layer's outputs.
        const std::size_t layer = m_.out_layer_o;
        std::vector<std::int32_t>& values = out.at(layer);
        // One token's row of the layer (an image: its whole output), the beat's part of it.
        const std::size_t n = static_cast<std::size_t>(layers_.at(layer).out);
        const std::size_t row_end = values.size() / n * n + n;
        for (int i = 0; i < lanes_ && values.size() < row_end; ++i)
          values.push_back(static_cast<std::int32_t>(
              arith::wrap(static_cast<std::int64_t>(get_bits(m_.out_data_o, i * out_bits, out_bits)), out_bits)));
      }
      rise();
      if (took) fed += step;
      if (gave && last) return out;
    }
    throw std::runtime_error("the RTL did not finish a sample");
  }

  std::uint64_t cycles() const { return cycles_; }

 private:
  // A cycle is two evaluations: the falling edge together with the cycle's new inputs (the design
  // has no logic on the falling edge, so its outputs then settle on those inputs), and the rising
  // edge. A separate evaluation for the inputs alone would cost a third of the run.
  void fall() {
    m_.clk_i = 0;
    m_.eval();
    if (fst_) fst_->dump(2 * cycles_);
  }

  void rise() {
    m_.clk_i = 1;
    m_.eval();
    if (fst_) fst_->dump(2 * cycles_ + 1);
    ++cycles_;
  }

  void tick() {
    fall();
    rise();
  }

  void write(cp::Kind kind, std::size_t addr) {
    m_.cfg_we_i = 1;
    m_.cfg_kind_i = static_cast<std::uint8_t>(kind);
    m_.cfg_addr_i = static_cast<std::uint16_t>(addr);
    tick();
    m_.cfg_we_i = 0;
  }

  // Weight words (kernel layers: per group g, tile t, chunk c, row r holds channel g group_out +
  // t rows + r and lane i patch element c lanes + i, at (r lanes + i) code bits), requantization
  // pairs (one per output channel), then each layer's descriptor word by word.
  void write_pair(std::size_t at, arith::FixedPoint p, int mant_bits) {
    clear_bits(m_.cfg_data_i);
    put_field(m_.cfg_data_i, cp::requant_mantissa(mant_bits), static_cast<std::uint64_t>(p.mantissa));
    put_field(m_.cfg_data_i, cp::requant_shift(mant_bits), static_cast<std::uint64_t>(p.shift));
    write(cp::Kind::RequantPair, at);
  }

  // A sequence's: each rms_norm layer's gain pairs (requantization memory), each embedding's
  // token and position tables (table memory) and the softmax's exp2 table.
  void configure_sequence(const RtlLayout& layout, int mant_bits) {
    using model::TransformerOp;
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const model::AcceleratorLayer& layer = layers_[l];
      std::uint64_t wbase = 0, rbase = 0;
      for (const auto& [field, value] : layout.descriptors[l]) {
        if (std::string(field.name) == cp::kDescWeightBase.name) wbase = value;
        if (std::string(field.name) == cp::kDescRequantBase.name) rbase = value;
      }
      if (layer.unit == TransformerOp::RmsNorm)
        for (std::size_t k = 0; k < layer.pairs.size(); ++k) write_pair(rbase + k, layer.pairs[k], mant_bits);
      if (layer.unit == TransformerOp::Embed) {
        const model::EmbedParams& e = b_.graph.ops[layer.linear_op].embed;
        const auto table = [&](std::uint64_t base, const std::vector<std::int32_t>& values) {
          for (std::size_t k = 0; k < values.size(); ++k) {
            clear_bits(m_.cfg_data_i);
            put_field(m_.cfg_data_i, cp::kTableValue, static_cast<std::uint32_t>(values[k]));
            write(cp::Kind::TableValue, base + k);
          }
        };
        table(wbase, e.tokens);
        table(rbase, e.positions_table);
      }
    }
    if (const auto softmax = rtl_softmax(layers_, b_.graph)) {
      const arith::Exp2Table t = arith::exp2_table(softmax->index_bits, softmax->value_bits, b_.target.format.rounding);
      for (int k = 0; k < (1 << t.index_bits); ++k) {
        clear_bits(m_.cfg_data_i);
        put_field(m_.cfg_data_i, cp::kExp2Entry, t.entry[k]);
        write(cp::Kind::Exp2Entry, static_cast<std::size_t>(k));
      }
    }
  }

  void configure() {
    const RtlLayout layout = rtl_layout(layers_, rows_, lanes_, sequence_);
    const int mant_bits = b_.target.format.scale_mantissa_bits;
    std::size_t wbase = 0, rbase = 0;
    if (layout.use.tokens) configure_sequence(layout, mant_bits);
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const model::AcceleratorLayer& layer = layers_[l];
      if (layer.params) {
        const model::LinearParams& p = *layer.params;
        const arith::Conv2dShape s = rtl_map(layer);
        const std::size_t patch = static_cast<std::size_t>(s.patch()), group_out = static_cast<std::size_t>(s.group_out());
        const std::size_t chunks = rtl_chunks(patch, lanes_), tiles = rtl_chunks(group_out, rows_);
        const int bits = arith::code_bits(p.format);
        for (std::size_t g = 0; g < static_cast<std::size_t>(s.groups); ++g)
          for (std::size_t t = 0; t < tiles; ++t)
            for (std::size_t c = 0; c < chunks; ++c) {
              clear_bits(m_.cfg_data_i);
              for (int r = 0; r < rows_; ++r)
                for (int i = 0; i < lanes_; ++i) {
                  const std::size_t n = t * rows_ + r, k = c * lanes_ + i;
                  if (n < group_out && k < patch)
                    put_bits(m_.cfg_data_i, (r * lanes_ + i) * bits, bits,
                             static_cast<std::uint64_t>(
                                 arith::load_code(p.packed.data(), (g * group_out + n) * patch + k, p.format)));
                }
              write(cp::Kind::WeightWord, wbase++);
            }
        for (int n = 0; n < s.out_c; ++n) write_pair(rbase++, p.requant[n], mant_bits);
      }
      if (layer.unit == model::TransformerOp::RmsNorm) rbase += layer.pairs.size();  // its gains
      std::uint64_t desc[cp::kDescWords] = {};
      for (const auto& [field, value] : layout.descriptors[l])
        for (int b = 0; b < field.width; ++b)
          if ((value >> b) & 1) desc[(field.lsb + b) / 64] |= std::uint64_t{1} << ((field.lsb + b) % 64);
      for (int w = 0; w < cp::kDescWords; ++w) {
        clear_bits(m_.cfg_data_i);
        put_bits(m_.cfg_data_i, 0, cp::kDescWordBits, desc[w]);
        write(cp::Kind::LayerDescriptor, (l << cp::kDescWordIndexBits) | static_cast<std::size_t>(w));
      }
    }
    clear_bits(m_.cfg_data_i);
    put_field(m_.cfg_data_i, cp::kLayerCount, layers_.size());
    put_field(m_.cfg_data_i, cp::kTokenCount, layout.use.tokens);
    write(cp::Kind::LayerCount, 0);
  }

  const model::Bundle& b_;
  const std::vector<model::AcceleratorLayer>& layers_;
  const int rows_, lanes_;
  const RtlSequence sequence_;
  QATHW_RTL_MODEL m_;
  std::unique_ptr<Waveform> fst_;
  std::uint64_t cycles_ = 0;
};

}  // namespace

RtlRun QATHW_RTL_ENTRY(const model::Bundle& bundle, const std::vector<model::AcceleratorLayer>& layers,
                       const std::uint8_t* pixels, std::size_t count, const std::string& fst_path) {
  const auto t0 = std::chrono::steady_clock::now();
  Harness h(bundle, layers);
  if (!fst_path.empty()) h.trace_to(fst_path);
  RtlRun run;
  const std::size_t features = bundle.features();
  std::vector<std::uint64_t> cycles, ends;
  for (std::size_t i = 0; i < count; ++i) {
    run.outputs.push_back(h.run(pixels + i * features, cycles, ends));
    run.layer_end.push_back(ends);
    if (i == 0) run.layer_cycles = cycles;
  }
  h.close_trace();
  run.cycles = h.cycles();
  run.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return run;
}

}  // namespace qathw::rtl

#ifdef QATHW_RTL_SHARED
// The shared object's one exported symbol: the entry point, found with dlsym.
extern "C" __attribute__((visibility("default"))) qathw::rtl::RtlRunFunction* qathw_rtl_entry() {
  return &qathw::rtl::QATHW_RTL_ENTRY;
}
#endif
