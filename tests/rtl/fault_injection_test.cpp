// Proof that the RTL check can fail: the accelerator built with an injected fault (layer 1's
// activation quantizer clamps to qmax - 1) must be reported by the verify comparison at layer 1,
// while the same build without the fault agrees on every layer.
#include <random>

#include <gtest/gtest.h>

#include "../arith/test_support.h"
#include "qathw/rtl/rtl_engine.h"
#include "qathw/training/bundle.h"
#include "qathw/verify/compare.h"

namespace qathw::rtl {
RtlRun run_rtl_fault(const training::Bundle&, const std::uint8_t*, std::size_t, const std::string&);
RtlRun run_rtl_clean(const training::Bundle&, const std::uint8_t*, std::size_t, const std::string&);

namespace {

struct Case {
  training::Bundle bundle;
  std::vector<std::uint8_t> pixels;
  std::size_t samples = 24;
};

Case make_case(std::uint64_t seed) {
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  Case c{training::make_bundle(training::make_mlp(64, {24, 12}, 4, seed), t, 8, 8, {}), {}, 24};
  std::mt19937_64 rng(seed);
  c.pixels.resize(c.samples * 64);
  for (auto& p : c.pixels) p = static_cast<std::uint8_t>(rng() % 256);
  return c;
}

TEST(RtlFaultInjection, VerifyReportsTheFaultAtTheFaultyLayer) {
  const std::uint64_t seed = test::test_seed(31);
  const Case c = make_case(seed);
  const auto reference = training::IntEngine(c.bundle).run_all(c.pixels.data(), c.samples);
  const verify::Comparison clean =
      verify::compare("int", reference, "rtl", run_rtl_clean(c.bundle, c.pixels.data(), c.samples, "").outputs);
  EXPECT_FALSE(clean.first) << "the fault-free build differs: " << verify::describe(*clean.first);
  const verify::Comparison faulty =
      verify::compare("int", reference, "rtl", run_rtl_fault(c.bundle, c.pixels.data(), c.samples, "").outputs);
  ASSERT_TRUE(faulty.first) << "the injected fault went unnoticed; " << test::seed_note(seed);
  EXPECT_EQ(faulty.first->layer, 1u) << verify::describe(*faulty.first);
  EXPECT_EQ(faulty.first->sample, 0u) << verify::describe(*faulty.first);
  EXPECT_EQ(faulty.mismatching_samples, c.samples);
}

}  // namespace
}  // namespace qathw::rtl
