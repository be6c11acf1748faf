// The sweep results database: rows in and out with their types, one row per hash, a database
// bound to one sweep, and concurrent writer processes losing nothing.
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include <gtest/gtest.h>

#include "qathw/sweep/results_db.h"

namespace qathw::sweep {
namespace {

namespace fs = std::filesystem;

fs::path fresh(const std::string& name) {
  const fs::path p = fs::path(QATHW_TEST_BINARY_DIR) / name;
  fs::remove(p);
  fs::remove(p.string() + "-wal");
  fs::remove(p.string() + "-shm");
  return p;
}

nlohmann::json row(const std::string& hash, int index, double accuracy) {
  return {{"hash", hash}, {"point_index", index}, {"status", kDone}, {"overrides", R"({"array.rows":4})"},
          {"accuracy", accuracy}, {"cycles", 1234}, {"energy_nj", 1.5}, {"area_cells", 999}};
}

TEST(ResultsDb, RowsRoundTripWithTheirTypes) {
  ResultsDb db(fresh("types.sqlite"));
  db.record(row("b", 1, 0.5));
  db.record(row("a", 0, 0.25));
  const auto rows = db.rows();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["hash"], "a");  // ordered by point index
  EXPECT_EQ(rows[0]["accuracy"].get<double>(), 0.25);
  EXPECT_EQ(rows[0]["cycles"].get<std::int64_t>(), 1234);
  EXPECT_EQ(rows[0]["overrides"], R"({"array.rows":4})");
  EXPECT_TRUE(rows[0]["mismatch"].is_null());
  EXPECT_EQ(db.status_of("a"), std::optional<std::string>(kDone));
  EXPECT_FALSE(db.status_of("c"));
}

TEST(ResultsDb, RecordingAPointAgainReplacesItsRow) {
  ResultsDb db(fresh("replace.sqlite"));
  nlohmann::json r = row("a", 0, 0.1);
  r["status"] = kError;
  db.record(r);
  db.record(row("a", 0, 0.9));
  const auto rows = db.rows();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0]["status"], kDone);
  EXPECT_EQ(rows[0]["accuracy"].get<double>(), 0.9);
}

TEST(ResultsDb, ADatabaseBelongsToOneSweep) {
  const fs::path path = fresh("bound.sqlite");
  {
    ResultsDb db(path);
    db.bind_sweep("one.toml", "hash-one", 4);
    db.bind_sweep("one.toml", "hash-one", 4);  // the same sweep again: fine
  }
  ResultsDb db(path);
  EXPECT_EQ(db.sweep_value("points"), std::optional<std::string>("4"));
  try {
    db.bind_sweep("two.toml", "hash-two", 4);
    ADD_FAILURE() << "a second sweep was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("one.toml"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("two.toml"), std::string::npos) << e.what();
  }
}

TEST(ResultsDb, ConcurrentWriterProcessesLoseNothing) {
  const fs::path path = fresh("concurrent.sqlite");
  ResultsDb(path).bind_sweep("s.toml", "h", 100);
  constexpr int kWriters = 4, kRows = 25;
  std::vector<pid_t> pids;
  for (int w = 0; w < kWriters; ++w) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      try {
        ResultsDb db(path);
        for (int i = 0; i < kRows; ++i) db.record(row("w" + std::to_string(w) + "-" + std::to_string(i), w * kRows + i, i));
      } catch (...) {
        _exit(1);
      }
      _exit(0);
    }
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "a writer failed";
  }
  const auto rows = ResultsDb(path).rows();
  std::set<std::string> hashes;
  for (const auto& r : rows) hashes.insert(r["hash"].get<std::string>());
  EXPECT_EQ(rows.size(), static_cast<std::size_t>(kWriters * kRows));
  EXPECT_EQ(hashes.size(), rows.size());
}

TEST(ResultsDb, AnUnreadableFileIsAnErrorNamingIt) {
  const fs::path path = fresh("garbage.sqlite");
  { std::FILE* f = std::fopen(path.c_str(), "w"); std::fputs("this is not a database, it is a text file padded out to look real........", f); std::fclose(f); }
  try {
    ResultsDb db(path);
    db.rows();
    ADD_FAILURE() << "a text file was read as a database";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("garbage.sqlite"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace qathw::sweep
