// Sweep specs: parsing, validation errors naming the field, point expansion, stable hashes and
// which points share a training run.
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "qathw/sweep/sweep_spec.h"

namespace qathw::sweep {
namespace {

SweepSpec parse(const std::string& text) { return parse_sweep(text, "spec.toml", QATHW_SWEEPS_DIR); }

void expect_error(const std::string& text, const std::string& fragment) {
  try {
    expand(parse(text));
    ADD_FAILURE() << "accepted:\n" << text;
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("spec.toml"), std::string::npos) << msg;
    EXPECT_NE(msg.find(fragment), std::string::npos) << "'" << fragment << "' not in: " << msg;
  }
}

TEST(SweepSpec, ExampleExpandsToTheCrossProduct) {
  const SweepSpec spec = load_sweep(std::string(QATHW_SWEEPS_DIR) + "/examples/small.toml");
  const std::vector<Point> points = expand(spec);
  ASSERT_EQ(points.size(), 4u);
  std::set<std::string> hashes, keys;
  for (const Point& p : points) {
    hashes.insert(p.hash);
    keys.insert(p.training_key);
    EXPECT_EQ(p.target.array.rows, p.overrides["array.rows"].get<int>());
    EXPECT_EQ(p.target.format.acc_bits, p.overrides["arithmetic.accumulator_bits"].get<int>());
  }
  EXPECT_EQ(hashes.size(), 4u);
  EXPECT_EQ(keys.size(), 2u) << "geometries that differ only in rows must share a training run";
  EXPECT_EQ(spec.training.epochs, 2);
  EXPECT_EQ(spec.verify_samples, 500);
}

TEST(SweepSpec, HashesAreStableAndIndependentOfAxisOrder) {
  const std::string a = "base = \"int4-fpga\"\n[axes]\n\"array.lanes\" = [16, 32]\n\"arithmetic.overflow\" = [\"wrap\", \"saturate\"]\n";
  const std::string b = "base = \"int4-fpga\"\n[axes]\n\"arithmetic.overflow\" = [\"saturate\", \"wrap\"]\n\"array.lanes\" = [32, 16]\n";
  std::set<std::string> ha, hb;
  for (const Point& p : expand(parse(a))) ha.insert(p.hash);
  for (const Point& p : expand(parse(b))) hb.insert(p.hash);
  EXPECT_EQ(ha.size(), 4u);
  EXPECT_EQ(ha, hb);
  // With a saturating accumulator the lanes change the training key (the adder-tree width decides
  // where a sum can saturate); with a wrapping one they cannot change a sum: 2 saturate keys + 1.
  std::set<std::string> keys;
  for (const Point& p : expand(parse(a))) keys.insert(p.training_key);
  EXPECT_EQ(keys.size(), 3u);
}

TEST(SweepSpec, BadSpecsNameTheField) {
  expect_error("[axes]\n\"array.rows\" = [8]\n", "field 'base'");
  expect_error("base = \"nonesuch\"\n[axes]\n\"array.rows\" = [8]\n", "unknown target 'nonesuch'");
  expect_error("base = \"ternary-asic\"\ncolour = 1\n[axes]\n\"array.rows\" = [8]\n", "field 'colour'");
  expect_error("base = \"ternary-asic\"\n", "field 'axes'");
  expect_error("base = \"ternary-asic\"\n[axes]\n\"array.columns\" = [8]\n", "field 'axes.array.columns': not a target field");
  expect_error("base = \"ternary-asic\"\n[axes]\n\"array.rows\" = []\n", "field 'axes.array.rows': has no values");
  expect_error("base = \"ternary-asic\"\n[axes]\n\"array.rows\" = { from = 8, to = 4 }\n", "from <= to");
  expect_error("base = \"ternary-asic\"\n[axes]\n\"arithmetic.accumulator_bits\" = [24, 40]\n",
               "field 'arithmetic.accumulator_bits': must be an integer in [8, 32]");
  expect_error("base = \"ternary-asic\"\n[axes]\n\"array.rows\" = [8]\n[training]\nepochs = 0\n", "field 'training.epochs'");
  expect_error("base = \"ternary-asic\"\n[axes]\n\"array.rows\" = [8]\n[verify]\nsamples = 0\n", "field 'verify.samples'");
}

// synthesis.flatten chooses how area is counted (module by module by default); the two counts are
// different figures, so the same target has another point hash under each.
TEST(SweepSpec, SynthesisFlattenIsAFieldOfThePoint) {
  const std::string head = "base = \"ternary-asic\"\n[axes]\n\"array.rows\" = [8]\n";
  EXPECT_FALSE(parse(head).synth_flatten);
  const SweepSpec flat = parse(head + "[synthesis]\nflatten = true\n");
  EXPECT_TRUE(flat.synth_flatten);
  EXPECT_NE(expand(flat).front().hash, expand(parse(head)).front().hash);
  EXPECT_EQ(expand(parse(head + "[synthesis]\nflatten = false\n")).front().hash, expand(parse(head)).front().hash);
  expect_error(head + "[synthesis]\nflatten = 1\n", "field 'synthesis.flatten': must be true or false");
  expect_error(head + "[synthesis]\nflow = \"xilinx\"\n", "field 'synthesis.flow': unknown field");
  expect_error("base = \"ternary-asic\"\nsynthesis = 1\n[axes]\n\"array.rows\" = [8]\n", "field 'synthesis': must be a table");
}

// Values of the wrong type are errors, not silently replaced by the defaults; so are duplicated
// values (two points with one hash) and cross products too large to run.
TEST(SweepSpec, WrongTypesDuplicatesAndHugeSweepsAreRejected) {
  const std::string head = "base = \"ternary-asic\"\n[axes]\n\"array.rows\" = [8]\n";
  expect_error("base = 3\n[axes]\n\"array.rows\" = [8]\n", "field 'base': must be a string");
  expect_error("base = \"ternary-asic\"\naxes = [1]\n", "field 'axes': must be a table");
  expect_error("base = \"ternary-asic\"\n[axes]\n\"array.rows\" = [8, 16, 8]\n", "field 'axes.array.rows': value 8 is listed twice");
  expect_error("base = \"ternary-asic\"\n[axes]\n\"array.rows\" = { from = 8, to = 16, step = \"4\" }\n",
               "field 'axes.array.rows': a range needs integer");
  expect_error("base = \"ternary-asic\"\n[axes]\n\"array.rows\" = { from = 8.0, to = 16 }\n",
               "field 'axes.array.rows': a range needs integer");
  expect_error("base = \"ternary-asic\"\n[axes]\narray.rows = [8]\n", "field 'axes.array.rows': unknown field");
  // A range at the int64 limit ends (no overflow); its values then fail the target's checks.
  expect_error("base = \"ternary-asic\"\n[axes]\n\"array.rows\" = { from = 9223372036854775806, to = 9223372036854775807 }\n",
               "field 'array.rows'");
  expect_error("base = \"ternary-asic\"\n[axes]\n\"array.rows\" = { from = 1, to = 100 }\n"
               "\"array.lanes\" = { from = 1, to = 100 }\n\"memory.weight_sram_kib\" = { from = 1, to = 100 }\n",
               "field 'axes': more than 100000 points");
  expect_error("base = \"ternary-asic\"\ntraining = 1\n[axes]\n\"array.rows\" = [8]\n", "field 'training': must be a table");
  expect_error("base = \"ternary-asic\"\nverify = 1\n[axes]\n\"array.rows\" = [8]\n", "field 'verify': must be a table");
  expect_error(head + "[training]\ndata = 3\n", "field 'training.data': must be a string");
  expect_error(head + "[training]\nhidden = 64\n", "field 'training.hidden': must be a list");
  expect_error(head + "[training]\nhidden = []\n", "field 'training.hidden': must be a list of one or more");
  expect_error(head + "[training]\nhidden = [64.0]\n", "field 'training.hidden': layer sizes must be integers");
  expect_error(head + "[training]\nepochs = \"2\"\n", "field 'training.epochs': must be an integer");
  expect_error(head + "[training]\nseed = -1\n", "field 'training.seed': must be an integer >= 0");
  expect_error(head + "[training]\nseed = 1.5\n", "field 'training.seed': must be an integer >= 0");
  expect_error(head + "[verify]\nsamples = \"all\"\n", "field 'verify.samples': must be an integer");
  // The limits themselves are accepted.
  const SweepSpec ok = parse(head + "[training]\nhidden = [1, 65536]\nepochs = 10000\nseed = 0\n[verify]\nsamples = 1\n");
  EXPECT_EQ(ok.training.seed, 0u);
  EXPECT_EQ(ok.training.epochs, 10000);
  EXPECT_EQ(ok.training.hidden, (std::vector<int>{1, 65536}));
  EXPECT_EQ(parse("base = \"ternary-asic\"\n[axes]\n\"array.rows\" = { from = 1, to = 100 }\n"
                  "\"array.lanes\" = { from = 1, to = 1000, step = 1 }\n").axes.size(), 2u);  // 100000 points
}

// NaN and infinity fit no target field: refused at the axis (a point's JSON would show null); an
// empty data folder and an axis without a table are named too.
TEST(SweepSpec, NonFiniteValuesEmptyDataAndUndottedAxes) {
  const std::string head = "base = \"ternary-asic\"\n[axes]\n";
  expect_error(head + "\"clock.frequency_mhz\" = [500, nan]\n",
               "spec.toml: field 'axes.clock.frequency_mhz': values must be finite numbers, not nan");
  expect_error(head + "\"energy.add_pj_per_bit\" = [-inf]\n",
               "spec.toml: field 'axes.energy.add_pj_per_bit': values must be finite numbers, not -inf");
  expect_error(head + "\"clock.frequency_mhz\" = [1e-300]\n",
               "field 'clock.frequency_mhz': must be a number in [1, 100000], got 1e-300");
  expect_error(head + "\"array.rows\" = [8]\n[training]\ndata = \"\"\n",
               "spec.toml: field 'training.data': must name a data folder, not the empty string");
  expect_error(head + "\"name\" = [\"other\"]\n", "spec.toml: field 'axes.name': not a target field");
}

// training.model: a model file every point trains, or an axis of models; it is part of the
// training key by content, and errors name the spec's field and the model file's.
TEST(SweepSpec, ModelsAsATrainingFieldAndAsAnAxis) {
  const std::string head = "base = \"ternary-asic\"\n[axes]\n\"array.rows\" = [4, 8]\n";
  const SweepSpec one = parse(head + "[training]\nmodel = \"lenet\"\n");
  EXPECT_EQ(one.training.model, "lenet");
  const std::vector<Point> p1 = expand(one);
  ASSERT_EQ(p1.size(), 2u);
  EXPECT_EQ(p1[0].model, "lenet");
  EXPECT_EQ(p1[0].training_key, p1[1].training_key) << "rows do not change the training";
  // The MLP's points keep their hashes; a model makes other points.
  const std::vector<Point> mlp = expand(parse(head));
  EXPECT_TRUE(mlp[0].model.empty());
  EXPECT_NE(mlp[0].hash, p1[0].hash);

  const SweepSpec axis = parse("base = \"ternary-asic\"\n[axes]\n\"training.model\" = [\"lenet\", \"mlp\"]\n"
                               "\"array.rows\" = [4, 8]\n");
  const std::vector<Point> p2 = expand(axis);
  ASSERT_EQ(p2.size(), 4u);
  std::set<std::string> keys, models;
  for (const Point& p : p2) {
    keys.insert(p.training_key);
    models.insert(p.model);
    EXPECT_EQ(p.overrides["training.model"].get<std::string>(), p.model);
  }
  EXPECT_EQ(keys.size(), 2u);
  EXPECT_EQ(models, (std::set<std::string>{"lenet", "mlp"}));

  expect_error(head + "[training]\nmodel = \"nonesuch\"\n", "field 'training.model'");
  expect_error(head + "[training]\nmodel = 3\n", "field 'training.model': must be a model");
  expect_error(head + "[training]\nmodel = \"lenet\"\nhidden = [64]\n", "field 'training.hidden'");
  expect_error("base = \"ternary-asic\"\n[axes]\n\"training.model\" = [\"lenet\", 4]\n", "field 'axes.training.model'");
  expect_error("base = \"ternary-asic\"\n[axes]\n\"training.model\" = [\"no/such.toml\"]\n",
               "field 'axes.training.model'");
}

}  // namespace
}  // namespace qathw::sweep
