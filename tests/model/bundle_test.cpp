// The deployed bundle: the op graph's round trip, version-1 bundles, golden vectors, and every way
// a bundle on disk can be wrong, each rejected with a message naming the file and what is wrong.
#include "qathw/model/bundle.h"
#include "qathw/training/export.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "../arith/test_support.h"
#include "../training/temp_dir.h"
#include "../util/address_space_limit.h"
#include "../util/kill_at_rename.h"
#include "qathw/model/accelerator_layers.h"
#include "qathw/model/golden.h"
#include "qathw/model/int_engine.h"

namespace qathw::model {
namespace {

namespace fs = std::filesystem;
using training::make_bundle;
using training::make_mlp;
using training::Mlp;
using training::QuantizedLayer;
using qathw::test::read_binary;
using qathw::test::TempDir;
using qathw::test::write_binary;

Mlp test_net(std::uint64_t seed) { return make_mlp(6 * 5, {11, 9}, 4, seed); }

Bundle test_bundle(const target::TargetSpec& t, std::uint64_t seed) {
  return make_bundle(test_net(seed), t, 6, 5, nlohmann::json{{"note", "test"}, {"seed", seed}});
}

// The linear ops of a bundle's graph, in order (an MLP's layers).
std::vector<const LinearParams*> linears(const Bundle& b) {
  std::vector<const LinearParams*> out;
  for (const Op& op : b.graph.ops)
    if (op.type == OpType::Linear) out.push_back(&op.linear);
  return out;
}

// The manifest index of layer l's linear op (quantize, linear, relu per hidden layer).
std::size_t linear_index(std::size_t l) { return 3 * l + 1; }

nlohmann::json read_manifest(const fs::path& bundle) {
  std::ifstream in(bundle / "manifest.json");
  return nlohmann::json::parse(in);
}

void write_manifest(const fs::path& bundle, const nlohmann::json& m) {
  std::ofstream out(bundle / "manifest.json", std::ios::trunc);
  out << m.dump(2) << "\n";
}

// load_bundle must throw BundleError whose message contains every fragment.
void expect_rejected(const fs::path& bundle, const std::vector<std::string>& fragments,
                     const target::TargetSpec* expected = nullptr) {
  try {
    load_bundle(bundle, expected);
    ADD_FAILURE() << "bundle " << bundle << " was accepted";
  } catch (const BundleError& e) {
    const std::string msg = e.what();
    for (const std::string& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "'" << f << "' not in: " << msg;
  }
}

class BundleRoundTrip : public ::testing::TestWithParam<const char*> {};

TEST_P(BundleRoundTrip, CodesRequantAndShapesSurvive) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  const target::TargetSpec t = target::builtin_target(GetParam());
  const Mlp net = test_net(seed);
  const Bundle b = make_bundle(net, t, 6, 5, nlohmann::json{{"note", "test"}});
  // The bundle holds the quantizer's codes and pairs.
  std::vector<QuantizedLayer> q;
  quantize_weights(net, t.format, q);
  const std::vector<const LinearParams*> layers = linears(b);
  ASSERT_EQ(layers.size(), 3u);
  bool nonzero = false, negative = false;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const std::vector<std::int8_t> codes = layers[l]->codes();
    ASSERT_EQ(codes.size(), q[l].codes.size());
    for (std::size_t i = 0; i < codes.size(); ++i) {
      ASSERT_EQ(codes[i], static_cast<std::int8_t>(q[l].codes[i])) << "layer " << l << " code " << i;
      nonzero |= codes[i] > 0;
      negative |= codes[i] < 0;
    }
    ASSERT_EQ(layers[l]->requant.size(), q[l].requant.size());
    for (std::size_t n = 0; n < q[l].requant.size(); ++n) {
      EXPECT_EQ(layers[l]->requant[n].mantissa, q[l].requant[n].mantissa);
      EXPECT_EQ(layers[l]->requant[n].shift, q[l].requant[n].shift);
    }
  }
  EXPECT_TRUE(nonzero && negative);
  // The graph: quantize -> linear -> relu per hidden layer, quantize -> linear for the last.
  std::vector<std::string> ops;
  for (const Op& op : b.graph.ops) ops.push_back(to_string(op.type));
  EXPECT_EQ(ops, (std::vector<std::string>{"quantize", "linear", "relu", "quantize", "linear", "relu", "quantize",
                                           "linear"}));

  TempDir dir;
  save_bundle(dir / "model.qhw", b);
  EXPECT_TRUE(fs::exists(dir / "model.qhw" / "manifest.json"));
  EXPECT_TRUE(fs::exists(dir / "model.qhw" / "weights.bin"));
  EXPECT_EQ(read_manifest(dir / "model.qhw").at("version"), kBundleVersion);
  const Bundle back = load_bundle(dir / "model.qhw", &t);
  EXPECT_EQ(back.target.name, t.name);
  EXPECT_EQ(back.target_hash, target::content_hash(t));
  EXPECT_EQ(back.target_hash, b.target_hash);
  EXPECT_EQ(back.rows, 6);
  EXPECT_EQ(back.cols, 5);
  EXPECT_EQ(back.classes, 4);
  EXPECT_EQ(back.training.at("note"), "test");
  EXPECT_EQ(back.graph.input, b.graph.input);
  EXPECT_EQ(back.graph.output, b.graph.output);
  ASSERT_EQ(back.graph.tensors.size(), b.graph.tensors.size());
  for (std::size_t i = 0; i < b.graph.tensors.size(); ++i) {
    EXPECT_EQ(back.graph.tensors[i].name, b.graph.tensors[i].name);
    EXPECT_EQ(back.graph.tensors[i].dtype, b.graph.tensors[i].dtype);
    EXPECT_EQ(back.graph.tensors[i].tokens, b.graph.tensors[i].tokens);
    EXPECT_EQ(back.graph.tensors[i].features, b.graph.tensors[i].features);
  }
  ASSERT_EQ(back.graph.ops.size(), b.graph.ops.size());
  for (std::size_t i = 0; i < b.graph.ops.size(); ++i) {
    SCOPED_TRACE("op " + b.graph.ops[i].name);
    const Op& x = b.graph.ops[i];
    const Op& y = back.graph.ops[i];
    EXPECT_EQ(y.name, x.name);
    EXPECT_EQ(y.type, x.type);
    EXPECT_EQ(y.input, x.input);
    EXPECT_EQ(y.output, x.output);
    EXPECT_EQ(y.linear.in, x.linear.in);
    EXPECT_EQ(y.linear.out, x.linear.out);
    EXPECT_EQ(y.linear.format, x.linear.format);
    EXPECT_EQ(y.linear.packed, x.linear.packed);
    ASSERT_EQ(y.linear.requant.size(), x.linear.requant.size());
    for (std::size_t n = 0; n < x.linear.requant.size(); ++n) {
      EXPECT_EQ(y.linear.requant[n].mantissa, x.linear.requant[n].mantissa) << n;
      EXPECT_EQ(y.linear.requant[n].shift, x.linear.requant[n].shift) << n;
    }
    EXPECT_EQ(y.linear.scales, x.linear.scales);
    EXPECT_EQ(y.linear.reference, x.linear.reference);
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, BundleRoundTrip, ::testing::Values("ternary-asic", "int4-fpga"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string s = info.param;
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

class BundleRejects : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = test::test_seed();
    save_bundle(path_, test_bundle(ternary_, seed_));
    ASSERT_NO_THROW(load_bundle(path_, &ternary_));
  }
  std::uint64_t seed_ = 0;
  const target::TargetSpec ternary_ = target::builtin_target("ternary-asic");
  TempDir dir_;
  const fs::path path_ = dir_ / "model.qhw";
  const std::string weights_ = (path_ / "weights.bin").string();
  const std::string manifest_ = (path_ / "manifest.json").string();
};

TEST_F(BundleRejects, FlippedWeightByte) {
  SCOPED_TRACE(test::seed_note(seed_));
  std::vector<unsigned char> w = read_binary(path_ / "weights.bin");
  // A byte of the second layer; the checksum is checked before the codes are.
  const nlohmann::json m = read_manifest(path_);
  const std::size_t at = m["ops"][linear_index(1)]["weights"]["offset"].get<std::size_t>() + 3;
  w[at] ^= 0x01;
  write_binary(path_ / "weights.bin", w);
  expect_rejected(path_, {weights_, "checksum mismatch in ops[4]"});
}

TEST_F(BundleRejects, TruncatedWeights) {
  std::vector<unsigned char> w = read_binary(path_ / "weights.bin");
  w.resize(w.size() - 1);
  write_binary(path_ / "weights.bin", w);
  expect_rejected(path_, {weights_, "truncated", "ops[7]"});
  write_binary(path_ / "weights.bin", {});
  expect_rejected(path_, {weights_, "truncated", "ops[1]"});
}

TEST_F(BundleRejects, MissingWeightsFile) {
  fs::remove(path_ / "weights.bin");
  expect_rejected(path_, {weights_});
}

TEST_F(BundleRejects, EditedTargetInTheManifest) {
  nlohmann::json m = read_manifest(path_);
  ASSERT_EQ(m["target"]["arithmetic"]["accumulator_bits"], 24);
  m["target"]["arithmetic"]["accumulator_bits"] = 20;
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "target_hash", "the manifest was altered"});
}

TEST_F(BundleRejects, InvalidEmbeddedTarget) {
  nlohmann::json m = read_manifest(path_);
  m["target"]["arithmetic"]["accumulator_bits"] = 99;
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "accumulator_bits"});
}

TEST_F(BundleRejects, BuiltForAnotherTarget) {
  const target::TargetSpec int4 = target::builtin_target("int4-fpga");
  expect_rejected(path_, {path_.string(), "ternary-asic", "int4-fpga", target::content_hash(ternary_),
                          target::content_hash(int4)},
                  &int4);
  // And the other way round.
  TempDir other;
  save_bundle(other / "int4.qhw", test_bundle(int4, seed_));
  expect_rejected(other / "int4.qhw", {"built for target 'int4-fpga'", "not for 'ternary-asic'"}, &ternary_);
}

TEST_F(BundleRejects, MissingManifest) {
  fs::remove(path_ / "manifest.json");
  expect_rejected(path_, {manifest_, "cannot open"});
}

TEST_F(BundleRejects, ManifestIsADirectory) {
  fs::remove(path_ / "manifest.json");
  fs::create_directories(path_ / "manifest.json");
  try {
    load_bundle(path_);
    ADD_FAILURE() << "accepted";
  } catch (const BundleError& e) {
    EXPECT_NE(std::string(e.what()).find(manifest_), std::string::npos) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a BundleError naming the manifest: " << e.what();
  }
}

// Runs `f` in a child process under a 10 s alarm and a 1 GiB address-space limit, and returns its
// exit code: a reader that reads without bound fails here (killed, or out of memory) instead of
// hanging the test or growing the machine's memory.
int exit_code_in_child(const std::function<int()>& f) {
  const pid_t child = ::fork();
  if (child == 0) {
    ::alarm(10);
    qathw::test::limit_address_space(rlim_t{1} << 30);
    int code = 100;
    try {
      code = f();
    } catch (...) {
      code = 101;
    }
    ::_exit(code);
  }
  int status = 0;
  if (child < 0 || ::waitpid(child, &status, 0) != child) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// 0 when load_bundle throws BundleError with every fragment, 1 for another message, 2 if accepted.
int rejected_with(const fs::path& bundle, const std::vector<std::string>& fragments) {
  try {
    load_bundle(bundle);
  } catch (const BundleError& e) {
    const std::string msg = e.what();
    for (const std::string& f : fragments)
      if (msg.find(f) == std::string::npos) return 1;
    return 0;
  }
  return 2;
}

// A weights file or manifest that is a device or a FIFO (a symbolic link inside the bundle) is
// refused at once, naming the file and what it is, instead of reading forever.
TEST_F(BundleRejects, WeightsOrManifestNotARegularFile) {
  fs::remove(path_ / "weights.bin");
  fs::create_symlink("/dev/zero", path_ / "weights.bin");
  EXPECT_EQ(exit_code_in_child([&] { return rejected_with(path_, {manifest_, "weights_file", "leads outside"}); }), 0);
  fs::remove(path_ / "weights.bin");
  ASSERT_EQ(::mkfifo((path_ / "weights.bin").c_str(), 0600), 0);
  EXPECT_EQ(exit_code_in_child([&] { return rejected_with(path_, {weights_, "is a FIFO"}); }), 0);
  fs::remove(path_ / "manifest.json");
  fs::create_symlink("/dev/zero", path_ / "manifest.json");
  EXPECT_EQ(exit_code_in_child([&] { return rejected_with(path_, {manifest_, "is a character device"}); }), 0);
}

// A weights file larger than the manifest's ops use (a sparse file of 64 GiB) and a manifest over
// 16 MiB are refused from their size, before reading.
TEST_F(BundleRejects, FilesLargerThanTheirLimits) {
  fs::resize_file(path_ / "weights.bin", std::uintmax_t{64} << 30);
  EXPECT_EQ(exit_code_in_child(
                [&] { return rejected_with(path_, {weights_, "68719476736 bytes, the ops' weight blocks hold"}); }),
            0);
  fs::resize_file(path_ / "manifest.json", (std::uintmax_t{16} << 20) + 1);
  EXPECT_EQ(exit_code_in_child([&] { return rejected_with(path_, {manifest_, "over the limit of 16777216 bytes"}); }),
            0);
}

// A re-export over an existing bundle killed at each of its renames in turn leaves a bundle that
// loads (the old one or the new), and the next export removes what the killed one left.
TEST_F(BundleRejects, ReExportKilledAtAnyRenameLeavesALoadableBundle) {
  const Bundle newer = test_bundle(ternary_, seed_ + 1);
  for (int allowed = 0;; ++allowed) {
    SCOPED_TRACE("killed at rename " + std::to_string(allowed + 1));
    const test::RenameKill r = test::run_killed_at_rename(allowed, [&] { save_bundle(path_, newer); });
    if (!r.supported) GTEST_SKIP() << "no seccomp user notification here: cannot inject the kill";
    ASSERT_FALSE(r.work_failed);
    Bundle back;
    ASSERT_NO_THROW(back = load_bundle(path_, &ternary_)) << "no loadable bundle after a kill at rename " << allowed + 1;
    const std::uint64_t seed = back.training.at("seed").get<std::uint64_t>();
    EXPECT_TRUE(seed == seed_ || seed == seed_ + 1) << seed;
    if (!r.killed) {
      EXPECT_EQ(seed, seed_ + 1);
      break;
    }
    save_bundle(path_, test_bundle(ternary_, seed_));
    std::vector<std::string> beside;
    for (const auto& e : fs::directory_iterator(dir_.path())) beside.push_back(e.path().filename().string());
    EXPECT_EQ(beside, std::vector<std::string>{"model.qhw"}) << "leftovers of the killed export remain";
    ASSERT_LT(allowed, 20) << "the export never finished";
  }
}

TEST_F(BundleRejects, NotADirectory) {
  expect_rejected(dir_ / "absent.qhw", {(dir_ / "absent.qhw").string(), "not a bundle directory"});
}

TEST_F(BundleRejects, ManifestNotJson) {
  std::ofstream(path_ / "manifest.json", std::ios::trunc) << "{ \"format\": ";
  expect_rejected(path_, {manifest_, "not valid JSON"});
}

TEST_F(BundleRejects, WrongVersion) {
  nlohmann::json m = read_manifest(path_);
  ASSERT_EQ(m["version"], 2);
  m["version"] = 3;
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "version", "3", "out of range [1, 2]"});
  m["version"] = 1.5;
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "version", "must be an integer"});
  m.erase("version");
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "version"});
}

// Fields of the wrong JSON type are errors in the manifest too, named like any other.
TEST_F(BundleRejects, FieldsOfTheWrongType) {
  const nlohmann::json original = read_manifest(path_);
  const std::vector<std::pair<std::string, nlohmann::json>> edits = {
      {"version", "1"}, {"format", 1}, {"classes", "4"}, {"ops", nlohmann::json::object({{"0", 1}})},
      {"tensors", 3}, {"output_tensor", 7}};
  for (const auto& [key, value] : edits) {
    SCOPED_TRACE(key + " = " + value.dump());
    nlohmann::json m = original;
    m[key] = value;
    write_manifest(path_, m);
    try {
      load_bundle(path_);
      ADD_FAILURE() << "accepted";
    } catch (const BundleError& e) {
      EXPECT_NE(std::string(e.what()).find(manifest_), std::string::npos) << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not a BundleError naming the manifest: " << e.what();
    }
  }
}

TEST_F(BundleRejects, WrongFormatName) {
  nlohmann::json m = read_manifest(path_);
  m["format"] = "something-else";
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "format"});
}

TEST_F(BundleRejects, ShapesThatDoNotChain) {
  const nlohmann::json original = read_manifest(path_);
  nlohmann::json m = original;
  m["ops"][linear_index(1)]["in"] = 12;  // neither its input tensor nor its weight block match: `in` is wrong
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "field 'ops[4].in': 12 does not match the", "features of its input"});
  m = original;
  m["ops"][linear_index(1)]["weights"]["bytes"] = 1;
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "field 'ops[4].weights.bytes': 1 does not match in x out"});
  m = original;
  m["tensors"][3]["shape"][1] = 12;  // layer1.codes
  write_manifest(path_, m);
  expect_rejected(path_,
                  {manifest_, "field 'ops[2].output'", "layer0.relu", "output shape must equal the input shape"});
  m = original;
  m["classes"] = 5;
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "classes"});
  m = original;
  m["ops"][2]["input"] = "layer1.codes";  // read before it is written
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "field 'ops[2].input'", "layer0.relu", "before any op writes it"});
  m = original;
  m["ops"][0]["type"] = "gelu";
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "ops[0].type", "gelu"});
}

// Integer fields hold integers in range: no fraction, no 64-bit value cast down.
TEST_F(BundleRejects, IntegersExactAndInRange) {
  const nlohmann::json original = read_manifest(path_);
  const std::vector<std::pair<nlohmann::json::json_pointer, nlohmann::json>> edits = {
      {nlohmann::json::json_pointer("/input/rows"), std::int64_t{4294967302}},
      {nlohmann::json::json_pointer("/input/rows"), 6.5},
      {nlohmann::json::json_pointer("/ops/1/requant/0/1"), std::int64_t{4294967311}},
      {nlohmann::json::json_pointer("/ops/1/weights/crc32"), std::int64_t{1} << 33},
      {nlohmann::json::json_pointer("/ops/1/out"), -11},
      {nlohmann::json::json_pointer("/tensors/0/shape/1"), 30.0},
  };
  for (const auto& [where, value] : edits) {
    SCOPED_TRACE(where.to_string() + " = " + value.dump());
    nlohmann::json m = original;
    m[where] = value;
    write_manifest(path_, m);
    expect_rejected(path_, {manifest_});
  }
}

TEST_F(BundleRejects, WeightsFileOutsideTheBundle) {
  for (const std::string name : {"/etc/passwd", "../model.qhw/weights.bin", "sub/weights.bin", ""}) {
    nlohmann::json m = read_manifest(path_);
    m["weights_file"] = name;
    write_manifest(path_, m);
    expect_rejected(path_, {manifest_, "weights_file", "inside the bundle directory"});
  }
}

TEST_F(BundleRejects, TrailingBytesAfterTheWeights) {
  std::vector<unsigned char> w = read_binary(path_ / "weights.bin");
  w.push_back(0);
  write_binary(path_ / "weights.bin", w);
  expect_rejected(path_, {weights_, "trailing"});
}

// Only the fields save_bundle writes are read, with the values it writes: an unknown key in any
// object the loader reads, another input encoding or weight layout, more scales or pairs than
// output channels, and a tensor no op writes are each refused, naming the field.
TEST_F(BundleRejects, UnknownKeysAndValues) {
  const nlohmann::json original = read_manifest(path_);
  const std::vector<std::tuple<std::string, nlohmann::json, std::string>> edits = {
      {"/colour", "red", "field 'colour': unknown field; allowed here: format, version"},
      {"/layers", nlohmann::json::array(), "field 'layers': unknown field"},
      {"/input/channels", 3, "field 'input.channels': unknown field; allowed here: rows, cols, encoding"},
      {"/ops/1/bias", 0, "field 'ops[1].bias': unknown field"},
      {"/ops/2/in", 4, "field 'ops[2].in': unknown field; allowed here: name, type, input, output"},
      {"/ops/1/weights/scale", 1, "field 'ops[1].weights.scale': unknown field"},
      {"/tensors/0/layout", "nchw", "field 'tensors[0].layout': unknown field"},
      {"/tensors/0/shape", {1, 30, 1, 1},
       "field 'tensors[0].shape': must be [tokens, features] or a feature map [height, width, channels], not [1,"},
      {"/ops/1/weight_scales/-", 0.5, "field 'ops[1].weight_scales': has "},
  };
  for (const auto& [pointer, value, fragment] : edits) {
    SCOPED_TRACE(pointer);
    nlohmann::json m = original;
    m = m.patch(nlohmann::json::array({{{"op", "add"}, {"path", pointer}, {"value", value}}}));
    write_manifest(path_, m);
    expect_rejected(path_, {manifest_, fragment});
  }
  nlohmann::json m = original;
  m["input"]["encoding"] = "rgb";
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "field 'input.encoding': must be \"uint8 pixels\", not \"rgb\""});
  m.erase("input");
  m["input"] = original["input"];
  m["input"].erase("encoding");
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "field 'input.encoding': missing"});
  m = original;
  m["ops"][1]["weights"]["layout"] = "column-major";
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "field 'ops[1].weights.layout': must be \"row-major out x in;"});
  m = original;
  m["tensors"].push_back({{"name", "spare"}, {"dtype", "values"}, {"shape", {1, 4}}});
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "tensor 'spare' is written by no op"});
  m = original;
  m["ops"][1]["weight_scales"][0] = 1e300;  // beyond float
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "field 'ops[1].weight_scales[0]': must be a number in (0, 3.4e38]"});
  m = original;
  m["training"] = nlohmann::json::array();
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "field 'training': must be an object, not []"});
  m = original;
  m["target"] = 5;
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "field 'target': must be an object (a target spec), not 5"});
}

// JSON nested a hundred thousand levels deep, where the loader copies or prints a value, is
// refused with its field instead of exhausting the stack.
TEST_F(BundleRejects, DeeplyNestedValues) {
  const std::string text = read_manifest(path_).dump();
  const std::string arrays = std::string(100000, '[') + std::string(100000, ']');
  std::string objects;
  for (int i = 0; i < 100000; ++i) objects += "{\"a\":";
  objects += "1" + std::string(100000, '}');
  // `text` with `value` inserted as the first member of the object at "KEY":{.
  const auto with = [&](const std::string& key, const std::string& member, const std::string& value) {
    std::string t = text;
    const std::string at = "\"" + key + "\":{";
    const auto pos = t.find(at);
    EXPECT_NE(pos, std::string::npos) << key;
    if (pos != std::string::npos) t.insert(pos + at.size(), "\"" + member + "\":" + value + ",");
    return t;
  };
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {arrays, {manifest_, "must hold a JSON object, not an array"}},
      {with("training", "notes", arrays), {manifest_, "field 'training': nested deeper than 16 levels"}},
      {with("target", "deep", objects),
       {manifest_ + " [target]: field 'deep.a': must be a number, a string or a boolean, not an object"}},
      {with("input", "rows_", arrays), {manifest_, "field 'input.rows_': unknown field"}},
  };
  for (const auto& c : cases) {
    const std::vector<std::string>& fragments = c.second;  // a lambda may not capture a structured binding in C++17
    std::ofstream(path_ / "manifest.json", std::ios::trunc) << c.first;
    EXPECT_EQ(exit_code_in_child([&] { return rejected_with(path_, fragments); }), 0) << fragments.back();
  }
}

TEST_F(BundleRejects, RequantPairOutsideTheScaleFormat) {
  const nlohmann::json original = read_manifest(path_);
  nlohmann::json m = original;
  m["ops"][1]["requant"][2][0] = std::int64_t{1} << 16;  // 16 mantissa bits
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "ops[1].requant[2][0]", "out of range"});
  m = original;
  m["ops"][1]["requant"].erase(0);
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "ops[1].requant", "one per output channel"});
}

// 0b10 is no ternary code. With the layer's CRC fixed up, the code check is what must catch it.
TEST_F(BundleRejects, InvalidTernaryField) {
  std::vector<unsigned char> w = read_binary(path_ / "weights.bin");
  nlohmann::json m = read_manifest(path_);
  auto& layer = m["ops"][linear_index(2)]["weights"];
  const std::size_t offset = layer["offset"].get<std::size_t>();
  const std::size_t bytes = layer["bytes"].get<std::size_t>();
  // Code 5 of the layer: byte 1, bits 2..3.
  w[offset + 1] = static_cast<unsigned char>((w[offset + 1] & ~0x0C) | (0b10 << 2));
  layer["crc32"] = static_cast<std::uint32_t>(crc32(crc32(0L, Z_NULL, 0), w.data() + offset, static_cast<uInt>(bytes)));
  write_binary(path_ / "weights.bin", w);
  write_manifest(path_, m);
  // The code is in the weights file: it is named, with the op's field.
  expect_rejected(path_, {weights_, "field 'ops[7].weights': invalid weight code -2 at index 5"});
}

// INT4 -8 (0x8) fits the 4-bit field but is no code of the symmetric quantizer.
TEST(BundleRejectsInt4, CodeMinusEight) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  const target::TargetSpec t = target::builtin_target("int4-fpga");
  TempDir dir;
  const fs::path p = dir / "int4.qhw";
  save_bundle(p, test_bundle(t, seed));
  std::vector<unsigned char> w = read_binary(p / "weights.bin");
  nlohmann::json m = read_manifest(p);
  auto& layer = m["ops"][linear_index(1)]["weights"];
  const std::size_t offset = layer["offset"].get<std::size_t>();
  const std::size_t bytes = layer["bytes"].get<std::size_t>();
  w[offset + 2] = static_cast<unsigned char>((w[offset + 2] & 0x0F) | 0x80);  // code 5: the high nibble of byte 2
  layer["crc32"] = static_cast<std::uint32_t>(crc32(crc32(0L, Z_NULL, 0), w.data() + offset, static_cast<uInt>(bytes)));
  write_binary(p / "weights.bin", w);
  write_manifest(p, m);
  expect_rejected(p, {(p / "weights.bin").string(), "field 'ops[4].weights': invalid weight code -8 at index 5"});
  // Code +7 in the same place is fine.
  w[offset + 2] = static_cast<unsigned char>((w[offset + 2] & 0x0F) | 0x70);
  layer["crc32"] = static_cast<std::uint32_t>(crc32(crc32(0L, Z_NULL, 0), w.data() + offset, static_cast<uInt>(bytes)));
  write_binary(p / "weights.bin", w);
  write_manifest(p, m);
  EXPECT_EQ(linears(load_bundle(p))[1]->code(0, 5), 7);
}

TEST(SaveBundle, ReplacesAnExistingBundleWholeWithNoLeftovers) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  TempDir dir;
  const fs::path p = dir / "model.qhw";
  const Bundle first = test_bundle(t, seed);
  const Bundle second = test_bundle(t, seed + 1);
  ASSERT_NE(linears(first)[0]->packed, linears(second)[0]->packed);
  save_bundle(p, first);
  std::ofstream(p / "stale.txt") << "from the first save";
  save_bundle(p, second);
  const Bundle back = load_bundle(p);
  for (std::size_t l = 0; l < 3; ++l) EXPECT_EQ(linears(back)[l]->packed, linears(second)[l]->packed);
  EXPECT_EQ(back.training.at("seed"), seed + 1);
  // The new bundle replaced the directory: nothing of the old one, and no staging or old copies beside it.
  EXPECT_FALSE(fs::exists(p / "stale.txt"));
  std::vector<std::string> entries, inside;
  for (const auto& e : fs::directory_iterator(dir.path())) entries.push_back(e.path().filename().string());
  for (const auto& e : fs::directory_iterator(p)) inside.push_back(e.path().filename().string());
  std::sort(inside.begin(), inside.end());
  EXPECT_EQ(entries, std::vector<std::string>{"model.qhw"});
  EXPECT_EQ(inside, (std::vector<std::string>{"manifest.json", "weights.bin"}));
}

TEST(SaveBundle, FailedSaveLeavesTheOldBundle) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  TempDir dir;
  const fs::path p = dir / "model.qhw";
  const Bundle first = test_bundle(t, seed);
  save_bundle(p, first);
  // The parent cannot take new entries: staging fails, the old bundle stays as it was.
  fs::permissions(dir.path(), fs::perms::owner_write, fs::perm_options::remove);
  if (::access(dir.path().c_str(), W_OK) == 0) {
    fs::permissions(dir.path(), fs::perms::owner_write, fs::perm_options::add);
    GTEST_SKIP() << "running with privileges that ignore directory permissions";
  }
  EXPECT_ANY_THROW(save_bundle(p, test_bundle(t, seed + 1)));
  fs::permissions(dir.path(), fs::perms::owner_write, fs::perm_options::add);
  const Bundle back = load_bundle(p);
  EXPECT_EQ(linears(back)[0]->packed, linears(first)[0]->packed);
  std::vector<std::string> entries;
  for (const auto& e : fs::directory_iterator(dir.path())) entries.push_back(e.path().filename().string());
  EXPECT_EQ(entries, std::vector<std::string>{"model.qhw"});
}

}  // namespace
}  // namespace qathw::training

namespace qathw::model {
namespace {

// Golden vectors read back (.npy and $readmemh) reproduce the integer engine's outputs of every op.
TEST(GoldenVectors, ReadBackReproducesTheIntegerEngine) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  const target::TargetSpec t = target::builtin_target("int4-fpga");
  const Bundle b = test_bundle(t, seed);
  const std::size_t samples = 7, features = b.features();
  std::mt19937_64 rng(seed);
  std::vector<std::uint8_t> pixels(samples * features);
  for (auto& p : pixels) p = static_cast<std::uint8_t>(rng() % 256);
  const std::vector<OpOutputs> outputs = IntEngine(b).run_all(pixels.data(), samples);
  TempDir dir;
  write_golden_vectors(dir / "golden", b, pixels.data(), outputs, "model.qhw");
  std::ifstream in(dir / "golden" / "index.json");
  const nlohmann::json index = nlohmann::json::parse(in);
  ASSERT_EQ(index.at("ops").size(), b.graph.ops.size());
  const NpyArray input = read_npy(dir / "golden" / index["input"]["npy"].get<std::string>());
  EXPECT_EQ(input.shape, (std::vector<std::size_t>{samples, 1, features}));
  EXPECT_TRUE(std::equal(pixels.begin(), pixels.end(), input.values.begin()));
  for (std::size_t op = 0; op < b.graph.ops.size(); ++op) {
    const nlohmann::json& e = index["ops"][op];
    SCOPED_TRACE(e.dump());
    EXPECT_EQ(e.at("name"), b.graph.ops[op].name);
    const NpyArray npy = read_npy(dir / "golden" / e["npy"].get<std::string>());
    const std::vector<std::int64_t> hex = read_memh(dir / "golden" / e["hex"].get<std::string>(), 32);
    const std::size_t size = b.graph.tensor(b.graph.ops[op].output).size();
    EXPECT_EQ(npy.shape, (std::vector<std::size_t>{samples, 1, size}));
    std::vector<std::int64_t> want;
    for (std::size_t i = 0; i < samples; ++i) want.insert(want.end(), outputs[i][op].begin(), outputs[i][op].end());
    EXPECT_EQ(npy.values, want);
    EXPECT_EQ(hex, want);
  }
  // Negative values are written as two's complement words.
  bool negative = false;
  for (const auto& o : outputs) negative |= std::any_of(o.back().begin(), o.back().end(), [](std::int32_t v) { return v < 0; });
  EXPECT_TRUE(negative);
}

// The graph's fused view and the integer engine: per-layer outputs are the relu (or last linear)
// op outputs, and the quantize ops' codes lie within the target's code range.
TEST(IntEngine, OpOutputsFollowTheGraph) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  const Bundle b = test_bundle(t, seed);
  const AcceleratorLowering lowering = accelerator_layers(b.graph);
  ASSERT_FALSE(lowering.unsupported) << *lowering.unsupported;
  ASSERT_EQ(lowering.layers.size(), 3u);
  std::vector<std::uint8_t> pixels(b.features());
  std::mt19937_64 rng(seed);
  for (auto& p : pixels) p = static_cast<std::uint8_t>(rng() % 256);
  const OpOutputs o = IntEngine(b).run(pixels.data());
  for (std::size_t i = 0; i < b.graph.ops.size(); ++i) {
    const Op& op = b.graph.ops[i];
    ASSERT_EQ(o[i].size(), b.graph.tensor(op.output).size()) << op.name;
    for (std::int32_t v : o[i]) {
      const bool ok = op.type == OpType::Quantize ? std::abs(v) <= arith::act_qmax(t.format.act_bits)
                                                  : op.type != OpType::Relu || v >= 0;
      ASSERT_TRUE(ok) << op.name << ": " << v;
    }
  }
  EXPECT_EQ(layer_outputs(lowering.layers, o).back(), o.back());
}

// A graph the accelerator's layer chain cannot run is refused with the reason.
TEST(AcceleratorLayers, RefusesOtherShapes) {
  Bundle b = test_bundle(target::builtin_target("ternary-asic"), 1);
  Graph g = b.graph;
  g.ops.erase(g.ops.begin() + 3);  // layer1.quantize gone: linear fed by values
  EXPECT_TRUE(accelerator_layers(g).unsupported);
  EXPECT_THROW(validate(g, b.target.format), GraphError);
}

}  // namespace
}  // namespace qathw::model

namespace qathw::model {
namespace {

// The previous release's version-1 bundle loads as the op graph, and re-saved as version 2 it
// computes the same integers.
TEST(BundleVersion1, LoadsAndResavesAsVersion2) {
  const fs::path v1 = fs::path(QATHW_TEST_DATA_DIR) / "bundle-v1" / "model.qhw";
  const Bundle b = load_bundle(v1);
  EXPECT_EQ(b.loaded_version, 1);
  EXPECT_EQ(b.target.name, "ternary-asic");
  std::vector<std::string> ops;
  for (const Op& op : b.graph.ops) ops.push_back(op.name);
  EXPECT_EQ(ops, (std::vector<std::string>{"layer0.quantize", "layer0.linear", "layer0.relu", "layer1.quantize",
                                           "layer1.linear"}));
  TempDir dir;
  save_bundle(dir / "v2.qhw", b);
  const Bundle back = load_bundle(dir / "v2.qhw");
  EXPECT_EQ(back.loaded_version, 2);
  std::vector<std::uint8_t> pixels(b.features() * 9);
  std::mt19937_64 rng(test::test_seed());
  for (auto& p : pixels) p = static_cast<std::uint8_t>(rng() % 256);
  EXPECT_EQ(IntEngine(b).run_all(pixels.data(), 9), IntEngine(back).run_all(pixels.data(), 9));
}

}  // namespace
}  // namespace qathw::model
