// Time of each part of one training step of the default MLP (784-256-256-10, batch 256) on
// random data: where a QAT step spends its time, against the FP32 step beside it.
// Usage: train_step_bench [target name or .toml] [threads] [steps]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>

#include "qathw/kernels/dense.h"
#include "qathw/target/target_spec.h"
#include "qathw/training/network.h"

#include "best_time.h"

using namespace qathw;

int main(int argc, char** argv) {
  const std::string name = argc > 1 ? argv[1] : "ternary-asic";
  const int threads = argc > 2 ? std::atoi(argv[2]) : 2;
  const int reps = argc > 3 ? std::atoi(argv[3]) : 30;
  const target::TargetSpec spec = target::resolve_target(name);  // a built-in name or a .toml file
  kernels::set_threads(threads);
  const int batch = 256;
  training::Mlp net = training::make_mlp(784, {256, 256}, 10, 1);
  std::mt19937 rng(7);
  std::vector<std::uint8_t> pixels(static_cast<std::size_t>(batch) * 784), labels(batch);
  for (auto& p : pixels) p = static_cast<std::uint8_t>(rng() % 256);
  for (auto& l : labels) l = static_cast<std::uint8_t>(rng() % 10);

  training::Activations act;
  std::vector<training::QuantizedLayer> q;
  std::vector<float> dlogits;
  std::vector<std::vector<float>> grads;
  int correct = 0;
  const double wq = best_time_ms(7, reps, [&] { training::quantize_weights(net, spec.format, q); });
  const double fq = best_time_ms(7, reps, [&] {
    training::forward_quantized(net, q, spec.format, spec.array.lanes, pixels.data(), batch, act);
  });
  const double loss = best_time_ms(7, reps, [&] {
    training::softmax_cross_entropy(act.logits, labels.data(), batch, 10, dlogits, correct);
  });
  const double bq = best_time_ms(7, reps, [&] { training::backward_quantized(net, q, act, dlogits, false, grads); });
  std::vector<std::vector<float>> m, v;
  for (const auto& l : net.layers) {
    m.emplace_back(l.w.size(), 0.0f);
    v.emplace_back(l.w.size(), 0.0f);
  }
  const double opt = best_time_ms(7, reps, [&] {
    kernels::AdamWParams p;
    p.lr = 1e-9f;
    for (std::size_t l = 0; l < net.layers.size(); ++l)
      kernels::adamw_step(net.layers[l].w.data(), grads[l].data(), m[l].data(), v[l].data(), grads[l].size(), p);
  });
  const double f32 = best_time_ms(7, reps, [&] { training::forward_fp32(net, pixels.data(), batch, act); });
  const double b32 = best_time_ms(7, reps, [&] { training::backward_fp32(net, act, dlogits, grads); });
  const double qat = wq + fq + loss + bq + opt;
  const double fp32 = f32 + loss + b32 + opt;
  std::printf("target %s, %d threads, batch %d, 784-256-256-10, %d reps\n", name.c_str(), threads, batch, reps);
  std::printf("  QAT  step %.3f ms (%.0f steps/s): weight quant %.3f, forward %.3f, loss %.3f, backward %.3f, AdamW %.3f\n",
              qat, 1000.0 / qat, wq, fq, loss, bq, opt);
  std::printf("  FP32 step %.3f ms (%.0f steps/s): forward %.3f, backward %.3f\n", fp32, 1000.0 / fp32, f32, b32);
  std::printf("  QAT / FP32 step time: %.2f\n", qat / fp32);
  return 0;
}
