// The run-time RTL build (rtl/flow): a target with no model compiled into qat-hw is Verilated into
// a shared object, cached, loaded, and agrees with the integer engine on every layer; its cache
// key follows the RTL parameters and nothing else of the target.
#include <filesystem>
#include <ostream>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include "../arith/test_support.h"
#include "qathw/rtl/point_rtl.h"
#include "qathw/training/bundle.h"
#include "qathw/training/int_engine.h"
#include "qathw/verify/compare.h"

namespace qathw::rtl {
namespace {

target::TargetSpec small_target(int rows, int lanes, int acc_bits) {
  target::TargetSpec t = target::builtin_target("ternary-asic");
  t.name = "ternary-small";
  t.array.rows = rows;
  t.array.lanes = lanes;
  t.format.acc_bits = acc_bits;
  return t;
}

RtlBuildSettings settings() {
  RtlBuildSettings s;
  s.cache_dir = std::filesystem::path(QATHW_TEST_BINARY_DIR) / "rtl-cache";
  s.quiet = true;
  return s;
}

TEST(PointRtl, KeyFollowsRtlParametersOnly) {
  const target::TargetSpec a = small_target(4, 4, 16);
  target::TargetSpec b = a;
  b.clock_mhz = a.clock_mhz * 2;
  b.name = "other";
  EXPECT_EQ(rtl_build_key(a), rtl_build_key(b));
  EXPECT_NE(rtl_build_key(a), rtl_build_key(small_target(4, 8, 16)));
  EXPECT_NE(rtl_build_key(a), rtl_build_key(small_target(4, 4, 18)));
}

TEST(PointRtl, RunTimeBuildAgreesWithTheIntegerEngine) {
  const std::uint64_t seed = test::test_seed(57);
  // A narrow accumulator so that saturation is exercised, in a 4x4 array with tails (in = 27).
  const target::TargetSpec t = small_target(4, 4, 12);
  const training::Bundle bundle = training::make_bundle(training::make_mlp(27, {13, 6}, 3, seed), t, 3, 9, {});
  ASSERT_EQ(builtin_rtl(bundle), nullptr);
  std::mt19937_64 rng(seed);
  const std::size_t samples = 16;
  std::vector<std::uint8_t> pixels(samples * 27);
  for (auto& p : pixels) p = static_cast<std::uint8_t>(rng() % 256);
  const auto reference = training::IntEngine(bundle).run_all(pixels.data(), samples);
  const RtlRun run = run_rtl_any(bundle, pixels.data(), samples, "", settings());
  const verify::Comparison c = verify::compare("int", reference, "rtl", run.outputs);
  EXPECT_FALSE(c.first) << verify::describe(*c.first) << "; " << test::seed_note(seed);
  EXPECT_TRUE(std::filesystem::exists(build_rtl(t, settings())));  // cached: no second build
}

// Geometries on either side of Verilator's 64-iteration loop limit and odd or degenerate
// shapes: a bundle whose layers span several tiles and chunks (with tails) runs on the RTL
// built for each, and agrees with the integer engine on every layer.
struct Geometry {
  const char* base;
  int rows, lanes;
};

void PrintTo(const Geometry& g, std::ostream* os) { *os << g.base << " " << g.rows << "x" << g.lanes; }

class PointRtlGeometry : public ::testing::TestWithParam<Geometry> {};

TEST_P(PointRtlGeometry, AgreesWithTheIntegerEngine) {
  const Geometry g = GetParam();
  const std::uint64_t seed = test::test_seed(58);
  target::TargetSpec t = target::builtin_target(g.base);
  t.name = std::string(g.base) + "-geometry";
  t.array.rows = g.rows;
  t.array.lanes = g.lanes;
  t.format.acc_bits = 14;
  // 110 inputs (a 10x11 image), 70 hidden outputs: more than 64 rows or lanes of work; arrays of
  // fewer than 4 PEs take a 27-13-6-3 MLP (a 3x9 image) that fits the RTL's weight memory.
  const bool tiny = g.rows * g.lanes < 4;
  const int image_rows = tiny ? 3 : 10, image_cols = tiny ? 9 : 11, features = image_rows * image_cols;
  const training::Mlp net = tiny ? training::make_mlp(features, {13, 6}, 3, seed)
                                 : training::make_mlp(features, {70, 13}, 5, seed);
  const training::Bundle bundle = training::make_bundle(net, t, image_rows, image_cols, {});
  ASSERT_EQ(builtin_rtl(bundle), nullptr);
  std::mt19937_64 rng(seed);
  const std::size_t samples = 4;
  std::vector<std::uint8_t> pixels(samples * static_cast<std::size_t>(features));
  for (auto& p : pixels) p = static_cast<std::uint8_t>(rng() % 256);
  const auto reference = training::IntEngine(bundle).run_all(pixels.data(), samples);
  const RtlRun run = run_rtl_any(bundle, pixels.data(), samples, "", settings());
  const verify::Comparison c = verify::compare("int", reference, "rtl", run.outputs);
  EXPECT_FALSE(c.first) << g.base << " " << g.rows << "x" << g.lanes << ": " << verify::describe(*c.first) << "; "
                        << test::seed_note(seed);
}

INSTANTIATE_TEST_SUITE_P(Shapes, PointRtlGeometry,
                         ::testing::Values(Geometry{"ternary-asic", 65, 2}, Geometry{"ternary-asic", 2, 97},
                                           Geometry{"ternary-asic", 13, 11}, Geometry{"ternary-asic", 1, 1},
                                           Geometry{"ternary-asic", 1, 3}, Geometry{"ternary-asic", 3, 1},
                                           Geometry{"int4-fpga", 13, 11}, Geometry{"int4-fpga", 65, 2}),
                         [](const ::testing::TestParamInfo<Geometry>& i) {
                           return std::string(i.param.base[0] == 't' ? "ternary_" : "int4_") +
                                  std::to_string(i.param.rows) + "x" + std::to_string(i.param.lanes);
                         });

}  // namespace
}  // namespace qathw::rtl
