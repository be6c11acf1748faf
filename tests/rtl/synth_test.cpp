// Area figures of `qat-hw synth` (rtl/flow/src/synth.cpp): every cell type is counted once, on a
// fabricated yosys by-type table and on a real synthesis of a 2x4 datapath.
#include <filesystem>
#include <regex>
#include <stdexcept>

#include <gtest/gtest.h>

#include "qathw/rtl/synth.h"

namespace qathw::rtl {
namespace {

TEST(SynthCounts, EachGenericFlipFlopTypeCountsOnce) {
  // "$_DFF" is a prefix of "$_DFFE_..." and "$_DFFSR_...", "$_SDFF" of "$_SDFFE_..." and
  // "$_SDFFCE_...": a count by prefix that does not stop at the first match doubles them.
  const nlohmann::json by_type = {{"$_DFFE_PN0P_", 218}, {"$_DFF_PN0_", 2},     {"$_SDFFE_PP0P_", 5},
                                  {"$_SDFFCE_PN1P_", 3}, {"$_SDFF_PP0_", 7},    {"$_ALDFFE_PPP_", 11},
                                  {"$_DFFSR_PPP_", 13},  {"$_AND_", 1000},     {"$_DLATCH_P_", 17},
                                  {"$_XOR_", 400},       {"$_MUX_", 300}};
  const long want = 218 + 2 + 5 + 3 + 7 + 11 + 13;
  EXPECT_EQ(count_cell_types(by_type, kGenericFlipFlops), want);
  EXPECT_EQ(count_cell_types(by_type, {"$_DFF", "$_SDFF", "$_DFFE", "$_SDFFE", "$_ALDFF"}), want);
}

TEST(SynthCounts, OverlappingPrefixesCountATypeOnce) {
  const nlohmann::json by_type = {{"FDRE", 40}, {"FDCE", 4}, {"LUT6", 9}, {"LUT2", 1}, {"CARRY4", 3}};
  EXPECT_EQ(count_cell_types(by_type, {"FD", "FDRE", "FDR"}), 44);
  EXPECT_EQ(count_cell_types(by_type, {"LUT", "LUT6"}), 10);
  EXPECT_EQ(count_cell_types(by_type, {"DSP"}), 0);
}

// The generic flow's flip-flops of a 2x4 ternary datapath equal the sum of its flip-flop cell
// types as the report lists them (read here with a pattern of their own), and cover at least the
// Rows accumulators.
TEST(SynthCounts, RealSynthesisOfA2x4DatapathCountsEachFlipFlopOnce) {
  target::TargetSpec t = target::builtin_target("ternary-asic");
  t.name = "tiny-array";
  t.array.rows = 2;
  t.array.lanes = 4;
  SynthSettings s;
  s.cache_dir = std::filesystem::path(QATHW_TEST_BINARY_DIR) / "synth-cache";
  s.quiet = true;
  std::filesystem::remove_all(s.cache_dir);  // run yosys, not a cached report
  nlohmann::json r;
  try {
    r = synthesize(t, "generic", s);
  } catch (const std::runtime_error& e) {
    if (std::string(e.what()).find("not installed") != std::string::npos) GTEST_SKIP() << e.what();
    throw;
  }
  ASSERT_FALSE(r["cached"].get<bool>());
  const std::regex flip_flop(R"(^\$_(DFF|DFFE|DFFSR|DFFSRE|SDFF|SDFFE|SDFFCE|ALDFF|ALDFFE)_[PN01]+_$)");
  long listed = 0;
  for (const auto& [name, count] : r["by_type"].items())
    if (std::regex_match(name, flip_flop)) listed += count.get<long>();
  const long ff = r["flip_flops"].get<long>();
  EXPECT_EQ(ff, listed);
  EXPECT_GE(ff, t.array.rows * t.format.acc_bits);
  EXPECT_LT(ff, r["cells"].get<long>());
  // A second call reads the cache and reports the same figures.
  const nlohmann::json again = synthesize(t, "generic", s);
  EXPECT_TRUE(again["cached"].get<bool>());
  EXPECT_EQ(again["flip_flops"], r["flip_flops"]);
  EXPECT_EQ(again["cells"], r["cells"]);
}

// Module by module (each distinct module synthesized once, counted per instance): the same
// flip-flops as the flattened netlist, cells within the 6% docs/sweep.md states (it gives the measured
// differences), only primitive cells in the table, and the xilinx flow refused.
TEST(SynthCounts, ModuleByModuleCountsMatchTheFlattenedNetlist) {
  target::TargetSpec t = target::builtin_target("ternary-asic");
  t.name = "tiny-array";
  t.array.rows = 2;
  t.array.lanes = 4;
  SynthSettings flat;
  flat.cache_dir = std::filesystem::path(QATHW_TEST_BINARY_DIR) / "synth-cache-modules";
  flat.quiet = true;
  std::filesystem::remove_all(flat.cache_dir);
  SynthSettings modules = flat;
  modules.flatten = false;
  nlohmann::json a, b;
  try {
    a = synthesize(t, "generic", flat);
    b = synthesize(t, "generic", modules);
  } catch (const std::runtime_error& e) {
    if (std::string(e.what()).find("not installed") != std::string::npos) GTEST_SKIP() << e.what();
    throw;
  }
  EXPECT_TRUE(a["flatten"].get<bool>());
  EXPECT_FALSE(b["flatten"].get<bool>());
  EXPECT_FALSE(b["cached"].get<bool>());  // its own cache entry, not the flattened one
  EXPECT_EQ(b["flip_flops"], a["flip_flops"]);
  const double cells = a["cells"].get<double>();
  EXPECT_NEAR(b["cells"].get<double>(), cells, 0.06 * cells);
  for (const auto& [name, count] : b["by_type"].items()) EXPECT_EQ(name.rfind("$_", 0), 0u) << name;
  EXPECT_THROW(synthesize(t, "xilinx", modules), std::invalid_argument);
}

}  // namespace
}  // namespace qathw::rtl
