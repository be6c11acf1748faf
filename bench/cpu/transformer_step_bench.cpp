// Time of one training step of a transformer model file (models/bitnet-tiny.toml by default) on
// random bytes: the FP32 step (forward, cross-entropy, backward) and the QAT step (weight
// quantization, the accelerator's integers, the straight-through backward), for the speed work
// on `qat-hw train --model bitnet-tiny`.
// Usage: transformer_step_bench [model name or .toml] [target name or .toml] [threads] [batch] [steps] [fp32|qat]
// (the last argument times that step alone, for profiles)
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "qathw/kernels/dense.h"
#include "qathw/target/target_spec.h"
#include "qathw/training/network.h"
#include "qathw/training/transformer_net.h"

#include "best_time.h"

using namespace qathw;

int main(int argc, char** argv) {
  const std::string model = argc > 1 ? argv[1] : "bitnet-tiny";
  const target::TargetSpec t = target::resolve_target(argc > 2 ? argv[2] : "ternary-asic");
  const int threads = argc > 3 ? std::atoi(argv[3]) : 2;
  const int batch = argc > 4 ? std::atoi(argv[4]) : 32;
  const int reps = argc > 5 ? std::atoi(argv[5]) : 5;
  const std::string only = argc > 6 ? argv[6] : "";
  kernels::set_threads(threads);
  const std::optional<training::TransformerSpec> spec = training::resolve_transformer(model);
  if (!spec) throw std::runtime_error(model + " is no transformer model");
  training::TransformerNet net(*spec, 1);
  const int T = spec->context, V = spec->vocabulary, n = batch * T;
  std::mt19937 rng(7);
  std::vector<std::uint8_t> in(static_cast<std::size_t>(n)), out(static_cast<std::size_t>(n));
  for (auto& v : in) v = static_cast<std::uint8_t>(rng() % 256);
  for (auto& v : out) v = static_cast<std::uint8_t>(rng() % 256);
  net.calibrate(in.data(), batch, t.format, 0.999);
  std::vector<std::vector<float>> grads;
  std::vector<float> dlogits;
  int correct = 0;
  const double fp32 = only == "qat" ? 0 : best_time_ms(5, reps, [&] {
    training::softmax_cross_entropy(net.forward(in.data(), batch), out.data(), n, V, dlogits, correct);
    net.backward(dlogits, grads);
  });
  const double qat = only == "fp32" ? 0 : best_time_ms(5, reps, [&] {
    net.quantize_weights(t.format);
    training::softmax_cross_entropy(net.forward_quantized(in.data(), batch, t), out.data(), n, V,
                                    dlogits, correct);
    net.backward(dlogits, grads);
  });
  std::printf("model %s, target %s, %d threads, batch %d x %d tokens\n", spec->name.c_str(), t.name.c_str(), threads,
              batch, T);
  std::printf("  FP32 step %.2f ms (%.1f steps/s)\n", fp32, 1000.0 / fp32);
  std::printf("  QAT  step %.2f ms (%.1f steps/s)\n", qat, 1000.0 / qat);
  return 0;
}
