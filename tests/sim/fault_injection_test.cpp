// Proof that the SystemC check can fail: the model built with an injected fault (the last layer's
// requantization is off by one on channel 0) must be reported by the comparison at that op, the
// last linear, in every sample.
#include <random>

#include <gtest/gtest.h>

#include "../arith/test_support.h"
#include "qathw/model/int_engine.h"
#include "qathw/sim/systemc_engine.h"
#include "qathw/training/export.h"
#include "qathw/training/transformer_net.h"
#include "qathw/verify/compare.h"

namespace qathw::sim {
namespace {

TEST(SystemCFaultInjection, ReportedAtTheFaultyOp) {
  const std::uint64_t seed = test::test_seed(43);
  const target::TargetSpec t = target::builtin_target("int4-fpga");
  const model::Bundle b = training::make_bundle(training::make_mlp(35, {19, 11}, 4, seed), t, 5, 7, {});
  std::mt19937_64 rng(seed);
  const std::size_t samples = 12;
  std::vector<std::uint8_t> pixels(samples * 35);
  for (auto& p : pixels) p = static_cast<std::uint8_t>(rng() % 256);
  SimRun run = run_systemc(b, pixels.data(), samples, true);
  const std::vector<model::AcceleratorLayer> layers = model::accelerator_layers(b.graph).layers;
  std::vector<model::OpOutputs> got;
  for (auto& o : run.outputs) got.push_back(model::op_outputs(b.graph, layers, std::move(o)));
  const verify::Comparison c =
      verify::compare(b.graph, "int", model::IntEngine(b).run_all(pixels.data(), samples), "systemc", got);
  ASSERT_TRUE(c.first) << "the injected fault went unnoticed; " << test::seed_note(seed);
  EXPECT_EQ(c.first->op_name, "layer2.linear") << verify::describe(*c.first);
  EXPECT_EQ(c.first->element, 0u) << verify::describe(*c.first);
  EXPECT_EQ(c.first->candidate_value, c.first->reference_value + 1);
  EXPECT_EQ(c.mismatching_samples, samples);
}

// The same on a transformer's sequences (token by token, docs/sim.md "Transformer layers"): the
// first linear layer, Q's projection, is off by one on feature 0 of the first position.
TEST(SystemCFaultInjection, ReportedAtTheFaultyOpOfASequence) {
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  training::TransformerSpec spec;
  spec.name = "tiny";
  spec.origin = "test";
  spec.width = 16;
  spec.heads = 2;
  spec.ffn = 32;
  spec.layers = 1;
  spec.context = 5;
  training::TransformerNet net(spec, 44);
  const std::size_t samples = 3;
  std::mt19937_64 rng(45);
  std::vector<std::uint8_t> tokens(samples * 5);
  for (auto& v : tokens) v = static_cast<std::uint8_t>(rng() % 256);
  net.calibrate(tokens.data(), static_cast<int>(samples), t.format, 0.99);
  const model::Bundle b = training::make_bundle(net, t, {});
  SimRun run = run_systemc(b, tokens.data(), samples, true);
  const std::vector<model::AcceleratorLayer> layers = model::accelerator_layers(b.graph, true).layers;
  std::vector<model::OpOutputs> got;
  for (auto& o : run.outputs) got.push_back(model::op_outputs(b.graph, layers, std::move(o)));
  const verify::Comparison c =
      verify::compare(b.graph, "int", model::IntEngine(b).run_all(tokens.data(), samples), "systemc", got);
  ASSERT_TRUE(c.first) << "the injected fault went unnoticed";
  EXPECT_EQ(c.first->op_name, "layer0.wq") << verify::describe(*c.first);
  EXPECT_EQ(c.first->element, 0u) << verify::describe(*c.first);
  EXPECT_EQ(c.first->candidate_value, c.first->reference_value + 1);
  EXPECT_EQ(c.mismatching_samples, samples);
}

}  // namespace
}  // namespace qathw::sim
