// The GPU trainer of model files against SpecNet, step by step: for the same parameters and
// batch, every layer's integers of the QAT forward and the logits are SpecNet::forward_quantized's
// bit for bit; the gradients (kernels and LSQ steps) are backward_quantized's up to summation
// order; the FP32 twin's logits and gradients equal SpecNet::forward/backward's up to rounding.
// Two steps each, the second from the weights and steps the GPU's first update left. lenet, an
// odd-shaped CNN (strides, paddings, a grouped convolution, padded pools), the same with static
// quantizers, and resnet-tiny (residual adds, static quantizers), on both built-in targets.
// Without a CUDA device every case is skipped with the reason.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "../../kernels/cuda/gradient_sources.h"
#include "../../training/src/cuda_model_trainer.h"
#include "../arith/test_support.h"
#include "../model/random_model.h"
#include "qathw/kernels/conv.h"
#include "qathw/kernels/cuda.h"
#include "qathw/kernels/dense.h"
#include "qathw/kernels/device.h"
#include "qathw/training/network.h"
#include "qathw/training/spec_net.h"

namespace qathw::training {
namespace {

#define SKIP_WITHOUT_DEVICE()                                                   \
  do {                                                                          \
    const kernels::CudaProbe probe_ = kernels::probe_cuda();                    \
    if (!probe_.available) GTEST_SKIP() << "no CUDA device: " << probe_.reason; \
  } while (0)

// Gradients are float sums of the same products in another order (tiles and row chunks on the
// GPU, Eigen's blocking on the CPU; the code scale applied to the output gradients rather than to
// the codes). Each differs from the exact sum by at most about n eps sum|terms| for n terms
// (eps = 2^-24): with n up to batch x pixels = 16 x 784 and terms of mixed signs, a relative
// error of a few 1e-4 of the largest gradient, measured against the tensor's largest magnitude
// (elements near zero cancel and have no relative accuracy). An LSQ step gradient is a double sum
// of float terms, each carrying its input gradient's difference (a few eps times the GEMM depth),
// and its terms cancel (rounding residues of both signs): held to the same bound, relative to
// its own magnitude.
constexpr float kGradientTolerance = 2e-3f;
constexpr float kStepGradientTolerance = 2e-3f;

void expect_close(const std::vector<float>& host, const std::vector<float>& device, float tol, const std::string& what) {
  ASSERT_EQ(host.size(), device.size()) << what;
  float scale = 1e-30f;
  for (float x : host) scale = std::max(scale, std::fabs(x));
  std::size_t bad = 0;
  for (std::size_t i = 0; i < host.size(); ++i)
    if (!(std::fabs(host[i] - device[i]) <= tol * scale) && ++bad <= 5)
      ADD_FAILURE() << what << "[" << i << "]: host " << host[i] << ", device " << device[i] << " (largest "
                    << scale << ")";
  EXPECT_EQ(bad, 0u) << what;
}

template <typename T>
void expect_same(const std::vector<T>& host, const std::vector<T>& device, const std::string& what) {
  ASSERT_EQ(host.size(), device.size()) << what;
  std::size_t bad = 0;
  for (std::size_t i = 0; i < host.size(); ++i)
    if (std::memcmp(&host[i], &device[i], sizeof(T)) != 0 && ++bad <= 5)
      ADD_FAILURE() << what << "[" << i << "]: host " << host[i] << ", device " << device[i];
  EXPECT_EQ(bad, 0u) << what;
}

target::TargetSpec builtin(const std::string& name) {
  return target::resolve_target(std::string(QATHW_BUILTIN_TARGETS_DIR) + "/" + name + ".toml");
}

// 28x28 images of 10 classes: random, one all zero, one at full scale.
Dataset images(std::size_t count, std::mt19937_64& rng) {
  Dataset d;
  d.count = count;
  d.rows = 28, d.cols = 28;
  d.features = 784;
  d.classes = 10;
  d.pixels.resize(count * d.features);
  d.labels.resize(count);
  for (auto& p : d.pixels) p = static_cast<std::uint8_t>(rng() % 256);
  for (auto& l : d.labels) l = static_cast<std::uint8_t>(rng() % 10);
  std::fill_n(d.pixels.begin(), d.features, 0);
  std::fill_n(d.pixels.begin() + d.features, d.features, 255);
  return d;
}

struct Case {
  const char* model;
  bool static_target;  // every quantizer static (else only where adds need them)
};

class ModelSteps : public ::testing::TestWithParam<const char*> {};

TEST_P(ModelSteps, StepsMatchSpecNet) {
  SKIP_WITHOUT_DEVICE();
  const std::uint64_t seed = test::test_seed() + 91;
  SCOPED_TRACE(test::seed_note(seed));
  const target::TargetSpec t = builtin(GetParam());
  std::mt19937_64 rng(seed);
  const Dataset data = images(48, rng);
  const int batch = 16, lanes = t.array.lanes;
  for (const Case& c : {Case{"lenet", false}, Case{"odd-shapes", false}, Case{"odd-shapes", true},
                        Case{"resnet-tiny", false}}) {
    arith::Format f = t.format;
    if (c.static_target) f.act_quantizer = arith::ActQuantizer::StaticPerTensor;
    for (bool quantized : {true, false}) {
      SCOPED_TRACE(std::string(c.model) + (c.static_target ? " (static target)" : "") + (quantized ? ", QAT" : ", FP32"));
      SpecNet cpu(test::model_spec(c.model), seed);
      // The trainer's parameters: the kernels, then (QAT) each static quantizer's log step,
      // calibrated on the CPU as a run's start does.
      std::vector<std::vector<float>> values;
      for (const std::vector<float>& w : cpu.weights())
        if (!w.empty()) values.push_back(w);
      const std::size_t kernels = values.size();
      std::vector<std::size_t> static_layers;
      if (quantized) {
        const std::vector<bool> fixed = cpu.static_quantizers(f);
        for (std::size_t i = 0; i < fixed.size(); ++i)
          if (fixed[i]) static_layers.push_back(i);
        if (!static_layers.empty()) {
          cpu.quantize_kernels(f);
          cpu.calibrate_static(data.pixels.data(), 32, f, lanes, 1.0);
          for (std::size_t i : static_layers) values.push_back({std::log(cpu.steps()[i])});
        }
      }
      std::vector<std::vector<float>*> parameters;
      std::vector<std::vector<float>> m, v;
      for (std::vector<float>& p : values) {
        parameters.push_back(&p);
        m.emplace_back(p.size(), 0.0f);
        v.emplace_back(p.size(), 0.0f);
      }
      CudaModelTrainer gpu(cpu, parameters, m, v, f, lanes, batch, data, quantized, true);
      std::vector<std::uint32_t> order(data.count);
      std::iota(order.begin(), order.end(), 0u);
      gpu.set_order(order);
      for (int step = 0; step < 2; ++step) {
        SCOPED_TRACE("step " + std::to_string(step));
        // The CPU's step on the parameters the GPU holds now.
        std::size_t k = 0;
        for (std::vector<float>& w : cpu.weights())
          if (!w.empty()) w = values[k++];
        for (std::size_t j = 0; j < static_layers.size(); ++j) cpu.steps()[static_layers[j]] = std::exp(values[kernels + j][0]);
        const std::uint8_t* px = data.pixels.data() + static_cast<std::size_t>(step) * batch * data.features;
        std::vector<float> inputs(static_cast<std::size_t>(batch) * data.features);
        for (std::size_t e = 0; e < inputs.size(); ++e) inputs[e] = static_cast<float>(px[e]) / 255.0f;
        if (quantized) cpu.quantize_kernels(f);
        const std::vector<float> logits =
            quantized ? cpu.forward_quantized(px, batch, f, lanes) : cpu.forward(inputs.data(), batch);
        std::vector<float> dlogits;
        int correct = 0;
        const float loss = softmax_cross_entropy(logits, data.labels.data() + step * batch, batch, 10, dlogits, correct);
        std::vector<std::vector<float>> grads;
        if (quantized) cpu.backward_quantized(dlogits, true, grads);
        else cpu.backward(dlogits, grads);

        kernels::AdamWParams p;
        p.lr = 1e-3f;
        p.weight_decay = 0.01f;
        p.step = step + 1;
        gpu.step(static_cast<std::size_t>(step) * batch, p);
        const CudaModelTrainer::Totals totals = gpu.take_totals();
        const CudaModelTrainer::Inspection got = gpu.inspect();
        if (quantized) {
          ASSERT_EQ(got.integers.size(), cpu.spec().layers.size());
          for (std::size_t i = 0; i < got.integers.size(); ++i)
            expect_same(cpu.integers(i), got.integers[i], "layer " + std::to_string(i) + " integers");
          expect_same(logits, got.logits, "logits");
          EXPECT_EQ(totals.correct, correct);
          EXPECT_NEAR(totals.loss_sum, loss, 1e-5 * std::max(1.0f, loss));
        } else {
          expect_close(logits, got.logits, 1e-4f, "logits");
          EXPECT_NEAR(totals.loss_sum, loss, 1e-4 * std::max(1.0f, loss));
        }
        ASSERT_EQ(got.gradients.size(), kernels + static_layers.size());
        k = 0;
        for (std::size_t i = 0; i < grads.size(); ++i)
          if (!cpu.weights()[i].empty())
            expect_close(grads[i], got.gradients[k++], kGradientTolerance, "gradient of layer " + std::to_string(i));
        for (std::size_t j = 0; j < static_layers.size(); ++j)
          expect_close({cpu.step_gradients()[static_layers[j]]}, {got.step_gradients[j]}, kStepGradientTolerance,
                       "step gradient of layer " + std::to_string(static_layers[j]));
        gpu.download(parameters, m, v);  // the next step starts from the GPU's update
      }
    }
  }
}

// An impossible batch is refused with a message, not a crash.
TEST_P(ModelSteps, RefusesWhatDoesNotFit) {
  SKIP_WITHOUT_DEVICE();
  const target::TargetSpec t = builtin(GetParam());
  std::mt19937_64 rng(1);
  const Dataset data = images(4, rng);
  SpecNet net(test::model_spec("lenet"), 1);
  std::vector<std::vector<float>> values;
  for (const std::vector<float>& w : net.weights())
    if (!w.empty()) values.push_back(w);
  std::vector<std::vector<float>*> parameters;
  std::vector<std::vector<float>> m, v;
  for (std::vector<float>& p : values) {
    parameters.push_back(&p);
    m.emplace_back(p.size(), 0.0f);
    v.emplace_back(p.size(), 0.0f);
  }
  try {
    CudaModelTrainer gpu(net, parameters, m, v, t.format, t.array.lanes, 1 << 22, data, true, false);
    FAIL() << "a batch of 4M lenet samples fitted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("device memory"), std::string::npos) << e.what();
  }
}

// The trainer's own kernels one by one, where a step's failure needs narrowing down: patches
// and their transpose (bitwise: the same additions in the same order as col2im_add), the max
// pool's argmax, the split A^T B (to float rounding).
TEST(SpecTrainKernels, PatchesAndTheirTranspose) {
  SKIP_WITHOUT_DEVICE();
  const std::uint64_t seed = test::test_seed() + 92;
  SCOPED_TRACE(test::seed_note(seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  arith::Conv2dShape s;
  s.in_h = 9, s.in_w = 7, s.in_c = 6, s.out_c = 4, s.groups = 2;
  s.window = {3, 2, 2, 1, 1, 1};
  const int samples = 3, pixels = s.out_h() * s.out_w(), patch = s.patch();
  const std::size_t map = static_cast<std::size_t>(s.in_h) * s.in_w * s.in_c;
  std::vector<float> maps(samples * map), dmap(samples * map);
  for (float& x : maps) x = normal(rng);
  for (float& x : dmap) x = normal(rng);
  kernels::cuda::DeviceArray<float> d_maps, d_patches(static_cast<std::size_t>(samples) * pixels * patch), d_dmap;
  d_maps.assign(maps);
  d_dmap.assign(dmap);
  for (int g = 0; g < s.groups; ++g) {
    std::vector<float> want(static_cast<std::size_t>(samples) * pixels * patch);
    for (int b = 0; b < samples; ++b) kernels::im2col(maps.data() + b * map, s, g, want.data() + static_cast<std::size_t>(b) * pixels * patch);
    kernels::cuda::conv_patches(d_maps.data(), samples, s, g, d_patches.data());
    expect_same(want, d_patches.to_host(), "patches of group " + std::to_string(g));
    // The transpose of random patch gradients, added into the map's gradient.
    std::vector<float> dcols(want.size());
    for (float& x : dcols) x = normal(rng);
    for (int b = 0; b < samples; ++b) kernels::col2im_add(dcols.data() + static_cast<std::size_t>(b) * pixels * patch, s, g, dmap.data() + b * map);
    kernels::cuda::DeviceArray<float> d_dcols;
    d_dcols.assign(dcols);
    kernels::cuda::conv_input_gradient(d_dcols.data(), samples, s, g, true, d_dmap.data());
    expect_same(dmap, d_dmap.to_host(), "input gradient after group " + std::to_string(g));
  }
}

TEST(SpecTrainKernels, MaxPoolArgmaxAndSplitProduct) {
  SKIP_WITHOUT_DEVICE();
  const std::uint64_t seed = test::test_seed() + 93;
  SCOPED_TRACE(test::seed_note(seed));
  std::mt19937_64 rng(seed);
  // A padded, overlapping pool over small integers (many ties: the first maximum must win).
  arith::Conv2dShape s;
  s.in_h = 8, s.in_w = 9, s.in_c = 5, s.out_c = 5;
  s.window = {3, 3, 2, 2, 1, 1};
  const int samples = 4;
  const std::size_t map = static_cast<std::size_t>(s.in_h) * s.in_w * s.in_c;
  const std::size_t per_out = static_cast<std::size_t>(s.out_h()) * s.out_w() * s.in_c;
  std::vector<std::int32_t> maps(samples * map);
  for (auto& x : maps) x = static_cast<std::int32_t>(rng() % 7) - 3;
  std::vector<std::int32_t> want_z(samples * per_out), want_arg(samples * per_out);
  for (int b = 0; b < samples; ++b)
    for (int oy = 0; oy < s.out_h(); ++oy)
      for (int ox = 0; ox < s.out_w(); ++ox)
        for (int c = 0; c < s.in_c; ++c) {
          const std::size_t at = b * per_out + (static_cast<std::size_t>(oy) * s.out_w() + ox) * s.in_c + c;
          long best = -1;
          arith::for_each_window_index(s.in_h, s.in_w, s.in_c, s.window, oy, ox, c, [&](long k) {
            if (best < 0 || maps[b * map + k] > maps[b * map + best]) best = k;
          });
          want_z[at] = maps[b * map + best];
          want_arg[at] = static_cast<std::int32_t>(best);
        }
  kernels::cuda::DeviceArray<std::int32_t> d_maps, d_z(want_z.size()), d_arg(want_arg.size());
  d_maps.assign(maps);
  kernels::cuda::max_pool(d_maps.data(), samples, s, d_z.data(), d_arg.data());
  expect_same(want_z, d_z.to_host(), "max pool");
  expect_same(want_arg, d_arg.to_host(), "max pool argmax");

  // A^T B over three chunks of rows and a ragged tail.
  const int m = 2 * kernels::cuda::kSplitRows + 77, n = 17, k = 45;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> a(static_cast<std::size_t>(m) * n), b(static_cast<std::size_t>(m) * k), want(n * k);
  for (float& x : a) x = normal(rng);
  for (float& x : b) x = normal(rng);
  kernels::gemm_atb(a.data(), b.data(), m, n, k, want.data());
  kernels::cuda::DeviceArray<float> d_a, d_b, d_c(want.size()), d_partials(3 * want.size());
  d_a.assign(a);
  d_b.assign(b);
  kernels::cuda::gemm_atb_split(d_a.data(), d_b.data(), m, n, k, d_partials.data(), d_c.data());
  // Sums of m products of unit normals: a few eps sqrt(m) apart.
  expect_close(want, d_c.to_host(), 1e-4f, "split A^T B");
}

INSTANTIATE_TEST_SUITE_P(Targets, ModelSteps, ::testing::Values("ternary-asic", "int4-fpga"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string s = info.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

}  // namespace
}  // namespace qathw::training
