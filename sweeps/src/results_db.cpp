#include "qathw/sweep/results_db.h"

#include <sqlite3.h>

#include <algorithm>
#include <stdexcept>

namespace qathw::sweep {
namespace {

// A prepared statement, finalized on every path out.
class Statement {
 public:
  Statement(sqlite3* db, const std::string& sql, const std::string& path) : path_(path) {
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s_, nullptr) != SQLITE_OK)
      throw std::runtime_error(path + ": " + sqlite3_errmsg(db));
  }
  ~Statement() { sqlite3_finalize(s_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  sqlite3_stmt* get() const { return s_; }

 private:
  sqlite3_stmt* s_ = nullptr;
  std::string path_;
};

}  // namespace

const std::vector<Column>& point_columns() {
  static const std::vector<Column> columns = {
      {"hash", "TEXT", "the point's stable hash"},
      {"point_index", "INTEGER", "position in the sweep's expansion"},
      {"status", "TEXT", "done, failed (engines disagree) or error (retried by the next run)"},
      {"overrides", "TEXT", "the axis values of the point (JSON)"},
      {"target_hash", "TEXT", "content hash of the point's target"},
      {"training_key", "TEXT", "points with one key share one training run"},
      {"rows", "INTEGER", "PE array rows"},
      {"lanes", "INTEGER", "PE array lanes"},
      {"weights", "TEXT", "weight format"},
      {"act_bits", "INTEGER", "activation code width"},
      {"acc_bits", "INTEGER", "accumulator width"},
      {"overflow", "TEXT", "accumulator overflow rule"},
      {"clock_mhz", "REAL", "clock"},
      {"accuracy", "REAL", "QAT test accuracy of the deployed integer model (whole test split)"},
      {"cycles", "INTEGER", "cycles per inference (SystemC)"},
      {"latency_us", "REAL", "cycles / clock"},
      {"utilization", "REAL", "PE array utilisation"},
      {"energy_nj", "REAL", "energy per inference, nJ (SystemC counts x the target's energy table)"},
      {"area_cells", "INTEGER", "yosys generic cells of the datapath"},
      {"flip_flops", "INTEGER", "flip-flops of the datapath"},
      {"observed_acc_bits", "INTEGER", "accumulator width the data needed (qat-hw profile)"},
      {"provable_acc_bits", "INTEGER", "accumulator width that never overflows for the trained weights"},
      {"sim_samples", "INTEGER", "test images simulated and verified"},
      {"verified_engines", "TEXT", "engines compared bit for bit"},
      {"mismatch", "TEXT", "the first difference, for a failed point"},
      {"error", "TEXT", "what went wrong, for an error"},
      {"train_shared", "INTEGER", "1 when the training run was made by another point"},
      {"train_seconds", "REAL", "wall time of training (0 when shared)"},
      {"sim_seconds", "REAL", "wall time of the SystemC run"},
      {"synth_seconds", "REAL", "wall time of synthesis (0 when cached)"},
      {"verify_seconds", "REAL", "wall time of the RTL build and the int/RTL runs"},
      {"wall_seconds", "REAL", "wall time of the point"},
      {"tool_versions", "TEXT", "qat-hw, verilator, yosys, compiler (JSON)"},
      {"finished_at", "TEXT", "UTC time the row was written"},
  };
  return columns;
}

ResultsDb::ResultsDb(const std::filesystem::path& path, Mode mode) : path_(path.string()) {
  std::error_code ec;
  if (mode == Mode::Open && !std::filesystem::exists(path, ec))
    throw std::runtime_error(path_ + ": no such results database");
  if (std::filesystem::exists(path, ec) && !std::filesystem::is_regular_file(path, ec))
    throw std::runtime_error(path_ + ": not a qat-hw results database (not a regular file)");
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX | (mode == Mode::Create ? SQLITE_OPEN_CREATE : 0);
  if (sqlite3_open_v2(path_.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
    const std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    throw std::runtime_error(path_ + ": cannot open the results database: " + why);
  }
  sqlite3_busy_timeout(db_, 120000);  // concurrent writers wait for each other
  try {
    check_schema(mode);
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=FULL");
    std::string create = "CREATE TABLE IF NOT EXISTS points (";
    for (const Column& c : point_columns())
      create += std::string(c.name) + " " + c.sql_type + (std::string(c.name) == "hash" ? " PRIMARY KEY" : "") + ", ";
    create.resize(create.size() - 2);
    exec(create + ")");
    exec("CREATE TABLE IF NOT EXISTS sweep (key TEXT PRIMARY KEY, value TEXT)");
  } catch (...) {
    sqlite3_close(db_);
    throw;
  }
}

ResultsDb::~ResultsDb() { sqlite3_close(db_); }

void ResultsDb::check_schema(Mode mode) const {
  std::vector<std::string> tables;
  {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name", -1, &s,
                           nullptr) != SQLITE_OK) {
      const std::string why = sqlite3_errmsg(db_);
      sqlite3_finalize(s);
      throw std::runtime_error(path_ + ": not a qat-hw results database (" + why + ")");
    }
    while (sqlite3_step(s) == SQLITE_ROW) tables.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
    sqlite3_finalize(s);
  }
  if (tables.empty()) {
    if (mode == Mode::Open) throw std::runtime_error(path_ + ": not a qat-hw results database (it holds no tables)");
    return;  // new: the schema is created
  }
  if (tables != std::vector<std::string>{"points", "sweep"}) {
    std::string names;
    for (const auto& t : tables) names += (names.empty() ? "" : ", ") + t;
    throw std::runtime_error(path_ + ": not a qat-hw results database (it holds the tables " + names +
                             "; a results database holds points and sweep)");
  }
  std::vector<std::string> columns;
  Statement s(db_, "SELECT name FROM pragma_table_info('points')", path_);
  while (sqlite3_step(s.get()) == SQLITE_ROW)
    columns.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s.get(), 0)));
  for (const Column& c : point_columns())
    if (std::find(columns.begin(), columns.end(), c.name) == columns.end())
      throw std::runtime_error(path_ + ": not a qat-hw results database of this release (table points has no column " +
                               c.name + ")");
}

void ResultsDb::exec(const std::string& sql) const {
  char* message = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
    const std::string why = message ? message : sqlite3_errmsg(db_);
    sqlite3_free(message);
    throw std::runtime_error(path_ + ": " + why);
  }
}

std::optional<std::string> ResultsDb::sweep_value(const std::string& key) const {
  Statement s(db_, "SELECT value FROM sweep WHERE key = ?", path_);
  sqlite3_bind_text(s.get(), 1, key.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(s.get()) != SQLITE_ROW) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(sqlite3_column_text(s.get(), 0)));
}

void ResultsDb::bind_sweep(const std::string& spec_path, const std::string& spec_hash, std::size_t points) {
  exec("BEGIN IMMEDIATE");
  try {
    if (const auto existing = sweep_value("spec_hash")) {
      if (*existing != spec_hash)
        throw std::runtime_error(path_ + ": holds the results of another sweep (" + sweep_value("spec").value_or("?") +
                                 ", hash " + *existing + "), not of " + spec_path + " (hash " + spec_hash +
                                 "); use another --db");
    } else {
      for (const auto& [k, v] : {std::pair<std::string, std::string>{"spec", spec_path}, {"spec_hash", spec_hash},
                                 {"points", std::to_string(points)}}) {
        Statement s(db_, "INSERT INTO sweep (key, value) VALUES (?, ?)", path_);
        sqlite3_bind_text(s.get(), 1, k.c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s.get(), 2, v.c_str(), -1, SQLITE_TRANSIENT);
        if (sqlite3_step(s.get()) != SQLITE_DONE) throw std::runtime_error(path_ + ": " + sqlite3_errmsg(db_));
      }
    }
    exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

void ResultsDb::record(const nlohmann::json& row) {
  const auto& columns = point_columns();
  std::string sql = "INSERT OR REPLACE INTO points (", values;
  for (const Column& c : columns) {
    sql += std::string(c.name) + ",";
    values += "?,";
  }
  sql.back() = ')';
  values.back() = ')';
  sql += " VALUES (" + values;
  exec("BEGIN IMMEDIATE");
  try {
    Statement s(db_, sql, path_);
    for (std::size_t i = 0; i < columns.size(); ++i) {
      const int at = static_cast<int>(i) + 1;
      const auto it = row.find(columns[i].name);
      if (it == row.end() || it->is_null()) {
        sqlite3_bind_null(s.get(), at);
      } else if (it->is_boolean()) {
        sqlite3_bind_int64(s.get(), at, it->get<bool>() ? 1 : 0);
      } else if (it->is_number_integer() || it->is_number_unsigned()) {
        sqlite3_bind_int64(s.get(), at, it->get<std::int64_t>());
      } else if (it->is_number()) {
        sqlite3_bind_double(s.get(), at, it->get<double>());
      } else {
        const std::string text = it->is_string() ? it->get<std::string>() : it->dump();
        sqlite3_bind_text(s.get(), at, text.c_str(), -1, SQLITE_TRANSIENT);
      }
    }
    if (sqlite3_step(s.get()) != SQLITE_DONE) throw std::runtime_error(path_ + ": " + sqlite3_errmsg(db_));
    exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

std::vector<nlohmann::json> ResultsDb::rows() const {
  std::vector<nlohmann::json> out;
  Statement s(db_, "SELECT * FROM points ORDER BY point_index, hash", path_);
  const int n = sqlite3_column_count(s.get());
  int rc;
  while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) {
    nlohmann::json row = nlohmann::json::object();
    for (int i = 0; i < n; ++i) {
      const std::string name = sqlite3_column_name(s.get(), i);
      switch (sqlite3_column_type(s.get(), i)) {
        case SQLITE_INTEGER: row[name] = sqlite3_column_int64(s.get(), i); break;
        case SQLITE_FLOAT: row[name] = sqlite3_column_double(s.get(), i); break;
        case SQLITE_NULL: row[name] = nullptr; break;
        default: row[name] = std::string(reinterpret_cast<const char*>(sqlite3_column_text(s.get(), i)));
      }
    }
    out.push_back(std::move(row));
  }
  if (rc != SQLITE_DONE) throw std::runtime_error(path_ + ": " + sqlite3_errmsg(db_));
  return out;
}

std::optional<std::string> ResultsDb::status_of(const std::string& hash) const {
  Statement s(db_, "SELECT status FROM points WHERE hash = ?", path_);
  sqlite3_bind_text(s.get(), 1, hash.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(s.get()) != SQLITE_ROW) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(sqlite3_column_text(s.get(), 0)));
}

}  // namespace qathw::sweep
