// The accelerator's configuration port (rtl/top/qathw_accel.sv: cfg_we_i, cfg_kind_i, cfg_addr_i,
// cfg_data_i), written down once. The RTL reads the layout from the SystemVerilog package
// qathw_cfg_pkg, which target::config_port_sv_package() (qathw/target/target_gen.h) generates
// from this table; the Verilator harness (rtl/harness/src/rtl_model.cpp) packs its writes with
// the same table. Header-only: the harness is also built as a shared object that links nothing
// of qat-hw.
#pragma once

#include <cstdint>

#include "qathw/arith/core.h"

namespace qathw::target::config_port {

// What one write loads (cfg_kind_i), and the SystemVerilog names of the kind codes.
enum class Kind : std::uint8_t {
  WeightWord = 0,        // one weight word: Rows x Lanes codes, row r's lane i at (r * Lanes + i) * code bits
  RequantPair = 1,       // one requantization pair {shift, mantissa}
  LayerDescriptor = 2,   // one layer's descriptor (kDescriptorFields)
  LayerCount = 3,        // how many layers the next samples run through
};
struct KindName {
  Kind kind;
  const char* name;  // UpperCamelCase: the package's localparam `Kind<name>`
};
inline constexpr KindName kKinds[] = {
    {Kind::WeightWord, "WeightWord"},
    {Kind::RequantPair, "RequantPair"},
    {Kind::LayerDescriptor, "LayerDescriptor"},
    {Kind::LayerCount, "LayerCount"},
};
inline constexpr int kKindBits = 2;   // width of cfg_kind_i
inline constexpr int kAddrBits = 16;  // width of cfg_addr_i: no memory is deeper than 2^16 entries

// A bit field of cfg_data_i: bits [lsb, lsb + width).
struct Field {
  const char* name;  // UpperCamelCase: the package's localparams `<name>Lsb` and `<name>Bits`
  int lsb;
  int width;
};

// A layer descriptor: the layer's input and output widths, whether a relu follows, and where its
// weight words and requantization pairs start in their memories.
inline constexpr Field kDescIn{"DescIn", 0, 16};
inline constexpr Field kDescOut{"DescOut", 16, 16};
inline constexpr Field kDescRelu{"DescRelu", 32, 1};
inline constexpr Field kDescWeightBase{"DescWeightBase", 33, 16};
inline constexpr Field kDescRequantBase{"DescRequantBase", 49, 16};
inline constexpr Field kDescriptorFields[] = {kDescIn, kDescOut, kDescRelu, kDescWeightBase, kDescRequantBase};
inline constexpr int kDescriptorBits = kDescRequantBase.lsb + kDescRequantBase.width;  // 65

// A requantization pair: the mantissa in bits [0, MantBits) (MantBits: the target's
// scale.mantissa_bits), the shift right above it in kRequantShiftBits bits.
inline constexpr int kRequantMantissaLsb = 0;
inline constexpr int kRequantShiftBits = 6;  // holds a shift in [0, 63]
constexpr Field requant_mantissa(int mant_bits) { return {"RequantMantissa", kRequantMantissaLsb, mant_bits}; }
constexpr Field requant_shift(int mant_bits) { return {"RequantShift", kRequantMantissaLsb + mant_bits, kRequantShiftBits}; }

// The layer count.
inline constexpr Field kLayerCount{"LayerCount", 0, 8};

// cfg_data_i is as wide as a weight word, and at least this wide: it carries a descriptor and a
// requantization pair of the widest mantissa (the descriptor's 65 bits rounded up to bytes).
inline constexpr int kDataMinBits = 72;
constexpr int data_bits(int weight_word_bits) { return weight_word_bits > kDataMinBits ? weight_word_bits : kDataMinBits; }

constexpr bool fields_disjoint() {
  constexpr int n = static_cast<int>(sizeof(kDescriptorFields) / sizeof(kDescriptorFields[0]));
  for (int a = 0; a < n; ++a)
    for (int b = a + 1; b < n; ++b) {
      const Field& x = kDescriptorFields[a];
      const Field& y = kDescriptorFields[b];
      if (x.lsb < y.lsb + y.width && y.lsb < x.lsb + x.width) return false;
    }
  return true;
}
static_assert(fields_disjoint(), "descriptor fields overlap");
static_assert(kDescriptorBits <= kDataMinBits, "a descriptor must fit the configuration word");
static_assert(arith::kMaxMantissaBits + kRequantShiftBits <= kDataMinBits, "a requantization pair must fit");
static_assert(kLayerCount.width <= kDataMinBits, "the layer count must fit");
static_assert(sizeof(kKinds) / sizeof(kKinds[0]) == (1 << kKindBits), "every kind code has a name");

}  // namespace qathw::target::config_port
