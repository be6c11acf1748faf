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
  LayerDescriptor = 2,   // one word of a layer's descriptor (kDescriptorFields)
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

// A layer descriptor: which op the layer runs (kOpcodes), where its input, output and residual
// values lie in the activation memory, its map and window, the address generator's step, its
// static quantizer's pair and its unit's pairs. It is wider than cfg_data_i, so it is written in
// words: cfg_addr_i = layer << kDescWordIndexBits | word, and word w carries descriptor bits
// [w kDescWordBits, (w + 1) kDescWordBits) in cfg_data_i's low kDescWordBits bits.
enum class Opcode : std::uint8_t { Linear = 0, Conv2d = 1, MaxPool = 2, AvgPool = 3, Add = 4 };
struct OpcodeName {
  Opcode op;
  const char* name;  // UpperCamelCase: the package's localparam `Op<name>`
};
inline constexpr OpcodeName kOpcodes[] = {
    {Opcode::Linear, "Linear"}, {Opcode::Conv2d, "Conv2d"}, {Opcode::MaxPool, "MaxPool"},
    {Opcode::AvgPool, "AvgPool"}, {Opcode::Add, "Add"},
};
inline constexpr Field kDescOpcode{"DescOpcode", 0, 3};
inline constexpr Field kDescRelu{"DescRelu", 3, 1};                // ReLU after the layer's unit
inline constexpr Field kDescStatic{"DescStatic", 4, 1};            // kernel layers: the codes by DescQuant*
inline constexpr Field kDescIn{"DescIn", 5, 20};                   // values read (a map: H W C)
inline constexpr Field kDescOut{"DescOut", 25, 20};                // values written
inline constexpr Field kDescWeightBase{"DescWeightBase", 45, 16};  // first weight word
inline constexpr Field kDescRequantBase{"DescRequantBase", 61, 16};  // first requantization pair
inline constexpr Field kDescInputBase{"DescInputBase", 77, 20};    // activation memory: the input
inline constexpr Field kDescOutputBase{"DescOutputBase", 97, 20};  // the output
inline constexpr Field kDescResidualBase{"DescResidualBase", 117, 20};  // add: the second operand
// The map (channels last) and window, as wide as a bundle allows (sides up to 8192, kernels and
// strides up to 256, docs/bundle.md); a linear layer is a 1 x 1 map of `in` channels and a 1 x 1
// kernel; pools have one channel per group.
inline constexpr Field kDescInH{"DescInH", 137, 14};
inline constexpr Field kDescInW{"DescInW", 151, 14};
inline constexpr Field kDescInC{"DescInC", 165, 20};
inline constexpr Field kDescOutH{"DescOutH", 185, 14};
inline constexpr Field kDescOutW{"DescOutW", 199, 14};
inline constexpr Field kDescOutC{"DescOutC", 213, 20};
inline constexpr Field kDescGroups{"DescGroups", 233, 16};
inline constexpr Field kDescGroupIn{"DescGroupIn", 249, 20};   // input channels per group
inline constexpr Field kDescGroupOut{"DescGroupOut", 269, 16};  // output channels per group
inline constexpr Field kDescKernelH{"DescKernelH", 285, 9};
inline constexpr Field kDescKernelW{"DescKernelW", 294, 9};
inline constexpr Field kDescStrideH{"DescStrideH", 303, 9};
inline constexpr Field kDescStrideW{"DescStrideW", 312, 9};
inline constexpr Field kDescPadH{"DescPadH", 321, 8};
inline constexpr Field kDescPadW{"DescPadW", 329, 8};
inline constexpr Field kDescPatch{"DescPatch", 337, 20};  // elements of a patch (pools: of a window)
// The address generator's step: Lanes patch elements as (ky, kx, ci) = (Lanes / (GroupIn
// KernelW), (Lanes / GroupIn) mod KernelW, Lanes mod GroupIn); pools: GroupIn 1.
inline constexpr Field kDescStepY{"DescStepY", 357, 16};
inline constexpr Field kDescStepX{"DescStepX", 373, 8};
inline constexpr Field kDescStepC{"DescStepC", 381, 20};
// Pairs {mantissa, shift}: the static quantizer's 1 / scale; the average pool's 1 / area (A);
// the add's input's (A) and residual's (B). Mantissas of up to arith::kMaxMantissaBits bits.
inline constexpr Field kDescQuantMantissa{"DescQuantMantissa", 401, 31};
inline constexpr Field kDescQuantShift{"DescQuantShift", 432, 6};
inline constexpr Field kDescPairAMantissa{"DescPairAMantissa", 438, 31};
inline constexpr Field kDescPairAShift{"DescPairAShift", 469, 6};
inline constexpr Field kDescPairBMantissa{"DescPairBMantissa", 475, 31};
inline constexpr Field kDescPairBShift{"DescPairBShift", 506, 6};
inline constexpr Field kDescriptorFields[] = {
    kDescOpcode,  kDescRelu,     kDescStatic,   kDescIn,           kDescOut,          kDescWeightBase,
    kDescRequantBase, kDescInputBase, kDescOutputBase, kDescResidualBase, kDescInH,    kDescInW,
    kDescInC,     kDescOutH,     kDescOutW,     kDescOutC,         kDescGroups,       kDescGroupIn,
    kDescGroupOut, kDescKernelH, kDescKernelW,  kDescStrideH,      kDescStrideW,      kDescPadH,
    kDescPadW,    kDescPatch,    kDescStepY,    kDescStepX,        kDescStepC,        kDescQuantMantissa,
    kDescQuantShift, kDescPairAMantissa, kDescPairAShift, kDescPairBMantissa, kDescPairBShift};
inline constexpr int kDescriptorBits = kDescPairBShift.lsb + kDescPairBShift.width;  // 512
inline constexpr int kDescWordBits = 64;
inline constexpr int kDescWordIndexBits = 3;
inline constexpr int kDescWords = (kDescriptorBits + kDescWordBits - 1) / kDescWordBits;  // 8

// A requantization pair: the mantissa in bits [0, MantBits) (MantBits: the target's
// scale.mantissa_bits), the shift right above it in kRequantShiftBits bits.
inline constexpr int kRequantMantissaLsb = 0;
inline constexpr int kRequantShiftBits = 6;  // holds a shift in [0, 63]
constexpr Field requant_mantissa(int mant_bits) { return {"RequantMantissa", kRequantMantissaLsb, mant_bits}; }
constexpr Field requant_shift(int mant_bits) { return {"RequantShift", kRequantMantissaLsb + mant_bits, kRequantShiftBits}; }

// The layer count.
inline constexpr Field kLayerCount{"LayerCount", 0, 8};

// cfg_data_i is as wide as a weight word, and at least this wide: it carries a descriptor word and
// a requantization pair of the widest mantissa.
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
static_assert(kDescWordBits <= kDataMinBits, "a descriptor word must fit the configuration word");
static_assert(kDescWords <= (1 << kDescWordIndexBits), "every descriptor word has an address");
static_assert(kDescPairAMantissa.width >= arith::kMaxMantissaBits, "a pair's mantissa must fit");
static_assert(arith::kMaxMantissaBits + kRequantShiftBits <= kDataMinBits, "a requantization pair must fit");
static_assert(kLayerCount.width <= kDataMinBits, "the layer count must fit");
static_assert(sizeof(kKinds) / sizeof(kKinds[0]) == (1 << kKindBits), "every kind code has a name");

}  // namespace qathw::target::config_port
