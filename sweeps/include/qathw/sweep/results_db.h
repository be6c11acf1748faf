// A sweep's results in SQLite: one row per point keyed by the point's hash, written in one
// transaction when the point ends, so a reader (or a re-run after kill -9) sees a point whole or
// not at all. Safe under concurrent writers (local worker processes, Slurm array tasks): WAL
// journal and a busy timeout.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

struct sqlite3;

namespace qathw::sweep {

// How a point ended. Done and failed points are final; an error (a tool crashed, a file was
// missing) is retried by the next run.
inline constexpr const char* kDone = "done";
inline constexpr const char* kFailed = "failed";  // the engines disagree: never on a front
inline constexpr const char* kError = "error";

// The metric columns of a row, in order: what reports, CSV and fronts read.
struct Column {
  const char* name;
  const char* sql_type;  // INTEGER, REAL or TEXT
  const char* meaning;
};
const std::vector<Column>& point_columns();

class ResultsDb {
 public:
  // Open: an existing results database, which must hold a sweep's tables. Create: also a new
  // file, or an empty one. Either refuses a file that is not SQLite or holds other tables,
  // without changing it.
  enum class Mode { Open, Create };
  explicit ResultsDb(const std::filesystem::path& path, Mode mode = Mode::Create);
  ~ResultsDb();
  ResultsDb(const ResultsDb&) = delete;
  ResultsDb& operator=(const ResultsDb&) = delete;

  // The sweep the database belongs to: set once; a different spec hash later is an error naming both.
  void bind_sweep(const std::string& spec_path, const std::string& spec_hash, std::size_t points);
  std::optional<std::string> sweep_value(const std::string& key) const;

  // Inserts or replaces the point's row (object with point_columns() keys) in one transaction.
  void record(const nlohmann::json& row);

  // Every row, ordered by the point's index in the sweep.
  std::vector<nlohmann::json> rows() const;
  std::optional<std::string> status_of(const std::string& hash) const;

 private:
  void exec(const std::string& sql) const;
  void check_schema(Mode mode) const;
  sqlite3* db_ = nullptr;
  std::string path_;
};

}  // namespace qathw::sweep
