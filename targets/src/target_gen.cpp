#include "qathw/target/target_gen.h"

#include "qathw/target/config_port.h"
#include "qathw/target/rtl_memories.h"

#include <algorithm>
#include <cctype>
#include <sstream>
#include <stdexcept>

namespace qathw::target {
namespace {

std::string_view cpp_enumerator(arith::WeightFormat v) {
  return v == arith::WeightFormat::Int4 ? "arith::WeightFormat::Int4" : "arith::WeightFormat::Ternary";
}
std::string_view cpp_enumerator(arith::ActQuantizer v) {
  return v == arith::ActQuantizer::StaticPerTensor ? "arith::ActQuantizer::StaticPerTensor"
                                                   : "arith::ActQuantizer::DynamicPerTokenAbsmax";
}
std::string_view cpp_enumerator(arith::Rounding v) {
  return v == arith::Rounding::HalfEven ? "arith::Rounding::HalfEven" : "arith::Rounding::HalfAwayFromZero";
}
std::string_view cpp_enumerator(arith::Overflow v) {
  return v == arith::Overflow::Wrap ? "arith::Overflow::Wrap" : "arith::Overflow::Saturate";
}

// The first line of every generated file.
std::string banner(const TargetSpec& spec, std::string_view comment) {
  return std::string(comment) + " Generated from " + spec.origin + " (target " + spec.name + ", hash " +
         content_hash(spec) + ") by qathw-target-gen. Do not edit.\n";
}

bool is_cmake_identifier(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  return true;
}

}  // namespace

std::vector<RtlParameter> rtl_parameters(const TargetSpec& spec) {
  const arith::Format& f = spec.format;
  return {
      {"Rows", spec.array.rows},
      {"Lanes", spec.array.lanes},
      {"ActBits", f.act_bits},
      {"AccBits", f.acc_bits},
      {"MantBits", f.scale_mantissa_bits},
      {"ShiftMin", f.scale_shift_min},
      {"ShiftMax", f.scale_shift_max},
      {"WeightInt4", f.weights == arith::WeightFormat::Int4 ? 1 : 0},
      {"Saturate", f.overflow == arith::Overflow::Saturate ? 1 : 0},
      {"HalfEven", f.rounding == arith::Rounding::HalfEven ? 1 : 0},
  };
}

std::vector<std::string> verilator_parameter_args(const TargetSpec& spec) {
  std::vector<std::string> args;
  for (const RtlParameter& p : rtl_parameters(spec)) args.push_back("-G" + p.name + "=" + std::to_string(p.value));
  return args;
}

std::vector<RtlParameter> rtl_memory_parameters(const TargetSpec& spec) {
  const RtlMemories m = rtl_memories(spec);
  return {{"MaxLayers", m.max_layers},
          {"ActWords", m.act_words},
          {"CodeDepth", m.code_depth},
          {"WeightWords", m.weight_words},
          {"RequantDepth", m.requant_depth},
          {"TableDepth", m.table_depth},
          {"MaxGroups", m.max_groups}};
}

std::vector<std::string> verilator_memory_args(const TargetSpec& spec) {
  std::vector<std::string> args;
  for (const RtlParameter& p : rtl_memory_parameters(spec))
    args.push_back("-G" + p.name + "=" + std::to_string(p.value));
  return args;
}

std::vector<RtlParameter> vector_unit_parameters(const TargetSpec& spec) {
  const arith::VectorUnit& u = spec.vector_unit;
  return {{"VecLanes", u.lanes},
          {"VecOperandBits", u.operand_bits},
          {"VecAccBits", u.acc_bits},
          {"VecSaturate", u.overflow == arith::Overflow::Saturate ? 1 : 0}};
}

std::string cmake_variable_suffix(const std::string& rtl_name) {
  std::string out;
  for (std::size_t i = 0; i < rtl_name.size(); ++i) {
    const char c = rtl_name[i];
    if (i > 0 && std::isupper(static_cast<unsigned char>(c))) out += '_';
    out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

std::string identifier(const TargetSpec& spec) {
  std::string id = spec.name;
  for (char& c : id)
    if (c == '-') c = '_';
  return id;
}

std::string sv_package(const TargetSpec& spec) {
  const arith::Format& f = spec.format;
  std::ostringstream out;
  // A user reads the constants it needs; Verilator's -Wall would flag every one it leaves unread.
  out << banner(spec, "//") << "package qathw_target_" << identifier(spec) << "_pkg;\n\n"
      << "  /* verilator lint_off UNUSEDPARAM */\n\n"
      << "  // RTL parameters (the modules' parameters of the same names)\n";
  for (const RtlParameter& p : rtl_parameters(spec))
    out << "  localparam int " << p.name << " = " << p.value << ";\n";
  out << "\n  // Derived values\n"
      << "  localparam int ActQMax = " << arith::signed_max(f.act_bits) << ";  // largest activation code\n"
      << "  localparam int ShiftBits = " << std::max(1, arith::bit_length(static_cast<std::uint64_t>(f.scale_shift_max)))
      << ";  // width of a scale shift in [0, ShiftMax]\n"
      << "\n  /* verilator lint_on UNUSEDPARAM */\n\nendpackage\n";
  return out.str();
}

std::string cmake_fragment(const TargetSpec& spec, const std::string& prefix) {
  if (!is_cmake_identifier(prefix))
    throw std::invalid_argument("CMake prefix '" + prefix + "' is not an identifier ([A-Za-z_][A-Za-z0-9_]*)");
  std::ostringstream out;
  std::string names = prefix + "_NAME;" + prefix + "_HASH";
  out << banner(spec, "#") << "set(" << prefix << "_NAME \"" << spec.name << "\")\n"
      << "set(" << prefix << "_HASH \"" << content_hash(spec) << "\")\n";
  std::string gargs;
  for (const RtlParameter& p : rtl_parameters(spec)) {
    const std::string var = prefix + "_" + cmake_variable_suffix(p.name);
    out << "set(" << var << " " << p.value << ")\n";
    names += ";" + var;
  }
  for (const std::string& a : verilator_parameter_args(spec)) gargs += (gargs.empty() ? "" : ";") + a;
  out << "set(" << prefix << "_VERILATOR_ARGS \"" << gargs << "\")\n";
  names += ";" + prefix + "_VERILATOR_ARGS";
  std::string margs;
  for (const std::string& a : verilator_memory_args(spec)) margs += (margs.empty() ? "" : ";") + a;
  out << "set(" << prefix << "_MEMORY_ARGS \"" << margs << "\")\n";
  names += ";" + prefix + "_MEMORY_ARGS";
  std::string vargs;
  for (const RtlParameter& p : vector_unit_parameters(spec))
    vargs += (vargs.empty() ? "" : ";") + ("-G" + p.name + "=" + std::to_string(p.value));
  out << "set(" << prefix << "_VECTOR_ARGS \"" << vargs << "\")\n";
  names += ";" + prefix + "_VECTOR_ARGS";
  out << "set(" << prefix << "_VARIABLES \"" << names << "\")\n";
  return out.str();
}

std::string cpp_header(const TargetSpec& spec) {
  const arith::Format& f = spec.format;
  std::ostringstream out;
  out << banner(spec, "//") << "#pragma once\n\n#include \"qathw/arith/core.h\"\n\n"
      << "namespace qathw::target::generated {\n\n"
      << "struct Target_" << identifier(spec) << " {\n";
  for (const RtlParameter& p : rtl_parameters(spec))
    out << "  static constexpr int k" << p.name << " = " << p.value << ";\n";
  out << "  static constexpr arith::Format format() {\n"
      << "    arith::Format f;\n"
      << "    f.weights = " << cpp_enumerator(f.weights) << ";\n"
      << "    f.act_bits = " << f.act_bits << ";\n"
      << "    f.act_quantizer = " << cpp_enumerator(f.act_quantizer) << ";\n"
      << "    f.rounding = " << cpp_enumerator(f.rounding) << ";\n"
      << "    f.acc_bits = " << f.acc_bits << ";\n"
      << "    f.overflow = " << cpp_enumerator(f.overflow) << ";\n"
      << "    f.scale_mantissa_bits = " << f.scale_mantissa_bits << ";\n"
      << "    f.scale_shift_min = " << f.scale_shift_min << ";\n"
      << "    f.scale_shift_max = " << f.scale_shift_max << ";\n"
      << "    return f;\n"
      << "  }\n"
      << "  static constexpr arith::VectorUnit vector_unit() {\n"
      << "    arith::VectorUnit u;\n"
      << "    u.lanes = " << spec.vector_unit.lanes << ";\n"
      << "    u.operand_bits = " << spec.vector_unit.operand_bits << ";\n"
      << "    u.acc_bits = " << spec.vector_unit.acc_bits << ";\n"
      << "    u.overflow = " << cpp_enumerator(spec.vector_unit.overflow) << ";\n"
      << "    return u;\n"
      << "  }\n"
      << "};\n\n"
      << "}  // namespace qathw::target::generated\n";
  return out.str();
}

std::string config_port_sv_package() {
  namespace cp = config_port;
  std::ostringstream out;
  out << "// Generated from qathw/target/config_port.h by qathw-target-gen. Do not edit.\n"
      << "// The accelerator's configuration port (qathw_accel: cfg_kind_i, cfg_addr_i, cfg_data_i).\n"
      << "// Checked in as rtl/top/qathw_cfg_pkg.sv; qathw_accel.sv includes it, so the accelerator\n"
      << "// elaborates, lints and synthesizes on its own. The guard allows a build to list it too.\n"
      << "`ifndef QATHW_CFG_PKG_SV\n"
      << "`define QATHW_CFG_PKG_SV\n"
      << "package qathw_cfg_pkg;\n\n"
      << "  /* verilator lint_off UNUSEDPARAM */\n\n"
      << "  localparam int KindBits = " << cp::kKindBits << ";  // width of cfg_kind_i\n"
      << "  localparam int AddrBits = " << cp::kAddrBits << ";  // width of cfg_addr_i\n\n"
      << "  // What one write loads (cfg_kind_i)\n";
  for (const cp::KindName& k : cp::kKinds)
    out << "  localparam logic [KindBits-1:0] Kind" << k.name << " = KindBits'(" << static_cast<int>(k.kind)
        << ");\n";
  out << "\n  // A layer's op (the descriptor's DescOpcode)\n";
  for (const cp::OpcodeName& o : cp::kOpcodes)
    out << "  localparam int Op" << o.name << " = " << static_cast<int>(o.op) << ";\n";
  out << "\n  // A layer descriptor: descriptor[<Field>Lsb +: <Field>Bits], written in DescWords words of\n"
      << "  // DescWordBits bits (cfg_addr_i = layer << DescWordIndexBits | word)\n";
  for (const cp::Field& f : cp::kDescriptorFields)
    out << "  localparam int " << f.name << "Lsb = " << f.lsb << ";\n"
        << "  localparam int " << f.name << "Bits = " << f.width << ";\n";
  out << "  localparam int DescriptorBits = " << cp::kDescriptorBits << ";\n"
      << "  localparam int DescWordBits = " << cp::kDescWordBits << ";\n"
      << "  localparam int DescWordIndexBits = " << cp::kDescWordIndexBits << ";\n"
      << "  localparam int DescWords = " << cp::kDescWords << ";\n\n"
      << "  // A requantization pair: the mantissa in [RequantMantissaLsb +: MantBits], the shift right above it\n"
      << "  localparam int RequantMantissaLsb = " << cp::kRequantMantissaLsb << ";\n"
      << "  localparam int RequantShiftBits = " << cp::kRequantShiftBits << ";\n\n"
      << "  // The layer count and a sequence's tokens\n"
      << "  localparam int " << cp::kLayerCount.name << "Lsb = " << cp::kLayerCount.lsb << ";\n"
      << "  localparam int " << cp::kLayerCount.name << "Bits = " << cp::kLayerCount.width << ";\n"
      << "  localparam int " << cp::kTokenCount.name << "Lsb = " << cp::kTokenCount.lsb << ";\n"
      << "  localparam int " << cp::kTokenCount.name << "Bits = " << cp::kTokenCount.width << ";\n\n"
      << "  // An embedding table's integer, an exp2 table entry\n"
      << "  localparam int " << cp::kTableValue.name << "Lsb = " << cp::kTableValue.lsb << ";\n"
      << "  localparam int " << cp::kTableValue.name << "Bits = " << cp::kTableValue.width << ";\n"
      << "  localparam int " << cp::kExp2Entry.name << "Lsb = " << cp::kExp2Entry.lsb << ";\n"
      << "  localparam int " << cp::kExp2Entry.name << "Bits = " << cp::kExp2Entry.width << ";\n\n"
      << "  // cfg_data_i is as wide as a weight word, and at least DataMinBits wide\n"
      << "  localparam int DataMinBits = " << cp::kDataMinBits << ";\n"
      << "\n  /* verilator lint_on UNUSEDPARAM */\n\nendpackage\n`endif  // QATHW_CFG_PKG_SV\n";
  return out.str();
}

}  // namespace qathw::target
