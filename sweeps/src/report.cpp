#include "qathw/sweep/report.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "qathw/sweep/results_db.h"
#include "qathw/util/atomic_file.h"
#include "qathw/util/process.h"

namespace qathw::sweep {
namespace {

namespace fs = std::filesystem;

bool is_done(const nlohmann::json& row) { return row.value("status", "") == kDone; }

double metric(const nlohmann::json& row, const std::string& column) {
  const auto it = row.find(column);
  return it != row.end() && it->is_number() ? it->get<double>() : 0.0;
}

std::string csv_field(const nlohmann::json& v) {
  if (v.is_null()) return "";
  std::string text = v.is_string() ? v.get<std::string>() : v.dump();
  if (text.find_first_of(",\"\n\r") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

// The axis values of a point, as "array.rows=4, activations.bits=8".
std::string readable_overrides(const nlohmann::json& row) {
  const nlohmann::json o = nlohmann::json::parse(row.value("overrides", "{}"), nullptr, false);
  if (!o.is_object()) return row.value("overrides", "");
  std::string s;
  for (const auto& [k, v] : o.items()) s += (s.empty() ? "" : ", ") + k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
  return s;
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string integer(const nlohmann::json& row, const char* column) {
  const auto it = row.find(column);
  return it != row.end() && it->is_number() ? std::to_string(it->get<long long>()) : "";
}

// The gnuplot script of the three panels: accuracy against energy, area and cycles.
std::string plot_script(const std::vector<nlohmann::json>& rows, const std::vector<std::size_t>& front,
                        const std::string& title) {
  struct Panel {
    const char* column;
    const char* label;
  };
  const Panel panels[] = {{"energy_nj", "energy per inference (nJ)"}, {"area_cells", "datapath area (yosys cells)"},
                          {"cycles", "cycles per inference"}};
  std::ostringstream s;
  // Data blocks: every done point; the 4-objective front; each panel's own two-objective front.
  s << "$points << EOD\n";
  for (const auto& r : rows)
    if (is_done(r))
      s << metric(r, "energy_nj") << " " << metric(r, "area_cells") << " " << metric(r, "cycles") << " "
        << 100 * metric(r, "accuracy") << "\n";
  s << "EOD\n$front << EOD\n";
  for (std::size_t i : front)
    s << metric(rows[i], "energy_nj") << " " << metric(rows[i], "area_cells") << " " << metric(rows[i], "cycles")
      << " " << 100 * metric(rows[i], "accuracy") << "\n";
  s << "EOD\n";
  for (int p = 0; p < 3; ++p) {
    const std::vector<Objective> two = {{"accuracy", true}, {panels[p].column, false}};
    std::vector<std::size_t> f = pareto_front(rows, two);
    std::sort(f.begin(), f.end(), [&](std::size_t a, std::size_t b) {
      return metric(rows[a], panels[p].column) < metric(rows[b], panels[p].column);
    });
    s << "$front" << p << " << EOD\n";
    for (std::size_t i : f) s << metric(rows[i], panels[p].column) << " " << 100 * metric(rows[i], "accuracy") << "\n";
    s << "EOD\n";
  }
  std::string quoted_title = title;
  std::replace(quoted_title.begin(), quoted_title.end(), '"', '\'');
  s << "set multiplot layout 1,3 title \"" << quoted_title << "\"\n"
    << "set grid\nset key top center horizontal outside\nset tmargin 5\nset ylabel \"accuracy (%)\"\n";
  for (int p = 0; p < 3; ++p)
    s << "set xlabel \"" << panels[p].label << "\"\n"
      << "plot $points using " << p + 1 << ":4 with points pt 6 ps 1.2 lc rgb \"#808080\" title \"points\", "
      << "$front" << p << " using 1:2 with steps lw 2 lc rgb \"#1f77b4\" title \"front of this pair\", "
      << "$front using " << p + 1 << ":4 with points pt 7 ps 1.2 lc rgb \"#d62728\" title \"overall front\"\n";
  s << "unset multiplot\n";
  return s.str();
}

void plot(const std::string& script, const std::string& terminal, const fs::path& out, const fs::path& log) {
  const fs::path temp = out.string() + ".tmp." + std::to_string(::getpid());
  const std::string full = "set terminal " + terminal + "\nset output '" + temp.string() + "'\n" + script + "unset output\n";
  const util::ProgramRun r = util::run_program({"gnuplot"}, log, full);
  if (r.status != 0 || !fs::exists(temp)) {
    std::error_code ec;
    fs::remove(temp, ec);
    throw std::runtime_error("gnuplot failed to draw " + out.string() + ", see " + log.string());
  }
  fs::rename(temp, out);
}

std::string png_terminal() {
  const util::ProgramRun r = util::run_program({"gnuplot", "-e", "set terminal"});
  return r.output.find("pngcairo") != std::string::npos ? "pngcairo size 1500,500 font \",10\""
                                                         : "png size 1500,500";
}

}  // namespace

const std::vector<Objective>& front_objectives() {
  static const std::vector<Objective> objectives = {
      {"accuracy", true}, {"energy_nj", false}, {"area_cells", false}, {"cycles", false}};
  return objectives;
}

bool dominates(const nlohmann::json& a, const nlohmann::json& b, const std::vector<Objective>& objectives) {
  bool better = false;
  for (const Objective& o : objectives) {
    const double x = metric(a, o.column), y = metric(b, o.column);
    if (o.maximize ? x < y : x > y) return false;
    if (x != y) better = true;
  }
  return better;
}

std::vector<std::size_t> pareto_front(const std::vector<nlohmann::json>& rows, const std::vector<Objective>& objectives) {
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
  out += "\n";
  for (const auto& r : rows) {
    std::string line;
    bool first = true;
    for (const Column& c : point_columns()) {
      line += (first ? "" : ",") + csv_field(r.contains(c.name) ? r.at(c.name) : nlohmann::json());
      first = false;
    }
    out += line + "\n";
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
    const std::string s = r.value("status", "");
    done += s == kDone;
    failed += s == kFailed;
    errors += s == kError;
  }
  const bool can_plot = !rows.empty() && done > 0 && util::program_available("gnuplot");
  if (!util::program_available("gnuplot"))
    files.warning = "gnuplot is not installed (Debian package gnuplot-nox): no plots";
  std::ostringstream md;
  md << "# " << title << "\n\n"
     << rows.size() << " points: " << done << " done, " << failed << " failed verification, " << errors
     << " could not run.\n\n"
     << "## Pareto front\n\n"
     << "The done points that no other done point matches or beats on all of accuracy (higher), energy per "
        "inference, datapath area and cycles per inference (lower), with one better. Points that failed "
        "verification are never on it.\n\n"
     << "| point | axis values | accuracy | energy (nJ) | area (cells) | cycles | acc bits | observed | provable |\n"
     << "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
  for (std::size_t i : front) {
    const auto& r = rows[i];
    md << "| " << r.value("hash", "").substr(0, 8) << " | " << readable_overrides(r) << " | "
       << fixed(100 * metric(r, "accuracy"), 2) << "% | " << fixed(metric(r, "energy_nj"), 2) << " | "
       << integer(r, "area_cells") << " | " << integer(r, "cycles") << " | " << integer(r, "acc_bits") << " | "
       << integer(r, "observed_acc_bits") << " | " << integer(r, "provable_acc_bits") << " |\n";
  }
  if (failed + errors > 0) {
    md << "\n## Points that failed or could not run\n\n| point | axis values | status | first difference or error |\n"
       << "| --- | --- | --- | --- |\n";
    for (const auto& r : rows)
      if (!is_done(r))
        md << "| " << r.value("hash", "").substr(0, 8) << " | " << readable_overrides(r) << " | "
           << r.value("status", "") << " | "
           << (r.value("status", "") == kFailed ? r.value("mismatch", "") : r.value("error", "")) << " |\n";
  }
  md << "\n"
     << (can_plot ? "Plots: `pareto.png`, `pareto.svg` (accuracy against each cost; the step line is the front of "
                    "that pair, filled points the overall front).\n"
                  : "No plots: " + (files.warning.empty() ? std::string("no done points") : files.warning) + ".\n");
  util::write_file_atomic(dir / "front.md", md.str());
  files.written.push_back(dir / "front.md");

  if (can_plot) {
    const std::string script = plot_script(rows, front, title);
    plot(script, png_terminal(), dir / "pareto.png", dir / "gnuplot.log");
    plot(script, "svg size 1500,500 dynamic", dir / "pareto.svg", dir / "gnuplot.log");
    files.written.push_back(dir / "pareto.png");
    files.written.push_back(dir / "pareto.svg");
  }
  return files;
}

}  // namespace qathw::sweep
