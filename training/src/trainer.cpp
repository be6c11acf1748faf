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
#include "qathw/util/cpus.h"

#if QATHW_HAVE_CUDA
#include "cuda_model_trainer.h"
#include "cuda_trainer.h"
#endif

namespace qathw::training {

nlohmann::json to_json(const TrainConfig& c) {
  return {{"hidden", c.hidden},         {"epochs", c.epochs},   {"batch", c.batch},
          {"lr", c.lr},                 {"weight_decay", c.weight_decay}, {"warmup_frac", c.warmup_frac},
          {"seed", c.seed},             {"threads", c.threads}, {"fit_threads", c.fit_threads},
          {"ste", c.ste_clip ? "clipped" : "identity"}, {"train_fp32", c.train_fp32},
          {"calibration", c.calibration},
          {"qat_init", c.qat_from_fp32 ? "fp32" : "scratch"},
          {"distill", c.distill ? nlohmann::json{{"temperature", c.distill_temperature}, {"weight", c.distill_weight}}
                                : nlohmann::json(false)}};
}

float learning_rate(const TrainConfig& c, long step, long total) {
  const long warmup = std::max(1L, std::lround(c.warmup_frac * static_cast<float>(total)));
  if (step < warmup) return c.lr * static_cast<float>(step + 1) / static_cast<float>(warmup);
  const double progress = static_cast<double>(step - warmup) / static_cast<double>(std::max(1L, total - warmup));
  return static_cast<float>(c.lr * 0.5 * (1.0 + std::cos(M_PI * progress)));
}

const char* phase_name(Phase p) { return p == Phase::Fp32 ? "fp32" : p == Phase::Qat ? "qat" : "qat+kd"; }

float weight_decay(const TrainConfig& c, long step, long total) { return step < total / 2 ? c.weight_decay : 0.0f; }

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kEvalBatch = 500;

std::string fingerprint(Phase phase, const target::TargetSpec& target, const TrainConfig& c, const Dataset& train,
                        const nlohmann::json& network) {
  nlohmann::json j = to_json(c);
  if (!network.is_null()) {  // a model file's network: its layers, not the MLP's hidden sizes
    j.erase("hidden");
    j["model"] = network;
  }
  j.erase("threads");  // results do not depend on the thread count
  j.erase("fit_threads");
  j.erase("train_fp32");
  if (phase == Phase::Fp32) j.erase("qat_init");  // the twin trains the same either way
  j["phase"] = phase_name(phase);
  j["target"] = phase == Phase::Fp32 ? "" : target::content_hash(target);
  j["data"] = {{"count", train.count}, {"features", train.features}, {"classes", train.classes}};
  return j.dump();
}

// Host threads that follow the machine's load: a new count from a CPU sample every quarter second
// (a thread count too large for a busy machine costs ten times the time of a step).
class FittedThreads {
 public:
  explicit FittedThreads(int most) : fit_(most), last_(util::sample_cpu()) {}
  void step() {
    if (Clock::now() - last_time_ < std::chrono::milliseconds(250)) return;
    last_time_ = Clock::now();
    const util::CpuSample now = util::sample_cpu();
    const int before = fit_.threads();
    if (fit_.update(last_, now) != before) kernels::set_threads(fit_.threads());
    last_ = now;
  }

 private:
  util::ThreadFit fit_;
  util::CpuSample last_;
  Clock::time_point last_time_ = Clock::now();
};

// The sample order of an epoch: a permutation seeded by (seed, epoch), so a resumed run
// reproduces it without saved generator state.
std::vector<std::uint32_t> epoch_order(std::size_t count, std::uint64_t seed, int epoch) {
  std::vector<std::uint32_t> order(count);
  std::iota(order.begin(), order.end(), 0u);
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(epoch) + 1);
  std::shuffle(order.begin(), order.end(), rng);
  return order;
}

// The loss of a step: the labels' cross-entropy, or distilled from the teacher's logits.
float training_loss(const TrainConfig& c, const std::vector<float>& logits, const std::vector<float>* teacher,
                    const std::uint8_t* labels, int batch, int classes, std::vector<float>& dlogits, int& correct) {
  if (!teacher) return softmax_cross_entropy(logits, labels, batch, classes, dlogits, correct);
  return distillation_loss(logits, *teacher, labels, batch, classes, c.distill_temperature, c.distill_weight, dlogits,
                           correct);
}

// One kind of network in the phase loop: its steps and evaluation, and its kernels as the
// checkpoint's layers.
class Learner {
 public:
  virtual ~Learner() = default;
  // What AdamW updates, one vector per parameter tensor, in checkpoint order.
  virtual std::vector<std::vector<float>*> parameters() = 0;
  // The parameters as checkpoint layers (their shapes and values).
  virtual Mlp checkpoint_layers() = 0;
  // One step's forward and backward: the mean loss, the correct predictions, each kernel's gradient.
  // With a teacher's logits, the loss is distilled from them.
  virtual float step(const std::uint8_t* pixels, const std::uint8_t* labels, int batch, bool quantized,
                     const std::vector<float>* teacher, int& correct, std::vector<std::vector<float>>& grads) = 0;
  virtual double evaluate(const Dataset& data, bool quantized) = 0;
  virtual Mlp* mlp() { return nullptr; }  // the network the CUDA trainer runs, for the MLP
  virtual SpecNet* spec_net() { return nullptr; }  // the same for a model file's network
  // Whether weight decay applies to parameter k (kernels: yes; quantizer steps: no).
  virtual bool decays(std::size_t) const { return true; }
  // Before the first step of a run that starts from scratch (not from a checkpoint).
  virtual void start(const Dataset&) {}
};

class MlpLearner final : public Learner {
 public:
  MlpLearner(Mlp& net, const target::TargetSpec& t, const TrainConfig& c) : net_(net), t_(t), c_(c) {}
  std::vector<std::vector<float>*> parameters() override {
    std::vector<std::vector<float>*> k;
    for (Layer& l : net_.layers) k.push_back(&l.w);
    return k;
  }
  Mlp checkpoint_layers() override { return net_; }
  float step(const std::uint8_t* pixels, const std::uint8_t* labels, int batch, bool quantized,
             const std::vector<float>* teacher, int& correct, std::vector<std::vector<float>>& grads) override {
    if (quantized) {
      quantize_weights(net_, t_.format, q_);
      forward_quantized(net_, q_, t_.format, t_.array.lanes, pixels, batch, act_);
    } else {
      forward_fp32(net_, pixels, batch, act_);
    }
    const float loss = training_loss(c_, act_.logits, teacher, labels, batch, net_.classes(), dlogits_, correct);
    if (quantized) backward_quantized(net_, q_, act_, dlogits_, c_.ste_clip, grads);
    else backward_fp32(net_, act_, dlogits_, grads);
    return loss;
  }
  double evaluate(const Dataset& data, bool quantized) override {
    return quantized ? evaluate_quantized(net_, t_, data).accuracy : evaluate_fp32(net_, data);
  }
  Mlp* mlp() override { return &net_; }

 private:
  Mlp& net_;
  const target::TargetSpec& t_;
  const TrainConfig& c_;
  Activations act_;
  std::vector<QuantizedLayer> q_;
  std::vector<float> dlogits_;
};

// Pixels as the FP32 network's input values (pixel / 255).
const float* to_values(const std::uint8_t* pixels, int batch, std::size_t features, std::vector<float>& values) {
  values.resize(static_cast<std::size_t>(batch) * features);
  for (std::size_t k = 0; k < values.size(); ++k) values[k] = static_cast<float>(pixels[k]) / 255.0f;
  return values.data();
}

// The samples a static quantizer is calibrated on: the first of the training set.
constexpr std::size_t kCalibrationSamples = 256;

void calibrate(SpecNet& net, const target::TargetSpec& t, const Dataset& train, double fraction) {
  const std::vector<bool> fixed = net.static_quantizers(t.format);
  if (std::find(fixed.begin(), fixed.end(), true) == fixed.end()) return;
  net.quantize_kernels(t.format);
  const int n = static_cast<int>(std::min(kCalibrationSamples, train.count));
  net.calibrate_static(train.pixels.data(), n, t.format, t.array.lanes, fraction);
}

// A model file's network. Its parameters: the kernels, then in QAT each static quantizer's step
// (learned, LSQ) as a 1 x 1 tensor holding its logarithm: Adam moves a parameter by about the
// learning rate per step whatever its gradient, which would take a step of 0.01 below zero in one
// update; in the logarithm it is a relative change, and the step stays positive.
class SpecLearner final : public Learner {
 public:
  SpecLearner(SpecNet& net, const target::TargetSpec& t, const TrainConfig& c, bool quantized)
      : net_(net), t_(t), c_(c) {
    for (std::size_t i = 0; i < net_.weights().size(); ++i)
      if (!net_.weights()[i].empty()) kernel_layers_.push_back(i);
    const std::vector<bool> fixed = net_.static_quantizers(t.format);
    for (std::size_t i = 0; i < fixed.size(); ++i)
      if (quantized && fixed[i]) step_layers_.push_back(i);
    steps_.assign(step_layers_.size(), std::vector<float>(1, 0.0f));
  }
  std::vector<std::vector<float>*> parameters() override {
    std::vector<std::vector<float>*> k;
    for (std::size_t i : kernel_layers_) k.push_back(&net_.weights()[i]);
    for (std::vector<float>& s : steps_) k.push_back(&s);
    return k;
  }
  bool decays(std::size_t k) const override { return k < kernel_layers_.size(); }
  // A kernel as a layer of out rows of fan-in weights (a convolution's rows are patches).
  Mlp checkpoint_layers() override {
    Mlp m;
    for (std::size_t i : kernel_layers_) {
      const model::LayerSpec& l = net_.spec().layers[i];
      m.layers.push_back({model::kernel_fan_in(l), l.out, false, net_.weights()[i]});
    }
    for (const std::vector<float>& s : steps_) m.layers.push_back({1, 1, false, s});
    return m;
  }
  void start(const Dataset& train) override {
    if (step_layers_.empty()) return;
    calibrate(net_, t_, train, c_.calibration);
    for (std::size_t k = 0; k < step_layers_.size(); ++k) steps_[k][0] = std::log(net_.steps()[step_layers_[k]]);
  }
  float step(const std::uint8_t* pixels, const std::uint8_t* labels, int batch, bool quantized,
             const std::vector<float>* teacher, int& correct, std::vector<std::vector<float>>& grads) override {
    const int classes = net_.spec().classes();
    if (quantized) {
      set_steps();
      net_.quantize_kernels(t_.format);
    }
    const std::size_t features = static_cast<std::size_t>(net_.spec().input.size());
    const std::vector<float>& logits = quantized ? net_.forward_quantized(pixels, batch, t_.format, t_.array.lanes)
                                                 : net_.forward(to_values(pixels, batch, features, values_), batch);
    const float loss = training_loss(c_, logits, teacher, labels, batch, classes, dlogits_, correct);
    if (quantized) net_.backward_quantized(dlogits_, c_.ste_clip, layer_grads_);
    else net_.backward(dlogits_, layer_grads_);
    grads.resize(kernel_layers_.size() + step_layers_.size());
    for (std::size_t k = 0; k < kernel_layers_.size(); ++k) grads[k].swap(layer_grads_[kernel_layers_[k]]);
    for (std::size_t k = 0; k < step_layers_.size(); ++k) {  // d loss / d log s = s d loss / d s
      const std::size_t i = step_layers_[k];
      grads[kernel_layers_.size() + k].assign(1, net_.step_gradients()[i] * net_.steps()[i]);
    }
    return loss;
  }
  SpecNet* spec_net() override { return &net_; }
  double evaluate(const Dataset& data, bool quantized) override {
    set_steps();
    return quantized ? evaluate_quantized(net_, t_, data).accuracy : evaluate_fp32(net_, data);
  }

 private:
  void set_steps() {
    for (std::size_t k = 0; k < step_layers_.size(); ++k) net_.steps()[step_layers_[k]] = std::exp(steps_[k][0]);
  }
  SpecNet& net_;
  const target::TargetSpec& t_;
  const TrainConfig& c_;
  std::vector<std::size_t> kernel_layers_, step_layers_;
  std::vector<std::vector<float>> steps_;  // the steps as the optimizer holds them
  std::vector<float> values_, dlogits_;
  std::vector<std::vector<float>> layer_grads_;
};

// The FP32 twin's logits of a batch of pixels, for distillation.
using Teacher = std::function<const std::vector<float>&(const std::uint8_t* pixels, int batch)>;

PhaseResult run_phase(Phase phase, const target::TargetSpec& target, const TrainConfig& c, const Dataset& train,
                      const Dataset& test, const std::filesystem::path& checkpoint, bool resume,
                      const std::function<void(const EpochProgress&)>& progress, Learner& net,
                      const nlohmann::json& network, const Teacher& teacher = nullptr) {
  const long steps_per_epoch = static_cast<long>(train.count) / c.batch;
  if (steps_per_epoch == 0)
    throw std::runtime_error("batch size " + std::to_string(c.batch) + " exceeds the " + std::to_string(train.count) +
                             " training samples of " + train.source);
  const long total = steps_per_epoch * c.epochs;
  const std::string fp = fingerprint(phase, target, c, train, network);

  const std::vector<std::vector<float>*> weights = net.parameters();
  std::vector<std::vector<float>> m, v;
  for (const std::vector<float>* w : weights) {
    m.emplace_back(w->size(), 0.0f);
    v.emplace_back(w->size(), 0.0f);
  }
  PhaseResult result;
  result.ran = true;
  int start_epoch = 0;
  long step = 0;
  double seconds_before = 0;
  if (resume) {
    const Mlp fresh = net.checkpoint_layers();
    if (auto ck = load_checkpoint(checkpoint, fp, {&fresh, c.epochs, steps_per_epoch})) {
      for (std::size_t k = 0; k < weights.size(); ++k) *weights[k] = std::move(ck->net.layers[k].w);
      m = std::move(ck->adam_m);
      v = std::move(ck->adam_v);
      start_epoch = ck->epochs_done;
      step = ck->step;
      seconds_before = ck->train_seconds;
      result.epochs_resumed = start_epoch;
    }
  }

  if (start_epoch == 0) net.start(train);
  const bool quantized = phase != Phase::Fp32;
  const std::size_t features = train.features;
  std::vector<std::uint8_t> pixels(static_cast<std::size_t>(c.batch) * features), labels(c.batch);
  std::vector<std::vector<float>> grads;
  double seconds_this_run = 0;
  long steps_this_run = 0;
  FittedThreads fit(c.threads);

#if QATHW_HAVE_CUDA
  // The GPU trainer of an MLP or of a model file's network.
  std::unique_ptr<CudaTrainer> gpu;
  std::unique_ptr<CudaModelTrainer> gpu_model;
  if (c.device == TrainDevice::Cuda && teacher)
    throw std::runtime_error("training on CUDA: distillation trains on the CPU only; use --device cpu");
  if (c.device == TrainDevice::Cuda && start_epoch < c.epochs) {
    if (net.mlp())
      gpu = std::make_unique<CudaTrainer>(*net.mlp(), m, v, target.format, target.array.lanes, c.batch, train,
                                          quantized, c.ste_clip);
    else
      gpu_model = std::make_unique<CudaModelTrainer>(*net.spec_net(), weights, m, v, target.format, target.array.lanes,
                                                     c.batch, train, quantized, c.ste_clip);
  }
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
    if (gpu || gpu_model) {
      if (gpu) gpu->set_order(order);
      else gpu_model->set_order(order);
      for (long s = 0; s < steps_per_epoch; ++s, ++step) {
        kernels::AdamWParams p;
        p.lr = learning_rate(c, step, total);
        p.weight_decay = weight_decay(c, step, total);
        p.step = step + 1;
        if (gpu) gpu->step(static_cast<std::size_t>(s) * c.batch, p);
        else gpu_model->step(static_cast<std::size_t>(s) * c.batch, p);
      }
      if (gpu) {
        const CudaTrainer::Totals t = gpu->take_totals();  // waits for the epoch's steps
        loss_sum = t.loss_sum;
        correct_sum = t.correct;
        gpu->download(*net.mlp(), m, v);
      } else {
        const CudaModelTrainer::Totals t = gpu_model->take_totals();
        loss_sum = t.loss_sum;
        correct_sum = t.correct;
        gpu_model->download(weights, m, v);
      }
    }
#endif
    const long host_steps = c.device == TrainDevice::Cpu ? steps_per_epoch : 0;  // else the GPU ran them
    for (long s = 0; s < host_steps; ++s, ++step) {
      if (c.fit_threads) fit.step();
      for (int b = 0; b < c.batch; ++b) {
        const std::uint32_t i = order[static_cast<std::size_t>(s) * c.batch + b];
        std::copy_n(train.pixels.data() + i * features, features, pixels.data() + b * features);
        labels[b] = train.labels[i];
      }
      int correct = 0;
      const std::vector<float>* teacher_logits = teacher ? &teacher(pixels.data(), c.batch) : nullptr;
      loss_sum += net.step(pixels.data(), labels.data(), c.batch, quantized, teacher_logits, correct, grads);
      correct_sum += correct;
      kernels::AdamWParams p;
      p.lr = learning_rate(c, step, total);
      p.weight_decay = weight_decay(c, step, total);
      p.step = step + 1;
      const float decay = p.weight_decay;
      for (std::size_t k = 0; k < weights.size(); ++k) {
        p.weight_decay = net.decays(k) ? decay : 0.0f;
        kernels::adamw_step(weights[k]->data(), grads[k].data(), m[k].data(), v[k].data(), grads[k].size(), p);
      }
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    seconds_this_run += seconds;
    steps_this_run += steps_per_epoch;
    result.epoch_steps_per_s.push_back(seconds > 0 ? steps_per_epoch / seconds : 0);

    Checkpoint ck{fp, epoch + 1, step, seconds_before + seconds_this_run, net.checkpoint_layers(), m, v};
    save_checkpoint(checkpoint, ck);

    const double test_accuracy = net.evaluate(test, quantized);
    result.test_accuracy = test_accuracy;
    if (progress) {
      const float rate = static_cast<float>(steps_this_run / seconds_this_run);
      progress({phase, epoch + 1, c.epochs, static_cast<float>(loss_sum / steps_per_epoch),
                static_cast<float>(correct_sum) / static_cast<float>(steps_per_epoch * c.batch),
                static_cast<float>(test_accuracy), static_cast<float>(result.epoch_steps_per_s.back()), rate,
                static_cast<float>((c.epochs - epoch - 1) * steps_per_epoch) / rate, kernels::threads()});
    }
  }
  if (start_epoch == c.epochs)  // everything restored: evaluate the final weights
    result.test_accuracy = net.evaluate(test, quantized);
  result.steps = steps_this_run;
  result.train_seconds = seconds_this_run;
  result.steps_per_s = seconds_this_run > 0 ? steps_this_run / seconds_this_run : 0;
  return result;
}

void check_run(const TrainConfig& config, const Dataset& train_set,
               const Dataset& test, const std::filesystem::path& checkpoint_dir) {
  if (config.distill && !config.train_fp32)
    throw std::invalid_argument("--distill: distillation learns from the FP32 twin, which --no-fp32 skips");
  if (config.distill && config.device == TrainDevice::Cuda)  // before any phase runs
    throw std::runtime_error("training on CUDA: distillation (--distill) trains on the CPU only; use --device cpu");
  if (train_set.features != test.features || train_set.classes != test.classes)
    throw std::runtime_error(test.source + ": test images or classes differ from the training set " + train_set.source);
  kernels::set_threads(config.threads);
  std::filesystem::create_directories(checkpoint_dir);
}

}  // namespace

TrainResult train(const target::TargetSpec& target, const TrainConfig& config, const Dataset& train_set,
                  const Dataset& test, const std::filesystem::path& checkpoint_dir, bool resume,
                  const std::function<void(const EpochProgress&)>& progress) {
  if (target.format.act_quantizer != arith::ActQuantizer::DynamicPerTokenAbsmax)
    throw std::runtime_error(target.origin + ": field 'activations.quantizer': the MLP trainer runs "
                             "\"dynamic_per_token_absmax\" only; train a static target's network with --model");
  check_run(config, train_set, test, checkpoint_dir);
  const int features = static_cast<int>(train_set.features);
  TrainResult r;
  if (config.train_fp32) {
    r.fp32 = make_mlp(features, config.hidden, train_set.classes, config.seed);
    MlpLearner learner(r.fp32, target, config);
    r.fp32_result = run_phase(Phase::Fp32, target, config, train_set, test, checkpoint_dir / "fp32.ckpt", resume,
                              progress, learner, nullptr);
    r.ptq_result.ran = true;
    r.ptq_result.test_accuracy = evaluate_quantized(r.fp32, target, test).accuracy;
  }
  r.qat = config.qat_from_fp32 && config.train_fp32 ? r.fp32
                                                      : make_mlp(features, config.hidden, train_set.classes, config.seed);
  MlpLearner learner(r.qat, target, config);
  r.qat_result = run_phase(Phase::Qat, target, config, train_set, test, checkpoint_dir / "qat.ckpt", resume, progress,
                           learner, nullptr);
  if (config.distill) {
    r.kd = config.qat_from_fp32 ? r.fp32 : make_mlp(features, config.hidden, train_set.classes, config.seed);
    MlpLearner kd(r.kd, target, config);
    Activations teacher_act;
    const Teacher teacher = [&](const std::uint8_t* pixels, int batch) -> const std::vector<float>& {
      forward_fp32(r.fp32, pixels, batch, teacher_act);
      return teacher_act.logits;
    };
    r.kd_result = run_phase(Phase::QatKd, target, config, train_set, test, checkpoint_dir / "qat-kd.ckpt", resume,
                            progress, kd, nullptr, teacher);
  }
  return r;
}

ModelTrainResult train_model(const model::ModelSpec& model, const target::TargetSpec& target, const TrainConfig& config,
                             const Dataset& train_set, const Dataset& test, const std::filesystem::path& checkpoint_dir,
                             bool resume, const std::function<void(const EpochProgress&)>& progress) {
  check_run(config, train_set, test, checkpoint_dir);
  if (static_cast<std::size_t>(model.input.size()) != train_set.features)
    throw std::runtime_error(model.origin + ": field 'input': the model reads " + std::to_string(model.input.size()) +
                             " values per sample; " + train_set.source + " has " +
                             std::to_string(train_set.features) + " pixels per image");
  const nlohmann::json network = model::to_json(model)["layers"];
  ModelTrainResult r{SpecNet(model, config.seed), SpecNet(model, config.seed), SpecNet(model, config.seed), {}, {}, {},
                     {}};
  if (config.train_fp32) {
    SpecLearner learner(r.fp32, target, config, false);
    r.fp32_result = run_phase(Phase::Fp32, target, config, train_set, test, checkpoint_dir / "fp32.ckpt", resume,
                              progress, learner, network);
    calibrate(r.fp32, target, train_set, config.calibration);
    r.ptq_result.ran = true;
    r.ptq_result.test_accuracy = evaluate_quantized(r.fp32, target, test).accuracy;
  }
  if (config.qat_from_fp32 && config.train_fp32) r.qat.weights() = r.fp32.weights();
  SpecLearner learner(r.qat, target, config, true);
  r.qat_result = run_phase(Phase::Qat, target, config, train_set, test, checkpoint_dir / "qat.ckpt", resume, progress,
                           learner, network);
  if (config.distill) {
    if (config.qat_from_fp32) r.kd.weights() = r.fp32.weights();
    SpecLearner kd(r.kd, target, config, true);
    std::vector<float> values;
    const std::size_t features = static_cast<std::size_t>(model.input.size());
    const Teacher teacher = [&](const std::uint8_t* pixels, int batch) -> const std::vector<float>& {
      return r.fp32.forward(to_values(pixels, batch, features, values), batch);
    };
    r.kd_result = run_phase(Phase::QatKd, target, config, train_set, test, checkpoint_dir / "qat-kd.ckpt", resume,
                            progress, kd, network, teacher);
  }
  return r;
}

std::optional<std::vector<int>> mlp_hidden_sizes(const model::ModelSpec& model) {
  std::vector<int> hidden;
  std::size_t i = 0;
  if (i < model.layers.size() && model.layers[i].kind == model::LayerKind::Flatten) ++i;
  // Pairs of linear and relu, then the output layer.
  while (i < model.layers.size()) {
    const model::LayerSpec& l = model.layers[i];
    if (!l.input.empty() || l.kind != model::LayerKind::Linear) return std::nullopt;
    if (i + 1 == model.layers.size()) return hidden;  // the output layer
    if (model.layers[i + 1].kind != model::LayerKind::Relu || !model.layers[i + 1].input.empty()) return std::nullopt;
    hidden.push_back(l.out);
    i += 2;
  }
  return std::nullopt;
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

namespace qathw::training {

QuantizedEval evaluate_quantized(SpecNet& net, const target::TargetSpec& target, const Dataset& data) {
  net.quantize_kernels(target.format);
  const int classes = net.spec().classes();
  const std::size_t last = net.spec().layers.size() - 1;
  QuantizedEval eval;
  eval.outputs.resize(data.count * classes);
  long correct = 0;
  for (std::size_t start = 0; start < data.count; start += kEvalBatch) {
    const int batch = static_cast<int>(std::min<std::size_t>(kEvalBatch, data.count - start));
    net.forward_quantized(data.pixels.data() + start * data.features, batch, target.format, target.array.lanes);
    const std::vector<std::int32_t>& z = net.integers(last);
    std::copy(z.begin(), z.end(), eval.outputs.begin() + static_cast<std::ptrdiff_t>(start * classes));
    for (int b = 0; b < batch; ++b)
      if (argmax(z.data() + static_cast<std::size_t>(b) * classes, classes) == data.labels[start + b]) ++correct;
  }
  eval.accuracy = static_cast<double>(correct) / static_cast<double>(data.count);
  return eval;
}

double evaluate_fp32(SpecNet& net, const Dataset& data) {
  const int classes = net.spec().classes();
  std::vector<float> values;
  long correct = 0;
  for (std::size_t start = 0; start < data.count; start += kEvalBatch) {
    const int batch = static_cast<int>(std::min<std::size_t>(kEvalBatch, data.count - start));
    const std::vector<float>& logits =
        net.forward(to_values(data.pixels.data() + start * data.features, batch, data.features, values), batch);
    for (int b = 0; b < batch; ++b)
      if (argmax(logits.data() + static_cast<std::size_t>(b) * classes, classes) == data.labels[start + b]) ++correct;
  }
  return static_cast<double>(correct) / static_cast<double>(data.count);
}

}  // namespace qathw::training
