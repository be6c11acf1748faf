#include "qathw/sweep/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "qathw/sweep/results_db.h"
#include "qathw/util/atomic_file.h"
#include "qathw/util/gnuplot.h"
#include "qathw/util/process.h"

namespace qathw::sweep {
namespace {

namespace fs = std::filesystem;

std::optional<double> number(const nlohmann::json& row, const std::string& column) {
  const auto it = row.find(column);
  if (it == row.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

// A string column; absent and null read as "".
std::string text(const nlohmann::json& row, const std::string& column) {
  const auto it = row.find(column);
  if (it == row.end() || it->is_null()) return "";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

bool is_done(const nlohmann::json& row) { return text(row, "status") == kDone; }

// An objective's value with "higher is better" for every objective; a missing value is the worst
// possible, so a done row without a metric never beats one with it.
double goodness(const nlohmann::json& row, const Objective& o) {
  const std::optional<double> v = number(row, o.column);
  if (!v || std::isnan(*v)) return -std::numeric_limits<double>::infinity();
  return o.maximize ? *v : -*v;
}

std::string csv_field(const nlohmann::json& v) {
  if (v.is_null()) return "";
  const std::string s = v.is_string() ? v.get<std::string>() : v.dump();
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string quoted = "\"";
  for (char c : s) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + "\"";
}

// The axis values of a point, readable: "array.rows=4, arithmetic.accumulator_bits=20", in the
// order the overrides were stored.
std::string readable_overrides(const nlohmann::json& row) {
  const auto it = row.find("overrides");
  if (it == row.end() || it->is_null()) return "";
  nlohmann::ordered_json o;
  if (it->is_string()) {
    o = nlohmann::ordered_json::parse(it->get<std::string>(), nullptr, false);
    if (!o.is_object()) return it->get<std::string>();
  } else {
    o = nlohmann::ordered_json::parse(it->dump());
    if (!o.is_object()) return it->dump();
  }
  std::string s;
  for (const auto& [k, v] : o.items())
    s += (s.empty() ? "" : ", ") + k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
  return s.empty() ? "(base target)" : s;
}

// A Markdown table cell: one line, no column separators.
std::string cell(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|')
      out += "\\|";
    else if (c == '\n' || c == '\r')
      out += ' ';
    else
      out += c;
  }
  return out;
}

std::string fixed(const nlohmann::json& row, const char* column, double scale, int digits) {
  const std::optional<double> v = number(row, column);
  if (!v) return "";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, scale * *v);
  return buf;
}

std::string integer(const nlohmann::json& row, const char* column) {
  const std::optional<double> v = number(row, column);
  if (!v) return "";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.0f", *v);
  return buf;
}

// A number for gnuplot's inline data; NaN (an undefined point, not drawn) when missing.
std::string datum(const nlohmann::json& row, const char* column, double scale = 1.0) {
  const std::optional<double> v = number(row, column);
  if (!v) return "NaN";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", scale * *v);
  return buf;
}

struct Panel {
  const char* column;
  const char* label;
};
constexpr Panel kPanels[] = {{"energy_nj", "energy per inference (nJ)"},
                             {"area_cells", "datapath area (yosys cells)"},
                             {"cycles", "cycles per inference"}};

// Three panels, accuracy against energy, area and cycles: every done point as an open circle, the
// front of that pair (accuracy against the panel's cost) as a step line, the four-objective front
// filled. The data is inline, so the script is the whole input.
std::string plot_script(const std::vector<nlohmann::json>& rows, const std::vector<std::size_t>& front,
                        const std::string& title) {
  std::ostringstream s;
  s << "$points << EOD\n";
  for (const auto& r : rows)
    if (is_done(r))
      s << datum(r, "energy_nj") << ' ' << datum(r, "area_cells") << ' ' << datum(r, "cycles") << ' '
        << datum(r, "accuracy", 100) << '\n';
  s << "EOD\n$front << EOD\n";
  for (std::size_t i : front)
    s << datum(rows[i], "energy_nj") << ' ' << datum(rows[i], "area_cells") << ' ' << datum(rows[i], "cycles") << ' '
      << datum(rows[i], "accuracy", 100) << '\n';
  s << "EOD\n";
  for (std::size_t p = 0; p < std::size(kPanels); ++p) {
    const std::string cost = kPanels[p].column;
    std::vector<std::size_t> pair_front = pareto_front(rows, {{"accuracy", true}, {cost, false}});
    std::stable_sort(pair_front.begin(), pair_front.end(), [&](std::size_t a, std::size_t b) {
      return number(rows[a], cost).value_or(0) < number(rows[b], cost).value_or(0);
    });
    s << "$front" << p << " << EOD\n";
    for (std::size_t i : pair_front)
      s << datum(rows[i], cost.c_str()) << ' ' << datum(rows[i], "accuracy", 100) << '\n';
    s << "EOD\n";
  }
  s << "set termoption noenhanced\n"
    << "set multiplot layout 1,3 title " << util::gnuplot_string(title) << "\n"
    << "set grid\nset bmargin 6\nset ylabel 'accuracy (%)'\n"
    << "set offsets graph 0.05, graph 0.05, graph 0.05, graph 0.05\n"
    // One legend for the three panels, centred under them.
    << "set key horizontal samplen 2 width -2 at screen 0.5, screen 0.04 center center\n";
  for (std::size_t p = 0; p < std::size(kPanels); ++p)
    s << (p == 1 ? "unset key\n" : "") << "set xlabel " << util::gnuplot_string(kPanels[p].label) << "\n"
      << "set title " << util::gnuplot_string(std::string("accuracy vs ") + kPanels[p].label) << "\n"
      << "plot $points using " << p + 1 << ":4 with points pt 6 ps 1.3 lc rgb '#606060' title 'done points', "
      << "$front" << p << " using 1:2 with steps lw 2 lc rgb '#1f77b4' title 'front of this pair', "
      << "$front using " << p + 1 << ":4 with points pt 7 ps 1.3 lc rgb '#d62728' title '4-objective front'\n";
  s << "unset multiplot\n";
  return s.str();
}

}  // namespace

const std::vector<Objective>& front_objectives() {
  static const std::vector<Objective> objectives = {
      {"accuracy", true}, {"energy_nj", false}, {"area_cells", false}, {"cycles", false}};
  return objectives;
}

bool dominates(const nlohmann::json& a, const nlohmann::json& b, const std::vector<Objective>& objectives) {
  bool better_on_one = false;
  for (const Objective& o : objectives) {
    const double x = goodness(a, o), y = goodness(b, o);
    if (x < y) return false;
    if (x > y) better_on_one = true;
  }
  return better_on_one;
}

std::vector<std::size_t> pareto_front(const std::vector<nlohmann::json>& rows,
                                      const std::vector<Objective>& objectives) {
  std::vector<std::size_t> front;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (!is_done(rows[i])) continue;
    bool dominated = false;
    for (std::size_t j = 0; j < rows.size() && !dominated; ++j)
      dominated = j != i && is_done(rows[j]) && dominates(rows[j], rows[i], objectives);
    if (!dominated) front.push_back(i);
  }
  return front;
}

void write_csv(const std::vector<nlohmann::json>& rows, const fs::path& path) {
  std::string out;
  for (const Column& c : point_columns()) out += std::string(out.empty() ? "" : ",") + c.name;
  out += '\n';
  for (const auto& r : rows) {
    bool first = true;
    for (const Column& c : point_columns()) {
      if (!first) out += ',';
      first = false;
      const auto it = r.find(c.name);
      if (it != r.end()) out += csv_field(*it);
    }
    out += '\n';
  }
  util::write_file_atomic(path, out);
}

void write_json(const std::vector<nlohmann::json>& rows, const fs::path& path) {
  util::write_file_atomic(path, nlohmann::json(rows).dump(2) + "\n");
}

ReportFiles write_report(const std::vector<nlohmann::json>& rows, const fs::path& dir, const std::string& title) {
  fs::create_directories(dir);
  ReportFiles files;
  write_csv(rows, dir / "points.csv");
  write_json(rows, dir / "points.json");
  files.written = {dir / "points.csv", dir / "points.json"};

  const std::vector<std::size_t> front = pareto_front(rows, front_objectives());
  std::size_t done = 0, failed = 0, errors = 0;
  for (const auto& r : rows) {
    const std::string s = text(r, "status");
    done += s == kDone;
    failed += s == kFailed;
    errors += s == kError;
  }
  const bool have_gnuplot = util::program_available("gnuplot");
  if (!have_gnuplot) files.warning = "gnuplot is not installed (Debian package gnuplot-nox), so no plots were drawn";
  const bool can_plot = have_gnuplot && done > 0;

  std::ostringstream md;
  md << "# " << cell(title) << "\n\n"
     << rows.size() << " points: " << done << " done, " << failed << " failed (the engines disagreed), " << errors
     << " error (could not run; retried by the next run).\n\n"
     << "## Pareto front\n\n"
     << "The front is the done points that no other done point dominates: none is at least as good on "
        "accuracy (higher is better), energy per inference, area and cycles (lower is better) and better "
        "on at least one. Failed and error points are never on it. "
     << front.size() << " of " << done << " done points are on it.\n\n"
     << "| point | overrides | accuracy % | energy nJ | area cells | cycles | provable_acc_bits | observed_acc_bits |\n"
     << "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n";
  for (std::size_t i : front) {
    const auto& r = rows[i];
    md << "| " << cell(text(r, "hash").substr(0, 8)) << " | " << cell(readable_overrides(r)) << " | "
       << fixed(r, "accuracy", 100, 2) << " | " << fixed(r, "energy_nj", 1, 3) << " | " << integer(r, "area_cells")
       << " | " << integer(r, "cycles") << " | " << integer(r, "provable_acc_bits") << " | "
       << integer(r, "observed_acc_bits") << " |\n";
  }
  if (failed + errors > 0) {
    md << "\n## Failed and error points\n\n| point | overrides | status | mismatch or error |\n"
       << "| --- | --- | --- | --- |\n";
    for (const auto& r : rows) {
      if (is_done(r)) continue;
      const std::string status = text(r, "status");
      const std::string why = status == kFailed ? text(r, "mismatch") : text(r, "error");
      md << "| " << cell(text(r, "hash").substr(0, 8)) << " | " << cell(readable_overrides(r)) << " | " << cell(status)
         << " | " << cell(why) << " |\n";
    }
  }
  md << "\n";
  if (can_plot)
    md << "plots: pareto.png, pareto.svg (accuracy against energy, area and cycles; open circles are the done "
          "points, the step line the front of that pair, filled points the front above)\n";
  else if (!have_gnuplot)
    md << "plots: none, " << files.warning << ".\n";
  else
    md << "plots: none, no point is done.\n";
  util::write_file_atomic(dir / "front.md", md.str());
  files.written.push_back(dir / "front.md");

  if (can_plot) {
    const std::string script = plot_script(rows, front, title);
    util::draw_png_and_svg(script, {dir / "pareto.png", dir / "pareto.svg", 1800, 560, "sans,11"}, dir / "gnuplot.log");
    files.written.push_back(dir / "pareto.png");
    files.written.push_back(dir / "pareto.svg");
  }
  return files;
}

}  // namespace qathw::sweep
