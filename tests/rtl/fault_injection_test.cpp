// Proof that the RTL check can fail: the accelerator built with an injected fault (layer 1's
// activation quantizer clamps to qmax - 1) must be reported by the verify comparison at layer 1,
// while the same build without the fault agrees on every layer: an MLP, and a CNN whose layer 1
// is a depthwise convolution (dscnn-tiny with random kernels).
#include <random>

#include <gtest/gtest.h>

#include "../arith/test_support.h"
#include "../model/random_model.h"
#include "qathw/model/accelerator_layers.h"
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

TEST(RtlFaultInjection, VerifyReportsTheFaultInAConvolution) {
  const std::uint64_t seed = test::test_seed(32);
  std::mt19937_64 rng(seed);
  model::Bundle b = test::random_model_bundle("dscnn-tiny", target::builtin_target("ternary-asic"), false, rng);
  // The depthwise layer's weights all +1 and its outputs its accumulators (pair 1): a code of 126
  // for 127 lowers every output whose window holds it by one, which neither its ReLU (the sums
  // of codes of ReLU outputs are not negative) nor a smaller scale's rounding can hide.
  const std::size_t depthwise_op = model::accelerator_layers(b.graph).layers.at(1).linear_op;
  model::LinearParams& depthwise_params = b.graph.ops.at(depthwise_op).linear;
  for (std::size_t k = 0; k < static_cast<std::size_t>(depthwise_params.in) * depthwise_params.out; ++k)
    arith::store_code(depthwise_params.packed.data(), k, 1, depthwise_params.format);
  for (arith::FixedPoint& pair : depthwise_params.requant) pair = {1, 0};
  const std::size_t samples = 4;
  std::vector<std::uint8_t> pixels(samples * b.features());
  for (auto& p : pixels) p = static_cast<std::uint8_t>(rng() % 256);
  const auto reference = model::IntEngine(b).run_all(pixels.data(), samples);
  auto rtl = [&](RtlRunFunction* entry) {
    return verify::fused_to_ops(b, run_rtl_entry(entry, b, pixels.data(), samples, "").outputs);
  };
  const verify::Comparison clean = verify::compare(b.graph, "int", reference, "rtl", rtl(run_rtl_clean));
  EXPECT_FALSE(clean.first) << "the fault-free build differs: " << verify::describe(*clean.first);
  const verify::Comparison faulty = verify::compare(b.graph, "int", reference, "rtl", rtl(run_rtl_fault));
  ASSERT_TRUE(faulty.first) << "the injected fault went unnoticed; " << test::seed_note(seed);
  const model::AcceleratorLayer& depthwise = model::accelerator_layers(b.graph).layers.at(1);
  ASSERT_EQ(depthwise.kind, model::AcceleratorOp::Conv2d);
  EXPECT_EQ(faulty.first->op_name, b.graph.ops[depthwise.output_op].name) << verify::describe(*faulty.first);
  EXPECT_EQ(faulty.mismatching_samples, samples);
}

}  // namespace
}  // namespace qathw::rtl
