// Training runs of a model file's network (convolutions, pools, a grouped convolution) on the
// tiny IDX data set: learning, what QAT trains is what the integer engine computes on the
// exported bundle, resuming from checkpoints, and which models the MLP trainer takes.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "../arith/test_support.h"
#include "qathw/model/bundle.h"
#include "qathw/model/int_engine.h"
#include "qathw/training/export.h"
#include "qathw/training/trainer.h"
#include "temp_dir.h"
#include "tiny_data.h"

namespace qathw::training {
namespace {

namespace fs = std::filesystem;
using qathw::test::TempDir;
using qathw::test::tiny_test;
using qathw::test::tiny_train;


// A small CNN for the tiny set's 8x10 images: every kind of kernel and pool the trainer learns.
model::ModelSpec tiny_cnn(int stride = 1) {
  const std::string toml = R"(name = "tiny-cnn"
input = [8, 10, 1]
[[layers]]
type = "conv2d"
out = 8
kernel = 3
padding = 1
[[layers]]
type = "relu"
[[layers]]
type = "max_pool"
kernel = 2
[[layers]]
type = "conv2d"
out = 8
kernel = 3
groups = 4
stride = )" + std::to_string(stride) + R"(
padding = 1
[[layers]]
type = "relu"
[[layers]]
type = "avg_pool"
kernel = 2
[[layers]]
type = "flatten"
[[layers]]
type = "linear"
out = 16
[[layers]]
type = "relu"
[[layers]]
type = "linear"
out = "classes"
)";
  return model::parse_model(toml, "tiny-cnn.toml", 4);
}

// A residual block on the tiny set: the add's operands need static quantizers upstream.
model::ModelSpec tiny_residual() {
  const std::string toml = R"(name = "tiny-residual"
input = [8, 10, 1]
[[layers]]
type = "conv2d"
out = 8
kernel = 3
padding = 1
[[layers]]
type = "relu"
name = "stem"
[[layers]]
type = "conv2d"
out = 8
kernel = 3
padding = 1
[[layers]]
type = "relu"
[[layers]]
type = "conv2d"
out = 8
kernel = 3
padding = 1
[[layers]]
type = "add"
residual = "stem"
[[layers]]
type = "relu"
[[layers]]
type = "max_pool"
kernel = 2
[[layers]]
type = "flatten"
[[layers]]
type = "linear"
out = "classes"
)";
  return model::parse_model(toml, "tiny-residual.toml", 4);
}

target::TargetSpec static_target(const char* name) {
  target::TargetSpec t = target::builtin_target(name);
  t.format.act_quantizer = arith::ActQuantizer::StaticPerTensor;
  return t;
}

TrainConfig small_config() {
  TrainConfig c;
  c.epochs = 4;
  c.batch = 16;
  c.lr = 1e-2f;
  c.threads = 2;
  c.seed = test::test_seed(11);
  return c;
}

bool same_bits(const SpecNet& a, const SpecNet& b) {
  const auto& x = a.weights();
  const auto& y = b.weights();
  if (x.size() != y.size()) return false;
  for (std::size_t i = 0; i < x.size(); ++i)
    if (x[i].size() != y[i].size() ||
        (!x[i].empty() && std::memcmp(x[i].data(), y[i].data(), x[i].size() * sizeof(float)) != 0))
      return false;
  return true;
}

class ModelOnTiny : public ::testing::TestWithParam<const char*> {};

TEST_P(ModelOnTiny, LossFallsAndTheDeployedBundleComputesTheTrainersIntegers) {
  const target::TargetSpec t = target::builtin_target(GetParam());
  const TrainConfig c = small_config();
  SCOPED_TRACE(test::seed_note(c.seed));
  TempDir dir;
  std::vector<EpochProgress> epochs;
  ModelTrainResult r = train_model(tiny_cnn(), t, c, tiny_train(), tiny_test(), dir / "ck", false,
                                   [&](const EpochProgress& p) { epochs.push_back(p); });
  ASSERT_EQ(epochs.size(), 8u);
  for (int phase = 0; phase < 2; ++phase)
    EXPECT_LT(epochs[phase * 4 + 3].loss, 0.8f * epochs[phase * 4].loss) << (phase == 0 ? "fp32" : "qat");
  EXPECT_TRUE(r.ptq_result.ran);
  EXPECT_GT(r.qat_result.test_accuracy, 0.5);  // four classes: chance is 25%
  EXPECT_FALSE(same_bits(r.qat, SpecNet(tiny_cnn(), c.seed)));

  const Dataset& test = tiny_test();
  const QuantizedEval eval = evaluate_quantized(r.qat, t, test);
  EXPECT_DOUBLE_EQ(eval.accuracy, r.qat_result.test_accuracy);
  model::save_bundle(dir / "model.qhw", make_bundle(r.qat, t, to_json(c)));
  const model::Bundle bundle = model::load_bundle(dir / "model.qhw", &t);
  const std::vector<std::int32_t> engine = model::IntEngine(bundle).run_batch(test.pixels.data(), test.count);
  ASSERT_EQ(engine.size(), eval.outputs.size());
  for (std::size_t i = 0; i < engine.size(); ++i) ASSERT_EQ(engine[i], eval.outputs[i]) << "output integer " << i;
}

struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

// Stopped after the first QAT epoch and resumed: the weights of an uninterrupted run, bit for bit.
TEST_P(ModelOnTiny, ResumedRunEqualsUninterruptedRun) {
  const target::TargetSpec t = target::builtin_target(GetParam());
  TrainConfig c = small_config();
  c.epochs = 3;
  SCOPED_TRACE(test::seed_note(c.seed));
  TempDir dir;
  const ModelTrainResult whole = train_model(tiny_cnn(), t, c, tiny_train(), tiny_test(), dir / "whole", false, nullptr);
  auto stop = [](const EpochProgress& p) {
    if (p.phase == Phase::Qat) throw Interrupted();
  };
  EXPECT_THROW(train_model(tiny_cnn(), t, c, tiny_train(), tiny_test(), dir / "cut", false, stop), Interrupted);
  const ModelTrainResult resumed = train_model(tiny_cnn(), t, c, tiny_train(), tiny_test(), dir / "cut", true, nullptr);
  EXPECT_EQ(resumed.fp32_result.epochs_resumed, c.epochs);
  EXPECT_EQ(resumed.qat_result.epochs_resumed, 1);
  EXPECT_TRUE(same_bits(resumed.fp32, whole.fp32));
  EXPECT_TRUE(same_bits(resumed.qat, whole.qat));
  EXPECT_EQ(resumed.qat_result.test_accuracy, whole.qat_result.test_accuracy);
}

// The thread count changes no bit: convolutions sum their chunks in a fixed order.
TEST_P(ModelOnTiny, ThreadCountChangesNoBit) {
  const target::TargetSpec t = target::builtin_target(GetParam());
  TrainConfig c = small_config();
  c.epochs = 2;
  SCOPED_TRACE(test::seed_note(c.seed));
  TempDir dir;
  c.threads = 1;
  const ModelTrainResult one = train_model(tiny_cnn(), t, c, tiny_train(), tiny_test(), dir / "1", false, nullptr);
  c.threads = 3;
  const ModelTrainResult three = train_model(tiny_cnn(), t, c, tiny_train(), tiny_test(), dir / "3", false, nullptr);
  EXPECT_TRUE(same_bits(one.fp32, three.fp32));
  EXPECT_TRUE(same_bits(one.qat, three.qat));
}

INSTANTIATE_TEST_SUITE_P(Targets, ModelOnTiny, ::testing::Values("ternary-asic", "int4-fpga"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string s = info.param;
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

// Static quantizers where an add needs fixed units (everything upstream of it), dynamic after;
// all static on a static target.
TEST(StaticScales, QuantizersUpstreamOfAnAddOrOnAStaticTargetAreStatic) {
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  const SpecNet residual(tiny_residual(), 1);
  const std::vector<bool> fixed = residual.static_quantizers(t.format);
  const std::vector<bool> want = {true, false, true, false, true, false, false, false, false, false};
  EXPECT_EQ(fixed, want);
  const SpecNet cnn(tiny_cnn(), 1);
  for (bool f : cnn.static_quantizers(t.format)) EXPECT_FALSE(f);
  const std::vector<bool> all = cnn.static_quantizers(static_target("ternary-asic").format);
  for (std::size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i], !cnn.weights()[i].empty()) << "layer " << i;
}

// Residual adds (and a static target's network): QAT learns the steps, the bundle holds the
// static quantizers' and adds' pairs, and the integer engine computes the trainer's integers.
class StaticOnTiny : public ::testing::TestWithParam<const char*> {};

TEST_P(StaticOnTiny, ResidualModelDeploysTheTrainersIntegers) {
  const target::TargetSpec t = target::builtin_target(GetParam());
  const TrainConfig c = small_config();
  SCOPED_TRACE(test::seed_note(c.seed));
  TempDir dir;
  ModelTrainResult r = train_model(tiny_residual(), t, c, tiny_train(), tiny_test(), dir / "ck", false, nullptr);
  EXPECT_GT(r.qat_result.test_accuracy, 0.5);
  EXPECT_GT(r.ptq_result.test_accuracy, 0.25);
  // The steps moved from their calibration.
  SpecNet calibrated(tiny_residual(), c.seed);
  calibrated.quantize_kernels(t.format);
  calibrated.calibrate_static(tiny_train().pixels.data(), 256, t.format, t.array.lanes, c.calibration);
  EXPECT_NE(r.qat.steps()[2], calibrated.steps()[2]);
  EXPECT_GT(r.qat.steps()[2], 0.0f);

  const Dataset& test = tiny_test();
  const QuantizedEval eval = evaluate_quantized(r.qat, t, test);
  model::save_bundle(dir / "model.qhw", make_bundle(r.qat, t, to_json(c)));
  const model::Bundle bundle = model::load_bundle(dir / "model.qhw", &t);
  int static_quantizers = 0, adds = 0;
  for (const model::Op& op : bundle.graph.ops) {
    static_quantizers += op.type == model::OpType::Quantize && !op.pairs.empty();
    adds += op.type == model::OpType::Add && op.pairs.size() == 2;
  }
  EXPECT_EQ(static_quantizers, 3);
  EXPECT_EQ(adds, 1);
  const std::vector<std::int32_t> engine = model::IntEngine(bundle).run_batch(test.pixels.data(), test.count);
  ASSERT_EQ(engine.size(), eval.outputs.size());
  for (std::size_t i = 0; i < engine.size(); ++i) ASSERT_EQ(engine[i], eval.outputs[i]) << "output integer " << i;
}

TEST_P(StaticOnTiny, StaticTargetDeploysTheTrainersIntegers) {
  const target::TargetSpec t = static_target(GetParam());
  TrainConfig c = small_config();
  c.calibration = 1.0;  // min-max
  SCOPED_TRACE(test::seed_note(c.seed));
  TempDir dir;
  ModelTrainResult r = train_model(tiny_cnn(), t, c, tiny_train(), tiny_test(), dir / "ck", false, nullptr);
  EXPECT_GT(r.qat_result.test_accuracy, 0.5);
  const Dataset& test = tiny_test();
  const QuantizedEval eval = evaluate_quantized(r.qat, t, test);
  const model::Bundle bundle = make_bundle(r.qat, t, to_json(c));
  for (const model::Op& op : bundle.graph.ops)
    if (op.type == model::OpType::Quantize) {
      EXPECT_EQ(op.pairs.size(), 1u) << op.name;
    }
  const std::vector<std::int32_t> engine = model::IntEngine(bundle).run_batch(test.pixels.data(), test.count);
  ASSERT_EQ(engine.size(), eval.outputs.size());
  for (std::size_t i = 0; i < engine.size(); ++i) ASSERT_EQ(engine[i], eval.outputs[i]) << "output integer " << i;
}

// The learned steps travel in the checkpoints: a resumed run ends bit for bit where an
// uninterrupted one does.
TEST_P(StaticOnTiny, ResumedResidualRunEqualsUninterruptedRun) {
  const target::TargetSpec t = target::builtin_target(GetParam());
  TrainConfig c = small_config();
  c.epochs = 3;
  SCOPED_TRACE(test::seed_note(c.seed));
  TempDir dir;
  const ModelTrainResult whole =
      train_model(tiny_residual(), t, c, tiny_train(), tiny_test(), dir / "whole", false, nullptr);
  auto stop = [](const EpochProgress& p) {
    if (p.phase == Phase::Qat && p.epoch == 2) throw Interrupted();
  };
  EXPECT_THROW(train_model(tiny_residual(), t, c, tiny_train(), tiny_test(), dir / "cut", false, stop), Interrupted);
  const ModelTrainResult resumed =
      train_model(tiny_residual(), t, c, tiny_train(), tiny_test(), dir / "cut", true, nullptr);
  EXPECT_EQ(resumed.qat_result.epochs_resumed, 2);
  EXPECT_TRUE(same_bits(resumed.qat, whole.qat));
  EXPECT_EQ(resumed.qat.steps(), whole.qat.steps());
  EXPECT_EQ(resumed.qat_result.test_accuracy, whole.qat_result.test_accuracy);
}

INSTANTIATE_TEST_SUITE_P(Targets, StaticOnTiny, ::testing::Values("ternary-asic", "int4-fpga"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string s = info.param;
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

// LSQ's step gradient: inputs inside the range contribute round(x/s) - x/s, clipped ones -Q or Q,
// each times d loss / d (its code's real value); only the unclipped pass the gradient on.
TEST(StaticScales, StepGradientIsLsqs) {
  const target::TargetSpec t = static_target("ternary-asic");
  const model::ModelSpec m = model::parse_model(
      "name = \"one\"\ninput = [2, 3, 1]\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"linear\"\n"
      "out = \"classes\"\n", "one.toml", 2);
  SpecNet net(m, 5);
  net.quantize_kernels(t.format);
  const std::vector<std::uint8_t> pixels = {0, 40, 90, 130, 200, 255, 255, 17, 3, 100, 160, 250};
  net.calibrate_static(pixels.data(), 2, t.format, t.array.lanes, 1.0);
  net.steps()[1] *= 0.5f;  // half the calibrated step: the largest pixels clip
  net.forward_quantized(pixels.data(), 2, t.format, t.array.lanes);
  const std::vector<float> dlogits = {0.25f, -0.5f, 1.0f, 0.75f};
  std::vector<std::vector<float>> grads;
  net.backward_quantized(dlogits, false, grads);

  const double q = 127.0;
  const double step = 1.0 / 255.0 / arith::to_real(net.input_pairs(1)[0]);
  const std::vector<float>& w = net.quantized()[1].dequantized;
  double want = 0;
  int clipped = 0;
  for (int b = 0; b < 2; ++b)
    for (int k = 0; k < 6; ++k) {
      const double x = pixels[b * 6 + k] / 255.0 / step;
      const double dcode = dlogits[b * 2] * w[k] + dlogits[b * 2 + 1] * w[6 + k];  // d loss / d (code's value)
      const double code = std::max(-q, std::min(q, std::round(x)));
      clipped += x > q;
      want += dcode * (x > q ? q : code - x);
    }
  want /= std::sqrt(6.0 * q);
  EXPECT_GT(clipped, 0);
  EXPECT_NEAR(net.step_gradients()[1], want, 1e-4 * std::max(1.0, std::abs(want)));
  EXPECT_EQ(net.step_gradients()[0], 0.0f);
}

// Distillation's loss: the cross-entropy alone at weight 0; its gradient the loss's derivative.
TEST(Distillation, LossAndGradient) {
  const std::uint64_t seed = test::test_seed(21);
  SCOPED_TRACE(test::seed_note(seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> n(0.0f, 2.0f);
  const int batch = 3, classes = 5;
  std::vector<float> logits(batch * classes), teacher(batch * classes);
  for (float& v : logits) v = n(rng);
  for (float& v : teacher) v = n(rng);
  const std::vector<std::uint8_t> labels = {1, 4, 0};
  std::vector<float> d, d_ce;
  int correct = 0, correct_ce = 0;
  const float ce = softmax_cross_entropy(logits, labels.data(), batch, classes, d_ce, correct_ce);
  EXPECT_FLOAT_EQ(distillation_loss(logits, teacher, labels.data(), batch, classes, 4.0f, 0.0f, d, correct), ce);
  EXPECT_EQ(correct, correct_ce);
  for (std::size_t k = 0; k < d.size(); ++k) EXPECT_FLOAT_EQ(d[k], d_ce[k]);

  // At weight 0.7 and temperature 3: central differences of the loss.
  const auto loss = [&](const std::vector<float>& z) {
    std::vector<float> unused;
    int c = 0;
    return static_cast<double>(distillation_loss(z, teacher, labels.data(), batch, classes, 3.0f, 0.7f, unused, c));
  };
  distillation_loss(logits, teacher, labels.data(), batch, classes, 3.0f, 0.7f, d, correct);
  for (std::size_t k = 0; k < logits.size(); ++k) {
    std::vector<float> up = logits, down = logits;
    const float h = 1e-2f;
    up[k] += h;
    down[k] -= h;
    EXPECT_NEAR(d[k], (loss(up) - loss(down)) / (2 * h), 2e-3) << "logit " << k;
  }
  // The teacher itself as the student: no distillation gradient is left, only the labels'.
  distillation_loss(teacher, teacher, labels.data(), batch, classes, 3.0f, 1.0f, d, correct);
  for (float g : d) EXPECT_NEAR(g, 0.0f, 1e-7f);
}

// --distill: a third, distilled QAT run; what it exports is what the integer engine computes.
TEST(Distillation, DistilledRunDeploysTheTrainersIntegers) {
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  TrainConfig c = small_config();
  c.epochs = 2;
  c.distill = true;
  SCOPED_TRACE(test::seed_note(c.seed));
  TempDir dir;
  std::vector<Phase> phases;
  ModelTrainResult r = train_model(tiny_cnn(), t, c, tiny_train(), tiny_test(), dir / "ck", false,
                                   [&](const EpochProgress& p) { phases.push_back(p.phase); });
  EXPECT_EQ(phases, std::vector<Phase>({Phase::Fp32, Phase::Fp32, Phase::Qat, Phase::Qat, Phase::QatKd, Phase::QatKd}));
  ASSERT_TRUE(r.kd_result.ran);
  EXPECT_FALSE(same_bits(r.kd, r.qat));
  EXPECT_TRUE(fs::exists(dir / "ck" / "qat-kd.ckpt"));
  const Dataset& test = tiny_test();
  const QuantizedEval eval = evaluate_quantized(r.kd, t, test);
  EXPECT_DOUBLE_EQ(eval.accuracy, r.kd_result.test_accuracy);
  const model::Bundle bundle = make_bundle(r.kd, t, to_json(c));
  const std::vector<std::int32_t> engine = model::IntEngine(bundle).run_batch(test.pixels.data(), test.count);
  ASSERT_EQ(engine.size(), eval.outputs.size());
  for (std::size_t i = 0; i < engine.size(); ++i) ASSERT_EQ(engine[i], eval.outputs[i]) << "output integer " << i;
  c.train_fp32 = false;
  EXPECT_THROW(train_model(tiny_cnn(), t, c, tiny_train(), tiny_test(), dir / "no-fp32", false, nullptr),
               std::invalid_argument);
}

// A checkpoint of another model (the same kernel shapes, another stride) does not resume.
TEST(ModelResume, CheckpointOfAnotherModelIsRejected) {
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  TrainConfig c = small_config();
  c.epochs = 1;
  TempDir dir;
  train_model(tiny_cnn(1), t, c, tiny_train(), tiny_test(), dir.path(), false, nullptr);
  try {
    train_model(tiny_cnn(2), t, c, tiny_train(), tiny_test(), dir.path(), true, nullptr);
    FAIL() << "resumed another model's checkpoint";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("belongs to a run with other settings"), std::string::npos) << e.what();
  }
}

TEST(ModelTrain, ModelReadingAnotherImageSizeIsAnError) {
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  TempDir dir;
  try {
    train_model(model::resolve_model("lenet", 4), t, small_config(), tiny_train(), tiny_test(), dir.path(), false,
                nullptr);
    FAIL() << "trained a 28x28 model on 8x10 images";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("field 'input'"), std::string::npos) << e.what();
  }
}

TEST(ModelTrain, PlainMlpModelsGoToTheMlpTrainer) {
  EXPECT_EQ(mlp_hidden_sizes(model::resolve_model("mlp", 10)), std::vector<int>({256, 256}));
  EXPECT_EQ(mlp_hidden_sizes(model::resolve_model("lenet", 10)), std::nullopt);
  const auto one_layer = model::parse_model("name = \"m\"\ninput = [2, 3, 1]\n[[layers]]\ntype = \"flatten\"\n[[layers]]\n"
                                            "type = \"linear\"\nout = \"classes\"\n", "one.toml", 4);
  EXPECT_EQ(mlp_hidden_sizes(one_layer), std::vector<int>());
  // Two relus in a row, or a linear layer without one, are not the MLP trainer's network.
  const auto two_relus = model::parse_model("name = \"m\"\ninput = [2, 3, 1]\n[[layers]]\ntype = \"flatten\"\n[[layers]]\n"
                                            "type = \"linear\"\nout = 5\n[[layers]]\ntype = \"relu\"\n[[layers]]\n"
                                            "type = \"relu\"\n[[layers]]\ntype = \"linear\"\nout = \"classes\"\n",
                                            "two.toml", 4);
  EXPECT_EQ(mlp_hidden_sizes(two_relus), std::nullopt);
  const auto no_relu = model::parse_model("name = \"m\"\ninput = [2, 3, 1]\n[[layers]]\ntype = \"flatten\"\n[[layers]]\n"
                                          "type = \"linear\"\nout = 5\n[[layers]]\ntype = \"linear\"\n"
                                          "out = \"classes\"\n", "norelu.toml", 4);
  EXPECT_EQ(mlp_hidden_sizes(no_relu), std::nullopt);
}

}  // namespace
}  // namespace qathw::training
