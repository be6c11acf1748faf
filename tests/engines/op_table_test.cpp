// The cross-engine op table: every op of the deployed graph (quantize, linear, relu) on a grid of
// targets (activation bits 2..16, both weight formats, both rounding modes, narrow saturating and
// wrapping accumulators, geometries 1x1 to 65x2) with shapes that are no multiple of the array,
// run on every engine of the registry and compared with the integer engine on every op both
// observe. Random valid targets from a seeded generator join the grid. Each (target, engine) pair
// is its own test, so its own process: the SystemC kernel runs once per process.
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "../arith/test_support.h"
#include "qathw/model/accelerator_layers.h"
#include "random_transformer.h"
#include "qathw/model/int_engine.h"
#include "qathw/target/target_spec.h"
#include "qathw/training/export.h"
#include "qathw/verify/compare.h"
#include "qathw/verify/engine.h"

namespace qathw::verify {
namespace {

using arith::Overflow;
using arith::Rounding;
using arith::WeightFormat;

struct GridTarget {
  std::string name;
  WeightFormat weights;
  int act_bits;
  Rounding rounding;
  int acc_bits;
  Overflow overflow;
  int rows, lanes;
};

// Each geometry carries a different mix of the numeric fields, so the grid covers every value of
// each with one RTL build per geometry.
const GridTarget kGrid[] = {
    {"g1x1_ternary_a8_sat24", WeightFormat::Ternary, 8, Rounding::HalfAwayFromZero, 24, Overflow::Saturate, 1, 1},
    {"g1x3_int4_a2_even_wrap16", WeightFormat::Int4, 2, Rounding::HalfEven, 16, Overflow::Wrap, 1, 3},
    {"g3x1_ternary_a9_even_sat12", WeightFormat::Ternary, 9, Rounding::HalfEven, 12, Overflow::Saturate, 3, 1},
    {"g5x7_int4_a12_wrap32", WeightFormat::Int4, 12, Rounding::HalfAwayFromZero, 32, Overflow::Wrap, 5, 7},
    {"g13x11_ternary_a16_even_sat32", WeightFormat::Ternary, 16, Rounding::HalfEven, 32, Overflow::Saturate, 13, 11},
    {"g2x97_int4_a16_sat20", WeightFormat::Int4, 16, Rounding::HalfAwayFromZero, 20, Overflow::Saturate, 2, 97},
    {"g65x2_ternary_a4_wrap10", WeightFormat::Ternary, 4, Rounding::HalfAwayFromZero, 10, Overflow::Wrap, 65, 2},
};

// A spec validated like any TOML file: the grid may only hold targets the validator accepts.
target::TargetSpec validated(target::TargetSpec t) {
  return target::target_from_json(target::to_json(t), "op table target " + t.name);
}

target::TargetSpec grid_target(const GridTarget& g) {
  target::TargetSpec t = target::builtin_target("ternary-asic");
  t.name = g.name;
  t.format.weights = g.weights;
  t.format.act_bits = g.act_bits;
  t.format.rounding = g.rounding;
  t.format.acc_bits = g.acc_bits;
  t.format.overflow = g.overflow;
  t.array.rows = g.rows;
  t.array.lanes = g.lanes;
  return validated(t);
}

// A random valid target: every numeric field drawn from its documented range (geometry kept
// small so that an RTL build stays quick); drawn again until the validator accepts it.
target::TargetSpec random_target(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (;;) {
    target::TargetSpec t = target::builtin_target("ternary-asic");
    t.name = "random-" + std::to_string(seed);
    t.format.weights = pick(0, 1) ? WeightFormat::Int4 : WeightFormat::Ternary;
    t.format.act_bits = pick(arith::kMinActBits, arith::kMaxActBits);
    t.format.rounding = pick(0, 1) ? Rounding::HalfEven : Rounding::HalfAwayFromZero;
    t.format.acc_bits = pick(arith::kMinAccBits, arith::kMaxAccBits);
    t.format.overflow = pick(0, 1) ? Overflow::Wrap : Overflow::Saturate;
    t.format.scale_mantissa_bits = pick(8, 24);
    t.array.rows = pick(1, 9);
    t.array.lanes = pick(1, 9);
    try {
      return validated(t);
    } catch (const target::TargetError&) {
      // another draw
    }
  }
}

// 35 inputs, layers 35 -> 70 -> 13 -> 5: no multiple of any array, and more than 64 output
// channels, so arrays of 65 rows run two tiles. It fits the RTL's weight memory on a 1x1 array.
constexpr int kRows = 5, kCols = 7;
constexpr std::size_t kSamples = 24;

struct Case {
  std::string name;
  std::function<target::TargetSpec()> target;
  std::uint64_t seed;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  for (const GridTarget& g : kGrid) out.push_back({g.name, [g] { return grid_target(g); }, test::test_seed(101)});
  for (const char* name : {"ternary-asic", "int4-fpga"}) {
    std::string id = name;
    for (char& c : id)
      if (c == '-') c = '_';
    out.push_back({id, [name] { return target::builtin_target(name); }, test::test_seed(102)});
  }
  for (std::uint64_t k = 0; k < 4; ++k) {
    const std::uint64_t seed = test::test_seed(200) + k;
    out.push_back({"random" + std::to_string(k), [seed] { return random_target(seed); }, seed});
  }
  return out;
}

// Pixels of every kind: uniform noise, all zero, all 255, sparse.
std::vector<std::uint8_t> pixels(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::uint8_t> px(kSamples * kRows * kCols);
  for (auto& p : px) p = static_cast<std::uint8_t>(rng() % 256);
  const std::size_t f = kRows * kCols;
  std::fill_n(px.begin(), f, 0);
  std::fill_n(px.begin() + f, f, 255);
  for (std::size_t k = 0; k < f; ++k) px[2 * f + k] = rng() % 5 == 0 ? static_cast<std::uint8_t>(rng() % 256) : 0;
  return px;
}

class OpTable : public ::testing::TestWithParam<std::tuple<Case, std::string>> {
 protected:
  void SetUp() override { setenv("QATHW_CACHE_DIR", QATHW_TEST_CACHE_DIR, 0); }
};

TEST_P(OpTable, EveryOpEqualsTheIntegerEngine) {
  const auto& [c, engine_name] = GetParam();
  const target::TargetSpec t = c.target();
  SCOPED_TRACE("target " + c.name + " (" + target::to_json(t).dump() + "), " + test::seed_note(c.seed));
  const model::Bundle b = training::make_bundle(training::make_mlp(kRows * kCols, {70, 13}, 5, c.seed), t, kRows, kCols, {});
  const Engine* engine = find_engine(engine_name);
  ASSERT_NE(engine, nullptr);
  if (const auto why = engine->unsupported(b)) GTEST_SKIP() << engine_name << ": " << *why;
  const std::vector<std::uint8_t> px = pixels(c.seed);
  const std::vector<model::OpOutputs> want = model::IntEngine(b).run_all(px.data(), kSamples);
  const EngineRun got = engine->run(b, px.data(), kSamples);
  const Comparison cmp = compare(b.graph, "int", want, engine_name, got.outputs);
  EXPECT_EQ(cmp.samples, kSamples);
  EXPECT_FALSE(cmp.first) << describe(*cmp.first);
  if (engine_name != "int") {
    // A fused engine observes each layer's output: every relu op and the last linear.
    EXPECT_EQ(cmp.ops, (std::vector<std::string>{"layer0.relu", "layer1.relu", "layer2.linear"}));
  }
}

std::string case_name(const ::testing::TestParamInfo<std::tuple<Case, std::string>>& info) {
  return std::get<0>(info.param).name + "_" + std::get<1>(info.param);
}

INSTANTIATE_TEST_SUITE_P(Engines, OpTable,
                         ::testing::Combine(::testing::ValuesIn(cases()),
                                            ::testing::Values("int", "systemc", "rtl", "hls")),
                         case_name);

// The transformer's op table: a random tiny transformer (2 sequences) on the built-in targets,
// every engine of the registry that runs sequences against the integer engine on every op both
// observe. The fused engines (SystemC, RTL) observe every layer of the lowering (a quantizer fused
// into its linear layer keeps its codes inside); the HLS transformer tops every op.
class TransformerOpTable : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(TransformerOpTable, EveryObservedOpEqualsTheIntegerEngine) {
  const auto& [target_name, engine_name] = GetParam();
  const target::TargetSpec t = target::builtin_target(target_name);
  const std::uint64_t seed = test::test_seed(103);
  SCOPED_TRACE("target " + target_name + ", " + test::seed_note(seed));
  const test::TransformerShape shape;
  const model::Bundle b = test::random_transformer_bundle(shape, t, seed);
  const Engine* engine = find_engine(engine_name);
  ASSERT_NE(engine, nullptr);
  const auto why = engine->unsupported(b);
  ASSERT_FALSE(why) << engine_name << ": " << *why;
  constexpr std::size_t kSequences = 2;
  const std::vector<std::uint8_t> tokens = test::random_tokens(kSequences * shape.context, seed + 7);
  const std::vector<model::OpOutputs> want = model::IntEngine(b).run_all(tokens.data(), kSequences);
  const EngineRun got = engine->run(b, tokens.data(), kSequences);
  const Comparison cmp = compare(b.graph, "int", want, engine_name, got.outputs);
  EXPECT_EQ(cmp.samples, kSequences);
  EXPECT_FALSE(cmp.first) << describe(*cmp.first);
  const std::size_t layers = model::accelerator_layers(b.graph, true).layers.size();
  const std::size_t expected = engine_name == "systemc" || engine_name == "rtl" ? layers : b.graph.ops.size();
  EXPECT_EQ(cmp.ops.size(), expected);
}

std::string transformer_case_name(const ::testing::TestParamInfo<std::tuple<std::string, std::string>>& info) {
  std::string name = std::get<0>(info.param) + "_" + std::get<1>(info.param);
  for (char& c : name)
    if (c == '-') c = '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(Engines, TransformerOpTable,
                         ::testing::Combine(::testing::Values("ternary-asic", "int4-fpga"),
                                            ::testing::Values("int", "systemc", "rtl", "hls")),
                         transformer_case_name);

// The generator yields targets the validator accepts, different ones for different seeds.
TEST(RandomTargets, ValidAndVaried) {
  std::vector<std::string> hashes;
  for (std::uint64_t k = 0; k < 50; ++k) {
    const target::TargetSpec t = random_target(test::test_seed(300) + k);
    EXPECT_NO_THROW(validated(t)) << test::seed_note(test::test_seed(300) + k);
    hashes.push_back(target::content_hash(t));
  }
  std::sort(hashes.begin(), hashes.end());
  EXPECT_GT(std::unique(hashes.begin(), hashes.end()) - hashes.begin(), 40);
}

}  // namespace
}  // namespace qathw::verify
