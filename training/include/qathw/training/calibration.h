// Calibration of a static activation quantizer (docs/arith.md, "Static per-tensor"): the integer
// magnitude a tensor's codes are scaled to, from the values it held on training data, and the
// pair the quantize op multiplies by. Min-max takes the largest magnitude; a percentile clips the
// rare outliers above it (they saturate at +-qmax), keeping resolution for the rest.
#pragma once

#include <cstdint>
#include <vector>

#include "qathw/arith.h"

namespace qathw::training {

// The largest |v| of the values.
std::int64_t calibrate_minmax(const std::vector<std::int32_t>& values);

// The smallest magnitude that at least `fraction` (in (0, 1]) of the values do not exceed: the
// ceil(fraction * n)-th smallest |v|. fraction 1 is min-max.
std::int64_t calibrate_percentile(std::vector<std::int32_t> values, double fraction);

// The static quantizer's pair for a calibrated magnitude: qmax / amax in the target's scale
// format (to_fixed_point), so that +-amax maps to +-qmax. An amax of 0 (a tensor that held only
// zeros) takes amax 1. Throws std::runtime_error when the ratio has no pair in the format.
arith::FixedPoint static_quantizer_pair(std::int64_t amax, const arith::Format& f);

}  // namespace qathw::training
