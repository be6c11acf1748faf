// The engines on a convolutional bundle (lenet with seeded random kernels, through
// model::lower_model): every engine of the registry that can run here (int, SystemC, the RTL,
// the HLS tops, and the CUDA engine where a device is present) runs it equal to the integer engine
// on every layer it observes; one that cannot (CUDA without a device) says why, so `qat-hw verify`
// leaves it out with that reason instead of failing.
#include <gtest/gtest.h>

#include <random>

#include "../arith/test_support.h"
#include "../model/random_model.h"
#include "qathw/model/accelerator_layers.h"
#include "qathw/model/int_engine.h"
#include "qathw/model/model_spec.h"
#include "qathw/target/target_spec.h"
#include "qathw/verify/engine.h"

namespace qathw::verify {
namespace {

model::Bundle lenet_bundle(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  const model::ModelSpec m = model::resolve_model("lenet", 10);
  model::Bundle b = test::bundle_of(t, model::lower_model(m, test::random_layer_params(m, t.format.weights, rng), t.format));
  model::validate(b.graph, t.format);
  return b;
}

TEST(FeatureMapEngines, EveryEngineRunsAConvolutionalBundle) {
  const std::uint64_t seed = test::test_seed();
  const model::Bundle b = lenet_bundle(seed);
  std::mt19937_64 rng(seed);
  std::vector<std::uint8_t> pixels(784 * 3);
  for (auto& p : pixels) p = static_cast<std::uint8_t>(rng() & 255);
  for (const Engine& e : engines()) {
    const std::optional<std::string> why = e.unsupported(b);
    if (e.name == "int") {
      ASSERT_FALSE(why.has_value()) << *why;
      const EngineRun run = e.run(b, pixels.data(), 3);
      const model::IntEngine reference(b);
      for (std::size_t s = 0; s < 3; ++s)
        EXPECT_EQ(run.outputs[s], reference.run(pixels.data() + s * 784)) << test::seed_note(seed) << " sample " << s;
      continue;
    }
    if (why) {
      EXPECT_EQ(e.name, "cuda") << e.name << " declined: " << *why;
      EXPECT_NE(why->find("device"), std::string::npos) << e.name << ": " << *why;
      continue;
    }
    const EngineRun run = e.run(b, pixels.data(), 3);
    const model::IntEngine reference(b);
    const std::vector<model::AcceleratorLayer> layers = model::accelerator_layers(b.graph).layers;
    ASSERT_EQ(run.outputs.size(), 3u) << e.name;
    for (std::size_t s = 0; s < 3; ++s) {
      const model::OpOutputs want = reference.run(pixels.data() + s * 784);
      for (const model::AcceleratorLayer& l : layers)
        EXPECT_EQ(run.outputs[s][l.output_op], want[l.output_op])
            << e.name << ", " << test::seed_note(seed) << " sample " << s << " op " << b.graph.ops[l.output_op].name;
    }
  }
}

}  // namespace
}  // namespace qathw::verify
