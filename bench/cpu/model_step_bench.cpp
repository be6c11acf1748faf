// Time of one training step of a model file's network (models/*.toml) on random 28x28 images:
// the FP32 step (forward + backward) and the QAT step (kernel quantization, the accelerator's
// integers, the straight-through backward), for the convolutional models' speed work.
// Usage: model_step_bench [model name or .toml] [target name or .toml] [threads] [batch] [steps] [fp32|qat]
// (the last argument times that step alone, for profiles)
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
#include "qathw/training/spec_net.h"

#include "best_time.h"

using namespace qathw;

int main(int argc, char** argv) {
  const std::string model = argc > 1 ? argv[1] : "lenet";
  const target::TargetSpec t = target::resolve_target(argc > 2 ? argv[2] : "ternary-asic");
  const int threads = argc > 3 ? std::atoi(argv[3]) : 2;
  const int batch = argc > 4 ? std::atoi(argv[4]) : 64;
  const int reps = argc > 5 ? std::atoi(argv[5]) : 5;
  const std::string only = argc > 6 ? argv[6] : "";
  kernels::set_threads(threads);
  training::SpecNet net(model::resolve_model(model, 10), 1);
  const int features = static_cast<int>(net.spec().input.size());
  std::mt19937 rng(7);
  std::vector<std::uint8_t> pixels(static_cast<std::size_t>(batch) * features), labels(static_cast<std::size_t>(batch));
  for (auto& p : pixels) p = static_cast<std::uint8_t>(rng() % 256);
  for (auto& l : labels) l = static_cast<std::uint8_t>(rng() % 10);
  std::vector<float> x(pixels.size()), dlogits;
  for (std::size_t k = 0; k < x.size(); ++k) x[k] = pixels[k] / 255.0f;
  std::vector<std::vector<float>> grads;
  int correct = 0;
  const double fp32 = only == "qat" ? 0 : best_time_ms(5, reps, [&] {
    training::softmax_cross_entropy(net.forward(x.data(), batch), labels.data(), batch, 10, dlogits, correct);
    net.backward(dlogits, grads);
  });
  const double quant = only == "fp32" ? 0 : best_time_ms(5, reps, [&] { net.quantize_kernels(t.format); });
  const double qat = only == "fp32" ? 0 : best_time_ms(5, reps, [&] {
    net.quantize_kernels(t.format);
    training::softmax_cross_entropy(net.forward_quantized(pixels.data(), batch, t.format, t.array.lanes), labels.data(),
                                    batch, 10, dlogits, correct);
    net.backward_quantized(dlogits, false, grads);
  });
  std::printf("model %s, target %s, %d threads, batch %d, %ld MACs per sample\n", net.spec().name.c_str(),
              t.name.c_str(), threads, batch, model::model_macs(net.spec()));
  std::printf("  FP32 step %.2f ms (%.1f steps/s)\n", fp32, 1000.0 / fp32);
  std::printf("  QAT  step %.2f ms (%.1f steps/s), of which kernel quantization %.2f ms\n", qat, 1000.0 / qat, quant);
  return 0;
}
