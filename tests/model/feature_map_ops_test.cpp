// The feature-map ops of the op graph (conv2d, max_pool, avg_pool, add, flatten): their checks
// name the op and field, and the integer engine runs them as the arith core's rules say, held
// against other paths through the graph: a convolution whose kernel covers the whole map is the
// linear op on the flattened map (channels last makes the patch order the flatten order), a 1x1
// map's pooling passes values through, and an add of a tensor with itself doubles it.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "qathw/model/accelerator_layers.h"
#include "qathw/model/graph.h"
#include "qathw/model/int_engine.h"
#include "qathw/target/target_spec.h"
#include "../arith/test_support.h"

namespace qathw::model {
namespace {

// Seeded random weight codes of a kernel op: out rows of `in` codes, pairs (3, 2).
LinearParams random_kernel(int in, int out, const arith::Format& f, std::mt19937_64& rng) {
  LinearParams p;
  p.in = in;
  p.out = out;
  p.format = f.weights;
  p.packed.assign(arith::packed_bytes(static_cast<std::size_t>(in) * out, f.weights), 0);
  std::uniform_int_distribution<int> code(-arith::weight_qmax(f.weights), arith::weight_qmax(f.weights));
  for (std::size_t k = 0; k < static_cast<std::size_t>(in) * out; ++k) arith::store_code(p.packed.data(), k, code(rng), f.weights);
  p.requant.assign(static_cast<std::size_t>(out), arith::FixedPoint{3, 2});
  return p;
}

Bundle bundle_of(Graph g, int rows, int cols) {
  Bundle b;
  b.target = target::builtin_target("ternary-asic");
  b.target_hash = target::content_hash(b.target);
  b.rows = rows;
  b.cols = cols;
  b.classes = static_cast<int>(g.tensor(g.output).size());
  b.graph = std::move(g);
  validate(b.graph, b.target.format);
  return b;
}

Op op(OpType type, const std::string& name, const std::string& in, const std::string& out) {
  Op o;
  o.type = type;
  o.name = name;
  o.input = in;
  o.output = out;
  return o;
}

// input [H, W, C] pixels -> quantize (one token: the whole map) -> conv2d with the map's size.
Graph conv_graph(int h, int w, int c, LinearParams k) {
  Graph g;
  g.input = "input";
  const int out = k.out;
  g.tensors = {map_tensor("input", DType::Pixels, h, w, c), map_tensor("codes", DType::Codes, h, w, c),
               map_tensor("conv", DType::Values, 1, 1, out)};
  g.ops = {op(OpType::Quantize, "q", "input", "codes"), op(OpType::Conv2d, "conv", "codes", "conv")};
  g.ops[1].linear = std::move(k);
  g.ops[1].window = {h, w, 1, 1, 0, 0};
  g.output = "conv";
  return g;
}

// input [1, H W C] pixels -> quantize -> linear: the same integers as conv_graph.
Graph linear_graph(int features, LinearParams k) {
  Graph g;
  g.input = "input";
  const int out = k.out;
  g.tensors = {{"input", DType::Pixels, 1, features}, {"codes", DType::Codes, 1, features}, {"lin", DType::Values, 1, out}};
  g.ops = {op(OpType::Quantize, "q", "input", "codes"), op(OpType::Linear, "lin", "codes", "lin")};
  g.ops[1].linear = std::move(k);
  g.output = "lin";
  return g;
}

TEST(FeatureMapOps, WholeMapConvolutionIsTheLinearOpOnTheFlattenedMap) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  const arith::Format f = target::builtin_target("ternary-asic").format;
  const int h = 5, w = 4, c = 3, out = 6;
  const LinearParams k = random_kernel(h * w * c, out, f, rng);
  const Bundle conv = bundle_of(conv_graph(h, w, c, k), h, w * c);
  const Bundle lin = bundle_of(linear_graph(h * w * c, k), h, w * c);
  std::uniform_int_distribution<int> pixel(0, 255);
  for (int sample = 0; sample < 20; ++sample) {
    std::vector<std::uint8_t> pixels(static_cast<std::size_t>(h * w * c));
    for (auto& p : pixels) p = static_cast<std::uint8_t>(pixel(rng));
    const OpOutputs a = IntEngine(conv).run(pixels.data()), b = IntEngine(lin).run(pixels.data());
    ASSERT_EQ(a, b) << test::seed_note(seed) << " sample " << sample;
  }
}

// A small CNN of every op: conv 3x3 same -> relu -> max pool 2x2 -> add (with itself, pairs 1 and
// 1: doubles) -> average pool (global, pair 1: the sum) -> flatten -> quantize -> linear. Each
// op's output is checked by a rule written here on the engine's previous op outputs.
Graph small_cnn(std::mt19937_64& rng, const arith::Format& f) {
  Graph g;
  g.input = "input";
  g.tensors = {map_tensor("input", DType::Pixels, 6, 6, 1), map_tensor("codes", DType::Codes, 6, 6, 1),
               map_tensor("conv", DType::Values, 6, 6, 4),  map_tensor("relu", DType::Values, 6, 6, 4),
               map_tensor("pool", DType::Values, 3, 3, 4),  map_tensor("sum", DType::Values, 3, 3, 4),
               map_tensor("gap", DType::Values, 1, 1, 4),   {"flat", DType::Values, 1, 4},
               {"fcodes", DType::Codes, 1, 4},              {"logits", DType::Values, 1, 3}};
  g.ops = {op(OpType::Quantize, "q0", "input", "codes"), op(OpType::Conv2d, "conv", "codes", "conv"),
           op(OpType::Relu, "relu", "conv", "relu"),     op(OpType::MaxPool, "pool", "relu", "pool"),
           op(OpType::Add, "add", "pool", "sum"),        op(OpType::AvgPool, "gap", "sum", "gap"),
           op(OpType::Flatten, "flat", "gap", "flat"),   op(OpType::Quantize, "q1", "flat", "fcodes"),
           op(OpType::Linear, "fc", "fcodes", "logits")};
  g.ops[1].linear = random_kernel(9, 4, f, rng);
  g.ops[1].window = {3, 3, 1, 1, 1, 1};
  g.ops[3].window = {2, 2, 2, 2, 0, 0};
  g.ops[4].residual = "pool";
  g.ops[4].pairs = {{1, 0}, {1, 0}};
  g.ops[5].window = {3, 3, 1, 1, 0, 0};
  g.ops[5].pairs = {{1, 0}};
  g.ops[8].linear = random_kernel(4, 3, f, rng);
  g.output = "logits";
  return g;
}

TEST(FeatureMapOps, EveryOpOfASmallCnnFollowsItsRule) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  const arith::Format f = target::builtin_target("ternary-asic").format;
  const Bundle b = bundle_of(small_cnn(rng, f), 6, 6);
  std::vector<std::uint8_t> pixels(36);
  std::uniform_int_distribution<int> pixel(0, 255);
  for (auto& p : pixels) p = static_cast<std::uint8_t>(pixel(rng));
  const OpOutputs o = IntEngine(b).run(pixels.data());
  const std::string note = test::seed_note(seed);
  ASSERT_EQ(o[1].size(), 144u) << note;
  for (std::size_t k = 0; k < o[2].size(); ++k) EXPECT_EQ(o[2][k], std::max(o[1][k], 0)) << note;
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 3; ++x)
      for (int c = 0; c < 4; ++c) {
        int best = o[2][((2 * y) * 6 + 2 * x) * 4 + c];
        for (int dy = 0; dy < 2; ++dy)
          for (int dx = 0; dx < 2; ++dx) best = std::max(best, o[2][((2 * y + dy) * 6 + 2 * x + dx) * 4 + c]);
        EXPECT_EQ(o[3][(y * 3 + x) * 4 + c], best) << note;
      }
  for (std::size_t k = 0; k < o[3].size(); ++k) EXPECT_EQ(o[4][k], 2 * o[3][k]) << note;
  for (int c = 0; c < 4; ++c) {
    int sum = 0;
    for (int p = 0; p < 9; ++p) sum += o[4][p * 4 + c];
    EXPECT_EQ(o[5][c], sum) << note;
  }
  EXPECT_EQ(o[6], o[5]) << note;
  EXPECT_EQ(o[8].size(), 3u) << note;
}

// A bundle of every feature-map op saves and loads to the same graph and the same integers.
TEST(FeatureMapOps, BundleRoundTrip) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  const arith::Format f = target::builtin_target("ternary-asic").format;
  const Bundle b = bundle_of(small_cnn(rng, f), 6, 6);
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / "qathw-cnn-bundle";
  std::filesystem::remove_all(dir);
  save_bundle(dir, b);
  const Bundle back = load_bundle(dir);
  ASSERT_EQ(back.graph.ops.size(), b.graph.ops.size());
  for (std::size_t i = 0; i < b.graph.tensors.size(); ++i) {
    EXPECT_EQ(back.graph.tensors[i].height, b.graph.tensors[i].height) << i;
    EXPECT_EQ(back.graph.tensors[i].width, b.graph.tensors[i].width) << i;
    EXPECT_EQ(back.graph.tensors[i].features, b.graph.tensors[i].features) << i;
  }
  EXPECT_EQ(back.graph.ops[1].window.pad_w, 1);
  EXPECT_EQ(back.graph.ops[4].residual, "pool");
  std::vector<std::uint8_t> pixels(36 * 4);
  for (auto& p : pixels) p = static_cast<std::uint8_t>(rng() & 255);
  EXPECT_EQ(IntEngine(back).run_all(pixels.data(), 4), IntEngine(b).run_all(pixels.data(), 4)) << test::seed_note(seed);
  std::filesystem::remove_all(dir);
}

// A static quantizer (one calibrated pair, 1 / scale, for the whole tensor) is arith::quantize_act
// per element: docs/arith.md's example, the scale 0.05 as the pair (40960, 11) = 20. The
// accelerator engines refuse it (their quantizer is the dynamic unit).
TEST(FeatureMapOps, StaticQuantizerUsesItsPair) {
  std::mt19937_64 rng(1);
  const arith::Format f = target::builtin_target("ternary-asic").format;
  Graph g = linear_graph(4, random_kernel(4, 2, f, rng));
  const arith::FixedPointResult twenty = arith::to_fixed_point(1 / 0.05, f);
  ASSERT_EQ(twenty.value.mantissa, 40960);
  ASSERT_EQ(twenty.value.shift, 11);
  g.ops[0].pairs = {twenty.value};
  const Bundle b = bundle_of(g, 1, 4);
  const std::vector<std::uint8_t> pixels = {3, 2, 7, 0};
  EXPECT_EQ(IntEngine(b).run(pixels.data())[0], (std::vector<std::int32_t>{60, 40, 127, 0}));
  g.ops[0].pairs.push_back(twenty.value);
  try {
    validate(g, f);
    ADD_FAILURE() << "two pairs accepted";
  } catch (const GraphError& e) {
    EXPECT_EQ(e.field(), "ops[0].pairs");
  }
}

// The checks name the op and the manifest field.
TEST(FeatureMapOps, MalformedOpsAreRefusedNamingTheField) {
  std::mt19937_64 rng(1);
  const arith::Format f = target::builtin_target("ternary-asic").format;
  const auto fails = [&](Graph g, const std::string& field, const std::string& fragment) {
    try {
      validate(g, f);
      ADD_FAILURE() << "accepted; expected " << field;
    } catch (const GraphError& e) {
      EXPECT_EQ(e.field(), field) << e.what();
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  const Graph good = conv_graph(5, 4, 3, random_kernel(60, 6, f, rng));
  validate(good, f);
  Graph g = good;
  g.ops[1].window.pad_h = 5;
  fails(g, "ops[1].window", "padding below the kernel");
  g = good;
  g.ops[1].groups = 4;
  fails(g, "ops[1].groups", "must divide the input channels (3)");
  g = good;
  g.ops[1].window.kernel_w = 3;
  fails(g, "ops[1].in", "patch size");
  g = good;
  g.tensors[2] = map_tensor("conv", DType::Values, 2, 1, 6);
  fails(g, "ops[1].output", "output shape must be [1, 1, 6]");
  g = linear_graph(60, random_kernel(60, 6, f, rng));
  g.tensors[1] = map_tensor("codes", DType::Codes, 5, 4, 3);
  g.tensors[0] = map_tensor("input", DType::Pixels, 5, 4, 3);
  fails(g, "ops[1].input", "flatten a feature map first");
  g = good;
  g.tensors.push_back({"flat", DType::Values, 1, 6});
  g.ops.push_back(op(OpType::Flatten, "flat", "conv", "flat"));
  g.tensors.push_back({"twice", DType::Values, 1, 6});
  g.ops.push_back(op(OpType::Add, "add", "flat", "twice"));
  g.ops.back().residual = "conv";
  g.ops.back().pairs = {{1, 0}, {1, 0}};
  g.output = "twice";
  fails(g, "ops[3].residual", "the inputs' shapes differ: [1, 6] and [1, 1, 6]");
  g.ops.back().residual = "flat";
  g.ops.back().pairs = {{1, 0}};
  fails(g, "ops[3].pairs", "two pairs");
  g.ops.back().pairs = {{1, 0}, {1, 99}};
  fails(g, "ops[3].pairs", "outside the target's scale format");
  g.ops.back().pairs = {{1, 0}, {1, 0}};
  validate(g, f);
  g.ops[2].input = "flat";
  fails(g, "ops[2].input", "reads 'flat' before any op writes it");
}

}  // namespace
}  // namespace qathw::model
