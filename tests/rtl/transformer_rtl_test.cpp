// The RTL's controller on the transformer (random tiny TransformerNets, calibrated and exported by
// training::make_bundle): every op the RTL observes of every position of a few sequences equals
// the integer engine, on the models compiled in for both built-in targets and on a run-time build
// of an odd array with a narrow saturating vector unit; the RTL runs the token loop (a KV cache, the
// per-token absmax registers) as the SystemC model does (docs/rtl.md, "Transformer layers").
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "../arith/test_support.h"
#include "../engines/random_transformer.h"
#include "../engines/sequence_check.h"
#include "qathw/model/accelerator_layers.h"
#include "qathw/model/int_engine.h"
#include "qathw/rtl/point_rtl.h"
#include "qathw/rtl/rtl_engine.h"
#include "qathw/target/target_spec.h"
#include "qathw/verify/engine.h"

namespace qathw::rtl {
namespace {

using Shape = test::TransformerShape;

// Runs `count` random sequences through the "rtl" engine (verify's wrapper) and requires every op
// it observes to equal the integer engine, and every op but a quantizer fused into its linear
// layer to be observed.
void check_sequences(const target::TargetSpec& t, const Shape& shape, std::uint64_t seed, int count) {
  SCOPED_TRACE(test::seed_note(seed));
  const model::Bundle b = test::random_transformer_bundle(shape, t, seed);
  const std::optional<std::string> why = rtl_unsupported(b);
  ASSERT_FALSE(why) << *why;
  const std::vector<std::uint8_t> tokens = test::random_tokens(static_cast<std::size_t>(count) * shape.context, seed + 7);
  const verify::Engine* engine = verify::find_engine("rtl");
  ASSERT_NE(engine, nullptr);
  const verify::EngineRun run = engine->run(b, tokens.data(), static_cast<std::size_t>(count));
  const std::vector<model::OpOutputs> want = model::IntEngine(b).run_all(tokens.data(), static_cast<std::size_t>(count));
  const model::Graph& g = b.graph;
  const std::size_t observed = test::expect_ops_equal(b, t.name, run, want);
  if (::testing::Test::HasFailure()) return;
  // Every layer of the lowering is observed (each writes its op's output).
  const model::AcceleratorLowering lowering = model::accelerator_layers(g, true);
  EXPECT_EQ(observed, lowering.layers.size());

  // Each layer's cycles over the sequence: the SystemC model's closed forms (docs/sim.md, "Cycle
  // model").
  const auto cycles = [&](const std::string& op) -> std::uint64_t {
    for (std::size_t l = 0; l < lowering.layers.size(); ++l)
      if (g.ops[lowering.layers[l].output_op].name == op) return run.stats.at("cycles_per_layer").at(l).get<std::uint64_t>();
    ADD_FAILURE() << "no layer writes op " << op;
    return 0;
  };
  const auto ceil_div = [](std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; };
  const std::uint64_t Lv = static_cast<std::uint64_t>(t.vector_unit.lanes), L = static_cast<std::uint64_t>(t.array.lanes);
  const std::uint64_t M = static_cast<std::uint64_t>(t.format.scale_mantissa_bits);
  const std::uint64_t H = static_cast<std::uint64_t>(shape.heads), D = static_cast<std::uint64_t>(shape.width);
  const std::uint64_t T = static_cast<std::uint64_t>(shape.context), dh = D / H;
  std::uint64_t scores = 0, softmax = 0, attend = 0;
  for (std::uint64_t n = 1; n <= T; ++n) {
    scores += 2 * H + H * n * ceil_div(dh, Lv) + 1;  // two factors per head's pair
    softmax += H * (3 * ceil_div(n, Lv) + M);
    attend += D * ceil_div(n, Lv);
  }
  EXPECT_EQ(cycles("layer0.scores"), scores);
  EXPECT_EQ(cycles("layer1.softmax"), softmax);
  EXPECT_EQ(cycles("layer0.attend"), attend);
  EXPECT_EQ(cycles("embedding"), T * ceil_div(D, L));
  EXPECT_EQ(cycles("layer0.attention_norm"), T * (2 * ceil_div(D, Lv) + 64 + 32 + M));
  EXPECT_EQ(cycles("layer0.squared_relu"), T * ceil_div(static_cast<std::uint64_t>(shape.ffn), Lv));
  EXPECT_EQ(cycles("layer0.ffn_add"), T * (3 + ceil_div(D, L)));  // three factors, then the adder
}

TEST(TransformerRtl, RandomTinyTransformerTernaryAsic) {
  check_sequences(target::builtin_target("ternary-asic"), Shape{}, test::test_seed(301), 2);
}

TEST(TransformerRtl, RandomTinyTransformerInt4Fpga) {
  check_sequences(target::builtin_target("int4-fpga"), Shape{}, test::test_seed(302), 2);
}

// A 5 x 7 array whose vector unit sums 5 products a cycle into a 12-bit saturating accumulator (Q
// K^T and P V saturate chunk by chunk), with heads of 5 features (chunks that divide nothing): a
// run-time build with the transformer's units.
TEST(TransformerRtl, OddArrayNarrowVectorUnit) {
  setenv("QATHW_CACHE_DIR", QATHW_TEST_BINARY_DIR "/transformer-rtl-cache", 0);
  nlohmann::json j = target::to_json(target::builtin_target("ternary-asic"));
  j["name"] = "odd-5x7";
  j["array"]["rows"] = 5;
  j["array"]["lanes"] = 7;
  j["vector_unit"] = {{"lanes", 5}, {"operand_bits", 8}, {"accumulator_bits", 12}, {"overflow", "saturate"}};
  j.erase("hash");
  j.erase("origin");
  const target::TargetSpec t = target::target_from_json(j, "odd-5x7 (test)");
  Shape shape;
  shape.width = 20;
  shape.heads = 4;
  shape.ffn = 24;
  shape.context = 6;
  check_sequences(t, shape, test::test_seed(303), 2);
}

// A sequence's image-only build: the run-time build of a sequence bundle has the transformer's
// units and is cached apart from the target's image build.
TEST(TransformerRtl, SequenceBuildsAreKeyedApart) {
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  EXPECT_NE(rtl_build_key(t, false, true), rtl_build_key(t, false, false));
}

// Each built-in target has an image-only model and one with the transformer's units; the
// engine takes the one the bundle needs.
TEST(TransformerRtl, BuiltInTargetsHaveAnImageAndASequenceModel) {
  for (const char* name : {"ternary-asic", "int4-fpga"}) {
    const target::TargetSpec t = target::builtin_target(name);
    const model::Bundle sequence = test::random_transformer_bundle(Shape{}, t, 1);
    const model::Bundle image = training::make_bundle(training::make_mlp(27, {8}, 5, 1), t, 3, 9, {});
    ASSERT_NE(builtin_rtl(sequence), nullptr) << name;
    ASSERT_NE(builtin_rtl(image), nullptr) << name;
    EXPECT_NE(builtin_rtl(sequence), builtin_rtl(image)) << name;
  }
}

}  // namespace
}  // namespace qathw::rtl
