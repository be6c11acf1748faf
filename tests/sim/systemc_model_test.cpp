// The SystemC model against the integer engine (every layer, exact) and against the closed-form
// cycle model of docs/sim.md. The SystemC kernel elaborates once per process: each TEST runs the
// model once, and ctest runs each TEST in its own process.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "../arith/test_support.h"
#include "qathw/sim/systemc_engine.h"
#include "qathw/model/bundle.h"
#include "qathw/training/export.h"
#include "qathw/model/int_engine.h"

namespace qathw::sim {
namespace {

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; }

// docs/sim.md, "Cycle model", written out independently of the model's code.
LayerStats closed_form(const target::TargetSpec& t, std::uint64_t in, std::uint64_t out, bool first) {
  const std::uint64_t rows = t.array.rows, lanes = t.array.lanes;
  const std::uint64_t chunks = ceil_div(in, lanes), tiles = ceil_div(out, rows);
  const std::uint64_t act = t.format.act_bits, acc = t.format.acc_bits;
  const std::uint64_t code = t.format.weights == arith::WeightFormat::Ternary ? 2 : 4;
  const std::uint64_t input_bits = first ? 8 : acc;
  LayerStats s;
  s.quantizer_cycles = 2 * chunks + t.format.scale_mantissa_bits;
  s.array_cycles = tiles * chunks;
  s.requant_cycles = 1;
  s.cycles = s.quantizer_cycles + s.array_cycles + s.requant_cycles;
  s.macs = in * out;
  s.mac_slots = tiles * chunks * rows * lanes;
  s.adds = in * out;
  s.weight_read_bits = in * out * code;
  s.act_read_bits = 2 * in * input_bits + tiles * in * act;
  s.act_write_bits = in * act + out * acc;
  s.register_write_bits = out * chunks * acc;
  return s;
}

void expect_same(const LayerStats& got, const LayerStats& want, std::size_t layer) {
  EXPECT_EQ(got.cycles, want.cycles) << "layer " << layer;
  EXPECT_EQ(got.quantizer_cycles, want.quantizer_cycles) << "layer " << layer;
  EXPECT_EQ(got.array_cycles, want.array_cycles) << "layer " << layer;
  EXPECT_EQ(got.requant_cycles, want.requant_cycles) << "layer " << layer;
  EXPECT_EQ(got.macs, want.macs) << "layer " << layer;
  EXPECT_EQ(got.mac_slots, want.mac_slots) << "layer " << layer;
  EXPECT_EQ(got.adds, want.adds) << "layer " << layer;
  EXPECT_EQ(got.weight_read_bits, want.weight_read_bits) << "layer " << layer;
  EXPECT_EQ(got.act_read_bits, want.act_read_bits) << "layer " << layer;
  EXPECT_EQ(got.act_write_bits, want.act_write_bits) << "layer " << layer;
  EXPECT_EQ(got.register_write_bits, want.register_write_bits) << "layer " << layer;
}

target::TargetSpec variant(const std::string& base, const std::string& from, const std::string& to) {
  const target::TargetSpec b = target::builtin_target(base);
  nlohmann::json j = target::to_json(b);
  std::string text = j.dump();
  const auto pos = text.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  text.replace(pos, from.size(), to);
  return target::target_from_json(nlohmann::json::parse(text), "variant of " + base);
}

struct Case {
  target::TargetSpec target;
  training::Mlp net;
  int rows = 1, cols = 1;
  std::vector<std::uint8_t> pixels;  // samples x rows*cols
};

Case random_case(const target::TargetSpec& t, int rows, int cols, std::vector<int> hidden, int classes,
                 std::size_t samples, std::uint64_t seed) {
  Case c{t, training::make_mlp(rows * cols, hidden, classes, seed), rows, cols, {}};
  std::mt19937_64 rng(seed);
  c.pixels.resize(samples * rows * cols);
  for (auto& p : c.pixels) p = static_cast<std::uint8_t>(rng() % 256);
  return c;
}

// Runs the case through the SystemC model; every layer must equal the integer engine, and every
// layer's counts the closed form.
SimRun check_case(const Case& c, std::uint64_t seed) {
  const model::Bundle bundle = training::make_bundle(c.net, c.target, c.rows, c.cols, {});
  const std::size_t features = static_cast<std::size_t>(c.rows) * c.cols;
  const std::size_t samples = c.pixels.size() / features;
  SimRun run = run_systemc(bundle, c.pixels.data(), samples, true);
  const model::IntEngine engine(bundle);
  const std::vector<model::AcceleratorLayer> layers = model::accelerator_layers(bundle.graph).layers;
  EXPECT_EQ(run.outputs.size(), samples);
  long mismatches = 0;
  for (std::size_t i = 0; i < samples; ++i) {
    const model::LayerOutputs want = model::layer_outputs(layers, engine.run(c.pixels.data() + i * features));
    for (std::size_t l = 0; l < want.size(); ++l)
      if (run.outputs[i][l] != want[l] && ++mismatches <= 3)
        ADD_FAILURE() << "sample " << i << " layer " << l << " differs from the integer engine; "
                      << test::seed_note(seed);
  }
  EXPECT_EQ(mismatches, 0);
  for (std::size_t l = 0; l < layers.size(); ++l)
    expect_same(run.stats.front().layers[l], closed_form(c.target, layers[l].in, layers[l].out, l == 0), l);
  return run;
}

TEST(SystemCModel, OddShapesTernaryMatchIntEngineAndCycleModel) {
  const std::uint64_t seed = test::test_seed(11);
  check_case(random_case(target::builtin_target("ternary-asic"), 5, 7, {23, 17}, 5, 40, seed), seed);
}

TEST(SystemCModel, OddShapesInt4MatchIntEngineAndCycleModel) {
  const std::uint64_t seed = test::test_seed(12);
  check_case(random_case(target::builtin_target("int4-fpga"), 3, 13, {41, 9}, 3, 40, seed), seed);
}

// Activation codes wider than 8 bits are held as int16 in the code scratch area. One SystemC run
// per process: one test per width.
void check_activation_bits(int bits) {
  const std::uint64_t seed = test::test_seed(15) + static_cast<std::uint64_t>(bits);
  const target::TargetSpec t =
      variant("ternary-asic", "\"activations\":{\"bits\":8", "\"activations\":{\"bits\":" + std::to_string(bits));
  check_case(random_case(t, 4, 9, {19}, 3, 20, seed), seed);
}
TEST(SystemCModel, Activations9BitsMatchIntEngine) { check_activation_bits(9); }
TEST(SystemCModel, Activations12BitsMatchIntEngine) { check_activation_bits(12); }
TEST(SystemCModel, Activations16BitsMatchIntEngine) { check_activation_bits(16); }

TEST(SystemCModel, LayerNarrowerThanTheArray) {
  const std::uint64_t seed = test::test_seed(13);
  check_case(random_case(target::builtin_target("ternary-asic"), 1, 3, {2}, 2, 20, seed), seed);
}

// All-positive weights and saturated pixels drive a 12-bit saturating accumulator to its limit
// mid-sum: the array's per-cycle saturation must match the integer engine's.
TEST(SystemCModel, SaturatingAccumulatorAtItsLimit) {
  const target::TargetSpec t = variant("ternary-asic", "\"accumulator_bits\":24", "\"accumulator_bits\":12");
  Case c = random_case(t, 4, 25, {16}, 4, 12, 14);
  for (auto& layer : c.net.layers)
    for (auto& w : layer.w) w = std::fabs(w) + 0.01f;
  for (std::size_t i = 0; i < 100 * 4; ++i) c.pixels[i] = 255;  // the first four samples saturate
  const SimRun run = check_case(c, 14);
  bool saturated = false;
  for (const auto& o : run.outputs)
    for (std::int32_t z : o.front()) saturated |= z == 2047;
  EXPECT_TRUE(saturated) << "no accumulator reached the 12-bit limit: the corner was not exercised";
}

TEST(SystemCModel, WrappingAccumulator) {
  const target::TargetSpec t = variant("int4-fpga", "\"accumulator_bits\":32", "\"accumulator_bits\":10");
  const std::uint64_t seed = test::test_seed(15);
  Case c = random_case(t, 6, 10, {12}, 3, 30, seed);
  for (std::size_t i = 0; i < 60 * 10; ++i) c.pixels[i] = 255;
  check_case(c, seed);
}

TEST(SystemCModel, AllZeroAndAllMaximumInputs) {
  Case c = random_case(target::builtin_target("ternary-asic"), 8, 8, {20, 20}, 4, 4, 16);
  std::fill(c.pixels.begin(), c.pixels.begin() + 64, 0);         // all-zero token: codes 0
  std::fill(c.pixels.begin() + 64, c.pixels.begin() + 128, 255);  // maximum magnitude
  const SimRun run = check_case(c, 16);
  for (std::int32_t z : run.outputs[0].front()) EXPECT_EQ(z, 0);
}

TEST(SystemCModel, ModelLargerThanTheWeightSramIsRefused) {
  const target::TargetSpec t = variant("ternary-asic", "\"weight_sram_kib\":256", "\"weight_sram_kib\":1");
  const Case c = random_case(t, 28, 28, {64}, 10, 1, 17);
  const model::Bundle bundle = training::make_bundle(c.net, t, 28, 28, {});
  try {
    run_systemc(bundle, c.pixels.data(), 1, false);
    FAIL() << "expected the weight SRAM check to fail";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("memory.weight_sram_kib"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace qathw::sim
