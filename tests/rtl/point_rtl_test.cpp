// The run-time RTL build (rtl/flow): a target with no model compiled into qat-hw is Verilated into
// a shared object, cached, loaded, and agrees with the integer engine on every layer; its cache
// key follows the RTL parameters and nothing else of the target.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <ostream>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include "../arith/test_support.h"
#include "../model/random_model.h"
#include "qathw/model/accelerator_layers.h"
#include "qathw/rtl/point_rtl.h"
#include "qathw/model/bundle.h"
#include "qathw/model/int_engine.h"
#include "qathw/training/export.h"
#include "qathw/verify/compare.h"
#include "qathw/verify/engine.h"

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
  EXPECT_NE(rtl_build_key(a), rtl_build_key(a, true));  // tracing compiled in: another build
}

// The Verilator runtime's objects are compiled by the first build of a cache and reused by the
// next (its log compiles none), whose model still runs right; tracing is compiled in only when
// a waveform is asked for.
TEST(PointRtl, LaterBuildsReuseTheVerilatorRuntime) {
  const std::uint64_t seed = test::test_seed(59);
  RtlBuildSettings s = settings();
  s.cache_dir = std::filesystem::path(QATHW_TEST_BINARY_DIR) / "rtl-cache-runtime";
  std::filesystem::remove_all(s.cache_dir);
  const auto build_log = [&](const target::TargetSpec& t) {
    std::ifstream in(build_rtl(t, s).parent_path() / "build.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const auto compiles_runtime = [&](const target::TargetSpec& t) {
    return build_log(t).find("-o verilated.o") != std::string::npos;
  };
  EXPECT_TRUE(compiles_runtime(small_target(3, 4, 14)));
  const target::TargetSpec t = small_target(3, 4, 15);
  EXPECT_FALSE(compiles_runtime(t));
  const model::Bundle bundle = training::make_bundle(training::make_mlp(27, {5}, 3, seed), t, 3, 9, {});  // 3 x 9 images
  std::mt19937_64 rng(seed);
  std::vector<std::uint8_t> pixels(4 * 27);
  for (auto& p : pixels) p = static_cast<std::uint8_t>(rng() % 256);
  const auto reference = model::IntEngine(bundle).run_all(pixels.data(), 4);
  RtlRun run = run_rtl_any(bundle, pixels.data(), 4, "", s);
  const verify::Comparison c =
      verify::compare(bundle.graph, "int", reference, "rtl", verify::fused_to_ops(bundle, std::move(run.outputs)));
  EXPECT_FALSE(c.first) << verify::describe(*c.first) << "; " << test::seed_note(seed);
  EXPECT_EQ(build_log(t).find("trace"), std::string::npos);
}

TEST(PointRtl, RunTimeBuildAgreesWithTheIntegerEngine) {
  const std::uint64_t seed = test::test_seed(57);
  // A narrow accumulator so that saturation is exercised, in a 4x4 array with tails (in = 27).
  const target::TargetSpec t = small_target(4, 4, 12);
  const model::Bundle bundle = training::make_bundle(training::make_mlp(27, {13, 6}, 3, seed), t, 3, 9, {});
  ASSERT_EQ(builtin_rtl(bundle), nullptr);
  std::mt19937_64 rng(seed);
  const std::size_t samples = 16;
  std::vector<std::uint8_t> pixels(samples * 27);
  for (auto& p : pixels) p = static_cast<std::uint8_t>(rng() % 256);
  const auto reference = model::IntEngine(bundle).run_all(pixels.data(), samples);
  RtlRun run = run_rtl_any(bundle, pixels.data(), samples, "", settings());
  const verify::Comparison c =
      verify::compare(bundle.graph, "int", reference, "rtl", verify::fused_to_ops(bundle, std::move(run.outputs)));
  EXPECT_FALSE(c.first) << verify::describe(*c.first) << "; " << test::seed_note(seed);
  EXPECT_TRUE(std::filesystem::exists(build_rtl(t, settings())));  // cached: no second build
}

// A CNN on an odd array (5 rows x 7 lanes, 12-bit saturating accumulator;
// a bright first image drives the first layer to the limit): every layer equal to the integer
// engine.
TEST(PointRtl, ConvolutionalNetworkOnAnOddArray) {
  const std::uint64_t seed = test::test_seed(58);
  std::mt19937_64 rng(seed);
  const model::Bundle b = test::random_model_bundle("lenet", test::odd_target("odd-array"), false, rng, true);
  ASSERT_EQ(builtin_rtl(b), nullptr);
  const std::size_t samples = 2, features = b.features();
  std::vector<std::uint8_t> pixels(samples * features, 255);
  for (std::size_t i = features; i < pixels.size(); ++i) pixels[i] = static_cast<std::uint8_t>(rng() % 256);
  const auto reference = model::IntEngine(b).run_all(pixels.data(), samples);
  RtlRun run = run_rtl_any(b, pixels.data(), samples, "", settings());
  const verify::Comparison c =
      verify::compare(b.graph, "int", reference, "rtl", verify::fused_to_ops(b, std::move(run.outputs)));
  EXPECT_FALSE(c.first) << verify::describe(*c.first) << "; " << test::seed_note(seed);
  // The saturating corner ran: channel 0 of a pixel away from the border is the limit requantized.
  const std::size_t conv = model::accelerator_layers(b.graph).layers.front().output_op;
  EXPECT_EQ(reference[0][conv][(14 * 28 + 14) * 16], arith::requantize(2047, {3, 6}, b.target.format.rounding, 12))
      << test::seed_note(seed);
}

}  // namespace
}  // namespace qathw::rtl
