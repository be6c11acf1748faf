// QAT training runs: the FP32 twin, PTQ of its weights, and QAT on the target's arithmetic.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qathw/target/target_spec.h"
#include "qathw/training/idx.h"
#include "qathw/model/model_spec.h"
#include "qathw/training/network.h"
#include "qathw/training/spec_net.h"

namespace qathw::training {

// Where the training steps run. Cuda: the kernels of qathw/kernels/cuda.h (a build with CUDA
// and a device); the test-set evaluation and the export stay on the host either way.
enum class TrainDevice { Cpu, Cuda };

struct TrainConfig {
  std::vector<int> hidden = {256, 256};
  int epochs = 20;
  int batch = 256;
  float lr = 4e-3f;
  float weight_decay = 0.05f;  // applied in the first half of the steps, 0 after (BitNet b1.58)
  float warmup_frac = 0.05f;   // linear warm-up, then cosine decay to 0
  std::uint64_t seed = 1;
  int threads = 2;
  // The count follows the machine between 1 and `threads` (util::ThreadFit): results do not
  // depend on it, so only the speed changes.
  bool fit_threads = false;
  bool ste_clip = false;  // zero weight gradients where the weight quantizer clips
  bool train_fp32 = true;  // the FP32 twin (and so PTQ)
  bool qat_from_fp32 = false;  // QAT starts from the FP32 twin's weights (when it is trained), not from scratch
  // Static quantizers' calibration: the fraction of the input magnitudes the initial step covers
  // (a percentile; 1 is min-max), on the first 256 training samples.
  double calibration = 0.9999;
  // A further QAT phase distilled from the FP32 twin (QAT+KD), exported instead of plain QAT.
  bool distill = false;
  float distill_temperature = 4.0f;
  float distill_weight = 0.5f;  // of the distillation term; the rest is the labels' cross-entropy
  TrainDevice device = TrainDevice::Cpu;  // not part of to_json: a run's settings, not its result
};

nlohmann::json to_json(const TrainConfig& c);

enum class Phase { Fp32, Qat, QatKd };
const char* phase_name(Phase p);  // "fp32", "qat", "qat+kd"

// The learning rate and weight decay of a 0-based step out of `total`.
float learning_rate(const TrainConfig& c, long step, long total);
float weight_decay(const TrainConfig& c, long step, long total);

struct EpochProgress {
  Phase phase;
  int epoch, epochs;
  float loss, train_accuracy, test_accuracy;
  float steps_per_s;        // this epoch's
  float run_steps_per_s;    // over the epochs trained in this run so far
  float eta_s;
  int threads;              // host threads at the end of the epoch
};

struct PhaseResult {
  bool ran = false;
  double test_accuracy = 0;
  double steps_per_s = 0;                // over the epochs trained in this run
  std::vector<double> epoch_steps_per_s;  // each epoch trained in this run
  double train_seconds = 0;
  long steps = 0;
  int epochs_resumed = 0;  // epochs restored from a checkpoint rather than trained in this run
};

struct TrainResult {
  Mlp fp32, qat, kd;
  PhaseResult fp32_result, ptq_result, qat_result, kd_result;
};

// Trains on `train`, evaluates on `test`. Checkpoints after every epoch into `checkpoint_dir`
// (atomically); with `resume`, continues from the checkpoints there to the same result as an
// uninterrupted run.
TrainResult train(const target::TargetSpec& target, const TrainConfig& config, const Dataset& train,
                  const Dataset& test, const std::filesystem::path& checkpoint_dir, bool resume,
                  const std::function<void(const EpochProgress&)>& progress);

// The same runs for a network a model file describes (models/*.toml; convolutions, pools,
// branches), on the CPU. `config.hidden` plays no part.
struct ModelTrainResult {
  SpecNet fp32, qat, kd;
  PhaseResult fp32_result, ptq_result, qat_result, kd_result;
};
ModelTrainResult train_model(const model::ModelSpec& model, const target::TargetSpec& target, const TrainConfig& config,
                             const Dataset& train, const Dataset& test, const std::filesystem::path& checkpoint_dir,
                             bool resume, const std::function<void(const EpochProgress&)>& progress);

// The hidden layer sizes of a model that is a plain MLP (an optional flatten, then linear layers
// with a relu between each two, none after the last), which the MLP trainer runs; else empty.
std::optional<std::vector<int>> mlp_hidden_sizes(const model::ModelSpec& model);

// Output-layer integers of the quantized forward for every sample (count x classes), and the
// accuracy they give.
struct QuantizedEval {
  std::vector<std::int32_t> outputs;
  double accuracy = 0;
};
QuantizedEval evaluate_quantized(const Mlp& net, const target::TargetSpec& target, const Dataset& data);
double evaluate_fp32(const Mlp& net, const Dataset& data);
QuantizedEval evaluate_quantized(SpecNet& net, const target::TargetSpec& target, const Dataset& data);
double evaluate_fp32(SpecNet& net, const Dataset& data);

}  // namespace qathw::training
