// Model specs (models/*.toml): every built-in parses with the shapes its comments state, the
// classes reach the last layer, and an add, a branch and a depthwise convolution are understood.
// Malformed files are the corpus's (tests/corpus/models).
#include <gtest/gtest.h>

#include <algorithm>

#include <random>

#include "qathw/model/accelerator_layers.h"
#include "qathw/model/int_engine.h"
#include "qathw/model/model_spec.h"
#include "qathw/target/target_spec.h"
#include "random_model.h"

namespace qathw::model {
namespace {

Shape map(int h, int w, int c) { return {h, w, c}; }
void expect_shape(const Shape& s, const Shape& want, const std::string& where) {
  EXPECT_TRUE(s.height == want.height && s.width == want.width && s.channels == want.channels)
      << where << ": " << s.height << "x" << s.width << "x" << s.channels;
}

TEST(ModelSpec, EveryBuiltinParses) {
  const std::vector<std::string> names = builtin_model_names();
  for (const char* want : {"cnv-tiny", "dscnn-tiny", "lenet", "mlp", "resnet-tiny"})
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  for (const std::string& n : names) {
    const ModelSpec m = resolve_model(n, 10);
    EXPECT_EQ(m.name, n);
    EXPECT_EQ(m.classes(), 10);
    expect_shape(m.input, map(28, 28, 1), n);
  }
}

TEST(ModelSpec, MlpAndLenetShapes) {
  const ModelSpec mlp = resolve_model("mlp", 10);
  EXPECT_EQ(model_macs(mlp), 784L * 256 + 256L * 256 + 256L * 10);
  const ModelSpec lenet = resolve_model("lenet", 7);
  ASSERT_EQ(lenet.layers.size(), 10u);
  expect_shape(lenet.layers[0].out_shape, map(28, 28, 16), "conv1");
  expect_shape(lenet.layers[2].out_shape, map(14, 14, 16), "pool1");
  expect_shape(lenet.layers[3].out_shape, map(10, 10, 32), "conv2");
  expect_shape(lenet.layers[5].out_shape, map(5, 5, 32), "pool2");
  EXPECT_EQ(lenet.layers[6].out_shape.channels, 800);
  EXPECT_FALSE(lenet.layers[6].out_shape.is_map());
  EXPECT_EQ(lenet.classes(), 7);
  EXPECT_EQ(lenet.layers[2].window.stride_h, 2);  // a pool steps by its kernel unless told
  EXPECT_EQ(model_macs(lenet), 28L * 28 * 16 * 25 + 10L * 10 * 32 * 400 + 800L * 128 + 128L * 7);
}

TEST(ModelSpec, ResnetBranchesAndDepthwise) {
  const ModelSpec r = resolve_model("resnet-tiny", 10);
  int adds = 0;
  for (const LayerSpec& l : r.layers) {
    if (l.kind != LayerKind::Add) continue;
    ++adds;
    EXPECT_FALSE(l.residual.empty());
  }
  EXPECT_EQ(adds, 3);
  const auto named = [&](const std::string& n) -> const LayerSpec& {
    for (const LayerSpec& l : r.layers)
      if (l.name == n) return l;
    throw std::runtime_error("no layer " + n);
  };
  EXPECT_EQ(named("short2").input, "stack1");
  expect_shape(named("short2").in_shape, map(14, 14, 16), "short2 in");
  expect_shape(named("short2").out_shape, map(7, 7, 32), "short2");
  expect_shape(named("short3").out_shape, map(4, 4, 64), "short3");
  expect_shape(r.layers[r.layers.size() - 3].out_shape, map(1, 1, 64), "global average pool");
  const ModelSpec d = resolve_model("dscnn-tiny", 10);
  EXPECT_EQ(d.layers[2].groups, 32);
  expect_shape(d.layers[2].out_shape, map(14, 14, 32), "depthwise");
  expect_shape(d.layers[6].out_shape, map(7, 7, 64), "strided depthwise");
}

TEST(ModelSpec, ErrorsNameTheFileAndField) {
  try {
    parse_model("name = \"x\"\ninput = [28, 28, 1]\n[[layers]]\ntype = \"conv2d\"\nout = 4\n", "m.toml", 10);
    ADD_FAILURE() << "accepted";
  } catch (const ModelError& e) {
    EXPECT_STREQ(e.what(), "m.toml: field 'layers[0].kernel': missing");
  }
  EXPECT_THROW(resolve_model("nonesuch", 10), ModelError);
  EXPECT_THROW(resolve_model("/nonexistent/model.toml", 10), ModelError);
}

// Every built-in lowers to an op graph that validates and runs on the integer engine (seeded
// random kernels), with a quantizer before each conv2d and linear layer.
TEST(ModelSpec, EveryBuiltinLowersToARunnableGraph) {
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  std::mt19937_64 rng(7);
  for (const std::string& name : builtin_model_names()) {
    const ModelSpec m = resolve_model(name, 10);
    int kernels = 0;
    for (const LayerSpec& l : m.layers) kernels += l.kind == LayerKind::Conv2d || l.kind == LayerKind::Linear;
    const Graph g = lower_model(m, test::random_layer_params(m, t.format.weights, rng), t.format);
    validate(g, t.format);
    int quantizers = 0;
    for (const Op& op : g.ops) quantizers += op.type == OpType::Quantize;
    EXPECT_EQ(quantizers, kernels) << name;
    const Bundle b = test::bundle_of(t, g);
    std::vector<std::uint8_t> pixels(784);
    for (auto& p : pixels) p = static_cast<std::uint8_t>(rng() & 255);
    const OpOutputs out = IntEngine(b).run(pixels.data());
    EXPECT_EQ(out.back().size(), 10u) << name;
  }
}

}  // namespace
}  // namespace qathw::model

namespace qathw::model {
namespace {

// The controller's view of a lowered model: kernel layers take their quantizer, a relu joins the
// layer before it, flatten is no layer, branches and residuals name the layers they read.
TEST(AcceleratorLayers, LenetAndResnetLowerToTheControllersLayers) {
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  std::mt19937_64 rng(3);
  const ModelSpec lenet = resolve_model("lenet", 10);
  const Graph lg = lower_model(lenet, test::random_layer_params(lenet, t.format.weights, rng), t.format);
  const AcceleratorLowering l = accelerator_layers(lg);
  ASSERT_FALSE(l.unsupported) << *l.unsupported;
  using K = AcceleratorOp;
  std::vector<K> kinds;
  for (const AcceleratorLayer& a : l.layers) kinds.push_back(a.kind);
  EXPECT_EQ(kinds, (std::vector<K>{K::Conv2d, K::MaxPool, K::Conv2d, K::MaxPool, K::Linear, K::Linear}));
  EXPECT_TRUE(l.layers[0].relu);
  EXPECT_FALSE(l.layers[1].relu);
  EXPECT_TRUE(l.layers[4].relu);
  EXPECT_FALSE(l.layers[5].relu);
  EXPECT_EQ(l.layers[0].input, AcceleratorLayer::kPixels);
  EXPECT_EQ(l.layers[4].input, 3u);  // through the flatten
  EXPECT_EQ(l.layers[0].in, 784);
  EXPECT_EQ(l.layers[0].out, 28 * 28 * 16);
  EXPECT_EQ(l.layers[0].map.patch(), 25);
  EXPECT_EQ(l.layers[1].map.in_c, 16);
  EXPECT_EQ(l.layers[1].out, 14 * 14 * 16);
  EXPECT_EQ(lg.ops[l.layers.back().output_op].output, lg.output);

  const ModelSpec resnet = resolve_model("resnet-tiny", 10);
  const Graph rg = lower_model(resnet, test::random_layer_params(resnet, t.format.weights, rng), t.format);
  const AcceleratorLowering r = accelerator_layers(rg);
  ASSERT_FALSE(r.unsupported) << *r.unsupported;
  int adds = 0, convs = 0;
  for (std::size_t i = 0; i < r.layers.size(); ++i) {
    const AcceleratorLayer& a = r.layers[i];
    if (a.kind == K::Conv2d) ++convs;
    if (a.kind != K::Add) continue;
    ++adds;
    EXPECT_TRUE(a.relu) << "add " << i;  // every add here feeds a relu
    EXPECT_EQ(a.pairs.size(), 2u);
    EXPECT_LT(a.residual, i);
    EXPECT_LT(a.input, i);
    EXPECT_NE(a.input, a.residual);
  }
  EXPECT_EQ(adds, 3);
  EXPECT_EQ(convs, 9);
  // A projection shortcut reads the stack's output, not the layer before it.
  const AcceleratorLayer& short2 = r.layers[6];
  EXPECT_EQ(short2.kind, K::Conv2d);
  EXPECT_EQ(short2.input, 3u);
}

}  // namespace
}  // namespace qathw::model

namespace qathw::model {
namespace {

TEST(ModelSpec, TrainingTableIsTheRecipesDefaults) {
  const ModelSpec m = parse_model(
      "name = \"r\"\ninput = [4, 4, 1]\n[training]\nepochs = 7\nlr = 2e-3\nqat_init = \"fp32\"\n[[layers]]\n"
      "type = \"flatten\"\n[[layers]]\ntype = \"linear\"\nout = \"classes\"\n",
      "r.toml", 3);
  EXPECT_EQ(m.recipe.epochs, 7);
  EXPECT_FALSE(m.recipe.batch.has_value());
  EXPECT_FLOAT_EQ(*m.recipe.lr, 2e-3f);
  EXPECT_EQ(m.recipe.qat_init, "fp32");
  EXPECT_EQ(to_json(m)["training"], (nlohmann::json{{"epochs", 7}, {"lr", 2e-3f}, {"qat_init", "fp32"}}));
}

}  // namespace
}  // namespace qathw::model
