// The generator of every parameter file derived from a target (qathw/target/target_gen.h).
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "qathw/arith/transformer.h"
#include "qathw/target/config_port.h"
#include "qathw/target/rtl_memories.h"
#include "qathw/target/target_gen.h"
// Written at configure time by the configure-time build of the same generator (cmake/TargetParams.cmake).
#include "qathw_target_int4_fpga.h"
#include "qathw_target_ternary_asic.h"

namespace qathw::target {
namespace {

namespace fs = std::filesystem;

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  EXPECT_TRUE(in) << "cannot read " << p;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::pair<std::string, std::int64_t>> pairs(const std::vector<RtlParameter>& params) {
  std::vector<std::pair<std::string, std::int64_t>> out;
  for (const auto& p : params) out.emplace_back(p.name, p.value);
  return out;
}

TEST(RtlParameters, BuiltinsInTheirFixedOrder) {
  const std::vector<std::pair<std::string, std::int64_t>> ternary = {
      {"Rows", 16},    {"Lanes", 16},    {"ActBits", 8},    {"AccBits", 24},  {"MantBits", 16},
      {"ShiftMin", 0}, {"ShiftMax", 62}, {"WeightInt4", 0}, {"Saturate", 1},  {"HalfEven", 0}};
  EXPECT_EQ(pairs(rtl_parameters(builtin_target("ternary-asic"))), ternary);
  const std::vector<std::pair<std::string, std::int64_t>> int4 = {
      {"Rows", 8},     {"Lanes", 32},    {"ActBits", 8},    {"AccBits", 32},  {"MantBits", 18},
      {"ShiftMin", 0}, {"ShiftMax", 62}, {"WeightInt4", 1}, {"Saturate", 0},  {"HalfEven", 1}};
  EXPECT_EQ(pairs(rtl_parameters(builtin_target("int4-fpga"))), int4);
}

// Each generated name is a parameter of the tops that Verilator (qathw_accel) and yosys
// (qathw_datapath) elaborate: a renamed RTL parameter cannot go unnoticed.
TEST(RtlParameters, NameParametersOfTheRtlTops) {
  for (const char* top : {"top/qathw_accel.sv", "top/qathw_datapath.sv"}) {
    const std::string text = read_text(fs::path(QATHW_RTL_DIR) / top);
    for (const RtlParameter& p : rtl_parameters(builtin_target("ternary-asic"))) {
      const std::regex declared("parameter\\s+int\\s+" + p.name + "\\s*=");
      EXPECT_TRUE(std::regex_search(text, declared)) << top << " has no parameter " << p.name;
    }
  }
}

TEST(RtlParameters, VerilatorArgsAreTheSameList) {
  const TargetSpec s = builtin_target("int4-fpga");
  const std::vector<std::string> args = verilator_parameter_args(s);
  const std::vector<RtlParameter> params = rtl_parameters(s);
  ASSERT_EQ(args.size(), params.size());
  for (std::size_t i = 0; i < args.size(); ++i)
    EXPECT_EQ(args[i], "-G" + params[i].name + "=" + std::to_string(params[i].value));
  EXPECT_EQ(args.front(), "-GRows=8");
}

TEST(CmakeFragment, SetsEveryParameterUnderThePrefix) {
  EXPECT_EQ(cmake_variable_suffix("Rows"), "ROWS");
  EXPECT_EQ(cmake_variable_suffix("ActBits"), "ACT_BITS");
  EXPECT_EQ(cmake_variable_suffix("WeightInt4"), "WEIGHT_INT4");
  EXPECT_EQ(cmake_variable_suffix("HalfEven"), "HALF_EVEN");
  const std::string text = cmake_fragment(builtin_target("ternary-asic"), "P");
  for (const char* line : {"set(P_NAME \"ternary-asic\")\n", "set(P_ROWS 16)\n", "set(P_LANES 16)\n",
                           "set(P_ACT_BITS 8)\n", "set(P_ACC_BITS 24)\n", "set(P_MANT_BITS 16)\n",
                           "set(P_SHIFT_MIN 0)\n", "set(P_SHIFT_MAX 62)\n", "set(P_WEIGHT_INT4 0)\n",
                           "set(P_SATURATE 1)\n", "set(P_HALF_EVEN 0)\n"})
    EXPECT_NE(text.find(line), std::string::npos) << "no " << line << "in:\n" << text;
  EXPECT_NE(text.find("set(P_VERILATOR_ARGS \"-GRows=16;-GLanes=16;"), std::string::npos) << text;
  EXPECT_NE(text.find("set(P_VARIABLES \"P_NAME;P_HASH;P_ROWS;P_LANES;"), std::string::npos) << text;
  // The transformer units' vector unit: the target's (ternary-asic: arith's defaults).
  const arith::VectorUnit u{};
  const std::string vector = "set(P_VECTOR_ARGS \"-GVecLanes=" + std::to_string(u.lanes) + ";-GVecOperandBits=" +
                             std::to_string(u.operand_bits) + ";-GVecAccBits=" + std::to_string(u.acc_bits) +
                             ";-GVecSaturate=" + (u.overflow == arith::Overflow::Saturate ? "1" : "0") + "\")\n";
  EXPECT_NE(text.find(vector), std::string::npos) << text;
  EXPECT_NE(text.find(";P_VECTOR_ARGS\")"), std::string::npos) << text;
  TargetSpec narrow = builtin_target("ternary-asic");
  narrow.vector_unit = arith::VectorUnit{5, 6, 12, arith::Overflow::Wrap};
  EXPECT_NE(cmake_fragment(narrow, "P").find(
                "set(P_VECTOR_ARGS \"-GVecLanes=5;-GVecOperandBits=6;-GVecAccBits=12;-GVecSaturate=0\")\n"),
            std::string::npos);
  EXPECT_THROW(cmake_fragment(builtin_target("ternary-asic"), "9P"), std::invalid_argument);
  EXPECT_THROW(cmake_fragment(builtin_target("ternary-asic"), "P-Q"), std::invalid_argument);
}

TEST(SvPackage, HoldsTheParametersAndDerivedWidths) {
  const std::string text = sv_package(builtin_target("int4-fpga"));
  for (const char* line : {"package qathw_target_int4_fpga_pkg;\n", "  localparam int Rows = 8;\n",
                           "  localparam int Lanes = 32;\n", "  localparam int WeightInt4 = 1;\n",
                           "  localparam int HalfEven = 1;\n", "  localparam int ActQMax = 127;",
                           "  localparam int ShiftBits = 6;", "endpackage\n"})
    EXPECT_NE(text.find(line), std::string::npos) << "no " << line << "in:\n" << text;
}

TEST(CppHeader, CompiledConstantsEqualTheSpec) {
  using generated::Target_int4_fpga;
  using generated::Target_ternary_asic;
  const TargetSpec t = builtin_target("ternary-asic");
  const TargetSpec i = builtin_target("int4-fpga");
  static_assert(Target_ternary_asic::format().acc_bits == Target_ternary_asic::kAccBits);
  EXPECT_EQ(Target_ternary_asic::kRows, t.array.rows);
  EXPECT_EQ(Target_ternary_asic::kLanes, t.array.lanes);
  EXPECT_EQ(Target_int4_fpga::kRows, i.array.rows);
  EXPECT_EQ(Target_int4_fpga::kLanes, i.array.lanes);
  for (const auto& [f, spec] : {std::pair{Target_ternary_asic::format(), t}, std::pair{Target_int4_fpga::format(), i}}) {
    EXPECT_EQ(f.weights, spec.format.weights);
    EXPECT_EQ(f.act_bits, spec.format.act_bits);
    EXPECT_EQ(f.act_quantizer, spec.format.act_quantizer);
    EXPECT_EQ(f.rounding, spec.format.rounding);
    EXPECT_EQ(f.acc_bits, spec.format.acc_bits);
    EXPECT_EQ(f.overflow, spec.format.overflow);
    EXPECT_EQ(f.scale_mantissa_bits, spec.format.scale_mantissa_bits);
    EXPECT_EQ(f.scale_shift_min, spec.format.scale_shift_min);
    EXPECT_EQ(f.scale_shift_max, spec.format.scale_shift_max);
  }
}

// The configure-time build and the library write the same text for the same file.
TEST(CppHeader, ConfigureTimeOutputEqualsTheLibrarys) {
  for (const std::string name : {"ternary-asic", "int4-fpga"}) {
    const TargetSpec s = load_target_file(fs::path(QATHW_BUILTIN_TARGETS_DIR) / (name + ".toml"));
    const fs::path dir(QATHW_GENERATED_TARGETS_DIR);
    EXPECT_EQ(read_text(dir / ("qathw_target_" + identifier(s) + ".h")), cpp_header(s)) << name;
    EXPECT_EQ(read_text(dir / ("qathw_target_" + identifier(s) + "_pkg.sv")), sv_package(s)) << name;
  }
}

// Every integer localparam of a generated package: name -> value.
std::vector<std::pair<std::string, std::int64_t>> sv_localparams(const std::string& text) {
  std::vector<std::pair<std::string, std::int64_t>> out;
  const std::regex param(R"(localparam (?:int|logic \[KindBits-1:0\]) (\w+) = (?:KindBits'\()?(-?\d+)\)?;)");
  for (std::sregex_iterator it(text.begin(), text.end(), param), end; it != end; ++it)
    out.emplace_back((*it)[1].str(), std::stoll((*it)[2].str()));
  return out;
}

// The configuration port's package holds exactly the table of qathw/target/config_port.h.
TEST(ConfigPortPackage, HoldsTheTable) {
  namespace cp = config_port;
  std::vector<std::pair<std::string, std::int64_t>> expected = {{"KindBits", cp::kKindBits},
                                                                 {"AddrBits", cp::kAddrBits}};
  for (const cp::KindName& k : cp::kKinds) expected.emplace_back(std::string("Kind") + k.name, static_cast<int>(k.kind));
  for (const cp::OpcodeName& o : cp::kOpcodes) expected.emplace_back(std::string("Op") + o.name, static_cast<int>(o.op));
  for (const cp::Field& f : cp::kDescriptorFields) {
    expected.emplace_back(std::string(f.name) + "Lsb", f.lsb);
    expected.emplace_back(std::string(f.name) + "Bits", f.width);
  }
  expected.emplace_back("DescriptorBits", cp::kDescriptorBits);
  expected.emplace_back("DescWordBits", cp::kDescWordBits);
  expected.emplace_back("DescWordIndexBits", cp::kDescWordIndexBits);
  expected.emplace_back("DescWords", cp::kDescWords);
  expected.emplace_back("RequantMantissaLsb", cp::kRequantMantissaLsb);
  expected.emplace_back("RequantShiftBits", cp::kRequantShiftBits);
  expected.emplace_back("LayerCountLsb", cp::kLayerCount.lsb);
  expected.emplace_back("LayerCountBits", cp::kLayerCount.width);
  expected.emplace_back("TokenCountLsb", cp::kTokenCount.lsb);
  expected.emplace_back("TokenCountBits", cp::kTokenCount.width);
  expected.emplace_back("TableValueLsb", cp::kTableValue.lsb);
  expected.emplace_back("TableValueBits", cp::kTableValue.width);
  expected.emplace_back("Exp2EntryLsb", cp::kExp2Entry.lsb);
  expected.emplace_back("Exp2EntryBits", cp::kExp2Entry.width);
  expected.emplace_back("DataMinBits", cp::kDataMinBits);
  const std::string text = config_port_sv_package();
  EXPECT_EQ(sv_localparams(text), expected) << text;
  EXPECT_NE(text.find("package qathw_cfg_pkg;\n"), std::string::npos);
  // A descriptor takes eleven words of the port (the transformer's fields after the image
  // layers'); a requantization pair's layout is unchanged.
  EXPECT_EQ(cp::kDescWords, 11);
  EXPECT_EQ(cp::requant_shift(16).lsb, 16);
  EXPECT_EQ(cp::requant_shift(16).width, 6);
}

// The checked-in package (rtl/top/qathw_cfg_pkg.sv, included by qathw_accel.sv) is the library's:
// after a change to config_port.h, regenerate it with `qathw-target-gen --cfg-sv rtl/top/qathw_cfg_pkg.sv`.
TEST(ConfigPortPackage, CheckedInPackageEqualsTheLibrarys) {
  EXPECT_EQ(read_text(fs::path(QATHW_RTL_DIR) / "top" / "qathw_cfg_pkg.sv"), config_port_sv_package());
}

// The accelerator takes every field of the port from the package: no literal bit offsets.
TEST(ConfigPortPackage, TheAcceleratorReadsItsLayoutFromThePackage) {
  const std::string accel = read_text(fs::path(QATHW_RTL_DIR) / "top" / "qathw_accel.sv");
  for (const config_port::Field& f : config_port::kDescriptorFields)
    EXPECT_NE(accel.find(std::string("qathw_cfg_pkg::") + f.name + "Lsb"), std::string::npos) << f.name;
  for (const config_port::KindName& k : config_port::kKinds)
    EXPECT_NE(accel.find(std::string("qathw_cfg_pkg::Kind") + k.name), std::string::npos) << k.name;
  EXPECT_NE(accel.find("qathw_cfg_pkg::LayerCountLsb"), std::string::npos);
  EXPECT_NE(accel.find("qathw_cfg_pkg::RequantShiftBits"), std::string::npos);
  EXPECT_FALSE(std::regex_search(accel, std::regex(R"(cfg_data_i\[\d)"))) << "a literal offset into cfg_data_i";
  EXPECT_FALSE(std::regex_search(accel, std::regex(R"(2'd[0-3]:)"))) << "a literal kind code";
}

// The memory sizes every RTL build of a target passes (qathw/target/rtl_memories.h).
TEST(RtlMemoryParameters, FromTheTargetsWeightSram) {
  EXPECT_EQ(pairs(rtl_memory_parameters(builtin_target("ternary-asic"))),
            (std::vector<std::pair<std::string, std::int64_t>>{
                {"MaxLayers", 64}, {"ActWords", 262144}, {"CodeDepth", 65536}, {"WeightWords", 4096}, {"RequantDepth", 4096},
                {"TableDepth", 65536}, {"MaxGroups", 16}}));
  TargetSpec big = builtin_target("ternary-asic");
  big.memory.weight_sram_kib = 512;
  EXPECT_EQ(verilator_memory_args(big),
            (std::vector<std::string>{"-GMaxLayers=64", "-GActWords=262144", "-GCodeDepth=65536", "-GWeightWords=8192",
                                      "-GRequantDepth=4096", "-GTableDepth=65536", "-GMaxGroups=16"}));
  const std::string text = cmake_fragment(builtin_target("int4-fpga"), "P");
  EXPECT_NE(text.find("set(P_MEMORY_ARGS \"-GMaxLayers=64;-GActWords=262144;-GCodeDepth=65536;-GWeightWords=4096;-GRequantDepth=4096;"
                      "-GTableDepth=65536;-GMaxGroups=16\")"),
            std::string::npos)
      << text;
  // Each is a parameter of the accelerator top.
  const std::string accel = read_text(fs::path(QATHW_RTL_DIR) / "top" / "qathw_accel.sv");
  for (const RtlParameter& p : rtl_memory_parameters(big))
    EXPECT_TRUE(std::regex_search(accel, std::regex("parameter int " + p.name + " = "))) << p.name;
}

TEST(CppHeader, WritesEveryEnumValue) {
  TargetSpec s = builtin_target("ternary-asic");
  EXPECT_NE(cpp_header(s).find("f.act_quantizer = arith::ActQuantizer::DynamicPerTokenAbsmax;"), std::string::npos);
  s.format.act_quantizer = arith::ActQuantizer::StaticPerTensor;
  s.format.overflow = arith::Overflow::Wrap;
  s.format.rounding = arith::Rounding::HalfEven;
  s.format.weights = arith::WeightFormat::Int4;
  const std::string text = cpp_header(s);
  for (const char* line : {"f.act_quantizer = arith::ActQuantizer::StaticPerTensor;",
                           "f.overflow = arith::Overflow::Wrap;", "f.rounding = arith::Rounding::HalfEven;",
                           "f.weights = arith::WeightFormat::Int4;", "static constexpr int kWeightInt4 = 1;"})
    EXPECT_NE(text.find(line), std::string::npos) << "no " << line << " in:\n" << text;
}

}  // namespace
}  // namespace qathw::target
