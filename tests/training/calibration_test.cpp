// Static quantizer calibration (training/src/calibration.cpp): min-max, percentile ranks, and the
// pair that maps the calibrated magnitude to qmax through the graph's static quantize op.
#include <gtest/gtest.h>

#include <numeric>

#include "qathw/target/target_spec.h"
#include "qathw/training/calibration.h"

namespace qathw::training {
namespace {

TEST(Calibration, MinMaxAndPercentile) {
  EXPECT_EQ(calibrate_minmax({-300, 5, 200}), 300);
  EXPECT_EQ(calibrate_minmax({}), 0);
  std::vector<std::int32_t> v(100);
  std::iota(v.begin(), v.end(), 1);  // magnitudes 1..100, half of them negative
  for (std::size_t i = 0; i < v.size(); i += 2) v[i] = -v[i];
  EXPECT_EQ(calibrate_percentile(v, 1.0), 100);
  EXPECT_EQ(calibrate_percentile(v, 0.99), 99);
  EXPECT_EQ(calibrate_percentile(v, 0.5), 50);
  EXPECT_EQ(calibrate_percentile(v, 0.001), 1);
  EXPECT_THROW(calibrate_percentile(v, 0.0), std::invalid_argument);
  EXPECT_THROW(calibrate_percentile(v, 1.5), std::invalid_argument);
}

TEST(Calibration, PairMapsTheMagnitudeToQmax) {
  for (const char* name : {"ternary-asic", "int4-fpga"}) {
    const arith::Format f = target::builtin_target(name).format;
    const std::int64_t qmax = arith::act_qmax(f.act_bits);
    for (const std::int64_t amax : {std::int64_t{1}, std::int64_t{127}, std::int64_t{1000}, std::int64_t{5000000}}) {
      const arith::FixedPoint p = static_quantizer_pair(amax, f);
      EXPECT_EQ(arith::quantize_act(amax, p, f.act_bits, f.rounding), qmax) << name << " " << amax;
      EXPECT_EQ(arith::quantize_act(-amax, p, f.act_bits, f.rounding), -qmax) << name << " " << amax;
      EXPECT_EQ(arith::quantize_act(3 * amax, p, f.act_bits, f.rounding), qmax) << name << " " << amax;  // clipped
    }
    EXPECT_EQ(arith::quantize_act(1, static_quantizer_pair(0, f), f.act_bits, f.rounding), qmax);
  }
}

}  // namespace
}  // namespace qathw::training
