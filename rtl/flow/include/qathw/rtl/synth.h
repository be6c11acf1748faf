// yosys synthesis of the accelerator's datapath (rtl/top/qathw_datapath.sv, the datapath
// qathw_accel instantiates) with a target's parameters. Results are cached by the RTL sources, the parameters and the flow, so a sweep
// synthesizes each distinct RTL configuration once.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qathw/target/target_spec.h"

namespace qathw::rtl {

struct SynthSettings {
  std::filesystem::path rtl_dir = QATHW_RTL_DIR;  // the RTL sources
  std::filesystem::path cache_dir;                // empty: ~/.cache/qat-hw/synth
  bool quiet = false;                             // no progress line on stderr
  // true: one netlist optimised across module boundaries (synth -flatten), the sign-off figures.
  // false (generic flow only): each distinct module synthesized once and counted per instance,
  // several times faster; docs/sweep.md gives the measured difference in cells.
  bool flatten = true;
};

// flow: "generic" (yosys synth: cells, flip-flops) or "xilinx" (synth_xilinx: LUTs, carry cells,
// flip-flops, BRAM, DSP). Returns the figures as JSON with "cached" telling whether yosys ran and
// "flatten" how it counted. Throws std::invalid_argument for the xilinx flow without flatten (its
// per-module LUT count is far from the flattened one), std::runtime_error when yosys is missing
// or fails (naming its log).
nlohmann::json synthesize(const target::TargetSpec& target, const std::string& flow, const SynthSettings& settings = {});

// The cells of a `stat` by-type table (cell type -> count) whose type starts with one of
// `prefixes`; a type that several prefixes match counts once.
long count_cell_types(const nlohmann::json& by_type, const std::vector<std::string>& prefixes);

// The prefixes of yosys's generic flip-flop cells: $_DFF_*, $_DFFE_*, $_DFFSR_*, $_DFFSRE_*,
// $_SDFF_*, $_SDFFE_*, $_SDFFCE_*, $_ALDFF_*, $_ALDFFE_*.
extern const std::vector<std::string> kGenericFlipFlops;

// The cache key of a synthesis: every input that can change its result.
std::string synth_key(const target::TargetSpec& target, const std::string& flow, const SynthSettings& settings = {});

}  // namespace qathw::rtl
