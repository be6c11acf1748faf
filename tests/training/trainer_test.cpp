// Training runs on the tiny IDX data set: learning, the schedule, determinism, resuming from
// checkpoints, and that what QAT trains is what the integer engine computes.
#include "qathw/training/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <zlib.h>

#include "../arith/test_support.h"
#include "qathw/model/bundle.h"
#include "qathw/training/export.h"
#include "qathw/training/checkpoint.h"
#include "qathw/model/int_engine.h"
#include "temp_dir.h"
#include "tiny_data.h"

namespace qathw::training {
namespace {

namespace fs = std::filesystem;
using qathw::test::read_binary;
using qathw::test::TempDir;
using qathw::test::tiny_test;
using qathw::test::tiny_train;
using qathw::test::write_binary;


TrainConfig small_config() {
  TrainConfig c;
  c.hidden = {16};
  c.epochs = 3;
  c.batch = 16;
  c.lr = 1e-2f;
  c.threads = 2;
  c.seed = test::test_seed(7);
  return c;
}

bool same_bits(const Mlp& a, const Mlp& b) {
  if (a.layers.size() != b.layers.size()) return false;
  for (std::size_t l = 0; l < a.layers.size(); ++l) {
    const auto& x = a.layers[l].w;
    const auto& y = b.layers[l].w;
    if (a.layers[l].in != b.layers[l].in || a.layers[l].out != b.layers[l].out || x.size() != y.size() ||
        std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) != 0)
      return false;
  }
  return true;
}

// Records each epoch's progress report.
struct Progress {
  std::vector<EpochProgress> epochs;
  std::function<void(const EpochProgress&)> callback() {
    return [this](const EpochProgress& p) { epochs.push_back(p); };
  }
  std::vector<float> losses(Phase phase) const {
    std::vector<float> out;
    for (const auto& p : epochs)
      if (p.phase == phase) out.push_back(p.loss);
    return out;
  }
};

class TrainOnTiny : public ::testing::TestWithParam<const char*> {};

TEST_P(TrainOnTiny, LossFallsAndAccuracyBeatsChanceForFp32AndQat) {
  const target::TargetSpec t = target::builtin_target(GetParam());
  TrainConfig c = small_config();
  c.epochs = 4;
  SCOPED_TRACE(test::seed_note(c.seed));
  TempDir dir;
  Progress progress;
  const TrainResult r = train(t, c, tiny_train(), tiny_test(), dir.path(), false, progress.callback());
  ASSERT_EQ(progress.epochs.size(), 8u);
  for (Phase phase : {Phase::Fp32, Phase::Qat}) {
    const std::vector<float> losses = progress.losses(phase);
    ASSERT_EQ(losses.size(), 4u);
    EXPECT_LT(losses.back(), 0.7f * losses.front()) << (phase == Phase::Fp32 ? "fp32" : "qat");
    for (float l : losses) EXPECT_TRUE(std::isfinite(l));
  }
  EXPECT_TRUE(r.fp32_result.ran);
  EXPECT_TRUE(r.ptq_result.ran);
  EXPECT_TRUE(r.qat_result.ran);
  // Four classes: chance is 25%.
  EXPECT_GT(r.fp32_result.test_accuracy, 0.6);
  EXPECT_GT(r.qat_result.test_accuracy, 0.6);
  EXPECT_EQ(r.qat_result.steps, 4 * 16);
  EXPECT_EQ(r.qat_result.epochs_resumed, 0);
  // The last progress report carries the result's accuracy.
  EXPECT_FLOAT_EQ(progress.epochs.back().test_accuracy, static_cast<float>(r.qat_result.test_accuracy));
  EXPECT_TRUE(fs::exists(dir / "fp32.ckpt"));
  EXPECT_TRUE(fs::exists(dir / "qat.ckpt"));
}

// What QAT trained, deployed: the integer engine on its bundle reproduces the trainer's
// quantized evaluation integer for integer, and so its accuracy.
TEST_P(TrainOnTiny, DeployedBundleComputesTheTrainersIntegers) {
  const target::TargetSpec t = target::builtin_target(GetParam());
  TrainConfig c = small_config();
  c.train_fp32 = false;
  SCOPED_TRACE(test::seed_note(c.seed));
  TempDir dir;
  const TrainResult r = train(t, c, tiny_train(), tiny_test(), dir / "ck", false, nullptr);
  EXPECT_FALSE(r.fp32_result.ran);
  const Dataset& test = tiny_test();
  const QuantizedEval eval = evaluate_quantized(r.qat, t, test);
  EXPECT_DOUBLE_EQ(eval.accuracy, r.qat_result.test_accuracy);
  model::save_bundle(dir / "model.qhw", make_bundle(r.qat, t, 8, 10, to_json(c)));
  const model::Bundle bundle = model::load_bundle(dir / "model.qhw", &t);
  const std::vector<std::int32_t> engine = model::IntEngine(bundle).run_batch(test.pixels.data(), test.count);
  ASSERT_EQ(engine.size(), eval.outputs.size());
  long correct = 0;
  for (std::size_t i = 0; i < engine.size(); ++i) ASSERT_EQ(engine[i], eval.outputs[i]) << "output integer " << i;
  for (std::size_t s = 0; s < test.count; ++s)
    correct += argmax(engine.data() + s * 4, 4) == test.labels[s];
  EXPECT_DOUBLE_EQ(static_cast<double>(correct) / static_cast<double>(test.count), eval.accuracy);
}

TEST_P(TrainOnTiny, SameSeedAndThreadsGiveBitwiseIdenticalWeights) {
  const target::TargetSpec t = target::builtin_target(GetParam());
  const TrainConfig c = small_config();
  SCOPED_TRACE(test::seed_note(c.seed));
  TempDir dir;
  const TrainResult a = train(t, c, tiny_train(), tiny_test(), dir / "a", false, nullptr);
  const TrainResult b = train(t, c, tiny_train(), tiny_test(), dir / "b", false, nullptr);
  EXPECT_TRUE(same_bits(a.fp32, b.fp32));
  EXPECT_TRUE(same_bits(a.qat, b.qat));
  EXPECT_EQ(a.qat_result.test_accuracy, b.qat_result.test_accuracy);
  // Not the same as the initial weights, nor as a run with another seed.
  EXPECT_FALSE(same_bits(a.qat, make_mlp(80, c.hidden, 4, c.seed)));
  TrainConfig other = c;
  other.seed = c.seed + 1;
  const TrainResult o = train(t, other, tiny_train(), tiny_test(), dir / "o", false, nullptr);
  EXPECT_FALSE(same_bits(a.qat, o.qat));
}

struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

// A run stopped after the first QAT epoch (its checkpoint written) and resumed ends with the
// weights of an uninterrupted run, bit for bit.
TEST_P(TrainOnTiny, ResumedRunEqualsUninterruptedRun) {
  const target::TargetSpec t = target::builtin_target(GetParam());
  const TrainConfig c = small_config();
  SCOPED_TRACE(test::seed_note(c.seed));
  TempDir dir;
  const TrainResult whole = train(t, c, tiny_train(), tiny_test(), dir / "whole", false, nullptr);

  int qat_epochs_seen = 0;
  auto stop_after_first_qat_epoch = [&](const EpochProgress& p) {
    if (p.phase == Phase::Qat) {
      ++qat_epochs_seen;
      throw Interrupted();
    }
  };
  EXPECT_THROW(train(t, c, tiny_train(), tiny_test(), dir / "cut", false, stop_after_first_qat_epoch), Interrupted);
  EXPECT_EQ(qat_epochs_seen, 1);
  ASSERT_TRUE(fs::exists(dir / "cut" / "qat.ckpt"));

  Progress progress;
  const TrainResult resumed = train(t, c, tiny_train(), tiny_test(), dir / "cut", true, progress.callback());
  EXPECT_EQ(resumed.fp32_result.epochs_resumed, c.epochs);
  EXPECT_EQ(resumed.qat_result.epochs_resumed, 1);
  EXPECT_EQ(resumed.qat_result.steps, (c.epochs - 1) * 16);
  // Only the remaining QAT epochs ran.
  ASSERT_EQ(progress.epochs.size(), static_cast<std::size_t>(c.epochs - 1));
  EXPECT_EQ(progress.epochs.front().phase, Phase::Qat);
  EXPECT_EQ(progress.epochs.front().epoch, 2);
  EXPECT_TRUE(same_bits(resumed.fp32, whole.fp32));
  EXPECT_TRUE(same_bits(resumed.qat, whole.qat));
  EXPECT_EQ(resumed.qat_result.test_accuracy, whole.qat_result.test_accuracy);
  EXPECT_EQ(resumed.ptq_result.test_accuracy, whole.ptq_result.test_accuracy);

  // Resuming a finished run trains nothing and returns the same weights.
  const TrainResult again = train(t, c, tiny_train(), tiny_test(), dir / "cut", true, nullptr);
  EXPECT_EQ(again.qat_result.epochs_resumed, c.epochs);
  EXPECT_EQ(again.qat_result.steps, 0);
  EXPECT_TRUE(same_bits(again.qat, whole.qat));
  EXPECT_EQ(again.qat_result.test_accuracy, whole.qat_result.test_accuracy);
}

INSTANTIATE_TEST_SUITE_P(Targets, TrainOnTiny, ::testing::Values("ternary-asic", "int4-fpga"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string s = info.param;
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

std::string resume_error(const target::TargetSpec& t, const TrainConfig& c, const fs::path& dir) {
  try {
    train(t, c, tiny_train(), tiny_test(), dir, true, nullptr);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(Resume, CheckpointOfOtherSettingsIsRejected) {
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  TrainConfig c = small_config();
  c.train_fp32 = false;
  c.epochs = 2;
  TempDir dir;
  // A first epoch only.
  EXPECT_THROW(train(t, c, tiny_train(), tiny_test(), dir.path(), false, [](const EpochProgress&) { throw Interrupted(); }),
               Interrupted);
  const std::string ckpt = (dir / "qat.ckpt").string();
  ASSERT_TRUE(fs::exists(ckpt));

  TrainConfig lr = c;
  lr.lr = c.lr * 2;
  TrainConfig hidden = c;
  hidden.hidden = {12};
  TrainConfig seed = c;
  seed.seed = c.seed + 1;
  for (const TrainConfig* other : {&lr, &hidden, &seed}) {
    const std::string msg = resume_error(t, *other, dir.path());
    EXPECT_NE(msg.find(ckpt), std::string::npos) << msg;
    EXPECT_NE(msg.find("other settings"), std::string::npos) << msg;
  }
  // Another target's QAT is another run.
  const std::string msg = resume_error(target::builtin_target("int4-fpga"), c, dir.path());
  EXPECT_NE(msg.find(ckpt), std::string::npos) << msg;
  EXPECT_NE(msg.find("other settings"), std::string::npos) << msg;
  // The thread count is not part of the run's identity.
  TrainConfig threads = c;
  threads.threads = 1;
  const TrainResult r = train(t, threads, tiny_train(), tiny_test(), dir.path(), true, nullptr);
  EXPECT_EQ(r.qat_result.epochs_resumed, 1);
}

TEST(Resume, CorruptCheckpointIsRejected) {
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  TrainConfig c = small_config();
  c.train_fp32 = false;
  c.epochs = 1;
  TempDir dir;
  train(t, c, tiny_train(), tiny_test(), dir.path(), false, nullptr);
  const fs::path ckpt = dir / "qat.ckpt";
  const std::vector<unsigned char> good = read_binary(ckpt);
  ASSERT_GT(good.size(), 1000u);
  // A flipped byte in the header, in the weights, in the stored CRC.
  for (std::size_t at : {std::size_t{20}, good.size() / 2, good.size() - 2}) {
    SCOPED_TRACE("byte " + std::to_string(at));
    std::vector<unsigned char> bad = good;
    bad[at] ^= 0x10;
    write_binary(ckpt, bad);
    const std::string msg = resume_error(t, c, dir.path());
    EXPECT_NE(msg.find(ckpt.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("checksum mismatch"), std::string::npos) << msg;
  }
  // Truncated.
  write_binary(ckpt, std::vector<unsigned char>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(good.size() / 3)));
  EXPECT_NE(resume_error(t, c, dir.path()).find(ckpt.string()), std::string::npos);
  // Not a checkpoint at all.
  write_binary(ckpt, {'h', 'e', 'l', 'l', 'o'});
  EXPECT_NE(resume_error(t, c, dir.path()).find("not a qat-hw checkpoint"), std::string::npos);
  // Restored, it resumes.
  write_binary(ckpt, good);
  EXPECT_EQ(train(t, c, tiny_train(), tiny_test(), dir.path(), true, nullptr).qat_result.epochs_resumed, 1);
}

// A checkpoint with the run's fingerprint and a valid checksum but other layer shapes (written by
// hand, not by a run) is refused rather than trained on.
TEST(Resume, CheckpointWithOtherLayerShapesIsRejected) {
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  TrainConfig c = small_config();
  c.train_fp32 = false;
  c.epochs = 2;
  TempDir dir;
  EXPECT_THROW(train(t, c, tiny_train(), tiny_test(), dir.path(), false, [](const EpochProgress&) { throw Interrupted(); }),
               Interrupted);
  const fs::path ckpt = dir / "qat.ckpt";
  // The run's fingerprint, from the JSON header after the magic and its 8-byte length.
  const std::vector<unsigned char> bytes = read_binary(ckpt);
  ASSERT_GT(bytes.size(), 16u);
  std::uint64_t length = 0;
  std::memcpy(&length, bytes.data() + 8, 8);
  ASSERT_LE(length, bytes.size() - 16);
  const std::string fingerprint =
      nlohmann::json::parse(bytes.begin() + 16, bytes.begin() + 16 + static_cast<std::ptrdiff_t>(length)).at("fingerprint");
  const Checkpoint good = *load_checkpoint(ckpt, fingerprint);
  for (int change = 0; change < 2; ++change) {
    SCOPED_TRACE(change == 0 ? "first layer one input wider" : "last layer dropped");
    Checkpoint bad = good;
    if (change == 0) {
      Layer& l = bad.net.layers.front();
      ++l.in;
      l.w.assign(static_cast<std::size_t>(l.in) * l.out, 0.0f);
      bad.adam_m.front().assign(l.w.size(), 0.0f);
      bad.adam_v.front().assign(l.w.size(), 0.0f);
    } else {
      bad.net.layers.pop_back();
      bad.adam_m.pop_back();
      bad.adam_v.pop_back();
    }
    save_checkpoint(ckpt, bad);
    const std::string msg = resume_error(t, c, dir.path());
    EXPECT_NE(msg.find(ckpt.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("(the run's network)"), std::string::npos) << msg;
  }
}

TEST(Schedule, WarmupThenCosineToZero) {
  TrainConfig c;
  c.lr = 4e-3f;
  c.warmup_frac = 0.05f;
  const long total = 1000, warmup = 50;
  EXPECT_LT(learning_rate(c, 0, total), c.lr / 40);  // starts small
  EXPECT_GT(learning_rate(c, 0, total), 0.0f);
  for (long s = 1; s < warmup; ++s) EXPECT_GT(learning_rate(c, s, total), learning_rate(c, s - 1, total)) << s;
  EXPECT_FLOAT_EQ(learning_rate(c, warmup - 1, total), c.lr);  // the peak
  EXPECT_FLOAT_EQ(learning_rate(c, warmup, total), c.lr);
  float peak = 0;
  for (long s = 0; s < total; ++s) peak = std::max(peak, learning_rate(c, s, total));
  EXPECT_FLOAT_EQ(peak, c.lr);
  for (long s = warmup + 1; s < total; ++s) EXPECT_LE(learning_rate(c, s, total), learning_rate(c, s - 1, total)) << s;
  // Cosine: half way through the decay it is half the peak.
  EXPECT_NEAR(learning_rate(c, warmup + (total - warmup) / 2, total), c.lr / 2, c.lr * 1e-3);
  EXPECT_LT(learning_rate(c, total - 1, total), c.lr * 1e-4);  // ends near 0
  EXPECT_GE(learning_rate(c, total - 1, total), 0.0f);
  // No warm-up asked: full rate from the first step.
  c.warmup_frac = 0;
  EXPECT_FLOAT_EQ(learning_rate(c, 0, total), c.lr);
}

TEST(Schedule, WeightDecayStopsHalfWay) {
  TrainConfig c;
  c.weight_decay = 0.05f;
  const long total = 101;
  for (long s = 0; s < total; ++s) EXPECT_EQ(weight_decay(c, s, total), s < 50 ? c.weight_decay : 0.0f) << s;
}

TEST(Train, BatchLargerThanTheDataIsAnError) {
  TrainConfig c = small_config();
  c.batch = 1000;
  TempDir dir;
  try {
    train(target::builtin_target("ternary-asic"), c, tiny_train(), tiny_test(), dir.path(), false, nullptr);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("batch size 1000"), std::string::npos) << msg;
    EXPECT_NE(msg.find(tiny_train().source), std::string::npos) << msg;
  }
}

TEST(Checkpoint, RoundTripAndMissingFile) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  TempDir dir;
  Checkpoint c;
  c.fingerprint = "run-a";
  c.epochs_done = 3;
  c.step = 48;
  c.train_seconds = 1.5;
  c.net = make_mlp(10, {6}, 3, seed);
  for (const Layer& l : c.net.layers) {
    c.adam_m.push_back(l.w);
    c.adam_v.emplace_back();
    for (float w : l.w) c.adam_v.back().push_back(w * w);  // second moments: means of squares
  }
  save_checkpoint(dir / "x.ckpt", c);
  const auto back = load_checkpoint(dir / "x.ckpt", "run-a");
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->epochs_done, 3);
  EXPECT_EQ(back->step, 48);
  EXPECT_EQ(back->train_seconds, 1.5);
  EXPECT_TRUE(same_bits(back->net, c.net));
  EXPECT_EQ(back->adam_m, c.adam_m);
  EXPECT_EQ(back->adam_v, c.adam_v);
  for (std::size_t l = 0; l < c.net.layers.size(); ++l) EXPECT_EQ(back->net.layers[l].relu, c.net.layers[l].relu);
  EXPECT_FALSE(load_checkpoint(dir / "absent.ckpt", "run-a").has_value());
  EXPECT_THROW(load_checkpoint(dir / "x.ckpt", "run-b"), std::runtime_error);
}

// The load error of checkpoint `c` saved and read back against `expect` ("" when it loads).
std::string load_error(const Checkpoint& c, const CheckpointExpectation& expect) {
  TempDir dir;
  save_checkpoint(dir / "x.ckpt", c);
  try {
    load_checkpoint(dir / "x.ckpt", c.fingerprint, expect);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

// A checkpoint resumes only the run it fits: the network's layers, epochs_done within the run's
// epochs, step on the schedule; the file names the field otherwise (one with a hidden layer
// whose ReLU was dropped crashed the resumed run).
TEST(Checkpoint, MustFitTheRunItResumes) {
  const Mlp run = make_mlp(10, {6}, 3, 1);
  Checkpoint c;
  c.fingerprint = "run-a";
  c.epochs_done = 2;
  c.step = 8;
  c.net = run;
  for (const Layer& l : c.net.layers) {
    c.adam_m.emplace_back(l.w.size(), 0.0f);
    c.adam_v.emplace_back(l.w.size(), 0.0f);
  }
  const CheckpointExpectation expect{&run, 3, 4};
  EXPECT_EQ(load_error(c, expect), "");

  const auto expect_error = [&](const Checkpoint& bad, const std::string& fragment) {
    const std::string msg = load_error(bad, expect);
    EXPECT_NE(msg.find("x.ckpt: "), std::string::npos) << msg;
    EXPECT_NE(msg.find(fragment), std::string::npos) << "'" << fragment << "' not in: " << msg;
  };
  Checkpoint bad = c;
  bad.epochs_done = 4;
  expect_error(bad, "field 'epochs_done': 4 is out of range [1, 3]");
  bad = c;
  bad.step = 9;
  expect_error(bad, "field 'step': 9 is out of range [8, 8]");
  bad = c;
  bad.net.layers[0].relu = false;
  expect_error(bad, "field 'layers[0].relu': must be true (the run's network), not false");
  bad = c;
  bad.net = make_mlp(10, {5}, 3, 1);
  bad.adam_m = {std::vector<float>(50), std::vector<float>(15)};
  bad.adam_v = bad.adam_m;
  expect_error(bad, "field 'layers[0].out': must be 6 (the run's network), not 5");
  bad = c;
  bad.net = make_mlp(10, {6, 6}, 3, 1);
  bad.adam_m = {std::vector<float>(60), std::vector<float>(36), std::vector<float>(18)};
  bad.adam_v = bad.adam_m;
  expect_error(bad, "field 'layers': must have 2 layers (the run's network), not 3");
  bad = c;
  bad.net.layers[1].w[4] = std::nanf("");
  expect_error(bad, "field 'layers[1]': weights: value 4 is NaN or infinite");
  bad = c;
  bad.adam_v[0][7] = -1.0f;
  expect_error(bad, "field 'layers[0]': second moments: value 7 is negative");
  bad = c;
  bad.train_seconds = -1;
  expect_error(bad, "field 'train_seconds': must be a finite number of seconds >= 0");
}

// Header fields of the wrong JSON type are named, never a JSON library message.
TEST(Checkpoint, HeaderFieldsOfTheWrongType) {
  TempDir dir;
  Checkpoint c;
  c.fingerprint = "run-a";
  c.epochs_done = 1;
  c.step = 4;
  c.net = make_mlp(4, {}, 2, 1);
  c.adam_m = {std::vector<float>(8)};
  c.adam_v = c.adam_m;
  save_checkpoint(dir / "x.ckpt", c);
  std::vector<unsigned char> bytes = read_binary(dir / "x.ckpt");
  // The header (JSON after the magic and its 8-byte length) with "epochs_done":1 retyped as "1",
  // its length and the CRC-32 rewritten.
  std::uint64_t length = 0;
  std::memcpy(&length, bytes.data() + 8, 8);
  std::string header(bytes.begin() + 16, bytes.begin() + 16 + static_cast<std::ptrdiff_t>(length));
  const std::string from = "\"epochs_done\":1", to = "\"epochs_done\":\"1\"";
  ASSERT_NE(header.find(from), std::string::npos) << header;
  header.replace(header.find(from), from.size(), to);
  std::vector<unsigned char> out(bytes.begin(), bytes.begin() + 8);
  const std::uint64_t new_length = header.size();
  out.insert(out.end(), reinterpret_cast<const unsigned char*>(&new_length),
             reinterpret_cast<const unsigned char*>(&new_length) + 8);
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), bytes.begin() + 16 + static_cast<std::ptrdiff_t>(length), bytes.end() - 4);
  const std::uint32_t crc =
      static_cast<std::uint32_t>(crc32(crc32(0L, Z_NULL, 0), out.data(), static_cast<uInt>(out.size())));
  out.insert(out.end(), reinterpret_cast<const unsigned char*>(&crc), reinterpret_cast<const unsigned char*>(&crc) + 4);
  write_binary(dir / "x.ckpt", out);
  try {
    load_checkpoint(dir / "x.ckpt", "run-a");
    FAIL() << "accepted";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("x.ckpt: field 'epochs_done': must be an integer"), std::string::npos) << msg;
    EXPECT_EQ(msg.find("json.exception"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace qathw::training
