// The RTL for any target's parameters. The built-in targets' models are compiled into qat-hw; for
// any other target (a sweep point, a custom TOML) the RTL is Verilated and compiled at run time
// into a shared object with the same harness, cached by everything that can change it, and loaded.
#pragma once

#include <filesystem>
#include <string>

#include "qathw/rtl/rtl_engine.h"
#include "qathw/target/target_spec.h"

namespace qathw::rtl {

struct RtlBuildSettings {
  std::filesystem::path cache_dir;  // empty: ~/.cache/qat-hw/rtl
  int jobs = 2;                     // compiler processes of one build
  bool quiet = false;               // no progress line on stderr
  bool trace = false;               // FST tracing compiled in (a waveform; the build takes longer)
  // The transformer's units built in (Transformer=1 and the target's vector unit): a sequence
  // bundle needs them; an image-only build leaves them out (a smaller, faster model).
  bool transformer = false;
};

// The cache key of a target's RTL build: sources, harness, parameters, tool versions, tracing,
// the transformer's units.
std::string rtl_build_key(const target::TargetSpec& target, bool trace = false, bool transformer = false);

// The shared object of the target's RTL, built when not cached. Safe under concurrent builders:
// each builds in a folder of its own and the first to finish publishes it with one rename.
// Throws std::runtime_error (naming the build log) when Verilator or the compiler fails.
std::filesystem::path build_rtl(const target::TargetSpec& target, const RtlBuildSettings& settings = {});

// run_rtl for any target: the built-in model when there is one, else the run-time build (with the
// transformer's units for a sequence bundle).
RtlRun run_rtl_any(const model::Bundle& bundle, const std::uint8_t* pixels, std::size_t count,
                   const std::string& fst_path = "", const RtlBuildSettings& settings = {});

}  // namespace qathw::rtl
