// HLS tops built at run time for targets with no top compiled in (cached by target and sources).
#pragma once

#include "qathw/hls/hls_engine.h"
#include "qathw/target/target_spec.h"

namespace qathw::hls {

inline constexpr int kMaxWidth = QATHW_HLS_MAX_WIDTH;  // the tops' Target::kMaxWidth
inline constexpr int kMaxMap = QATHW_HLS_MAX_MAP;      // the tops' Target::kMaxMap
inline constexpr int kMaxContext = QATHW_HLS_MAX_CONTEXT;  // the tops' Target::kMaxContext
inline constexpr int kMaxFfn = QATHW_HLS_MAX_FFN;          // the tops' Target::kMaxFfn
inline constexpr int kMaxHeads = QATHW_HLS_MAX_HEADS;      // the tops' Target::kMaxHeads
inline constexpr int kMaxFactors = 4;                      // the tops' Target::kMaxFactors
inline constexpr long kMaxTokenWeightBytes = static_cast<long>(kMaxWidth) * kMaxFfn;  // Target::kMaxTokenWeightBytes

// The tops of `t`, compiled (once per target and source version) and loaded. Throws
// std::runtime_error when the compiler fails or is missing.
const Tops& runtime_tops(const target::TargetSpec& t);

// The tops compiled in for the bundle's target (a built-in one), or null.
const Tops* builtin_tops(const model::Bundle& bundle);

// The bundle's tops: compiled in, else built at run time (runtime_tops).
const Tops& tops_of(const model::Bundle& bundle);

}  // namespace qathw::hls
