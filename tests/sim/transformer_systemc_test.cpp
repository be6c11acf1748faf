// The SystemC model on the transformer's op graph (random tiny TransformerNets, calibrated and
// exported by training::make_bundle): every op of every position of a few sequences equal to the
// integer engine, on both built-in targets and an odd 5 x 7 array; the token-serial schedule's
// counts (every token's cycles summed, the last token's step, the vector units' closed forms of
// docs/sim.md); bitnet-tiny's size fits both built-in targets; a model too large is refused
// naming the field. The SystemC kernel elaborates once per process: each TEST runs the model at
// most once, and ctest runs each TEST in its own process.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "qathw/model/accelerator_layers.h"
#include "qathw/model/int_engine.h"
#include "qathw/sim/systemc_engine.h"
#include "qathw/target/target_spec.h"
#include "qathw/training/export.h"
#include "qathw/training/transformer_net.h"
#include "qathw/verify/engine.h"
#include "../engines/random_transformer.h"
#include "../engines/sequence_check.h"

namespace qathw::sim {
namespace {

using training::TransformerNet;

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; }

using Shape = test::TransformerShape;
using test::random_tokens;
using test::random_transformer_bundle;

// A random network of the shape, calibrated on `batch` random sequences, as a bundle.
model::Bundle random_bundle(const Shape& shape, const target::TargetSpec& t, std::uint64_t seed, int batch = 3) {
  return random_transformer_bundle(shape, t, seed, batch);
}

// ternary-asic with a 5 x 7 array: tiles and chunks that divide nothing.
// A 5 x 7 array whose vector unit sums 5 products a cycle into a 12-bit saturating accumulator:
// Q K^T and P V saturate chunk by chunk, which an engine on arith's default unit would not.
target::TargetSpec odd_array() {
  nlohmann::json j = target::to_json(target::builtin_target("ternary-asic"));
  j["name"] = "odd-5x7";
  j["array"]["rows"] = 5;
  j["array"]["lanes"] = 7;
  j["vector_unit"] = {{"lanes", 5}, {"operand_bits", 8}, {"accumulator_bits", 12}, {"overflow", "saturate"}};
  j.erase("hash");
  j.erase("origin");
  return target::target_from_json(j, "odd-5x7 (test)");
}

std::size_t layer_of(const std::vector<model::AcceleratorLayer>& layers, const model::Graph& g, const std::string& op) {
  for (std::size_t l = 0; l < layers.size(); ++l)
    if (g.ops[layers[l].output_op].name == op) return l;
  ADD_FAILURE() << "no layer writes op " << op;
  return 0;
}

// Runs `count` random sequences through the "systemc" engine (verify's wrapper) and requires
// every op it observes to equal the integer engine, every transformer op observed, and the
// token-serial counts to add up.
void check_sequences(const target::TargetSpec& t, const Shape& shape, std::uint64_t seed, int count) {
  const model::Bundle b = random_bundle(shape, t, seed);
  const std::optional<std::string> why = systemc_unsupported(b);
  EXPECT_FALSE(why) << *why;
  if (why) return;
  const std::vector<std::uint8_t> tokens =
      random_tokens(static_cast<std::size_t>(count) * shape.context, seed + 7);
  const verify::Engine* engine = verify::find_engine("systemc");
  EXPECT_NE(engine, nullptr);
  const verify::EngineRun run = engine->run(b, tokens.data(), static_cast<std::size_t>(count));
  const std::vector<model::OpOutputs> want = model::IntEngine(b).run_all(tokens.data(), static_cast<std::size_t>(count));
  const model::Graph& g = b.graph;
  test::expect_ops_equal(b, t.name, run, want);
  if (::testing::Test::HasFailure()) return;

  // The counts: every layer's sequence figure is the sum over its tokens; the last token's step
  // follows the closed forms of docs/sim.md, "Transformer layers".
  const model::AcceleratorLowering lowering = model::accelerator_layers(g, true);
  const nlohmann::json& st = run.stats;
  EXPECT_EQ(st.at("tokens").get<int>(), shape.context);
  EXPECT_EQ(st.at("layers").size(), lowering.layers.size());
  EXPECT_EQ(st.at("per_token").at("layers").size(), lowering.layers.size());
  EXPECT_GT(st.at("per_token").at("cycles").get<std::uint64_t>(), 0u);
  EXPECT_GT(st.at("per_token").at("energy_pj").get<double>(), 0.0);
  std::uint64_t sum = 0;
  for (const auto& l : st.at("layers")) sum += l.at("cycles").get<std::uint64_t>();
  EXPECT_EQ(sum, st.at("cycles_per_inference").get<std::uint64_t>());

  const std::uint64_t Lv = static_cast<std::uint64_t>(t.vector_unit.lanes);
  const std::uint64_t M = static_cast<std::uint64_t>(t.format.scale_mantissa_bits);
  const std::uint64_t H = static_cast<std::uint64_t>(shape.heads), D = static_cast<std::uint64_t>(shape.width);
  const std::uint64_t T = static_cast<std::uint64_t>(shape.context), dh = D / H;
  const std::uint64_t L = static_cast<std::uint64_t>(t.array.lanes), R = static_cast<std::uint64_t>(t.array.rows);
  const auto token_cycles = [&](const std::string& op) {
    return st.at("per_token").at("layers").at(layer_of(lowering.layers, g, op)).at("cycles").get<std::uint64_t>();
  };
  const auto sequence_cycles = [&](const std::string& op) {
    return st.at("layers").at(layer_of(lowering.layers, g, op)).at("cycles").get<std::uint64_t>();
  };
  std::uint64_t scores = 0, softmax = 0, attend = 0;
  for (std::uint64_t n = 1; n <= T; ++n) {
    scores += 2 * H + H * n * ceil_div(dh, Lv) + 1;  // two factors per head's pair
    softmax += H * (3 * ceil_div(n, Lv) + M);
    attend += D * ceil_div(n, Lv);
  }
  EXPECT_EQ(token_cycles("layer1.scores"), 2 * H + H * T * ceil_div(dh, Lv) + 1);
  EXPECT_EQ(token_cycles("layer1.softmax"), H * (3 * ceil_div(T, Lv) + M));
  EXPECT_EQ(token_cycles("layer1.attend"), D * ceil_div(T, Lv));
  EXPECT_EQ(sequence_cycles("layer0.scores"), scores);
  EXPECT_EQ(sequence_cycles("layer0.softmax"), softmax);
  EXPECT_EQ(sequence_cycles("layer0.attend"), attend);
  // Position-independent layers cost the same at every token.
  EXPECT_EQ(token_cycles("embedding"), ceil_div(D, L));
  EXPECT_EQ(sequence_cycles("embedding"), T * ceil_div(D, L));
  EXPECT_EQ(token_cycles("layer0.attention_norm"), 2 * ceil_div(D, Lv) + 64 + 32 + M);
  EXPECT_EQ(token_cycles("layer0.squared_relu"), ceil_div(static_cast<std::uint64_t>(shape.ffn), Lv));
  // Q's, K's and V's linear layers read the norm's codes: no quantizer of their own.
  EXPECT_EQ(token_cycles("layer0.wk"), ceil_div(D, R) * ceil_div(D, L) + 1);
  // The FFN's add: three factors, then the adder.
  EXPECT_EQ(token_cycles("layer0.ffn_add"), 3 + ceil_div(D, L));
  EXPECT_EQ(sequence_cycles("head"), T * token_cycles("head"));
}

TEST(TransformerSystemC, TernaryAsicEqualsTheIntegerEngineOnEveryOp) {
  check_sequences(target::builtin_target("ternary-asic"), Shape{}, 31, 3);
}

TEST(TransformerSystemC, Int4FpgaEqualsTheIntegerEngineOnEveryOp) {
  check_sequences(target::builtin_target("int4-fpga"), Shape{}, 32, 3);
}

// A KV cache region (memory.kv_cache_kib, here more than the caches need) moves every token's
// buffers past it: the same integers on every op.
TEST(TransformerSystemC, KvCacheRegionEqualsTheIntegerEngineOnEveryOp) {
  target::TargetSpec t = target::builtin_target("ternary-asic");
  t.memory.kv_cache_kib = 1;  // the caches: 7 tokens x 2 layers x K, V x 16 codes = 448 bytes
  check_sequences(t, Shape{}, 34, 3);
}

TEST(TransformerSystemC, OddArrayEqualsTheIntegerEngineOnEveryOp) {
  // Heads of 12 features (not a multiple of the vector unit's 5 lanes), an FFN of 40.
  check_sequences(odd_array(), Shape{9, 24, 2, 40, 2}, 33, 2);
  // The narrow vector unit is what the engines computed with: on arith's default unit the same
  // model gives other scores (its 12-bit accumulator saturated).
  model::Bundle b = random_bundle(Shape{9, 24, 2, 40, 2}, odd_array(), 33);
  const std::vector<std::uint8_t> tokens = random_tokens(2 * 9, 33 + 7);
  const model::OpOutputs narrow = model::IntEngine(b).run_all(tokens.data(), 2)[1];
  b.target.vector_unit = arith::VectorUnit{};
  const model::OpOutputs wide = model::IntEngine(b).run_all(tokens.data(), 2)[1];
  const std::size_t scores = *b.graph.producer("layer0.scores");
  EXPECT_NE(narrow[scores], wide[scores]);
}

// The SystemC run itself: every token's cycles add up to the sequence's, layer by layer; an
// image-sized run of one token would be the same layers once.
TEST(TransformerSystemC, SequenceCountsAreTheSumOverTokens) {
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  const Shape shape;
  const model::Bundle b = random_bundle(shape, t, 34);
  const std::vector<std::uint8_t> tokens = random_tokens(2 * static_cast<std::size_t>(shape.context), 35);
  const SimRun run = run_systemc(b, tokens.data(), 2, false);
  ASSERT_EQ(run.outputs.size(), 2u);
  const std::vector<model::OpOutputs> want = model::IntEngine(b).run_all(tokens.data(), 2);
  for (int s = 0; s < 2; ++s) {  // without keep_layers: the logits of every position
    ASSERT_EQ(run.outputs[s].size(), 1u);
    EXPECT_EQ(run.outputs[s][0], want[s].back());
  }
  for (const InferenceStats& st : run.stats) {
    ASSERT_EQ(st.token_cycles.size(), static_cast<std::size_t>(shape.context));
    std::uint64_t sum = 0;
    for (std::uint64_t c : st.token_cycles) {
      EXPECT_GT(c, 0u);
      sum += c;
    }
    EXPECT_EQ(sum, st.total.cycles);
    EXPECT_EQ(st.token_cycles.back(), st.last_token.cycles);
    ASSERT_EQ(st.last_token_layers.size(), st.layers.size());
    LayerStats total;
    for (const LayerStats& l : st.last_token_layers) total += l;
    EXPECT_EQ(total.cycles, st.last_token.cycles);
    // Attention grows with the position: the last token costs more than the first.
    EXPECT_GT(st.token_cycles.back(), st.token_cycles.front());
    EXPECT_GT(st.total.multiplies, 0u);
  }
  EXPECT_EQ(run.stats[0].total.cycles, run.stats[1].total.cycles);  // the shapes decide the counts
}

// bitnet-tiny's shape (context 64, width 128, 2 layers, 4 heads, FFN 512) on both built-in
// targets: it fits, runs equal to the integer engine, and its per-token figures are printed.
void bitnet_tiny(const char* target_name) {
  const target::TargetSpec t = target::builtin_target(target_name);
  const Shape shape{64, 128, 4, 512, 2};
  const model::Bundle b = random_bundle(shape, t, 36, 2);
  const std::optional<std::string> why = systemc_unsupported(b);
  ASSERT_FALSE(why) << *why;
  // What it needs of each SRAM, from the refusal of a target with 1 KiB of it.
  for (const bool weights : {true, false}) {
    model::Bundle small = b;
    (weights ? small.target.memory.weight_sram_kib : small.target.memory.activation_sram_kib) = 1;
    const std::optional<std::string> need = systemc_unsupported(small);
    ASSERT_TRUE(need);
    std::printf("%s: %s\n", target_name, need->c_str());
  }
  const std::vector<std::uint8_t> tokens = random_tokens(static_cast<std::size_t>(shape.context), 37);
  const verify::EngineRun run = verify::find_engine("systemc")->run(b, tokens.data(), 1);
  const model::OpOutputs want = model::IntEngine(b).run(tokens.data());
  for (std::size_t i = 0; i < b.graph.ops.size(); ++i) {
    if (run.outputs[0][i].empty()) continue;  // a fused quantizer's codes
    EXPECT_EQ(run.outputs[0][i], want[i]) << b.graph.ops[i].name;
  }
  const nlohmann::json& st = run.stats;
  const double mhz = t.clock_mhz;
  const auto cycles = st.at("per_token").at("cycles").get<std::uint64_t>();
  std::printf("%s, bitnet-tiny shape: sequence of %d tokens %llu cycles, %.1f nJ; last token %llu cycles "
              "(%.2f us at %.0f MHz), %.1f nJ\n",
              target_name, shape.context, static_cast<unsigned long long>(st.at("cycles_per_inference").get<std::uint64_t>()),
              st.at("energy_pj_per_inference").get<double>() / 1000, static_cast<unsigned long long>(cycles),
              static_cast<double>(cycles) / mhz, mhz, st.at("per_token").at("energy_pj").get<double>() / 1000);
  for (const auto& l : st.at("per_token").at("layers"))
    if (l.at("op").get<std::string>().rfind("layer0.", 0) == 0 || l.at("op") == "embedding" || l.at("op") == "head")
      std::printf("  %-24s %-12s %8llu cycles %9.1f pJ\n", l.at("op").get<std::string>().c_str(),
                  l.at("kind").get<std::string>().c_str(), static_cast<unsigned long long>(l.at("cycles").get<std::uint64_t>()),
                  l.at("energy_pj").get<double>());
  EXPECT_GT(cycles, 0u);
}

TEST(TransformerSystemC, BitnetTinyRunsOnTernaryAsic) { bitnet_tiny("ternary-asic"); }
TEST(TransformerSystemC, BitnetTinyRunsOnInt4Fpga) { bitnet_tiny("int4-fpga"); }

// A model larger than an SRAM is refused before it runs, naming the field and the bytes.
TEST(TransformerSystemC, TooLargeAModelIsRefusedNamingTheField) {
  target::TargetSpec t = target::builtin_target("ternary-asic");
  const Shape shape{32, 64, 2, 128, 2};
  {
    target::TargetSpec small = t;
    small.memory.activation_sram_kib = 8;  // the KV cache alone: 2 layers x K, V x 32 x 64 = 8 KiB
    const model::Bundle b = random_bundle(shape, small, 38);
    const std::optional<std::string> why = systemc_unsupported(b);
    ASSERT_TRUE(why);
    EXPECT_NE(why->find("memory.activation_sram_kib"), std::string::npos) << *why;
    EXPECT_NE(why->find("8192 of them the KV cache"), std::string::npos) << *why;
    EXPECT_THROW(run_systemc(b, random_tokens(32, 1).data(), 1, false), std::runtime_error);
  }
  {
    target::TargetSpec small = t;
    small.memory.weight_sram_kib = 16;
    const model::Bundle b = random_bundle(shape, small, 39);
    const std::optional<std::string> why = systemc_unsupported(b);
    ASSERT_TRUE(why);
    EXPECT_NE(why->find("memory.weight_sram_kib"), std::string::npos) << *why;
    EXPECT_NE(why->find("bytes of weight SRAM"), std::string::npos) << *why;
  }
  {
    // A KV cache region too small for the context: refused by the SystemC model and the RTL alike,
    // naming the field and the tokens it holds (the caches: 2 x 2 x 64 = 256 bytes a token).
    target::TargetSpec small = t;
    small.memory.kv_cache_kib = 4;
    const model::Bundle b = random_bundle(shape, small, 41);
    const std::optional<std::string> why = systemc_unsupported(b);
    ASSERT_TRUE(why);
    EXPECT_NE(why->find("the model's KV caches need 8192 bytes (32 tokens x 256); target 'ternary-asic' reserves "
                        "4096 (memory.kv_cache_kib): room for 16 tokens"),
              std::string::npos)
        << *why;
    EXPECT_THROW(run_systemc(b, random_tokens(32, 1).data(), 1, false), std::runtime_error);
    const verify::Engine* rtl = verify::find_engine("rtl");
    ASSERT_NE(rtl, nullptr);
    const std::optional<std::string> rtl_why = rtl->unsupported(b);
    ASSERT_TRUE(rtl_why);
    EXPECT_NE(rtl_why->find("room for 16 tokens"), std::string::npos) << *rtl_why;
  }
  {
    // A region the caches fit, but the region and one token's buffers exceed the SRAM: the whole
    // region counts, and the message says so.
    target::TargetSpec small = t;
    small.memory.activation_sram_kib = 12;
    small.memory.kv_cache_kib = 12;
    const model::Bundle b = random_bundle(shape, small, 42);
    const std::optional<std::string> why = systemc_unsupported(b);
    ASSERT_TRUE(why);
    EXPECT_NE(why->find("(12288 of them the KV cache region, memory.kv_cache_kib); target 'ternary-asic' has 12288 "
                        "(memory.activation_sram_kib)"),
              std::string::npos)
        << *why;
    // Exactly the caches' size, with room after it: the model runs.
    small.memory.activation_sram_kib = 64;
    small.memory.kv_cache_kib = 8;
    EXPECT_FALSE(systemc_unsupported(random_bundle(shape, small, 43)));
  }
  // The lowering without the transformer units (the CUDA engine's, the HLS image tops') refuses its
  // ops naming the op; the RTL lowers them with the units and runs them.
  const model::Bundle b = random_bundle(Shape{}, t, 40);
  const model::AcceleratorLowering image_only = model::accelerator_layers(b.graph);
  ASSERT_TRUE(image_only.unsupported);
  EXPECT_NE(image_only.unsupported->find("op 'embedding' (embed)"), std::string::npos) << *image_only.unsupported;
  const verify::Engine* rtl = verify::find_engine("rtl");
  ASSERT_NE(rtl, nullptr);
  EXPECT_FALSE(rtl->unsupported(b)) << *rtl->unsupported(b);
}

}  // namespace
}  // namespace qathw::sim
