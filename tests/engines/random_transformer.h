// Random tiny transformers for the engines' tests: a seeded network whose RMSNorm gains lie away
// from 1, calibrated on random tokens, exported for a target (training::make_bundle).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "qathw/model/bundle.h"
#include "qathw/target/target_spec.h"
#include "qathw/training/export.h"
#include "qathw/training/transformer_net.h"

namespace qathw::test {

struct TransformerShape {
  int context = 7, width = 16, heads = 2, ffn = 32, layers = 2;
};

inline std::vector<std::uint8_t> random_tokens(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::uint8_t> t(n);
  for (auto& v : t) v = static_cast<std::uint8_t>(rng() % 256);
  return t;
}

// Seeded weights, gains uniform in e^[-0.7, 0.7]; not calibrated.
inline training::TransformerNet random_transformer(const TransformerShape& shape, std::uint64_t seed) {
  training::TransformerSpec s;
  s.name = "tiny";
  s.origin = "test";
  s.context = shape.context;
  s.width = shape.width;
  s.heads = shape.heads;
  s.ffn = shape.ffn;
  s.layers = shape.layers;
  training::TransformerNet net(s, seed);
  std::mt19937_64 rng(seed);
  for (training::TransformerNet::Param& p : net.params())
    if (p.rows == 1 && p.name != "log_scales")
      for (float& g : p.w) g = std::uniform_real_distribution<float>(-0.7f, 0.7f)(rng);
  return net;
}

// random_transformer calibrated on `batch` random sequences (seed + 1), as a bundle for t.
inline model::Bundle random_transformer_bundle(const TransformerShape& shape, const target::TargetSpec& t,
                                               std::uint64_t seed, int batch = 3) {
  training::TransformerNet net = random_transformer(shape, seed);
  const std::vector<std::uint8_t> tokens = random_tokens(static_cast<std::size_t>(batch) * shape.context, seed + 1);
  net.calibrate(tokens.data(), batch, t.format, 0.99);
  return training::make_bundle(net, t, {{"test", "random_transformer"}});
}

}  // namespace qathw::test
