// qat-hw sweep SPEC: every design point of a sweep spec trained, simulated, synthesized, profiled
// and verified, in worker processes on this machine or as a Slurm job array; results in SQLite,
// resumable after any interruption; a report with the Pareto front.
// qat-hw sweep status DB, qat-hw sweep report DB, qat-hw sweep-point (one point; what workers run).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "commands.h"
#include "option_checks.h"
#include "qathw/sweep/report.h"
#include "qathw/sweep/results_db.h"
#include "qathw/sweep/run_point.h"
#include "qathw/sweep/sweep_spec.h"
#include "qathw/util/atomic_file.h"
#include "qathw/util/cpus.h"
#include "qathw/util/file_lock.h"
#include "qathw/util/process.h"

namespace qathw::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct SweepOptions {
  std::string spec;
  std::string db;
  std::string backend = "local";
  std::string report;
  std::string cache;
  int jobs = 0;
  double poll_seconds = 2;
};

struct PointOptions {
  std::string spec, db, cache, index;
  int threads = 1;
};

struct StatusOptions {
  std::string db;
  bool json = false;
};

struct ReportOptions {
  std::string db, out;
};

fs::path default_db(const std::string& spec) { return fs::path(spec).replace_extension(".sqlite"); }
fs::path default_report(const fs::path& db) { return fs::path(db.string() + ".report"); }

// One sweep run per database at a time; each point run by one process at a time (a Slurm task
// and a local worker, or two hand-started sweep-point runs). The locks live in the work folder.
fs::path sweep_lock_for(const fs::path& db) { return sweep::work_dir_for(db) / "sweep.lock"; }
fs::path point_lock_for(const fs::path& db, const sweep::Point& p) {
  return sweep::work_dir_for(db) / "locks" / (p.hash + ".lock");
}


std::string format_seconds(double s) {
  char buf[32];
  if (s < 120) std::snprintf(buf, sizeof buf, "%.0fs", s);
  else std::snprintf(buf, sizeof buf, "%.0fm%02.0fs", std::floor(s / 60), std::fmod(s, 60));
  return buf;
}

std::string summary(const nlohmann::json& row) {
  char buf[256];
  if (row.value("status", "") == sweep::kDone)
    std::snprintf(buf, sizeof buf, "done: accuracy %.2f%%, %lld cycles, %.2f nJ, %lld cells, acc bits %lld (provable %lld)",
                  100.0 * row.value("accuracy", 0.0), static_cast<long long>(row.value("cycles", 0LL)),
                  row.value("energy_nj", 0.0), static_cast<long long>(row.value("area_cells", 0LL)),
                  static_cast<long long>(row.value("acc_bits", 0LL)),
                  static_cast<long long>(row.value("provable_acc_bits", 0LL)));
  else if (row.value("status", "") == sweep::kFailed)
    std::snprintf(buf, sizeof buf, "FAILED verification: %s", row.value("mismatch", "").c_str());
  else
    std::snprintf(buf, sizeof buf, "ERROR: %s", row.value("error", "").c_str());
  return buf;
}

std::string describe_point(const sweep::Point& p) {
  std::string s;
  for (const auto& [k, v] : p.overrides.items()) s += (s.empty() ? "" : ", ") + k + "=" + v.dump();
  return p.hash.substr(0, 8) + " (" + s + ")";
}

// The points still to run: neither done nor failed. Errors are retried. Ordered so that the first
// point of every training key comes first: parallel workers then train different keys at once.
std::vector<std::size_t> pending_points(const std::vector<sweep::Point>& points, const sweep::ResultsDb& db) {
  std::vector<std::size_t> first, rest;
  std::set<std::string> keys;
  for (std::size_t i = 0; i < points.size(); ++i) {
    const auto status = db.status_of(points[i].hash);
    if (status && (*status == sweep::kDone || *status == sweep::kFailed)) continue;
    (keys.insert(points[i].training_key).second ? first : rest).push_back(i);
  }
  first.insert(first.end(), rest.begin(), rest.end());
  return first;
}

struct Progress {
  std::size_t total, finished = 0;
  Clock::time_point start = Clock::now();

  void report(const sweep::Point& p, const nlohmann::json* row, std::size_t remaining) {
    ++finished;
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    const double eta = finished ? elapsed / static_cast<double>(finished) * static_cast<double>(remaining) : 0;
    std::printf("[%zu/%zu] %s %s  (%.1fs; elapsed %s, ETA %s)\n", total - remaining, total, describe_point(p).c_str(),
                row ? summary(*row).c_str() : "ERROR: the worker ended without a result (see its log)",
                row ? row->value("wall_seconds", 0.0) : 0.0, format_seconds(elapsed).c_str(),
                format_seconds(eta).c_str());
    std::fflush(stdout);
  }
};

std::vector<std::string> point_argv(const SweepOptions& o, const fs::path& db, const std::string& index, int threads) {
  std::vector<std::string> argv = {util::self_executable().string(), "sweep-point", fs::absolute(o.spec).string(), "--db",
                                   fs::absolute(db).string(), "--index", index,
                                   "--threads", std::to_string(threads)};
  if (!o.cache.empty()) argv.insert(argv.end(), {"--cache", fs::absolute(o.cache).string()});
  return argv;
}

const nlohmann::json* find_row(const std::vector<nlohmann::json>& rows, const std::string& hash) {
  for (const auto& r : rows)
    if (r.value("hash", "") == hash) return &r;
  return nullptr;
}

void run_local(const SweepOptions& o, const std::vector<sweep::Point>& points, const fs::path& db_path,
               sweep::ResultsDb& db, std::vector<std::size_t> todo, int jobs, Progress& progress) {
  const int threads = std::max(1, util::usable_cpus() / jobs);  // the CPUs divided among the workers
  const fs::path logs = sweep::work_dir_for(db_path) / "logs";
  fs::create_directories(logs);
  std::size_t finished = 0;
  util::run_workers(
      todo.size(), jobs,
      [&](std::size_t k) {
        const std::size_t i = todo[k];
        return util::start_worker(point_argv(o, db_path, std::to_string(i), threads), logs / (points[i].hash + ".log"));
      },
      [&](std::size_t k, int) {  // the worker's row (or its absence) tells how it ended
        const std::size_t i = todo[k];
        const auto rows = db.rows();
        progress.report(points[i], find_row(rows, points[i].hash), todo.size() - ++finished);
      });
}

void run_slurm(const SweepOptions& o, const std::vector<sweep::Point>& points, const fs::path& db_path,
               sweep::ResultsDb& db, const std::vector<std::size_t>& todo, int jobs, Progress& progress) {
  if (!util::program_available("sbatch"))
    throw std::runtime_error("--backend slurm: sbatch is not on PATH (Debian package slurm-wlm, and a running cluster)");
  const fs::path logs = fs::absolute(sweep::work_dir_for(db_path) / "logs");
  fs::create_directories(logs);
  std::string array;
  for (std::size_t i : todo) array += (array.empty() ? "" : ",") + std::to_string(i);
  if (jobs > 0) array += "%" + std::to_string(jobs);
  // The array task's point index comes from Slurm; every other argument is quoted as it is.
  const std::string task_index = "$SLURM_ARRAY_TASK_ID";
  std::string script = "#!/bin/sh\nexec";
  for (const std::string& a : point_argv(o, db_path, task_index, 1)) {
    if (a == task_index) {
      script += " \"" + task_index + "\"";
      continue;
    }
    std::string quoted = "'";
    for (char c : a) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    script += " " + quoted + "'";
  }
  script += "\n";
  const fs::path job_file = sweep::work_dir_for(db_path) / "sweep-job.sh";
  util::write_file_atomic(job_file, script);
  const util::ProgramRun r = util::run_program(
      {"sbatch", "--parsable", "--job-name=qat-hw-sweep", "--cpus-per-task=1", "--array=" + array,
       "--output=" + (logs / "slurm-%A_%a.log").string(), fs::absolute(job_file).string()});
  if (r.status != 0) throw std::runtime_error("sbatch failed: " + r.output);
  const std::string job = r.output.substr(0, r.output.find_first_of(";\n"));
  std::printf("slurm: submitted job array %s with %zu tasks\n", job.c_str(), todo.size());
  std::fflush(stdout);
  std::set<std::string> reported;
  for (std::size_t i = 0; i < points.size(); ++i)
    if (std::find(todo.begin(), todo.end(), i) == todo.end()) reported.insert(points[i].hash);
  for (int squeue_failures = 0;;) {
    // The job is over when squeue answers without it; an unanswered squeue (a controller restart)
    // is retried for a while before it is an error.
    util::ProgramRun q = util::run_program({"squeue", "-h", "-j", job, "-o", "%i"});
    if (q.status != 0 && q.output.find("Invalid job id") != std::string::npos) q = {0, ""};  // ended and purged
    squeue_failures = q.status == 0 ? 0 : squeue_failures + 1;
    if (squeue_failures > 30)
      throw std::runtime_error("squeue has not answered for job " + job + " (" + q.output + "); the sweep goes on in "
                               "Slurm: see qat-hw sweep status " + db_path.string());
    const bool queued = q.status != 0 || q.output.find_first_not_of(" \n") != std::string::npos;
    const auto rows = db.rows();
    for (std::size_t i : todo) {
      const nlohmann::json* row = find_row(rows, points[i].hash);
      if (row && !reported.count(points[i].hash) && row->value("status", "") != sweep::kError) {
        reported.insert(points[i].hash);
        progress.report(points[i], row, points.size() - reported.size());
      }
    }
    if (!queued) break;
    std::this_thread::sleep_for(std::chrono::duration<double>(o.poll_seconds));
  }
}

int report_rows(const std::vector<nlohmann::json>& rows, const fs::path& out, const std::string& title) {
  const sweep::ReportFiles files = sweep::write_report(rows, out, title);
  std::printf("report: %s (points.csv, points.json, front.md%s)\n", out.string().c_str(),
              files.warning.empty() ? ", pareto.png, pareto.svg" : "");
  if (!files.warning.empty()) std::fprintf(stderr, "report: %s\n", files.warning.c_str());
  return kExitOk;
}

int run_sweep(const SweepOptions& o) {
  const sweep::SweepSpec spec = sweep::load_sweep(o.spec);
  const std::vector<sweep::Point> points = sweep::expand(spec);
  if (!fs::is_directory(spec.training.data_dir))
    throw std::invalid_argument(o.spec + ": field 'training.data': no such folder " + spec.training.data_dir.string());
  const fs::path db_path = o.db.empty() ? default_db(o.spec) : fs::path(o.db);
  std::string holder;
  const auto lock = util::FileLock::try_acquire(sweep_lock_for(db_path), holder);
  if (!lock)
    throw std::runtime_error(db_path.string() + ": another qat-hw sweep is running on this database (" + holder +
                             "); wait for it to end, or use another --db");
  sweep::ResultsDb db(db_path);
  db.bind_sweep(o.spec, sweep::spec_hash(spec, points), points.size());
  std::set<std::string> keys;
  for (const auto& p : points) keys.insert(p.training_key);
  const std::vector<std::size_t> todo = pending_points(points, db);
  const int jobs = o.jobs > 0 ? o.jobs : util::usable_cpus();
  std::printf("sweep %s: %zu points (%zu training runs), %zu to run, %s backend, %d jobs, results in %s\n",
              o.spec.c_str(), points.size(), keys.size(), todo.size(), o.backend.c_str(), jobs,
              db_path.string().c_str());
  std::fflush(stdout);
  Progress progress{points.size()};
  const auto t0 = Clock::now();
  if (!todo.empty()) {
    if (o.backend == "slurm") run_slurm(o, points, db_path, db, todo, o.jobs, progress);
    else run_local(o, points, db_path, db, todo, jobs, progress);
  }
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  const auto rows = db.rows();
  std::size_t done = 0, failed = 0, errors = 0;
  double point_sum = 0;
  for (const auto& r : rows) {
    const std::string s = r.value("status", "");
    done += s == sweep::kDone;
    failed += s == sweep::kFailed;
    errors += s == sweep::kError;
    point_sum += r.value("wall_seconds", 0.0);
  }
  const std::size_t missing = points.size() - rows.size();
  std::printf("sweep: %zu done, %zu failed verification, %zu errors, %zu not run; wall %.1fs this run, "
              "sum of the points' times %.1fs\n", done, failed, errors, missing, wall, point_sum);
  report_rows(rows, o.report.empty() ? default_report(db_path) : fs::path(o.report), "Sweep " + o.spec);
  return (failed || errors || missing) ? kExitMismatch : kExitOk;
}

int run_sweep_point(const PointOptions& o) {
  const sweep::SweepSpec spec = sweep::load_sweep(o.spec);
  const std::vector<sweep::Point> points = sweep::expand(spec);
  std::size_t index = 0;
  if (o.index.empty() || o.index.size() > 9 || o.index.find_first_not_of("0123456789") != std::string::npos ||
      (index = std::stoul(o.index)) >= points.size())
    throw std::invalid_argument("--index: '" + o.index + "' is not a point of the sweep (0 to " +
                                std::to_string(points.size() - 1) + ")");
  const sweep::Point& p = points[index];
  // Another process running this point: wait for it, then find the point recorded (or retry it).
  const util::FileLock lock = util::FileLock::acquire(point_lock_for(o.db, p), [&](const std::string& holder) {
    std::printf("point %s: waiting for %s, which runs it\n", describe_point(p).c_str(), holder.c_str());
    std::fflush(stdout);
  });
  sweep::ResultsDb db(o.db);
  db.bind_sweep(o.spec, sweep::spec_hash(spec, points), points.size());
  if (const auto status = db.status_of(p.hash); status && (*status == sweep::kDone || *status == sweep::kFailed)) {
    std::printf("point %s: already %s\n", describe_point(p).c_str(), status->c_str());
    return kExitOk;
  }
  sweep::PointSettings settings;
  settings.work_dir = sweep::work_dir_for(o.db);
  if (!o.cache.empty()) settings.cache_dir = o.cache;
  settings.threads = o.threads;
  settings.version = QATHW_VERSION;
  std::printf("point %s: target %s\n", describe_point(p).c_str(), target::content_hash(p.target).c_str());
  std::fflush(stdout);
  const nlohmann::json row = sweep::run_point(spec, p, index, settings);
  db.record(row);
  std::printf("point %s: %s\n", describe_point(p).c_str(), summary(row).c_str());
  return row.value("status", "") == sweep::kDone ? kExitOk : kExitMismatch;
}

int run_status(const StatusOptions& o) {
  const sweep::ResultsDb db(o.db, sweep::ResultsDb::Mode::Open);
  const auto rows = db.rows();
  const std::string points = db.sweep_value("points").value_or(std::to_string(rows.size()));
  if (points.empty() || points.size() > 9 || points.find_first_not_of("0123456789") != std::string::npos)
    throw std::runtime_error(o.db + ": table sweep: points = '" + points + "' is not a count");
  const long total = std::stol(points);
  std::map<std::string, long> counts = {{sweep::kDone, 0}, {sweep::kFailed, 0}, {sweep::kError, 0}};
  for (const auto& r : rows) ++counts[r.value("status", "")];
  const long pending = total - static_cast<long>(rows.size()) + counts[sweep::kError];
  if (o.json) {
    nlohmann::json j = {{"db", o.db}, {"spec", db.sweep_value("spec").value_or("")}, {"total", total},
                        {"done", counts[sweep::kDone]}, {"failed", counts[sweep::kFailed]},
                        {"error", counts[sweep::kError]}, {"pending", pending}};
    std::cout << j.dump(2) << "\n";
  } else {
    std::printf("sweep %s: %ld points: %ld done, %ld failed verification, %ld errors, %ld pending\n",
                db.sweep_value("spec").value_or("?").c_str(), total, counts[sweep::kDone], counts[sweep::kFailed],
                counts[sweep::kError], pending);
    for (const auto& r : rows)
      std::printf("  %s %s %s\n", r.value("hash", "").substr(0, 8).c_str(), r.value("overrides", "").c_str(),
                  summary(r).c_str());
  }
  return kExitOk;
}

int run_report(const ReportOptions& o) {
  const sweep::ResultsDb db(o.db, sweep::ResultsDb::Mode::Open);
  return report_rows(db.rows(), o.out.empty() ? default_report(o.db) : fs::path(o.out),
                     "Sweep " + db.sweep_value("spec").value_or(o.db));
}

}  // namespace

void add_sweep_command(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<SweepOptions>();
  auto* cmd = app.add_subcommand("sweep", "Design-space sweep: accuracy x cycles x area x energy, Pareto front");
  cmd->add_option("spec", o->spec, "Sweep spec (.toml, see docs/sweep.md)");
  cmd->add_option("--db", o->db, "Results database (default: SPEC with .sqlite)")->check(NonEmptyPath);
  cmd->add_option("--jobs", o->jobs, "Points run at once (default: one per usable CPU; Slurm: array throttle)")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--backend", o->backend, "local (worker processes) or slurm (a job array)")
      ->capture_default_str()->check(CLI::IsMember({"local", "slurm"}));
  cmd->add_option("--report", o->report, "Report folder (default: DB.report)")->check(NonEmptyPath);
  cmd->add_option("--cache", o->cache, "Cache of synthesis results and RTL builds (default ~/.cache/qat-hw)")
      ->check(NonEmptyPath);
  cmd->add_option("--poll", o->poll_seconds, "Slurm: seconds between progress checks")
      ->capture_default_str()->check(FiniteRange(0.1, 3600.0));

  auto s = std::make_shared<StatusOptions>();
  auto* status = cmd->add_subcommand("status", "Progress of a sweep from its results database");
  status->add_option("db", s->db, "Results database")->required();
  status->add_flag("--json", s->json, "Print JSON");
  status->callback([s, &exit_code] { exit_code = run_status(*s); });

  auto r = std::make_shared<ReportOptions>();
  auto* report = cmd->add_subcommand("report", "CSV, JSON, Pareto front and plots from a results database");
  report->add_option("db", r->db, "Results database")->required();
  report->add_option("--out", r->out, "Report folder (default: DB.report)")->check(NonEmptyPath);
  report->callback([r, &exit_code] { exit_code = run_report(*r); });

  cmd->callback([cmd, o, &exit_code] {
    if (!cmd->get_subcommands().empty()) return;
    if (o->spec.empty()) throw std::invalid_argument("sweep: a spec file is required (or: sweep status DB, sweep report DB)");
    exit_code = run_sweep(*o);
  });

  auto p = std::make_shared<PointOptions>();
  auto* point = app.add_subcommand("sweep-point", "Run one point of a sweep into its database (what sweep workers run)");
  point->add_option("spec", p->spec, "Sweep spec")->required();
  point->add_option("--db", p->db, "Results database")->required()->check(NonEmptyPath);
  point->add_option("--index", p->index, "The point's index in the sweep (0 to points - 1)")->required();
  point->add_option("--threads", p->threads, "Training threads")->capture_default_str()->check(CLI::Range(1, 1024));
  point->add_option("--cache", p->cache, "Cache of synthesis results and RTL builds (default ~/.cache/qat-hw)")
      ->check(NonEmptyPath);
  point->callback([p, &exit_code] { exit_code = run_sweep_point(*p); });
}

}  // namespace qathw::cli
