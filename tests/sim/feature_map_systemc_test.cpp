// The SystemC model on convolutional graphs (the built-in models with seeded random kernels):
// every layer equal to the integer engine, every layer's counts equal to the cycle model of
// docs/sim.md written out here independently, the activation SRAM's allocation by liveness
// (lenet fits ternary-asic's 64 KiB), and a model too large refused naming the field. The SystemC
// kernel elaborates once per process: each TEST runs the model once, and ctest runs each TEST in
// its own process.
#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "../arith/test_support.h"
#include "../model/random_model.h"
#include "qathw/model/accelerator_layers.h"
#include "qathw/model/int_engine.h"
#include "qathw/model/model_spec.h"
#include "qathw/sim/systemc_engine.h"

namespace qathw::sim {
namespace {

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; }

target::TargetSpec odd_target() { return test::odd_target("odd-array"); }

// The target with an activation SRAM large enough for any of the built-in models.
target::TargetSpec with_large_activation_sram(target::TargetSpec t) {
  t.memory.activation_sram_kib = 1024;
  return t;
}

// docs/sim.md, "Cycle model", for one layer, written out independently of the model's code.
LayerStats closed_form(const target::TargetSpec& t, const model::AcceleratorLayer& l) {
  const std::uint64_t R = t.array.rows, L = t.array.lanes, M = t.format.scale_mantissa_bits;
  const std::uint64_t A = t.format.act_bits, B = t.format.acc_bits;
  const std::uint64_t c = t.format.weights == arith::WeightFormat::Ternary ? 2 : 4;
  const std::uint64_t in = static_cast<std::uint64_t>(l.in), out = static_cast<std::uint64_t>(l.out);
  LayerStats s;
  const auto in_map = [](int pos, int stride, int pad, int k, int size) {
    const int at = pos * stride - pad + k;
    return at >= 0 && at < size;
  };
  switch (l.kind) {
    case model::AcceleratorOp::Linear:
    case model::AcceleratorOp::Conv2d: {
      const std::uint64_t I = l.input == model::AcceleratorLayer::kPixels ? 8 : B;
      const bool dynamic = l.quantizer.empty();
      s.quantizer_cycles = dynamic ? 2 * ceil_div(in, L) + M : ceil_div(in, L);
      s.act_read_bits = (dynamic ? 2 : 1) * in * I;
      s.act_write_bits = in * A + out * B;
      s.requant_cycles = 1;
      if (l.kind == model::AcceleratorOp::Linear) {
        const std::uint64_t C = ceil_div(in, L), T = ceil_div(out, R);
        s.array_cycles = T * C;
        s.macs = s.adds = in * out;
        s.weight_read_bits = in * out * c;
        s.act_read_bits += T * in * A;
        s.register_write_bits = out * C * B;
      } else {
        const arith::Conv2dShape& m = l.map;
        const arith::Window& w = m.window;
        const std::uint64_t oh = static_cast<std::uint64_t>((m.in_h + 2 * w.pad_h - w.kernel_h) / w.stride_h + 1);
        const std::uint64_t ow = static_cast<std::uint64_t>((m.in_w + 2 * w.pad_w - w.kernel_w) / w.stride_w + 1);
        const std::uint64_t gi = static_cast<std::uint64_t>(m.in_c / m.groups);
        const std::uint64_t go = static_cast<std::uint64_t>(m.out_c / m.groups);
        const std::uint64_t P = static_cast<std::uint64_t>(m.window.kernel_h * m.window.kernel_w) * gi;
        const std::uint64_t C = ceil_div(P, L), T = ceil_div(go, R), G = static_cast<std::uint64_t>(m.groups);
        std::uint64_t inside = 0;  // in-map patch positions over all output pixels
        for (std::uint64_t oy = 0; oy < oh; ++oy)
          for (std::uint64_t ox = 0; ox < ow; ++ox)
            for (int ky = 0; ky < m.window.kernel_h; ++ky)
              for (int kx = 0; kx < m.window.kernel_w; ++kx)
                if (in_map(static_cast<int>(oy), m.window.stride_h, m.window.pad_h, ky, m.in_h) &&
                    in_map(static_cast<int>(ox), m.window.stride_w, m.window.pad_w, kx, m.in_w))
                  inside += gi;
        s.array_cycles = G * T * oh * ow * C;
        s.macs = s.adds = oh * ow * static_cast<std::uint64_t>(m.out_c) * P;
        s.weight_read_bits = static_cast<std::uint64_t>(m.out_c) * P * c;
        s.act_read_bits += G * T * inside * A;
        s.register_write_bits = oh * ow * static_cast<std::uint64_t>(m.out_c) * C * B;
      }
      s.mac_slots = s.array_cycles * R * L;
      break;
    }
    case model::AcceleratorOp::MaxPool:
    case model::AcceleratorOp::AvgPool: {
      const arith::Conv2dShape& m = l.map;
      const arith::Window& w = m.window;
      const int oh = (m.in_h + 2 * w.pad_h - w.kernel_h) / w.stride_h + 1;
      const int ow = (m.in_w + 2 * w.pad_w - w.kernel_w) / w.stride_w + 1;
      std::uint64_t reads = 0;
      for (int oy = 0; oy < oh; ++oy)
        for (int ox = 0; ox < ow; ++ox)
          for (int ky = 0; ky < w.kernel_h; ++ky)
            for (int kx = 0; kx < w.kernel_w; ++kx)
              if (in_map(oy, w.stride_h, w.pad_h, ky, m.in_h) && in_map(ox, w.stride_w, w.pad_w, kx, m.in_w))
                reads += static_cast<std::uint64_t>(m.in_c);
      s.unit_cycles = out * ceil_div(static_cast<std::uint64_t>(w.kernel_h * w.kernel_w), L);
      s.requant_cycles = l.kind == model::AcceleratorOp::AvgPool ? 1 : 0;
      s.adds = reads;
      s.act_read_bits = reads * B;
      s.act_write_bits = out * B;
      break;
    }
    case model::AcceleratorOp::Add:
      s.unit_cycles = ceil_div(out, L);
      s.adds = out;
      s.act_read_bits = 2 * out * B;
      s.act_write_bits = out * B;
      break;
  }
  s.cycles = s.quantizer_cycles + s.array_cycles + s.requant_cycles + s.unit_cycles;
  return s;
}

void expect_same(const LayerStats& got, const LayerStats& want, const std::string& layer) {
  EXPECT_EQ(got.cycles, want.cycles) << layer;
  EXPECT_EQ(got.quantizer_cycles, want.quantizer_cycles) << layer;
  EXPECT_EQ(got.array_cycles, want.array_cycles) << layer;
  EXPECT_EQ(got.requant_cycles, want.requant_cycles) << layer;
  EXPECT_EQ(got.unit_cycles, want.unit_cycles) << layer;
  EXPECT_EQ(got.macs, want.macs) << layer;
  EXPECT_EQ(got.mac_slots, want.mac_slots) << layer;
  EXPECT_EQ(got.adds, want.adds) << layer;
  EXPECT_EQ(got.weight_read_bits, want.weight_read_bits) << layer;
  EXPECT_EQ(got.act_read_bits, want.act_read_bits) << layer;
  EXPECT_EQ(got.act_write_bits, want.act_write_bits) << layer;
  EXPECT_EQ(got.register_write_bits, want.register_write_bits) << layer;
}

// Runs `samples` random images of the model on the SystemC model: every layer must equal the
// integer engine, every layer's counts the closed form. Returns the run.
SimRun check_model(const std::string& name, const target::TargetSpec& t, bool static_quantizers,
                   std::size_t samples, std::uint64_t seed, bool saturating = false) {
  std::mt19937_64 rng(seed);
  const model::Bundle b = test::random_model_bundle(name, t, static_quantizers, rng, saturating);
  const std::optional<std::string> why = systemc_unsupported(b);
  EXPECT_FALSE(why.has_value()) << *why;
  if (why) return {};
  const std::size_t features = b.features();
  std::vector<std::uint8_t> pixels(samples * features);
  for (auto& p : pixels) p = static_cast<std::uint8_t>(rng() & 255);
  if (saturating) std::fill(pixels.begin(), pixels.begin() + static_cast<long>(features), std::uint8_t{255});
  SimRun run = run_systemc(b, pixels.data(), samples, true);
  const std::vector<model::AcceleratorLayer> layers = model::accelerator_layers(b.graph).layers;
  const model::IntEngine engine(b);
  EXPECT_EQ(run.outputs.size(), samples);
  long mismatches = 0;
  for (std::size_t i = 0; i < samples && i < run.outputs.size(); ++i) {
    const model::LayerOutputs want = model::layer_outputs(layers, engine.run(pixels.data() + i * features));
    EXPECT_EQ(run.outputs[i].size(), want.size());
    for (std::size_t l = 0; l < want.size() && l < run.outputs[i].size(); ++l)
      if (run.outputs[i][l] != want[l] && ++mismatches <= 3)
        ADD_FAILURE() << name << " on " << t.name << ": sample " << i << " layer " << l << " ("
                      << b.graph.ops[layers[l].linear_op].name << ") differs from the integer engine; "
                      << test::seed_note(seed);
  }
  EXPECT_EQ(mismatches, 0) << test::seed_note(seed);
  for (std::size_t l = 0; l < layers.size(); ++l)
    expect_same(run.stats.front().layers[l], closed_form(t, layers[l]),
                name + " layer " + std::to_string(l) + " (" + model::to_string(layers[l].kind) + ")");
  return run;
}

bool has_kind(const model::Bundle& b, model::AcceleratorOp k) {
  for (const auto& l : model::accelerator_layers(b.graph).layers)
    if (l.kind == k) return true;
  return false;
}

// lenet's int32 maps (28x28x16 = 50,176 bytes, then 14x14x16) share the 64 KiB of ternary-asic's
// activation SRAM only when a map's buffer is reused once its last reader has run.
TEST(FeatureMapSystemC, LenetFitsTernaryAsicAndMatchesTheIntegerEngine) {
  const std::uint64_t seed = test::test_seed(101);
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  const SimRun run = check_model("lenet", t, false, 3, seed);
  ASSERT_FALSE(run.stats.empty());
  // The first convolution by hand: 5x5x1 patches (25 codes: 2 chunks of 16 lanes), 16 channels in
  // one tile of 16 rows, 28x28 output pixels; the quantizer's two passes over 784 pixels and 16
  // reciprocal cycles; one requantization cycle.
  EXPECT_EQ(run.stats.front().layers[0].array_cycles, 1u * 784 * 2);
  EXPECT_EQ(run.stats.front().layers[0].cycles, (2 * 49 + 16) + 1568 + 1u);
  // The first 2x2 max pool: 14x14x16 values, one cycle each.
  EXPECT_EQ(run.stats.front().layers[1].cycles, 14u * 14 * 16);
}
TEST(FeatureMapSystemC, LenetInt4FpgaMatchesTheIntegerEngine) {
  check_model("lenet", target::builtin_target("int4-fpga"), false, 3, test::test_seed(102));
}
TEST(FeatureMapSystemC, LenetOddArrayStaticQuantizersMatchTheIntegerEngine) {
  const std::uint64_t seed = test::test_seed(103);
  const target::TargetSpec t = odd_target();
  const SimRun run = check_model("lenet", t, true, 3, seed, true);
  ASSERT_FALSE(run.outputs.empty());
  // The bright first image through 25 weights of +1 passes the 12-bit limit: channel 0 of a
  // pixel away from the border is the limit requantized (every kernel's pair is 3 / 64), so the
  // saturating corner was run.
  const std::int64_t limit = arith::requantize(2047, {3, 6}, t.format.rounding, 12);
  EXPECT_EQ(run.outputs[0][0][(14 * 28 + 14) * 16], limit) << test::seed_note(seed);
}

// Codes wider than 8 bits are int16 in the code scratch: a map's patches read them so too.
TEST(FeatureMapSystemC, LenetActivations12BitsMatchesTheIntegerEngine) {
  nlohmann::json j = target::to_json(target::builtin_target("ternary-asic"));
  j["name"] = "ternary-a12";
  j["activations"]["bits"] = 12;
  j.erase("hash");
  j.erase("origin");
  check_model("lenet", with_large_activation_sram(target::target_from_json(j, "ternary-a12 (test)")), false, 2,
              test::test_seed(104));
}

TEST(FeatureMapSystemC, CnvTinyTernaryAsicMatchesTheIntegerEngine) {
  check_model("cnv-tiny", with_large_activation_sram(target::builtin_target("ternary-asic")), false, 2,
              test::test_seed(111));
}
TEST(FeatureMapSystemC, CnvTinyInt4FpgaMatchesTheIntegerEngine) {
  check_model("cnv-tiny", with_large_activation_sram(target::builtin_target("int4-fpga")), false, 2,
              test::test_seed(112));
}
TEST(FeatureMapSystemC, CnvTinyOddArrayMatchesTheIntegerEngine) {
  check_model("cnv-tiny", with_large_activation_sram(odd_target()), false, 2, test::test_seed(113));
}

// Depthwise (groups = channels) and pointwise convolutions, a global average pool.
TEST(FeatureMapSystemC, DscnnTinyTernaryAsicMatchesTheIntegerEngine) {
  check_model("dscnn-tiny", with_large_activation_sram(target::builtin_target("ternary-asic")), false, 3,
              test::test_seed(121));
}
TEST(FeatureMapSystemC, DscnnTinyInt4FpgaMatchesTheIntegerEngine) {
  check_model("dscnn-tiny", target::builtin_target("int4-fpga"), false, 3, test::test_seed(122));
}
TEST(FeatureMapSystemC, DscnnTinyOddArrayStaticQuantizersMatchTheIntegerEngine) {
  check_model("dscnn-tiny", with_large_activation_sram(odd_target()), true, 3, test::test_seed(123));
}

// Residual adds (two pairs each) of operands quantized by static pairs, strided 1x1 projections.
// resnet-tiny's strided stem keeps the maps live around its first add (three of 14x14x16) within
// the built-in targets' 64 KiB.
TEST(FeatureMapSystemC, ResnetTinyTernaryAsicMatchesTheIntegerEngine) {
  const std::uint64_t seed = test::test_seed(131);
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  std::mt19937_64 rng(seed);
  ASSERT_TRUE(has_kind(test::random_model_bundle("resnet-tiny", t, true, rng), model::AcceleratorOp::Add));
  check_model("resnet-tiny", t, true, 2, seed);
}
TEST(FeatureMapSystemC, ResnetTinyInt4FpgaMatchesTheIntegerEngine) {
  check_model("resnet-tiny", target::builtin_target("int4-fpga"), true, 2,
              test::test_seed(132));
}
TEST(FeatureMapSystemC, ResnetTinyOddArrayMatchesTheIntegerEngine) {
  check_model("resnet-tiny", with_large_activation_sram(odd_target()), true, 2, test::test_seed(133));
}

// cnv-tiny's first map (26x26x32 int32 values, 86,528 bytes) needs more than either built-in
// activation SRAM: refused before the kernel elaborates, naming the field to raise.
TEST(FeatureMapSystemC, ModelLargerThanTheActivationSramIsRefused) {
  std::mt19937_64 rng(test::test_seed(141));
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  const model::Bundle b = test::random_model_bundle("cnv-tiny", t, false, rng);
  const std::optional<std::string> why = systemc_unsupported(b);
  ASSERT_TRUE(why.has_value());
  EXPECT_NE(why->find("memory.activation_sram_kib"), std::string::npos) << *why;
  try {
    const std::uint8_t pixels[784] = {};
    run_systemc(b, pixels, 1, false);
    FAIL() << "expected the activation SRAM check to fail";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("memory.activation_sram_kib"), std::string::npos) << e.what();
  }
  // lenet's peak (docs/sim.md, "Memory layout"): the pixels (784 bytes), the first map (50,176)
  // and the pooled map (12,544); 62 KiB is 16 bytes short.
  target::TargetSpec small = target::builtin_target("ternary-asic");
  small.memory.activation_sram_kib = 62;
  const std::optional<std::string> lenet = systemc_unsupported(test::random_model_bundle("lenet", small, false, rng));
  ASSERT_TRUE(lenet.has_value());
  EXPECT_NE(lenet->find("needs 63504 bytes of activation SRAM"), std::string::npos) << *lenet;
}

}  // namespace
}  // namespace qathw::sim
