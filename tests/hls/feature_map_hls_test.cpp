// The HLS tops on convolutional graphs: the built-in models (lenet, cnv-tiny, dscnn-tiny,
// resnet-tiny) and one of odd shapes, with seeded random kernels, on both built-in targets and an
// odd one (5 x 7 array, 12-bit saturating accumulators, so partial sums saturate and the chunk
// order matters), equal to the integer engine on every layer's output of a few random images.
// Covers conv2d with padding, stride (rectangular too), groups (depthwise and not) and 1 x 1
// kernels; max, average and global average pools (with padding, and a ReLU fused after a pool);
// residual adds with unequal pairs; dynamic and static quantizers (a static linear layer runs on
// the conv top). Also: the verify registry's hls engine on a residual graph, and a map beyond the
// tops' kMaxMap refused naming the op and the limit. The odd target's tops are compiled at run
// time on first use (well under a second here), then loaded from the cache (tests/engine-cache).
#include <cstdlib>
#include <ostream>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "../arith/test_support.h"
#include "../model/random_model.h"
#include "qathw/hls/hls_engine.h"
#include "qathw/model/accelerator_layers.h"
#include "qathw/model/int_engine.h"
#include "qathw/model/model_spec.h"
#include "qathw/verify/compare.h"
#include "qathw/verify/engine.h"

namespace qathw::hls {
namespace {

constexpr std::size_t kImages = 3;
constexpr std::size_t kPixels = 28 * 28;

target::TargetSpec odd_target() { return test::odd_target("odd-array-hls"); }

target::TargetSpec target_named(const std::string& name) {
  return name == "odd" ? odd_target() : target::builtin_target(name);
}

// A built-in model with random kernels; every add aligns its operands by pairs around 1 (their
// scales over the output's). With `static_quantizers`, every kernel's input quantizer has a
// calibrated-like pair: the pixels (0..255) by about 1/2, requantized values by less. In every
// kernel, channel 0's weights are all +1 and channel 1's +1 then -1 from the middle of its row:
// on a narrow saturating accumulator the first saturates and the second's running sum saturates
// and comes back, so the result depends on the chunks of `lanes` (the exact sum would not).
model::Bundle model_bundle(const std::string& name, const target::TargetSpec& t, bool static_quantizers,
                           std::mt19937_64& rng) {
  const model::ModelSpec m = test::model_spec(name);
  std::vector<model::LayerParams> params = test::random_layer_params(m, t.format.weights, rng);
  for (std::size_t i = 0; i < m.layers.size(); ++i) {
    const model::LayerKind k = m.layers[i].kind;
    if (k == model::LayerKind::Add)
      params[i].pairs = {test::random_pair(0.5, 1.5, t.format, rng), test::random_pair(0.5, 1.5, t.format, rng)};
    if (static_quantizers && (k == model::LayerKind::Conv2d || k == model::LayerKind::Linear))
      params[i].input_quantizer = {i == 0 ? test::random_pair(0.3, 0.6, t.format, rng)
                                          : test::random_pair(0.02, 0.4, t.format, rng)};
  }
  for (model::LayerParams& p : params) {
    model::LinearParams& k = p.kernel;
    if (k.out < 2) continue;
    for (int i = 0; i < k.in; ++i) {
      arith::store_code(k.packed.data(), static_cast<std::size_t>(i), 1, t.format.weights);
      arith::store_code(k.packed.data(), static_cast<std::size_t>(k.in + i), i < k.in / 2 ? 1 : -1, t.format.weights);
    }
  }
  model::Bundle b = test::bundle_of(t, model::lower_model(m, std::move(params), t.format));
  model::validate(b.graph, t.format);
  return b;
}

std::vector<std::uint8_t> random_images(std::mt19937_64& rng) {
  std::vector<std::uint8_t> pixels(kImages * kPixels);
  for (auto& p : pixels) p = static_cast<std::uint8_t>(rng() & 255);
  return pixels;
}

void use_test_cache() { setenv("QATHW_CACHE_DIR", QATHW_TEST_CACHE_DIR, 0); }

struct Case {
  std::string model, target;
  bool static_quantizers;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.model << " on " << c.target << (c.static_quantizers ? ", static quantizers" : "");
}

class FeatureMapHls : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override { use_test_cache(); }
};

TEST_P(FeatureMapHls, EveryLayerEqualsTheIntegerEngine) {
  const Case& c = GetParam();
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  const model::Bundle b = model_bundle(c.model, target_named(c.target), c.static_quantizers, rng);
  SCOPED_TRACE(c.model + " on " + b.target.name + ", " + test::seed_note(seed));
  const std::optional<std::string> why = hls_unsupported(b);
  ASSERT_FALSE(why.has_value()) << *why;
  const std::vector<std::uint8_t> pixels = random_images(rng);
  const std::vector<model::LayerOutputs> got = run_hls(b, pixels.data(), kImages);
  const std::vector<model::AcceleratorLayer> layers = model::accelerator_layers(b.graph).layers;
  const model::IntEngine reference(b);
  ASSERT_EQ(got.size(), kImages);
  for (std::size_t s = 0; s < kImages; ++s) {
    const model::OpOutputs want = reference.run(pixels.data() + s * kPixels);
    ASSERT_EQ(got[s].size(), layers.size());
    for (std::size_t l = 0; l < layers.size(); ++l)
      ASSERT_EQ(got[s][l], want[layers[l].output_op])
          << "image " << s << ", layer " << l << " (" << model::to_string(layers[l].kind) << ", op "
          << b.graph.ops[layers[l].output_op].name << ")";
  }
}

std::vector<Case> cases() {
  std::vector<Case> all;
  for (const char* m : {"lenet", "cnv-tiny", "dscnn-tiny"})
    for (const char* t : {"ternary-asic", "int4-fpga", "odd"}) all.push_back({m, t, false});
  // resnet-tiny with static quantizers: the adds' operands come from calibrated scales, as a
  // deployed residual network's do.
  for (const char* t : {"ternary-asic", "int4-fpga", "odd"}) all.push_back({"resnet-tiny", t, true});
  all.push_back({"resnet-tiny", "ternary-asic", false});
  all.push_back({"lenet", "odd", true});  // static linear layers: the conv top on a 1 x 1 map
  for (const char* t : {"ternary-asic", "int4-fpga", "odd"}) all.push_back({"odd-shapes", t, false});
  return all;
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  std::string name = info.param.model + "_" + info.param.target + (info.param.static_quantizers ? "_static" : "");
  for (char& ch : name)
    if (ch == '-') ch = '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(Models, FeatureMapHls, ::testing::ValuesIn(cases()), case_name);

// The verify registry runs the hls engine on a residual graph and places its layers at their ops.
TEST(FeatureMapHlsRegistry, VerifyComparesEveryLayerOfAResidualGraph) {
  use_test_cache();
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  const model::Bundle b = model_bundle("resnet-tiny", target::builtin_target("int4-fpga"), true, rng);
  const std::vector<std::uint8_t> pixels = random_images(rng);
  const verify::Engine* hls = verify::find_engine("hls");
  ASSERT_NE(hls, nullptr);
  const std::optional<std::string> why = hls->unsupported(b);
  ASSERT_FALSE(why.has_value()) << *why;
  const verify::EngineRun run = hls->run(b, pixels.data(), kImages);
  const verify::Comparison cmp =
      verify::compare(b.graph, "int", model::IntEngine(b).run_all(pixels.data(), kImages), "hls", run.outputs);
  EXPECT_FALSE(cmp.first) << verify::describe(*cmp.first) << "; " << test::seed_note(seed);
  EXPECT_EQ(cmp.samples, kImages);
  EXPECT_EQ(cmp.ops.size(), model::accelerator_layers(b.graph).layers.size());
}

// A map beyond the tops' static size is refused by name (op and limit), before any top runs.
TEST(FeatureMapHlsLimits, AMapLargerThanKMaxMapIsRefusedNamingTheOpAndTheLimit) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  const model::ModelSpec m = model::parse_model(R"(
name = "wide"
input = [64, 64, 1]

[[layers]]
type = "conv2d"
out = 16
kernel = 3
padding = 1

[[layers]]
type = "max_pool"
kernel = 8

[[layers]]
type = "flatten"

[[layers]]
type = "linear"
out = "classes"
)",
                                                "wide (test)", 10);
  model::Bundle b = test::bundle_of(t, model::lower_model(m, test::random_layer_params(m, t.format.weights, rng), t.format));
  b.rows = b.cols = 64;
  const std::optional<std::string> why = hls_unsupported(b);
  ASSERT_TRUE(why.has_value()) << "a 64 x 64 x 16 map was accepted";
  EXPECT_NE(why->find("layer0.conv2d"), std::string::npos) << *why;
  EXPECT_NE(why->find("kMaxMap = 32768"), std::string::npos) << *why;
  const std::vector<std::uint8_t> pixels(64 * 64, 1);
  EXPECT_THROW(run_hls(b, pixels.data(), 1), std::runtime_error);
}

}  // namespace
}  // namespace qathw::hls
