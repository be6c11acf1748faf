// Host logic of the GPU trainer of model files, tested without a GPU: the gathers of its backward
// kernels are the transposes of arith's patch and window walks (the same elements, in the order
// the CPU's scatters add them), and the layout it reads from a model spec.
#include <random>
#include <set>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "../../kernels/cuda/gradient_sources.h"
#include "../../training/src/cuda_model_trainer.h"
#include "../arith/test_support.h"
#include "qathw/model/model_spec.h"

namespace qathw::kernels::cuda {
namespace {

using Reads = std::vector<std::vector<std::pair<int, int>>>;  // per map element: (pixel, k) in order

// What the forward pass's walk says: for each output pixel in order, each patch element inside
// the map.
Reads patch_reads_by_walk(const arith::Conv2dShape& s) {
  Reads r(static_cast<std::size_t>(s.in_h) * s.in_w * s.in_c);
  for (int oy = 0; oy < s.out_h(); ++oy)
    for (int ox = 0; ox < s.out_w(); ++ox)
      for (int g = 0; g < s.groups; ++g)
        arith::for_each_patch_element(s, oy, ox, g, [&](int k, long at) {
          if (at >= 0) r[static_cast<std::size_t>(at)].push_back({oy * s.out_w() + ox, k});
        });
  return r;
}

Reads patch_reads_by_gather(const arith::Conv2dShape& s) {
  Reads r(static_cast<std::size_t>(s.in_h) * s.in_w * s.in_c);
  for (int y = 0; y < s.in_h; ++y)
    for (int x = 0; x < s.in_w; ++x)
      for (int c = 0; c < s.in_c; ++c)
        for_each_patch_reader(s, y, x, c, [&](int pixel, int k) {
          r[(static_cast<std::size_t>(y) * s.in_w + x) * s.in_c + c].push_back({pixel, k});
        });
  return r;
}

TEST(GradientSources, PatchReadersAreThePatchWalkTransposed) {
  const std::uint64_t seed = test::test_seed() + 5;
  SCOPED_TRACE(test::seed_note(seed));
  std::mt19937_64 rng(seed);
  const auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (int trial = 0; trial < 400; ++trial) {
    arith::Conv2dShape s;
    s.groups = pick(1, 3);
    s.in_c = s.groups * pick(1, 3);
    s.out_c = s.groups * pick(1, 2);
    s.window.kernel_h = pick(1, 5);
    s.window.kernel_w = pick(1, 5);
    s.window.stride_h = pick(1, 3);
    s.window.stride_w = pick(1, 3);
    s.window.pad_h = pick(0, 2);
    s.window.pad_w = pick(0, 2);
    s.in_h = std::max(pick(1, 9), s.window.kernel_h - 2 * s.window.pad_h);
    s.in_w = std::max(pick(1, 9), s.window.kernel_w - 2 * s.window.pad_w);
    SCOPED_TRACE("trial " + std::to_string(trial));
    ASSERT_EQ(patch_reads_by_walk(s), patch_reads_by_gather(s));
  }
}

TEST(GradientSources, WindowReadersAreTheWindowWalkTransposed) {
  const std::uint64_t seed = test::test_seed() + 6;
  SCOPED_TRACE(test::seed_note(seed));
  std::mt19937_64 rng(seed);
  const auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (int trial = 0; trial < 400; ++trial) {
    arith::Window w;
    w.kernel_h = pick(1, 4);
    w.kernel_w = pick(1, 4);
    w.stride_h = pick(1, 3);
    w.stride_w = pick(1, 3);
    w.pad_h = pick(0, w.kernel_h - 1);
    w.pad_w = pick(0, w.kernel_w - 1);
    const int in_h = std::max(pick(1, 9), w.kernel_h), in_w = std::max(pick(1, 9), w.kernel_w);
    const int out_h = w.out_h(in_h), out_w = w.out_w(in_w);
    std::vector<std::vector<int>> walk(static_cast<std::size_t>(in_h) * in_w), gather(walk.size());
    for (int oy = 0; oy < out_h; ++oy)
      for (int ox = 0; ox < out_w; ++ox)
        arith::for_each_window_index(in_h, in_w, 1, w, oy, ox, 0,
                                     [&](long at) { walk[static_cast<std::size_t>(at)].push_back(oy * out_w + ox); });
    for (int y = 0; y < in_h; ++y)
      for (int x = 0; x < in_w; ++x)
        for_each_window_reader(w, out_h, out_w, y, x,
                               [&](int pixel) { gather[static_cast<std::size_t>(y) * in_w + x].push_back(pixel); });
    SCOPED_TRACE("trial " + std::to_string(trial));
    ASSERT_EQ(walk, gather);
  }
}

TEST(GradientSources, SplitChunksCoverTheRows) {
  EXPECT_EQ(split_chunks(1), 1);
  EXPECT_EQ(split_chunks(kSplitRows), 1);
  EXPECT_EQ(split_chunks(kSplitRows + 1), 2);
  EXPECT_EQ(split_chunks(256L * 784), (256 * 784 + kSplitRows - 1) / kSplitRows);
}

}  // namespace
}  // namespace qathw::kernels::cuda

namespace qathw::training {
namespace {

TEST(SpecGraph, ResolvesSourcesAndResidualsByName) {
  const model::ModelSpec lenet = model::resolve_model("lenet", 10);
  const SpecGraph g = spec_graph(lenet);
  for (std::size_t i = 0; i < lenet.layers.size(); ++i) {
    EXPECT_EQ(g.source[i], i == 0 ? kSpecInput : i - 1);
    EXPECT_EQ(g.residual[i], kSpecInput);
  }
  const model::ModelSpec resnet = model::resolve_model("resnet-tiny", 10);
  const SpecGraph r = spec_graph(resnet);
  int adds = 0;
  for (std::size_t i = 0; i < resnet.layers.size(); ++i) {
    const model::LayerSpec& l = resnet.layers[i];
    if (!l.input.empty()) EXPECT_EQ(resnet.layers[r.source[i]].name, l.input) << i;
    else EXPECT_EQ(r.source[i], i == 0 ? kSpecInput : i - 1) << i;
    if (l.kind == model::LayerKind::Add) {
      ++adds;
      ASSERT_NE(r.residual[i], kSpecInput);
      EXPECT_LT(r.residual[i], i);
      EXPECT_EQ(resnet.layers[r.residual[i]].name, l.residual);
    }
  }
  EXPECT_EQ(adds, 3);
}

TEST(SpecGraph, LayerShapes) {
  const model::ModelSpec lenet = model::resolve_model("lenet", 10);
  const arith::Conv2dShape conv = layer_shape(lenet.layers[0]);
  EXPECT_EQ(conv.out_h(), 28);
  EXPECT_EQ(conv.patch(), 25);
  EXPECT_EQ(conv.out_c, 16);
  const arith::Conv2dShape pool = layer_shape(lenet.layers[2]);  // 2x2 max pool of 28x28x16
  EXPECT_EQ(pool.in_c, 16);
  EXPECT_EQ(pool.out_h(), lenet.layers[2].out_shape.height);
  EXPECT_EQ(pool.out_w(), lenet.layers[2].out_shape.width);
}

TEST(SpecGraph, DeviceBytesGrowWithTheBatch) {
  for (const char* name : {"lenet", "resnet-tiny", "dscnn-tiny"}) {
    const model::ModelSpec m = model::resolve_model(name, 10);
    for (bool quantized : {false, true}) {
      const std::size_t one = spec_step_device_bytes(m, 1, quantized), many = spec_step_device_bytes(m, 256, quantized);
      EXPECT_GT(many, 100 * one / 2) << name;
      // lenet at batch 256: its kept patches alone are 256 (784 x 25 + 100 x 400) floats.
      if (std::string(name) == "lenet") {
        EXPECT_GT(many, std::size_t{256} * (784 * 25 + 100 * 400) * 4);
        EXPECT_LT(many, std::size_t{1} << 30);
      }
    }
  }
}

}  // namespace
}  // namespace qathw::training
