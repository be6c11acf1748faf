// HLS tops built at run time for targets with no top compiled in (cached by target and sources).
#pragma once

#include "qathw/hls/hls_engine.h"
#include "qathw/target/target_spec.h"

namespace qathw::hls {

inline constexpr int kMaxWidth = QATHW_HLS_MAX_WIDTH;  // the tops' Target::kMaxWidth

// The top of `t`, compiled (once per target and source version) and loaded. Throws
// std::runtime_error when the compiler fails or is missing.
LayerTop runtime_top(const target::TargetSpec& t);

}  // namespace qathw::hls
