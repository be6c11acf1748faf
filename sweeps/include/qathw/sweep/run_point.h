// One design point, end to end: train (or reuse the training run of its training key), simulate
// on the SystemC model, synthesize the datapath, profile the accumulators, and verify the integer
// engine, the SystemC model and the RTL against each other bit for bit. SystemC runs once per
// process, so each point runs in a process of its own (`qat-hw sweep-point`).
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "qathw/sweep/sweep_spec.h"

namespace qathw::sweep {

struct PointSettings {
  std::filesystem::path work_dir;    // shared training runs live here (DB.work beside the database)
  std::filesystem::path cache_dir;   // synthesis and RTL builds (empty: ~/.cache/qat-hw)
  int threads = 1;                   // training threads
  std::string version;               // qat-hw's version, recorded with the tool versions
};

// The folder of a sweep's shared work, beside its database.
std::filesystem::path work_dir_for(const std::filesystem::path& db);

// A hash of everything that decides a sweep's results: its points and the verify sample count.
std::string spec_hash(const SweepSpec& spec, const std::vector<Point>& points);

// Runs the point and returns its database row (point_columns() keys). Stage failures become a row
// with status "error" and the reason; a disagreement of the engines is status "failed".
nlohmann::json run_point(const SweepSpec& spec, const Point& point, std::size_t index, const PointSettings& settings);

}  // namespace qathw::sweep
