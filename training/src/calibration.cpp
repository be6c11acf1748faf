#include "qathw/training/calibration.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace qathw::training {

std::int64_t calibrate_minmax(const std::vector<std::int32_t>& values) {
  std::int64_t amax = 0;
  for (const std::int32_t v : values) amax = arith::absmax_step(amax, v);
  return amax;
}

std::int64_t calibrate_percentile(std::vector<std::int32_t> values, double fraction) {
  if (!(fraction > 0.0 && fraction <= 1.0)) throw std::invalid_argument("calibration fraction must lie in (0, 1]");
  if (values.empty()) return 0;
  std::vector<std::int64_t> mag(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) mag[i] = arith::magnitude(values[i]);
  const std::size_t rank = static_cast<std::size_t>(std::ceil(fraction * static_cast<double>(mag.size())));
  const std::size_t k = std::min(mag.size(), std::max<std::size_t>(rank, 1)) - 1;
  std::nth_element(mag.begin(), mag.begin() + static_cast<long>(k), mag.end());
  return mag[k];
}

arith::FixedPoint static_quantizer_pair(std::int64_t amax, const arith::Format& f) {
  const double ratio = static_cast<double>(arith::act_qmax(f.act_bits)) / static_cast<double>(std::max<std::int64_t>(amax, 1));
  const arith::FixedPointResult r = arith::to_fixed_point(ratio, f);
  if (r.status != arith::FixedPointStatus::Ok)
    throw std::runtime_error("static quantizer: qmax / amax = " + std::to_string(ratio) +
                             " has no pair in the target's scale format");
  return r.value;
}

}  // namespace qathw::training
