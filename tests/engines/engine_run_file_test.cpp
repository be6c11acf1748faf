// The file a verify worker hands back its slice in, and the join of an engine's slices.
#include "qathw/verify/engine_run_file.h"

#include <gtest/gtest.h>

#include "../training/temp_dir.h"
#include "qathw/util/atomic_file.h"

namespace qathw::verify {
namespace {

using qathw::test::TempDir;

EngineRun slice(std::int32_t base, std::size_t samples) {
  EngineRun r;
  r.seconds = 1.5;
  r.stats = {{"cycles_per_layer", {899, 305}}, {"simulated_cycles", 1000}};
  for (std::size_t s = 0; s < samples; ++s) {
    r.outputs.push_back({{base + static_cast<std::int32_t>(s), -7}, {}, {2147483647, -2147483647 - 1}});
    r.layer_end.push_back({10 + s, 20 + s});
  }
  return r;
}

TEST(EngineRunFile, RoundTripsEveryField) {
  TempDir dir;
  const EngineRun r = slice(5, 3);
  write_engine_run(dir / "r.run", r);
  const EngineRun back = read_engine_run(dir / "r.run");
  EXPECT_EQ(back.outputs, r.outputs);
  EXPECT_EQ(back.layer_end, r.layer_end);
  EXPECT_EQ(back.seconds, r.seconds);
  EXPECT_EQ(back.stats, r.stats);
}

TEST(EngineRunFile, RefusesTruncatedAndForeignFiles) {
  TempDir dir;
  write_engine_run(dir / "r.run", slice(5, 3));
  const std::string bytes = util::read_file(dir / "r.run");
  for (std::size_t keep : {bytes.size() - 1, bytes.size() - 9, bytes.find('\n') + 3}) {
    util::write_file_atomic(dir / "cut.run", bytes.substr(0, keep));
    EXPECT_THROW(read_engine_run(dir / "cut.run"), std::runtime_error) << keep;
  }
  util::write_file_atomic(dir / "extra.run", bytes + "x");
  EXPECT_THROW(read_engine_run(dir / "extra.run"), std::runtime_error);
  util::write_file_atomic(dir / "text.run", "hello\n");
  EXPECT_THROW(read_engine_run(dir / "text.run"), std::runtime_error);
}

TEST(JoinSlices, InSampleOrderWithTimesAndSimulatedCyclesSummed) {
  std::vector<EngineRun> slices = {slice(0, 2), slice(100, 3)};
  const EngineRun all = join_slices(std::move(slices));
  ASSERT_EQ(all.outputs.size(), 5u);
  EXPECT_EQ(all.outputs[1][0][0], 1);
  EXPECT_EQ(all.outputs[2][0][0], 100);
  EXPECT_EQ(all.layer_end.size(), 5u);
  EXPECT_EQ(all.seconds, 3.0);
  EXPECT_EQ(all.stats["simulated_cycles"], 2000);
  EXPECT_EQ(all.stats["cycles_per_layer"], nlohmann::json({899, 305}));
  EXPECT_DOUBLE_EQ(all.stats["cycles_per_s"].get<double>(), 2000 / 3.0);
}

}  // namespace
}  // namespace qathw::verify
