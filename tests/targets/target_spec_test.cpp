// Target parsing, validation and hashing.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "qathw/target/target_spec.h"

namespace qathw::target {
namespace {

namespace fs = std::filesystem;

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(BuiltinTargets, BothParseAndMatchTheirFileNames) {
  const auto names = builtin_names();
  ASSERT_EQ(names.size(), 2u);
  for (const auto& name : {"ternary-asic", "int4-fpga"}) {
    const TargetSpec s = builtin_target(name);
    EXPECT_EQ(s.name, name);
    // The embedded copy is the file in targets/.
    const TargetSpec from_file = load_target_file(fs::path(QATHW_BUILTIN_TARGETS_DIR) / (std::string(name) + ".toml"));
    EXPECT_EQ(content_hash(s), content_hash(from_file));
  }
  const TargetSpec t = builtin_target("ternary-asic");
  EXPECT_EQ(t.format.weights, arith::WeightFormat::Ternary);
  EXPECT_EQ(t.format.act_bits, 8);
  EXPECT_EQ(t.format.act_quantizer, arith::ActQuantizer::DynamicPerTokenAbsmax);
  const TargetSpec i = builtin_target("int4-fpga");
  EXPECT_EQ(i.format.weights, arith::WeightFormat::Int4);
  EXPECT_NE(content_hash(t), content_hash(i));
}

TEST(BuiltinTargets, UnknownNameListsTheBuiltins) {
  try {
    builtin_target("no-such-target");
    FAIL() << "expected TargetError";
  } catch (const TargetError& e) {
    EXPECT_NE(std::string(e.what()).find("ternary-asic"), std::string::npos) << e.what();
  }
}

TEST(ContentHash, IgnoresFormattingOrderAndCitationButNotValues) {
  const std::string text = read_text(fs::path(QATHW_BUILTIN_TARGETS_DIR) / "ternary-asic.toml");
  const TargetSpec base = parse_target(text, "a.toml");
  // Same content with the tables in reverse order, another name, description and citation.
  std::string reordered =
      "name = \"renamed\"\n"
      "[energy]\nregister_pj_per_bit = 0.005\nsram_write_pj_per_bit = 0.15625\n"
      "sram_read_pj_per_bit = 0.15625\nadd_pj_per_bit = 0.003125\nsource = \"elsewhere\"\n"
      "[clock]\nfrequency_mhz = 500.0\n[memory]\nactivation_sram_kib = 64\nweight_sram_kib = 256\n"
      "[array]\nlanes = 16\nrows = 16\n[scale]\nshift_max = 62\nshift_min = 0\nmantissa_bits = 16\n"
      "[arithmetic]\noverflow = \"saturate\"\naccumulator_bits = 24\nrounding = \"half_away_from_zero\"\n"
      "[activations]\nquantizer = \"dynamic_per_token_absmax\"\nbits = 8\n[weights]\nformat = \"ternary\"\n";
  EXPECT_EQ(content_hash(parse_target(reordered, "b.toml")), content_hash(base));
  const auto pos = reordered.find("accumulator_bits = 24");
  reordered.replace(pos, 21, "accumulator_bits = 23");
  EXPECT_NE(content_hash(parse_target(reordered, "c.toml")), content_hash(base));
  EXPECT_EQ(content_hash(base).size(), 16u);
}

// Every file in tests/targets/bad/ starts with "# expect: TEXT"; loading it must fail with a
// message that names the file and contains TEXT (the field and what is wrong).
TEST(MalformedTargets, EachFailsNamingFileAndField) {
  int checked = 0;
  for (const auto& entry : fs::directory_iterator(fs::path(QATHW_TEST_DATA_DIR) / "bad")) {
    const fs::path path = entry.path();
    std::ifstream in(path);
    std::string first;
    std::getline(in, first);
    const std::string tag = "# expect: ";
    ASSERT_EQ(first.rfind(tag, 0), 0u) << path << " lacks an '# expect:' line";
    const std::string expect = first.substr(tag.size());
    try {
      load_target_file(path);
      ADD_FAILURE() << path << " was accepted";
    } catch (const TargetError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(path.string()), std::string::npos) << "no file name in: " << msg;
      EXPECT_NE(msg.find(expect), std::string::npos) << path << ": '" << expect << "' not in: " << msg;
    }
    ++checked;
  }
  EXPECT_GE(checked, 15);
}

TEST(MalformedTargets, MissingFileIsAnError) {
  EXPECT_THROW(load_target_file("/nonexistent/target.toml"), TargetError);
}

TEST(ToJson, RoundTripsEveryField) {
  const TargetSpec s = builtin_target("int4-fpga");
  const nlohmann::json j = to_json(s);
  EXPECT_EQ(j["weights"]["format"], "int4");
  EXPECT_EQ(j["arithmetic"]["rounding"], "half_even");
  EXPECT_EQ(j["arithmetic"]["overflow"], "wrap");
  EXPECT_EQ(j["arithmetic"]["accumulator_bits"], 32);
  EXPECT_EQ(j["array"]["lanes"], s.array.lanes);
  EXPECT_EQ(j["scale"]["mantissa_bits"], s.format.scale_mantissa_bits);
}

}  // namespace
}  // namespace qathw::target
