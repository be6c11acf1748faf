// Every parameter file derived from a target, generated from its validated TargetSpec: the RTL
// parameter list (the one mapping from spec fields to RTL parameter names and values), a
// SystemVerilog package, a CMake fragment and a C++ header. Nothing else maps spec fields to
// RTL parameters by hand.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qathw/target/target_spec.h"

namespace qathw::target {

// One parameter of the accelerator's RTL, named as the SystemVerilog modules name it
// (UpperCamelCase), with its integer value. Flags (WeightInt4, Saturate, HalfEven) are 0 or 1.
struct RtlParameter {
  std::string name;
  std::int64_t value = 0;
};

// The RTL parameters of a target, in a fixed order: Rows, Lanes, ActBits, AccBits, MantBits,
// ShiftMin, ShiftMax, WeightInt4, Saturate, HalfEven.
std::vector<RtlParameter> rtl_parameters(const TargetSpec& spec);

// The same parameters as Verilator overrides: "-GRows=16", ...
std::vector<std::string> verilator_parameter_args(const TargetSpec& spec);

// The memory sizes of the accelerator top (qathw_accel) for the target, qathw/target/rtl_memories.h:
// MaxLayers, ActWords, CodeDepth, WeightWords, RequantDepth. Every RTL build of the target passes them.
std::vector<RtlParameter> rtl_memory_parameters(const TargetSpec& spec);

// The same as Verilator overrides: "-GMaxLayers=64", ...
std::vector<std::string> verilator_memory_args(const TargetSpec& spec);

// The target's vector unit ([vector_unit]) as the parameters of the RTL's transformer units:
// VecLanes, VecOperandBits, VecAccBits, VecSaturate.
std::vector<RtlParameter> vector_unit_parameters(const TargetSpec& spec);

// An RTL parameter name as a CMake variable suffix: "ActBits" -> "ACT_BITS", "WeightInt4" ->
// "WEIGHT_INT4".
std::string cmake_variable_suffix(const std::string& rtl_name);

// The target's name as an identifier: "ternary-asic" -> "ternary_asic".
std::string identifier(const TargetSpec& spec);

// A SystemVerilog package `qathw_target_<id>_pkg` holding the RTL parameters as localparams,
// then values derived from them (ActQMax: the largest activation code; ShiftBits: the width of
// a scale shift).
std::string sv_package(const TargetSpec& spec);

// A CMake fragment that sets PREFIX_<SUFFIX> for every RTL parameter (PREFIX_ROWS, ...),
// PREFIX_NAME, PREFIX_HASH, PREFIX_VERILATOR_ARGS (the -G list), PREFIX_MEMORY_ARGS (the -G list
// of rtl_memory_parameters), PREFIX_VECTOR_ARGS (the -G list of vector_unit_parameters) and
// PREFIX_VARIABLES (the names of all of these). `prefix` must be a CMake identifier
// ([A-Za-z_][A-Za-z0-9_]*).
std::string cmake_fragment(const TargetSpec& spec, const std::string& prefix);

// A C++ header: struct qathw::target::generated::Target_<id> with `static constexpr int k<Name>`
// for every RTL parameter and `static constexpr arith::Format format()`.
std::string cpp_header(const TargetSpec& spec);

// The SystemVerilog package `qathw_cfg_pkg`: the configuration port's layout
// (qathw/target/config_port.h) as localparams, the same for every target: KindBits, AddrBits,
// Kind<Name> for each kind code, <Field>Lsb and <Field>Bits for each descriptor field and the
// layer count, RequantMantissaLsb, RequantShiftBits, DescriptorBits, DataMinBits.
std::string config_port_sv_package();

}  // namespace qathw::target
