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

}  // namespace qathw::test
