// A sweep's report: every point as CSV and JSON, the Pareto front of accuracy against energy per
// inference, area and cycles as a Markdown table, and plots (PNG, SVG) made with gnuplot.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qathw::sweep {

struct Objective {
  std::string column;
  bool maximize;
};

// accuracy (max), energy_nj, area_cells, cycles (min).
const std::vector<Objective>& front_objectives();

// Whether row a dominates row b: no worse on every objective, better on one.
bool dominates(const nlohmann::json& a, const nlohmann::json& b, const std::vector<Objective>& objectives);

// Indices (into rows) of the done points no other done point dominates, in row order. Failed and
// error points are never on a front, and do not dominate.
std::vector<std::size_t> pareto_front(const std::vector<nlohmann::json>& rows, const std::vector<Objective>& objectives);

void write_csv(const std::vector<nlohmann::json>& rows, const std::filesystem::path& path);
void write_json(const std::vector<nlohmann::json>& rows, const std::filesystem::path& path);

// Writes points.csv, points.json, front.md (summary and front table) and, when gnuplot is present,
// pareto.png and pareto.svg into `dir`. Returns the files written; a missing gnuplot is reported in
// front.md and by the returned warning.
struct ReportFiles {
  std::vector<std::filesystem::path> written;
  std::string warning;
};
ReportFiles write_report(const std::vector<nlohmann::json>& rows, const std::filesystem::path& dir,
                         const std::string& title);

}  // namespace qathw::sweep
