// The MLP's passes: FP32 gradients against finite differences, the straight-through backward of
// the quantized forward against the same gradient written out by hand, and the quantized forward
// against the integer engine run on a bundle of the same network (the chip's computation).
#include "qathw/training/network.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "../arith/test_support.h"
#include "qathw/kernels/dense.h"
#include "qathw/kernels/int8_gemm.h"
#include "qathw/kernels/quant_ops.h"
#include "qathw/target/target_spec.h"
#include "qathw/model/accelerator_layers.h"
#include "qathw/model/bundle.h"
#include "qathw/training/export.h"
#include "qathw/model/int_engine.h"

namespace qathw::training {
namespace {

namespace fs = std::filesystem;

std::vector<std::uint8_t> random_pixels(std::size_t n, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> u(0, 255);
  std::vector<std::uint8_t> v(n);
  for (auto& x : v) x = static_cast<std::uint8_t>(u(rng));
  return v;
}

std::vector<std::uint8_t> random_labels(int batch, int classes, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> u(0, classes - 1);
  std::vector<std::uint8_t> v(batch);
  for (auto& x : v) x = static_cast<std::uint8_t>(u(rng));
  return v;
}

// ---- FP32 backward against central differences --------------------------------------------

// The FP32 twin's loss in double precision, and which hidden units are active (for kinks).
struct DoubleForward {
  double loss = 0;
  std::vector<double> logits;
  std::vector<bool> active;
};

DoubleForward double_forward(const Mlp& net, const std::vector<std::vector<double>>& w, const std::uint8_t* pixels,
                             const std::uint8_t* labels, int batch) {
  DoubleForward r;
  for (int b = 0; b < batch; ++b) {
    std::vector<double> x(net.inputs());
    for (int k = 0; k < net.inputs(); ++k) x[k] = pixels[static_cast<std::size_t>(b) * net.inputs() + k] / 255.0;
    for (std::size_t l = 0; l < net.layers.size(); ++l) {
      const Layer& layer = net.layers[l];
      std::vector<double> y(layer.out, 0.0);
      for (int n = 0; n < layer.out; ++n) {
        for (int k = 0; k < layer.in; ++k) y[n] += w[l][static_cast<std::size_t>(n) * layer.in + k] * x[k];
        if (layer.relu) {
          r.active.push_back(y[n] > 0);
          y[n] = std::max(y[n], 0.0);
        }
      }
      x = std::move(y);
    }
    const double top = *std::max_element(x.begin(), x.end());
    double sum = 0;
    for (double v : x) sum += std::exp(v - top);
    r.loss += std::log(sum) + top - x[labels[b]];
    r.logits.insert(r.logits.end(), x.begin(), x.end());
  }
  r.loss /= batch;
  return r;
}

TEST(BackwardFp32, MatchesCentralDifferencesOnEveryLayer) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  std::mt19937_64 rng(seed);
  const int inputs = 12, classes = 3, batch = 5;
  const Mlp net = make_mlp(inputs, {7, 5}, classes, seed);
  ASSERT_EQ(net.layers.size(), 3u);
  const std::vector<std::uint8_t> pixels = random_pixels(static_cast<std::size_t>(batch) * inputs, rng);
  const std::vector<std::uint8_t> labels = random_labels(batch, classes, rng);

  Activations act;
  forward_fp32(net, pixels.data(), batch, act);
  std::vector<float> dlogits;
  int correct = 0;
  const float loss = softmax_cross_entropy(act.logits, labels.data(), batch, classes, dlogits, correct);
  std::vector<std::vector<float>> grads;
  backward_fp32(net, act, dlogits, grads);
  ASSERT_EQ(grads.size(), net.layers.size());

  std::vector<std::vector<double>> w;
  for (const Layer& l : net.layers) w.emplace_back(l.w.begin(), l.w.end());
  const DoubleForward base = double_forward(net, w, pixels.data(), labels.data(), batch);
  // The double reference is the same function as the float forward.
  ASSERT_EQ(base.logits.size(), act.logits.size());
  for (std::size_t i = 0; i < base.logits.size(); ++i)
    ASSERT_NEAR(act.logits[i], base.logits[i], 1e-5 * (1 + std::fabs(base.logits[i]))) << "logit " << i;
  EXPECT_NEAR(loss, base.loss, 1e-5 * base.loss);
  int base_correct = 0;
  for (int b = 0; b < batch; ++b)
    base_correct += argmax(base.logits.data() + static_cast<std::size_t>(b) * classes, classes) == labels[b];
  EXPECT_EQ(correct, base_correct);

  const double h = 1e-6;
  for (std::size_t l = 0; l < net.layers.size(); ++l) {
    SCOPED_TRACE("layer " + std::to_string(l));
    ASSERT_EQ(grads[l].size(), w[l].size());
    int checked = 0, skipped = 0;
    double largest = 0;
    for (std::size_t i = 0; i < w[l].size(); ++i) {
      const double w0 = w[l][i];
      w[l][i] = w0 + h;
      const DoubleForward plus = double_forward(net, w, pixels.data(), labels.data(), batch);
      w[l][i] = w0 - h;
      const DoubleForward minus = double_forward(net, w, pixels.data(), labels.data(), batch);
      w[l][i] = w0;
      if (plus.active != base.active || minus.active != base.active) {  // a ReLU kink lies within h
        ++skipped;
        continue;
      }
      const double fd = (plus.loss - minus.loss) / (2 * h);
      largest = std::max(largest, std::fabs(fd));
      EXPECT_NEAR(grads[l][i], fd, 2e-4 * std::fabs(fd) + 2e-7) << "weight " << i;
      ++checked;
    }
    EXPECT_GT(checked, static_cast<int>(w[l].size() * 9 / 10)) << skipped << " skipped at kinks";
    EXPECT_GT(largest, 1e-3) << "gradients too small for the check to mean anything";
  }
}

TEST(SoftmaxCrossEntropy, LossGradientAndCount) {
  // Two samples of three classes with known values.
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f, -1.0f, 3.0f};
  const std::uint8_t labels[] = {0, 2};
  std::vector<float> d;
  int correct = -1;
  const float loss = softmax_cross_entropy(logits, labels, 2, 3, d, correct);
  EXPECT_EQ(correct, 1);  // sample 0 predicts class 1, sample 1 predicts class 2
  double expected = 0;
  for (int b = 0; b < 2; ++b) {
    double sum = 0;
    for (int c = 0; c < 3; ++c) sum += std::exp(static_cast<double>(logits[b * 3 + c]));
    expected += std::log(sum) - logits[b * 3 + labels[b]];
    for (int c = 0; c < 3; ++c) {
      const double p = std::exp(static_cast<double>(logits[b * 3 + c])) / sum;
      EXPECT_NEAR(d[b * 3 + c], (p - (c == labels[b])) / 2, 1e-6) << b << "," << c;
    }
  }
  EXPECT_NEAR(loss, expected / 2, 1e-6);
}

// ---- quantized forward and the straight-through backward ------------------------------------

// Switches the int8 GEMM on or off for a scope (only where the processor has it).
class Int8GemmScope {
 public:
  explicit Int8GemmScope(bool enabled) : saved_(kernels::int8_gemm_enabled()) {
    kernels::set_int8_gemm_enabled(enabled && kernels::int8_gemm_available());
  }
  ~Int8GemmScope() { kernels::set_int8_gemm_enabled(saved_); }

 private:
  bool saved_;
};

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A built-in target's TOML with some lines replaced, parsed as a custom target.
target::TargetSpec variant(const std::string& base, const std::vector<std::pair<std::string, std::string>>& edits) {
  std::string text = read_text(fs::path(QATHW_BUILTIN_TARGETS_DIR) / (base + ".toml"));
  for (const auto& [from, to] : edits) {
    const std::size_t at = text.find(from);
    if (at == std::string::npos) throw std::runtime_error(base + ".toml has no line '" + from + "'");
    text.replace(at, from.size(), to);
  }
  return target::parse_target(text, base + "-variant.toml");
}

struct TargetCase {
  std::string label;
  std::function<target::TargetSpec()> make;
  int inputs;
  std::vector<int> hidden;
  int classes;
  bool overflows;  // whether the test network's accumulators must overflow the accumulator
};

std::vector<TargetCase> target_cases() {
  return {
      {"ternary_asic", [] { return target::builtin_target("ternary-asic"); }, 80, {24, 16}, 4, false},
      {"int4_fpga", [] { return target::builtin_target("int4-fpga"); }, 80, {24, 16}, 4, false},
      {"ternary_acc12_saturate",
       [] {
         return variant("ternary-asic", {{"name = \"ternary-asic\"", "name = \"ternary-asic-acc12\""},
                                         {"accumulator_bits = 24", "accumulator_bits = 12"}});
       },
       128, {24, 16}, 5, true},
      {"int4_acc14_saturate",
       [] {
         return variant("int4-fpga", {{"name = \"int4-fpga\"", "name = \"int4-fpga-acc14\""},
                                      {"accumulator_bits = 32", "accumulator_bits = 14"},
                                      {"overflow = \"wrap\"", "overflow = \"saturate\""}});
       },
       128, {24, 16}, 5, true},
      {"ternary_acc10_wrap",
       [] {
         return variant("ternary-asic", {{"name = \"ternary-asic\"", "name = \"ternary-asic-acc10\""},
                                         {"accumulator_bits = 24", "accumulator_bits = 10"},
                                         {"overflow = \"saturate\"", "overflow = \"wrap\""}});
       },
       128, {24, 16}, 5, true},
  };
}

// A random network. Where the accumulator must overflow, the first layer's rows (over pixel
// codes, which are non-negative) are of three kinds: all weights non-negative, so the sum grows
// past the accumulator's range; non-negative then non-positive, so it passes the range and comes
// back (a saturating accumulator then depends on the order of the sums); and random.
Mlp test_network(const TargetCase& c, std::uint64_t seed) {
  Mlp net = make_mlp(c.inputs, c.hidden, c.classes, seed);
  if (c.overflows) {
    Layer& first = net.layers.front();
    for (int n = 0; n < first.out; ++n)
      for (int k = 0; k < first.in; ++k) {
        float& x = first.w[static_cast<std::size_t>(n) * first.in + k];
        if (n % 3 == 0) x = std::fabs(x);
        if (n % 3 == 1) x = k < first.in / 2 ? std::fabs(x) : -std::fabs(x);
      }
  }
  return net;
}

// Random images plus an all-zero and an all-255 image.
std::vector<std::uint8_t> test_images(int count, int features, std::mt19937_64& rng) {
  std::vector<std::uint8_t> px = random_pixels(static_cast<std::size_t>(count) * features, rng);
  std::fill_n(px.begin(), features, 0);
  std::fill_n(px.begin() + features, features, 255);
  return px;
}

class QuantizedForward : public ::testing::TestWithParam<std::tuple<TargetCase, bool>> {};

// The trainer's quantized forward and the integer engine on a bundle of the same network give the
// same integers, for every layer, sample and element.
TEST_P(QuantizedForward, EqualsIntegerEngineOnEveryLayer) {
  const auto& [c, int8] = GetParam();
  const Int8GemmScope scope(int8);
  const target::TargetSpec t = c.make();
  const arith::Format& f = t.format;
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  std::mt19937_64 rng(seed);
  const int rows = 8, cols = c.inputs / rows;
  ASSERT_EQ(rows * cols, c.inputs);
  if (c.overflows) {
    // A saturating accumulator that can overflow depends on the order of the sums: only the
    // array's chunked accumulation is exact. A wrapping one is order-free.
    const bool wrap = f.overflow == arith::Overflow::Wrap;
    EXPECT_EQ(kernels::float_accumulation_exact(c.inputs, f), wrap);
    EXPECT_EQ(kernels::int8_accumulation_exact(c.inputs, f), wrap);
  }
  const int batch = 24;
  long overflowing = 0, order_dependent = 0;
  for (int trial = 0; trial < 4; ++trial) {
    SCOPED_TRACE("network " + std::to_string(trial));
    const Mlp net = test_network(c, seed + static_cast<std::uint64_t>(trial));
    const std::vector<std::uint8_t> px = test_images(batch, c.inputs, rng);
    std::vector<QuantizedLayer> q;
    quantize_weights(net, f, q);
    Activations act;
    forward_quantized(net, q, f, t.array.lanes, px.data(), batch, act);
    ASSERT_EQ(act.z.size(), net.layers.size());

    // Accumulators whose exact sum leaves the accumulator's range, and those where the array's
    // chunked accumulation differs from applying the overflow rule once to the exact sum.
    const Layer& first = net.layers.front();
    for (int b = 0; b < batch; ++b)
      for (int n = 0; n < first.out; ++n) {
        std::vector<std::int64_t> x(first.in), w(first.in);
        std::int64_t sum = 0;
        for (int k = 0; k < first.in; ++k) {
          x[k] = static_cast<std::int64_t>(act.inputs[0][static_cast<std::size_t>(b) * first.in + k]);
          w[k] = static_cast<std::int64_t>(q[0].codes[static_cast<std::size_t>(n) * first.in + k]);
          sum += x[k] * w[k];
        }
        if (sum > arith::signed_max(f.acc_bits) || sum < arith::signed_min(f.acc_bits)) ++overflowing;
        if (arith::dot(x.data(), w.data(), first.in, t.array.lanes, f) != arith::apply_overflow(sum, f.acc_bits, f.overflow))
          ++order_dependent;
      }

    const model::Bundle bundle = make_bundle(net, t, rows, cols, nlohmann::json::object());
    const model::IntEngine engine(bundle);
    const std::vector<model::AcceleratorLayer> layers = model::accelerator_layers(bundle.graph).layers;
    long nonzero = 0;
    for (int b = 0; b < batch; ++b) {
      const model::LayerOutputs out =
          model::layer_outputs(layers, engine.run(px.data() + static_cast<std::size_t>(b) * c.inputs));
      ASSERT_EQ(out.size(), net.layers.size());
      for (std::size_t l = 0; l < out.size(); ++l) {
        const int n_out = net.layers[l].out;
        ASSERT_EQ(out[l].size(), static_cast<std::size_t>(n_out));
        for (int n = 0; n < n_out; ++n) {
          const std::int32_t trainer = act.z[l][static_cast<std::size_t>(b) * n_out + n];
          ASSERT_EQ(trainer, out[l][n]) << "layer " << l << " sample " << b << " element " << n;
          nonzero += trainer != 0;
        }
      }
    }
    EXPECT_GT(nonzero, 0) << "all-zero outputs compare trivially";
    // The all-zero image gives all-zero integers everywhere.
    for (std::size_t l = 0; l < act.z.size(); ++l)
      for (int n = 0; n < net.layers[l].out; ++n) EXPECT_EQ(act.z[l][n], 0) << "layer " << l;
    // The batch entry point agrees too.
    const std::vector<std::int32_t> batched = engine.run_batch(px.data(), batch);
    EXPECT_EQ(batched, act.z.back());
  }
  if (c.overflows) {
    EXPECT_GT(overflowing, 0) << "no accumulator left the " << f.acc_bits << "-bit range";
    if (f.overflow == arith::Overflow::Saturate) {
      EXPECT_GT(order_dependent, 0) << "no accumulator saturated on the way: the order of the sums went untested";
    } else {
      EXPECT_EQ(order_dependent, 0) << "wrapping is modular: the order of the sums cannot matter";
    }
  }
}

// logits = z * unit per token, with unit the real value of one output integer, built up from
// 1/255 per pixel through each layer's per-token code scale and reference scale.
TEST_P(QuantizedForward, LogitsAreOutputIntegersTimesTheTokenUnit) {
  const auto& [c, int8] = GetParam();
  const Int8GemmScope scope(int8);
  const target::TargetSpec t = c.make();
  const arith::Format& f = t.format;
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  std::mt19937_64 rng(seed + 99);
  const Mlp net = test_network(c, seed);
  const int batch = 16;
  const std::vector<std::uint8_t> px = test_images(batch, c.inputs, rng);
  std::vector<QuantizedLayer> q;
  quantize_weights(net, f, q);
  Activations act;
  forward_quantized(net, q, f, t.array.lanes, px.data(), batch, act);

  const double qmax = static_cast<double>(arith::act_qmax(f.act_bits));
  std::vector<double> unit(batch, 1.0 / 255.0);
  for (std::size_t l = 0; l < net.layers.size(); ++l) {
    const int in = net.layers[l].in;
    for (int b = 0; b < batch; ++b) {
      // The integers entering layer l for token b: pixels, or the previous layer's outputs.
      std::int64_t amax = 0;
      auto value = [&](int k) -> std::int64_t {
        return l == 0 ? px[static_cast<std::size_t>(b) * in + k] : act.z[l - 1][static_cast<std::size_t>(b) * in + k];
      };
      for (int k = 0; k < in; ++k) amax = std::max(amax, arith::magnitude(value(k)));
      // The codes are the arith core's activation quantizer applied to those integers.
      const arith::FixedPoint inv = arith::token_inv_scale(amax, f);
      for (int k = 0; k < in; ++k) {
        const std::int64_t v = value(k);
        ASSERT_EQ(act.inputs[l][static_cast<std::size_t>(b) * in + k],
                  static_cast<float>(arith::quantize_act(v, inv, f.act_bits, f.rounding)))
            << "layer " << l << " token " << b << " element " << k;
      }
      const double scale = static_cast<double>(amax) * unit[b] / qmax;
      EXPECT_NEAR(act.code_scale[l][b], scale, 1e-6 * scale + 1e-30) << "layer " << l << " token " << b;
      unit[b] = scale * q[l].reference;
    }
  }
  const int classes = net.classes();
  int rows_checked = 0;
  for (int b = 0; b < batch; ++b) {
    const std::int32_t* z = act.z.back().data() + static_cast<std::size_t>(b) * classes;
    const float* logits = act.logits.data() + static_cast<std::size_t>(b) * classes;
    for (int n = 0; n < classes; ++n)
      EXPECT_NEAR(logits[n], z[n] * unit[b], 1e-6 * std::fabs(z[n] * unit[b]) + 1e-30) << b << "," << n;
    EXPECT_EQ(argmax(logits, classes), argmax(z, classes)) << "sample " << b;
    if (*std::max_element(z, z + classes) != *std::min_element(z, z + classes)) ++rows_checked;
  }
  EXPECT_GT(rows_checked, batch / 2) << "too few rows with distinct outputs";
}

// The straight-through backward equals the gradient written out from the forward state:
// dW_l = (dY * code_scale per token)^T . input codes, dX = dY . dequantized W, and the ReLU mask
// from the previous layer's integers.
TEST_P(QuantizedForward, BackwardIsTheStraightThroughGradient) {
  const auto& [c, int8] = GetParam();
  const Int8GemmScope scope(int8);
  const target::TargetSpec t = c.make();
  const arith::Format& f = t.format;
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  std::mt19937_64 rng(seed + 7);
  const Mlp net = test_network(c, seed + 1);
  const int batch = 12;
  const std::vector<std::uint8_t> px = random_pixels(static_cast<std::size_t>(batch) * c.inputs, rng);
  const std::vector<std::uint8_t> labels = random_labels(batch, c.classes, rng);
  std::vector<QuantizedLayer> q;
  quantize_weights(net, f, q);
  for (std::size_t l = 0; l < q.size(); ++l)
    for (std::size_t i = 0; i < q[l].codes.size(); ++i) {
      const float code = q[l].codes[i];
      ASSERT_EQ(code, std::round(code));
      ASSERT_LE(std::fabs(code), arith::weight_qmax(f.weights));
      ASSERT_EQ(q[l].dequantized[i], code * q[l].scales[i / net.layers[l].in]);
    }
  Activations act;
  forward_quantized(net, q, f, t.array.lanes, px.data(), batch, act);
  std::vector<float> dlogits;
  int correct = 0;
  softmax_cross_entropy(act.logits, labels.data(), batch, c.classes, dlogits, correct);
  // Copies: the backward pass may reuse the forward's buffers.
  const std::vector<std::vector<float>> inputs = act.inputs;
  const std::vector<std::vector<float>> code_scale = act.code_scale;
  const std::vector<std::vector<std::int32_t>> z = act.z;
  std::vector<std::vector<float>> grads;
  backward_quantized(net, q, act, dlogits, false, grads);
  ASSERT_EQ(grads.size(), net.layers.size());

  // dy and a bound on the magnitudes summed into each element (float rounding scales with it,
  // not with |dy|, where the sums cancel).
  std::vector<double> dy(dlogits.begin(), dlogits.end());
  std::vector<double> dy_mag(dy.size());
  for (std::size_t i = 0; i < dy.size(); ++i) dy_mag[i] = std::fabs(dy[i]);
  int masked_inputs = 0;
  for (std::size_t l = net.layers.size(); l-- > 0;) {
    SCOPED_TRACE("layer " + std::to_string(l));
    const Layer& layer = net.layers[l];
    ASSERT_EQ(grads[l].size(), layer.w.size());
    double largest = 0;
    for (int n = 0; n < layer.out; ++n)
      for (int k = 0; k < layer.in; ++k) {
        double g = 0, mag = 0;
        for (int b = 0; b < batch; ++b) {
          const std::size_t o = static_cast<std::size_t>(b) * layer.out + n;
          const double x = code_scale[l][b] * inputs[l][static_cast<std::size_t>(b) * layer.in + k];
          g += dy[o] * x;
          mag += dy_mag[o] * std::fabs(x);
        }
        largest = std::max(largest, std::fabs(g));
        ASSERT_NEAR(grads[l][static_cast<std::size_t>(n) * layer.in + k], g, 1e-5 * mag + 1e-30)
            << "dW[" << n << "][" << k << "]";
      }
    EXPECT_GT(largest, 0.0);
    if (l == 0) break;
    std::vector<double> dx(static_cast<std::size_t>(batch) * layer.in, 0.0), dx_mag(dx.size(), 0.0);
    for (int b = 0; b < batch; ++b)
      for (int k = 0; k < layer.in; ++k) {
        if (z[l - 1][static_cast<std::size_t>(b) * layer.in + k] <= 0) {
          ++masked_inputs;
          continue;
        }
        double s = 0, m = 0;
        for (int n = 0; n < layer.out; ++n) {
          const std::size_t o = static_cast<std::size_t>(b) * layer.out + n;
          const double w = q[l].dequantized[static_cast<std::size_t>(n) * layer.in + k];
          s += dy[o] * w;
          m += dy_mag[o] * std::fabs(w);
        }
        dx[static_cast<std::size_t>(b) * layer.in + k] = s;
        dx_mag[static_cast<std::size_t>(b) * layer.in + k] = m;
      }
    dy = std::move(dx);
    dy_mag = std::move(dx_mag);
  }
  EXPECT_GT(masked_inputs, 0) << "no ReLU was inactive: the mask went unchecked";
}

std::string case_name(const ::testing::TestParamInfo<std::tuple<TargetCase, bool>>& info) {
  return std::get<0>(info.param).label + (std::get<1>(info.param) ? "_int8_gemm" : "_float_gemm");
}

INSTANTIATE_TEST_SUITE_P(Targets, QuantizedForward,
                         ::testing::Combine(::testing::ValuesIn(target_cases()), ::testing::Bool()), case_name);

// With clip on, weight gradients are zero exactly where the ternary quantizer clips (|w| beyond
// 1.5 gamma) and unchanged elsewhere.
TEST(BackwardQuantized, ClippedStraightThroughZeroesClippedWeights) {
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  const arith::Format& f = t.format;
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  std::mt19937_64 rng(seed);
  const Mlp net = make_mlp(40, {16, 12}, 4, seed);
  const int batch = 16;
  const std::vector<std::uint8_t> px = random_pixels(static_cast<std::size_t>(batch) * 40, rng);
  const std::vector<std::uint8_t> labels = random_labels(batch, 4, rng);
  std::vector<QuantizedLayer> q;
  quantize_weights(net, f, q);
  Activations act;
  forward_quantized(net, q, f, t.array.lanes, px.data(), batch, act);
  std::vector<float> dlogits;
  int correct = 0;
  softmax_cross_entropy(act.logits, labels.data(), batch, 4, dlogits, correct);
  Activations act2 = act;
  std::vector<std::vector<float>> plain, clipped;
  backward_quantized(net, q, act, dlogits, false, plain);
  backward_quantized(net, q, act2, dlogits, true, clipped);
  for (std::size_t l = 0; l < net.layers.size(); ++l) {
    SCOPED_TRACE("layer " + std::to_string(l));
    const Layer& layer = net.layers[l];
    const float gamma = q[l].scales[0];
    int zeros = 0, changed = 0;
    for (std::size_t i = 0; i < layer.w.size(); ++i) {
      // Codes are clipped beyond 1.5 gamma (exactly at 1.5 gamma either way is defensible).
      const float ratio = std::fabs(layer.w[i] / gamma);
      if (ratio != 1.5f) {
        ASSERT_EQ(q[l].ste_mask[i], ratio < 1.5f ? 1.0f : 0.0f) << "weight " << i << " = " << layer.w[i] << ", gamma " << gamma;
      }
      if (q[l].ste_mask[i] == 0.0f) {
        ++zeros;
        EXPECT_EQ(clipped[l][i], 0.0f) << "weight " << i;
        changed += plain[l][i] != 0.0f;
      } else {
        EXPECT_EQ(clipped[l][i], plain[l][i]) << "weight " << i;
      }
    }
    EXPECT_GT(zeros, 0) << "no weight beyond 1.5 gamma";
    EXPECT_GT(changed, 0) << "clipping changed no gradient";
  }
}

TEST(QuantizeWeights, TernaryScaleIsTheAbsmeanAndInt4ScalesArePerChannel) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  const Mlp net = make_mlp(30, {10}, 3, seed);
  std::vector<QuantizedLayer> q;
  quantize_weights(net, target::builtin_target("ternary-asic").format, q);
  for (std::size_t l = 0; l < net.layers.size(); ++l) {
    double mean = 0;
    for (float w : net.layers[l].w) mean += std::fabs(w);
    mean /= static_cast<double>(net.layers[l].w.size());
    for (float s : q[l].scales) EXPECT_NEAR(s, mean, 1e-6 * mean);
    EXPECT_EQ(q[l].reference, q[l].scales[0]);
  }
  quantize_weights(net, target::builtin_target("int4-fpga").format, q);
  for (std::size_t l = 0; l < net.layers.size(); ++l) {
    const Layer& layer = net.layers[l];
    float reference = 0;
    for (int n = 0; n < layer.out; ++n) {
      float amax = 0;
      for (int k = 0; k < layer.in; ++k) amax = std::max(amax, std::fabs(layer.w[static_cast<std::size_t>(n) * layer.in + k]));
      EXPECT_FLOAT_EQ(q[l].scales[n], amax / 7) << "row " << n;
      reference = std::max(reference, q[l].scales[n]);
      // INT4 never clips: the largest weight maps to +-7 exactly.
      for (int k = 0; k < layer.in; ++k) EXPECT_EQ(q[l].ste_mask[static_cast<std::size_t>(n) * layer.in + k], 1.0f);
    }
    EXPECT_EQ(q[l].reference, reference);
  }
}

}  // namespace
}  // namespace qathw::training

// Denormal arithmetic is many times slower on x86 and once halved the trainer's speed late in a
// run: set_threads makes the calling thread and every pool thread flush denormals to zero.
TEST(SetThreads, FlushesDenormalsInEveryThread) {
#if defined(__SSE__)
  qathw::kernels::set_threads(2);
  int flushed = 0, threads = 0;
#pragma omp parallel num_threads(2) reduction(+ : flushed, threads)
  {
    volatile float tiny = 1e-30f;
    volatile float product = tiny * 1e-10f;  // 1e-40: a denormal unless flushed
    flushed += product == 0.0f;
    threads += 1;
  }
  EXPECT_EQ(flushed, threads);
  volatile float denormal_input = 1e-40f;  // read as zero (DAZ) in this thread too
  EXPECT_EQ(denormal_input * 1.0f, 0.0f);
#else
  GTEST_SKIP() << "flush-to-zero is set on x86 only";
#endif
}

// The GEMMs share fixed tiles among the threads, so their results do not depend on the thread
// count: the trainer may change the count mid-run (--threads auto) without changing a bit.
TEST(DenseGemms, ResultsDoNotDependOnTheThreadCount) {
  const std::uint32_t seed = 20261129;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int m = 300, n = 270, k = 333;  // several tiles each way, and partial ones
  std::vector<float> a(static_cast<std::size_t>(m) * k), b(static_cast<std::size_t>(n) * k),
      bt(static_cast<std::size_t>(m) * n), c(static_cast<std::size_t>(k) * n);
  for (auto* v : {&a, &b, &bt, &c})
    for (float& x : *v) x = u(rng);
  auto run = [&](int threads) {
    qathw::kernels::set_threads(threads);
    std::vector<float> abt(static_cast<std::size_t>(m) * n), atb(static_cast<std::size_t>(n) * k),
        ab(static_cast<std::size_t>(m) * k);
    qathw::kernels::gemm_abt(a.data(), b.data(), m, n, k, abt.data());  // [m x k] [n x k]^T
    qathw::kernels::gemm_atb(bt.data(), a.data(), m, n, k, atb.data());  // [m x n]^T [m x k]
    qathw::kernels::gemm_ab(bt.data(), b.data(), m, n, k, ab.data());    // [m x n] [n x k]
    return std::vector<std::vector<float>>{abt, atb, ab};
  };
  const auto one = run(1);
  for (int threads : {2, 3, 7}) {
    const auto many = run(threads);
    for (std::size_t g = 0; g < one.size(); ++g)
      EXPECT_EQ(0, std::memcmp(one[g].data(), many[g].data(), one[g].size() * sizeof(float)))
          << "GEMM " << g << " differs at " << threads << " threads (seed " << seed << ")";
  }
  qathw::kernels::set_threads(1);
  // And they compute the product: one element of each against a double-precision sum.
  double abt = 0, atb = 0, ab = 0;
  for (int i = 0; i < k; ++i) abt += static_cast<double>(a[5 * k + i]) * b[7 * k + i];
  for (int i = 0; i < m; ++i) atb += static_cast<double>(bt[i * n + 9]) * a[i * k + 11];
  for (int i = 0; i < n; ++i) ab += static_cast<double>(bt[13 * n + i]) * b[i * k + 17];
  EXPECT_NEAR(one[0][5 * n + 7], abt, 1e-3);
  EXPECT_NEAR(one[1][9 * k + 11], atb, 1e-3);
  EXPECT_NEAR(one[2][13 * k + 17], ab, 1e-3);
}

// a^T b and a b of random operands of one shape: the product on every element (against
// double-precision sums), and the same bits run inside a parallel region (in the calling thread)
// as shared among the threads.
static void check_atb_and_ab(int m, int n, int k, std::mt19937& rng, std::uint32_t seed) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> a(static_cast<std::size_t>(m) * n), b(static_cast<std::size_t>(m) * k),
      w(static_cast<std::size_t>(n) * k);
  for (auto* v : {&a, &b, &w})
    for (float& x : *v) x = u(rng);
  std::vector<float> atb(static_cast<std::size_t>(n) * k), ab(static_cast<std::size_t>(m) * k);
  qathw::kernels::gemm_atb(a.data(), b.data(), m, n, k, atb.data());
  qathw::kernels::gemm_ab(a.data(), w.data(), m, n, k, ab.data());
  std::vector<float> atb_inside(atb.size()), ab_inside(ab.size());
#pragma omp parallel num_threads(2)
#pragma omp single
  {
    qathw::kernels::gemm_atb(a.data(), b.data(), m, n, k, atb_inside.data());
    qathw::kernels::gemm_ab(a.data(), w.data(), m, n, k, ab_inside.data());
  }
  const std::string where = "m " + std::to_string(m) + ", n " + std::to_string(n) + ", k " + std::to_string(k) +
                            " (seed " + std::to_string(seed) + ")";
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < k; ++j) {
      double sum = 0;
      for (int r = 0; r < m; ++r) sum += static_cast<double>(a[r * n + i]) * b[r * k + j];
      ASSERT_NEAR(atb[i * k + j], sum, 1e-4 * m) << "a^T b [" << i << "][" << j << "], " << where;
    }
  for (int r = 0; r < m; ++r)
    for (int j = 0; j < k; ++j) {
      double sum = 0;
      for (int i = 0; i < n; ++i) sum += static_cast<double>(a[r * n + i]) * w[i * k + j];
      ASSERT_NEAR(ab[r * k + j], sum, 1e-4 * n) << "a b [" << r << "][" << j << "], " << where;
    }
  EXPECT_EQ(0, std::memcmp(atb.data(), atb_inside.data(), atb.size() * sizeof(float))) << where;
  EXPECT_EQ(0, std::memcmp(ab.data(), ab_inside.data(), ab.size() * sizeof(float))) << where;
}

// A convolution's GEMMs are narrow (a group's output channels on one side): the kernel gradient
// a^T b and the patches' gradient a b, run per chunk inside a parallel region. Every shape around
// the vector widths and tiles.
TEST(DenseGemms, NarrowConvolutionShapes) {
  const std::uint32_t seed = 20261129;
  std::mt19937 rng(seed);
  qathw::kernels::set_threads(2);
  for (int m : {1, 7, 13, 600})  // 600: shared among the threads outside a parallel region
    for (int n : {1, 5, 16, 17, 32, 33, 64})
      for (int k : {1, 7, 25, 64, 403}) check_atb_and_ab(m, n, k, rng, seed);
  qathw::kernels::set_threads(1);
}

// The MLP's and the transformer's gradients: both sides wide (panels of three or four vectors of
// c's columns, tiles of eight or six rows), around every panel and tile edge.
TEST(DenseGemms, WideShapesGiveTheProduct) {
  const std::uint32_t seed = 20261130;
  std::mt19937 rng(seed);
  qathw::kernels::set_threads(2);
  for (int m : {1, 9, 131})
    for (int n : {65, 97, 200})
      for (int k : {1, 17, 48, 64, 100, 785}) check_atb_and_ab(m, n, k, rng, seed);
  qathw::kernels::set_threads(1);
}

// The layer epilogue (vectorised where the processor allows) equals arith's rule element by
// element, accumulator_of_exact_sum then epilogue, for both rounding and overflow modes, every
// accumulator width, ReLU or none, all three accumulator types: random accumulators, the type's
// extremes, exact ties of every shift, and pairs with every shift from 0 to 62.
TEST(AccumulatorEpilogue, EqualsTheArithRuleOnEveryElement) {
  namespace arith = qathw::arith;
  const std::uint64_t seed = qathw::test::test_seed();
  std::mt19937_64 rng(seed);
  const int rows = 9, cols = 37;  // a tail of 5 after the vectors of 8 and 16
  const std::size_t size = static_cast<std::size_t>(rows) * cols;
  // The pairs: shift 0 and large shifts with small and large mantissas, tie-making mantissa 1.
  std::vector<arith::FixedPoint> pairs(cols);
  for (int n = 0; n < cols; ++n) {
    const int shift = n < 2 ? 0 : (n < 5 ? 62 - n : static_cast<int>(rng() % 63));
    const std::int64_t mantissa = n % 4 == 0 ? 1 : static_cast<std::int64_t>(rng() % ((std::uint64_t{1} << 31) - 1)) + 1;
    pairs[n] = {mantissa, shift};
  }
  // Accumulators by kind: random in the type's exact range, extremes, and a tie of column n's
  // shift (mantissa 1: an odd or even multiple of 2^shift plus half of it, of either sign).
  auto accumulator = [&](int r, int n, std::int64_t lo, std::int64_t hi) -> std::int64_t {
    const int shift = pairs[n].shift;
    switch ((r + n) % 4) {
      case 0:
        return r % 2 ? lo : hi;
      case 1:
        if (pairs[n].mantissa == 1 && shift > 0 && shift < 30) {
          const std::int64_t t = (static_cast<std::int64_t>(rng() % 7) << shift) + (std::int64_t{1} << (shift - 1));
          return r % 2 ? -t : t;
        }
        [[fallthrough]];
      default:
        return lo + static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(hi - lo + 1));
    }
  };
  for (const auto rounding : {arith::Rounding::HalfAwayFromZero, arith::Rounding::HalfEven})
    for (const auto overflow : {arith::Overflow::Saturate, arith::Overflow::Wrap})
      for (int acc_bits : {8, 16, 24, 32})
        for (bool relu : {false, true}) {
          arith::Format f;
          f.rounding = rounding;
          f.overflow = overflow;
          f.acc_bits = acc_bits;
          const std::string where = std::string(rounding == arith::Rounding::HalfEven ? "half even" : "half away") +
                                    (overflow == arith::Overflow::Wrap ? ", wrap, " : ", saturate, ") +
                                    std::to_string(acc_bits) + " bits" + (relu ? ", relu" : "") + ", " +
                                    qathw::test::seed_note(seed);
          auto check = [&](const auto& acc, const char* type) {
            std::vector<std::int32_t> z(size, 0);
            qathw::kernels::accumulator_epilogue(acc.data(), rows, cols, pairs.data(), relu, f, z.data());
            for (std::size_t i = 0; i < size; ++i) {
              const std::int64_t a = arith::accumulator_of_exact_sum(static_cast<std::int64_t>(acc[i]), f);
              ASSERT_EQ(z[i], arith::epilogue(a, pairs[i % cols], relu, f))
                  << type << " accumulator " << static_cast<std::int64_t>(acc[i]) << ", pair (" << pairs[i % cols].mantissa
                  << ", " << pairs[i % cols].shift << "), " << where;
            }
          };
          // Float: exact integers below 2^24; int32: any; int64: sums up to 2^40 (wrapped or
          // saturated by the rule).
          std::vector<float> af(size);
          std::vector<std::int32_t> a32(size);
          std::vector<std::int64_t> a64(size);
          for (std::size_t i = 0; i < size; ++i) {
            const int r = static_cast<int>(i / cols), n = static_cast<int>(i % cols);
            af[i] = static_cast<float>(accumulator(r, n, -(1 << 24), 1 << 24));
            a32[i] = static_cast<std::int32_t>(accumulator(r, n, INT32_MIN, INT32_MAX));
            a64[i] = accumulator(r, n, -(std::int64_t{1} << 40), std::int64_t{1} << 40);
          }
          check(af, "float");
          check(a32, "int32");
          check(a64, "int64");
        }
}

// The int8 GEMM on packed columns equals the integer product (codes - 128) . weights^T over
// row counts that end in partial tiles, column counts around the 16 lanes of a vector and the
// 4 blocks of a tile, depths that are and are not multiples of 4, padded rows of a and c.
TEST(Int8Gemm, PackedColumnsGiveTheExactProduct) {
  if (!qathw::kernels::int8_gemm_available()) GTEST_SKIP() << "no AVX-512 VNNI on this processor";
  const std::uint64_t seed = qathw::test::test_seed();
  std::mt19937_64 rng(seed);
  for (int m : {1, 7, 30})
    for (int n : {1, 10, 16, 17, 32, 50, 64, 70})
      for (int k : {1, 3, 25, 400}) {
        const int lda = qathw::kernels::padded_depth(k) + 8, ldc = n + 5;
        std::vector<std::uint8_t> a(static_cast<std::size_t>(m) * lda);
        for (auto& v : a) v = static_cast<std::uint8_t>(rng() % 256);  // the padding too: it must not count
        std::vector<float> w(static_cast<std::size_t>(n) * k);
        for (float& v : w) v = static_cast<float>(static_cast<int>(rng() % 15) - 7);
        std::vector<std::int8_t> packed(qathw::kernels::packed_columns_bytes(n, k));
        std::vector<std::int32_t> offsets(n), c(static_cast<std::size_t>(m) * ldc, -1);
        qathw::kernels::pack_int8_columns(w.data(), n, k, packed.data(), offsets.data());
        qathw::kernels::gemm_u8s8_packed(a.data(), lda, packed.data(), offsets.data(), m, n, k, c.data(), ldc);
        for (int r = 0; r < m; ++r)
          for (int j = 0; j < ldc; ++j) {
            std::int64_t want = -1;  // columns past n are not written
            if (j < n) {
              want = 0;
              for (int e = 0; e < k; ++e)
                want += (static_cast<std::int64_t>(a[static_cast<std::size_t>(r) * lda + e]) - 128) *
                        static_cast<std::int64_t>(w[static_cast<std::size_t>(j) * k + e]);
            }
            ASSERT_EQ(c[static_cast<std::size_t>(r) * ldc + j], want)
                << "m " << m << " n " << n << " k " << k << " row " << r << " column " << j << ", "
                << qathw::test::seed_note(seed);
          }
      }
}

// The vectorised accumulation equals arith::dot, the array's rule, for every kind of format:
// saturating accumulators that do saturate (rows of one sign), wrapping ones, activations up to
// 16 bits (partial sums beyond float's 2^24, formed in exact pieces; on the int8 GEMM split into
// two bytes), any adder-tree width (chunks not a multiple of the GEMM's groups of 4). Both paths:
// the int8 GEMM's chunked kernel where the processor has it, and the float pieces.
TEST(AccumulateExact, EqualsTheArraysChunkedDotProduct) {
  const std::uint64_t seed = 1129;
  std::mt19937_64 rng(seed);
  const int rows = 11, out = 37, in = 300;
  for (const bool int8 : {true, false})
  for (const auto weights : {qathw::arith::WeightFormat::Ternary, qathw::arith::WeightFormat::Int4})
    for (int act_bits : {8, 12, 16})
      for (int acc_bits : {10, 16, 24, 32})
        for (const auto overflow : {qathw::arith::Overflow::Saturate, qathw::arith::Overflow::Wrap})
          for (int lanes : {1, 3, 16, 64, 200}) {
            qathw::arith::Format f;
            f.weights = weights;
            f.act_bits = act_bits;
            f.acc_bits = acc_bits;
            f.overflow = overflow;
            const std::int64_t qa = qathw::arith::act_qmax(act_bits), qw = qathw::arith::weight_qmax(weights);
            std::vector<float> x(static_cast<std::size_t>(rows) * in), w(static_cast<std::size_t>(out) * in);
            for (std::size_t i = 0; i < x.size(); ++i)
              x[i] = static_cast<float>(i % 5 == 0 ? 0 : static_cast<std::int64_t>(rng() % (2 * qa + 1)) - qa);
            for (int n = 0; n < out; ++n)
              for (int k = 0; k < in; ++k) {
                std::int64_t v = static_cast<std::int64_t>(rng() % (2 * qw + 1)) - qw;
                if (n % 3 == 0) v = qw;                   // with row 0's all-positive codes: saturates
                if (n % 3 == 1 && k >= in / 2) v = -qw;  // then back
                w[static_cast<std::size_t>(n) * in + k] = static_cast<float>(v);
              }
            for (int k = 0; k < in; ++k) x[k] = static_cast<float>(qa);
            std::vector<std::int64_t> acc(static_cast<std::size_t>(rows) * out);
            qathw::kernels::set_int8_gemm_enabled(int8);
            qathw::kernels::accumulate_exact(x.data(), w.data(), rows, out, in, lanes, f, acc.data());
            qathw::kernels::set_int8_gemm_enabled(true);
            std::vector<std::int64_t> xi(in), wi(in);
            for (int r = 0; r < rows; ++r)
              for (int n = 0; n < out; ++n) {
                for (int k = 0; k < in; ++k) {
                  xi[k] = static_cast<std::int64_t>(x[static_cast<std::size_t>(r) * in + k]);
                  wi[k] = static_cast<std::int64_t>(w[static_cast<std::size_t>(n) * in + k]);
                }
                const std::int64_t want = qathw::arith::dot(xi.data(), wi.data(), in, lanes, f);
                ASSERT_EQ(acc[static_cast<std::size_t>(r) * out + n], want)
                    << "row " << r << " channel " << n << ", act " << act_bits << " bits, acc " << acc_bits
                    << " bits, " << (overflow == qathw::arith::Overflow::Saturate ? "saturate" : "wrap") << ", lanes "
                    << lanes << ", " << (weights == qathw::arith::WeightFormat::Ternary ? "ternary" : "int4")
                    << (int8 ? ", int8 GEMM" : ", float pieces") << " (seed " << seed << ")";
              }
          }
}
