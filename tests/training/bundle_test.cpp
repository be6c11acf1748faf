// The deployed bundle: round trip, and every way a bundle on disk can be wrong, each rejected with
// a message naming the file and what is wrong.
#include "qathw/training/bundle.h"

#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "../arith/test_support.h"
#include "temp_dir.h"

namespace qathw::training {
namespace {

namespace fs = std::filesystem;
using qathw::test::read_binary;
using qathw::test::TempDir;
using qathw::test::write_binary;

Mlp test_net(std::uint64_t seed) { return make_mlp(6 * 5, {11, 9}, 4, seed); }

Bundle test_bundle(const target::TargetSpec& t, std::uint64_t seed) {
  return make_bundle(test_net(seed), t, 6, 5, nlohmann::json{{"note", "test"}, {"seed", seed}});
}

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
  ASSERT_EQ(b.layers.size(), 3u);
  bool nonzero = false, negative = false;
  for (std::size_t l = 0; l < b.layers.size(); ++l) {
    const std::vector<std::int8_t> codes = b.layers[l].codes();
    ASSERT_EQ(codes.size(), q[l].codes.size());
    for (std::size_t i = 0; i < codes.size(); ++i) {
      ASSERT_EQ(codes[i], static_cast<std::int8_t>(q[l].codes[i])) << "layer " << l << " code " << i;
      nonzero |= codes[i] > 0;
      negative |= codes[i] < 0;
    }
    ASSERT_EQ(b.layers[l].requant.size(), q[l].requant.size());
    for (std::size_t n = 0; n < q[l].requant.size(); ++n) {
      EXPECT_EQ(b.layers[l].requant[n].mantissa, q[l].requant[n].mantissa);
      EXPECT_EQ(b.layers[l].requant[n].shift, q[l].requant[n].shift);
    }
  }
  EXPECT_TRUE(nonzero && negative);

  TempDir dir;
  save_bundle(dir / "model.qhw", b);
  EXPECT_TRUE(fs::exists(dir / "model.qhw" / "manifest.json"));
  EXPECT_TRUE(fs::exists(dir / "model.qhw" / "weights.bin"));
  const Bundle back = load_bundle(dir / "model.qhw", &t);
  EXPECT_EQ(back.target.name, t.name);
  EXPECT_EQ(back.target_hash, target::content_hash(t));
  EXPECT_EQ(back.target_hash, b.target_hash);
  EXPECT_EQ(back.rows, 6);
  EXPECT_EQ(back.cols, 5);
  EXPECT_EQ(back.classes, 4);
  EXPECT_EQ(back.training.at("note"), "test");
  ASSERT_EQ(back.layers.size(), b.layers.size());
  for (std::size_t l = 0; l < b.layers.size(); ++l) {
    SCOPED_TRACE("layer " + std::to_string(l));
    const BundleLayer& x = b.layers[l];
    const BundleLayer& y = back.layers[l];
    EXPECT_EQ(y.in, x.in);
    EXPECT_EQ(y.out, x.out);
    EXPECT_EQ(y.relu, x.relu);
    EXPECT_EQ(y.relu, l + 1 < b.layers.size());
    EXPECT_EQ(y.format, t.format.weights);
    EXPECT_EQ(y.packed, x.packed);
    EXPECT_EQ(y.packed.size(), arith::packed_bytes(static_cast<std::size_t>(x.in) * x.out, t.format.weights));
    EXPECT_EQ(y.codes(), x.codes());
    ASSERT_EQ(y.requant.size(), x.requant.size());
    for (std::size_t n = 0; n < x.requant.size(); ++n) {
      EXPECT_EQ(y.requant[n].mantissa, x.requant[n].mantissa) << n;
      EXPECT_EQ(y.requant[n].shift, x.requant[n].shift) << n;
    }
    EXPECT_EQ(y.scales, x.scales);
    EXPECT_EQ(y.reference, x.reference);
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
  const std::size_t at = m["layers"][1]["weights"]["offset"].get<std::size_t>() + 3;
  w[at] ^= 0x01;
  write_binary(path_ / "weights.bin", w);
  expect_rejected(path_, {weights_, "checksum mismatch in layers[1]"});
}

TEST_F(BundleRejects, TruncatedWeights) {
  std::vector<unsigned char> w = read_binary(path_ / "weights.bin");
  w.resize(w.size() - 1);
  write_binary(path_ / "weights.bin", w);
  expect_rejected(path_, {weights_, "truncated", "layers[2]"});
  write_binary(path_ / "weights.bin", {});
  expect_rejected(path_, {weights_, "truncated", "layers[0]"});
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

TEST_F(BundleRejects, NotADirectory) {
  expect_rejected(dir_ / "absent.qhw", {(dir_ / "absent.qhw").string(), "not a bundle directory"});
}

TEST_F(BundleRejects, ManifestNotJson) {
  std::ofstream(path_ / "manifest.json", std::ios::trunc) << "{ \"format\": ";
  expect_rejected(path_, {manifest_, "not valid JSON"});
}

TEST_F(BundleRejects, WrongVersion) {
  nlohmann::json m = read_manifest(path_);
  ASSERT_EQ(m["version"], 1);
  m["version"] = 2;
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "version", "2", "not supported"});
  m.erase("version");
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "version"});
}

// Fields of the wrong JSON type are errors in the manifest too, named like any other.
TEST_F(BundleRejects, FieldsOfTheWrongType) {
  const nlohmann::json original = read_manifest(path_);
  const std::vector<std::pair<std::string, nlohmann::json>> edits = {
      {"version", "1"}, {"format", 1}, {"classes", "4"}, {"layers", nlohmann::json::object({{"0", 1}})}};
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

TEST_F(BundleRejects, LayerShapesThatDoNotChain) {
  nlohmann::json m = read_manifest(path_);
  m["layers"][1]["in"] = 12;
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "layers[1].in"});
  m = read_manifest(path_);
  m["layers"][1]["in"] = 11;
  m["classes"] = 5;
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "classes"});
}

TEST_F(BundleRejects, RequantPairOutsideTheScaleFormat) {
  const nlohmann::json original = read_manifest(path_);
  nlohmann::json m = original;
  m["layers"][0]["requant"][2][0] = std::int64_t{1} << 16;  // 16 mantissa bits
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "layers[0].requant", "outside the target's scale format"});
  m = original;
  m["layers"][0]["requant"].erase(0);
  write_manifest(path_, m);
  expect_rejected(path_, {manifest_, "layers[0].requant", "one pair per output channel"});
}

// 0b10 is no ternary code. With the layer's CRC fixed up, the code check is what must catch it.
TEST_F(BundleRejects, InvalidTernaryField) {
  std::vector<unsigned char> w = read_binary(path_ / "weights.bin");
  nlohmann::json m = read_manifest(path_);
  auto& layer = m["layers"][2]["weights"];
  const std::size_t offset = layer["offset"].get<std::size_t>();
  const std::size_t bytes = layer["bytes"].get<std::size_t>();
  // Code 5 of the layer: byte 1, bits 2..3.
  w[offset + 1] = static_cast<unsigned char>((w[offset + 1] & ~0x0C) | (0b10 << 2));
  layer["crc32"] = static_cast<std::uint32_t>(crc32(crc32(0L, Z_NULL, 0), w.data() + offset, static_cast<uInt>(bytes)));
  write_binary(path_ / "weights.bin", w);
  write_manifest(path_, m);
  expect_rejected(path_, {weights_, "invalid", "-2", "layers[2]"});
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
  auto& layer = m["layers"][1]["weights"];
  const std::size_t offset = layer["offset"].get<std::size_t>();
  const std::size_t bytes = layer["bytes"].get<std::size_t>();
  w[offset + 2] = static_cast<unsigned char>((w[offset + 2] & 0x0F) | 0x80);  // code 5: the high nibble of byte 2
  layer["crc32"] = static_cast<std::uint32_t>(crc32(crc32(0L, Z_NULL, 0), w.data() + offset, static_cast<uInt>(bytes)));
  write_binary(p / "weights.bin", w);
  write_manifest(p, m);
  expect_rejected(p, {(p / "weights.bin").string(), "invalid", "-8", "layers[1]"});
  // Code +7 in the same place is fine.
  w[offset + 2] = static_cast<unsigned char>((w[offset + 2] & 0x0F) | 0x70);
  layer["crc32"] = static_cast<std::uint32_t>(crc32(crc32(0L, Z_NULL, 0), w.data() + offset, static_cast<uInt>(bytes)));
  write_binary(p / "weights.bin", w);
  write_manifest(p, m);
  EXPECT_EQ(load_bundle(p).layers[1].code(0, 5), 7);
}

TEST(SaveBundle, ReplacesAnExistingBundleWholeWithNoLeftovers) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  TempDir dir;
  const fs::path p = dir / "model.qhw";
  const Bundle first = test_bundle(t, seed);
  const Bundle second = test_bundle(t, seed + 1);
  ASSERT_NE(first.layers[0].packed, second.layers[0].packed);
  save_bundle(p, first);
  std::ofstream(p / "stale.txt") << "from the first save";
  save_bundle(p, second);
  const Bundle back = load_bundle(p);
  for (std::size_t l = 0; l < second.layers.size(); ++l) EXPECT_EQ(back.layers[l].packed, second.layers[l].packed);
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
  EXPECT_EQ(back.layers[0].packed, first.layers[0].packed);
  std::vector<std::string> entries;
  for (const auto& e : fs::directory_iterator(dir.path())) entries.push_back(e.path().filename().string());
  EXPECT_EQ(entries, std::vector<std::string>{"model.qhw"});
}

}  // namespace
}  // namespace qathw::training
