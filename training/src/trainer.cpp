#include "qathw/training/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>

#include "qathw/kernels/dense.h"
#include "qathw/training/checkpoint.h"

#if QATHW_HAVE_CUDA
#include "cuda_trainer.h"
#endif

namespace qathw::training {

nlohmann::json to_json(const TrainConfig& c) {
  return {{"hidden", c.hidden},         {"epochs", c.epochs},   {"batch", c.batch},
          {"lr", c.lr},                 {"weight_decay", c.weight_decay}, {"warmup_frac", c.warmup_frac},
          {"seed", c.seed},             {"threads", c.threads}, {"ste", c.ste_clip ? "clipped" : "identity"},
          {"train_fp32", c.train_fp32}};
}

float learning_rate(const TrainConfig& c, long step, long total) {
  const long warmup = std::max(1L, std::lround(c.warmup_frac * static_cast<float>(total)));
  if (step < warmup) return c.lr * static_cast<float>(step + 1) / static_cast<float>(warmup);
  const double progress = static_cast<double>(step - warmup) / static_cast<double>(std::max(1L, total - warmup));
  return static_cast<float>(c.lr * 0.5 * (1.0 + std::cos(M_PI * progress)));
}

float weight_decay(const TrainConfig& c, long step, long total) { return step < total / 2 ? c.weight_decay : 0.0f; }

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kEvalBatch = 500;

std::string fingerprint(Phase phase, const target::TargetSpec& target, const TrainConfig& c, const Dataset& train) {
  nlohmann::json j = to_json(c);
  j.erase("threads");  // results are deterministic per thread count, but a resume may use another
  j.erase("train_fp32");
  j["phase"] = phase == Phase::Fp32 ? "fp32" : "qat";
  j["target"] = phase == Phase::Fp32 ? "" : target::content_hash(target);
  j["data"] = {{"count", train.count}, {"features", train.features}, {"classes", train.classes}};
  return j.dump();
}

// The sample order of an epoch: a permutation seeded by (seed, epoch), so a resumed run
// reproduces it without saved generator state.
std::vector<std::uint32_t> epoch_order(std::size_t count, std::uint64_t seed, int epoch) {
  std::vector<std::uint32_t> order(count);
  std::iota(order.begin(), order.end(), 0u);
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(epoch) + 1);
  std::shuffle(order.begin(), order.end(), rng);
  return order;
}

PhaseResult run_phase(Phase phase, const target::TargetSpec& target, const TrainConfig& c, const Dataset& train,
                      const Dataset& test, const std::filesystem::path& checkpoint, bool resume,
                      const std::function<void(const EpochProgress&)>& progress, Mlp& net) {
  const long steps_per_epoch = static_cast<long>(train.count) / c.batch;
  if (steps_per_epoch == 0)
    throw std::runtime_error("batch size " + std::to_string(c.batch) + " exceeds the " + std::to_string(train.count) +
                             " training samples of " + train.source);
  const long total = steps_per_epoch * c.epochs;
  const std::string fp = fingerprint(phase, target, c, train);

  net = make_mlp(static_cast<int>(train.features), c.hidden, train.classes, c.seed);
  std::vector<std::vector<float>> m, v;
  for (const Layer& l : net.layers) {
    m.emplace_back(l.w.size(), 0.0f);
    v.emplace_back(l.w.size(), 0.0f);
  }
  PhaseResult result;
  result.ran = true;
  int start_epoch = 0;
  long step = 0;
  double seconds_before = 0;
  if (resume) {
    if (auto ck = load_checkpoint(checkpoint, fp)) {
      // The fingerprint holds the run's settings, not the shapes the checkpoint holds: a checkpoint
      // written to match one but holding other layers would send the passes out of their buffers.
      bool same = ck->net.layers.size() == net.layers.size();
      for (std::size_t l = 0; same && l < net.layers.size(); ++l)
        same = ck->net.layers[l].in == net.layers[l].in && ck->net.layers[l].out == net.layers[l].out &&
               ck->net.layers[l].relu == net.layers[l].relu;
      if (!same) throw std::runtime_error(checkpoint.string() + ": its layers do not match the run's network");
      net = std::move(ck->net);
      m = std::move(ck->adam_m);
      v = std::move(ck->adam_v);
      start_epoch = ck->epochs_done;
      step = ck->step;
      seconds_before = ck->train_seconds;
      result.epochs_resumed = start_epoch;
    }
  }

  const arith::Format& f = target.format;
  const bool quantized = phase == Phase::Qat;
  const std::size_t features = train.features;
  const int classes = train.classes;
  std::vector<std::uint8_t> pixels(static_cast<std::size_t>(c.batch) * features), labels(c.batch);
  Activations act;
  std::vector<QuantizedLayer> q;
  std::vector<float> dlogits;
  std::vector<std::vector<float>> grads;
  double seconds_this_run = 0;
  long steps_this_run = 0;

#if QATHW_HAVE_CUDA
  std::unique_ptr<CudaTrainer> gpu;
  if (c.device == TrainDevice::Cuda && start_epoch < c.epochs)
    gpu = std::make_unique<CudaTrainer>(net, m, v, f, target.array.lanes, c.batch, train, quantized, c.ste_clip);
#else
  if (c.device == TrainDevice::Cuda)
    throw std::runtime_error("training on CUDA: CUDA support was not compiled in");
#endif

  for (int epoch = start_epoch; epoch < c.epochs; ++epoch) {
    const std::vector<std::uint32_t> order = epoch_order(train.count, c.seed, epoch);
    double loss_sum = 0;
    long correct_sum = 0;
    const auto t0 = Clock::now();
#if QATHW_HAVE_CUDA
    if (gpu) {
      gpu->set_order(order);
      for (long s = 0; s < steps_per_epoch; ++s, ++step) {
        kernels::AdamWParams p;
        p.lr = learning_rate(c, step, total);
        p.weight_decay = weight_decay(c, step, total);
        p.step = step + 1;
        gpu->step(static_cast<std::size_t>(s) * c.batch, p);
      }
      const CudaTrainer::Totals t = gpu->take_totals();  // waits for the epoch's steps
      loss_sum = t.loss_sum;
      correct_sum = t.correct;
      gpu->download(net, m, v);
    }
#endif
    const long host_steps = c.device == TrainDevice::Cpu ? steps_per_epoch : 0;  // else the GPU ran them
    for (long s = 0; s < host_steps; ++s, ++step) {
      for (int b = 0; b < c.batch; ++b) {
        const std::uint32_t i = order[static_cast<std::size_t>(s) * c.batch + b];
        std::copy_n(train.pixels.data() + i * features, features, pixels.data() + b * features);
        labels[b] = train.labels[i];
      }
      int correct = 0;
      if (quantized) {
        quantize_weights(net, f, q);
        forward_quantized(net, q, f, target.array.lanes, pixels.data(), c.batch, act);
        loss_sum += softmax_cross_entropy(act.logits, labels.data(), c.batch, classes, dlogits, correct);
        backward_quantized(net, q, act, dlogits, c.ste_clip, grads);
      } else {
        forward_fp32(net, pixels.data(), c.batch, act);
        loss_sum += softmax_cross_entropy(act.logits, labels.data(), c.batch, classes, dlogits, correct);
        backward_fp32(net, act, dlogits, grads);
      }
      correct_sum += correct;
      kernels::AdamWParams p;
      p.lr = learning_rate(c, step, total);
      p.weight_decay = weight_decay(c, step, total);
      p.step = step + 1;
      for (std::size_t l = 0; l < net.layers.size(); ++l)
        kernels::adamw_step(net.layers[l].w.data(), grads[l].data(), m[l].data(), v[l].data(), grads[l].size(), p);
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    seconds_this_run += seconds;
    steps_this_run += steps_per_epoch;

    Checkpoint ck{fp, epoch + 1, step, seconds_before + seconds_this_run, net, m, v};
    save_checkpoint(checkpoint, ck);

    const double test_accuracy = quantized ? evaluate_quantized(net, target, test).accuracy : evaluate_fp32(net, test);
    result.test_accuracy = test_accuracy;
    if (progress) {
      const float rate = static_cast<float>(steps_this_run / seconds_this_run);
      progress({phase, epoch + 1, c.epochs, static_cast<float>(loss_sum / steps_per_epoch),
                static_cast<float>(correct_sum) / static_cast<float>(steps_per_epoch * c.batch),
                static_cast<float>(test_accuracy), rate,
                static_cast<float>((c.epochs - epoch - 1) * steps_per_epoch) / rate});
    }
  }
  if (start_epoch == c.epochs)  // everything restored: evaluate the final weights
    result.test_accuracy = quantized ? evaluate_quantized(net, target, test).accuracy : evaluate_fp32(net, test);
  result.steps = steps_this_run;
  result.train_seconds = seconds_this_run;
  result.steps_per_s = seconds_this_run > 0 ? steps_this_run / seconds_this_run : 0;
  return result;
}

}  // namespace

TrainResult train(const target::TargetSpec& target, const TrainConfig& config, const Dataset& train_set,
                  const Dataset& test, const std::filesystem::path& checkpoint_dir, bool resume,
                  const std::function<void(const EpochProgress&)>& progress) {
  if (target.format.act_quantizer != arith::ActQuantizer::DynamicPerTokenAbsmax)
    throw std::runtime_error(target.origin + ": field 'activations.quantizer': the trainer supports "
                             "\"dynamic_per_token_absmax\" only (static per-tensor calibration is not implemented)");
  if (train_set.features != test.features || train_set.classes != test.classes)
    throw std::runtime_error(test.source + ": test images or classes differ from the training set " + train_set.source);
  kernels::set_threads(config.threads);
  std::filesystem::create_directories(checkpoint_dir);
  TrainResult r;
  if (config.train_fp32) {
    r.fp32_result = run_phase(Phase::Fp32, target, config, train_set, test, checkpoint_dir / "fp32.ckpt", resume,
                              progress, r.fp32);
    r.ptq_result.ran = true;
    r.ptq_result.test_accuracy = evaluate_quantized(r.fp32, target, test).accuracy;
  }
  r.qat_result =
      run_phase(Phase::Qat, target, config, train_set, test, checkpoint_dir / "qat.ckpt", resume, progress, r.qat);
  return r;
}

QuantizedEval evaluate_quantized(const Mlp& net, const target::TargetSpec& target, const Dataset& data) {
  std::vector<QuantizedLayer> q;
  quantize_weights(net, target.format, q);
  const int classes = net.classes();
  QuantizedEval eval;
  eval.outputs.resize(data.count * classes);
  Activations act;
  long correct = 0;
  for (std::size_t start = 0; start < data.count; start += kEvalBatch) {
    const int batch = static_cast<int>(std::min<std::size_t>(kEvalBatch, data.count - start));
    forward_quantized(net, q, target.format, target.array.lanes, data.pixels.data() + start * data.features, batch, act);
    const std::vector<std::int32_t>& z = act.z.back();
    std::copy(z.begin(), z.end(), eval.outputs.begin() + static_cast<std::ptrdiff_t>(start * classes));
    for (int b = 0; b < batch; ++b)
      if (argmax(z.data() + static_cast<std::size_t>(b) * classes, classes) == data.labels[start + b]) ++correct;
  }
  eval.accuracy = static_cast<double>(correct) / static_cast<double>(data.count);
  return eval;
}

double evaluate_fp32(const Mlp& net, const Dataset& data) {
  const int classes = net.classes();
  Activations act;
  long correct = 0;
  for (std::size_t start = 0; start < data.count; start += kEvalBatch) {
    const int batch = static_cast<int>(std::min<std::size_t>(kEvalBatch, data.count - start));
    forward_fp32(net, data.pixels.data() + start * data.features, batch, act);
    for (int b = 0; b < batch; ++b)
      if (argmax(act.logits.data() + static_cast<std::size_t>(b) * classes, classes) == data.labels[start + b]) ++correct;
  }
  return static_cast<double>(correct) / static_cast<double>(data.count);
}

}  // namespace qathw::training
