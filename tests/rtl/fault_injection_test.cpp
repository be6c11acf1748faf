// Proof that the RTL check can fail: the accelerator built with an injected fault (layer 1's
// activation quantizer clamps to qmax - 1) must be reported by the verify comparison at layer 1,
// while the same build without the fault agrees on every layer.
#include <random>

#include <gtest/gtest.h>

#include "../arith/test_support.h"
#include "qathw/rtl/rtl_engine.h"
#include "qathw/model/bundle.h"
#include "qathw/model/int_engine.h"
#include "qathw/training/export.h"
#include "qathw/verify/compare.h"
#include "qathw/verify/engine.h"

namespace qathw::rtl {
RtlRunFunction run_rtl_fault;
RtlRunFunction run_rtl_clean;

namespace {

struct Case {
  model::Bundle bundle;
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
  const auto reference = model::IntEngine(c.bundle).run_all(c.pixels.data(), c.samples);
  auto rtl = [&](RtlRunFunction* entry) {
    return verify::fused_to_ops(c.bundle, run_rtl_entry(entry, c.bundle, c.pixels.data(), c.samples, "").outputs);
  };
  const verify::Comparison clean = verify::compare(c.bundle.graph, "int", reference, "rtl", rtl(run_rtl_clean));
  EXPECT_FALSE(clean.first) << "the fault-free build differs: " << verify::describe(*clean.first);
  EXPECT_EQ(clean.ops, (std::vector<std::string>{"layer0.relu", "layer1.relu", "layer2.linear"}));
  const verify::Comparison faulty = verify::compare(c.bundle.graph, "int", reference, "rtl", rtl(run_rtl_fault));
  ASSERT_TRUE(faulty.first) << "the injected fault went unnoticed; " << test::seed_note(seed);
  EXPECT_EQ(faulty.first->op_name, "layer1.relu") << verify::describe(*faulty.first);
  EXPECT_EQ(faulty.first->sample, 0u) << verify::describe(*faulty.first);
  EXPECT_EQ(faulty.mismatching_samples, c.samples);
}

}  // namespace
}  // namespace qathw::rtl
