// The FP32 network of a model spec (training/src/spec_net.cpp): its gradients equal one-sided
// differences of the loss for every kernel weight of a small network with every layer type
// (grouped and strided convolutions, relu, both pools, a residual add, a branch, flatten,
// linear), and a whole-map convolution computes the linear layer on the flattened map.
#include <gtest/gtest.h>

#include <random>

#include "../arith/test_support.h"
#include "../model/random_model.h"
#include "qathw/kernels/dense.h"
#include "qathw/kernels/int8_gemm.h"
#include "qathw/model/int_engine.h"
#include "qathw/target/target_spec.h"
#include "qathw/training/idx.h"
#include "qathw/training/network.h"
#include "qathw/training/spec_net.h"

namespace qathw::training {
namespace {

const char* kSmallNet = R"(
name = "small"
input = [6, 6, 2]

[[layers]]
type = "conv2d"
out = 4
kernel = 3
padding = 1
groups = 2

[[layers]]
type = "relu"
name = "a"

[[layers]]
type = "conv2d"
out = 4
kernel = 3
padding = 1

[[layers]]
type = "add"
residual = "a"

[[layers]]
type = "max_pool"
kernel = 2
name = "pooled"

[[layers]]
type = "conv2d"
input = "a"
out = 4
kernel = 2
stride = 2

[[layers]]
type = "add"
input = "pooled"
residual = "pooled"

[[layers]]
type = "avg_pool"
kernel = 3

[[layers]]
type = "flatten"

[[layers]]
type = "linear"
out = "classes"
)";

// The loss sum(r . logits) for fixed r: d(loss)/d(logits) = r.
double loss(SpecNet& net, const std::vector<float>& x, int batch, const std::vector<float>& r) {
  const std::vector<float>& logits = net.forward(x.data(), batch);
  double sum = 0;
  for (std::size_t k = 0; k < logits.size(); ++k) sum += static_cast<double>(logits[k]) * r[k];
  return sum;
}

TEST(SpecNet, GradientsEqualOneSidedDifferences) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  SpecNet net(model::parse_model(kSmallNet, "small.toml", 3), seed);
  const int batch = 2;
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(batch) * 72), r(static_cast<std::size_t>(batch) * 3);
  for (float& v : x) v = u(rng);
  for (float& v : r) v = u(rng);
  loss(net, x, batch, r);
  std::vector<std::vector<float>> grads;
  net.backward(r, grads);
  // The loss is piecewise linear in any one weight (ReLUs and max pools choose the pieces), so a
  // one-sided difference is the slope itself unless a piece ends within its step. A weight agrees
  // when the difference on either side, for one of three step sizes, equals its gradient; a wrong
  // gradient rule disagrees on both sides at every step.
  const auto difference = [&](float& w, float e) {
    const float keep = w;
    const double here = loss(net, x, batch, r);
    w = keep + e;
    const double up = loss(net, x, batch, r);
    w = keep - e;
    const double down = loss(net, x, batch, r);
    w = keep;
    return std::pair<double, double>{(up - here) / e, (here - down) / e};
  };
  int checked = 0;
  for (std::size_t l = 0; l < net.weights().size(); ++l)
    for (std::size_t k = 0; k < net.weights()[l].size(); ++k) {
      float& w = net.weights()[l][k];
      bool agrees = false;
      double right = 0;
      for (const float e : {1e-3f, 3e-4f, 1e-4f}) {
        const auto [up, down] = difference(w, e);
        for (const double numeric : {up, down})
          if (std::abs(grads[l][k] - numeric) <= 2e-3 + 1e-2 * std::abs(numeric)) agrees = true;
        right = up;
      }
      ASSERT_TRUE(agrees) << test::seed_note(seed) << " layer " << l << " weight " << k << ": gradient " << grads[l][k]
                          << ", one-sided difference " << right;
      ++checked;
    }
  EXPECT_EQ(checked, 4 * 9 * 1 + 4 * 36 + 4 * 16 + 4 * 3);
}

// The kernel gradients from the forward's kept patches equal those from patches built again in
// the backward pass (up to float rounding: in QAT the code scale multiplies the other operand),
// FP32 and QAT, over a batch that ends in a partial chunk.
TEST(SpecNet, KeptPatchesGiveTheGradientsOfRebuiltOnes) {
  const std::uint64_t seed = test::test_seed(17);
  SCOPED_TRACE(test::seed_note(seed));
  // kSmallNet's quantizers are static (its adds); this one's dynamic, a scale per sample.
  const char* dynamic_net = "name = \"dynamic\"\ninput = [6, 6, 2]\n[[layers]]\ntype = \"conv2d\"\nout = 4\n"
                            "kernel = 3\npadding = 1\ngroups = 2\n[[layers]]\ntype = \"relu\"\n[[layers]]\n"
                            "type = \"conv2d\"\nout = 4\nkernel = 3\n[[layers]]\ntype = \"flatten\"\n[[layers]]\n"
                            "type = \"linear\"\nout = \"classes\"\n";
  for (const char* text : {kSmallNet, dynamic_net}) {
    const model::ModelSpec m = model::parse_model(text, "small.toml", 3);
    SCOPED_TRACE(m.name);
    const target::TargetSpec t = target::builtin_target("ternary-asic");
    const int batch = 6;
    std::mt19937_64 rng(seed);
    std::vector<std::uint8_t> pixels(static_cast<std::size_t>(batch) * m.input.size());
    for (auto& p : pixels) p = static_cast<std::uint8_t>(rng() % 256);
    std::vector<float> x(pixels.size()), r(static_cast<std::size_t>(batch) * 3);
    for (std::size_t k = 0; k < x.size(); ++k) x[k] = pixels[k] / 255.0f;
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (float& v : r) v = n(rng);
    for (const bool quantized : {false, true}) {
      SCOPED_TRACE(quantized ? "QAT" : "FP32");
      SpecNet kept(m, seed), rebuilt(m, seed);
      rebuilt.set_max_kept_patches(0);
      std::vector<std::vector<float>> gk, gr;
      for (SpecNet* net : {&kept, &rebuilt}) {
        std::vector<std::vector<float>>& g = net == &kept ? gk : gr;
        if (quantized) {
          net->quantize_kernels(t.format);
          net->calibrate_static(pixels.data(), batch, t.format, t.array.lanes, 1.0);
          net->forward_quantized(pixels.data(), batch, t.format, t.array.lanes);
          net->backward_quantized(r, false, g);
        } else {
          net->forward(x.data(), batch);
          net->backward(r, g);
        }
      }
      ASSERT_EQ(gk.size(), gr.size());
      for (std::size_t i = 0; i < gk.size(); ++i) {
        ASSERT_EQ(gk[i].size(), gr[i].size()) << "layer " << i;
        for (std::size_t k = 0; k < gk[i].size(); ++k)
          ASSERT_NEAR(gk[i][k], gr[i][k], 1e-5 * (1.0 + std::abs(gr[i][k]))) << "layer " << i << " weight " << k;
      }
    }
  }
}

TEST(SpecNet, WholeMapConvolutionIsTheLinearLayerOnTheFlattenedMap) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  SpecNet conv(model::parse_model("name = \"c\"\ninput = [3, 4, 2]\n[[layers]]\ntype = \"conv2d\"\nout = 5\n"
                                  "kernel = [3, 4]\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"linear\"\nout = \"classes\"\n",
                                  "c.toml", 2),
               seed);
  SpecNet lin(model::parse_model("name = \"l\"\ninput = [3, 4, 2]\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"linear\"\n"
                                 "out = 5\n[[layers]]\ntype = \"linear\"\nout = \"classes\"\n",
                                 "l.toml", 2),
              seed);
  lin.weights()[1] = conv.weights()[0];
  lin.weights()[2] = conv.weights()[2];
  std::vector<float> x(24 * 3);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (float& v : x) v = u(rng);
  const std::vector<float> a = conv.forward(x.data(), 3), b = lin.forward(x.data(), 3);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(a[k], b[k], 1e-5f) << test::seed_note(seed);
}

// AdamW (lr 1e-2) on every kernel of a network, its moments kept here.
struct Adam {
  explicit Adam(const SpecNet& net) {
    for (const auto& w : net.weights()) m.emplace_back(w.size(), 0.0f), v.emplace_back(w.size(), 0.0f);
  }
  void step(SpecNet& net, const std::vector<std::vector<float>>& grads) {
    kernels::AdamWParams p;
    p.lr = 1e-2f;
    p.step = ++steps;
    for (std::size_t l = 0; l < grads.size(); ++l)
      if (!grads[l].empty())
        kernels::adamw_step(net.weights()[l].data(), grads[l].data(), m[l].data(), v[l].data(), grads[l].size(), p);
  }
  std::vector<std::vector<float>> m, v;
  long steps = 0;
};

// A small CNN learns the tiny data set (4 classes of 8x10 images, a bright bar per class): AdamW
// on the FP32 gradients brings the test accuracy from chance to at least 90%.
TEST(SpecNet, ASmallCnnLearnsTheTinyDataSet) {
  const std::uint64_t seed = test::test_seed();
  const Dataset train = load_split(QATHW_TINY_IDX_DIR, Split::Train);
  const Dataset test = load_split(QATHW_TINY_IDX_DIR, Split::Test, train.classes);
  SpecNet net(model::parse_model("name = \"tiny\"\ninput = [8, 10, 1]\n[[layers]]\ntype = \"conv2d\"\nout = 4\n"
                                 "kernel = 3\npadding = 1\n[[layers]]\ntype = \"relu\"\n[[layers]]\ntype = \"max_pool\"\n"
                                 "kernel = 2\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"linear\"\nout = \"classes\"\n",
                                 "tiny.toml", train.classes),
              seed);
  const auto accuracy = [&] {
    std::vector<float> x(test.pixels.size());
    for (std::size_t k = 0; k < x.size(); ++k) x[k] = test.pixels[k] / 255.0f;
    std::vector<float> dlogits;
    int correct = 0;
    softmax_cross_entropy(net.forward(x.data(), static_cast<int>(test.count)), test.labels.data(),
                          static_cast<int>(test.count), train.classes, dlogits, correct);
    return static_cast<double>(correct) / static_cast<double>(test.count);
  };
  const double before = accuracy();
  Adam optimizer(net);
  std::vector<std::vector<float>> grads;
  const int batch = 32;
  std::vector<float> x(static_cast<std::size_t>(batch) * train.features), dlogits;
  for (long step = 1; step <= 80; ++step) {
    const std::size_t first = static_cast<std::size_t>((step - 1) * batch) % (train.count - batch);
    for (std::size_t k = 0; k < x.size(); ++k) x[k] = train.pixels[first * train.features + k] / 255.0f;
    int correct = 0;
    softmax_cross_entropy(net.forward(x.data(), batch), train.labels.data() + first, batch, train.classes, dlogits,
                          correct);
    net.backward(dlogits, grads);
    optimizer.step(net, grads);
  }
  const double after = accuracy();
  EXPECT_GE(after, 0.9) << test::seed_note(seed) << " (before training: " << before << ")";
}

// QAT of a small CNN on the tiny data set: the quantized forward, the straight-through backward and
// AdamW bring the test accuracy from chance to at least 90% on ternary-asic, and the trained
// network's integers are the integer engine's (the forward test below holds that for any kernels).
TEST(SpecNet, QatOfASmallCnnLearnsTheTinyDataSet) {
  const std::uint64_t seed = test::test_seed();
  const Dataset train = load_split(QATHW_TINY_IDX_DIR, Split::Train);
  const Dataset test = load_split(QATHW_TINY_IDX_DIR, Split::Test, train.classes);
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  SpecNet net(model::parse_model("name = \"tiny\"\ninput = [8, 10, 1]\n[[layers]]\ntype = \"conv2d\"\nout = 8\n"
                                 "kernel = 3\npadding = 1\n[[layers]]\ntype = \"relu\"\n[[layers]]\ntype = \"max_pool\"\n"
                                 "kernel = 2\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"linear\"\nout = \"classes\"\n",
                                 "tiny.toml", train.classes),
              seed);
  const auto accuracy = [&] {
    net.quantize_kernels(t.format);
    std::vector<float> dlogits;
    int correct = 0;
    softmax_cross_entropy(net.forward_quantized(test.pixels.data(), static_cast<int>(test.count), t.format, t.array.lanes),
                          test.labels.data(), static_cast<int>(test.count), train.classes, dlogits, correct);
    return static_cast<double>(correct) / static_cast<double>(test.count);
  };
  const double before = accuracy();
  Adam optimizer(net);
  std::vector<std::vector<float>> grads;
  const int batch = 32;
  std::vector<float> dlogits;
  for (long step = 1; step <= 120; ++step) {
    const std::size_t first = static_cast<std::size_t>((step - 1) * batch) % (train.count - batch);
    net.quantize_kernels(t.format);
    int correct = 0;
    softmax_cross_entropy(net.forward_quantized(train.pixels.data() + first * train.features, batch, t.format,
                                                t.array.lanes),
                          train.labels.data() + first, batch, train.classes, dlogits, correct);
    net.backward_quantized(dlogits, true, grads);
    optimizer.step(net, grads);
  }
  EXPECT_GE(accuracy(), 0.9) << test::seed_note(seed) << " (before training: " << before << ")";
}

// The accelerator's integers of a spec network (forward_quantized) are the integer engine's on
// the lowered graph, layer by layer, for the built-in models without an add on both built-in
// targets and on a target whose narrow saturating accumulator takes the chunked path.
TEST(SpecNet, QuantizedForwardIsTheIntegerEngine) {
  const std::uint64_t seed = test::test_seed();
  std::mt19937_64 rng(seed);
  target::TargetSpec narrow = target::builtin_target("ternary-asic");
  narrow.format.acc_bits = 14;
  narrow.name = "narrow";
  for (const target::TargetSpec& t :
       {target::builtin_target("ternary-asic"), target::builtin_target("int4-fpga"), narrow}) {
    for (const char* name : {"lenet", "dscnn-tiny", "mlp"}) {
      SpecNet net(model::resolve_model(name, 10), seed);
      net.quantize_kernels(t.format);
      const int batch = 3;
      std::vector<std::uint8_t> pixels(static_cast<std::size_t>(batch) * 784);
      for (auto& p : pixels) p = static_cast<std::uint8_t>(rng() & 255);
      net.forward_quantized(pixels.data(), batch, t.format, t.array.lanes);
      // The graph of the same kernels.
      const model::ModelSpec& m = net.spec();
      std::vector<model::LayerParams> params(m.layers.size());
      for (std::size_t i = 0; i < m.layers.size(); ++i) {
        const SpecNet::QuantizedKernel& q = net.quantized()[i];
        if (q.codes.empty()) continue;
        model::LinearParams& k = params[i].kernel;
        k.out = m.layers[i].out;
        k.in = static_cast<int>(q.codes.size()) / k.out;
        k.format = t.format.weights;
        k.packed.assign(arith::packed_bytes(q.codes.size(), k.format), 0);
        for (std::size_t c = 0; c < q.codes.size(); ++c)
          arith::store_code(k.packed.data(), c, static_cast<int>(q.codes[c]), k.format);
        k.requant = q.requant;
      }
      const model::Bundle b = test::bundle_of(t, model::lower_model(m, std::move(params), t.format));
      model::validate(b.graph, t.format);
      const model::IntEngine engine(b);
      for (int s = 0; s < batch; ++s) {
        const model::OpOutputs ops = engine.run(pixels.data() + static_cast<std::size_t>(s) * 784);
        for (std::size_t i = 0; i < m.layers.size(); ++i) {
          const std::size_t size = static_cast<std::size_t>(m.layers[i].out_shape.size());
          const std::vector<std::int32_t> mine(net.integers(i).begin() + static_cast<long>(s * size),
                                               net.integers(i).begin() + static_cast<long>((s + 1) * size));
          // Layer i's op (not its quantizer) in the lowered graph.
          std::size_t at = 0;
          for (std::size_t o = 0; o < b.graph.ops.size(); ++o)
            if (b.graph.ops[o].name.rfind("layer" + std::to_string(i) + ".", 0) == 0 &&
                b.graph.ops[o].type != model::OpType::Quantize)
              at = o;
          ASSERT_EQ(mine, ops[at]) << test::seed_note(seed) << " " << t.name << " " << name << " sample " << s
                                   << " layer " << i;
        }
      }
    }
  }
}

// The int8 GEMM's QAT step (byte patches kept for the backward pass) gives the integers and the
// gradients of the float GEMM's, bit for bit, over batches that end in a partial chunk, with and
// without kept patches: a grouped and strided network with static quantizers, a depthwise one, and
// lenet.
TEST(SpecNet, Int8GemmStepIsTheFloatGemmStep) {
  if (!kernels::int8_gemm_available()) GTEST_SKIP() << "no AVX-512 VNNI on this processor";
  const std::uint64_t seed = test::test_seed(23);
  SCOPED_TRACE(test::seed_note(seed));
  const bool saved = kernels::int8_gemm_enabled();
  for (const char* name : {"small", "dscnn-tiny", "lenet"}) {
    const model::ModelSpec m = std::string(name) == "small" ? model::parse_model(kSmallNet, "small.toml", 3)
                                                            : model::resolve_model(name, 10);
    const int classes = m.classes(), batch = 7;
    std::mt19937_64 rng(seed);
    std::vector<std::uint8_t> pixels(static_cast<std::size_t>(batch) * m.input.size());
    for (auto& p : pixels) p = static_cast<std::uint8_t>(rng() % 256);
    std::vector<float> r(static_cast<std::size_t>(batch) * classes);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (float& v : r) v = normal(rng);
    for (const char* target : {"ternary-asic", "int4-fpga"})
      for (const std::size_t kept : {std::size_t{1} << 25, std::size_t{0}}) {
        SCOPED_TRACE(std::string(name) + " " + target + (kept ? "" : ", patches built again"));
        const target::TargetSpec t = target::builtin_target(target);
        std::vector<std::vector<float>> grads[2];
        std::vector<std::vector<std::int32_t>> integers[2];
        for (const bool int8 : {false, true}) {
          kernels::set_int8_gemm_enabled(int8);
          SpecNet net(m, seed);
          net.set_max_kept_patches(kept);
          net.quantize_kernels(t.format);
          net.calibrate_static(pixels.data(), batch, t.format, t.array.lanes, 1.0);
          net.forward_quantized(pixels.data(), batch, t.format, t.array.lanes);
          net.backward_quantized(r, false, grads[int8]);
          for (std::size_t i = 0; i < m.layers.size(); ++i) integers[int8].push_back(net.integers(i));
          EXPECT_EQ(net.quantized()[0].packed.empty(), !int8);
        }
        kernels::set_int8_gemm_enabled(saved);
        for (std::size_t i = 0; i < m.layers.size(); ++i) {
          ASSERT_EQ(integers[0][i], integers[1][i]) << "layer " << i;
          ASSERT_EQ(grads[0][i], grads[1][i]) << "layer " << i;
        }
      }
  }
}

}  // namespace
}  // namespace qathw::training
