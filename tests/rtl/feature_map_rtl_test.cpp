// The RTL's controller on the built-in models and a model of odd shapes, with seeded random
// kernels: conv2d (rectangular kernels, padding, strides, groups down to depthwise, 1 x 1 projections), max and average pools, residual adds,
// static and dynamic quantizers, on the RTL compiled in for each built-in target. Every layer of
// every sample equals the integer engine, and every layer's cycles equal the SystemC model's
// (docs/sim.md, "Cycle model"). The SystemC model runs on the same target with a larger
// activation SRAM where the model needs one (the cycles do not depend on the SRAM's size). Its
// kernel elaborates once per process: each TEST runs it once (ctest runs each TEST alone).
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "../arith/test_support.h"
#include "../model/random_model.h"
#include "qathw/model/accelerator_layers.h"
#include "qathw/model/int_engine.h"
#include "qathw/rtl/rtl_engine.h"
#include "qathw/sim/systemc_engine.h"

namespace qathw::rtl {
namespace {

void check_model(const std::string& name, const std::string& target_name, bool static_quantizers, std::uint64_t seed) {
  const target::TargetSpec t = target::builtin_target(target_name);
  std::mt19937_64 rng(seed);
  const model::Bundle b = test::random_model_bundle(name, t, static_quantizers, rng);
  const std::optional<std::string> why = rtl_unsupported(b);
  ASSERT_FALSE(why.has_value()) << *why;
  const std::size_t samples = 2, features = b.features();
  std::vector<std::uint8_t> pixels(samples * features);
  for (auto& p : pixels) p = static_cast<std::uint8_t>(rng() & 255);
  const RtlRun run = run_rtl(b, pixels.data(), samples);
  const std::vector<model::AcceleratorLayer> layers = model::accelerator_layers(b.graph).layers;
  const model::IntEngine engine(b);
  ASSERT_EQ(run.outputs.size(), samples);
  long mismatches = 0;
  for (std::size_t i = 0; i < samples; ++i) {
    const model::LayerOutputs want = model::layer_outputs(layers, engine.run(pixels.data() + i * features));
    ASSERT_EQ(run.outputs[i].size(), want.size());
    for (std::size_t l = 0; l < want.size(); ++l)
      if (run.outputs[i][l] != want[l] && ++mismatches <= 3)
        ADD_FAILURE() << name << " on " << t.name << ": sample " << i << " layer " << l << " ("
                      << b.graph.ops[layers[l].linear_op].name << ", " << model::to_string(layers[l].kind)
                      << ") differs from the integer engine; " << test::seed_note(seed);
  }
  EXPECT_EQ(mismatches, 0) << test::seed_note(seed);

  // The same graph on the SystemC model: equal cycles per layer.
  model::Bundle large = b;
  large.target.memory.activation_sram_kib = 1024;
  large.target_hash = target::content_hash(large.target);
  const sim::SimRun sim = sim::run_systemc(large, pixels.data(), 1, false);
  ASSERT_EQ(sim.stats.size(), 1u);
  ASSERT_EQ(sim.stats.front().layers.size(), layers.size());
  ASSERT_EQ(run.layer_cycles.size(), layers.size());
  for (std::size_t l = 0; l < layers.size(); ++l)
    EXPECT_EQ(run.layer_cycles[l], sim.stats.front().layers[l].cycles)
        << name << " on " << t.name << ": layer " << l << " (" << model::to_string(layers[l].kind) << ")";
}

TEST(FeatureMapRtl, LenetTernaryAsic) { check_model("lenet", "ternary-asic", false, test::test_seed(201)); }
TEST(FeatureMapRtl, LenetInt4FpgaStaticQuantizers) { check_model("lenet", "int4-fpga", true, test::test_seed(202)); }
TEST(FeatureMapRtl, CnvTinyTernaryAsic) { check_model("cnv-tiny", "ternary-asic", false, test::test_seed(203)); }
TEST(FeatureMapRtl, DscnnTinyInt4Fpga) { check_model("dscnn-tiny", "int4-fpga", false, test::test_seed(204)); }
TEST(FeatureMapRtl, DscnnTinyTernaryAsicStaticQuantizers) {
  check_model("dscnn-tiny", "ternary-asic", true, test::test_seed(205));
}
TEST(FeatureMapRtl, ResnetTinyTernaryAsic) { check_model("resnet-tiny", "ternary-asic", true, test::test_seed(206)); }
TEST(FeatureMapRtl, ResnetTinyInt4Fpga) { check_model("resnet-tiny", "int4-fpga", true, test::test_seed(207)); }
// Rectangular kernels, strides and paddings, a grouped (not depthwise) convolution, pools with
// padding (tests/model/random_model.h, kOddShapes).
TEST(FeatureMapRtl, OddShapesTernaryAsic) { check_model("odd-shapes", "ternary-asic", false, test::test_seed(208)); }
TEST(FeatureMapRtl, OddShapesInt4FpgaStaticQuantizers) {
  check_model("odd-shapes", "int4-fpga", true, test::test_seed(209));
}

}  // namespace
}  // namespace qathw::rtl
