// Target parsing, validation and hashing.
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "qathw/arith/fixed_point.h"
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

// ternary-asic's text with one [scale] or [arithmetic]/[activations] line replaced.
std::string with_fields(const std::vector<std::pair<std::string, std::string>>& replacements) {
  std::string text = read_text(fs::path(QATHW_BUILTIN_TARGETS_DIR) / "ternary-asic.toml");
  for (const auto& [from, to] : replacements) {
    const auto pos = text.find(from + "\n");
    EXPECT_NE(pos, std::string::npos) << from;
    if (pos != std::string::npos) text.replace(pos, from.size(), to);
  }
  return text;
}

// scale.shift_min <= mantissa_bits - 1: the requantization pair of the ratio 1, which the trainer
// derives for the channel with the largest weight scale, exists exactly then.
TEST(ScaleRules, ShiftMinAtMostMantissaBitsLessOne) {
  const TargetSpec edge = parse_target(with_fields({{"shift_min = 0", "shift_min = 15"}}), "edge.toml");
  const arith::FixedPointResult one = arith::to_fixed_point(1.0, edge.format);
  ASSERT_EQ(one.status, arith::FixedPointStatus::Ok);
  EXPECT_EQ(one.value.mantissa, 1 << 15);
  EXPECT_EQ(one.value.shift, 15);
  try {
    parse_target(with_fields({{"shift_min = 0", "shift_min = 16"}}), "over.toml");
    FAIL() << "shift_min = mantissa_bits was accepted";
  } catch (const TargetError& e) {
    EXPECT_NE(std::string(e.what()).find("over.toml: field 'scale.shift_min': must be at most scale.mantissa_bits - 1"),
              std::string::npos)
        << e.what();
  }
  arith::Format over = edge.format;
  over.scale_shift_min = 16;  // what the rule refuses: the ratio 1 has no pair
  EXPECT_EQ(arith::to_fixed_point(1.0, over).status, arith::FixedPointStatus::TooLarge);
}

// scale.shift_max >= mantissa_bits + accumulator_bits - activations.bits + 1: at that bound the
// reciprocal of every magnitude an accumulator can hold is a normalised pair.
TEST(ScaleRules, ShiftMaxCoversTheReciprocalOfEveryAccumulatorMagnitude) {
  // 16 + 10 - 8 + 1 = 19
  const std::string edge_text = with_fields({{"accumulator_bits = 24", "accumulator_bits = 10"},
                                             {"shift_max = 62", "shift_max = 19"}});
  const TargetSpec edge = parse_target(edge_text, "edge.toml");
  const arith::Format& f = edge.format;
  const std::int64_t qmax = arith::signed_max(f.act_bits);
  for (std::int64_t amax = 1; amax <= (std::int64_t{1} << (f.acc_bits - 1)); ++amax) {
    const arith::FixedPoint r = arith::reciprocal(amax, qmax, f);
    ASSERT_GE(r.mantissa, std::int64_t{1} << (f.scale_mantissa_bits - 1)) << "amax " << amax << " not normalised";
    ASSERT_LE(r.shift, f.scale_shift_max);
  }
  try {
    parse_target(with_fields({{"accumulator_bits = 24", "accumulator_bits = 10"}, {"shift_max = 62", "shift_max = 18"}}),
                 "under.toml");
    FAIL() << "shift_max below the bound was accepted";
  } catch (const TargetError& e) {
    EXPECT_NE(std::string(e.what()).find("under.toml: field 'scale.shift_max': must be at least scale.mantissa_bits + "
                                         "arithmetic.accumulator_bits - activations.bits + 1 = 19"),
              std::string::npos)
        << e.what();
  }
}

// A target embedded in a bundle arrives as JSON: the same reader validates it.
TEST(JsonTargets, ValidatedLikeTomlAndOnlyPlainValues) {
  nlohmann::json j = to_json(builtin_target("ternary-asic"));
  EXPECT_EQ(content_hash(target_from_json(j, "m.json")), content_hash(builtin_target("ternary-asic")));
  j["scale"]["shift_min"] = 16;
  EXPECT_THROW(
      {
        try {
          target_from_json(j, "m.json");
        } catch (const TargetError& e) {
          EXPECT_NE(std::string(e.what()).find("m.json: field 'scale.shift_min'"), std::string::npos) << e.what();
          throw;
        }
      },
      TargetError);
  j["scale"]["shift_min"] = nullptr;
  try {
    target_from_json(j, "m.json");
    FAIL() << "null accepted";
  } catch (const TargetError& e) {
    EXPECT_NE(std::string(e.what()).find("m.json: field 'scale.shift_min': unsupported JSON value"), std::string::npos)
        << e.what();
  }
  try {
    target_from_json(nlohmann::json::array(), "a.json");
    FAIL() << "array accepted";
  } catch (const TargetError& e) {
    EXPECT_NE(std::string(e.what()).find("a.json: the target must be an object, not array"), std::string::npos)
        << e.what();
  }
}

// JSON integers beyond int64 are refused naming the field (they were wrapped to a negative
// number); tables nest one level only; `hash` and `origin` (what `targets show` adds) are ignored.
TEST(JsonTargets, HugeIntegersDeepObjectsAndShowKeys) {
  nlohmann::json j = to_json(builtin_target("ternary-asic"));
  j["hash"] = "0123456789abcdef";
  j["origin"] = "built-in:ternary-asic";
  EXPECT_EQ(content_hash(target_from_json(j, "m.json")), content_hash(builtin_target("ternary-asic")));
  const auto expect_error = [](const nlohmann::json& bad, const std::string& fragment) {
    try {
      target_from_json(bad, "m.json");
      ADD_FAILURE() << "accepted: " << fragment;
    } catch (const TargetError& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  nlohmann::json bad = j;
  bad["activations"]["bits"] = std::uint64_t{18446744073709551615u};
  expect_error(bad, "m.json: field 'activations.bits': 18446744073709551615 is beyond the 64-bit integer range");
  bad = j;
  bad["array"]["rows"] = {{"value", 16}};
  expect_error(bad, "m.json: field 'array.rows': must be a number, a string or a boolean, not an object");
}

// The clock is a finite frequency in [1, 100000] MHz: a vanishing one overflowed the SystemC
// model's integer clock period; every number field refuses NaN and infinity.
TEST(NumberFields, ClockAndEnergyRanges) {
  const auto frequency = [](const std::string& value) {
    return parse_target(with_fields({{"frequency_mhz = 500", "frequency_mhz = " + value}}), "f.toml").clock_mhz;
  };
  EXPECT_EQ(frequency("1"), 1.0);
  EXPECT_EQ(frequency("100000"), 100000.0);
  for (const std::string v : {"1e-300", "0.999", "0", "-0.0", "100000.5", "inf", "nan"}) {
    try {
      frequency(v);
      ADD_FAILURE() << v << " accepted";
    } catch (const TargetError& e) {
      EXPECT_NE(std::string(e.what()).find("f.toml: field 'clock.frequency_mhz': must be a number in [1, 100000] (line 32)"),
                std::string::npos)
          << e.what();
    }
  }
  // The shortest spelling of the rejected value.
  try {
    parse_target(with_fields({{"add_pj_per_bit = 0.003125", "add_pj_per_bit = -0.1"}}), "e.toml");
    FAIL() << "negative energy accepted";
  } catch (const TargetError& e) {
    EXPECT_NE(std::string(e.what()).find("must be a number in [0, 1000] (line 36), got -0.1"), std::string::npos)
        << e.what();
  }
  // -0.0 is 0: the same canonical JSON and hash.
  const TargetSpec zero = parse_target(with_fields({{"add_pj_per_bit = 0.003125", "add_pj_per_bit = 0"}}), "z.toml");
  const TargetSpec minus = parse_target(with_fields({{"add_pj_per_bit = 0.003125", "add_pj_per_bit = -0.0"}}), "m.toml");
  EXPECT_EQ(content_hash(minus), content_hash(zero));
  EXPECT_FALSE(std::signbit(minus.energy.add_pj_per_bit));
}

// A rejected string is shown quoted, control characters escaped and cut at 64 characters.
TEST(Messages, RejectedStringsAreEscapedAndCut) {
  try {
    parse_target(with_fields({{"name = \"ternary-asic\"", "name = \"a\\u0007b\\u0000c\""}}), "n.toml");
    FAIL() << "accepted";
  } catch (const TargetError& e) {
    EXPECT_NE(std::string(e.what()).find("got \"a\\x07b\\x00c\""), std::string::npos) << e.what();
  }
  try {
    parse_target(with_fields({{"rounding = \"half_away_from_zero\"", "rounding = \"" + std::string(100, 'x') + "\""}}),
                 "r.toml");
    FAIL() << "accepted";
  } catch (const TargetError& e) {
    EXPECT_NE(std::string(e.what()).find("got \"" + std::string(64, 'x') + "...\""), std::string::npos) << e.what();
  }
}

TEST(MalformedTargets, MissingFileIsAnError) {
  EXPECT_THROW(load_target_file("/nonexistent/target.toml"), TargetError);
}

// [vector_unit] is optional, and so is each of its keys (arith's defaults); a default unit, written
// out or not, leaves the hash as it was before the table existed; each key is validated.
TEST(VectorUnit, OptionalFieldsDefaultsHashAndErrors) {
  const std::string base = read_text(fs::path(QATHW_BUILTIN_TARGETS_DIR) / "ternary-asic.toml");
  const TargetSpec plain = parse_target(base, "a.toml");
  EXPECT_EQ(plain.vector_unit.lanes, arith::VectorUnit{}.lanes);
  EXPECT_EQ(plain.vector_unit.acc_bits, arith::VectorUnit{}.acc_bits);
  EXPECT_EQ(content_hash(plain), "7b6bd217e58fa2df");  // ternary-asic's hash of the bundles on disk
  const TargetSpec written =
      parse_target(base + "[vector_unit]\nlanes = 16\noperand_bits = 8\naccumulator_bits = 32\noverflow = \"saturate\"\n",
                   "b.toml");
  EXPECT_EQ(content_hash(written), content_hash(plain));
  const TargetSpec narrow = parse_target(base + "[vector_unit]\nlanes = 5\naccumulator_bits = 12\n", "c.toml");
  EXPECT_EQ(narrow.vector_unit.lanes, 5);
  EXPECT_EQ(narrow.vector_unit.acc_bits, 12);
  EXPECT_EQ(narrow.vector_unit.operand_bits, 8);
  EXPECT_NE(content_hash(narrow), content_hash(plain));
  const nlohmann::json j = to_json(narrow);
  EXPECT_EQ(j["vector_unit"]["lanes"], 5);
  EXPECT_EQ(j["vector_unit"]["overflow"], "saturate");
  EXPECT_EQ(content_hash(target_from_json(j, "d.json")), content_hash(narrow));
  const auto error_of = [&](const std::string& table) {
    try {
      parse_target(base + table, "e.toml");
    } catch (const TargetError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of("[vector_unit]\nlanes = 0\n").find("e.toml: field 'vector_unit.lanes': must be an integer in [1, 1024]"),
            std::string::npos);
  EXPECT_NE(error_of("[vector_unit]\noperand_bits = 17\n").find("field 'vector_unit.operand_bits'"), std::string::npos);
  EXPECT_NE(error_of("[vector_unit]\naccumulator_bits = 40\n").find("field 'vector_unit.accumulator_bits'"),
            std::string::npos);
  EXPECT_NE(error_of("[vector_unit]\noverflow = \"clip\"\n").find("field 'vector_unit.overflow'"), std::string::npos);
  EXPECT_NE(error_of("[vector_unit]\nmultipliers = 4\n").find("vector_unit.multipliers"), std::string::npos);
}

// memory.kv_cache_kib: optional, 0 or absent reserves nothing and keeps the hash; a region is part
// of the activation SRAM, so larger than it is refused naming both fields.
TEST(KvCacheRegion, OptionalHashAndBoundedByTheActivationSram) {
  const std::string base = read_text(fs::path(QATHW_BUILTIN_TARGETS_DIR) / "ternary-asic.toml");
  const std::string line = "activation_sram_kib = 64\n";
  ASSERT_NE(base.find(line), std::string::npos);
  const auto with = [&](const std::string& kv) {
    std::string text = base;
    text.replace(text.find(line), line.size(), line + kv + "\n");
    return text;
  };
  const TargetSpec plain = parse_target(base, "a.toml");
  EXPECT_EQ(plain.memory.kv_cache_kib, 0);
  EXPECT_EQ(content_hash(parse_target(with("kv_cache_kib = 0"), "b.toml")), content_hash(plain));
  const TargetSpec region = parse_target(with("kv_cache_kib = 16"), "c.toml");
  EXPECT_EQ(region.memory.kv_cache_kib, 16);
  EXPECT_NE(content_hash(region), content_hash(plain));
  EXPECT_EQ(to_json(region)["memory"]["kv_cache_kib"], 16);
  EXPECT_EQ(target_from_json(to_json(region), "d.json").memory.kv_cache_kib, 16);
  EXPECT_EQ(content_hash(target_from_json(to_json(plain), "e.json")), content_hash(plain));
  EXPECT_EQ(parse_target(with("kv_cache_kib = 64"), "f.toml").memory.kv_cache_kib, 64);
  const auto error_of = [&](const std::string& kv) {
    try {
      parse_target(with(kv), "g.toml");
    } catch (const TargetError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string over = error_of("kv_cache_kib = 65");
  EXPECT_NE(over.find("g.toml: field 'memory.kv_cache_kib': must be at most memory.activation_sram_kib (64)"),
            std::string::npos) << over;
  EXPECT_NE(over.find("got 65"), std::string::npos) << over;
  EXPECT_NE(error_of("kv_cache_kib = -1").find("field 'memory.kv_cache_kib': must be an integer in [0, 1048576]"),
            std::string::npos);
  EXPECT_NE(error_of("kv_cache_kib = \"8\"").find("field 'memory.kv_cache_kib'"), std::string::npos);
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
