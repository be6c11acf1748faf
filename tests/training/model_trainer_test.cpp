// Training runs of a model file's network (convolutions, pools, a grouped convolution) on the
// tiny IDX data set: learning, what QAT trains is what the integer engine computes on the
// exported bundle, resuming from checkpoints, and which models the MLP trainer takes.
#include <cstring>
#include <filesystem>
#include <functional>
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

namespace qathw::training {
namespace {

namespace fs = std::filesystem;
using qathw::test::TempDir;

const Dataset& tiny_train() {
  static const Dataset d = load_split(QATHW_TINY_IDX_DIR, Split::Train);
  return d;
}
const Dataset& tiny_test() {
  static const Dataset d = load_split(QATHW_TINY_IDX_DIR, Split::Test, tiny_train().classes);
  return d;
}

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
    if (x[i].size() != y[i].size() || std::memcmp(x[i].data(), y[i].data(), x[i].size() * sizeof(float)) != 0)
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
