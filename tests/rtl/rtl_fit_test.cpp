// The RTL's memories (qathw/target/rtl_memories.h) and the check of a bundle against them
// (qathw/rtl/rtl_fit.h, rtl::rtl_unsupported): a bundle that exceeds one memory is refused before
// the RTL runs, with a message naming that memory, how much is needed and how much there is, and
// the engine registry leaves the RTL out with that reason.
#include <map>
#include <string>

#include <gtest/gtest.h>

#include "qathw/model/accelerator_layers.h"
#include "qathw/rtl/rtl_engine.h"
#include "qathw/rtl/rtl_fit.h"
#include "qathw/target/rtl_memories.h"
#include "qathw/target/target_spec.h"
#include "qathw/training/export.h"
#include "qathw/verify/engine.h"

namespace qathw::rtl {
namespace {

target::TargetSpec ternary(int rows, int lanes, int weight_sram_kib) {
  target::TargetSpec t = target::builtin_target("ternary-asic");
  t.name = "ternary-fit";
  t.array.rows = rows;
  t.array.lanes = lanes;
  t.memory.weight_sram_kib = weight_sram_kib;
  return t;
}

// A bundle of 3x9 pixels with the given hidden layers and 5 classes.
model::Bundle bundle(const target::TargetSpec& t, const std::vector<int>& hidden) {
  return training::make_bundle(training::make_mlp(27, hidden, 5, 11), t, 3, 9, {});
}

bool contains(const std::optional<std::string>& s, const std::string& part) {
  return s && s->find(part) != std::string::npos;
}

TEST(RtlMemories, WeightWordsAreTheWeightSramInWords) {
  // 256 KiB of 16x16 ternary words (512 bits) and 512 KiB of 8x32 INT4 words (1024 bits).
  EXPECT_EQ(target::rtl_memories(target::builtin_target("ternary-asic")).weight_words, 4096);
  EXPECT_EQ(target::rtl_memories(target::builtin_target("int4-fpga")).weight_words, 4096);
  EXPECT_EQ(target::rtl_weight_words(ternary(4, 4, 1)), 256);          // 8192 bits / 32
  EXPECT_EQ(target::rtl_weight_words(ternary(1, 1, 256)), 1 << 16);    // capped by the 16-bit address
  EXPECT_EQ(target::rtl_weight_words(ternary(64, 64, 1)), 2);          // a word wider than the SRAM: 2
  const target::RtlMemories m = target::rtl_memories(ternary(4, 4, 1));
  EXPECT_EQ(m.max_layers, 64);
  EXPECT_EQ(m.act_words, 1 << 18);
  EXPECT_EQ(m.code_depth, 1 << 16);
  EXPECT_EQ(m.requant_depth, 4096);
  EXPECT_EQ(m.table_depth, 1 << 16);
  EXPECT_EQ(m.max_groups, 16);
}

TEST(RtlFit, AFittingBundleIsAccepted) {
  const model::Bundle b = bundle(target::builtin_target("ternary-asic"), {64, 32});
  EXPECT_EQ(rtl_unsupported(b), std::nullopt);
  EXPECT_EQ(verify::find_engine("rtl")->unsupported(b), std::nullopt);
}

TEST(RtlFit, WeightMemory) {
  // 4x4 ternary words, 1 KiB: 256 words. Layers 27->64->64->5: 16*7 + 16*16 + 2*16 = 400 words.
  const model::Bundle b = bundle(ternary(4, 4, 1), {64, 64});
  const auto why = rtl_unsupported(b);
  EXPECT_TRUE(contains(why, "weight memory")) << why.value_or("accepted");
  EXPECT_TRUE(contains(why, "400 words")) << why.value_or("accepted");
  EXPECT_TRUE(contains(why, "holds 256")) << why.value_or("accepted");
  EXPECT_TRUE(contains(why, "memory.weight_sram_kib")) << why.value_or("accepted");
  // The registry leaves the RTL out with the same reason (qat-hw verify prints it).
  EXPECT_EQ(verify::find_engine("rtl")->unsupported(b), why);
}

TEST(RtlFit, LayerDescriptors) {
  const model::Bundle b = bundle(target::builtin_target("ternary-asic"), std::vector<int>(64, 8));  // 65 layers
  const auto why = rtl_unsupported(b);
  EXPECT_TRUE(contains(why, "layer descriptor memory")) << why.value_or("accepted");
  EXPECT_TRUE(contains(why, "65 layers")) << why.value_or("accepted");
  EXPECT_TRUE(contains(why, "holds 64")) << why.value_or("accepted");
}

TEST(RtlFit, ActivationMemory) {
  // The pixels and every layer's outputs: 27 + 300000 + 5 values.
  const model::Bundle b = bundle(target::builtin_target("ternary-asic"), {300000});
  const auto why = rtl_unsupported(b);
  EXPECT_TRUE(contains(why, "activation memory")) << why.value_or("accepted");
  EXPECT_TRUE(contains(why, "300032 values")) << why.value_or("accepted");
  EXPECT_TRUE(contains(why, "holds 262144")) << why.value_or("accepted");
}

TEST(RtlFit, CodeMemory) {
  const model::Bundle b = training::make_bundle(training::make_mlp(70000, {4}, 5, 11), target::builtin_target("ternary-asic"), 1, 70000, {});
  const auto why = rtl_unsupported(b);
  EXPECT_TRUE(contains(why, "code memory")) << why.value_or("accepted");
  EXPECT_TRUE(contains(why, "70000 codes")) << why.value_or("accepted");
  EXPECT_TRUE(contains(why, "holds 65536")) << why.value_or("accepted");
}

TEST(RtlFit, RequantizationMemory) {
  // 4 MiB of weight SRAM (the weight memory's 2^16 words): the 4105 requantization pairs overflow first.
  const model::Bundle b = bundle(ternary(16, 16, 4096), {2000, 2000, 100});
  const auto why = rtl_unsupported(b);
  EXPECT_TRUE(contains(why, "requantization memory")) << why.value_or("accepted");
  EXPECT_TRUE(contains(why, "4105 pairs")) << why.value_or("accepted");
  EXPECT_TRUE(contains(why, "holds 4096")) << why.value_or("accepted");
}

TEST(RtlFit, RunningARefusedBundleThrowsTheSameReason) {
  const model::Bundle b = bundle(target::builtin_target("ternary-asic"), std::vector<int>(64, 8));
  const std::vector<std::uint8_t> pixels(27, 0);
  try {
    run_rtl(b, pixels.data(), 1);
    FAIL() << "the RTL ran a bundle of 65 layers";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("layer descriptor memory"), std::string::npos) << e.what();
  }
}

TEST(RtlFit, MemoryUseCountsTilesAndChunks) {
  model::AcceleratorLayer a, b;
  a.in = 27;
  a.out = 13;
  b.in = 13;
  b.out = 6;
  b.input = 0;
  const RtlMemoryUse u = rtl_memory_use({a, b}, 4, 4);
  EXPECT_EQ(u.layers, 2u);
  EXPECT_EQ(u.act_words, 27u + 13u + 6u);
  EXPECT_EQ(u.codes, 27u);
  EXPECT_EQ(u.weight_words, 4u * 7u + 2u * 4u);
  EXPECT_EQ(u.requant_pairs, 19u);
}

// A convolution's weight words are per group, tile of the group's channels and chunk of its patch;
// its descriptor carries the address generator's step of `lanes` patch elements as (ky, kx, ci).
TEST(RtlFit, ConvolutionLayout) {
  model::AcceleratorLayer c;
  c.kind = model::AcceleratorOp::Conv2d;
  c.map.in_h = 9;
  c.map.in_w = 8;
  c.map.in_c = 6;
  c.map.out_c = 10;
  c.map.groups = 2;                 // 3 input and 5 output channels per group
  c.map.window.kernel_h = 3;
  c.map.window.kernel_w = 2;        // patch 3 x 2 x 3 = 18
  c.map.window.pad_h = 1;
  c.in = 9 * 8 * 6;
  c.out = c.map.out_h() * c.map.out_w() * 10;
  const RtlLayout layout = rtl_layout({c}, 4, 7);
  EXPECT_EQ(layout.use.weight_words, 2u * 2u * 3u);  // groups x ceil(5 / 4) x ceil(18 / 7)
  EXPECT_EQ(layout.use.requant_pairs, 10u);
  EXPECT_EQ(layout.use.act_words, static_cast<std::size_t>(c.in + c.out));
  std::map<std::string, std::uint64_t> d;
  for (const auto& [field, value] : layout.descriptors.at(0)) d[field.name] = value;
  EXPECT_EQ(d["DescPatch"], 18u);
  // 7 elements: 7 / (3 x 2) = 1 row, (7 / 3) mod 2 = 0 columns, 7 mod 3 = 1 channel.
  EXPECT_EQ(d["DescStepY"], 1u);
  EXPECT_EQ(d["DescStepX"], 0u);
  EXPECT_EQ(d["DescStepC"], 1u);
  EXPECT_EQ(d["DescOutputBase"], static_cast<std::uint64_t>(c.in));
  EXPECT_EQ(d["DescGroupIn"], 3u);
  EXPECT_EQ(d["DescGroupOut"], 5u);
}

// A descriptor field too narrow for the layer is refused naming the field (the fields hold every
// bundle's sides, up to 8192; this layer is beyond them).
TEST(RtlFit, DescriptorFieldsBound) {
  model::AcceleratorLayer p;
  p.kind = model::AcceleratorOp::MaxPool;
  p.map.in_h = 20000;
  p.map.in_w = 1;
  p.map.in_c = 1;
  p.map.out_c = 1;
  p.map.window.kernel_h = 2;
  p.in = 20000;
  p.out = 10000;
  const auto why = rtl_memory_misfit({p}, 4, 4, 16, target::RtlMemories{16, 1 << 18, 1 << 16, 16, 16});
  EXPECT_TRUE(contains(why, "DescInH")) << why.value_or("accepted");
}

}  // namespace
}  // namespace qathw::rtl
