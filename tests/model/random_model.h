// Test helpers: a model file's op graph with seeded random kernels, as a bundle of a target.
#pragma once

#include <random>
#include <utility>
#include <vector>

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
