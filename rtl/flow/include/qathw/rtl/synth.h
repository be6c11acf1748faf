// yosys synthesis of the accelerator's datapath (rtl/top/qathw_datapath.sv) with a target's
// parameters. Results are cached by the RTL sources, the parameters and the flow, so a sweep
// synthesizes each distinct RTL configuration once.
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "qathw/target/target_spec.h"

namespace qathw::rtl {

struct SynthSettings {
  std::filesystem::path rtl_dir = QATHW_RTL_DIR;  // the RTL sources
  std::filesystem::path cache_dir;                // empty: ~/.cache/qat-hw/synth
  bool quiet = false;                             // no progress line on stderr
};

// flow: "generic" (yosys synth: cells, flip-flops) or "xilinx" (synth_xilinx: LUTs, carry cells,
// flip-flops, BRAM, DSP). Returns the figures as JSON with "cached" telling whether yosys ran.
// Throws std::runtime_error when yosys is missing or fails (naming its log).
nlohmann::json synthesize(const target::TargetSpec& target, const std::string& flow, const SynthSettings& settings = {});

// The cache key of a synthesis: every input that can change its result.
std::string synth_key(const target::TargetSpec& target, const std::string& flow, const SynthSettings& settings = {});

}  // namespace qathw::rtl
