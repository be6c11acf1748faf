// The transformer on the HLS tops: random tiny BitNet transformers (training::make_bundle of a
// random TransformerNet calibrated on random tokens) on both built-in targets, a target file
// whose tops are built at run time (a 13 x 11 array, 24-bit accumulators) and a narrow target
// (5 x 7 array, 10-bit saturating accumulators, kernels whose running sums saturate; a vector
// unit of 3 lanes into 12 saturating bits), every op of
// every position equal to the integer engine on a few random sequences, directly and through the
// verify registry's hls engine; greedy generation on it; a model over the tops' static sizes
// refused naming the field; and the C simulation's speed on a bitnet-tiny-sized model (context
// 64, width 128, 4 heads, ffn 512, 2 layers), printed.
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "qathw/hls/hls_engine.h"
#include "qathw/hls/sequence_engine.h"
#include "qathw/model/int_engine.h"
#include "qathw/target/target_spec.h"
#include "qathw/training/export.h"
#include "qathw/training/transformer_net.h"
#include "qathw/verify/engine.h"
#include "qathw/verify/generate.h"
#include "../engines/random_transformer.h"

namespace qathw::hls {
namespace {

using training::TransformerNet;

void use_test_cache() { setenv("QATHW_CACHE_DIR", QATHW_TEST_CACHE_DIR, 0); }

// ternary-asic with a 5 x 7 array and 10-bit saturating accumulators (tops built at run time):
// with the kernels of saturating_kernels, the linear layers' running sums saturate, so the PE
// array's chunks of kLanes decide the result.
target::TargetSpec narrow_target() {
  nlohmann::json j = target::to_json(target::builtin_target("ternary-asic"));
  j["name"] = "narrow-hls-transformer";
  j["array"]["rows"] = 5;
  j["array"]["lanes"] = 7;
  j["arithmetic"]["accumulator_bits"] = 10;
  j["arithmetic"]["overflow"] = "saturate";
  j["vector_unit"] = {{"lanes", 3}, {"operand_bits", 8}, {"accumulator_bits", 12}, {"overflow", "saturate"}};
  j.erase("hash");
  j.erase("origin");
  return target::target_from_json(j, "narrow-hls-transformer (test)");
}

target::TargetSpec target_named(const std::string& name) {
  if (name == "narrow") return narrow_target();
  if (name.find(".toml") != std::string::npos)
    return target::load_target_file(std::string(QATHW_TEST_TARGETS_DIR) + "/" + name);
  return target::builtin_target(name);
}

using Shape = test::TransformerShape;
using test::random_tokens;

model::Bundle random_bundle(const Shape& shape, const target::TargetSpec& t, std::uint64_t seed) {
  return test::random_transformer_bundle(shape, t, seed);
}

// In every linear layer, channel 0's weights all +1 and channel 1's +1 then -1 from the middle of
// its row: on a narrow saturating accumulator the first saturates (the FFN's down projection reads
// the squared ReLU's codes, all >= 0) and the second's running sum saturates and comes back, which
// an exact sum saturated once would not give.
void saturating_kernels(model::Bundle& b) {
  for (model::Op& op : b.graph.ops) {
    model::LinearParams& k = op.linear;
    if (op.type != model::OpType::Linear || k.out < 2) continue;
    for (int i = 0; i < k.in; ++i) {
      arith::store_code(k.packed.data(), static_cast<std::size_t>(i), 1, k.format);
      arith::store_code(k.packed.data(), static_cast<std::size_t>(k.in + i), i < k.in / 2 ? 1 : -1, k.format);
    }
  }
}

void expect_equal_ops(const model::Bundle& b, const std::vector<model::OpOutputs>& got,
                      const std::vector<model::OpOutputs>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (std::size_t s = 0; s < want.size(); ++s) {
    ASSERT_EQ(got[s].size(), b.graph.ops.size()) << what;
    for (std::size_t i = 0; i < b.graph.ops.size(); ++i) {
      ASSERT_FALSE(got[s][i].empty()) << what << ": op " << b.graph.ops[i].name << " has no output";
      ASSERT_EQ(got[s][i], want[s][i]) << what << ": sequence " << s << ", op " << b.graph.ops[i].name << " ("
                                       << model::to_string(b.graph.ops[i].type) << ")";
    }
  }
}

class TransformerHls : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { use_test_cache(); }
};

TEST_P(TransformerHls, EveryOpOfEveryPositionEqualsTheIntegerEngine) {
  const target::TargetSpec t = target_named(GetParam());
  const std::size_t sequences = 3;
  for (const Shape& shape : {Shape{7, 16, 2, 32, 2}, Shape{11, 24, 3, 40, 1}}) {
    for (std::uint64_t seed : {41u, 42u}) {
      const std::string what = t.name + ", context " + std::to_string(shape.context) + ", width " +
                               std::to_string(shape.width) + ", seed " + std::to_string(seed);
      model::Bundle b = random_bundle(shape, t, seed);
      if (GetParam() == "narrow") saturating_kernels(b);
      ASSERT_TRUE(b.sequence()) << what;
      const std::optional<std::string> why = hls_unsupported(b);
      ASSERT_FALSE(why.has_value()) << what << ": " << *why;
      const std::vector<std::uint8_t> tokens = random_tokens(sequences * static_cast<std::size_t>(shape.context), seed + 7);
      const std::vector<model::OpOutputs> want = model::IntEngine(b).run_all(tokens.data(), sequences);
      expect_equal_ops(b, run_hls_sequences(b, tokens.data(), sequences), want, what);
      // The verify registry's hls engine returns the same outputs at the same ops.
      const verify::Engine* hls = verify::find_engine("hls");
      ASSERT_NE(hls, nullptr);
      ASSERT_FALSE(hls->unsupported(b).has_value()) << what;
      expect_equal_ops(b, hls->run(b, tokens.data(), sequences).outputs, want, what + " (verify's hls engine)");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, TransformerHls, ::testing::Values("ternary-asic", "int4-fpga", "array-13x11.toml", "narrow"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param.substr(0, info.param.find('.'));
                           for (char& ch : name)
                             if (ch == '-') ch = '_';
                           return name;
                         });

// Greedy generation on the hls engine picks the integer engine's tokens (the window slides past
// the context).
TEST(TransformerHlsGenerate, GreedyTokensEqualTheIntegerEngines) {
  use_test_cache();
  const model::Bundle b = random_bundle(Shape{6, 16, 2, 32, 2}, target::builtin_target("int4-fpga"), 51);
  const std::vector<std::uint8_t> prompt = {'a', 'b', 'c'};
  const verify::Generation hls = verify::generate(*verify::find_engine("hls"), b, prompt, 9);
  const verify::Generation reference = verify::generate(*verify::find_engine("int"), b, prompt, 9);
  EXPECT_EQ(hls.tokens.size(), 12u);
  EXPECT_EQ(hls.tokens, reference.tokens);
}

// A model over the tops' static sizes is refused, naming the field and the limit, and the engine
// throws the same reason.
TEST(TransformerHlsLimits, ContextAndHeadsBeyondTheTopsAreRefusedNamingTheField) {
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  const model::Bundle long_context = random_bundle(Shape{300, 16, 2, 32, 1}, t, 5);
  const std::optional<std::string> why = hls_unsupported(long_context);
  ASSERT_TRUE(why.has_value());
  EXPECT_NE(why->find("context of 300"), std::string::npos) << *why;
  EXPECT_NE(why->find("kMaxContext = 256"), std::string::npos) << *why;
  const std::vector<std::uint8_t> tokens = random_tokens(300, 6);
  EXPECT_THROW(run_hls_sequences(long_context, tokens.data(), 1), std::runtime_error);

  const model::Bundle many_heads = random_bundle(Shape{4, 130, 65, 16, 1}, t, 7);
  const std::optional<std::string> heads = hls_unsupported(many_heads);
  ASSERT_TRUE(heads.has_value());
  EXPECT_NE(heads->find(" of 65 exceeds"), std::string::npos) << *heads;  // groups or heads
  EXPECT_NE(heads->find("kMaxHeads = 64"), std::string::npos) << *heads;
  EXPECT_NE(heads->find("op 'layer0."), std::string::npos) << *heads;
}

// C simulation speed on a bitnet-tiny-sized random model, every op checked too.
TEST(TransformerHlsSpeed, BitnetTinySized) {
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  const Shape shape{64, 128, 4, 512, 2};
  const model::Bundle b = random_bundle(shape, t, 11);
  ASSERT_FALSE(hls_unsupported(b).has_value());
  const std::size_t sequences = 2;
  const std::vector<std::uint8_t> tokens = random_tokens(sequences * static_cast<std::size_t>(shape.context), 12);
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<model::OpOutputs> got = run_hls_sequences(b, tokens.data(), sequences);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "HLS C simulation, context 64, width 128, 4 heads, ffn 512, 2 layers: "
            << static_cast<double>(sequences) / seconds << " sequences/s (" << seconds / sequences << " s each)\n";
  RecordProperty("sequences_per_s", std::to_string(static_cast<double>(sequences) / seconds));
  expect_equal_ops(b, got, model::IntEngine(b).run_all(tokens.data(), sequences), "bitnet-tiny-sized");
}

}  // namespace
}  // namespace qathw::hls
