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
  RequantPair = 1,       // one requantization pair {shift, mantissa} (an RMSNorm gain pair the same way)
  LayerDescriptor = 2,   // one word of a layer's descriptor (kDescriptorFields)
  LayerCount = 3,        // how many layers the next samples run through, and a sequence's tokens
  TableValue = 4,        // one integer of an embedding table (kTableValue)
  Exp2Entry = 5,         // one entry of the softmax's exp2 table (kExp2Entry)
};
struct KindName {
  Kind kind;
  const char* name;  // UpperCamelCase: the package's localparam `Kind<name>`
};
inline constexpr KindName kKinds[] = {
    {Kind::WeightWord, "WeightWord"}, {Kind::RequantPair, "RequantPair"}, {Kind::LayerDescriptor, "LayerDescriptor"},
    {Kind::LayerCount, "LayerCount"}, {Kind::TableValue, "TableValue"},   {Kind::Exp2Entry, "Exp2Entry"},
};
inline constexpr int kKindBits = 3;   // width of cfg_kind_i
inline constexpr int kAddrBits = 16;  // width of cfg_addr_i: no memory is deeper than 2^16 entries

// A bit field of cfg_data_i: bits [lsb, lsb + width).
struct Field {
  const char* name;  // UpperCamelCase: the package's localparams `<name>Lsb` and `<name>Bits`
  int lsb;
  int width;
};
// The field right above `prev`.
constexpr Field after(const Field& prev, const char* name, int width) { return {name, prev.lsb + prev.width, width}; }

// A layer descriptor: which op the layer runs (kOpcodes), where its input, output and residual
// values lie in the activation memory, its map and window, the address generator's step, its
// static quantizer's pair and its unit's pairs, and the transformer units' fields. It is wider
// than cfg_data_i, so it is written in words: cfg_addr_i = layer << kDescWordIndexBits | word, and
// word w carries descriptor bits [w kDescWordBits, (w + 1) kDescWordBits) in cfg_data_i's low
// kDescWordBits bits. Each field lies right above the one before it.
enum class Opcode : std::uint8_t {
  Linear = 0, Conv2d = 1, MaxPool = 2, AvgPool = 3, Add = 4,
  // The transformer's layers (docs/sim.md, "Transformer layers").
  Embed = 5, RmsNorm = 6, Quantize = 7, SquaredRelu = 8, Scores = 9, Softmax = 10, Attend = 11,
};
struct OpcodeName {
  Opcode op;
  const char* name;  // UpperCamelCase: the package's localparam `Op<name>`
};
inline constexpr OpcodeName kOpcodes[] = {
    {Opcode::Linear, "Linear"}, {Opcode::Conv2d, "Conv2d"},   {Opcode::MaxPool, "MaxPool"},
    {Opcode::AvgPool, "AvgPool"}, {Opcode::Add, "Add"},       {Opcode::Embed, "Embed"},
    {Opcode::RmsNorm, "RmsNorm"}, {Opcode::Quantize, "Quantize"}, {Opcode::SquaredRelu, "SquaredRelu"},
    {Opcode::Scores, "Scores"},   {Opcode::Softmax, "Softmax"}, {Opcode::Attend, "Attend"},
};
inline constexpr Field kDescOpcode{"DescOpcode", 0, 4};
inline constexpr Field kDescRelu = after(kDescOpcode, "DescRelu", 1);      // ReLU after the layer's unit
inline constexpr Field kDescStatic = after(kDescRelu, "DescStatic", 1);    // kernel, quantize: the codes by DescQuant*
inline constexpr Field kDescIn = after(kDescStatic, "DescIn", 20);         // values read per token (a map: H W C)
inline constexpr Field kDescOut = after(kDescIn, "DescOut", 20);           // values written per token
// The first weight word; embed: the token table in the table memory.
inline constexpr Field kDescWeightBase = after(kDescOut, "DescWeightBase", 16);
// The first requantization pair; rms_norm: the gain pairs; embed: the position table.
inline constexpr Field kDescRequantBase = after(kDescWeightBase, "DescRequantBase", 16);
inline constexpr Field kDescInputBase = after(kDescRequantBase, "DescInputBase", 20);    // activation memory: the input
inline constexpr Field kDescOutputBase = after(kDescInputBase, "DescOutputBase", 20);    // the output (a KV cache's row 0)
// add: the second operand; scores: the key cache; attend: the value cache.
inline constexpr Field kDescResidualBase = after(kDescOutputBase, "DescResidualBase", 20);
// The map (channels last) and window, as wide as a bundle allows (sides up to 8192, kernels and
// strides up to 256, docs/bundle.md); a linear layer is a 1 x 1 map of `in` channels and a 1 x 1
// kernel; pools have one channel per group.
inline constexpr Field kDescInH = after(kDescResidualBase, "DescInH", 14);
inline constexpr Field kDescInW = after(kDescInH, "DescInW", 14);
inline constexpr Field kDescInC = after(kDescInW, "DescInC", 20);
inline constexpr Field kDescOutH = after(kDescInC, "DescOutH", 14);
inline constexpr Field kDescOutW = after(kDescOutH, "DescOutW", 14);
inline constexpr Field kDescOutC = after(kDescOutW, "DescOutC", 20);
// conv2d: groups; quantize: scales per token; scores, softmax, attend: heads.
inline constexpr Field kDescGroups = after(kDescOutC, "DescGroups", 16);
inline constexpr Field kDescGroupIn = after(kDescGroups, "DescGroupIn", 20);    // input channels per group
inline constexpr Field kDescGroupOut = after(kDescGroupIn, "DescGroupOut", 16);  // output channels per group
inline constexpr Field kDescKernelH = after(kDescGroupOut, "DescKernelH", 9);
inline constexpr Field kDescKernelW = after(kDescKernelH, "DescKernelW", 9);
inline constexpr Field kDescStrideH = after(kDescKernelW, "DescStrideH", 9);
inline constexpr Field kDescStrideW = after(kDescStrideH, "DescStrideW", 9);
inline constexpr Field kDescPadH = after(kDescStrideW, "DescPadH", 8);
inline constexpr Field kDescPadW = after(kDescPadH, "DescPadW", 8);
inline constexpr Field kDescPatch = after(kDescPadW, "DescPatch", 20);  // elements of a patch (pools: of a window)
// The address generator's step: Lanes patch elements as (ky, kx, ci) = (Lanes / (GroupIn
// KernelW), (Lanes / GroupIn) mod KernelW, Lanes mod GroupIn); pools: GroupIn 1.
inline constexpr Field kDescStepY = after(kDescPatch, "DescStepY", 16);
inline constexpr Field kDescStepX = after(kDescStepY, "DescStepX", 8);
inline constexpr Field kDescStepC = after(kDescStepX, "DescStepC", 20);
// Pairs {mantissa, shift}: the static quantizer's 1 / scale (quantize: the base its factors
// multiply); the average pool's 1 / area (A); the add's and the embedding's input's (A) and
// residual's (B); the scores' static pair (A). Mantissas of up to arith::kMaxMantissaBits bits.
inline constexpr Field kDescQuantMantissa = after(kDescStepC, "DescQuantMantissa", 31);
inline constexpr Field kDescQuantShift = after(kDescQuantMantissa, "DescQuantShift", 6);
inline constexpr Field kDescPairAMantissa = after(kDescQuantShift, "DescPairAMantissa", 31);
inline constexpr Field kDescPairAShift = after(kDescPairAMantissa, "DescPairAShift", 6);
inline constexpr Field kDescPairBMantissa = after(kDescPairAShift, "DescPairBMantissa", 31);
inline constexpr Field kDescPairBShift = after(kDescPairBMantissa, "DescPairBShift", 6);
// The transformer's layers (docs/rtl.md, "Transformer layers").
inline constexpr Field kDescCodesInput = after(kDescPairBShift, "DescCodesInput", 1);  // linear: reads a quantize layer's codes
inline constexpr Field kDescCache = after(kDescCodesInput, "DescCache", 1);  // quantize: token t's codes to row t
inline constexpr Field kDescEps = after(kDescCache, "DescEps", 64);          // rms_norm: eps, in units of x^2
inline constexpr Field kDescNormBits = after(kDescEps, "DescNormBits", 6);   // rms_norm: the inputs' saturation width
inline constexpr Field kDescShift = after(kDescNormBits, "DescShift", 6);    // squared_relu
inline constexpr Field kDescIndexBits = after(kDescShift, "DescIndexBits", 4);  // softmax: the exp2 table's L
inline constexpr Field kDescProbBits = after(kDescIndexBits, "DescProbBits", 4);  // softmax: the codes' bits
// quantize: the features of a group; scores, attend: of a head.
inline constexpr Field kDescHeadDim = after(kDescProbBits, "DescHeadDim", 20);
// quantize (static), add, scores: how many factors multiply the last pair, which layers' absmax
// registers they are, and (bit i) whether factor i's layer has one register per head.
inline constexpr Field kDescFactorCount = after(kDescHeadDim, "DescFactorCount", 4);
inline constexpr Field kDescFactorHeads = after(kDescFactorCount, "DescFactorHeads", 8);
inline constexpr Field kDescFactor0 = after(kDescFactorHeads, "DescFactor0", 8);
inline constexpr Field kDescFactor1 = after(kDescFactor0, "DescFactor1", 8);
inline constexpr Field kDescFactor2 = after(kDescFactor1, "DescFactor2", 8);
inline constexpr Field kDescFactor3 = after(kDescFactor2, "DescFactor3", 8);
inline constexpr Field kDescFactor4 = after(kDescFactor3, "DescFactor4", 8);
inline constexpr Field kDescFactor5 = after(kDescFactor4, "DescFactor5", 8);
inline constexpr Field kDescFactor6 = after(kDescFactor5, "DescFactor6", 8);
inline constexpr Field kDescFactor7 = after(kDescFactor6, "DescFactor7", 8);
inline constexpr Field kDescFactors[] = {kDescFactor0, kDescFactor1, kDescFactor2, kDescFactor3,
                                         kDescFactor4, kDescFactor5, kDescFactor6, kDescFactor7};
inline constexpr int kMaxFactors = 8;
inline constexpr Field kDescriptorFields[] = {
    kDescOpcode,  kDescRelu,     kDescStatic,   kDescIn,           kDescOut,          kDescWeightBase,
    kDescRequantBase, kDescInputBase, kDescOutputBase, kDescResidualBase, kDescInH,    kDescInW,
    kDescInC,     kDescOutH,     kDescOutW,     kDescOutC,         kDescGroups,       kDescGroupIn,
    kDescGroupOut, kDescKernelH, kDescKernelW,  kDescStrideH,      kDescStrideW,      kDescPadH,
    kDescPadW,    kDescPatch,    kDescStepY,    kDescStepX,        kDescStepC,        kDescQuantMantissa,
    kDescQuantShift, kDescPairAMantissa, kDescPairAShift, kDescPairBMantissa, kDescPairBShift,
    kDescCodesInput, kDescCache, kDescEps,      kDescNormBits,     kDescShift,        kDescIndexBits,
    kDescProbBits, kDescHeadDim, kDescFactorCount, kDescFactorHeads, kDescFactor0,    kDescFactor1,
    kDescFactor2, kDescFactor3,  kDescFactor4,  kDescFactor5,      kDescFactor6,      kDescFactor7};
inline constexpr int kDescriptorBits = kDescFactor7.lsb + kDescFactor7.width;
inline constexpr int kDescWordBits = 64;
inline constexpr int kDescWordIndexBits = 4;
inline constexpr int kDescWords = (kDescriptorBits + kDescWordBits - 1) / kDescWordBits;

// A requantization pair: the mantissa in bits [0, MantBits) (MantBits: the target's
// scale.mantissa_bits), the shift right above it in kRequantShiftBits bits.
inline constexpr int kRequantMantissaLsb = 0;
inline constexpr int kRequantShiftBits = 6;  // holds a shift in [0, 63]
constexpr Field requant_mantissa(int mant_bits) { return {"RequantMantissa", kRequantMantissaLsb, mant_bits}; }
constexpr Field requant_shift(int mant_bits) { return {"RequantShift", kRequantMantissaLsb + mant_bits, kRequantShiftBits}; }

// The layer count, and a sequence's tokens (0: an image).
inline constexpr Field kLayerCount{"LayerCount", 0, 8};
inline constexpr Field kTokenCount = after(kLayerCount, "TokenCount", 16);
// An embedding table's integer (two's complement, the accumulator's width at most), at cfg_addr_i.
inline constexpr Field kTableValue{"TableValue", 0, 32};
// An exp2 table entry (arith::exp2_table: 2^value_bits at most, value_bits <= 24), index cfg_addr_i.
inline constexpr Field kExp2Entry{"Exp2Entry", 0, 25};

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
static_assert(kTokenCount.lsb + kTokenCount.width <= kDataMinBits, "the layer and token counts must fit");
static_assert(kTableValue.width <= kDataMinBits && kExp2Entry.width <= kDataMinBits, "a table value must fit");
static_assert(sizeof(kKinds) / sizeof(kKinds[0]) <= (1 << kKindBits), "every kind has a code");

}  // namespace qathw::target::config_port
