// Test helpers: a model file's op graph with seeded random kernels, as a bundle of a target.
#pragma once

#include <random>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "qathw/model/bundle.h"
#include "qathw/model/model_spec.h"
#include "qathw/target/target_spec.h"

namespace qathw::test {

// Every conv2d and linear layer's kernel with random codes in [-1, 1] and the pair (3, 6) per
// channel; every add's pairs 1/2 and 1/2.
inline std::vector<model::LayerParams> random_layer_params(const model::ModelSpec& m, arith::WeightFormat format,
                                                           std::mt19937_64& rng) {
  std::vector<model::LayerParams> params(m.layers.size());
  for (std::size_t i = 0; i < m.layers.size(); ++i) {
    const model::LayerSpec& l = m.layers[i];
    if (l.kind == model::LayerKind::Add) params[i].pairs = {{1, 1}, {1, 1}};
    if (l.kind != model::LayerKind::Conv2d && l.kind != model::LayerKind::Linear) continue;
    model::LinearParams& k = params[i].kernel;
    k.in = model::kernel_fan_in(l);
    k.out = l.out;
    k.format = format;
    const std::size_t count = static_cast<std::size_t>(k.in) * k.out;
    k.packed.assign(arith::packed_bytes(count, format), 0);
    for (std::size_t c = 0; c < count; ++c) arith::store_code(k.packed.data(), c, static_cast<int>(rng() % 3) - 1, format);
    k.requant.assign(static_cast<std::size_t>(k.out), arith::FixedPoint{3, 6});
  }
  return params;
}

// A target unlike the built-ins, from ternary-asic: a 5 x 7 array and 12-bit saturating
// accumulators (random kernels' partial sums reach the limit).
inline target::TargetSpec odd_target(const std::string& name) {
  nlohmann::json j = target::to_json(target::builtin_target("ternary-asic"));
  j["name"] = name;
  j["array"]["rows"] = 5;
  j["array"]["lanes"] = 7;
  j["arithmetic"]["accumulator_bits"] = 12;
  j["arithmetic"]["overflow"] = "saturate";
  j.erase("hash");
  j.erase("origin");
  return target::target_from_json(j, name + " (test)");
}

// A random pair for a real factor in [lo, hi], in the target's scale format.
inline arith::FixedPoint random_pair(double lo, double hi, const arith::Format& f, std::mt19937_64& rng) {
  const double x = std::uniform_real_distribution<double>(lo, hi)(rng);
  const arith::FixedPointResult r = arith::to_fixed_point(x, f);
  EXPECT_EQ(r.status, arith::FixedPointStatus::Ok) << x;
  return r.value;
}

// A bundle of target t holding graph g over 28x28 images of 10 classes.
inline model::Bundle bundle_of(const target::TargetSpec& t, model::Graph g) {
  model::Bundle b;
  b.target = t;
  b.target_hash = target::content_hash(t);
  b.rows = 28;
  b.cols = 28;
  b.classes = 10;
  b.graph = std::move(g);
  return b;
}

// Shapes the built-in models leave out: rectangular kernels, strides and paddings, a grouped
// convolution that is not depthwise, a max pool with padding whose output is fused with a ReLU, an
// average pool with padding (the padding adds 0 to the window's sum).
inline const char* const kOddShapes = R"(
name = "odd-shapes"
input = [28, 28, 1]

[[layers]]
type = "conv2d"
out = 6
kernel = [3, 5]
stride = [2, 1]
padding = [1, 2]

[[layers]]
type = "max_pool"
kernel = 3
stride = 2
padding = 1

[[layers]]
type = "relu"

[[layers]]
type = "conv2d"
out = 6
kernel = [2, 3]
stride = 2
padding = 1
groups = 2

[[layers]]
type = "avg_pool"
kernel = 2
stride = 1
padding = 1

[[layers]]
type = "flatten"

[[layers]]
type = "linear"
out = "classes"
)";

// A built-in model of 10 classes, or "odd-shapes" above.
inline model::ModelSpec model_spec(const std::string& name) {
  return name == "odd-shapes" ? model::parse_model(kOddShapes, "odd-shapes (test)", 10) : model::resolve_model(name, 10);
}

// A built-in model (or "odd-shapes") with random kernels; with `static_quantizers`, every kernel's input quantizer
// has a calibrated-like pair, and every add aligns its operands by pairs around 1 (their scales
// over the output's). With `saturating`, the first layer's channel 0 has every weight +1, so a
// bright image drives its accumulator to the limit.
inline model::Bundle random_model_bundle(const std::string& name, const target::TargetSpec& t, bool static_quantizers,
                           std::mt19937_64& rng, bool saturating = false) {
  const model::ModelSpec m = model_spec(name);
  std::vector<model::LayerParams> params = random_layer_params(m, t.format.weights, rng);
  for (std::size_t i = 0; i < m.layers.size(); ++i) {
    const model::LayerKind k = m.layers[i].kind;
    if (k == model::LayerKind::Add)
      params[i].pairs = {random_pair(0.5, 1.5, t.format, rng), random_pair(0.5, 1.5, t.format, rng)};
    // The pixels (0..255) by about 1/2, requantized values by less.
    if (static_quantizers && (k == model::LayerKind::Conv2d || k == model::LayerKind::Linear))
      params[i].input_quantizer = {i == 0 ? random_pair(0.3, 0.6, t.format, rng)
                                          : random_pair(0.02, 0.4, t.format, rng)};
  }
  if (saturating)
    for (int k = 0; k < params[0].kernel.in; ++k)
      arith::store_code(params[0].kernel.packed.data(), static_cast<std::size_t>(k), 1, t.format.weights);
  model::Bundle b = bundle_of(t, model::lower_model(m, std::move(params), t.format));
  model::validate(b.graph, t.format);
  return b;
}

}  // namespace qathw::test
