// The generator of every parameter file derived from a target (qathw/target/target_gen.h).
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

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
