// qat-hw profile MODEL: per layer, the accumulator values and activation codes of the test split
// against the target's widths: observed maximum, the width that provably never overflows for the
// bundle's weights, overflow counts; histograms as JSON and plotted with gnuplot.

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>

#include "commands.h"
#include "model_inputs.h"
#include "option_checks.h"
#include "qathw/profile/profile.h"
#include "qathw/util/atomic_file.h"
#include "qathw/util/gnuplot.h"
#include "qathw/util/process.h"

namespace qathw::cli {
namespace {

namespace fs = std::filesystem;

struct ProfileOptions {
  std::string model;
  std::string data = training::kDefaultDataDir;
  std::string target;
  std::string samples = "all";
  std::string json;
  std::string plot;
};

// One histogram as an inline data block: "bucket count" lines, empty buckets left out (the
// counts are drawn on a log scale).
std::string data_block(const std::string& name, const profile::Histogram& h) {
  std::ostringstream s;
  s << "$" << name << " << EOD\n";
  bool any = false;
  for (std::size_t b = 0; b < h.magnitude_bits.size(); ++b) {
    if (h.magnitude_bits[b] == 0) continue;
    s << b << " " << h.magnitude_bits[b] << "\n";
    any = true;
  }
  if (!any) s << "0 NaN\n";
  s << "EOD\n";
  return s.str();
}

// One panel: the histogram, a vertical line per width. A signed W-bit register holds every
// value of up to W - 1 magnitude bits, so the line for width W stands between buckets W - 1 and W.
std::string panel(const std::string& title, const std::string& block, std::size_t buckets,
                  const std::vector<std::pair<std::string, int>>& widths) {
  int right = static_cast<int>(buckets);
  for (const auto& w : widths) right = std::max(right, w.second);
  std::ostringstream s;
  s << "set title " << util::gnuplot_string(title) << "\n"
    << "unset arrow\nunset label\n"
    << "set xrange [-0.5:" << right + 0.5 << "]\n";
  const char* colours[] = {"#d62728", "#2ca02c"};
  for (std::size_t i = 0; i < widths.size(); ++i) {
    const double x = widths[i].second - 0.5;
    s << "set arrow " << i + 1 << " from " << x << ", graph 0 to " << x << ", graph 1 nohead lw 2 dt " << i + 1
      << " lc rgb '" << colours[i % 2] << "'\n"
      << "set label " << i + 1 << " " << util::gnuplot_string(widths[i].first + " " + std::to_string(widths[i].second) + " bits")
      << " at " << x << ", graph " << (0.92 - 0.1 * static_cast<double>(i)) << " right offset -0.5,0 front boxed tc rgb '"
      << colours[i % 2] << "'\n";
  }
  s << "plot $" << block << " using 1:2 with boxes fs solid 0.6 lc rgb '#1f77b4' notitle\n";
  return s.str();
}

// Two panels per layer: accumulator magnitudes with the target and provable widths, and input
// activation codes with the target's activation width.
std::string plot_script(const profile::Profile& p) {
  std::ostringstream s;
  for (const profile::LayerProfile& l : p.layers) {
    s << data_block("acc" + std::to_string(l.layer), l.accumulators)
      << data_block("act" + std::to_string(l.layer), l.activations);
  }
  s << "set style fill solid 0.6\nset boxwidth 0.8\nset logscale y\nset yrange [0.7:*]\nset ylabel 'count'\nset grid ytics\n"
    << "set xtics 1 out nomirror\nset key off\nset style textbox opaque noborder\n"
    << "set multiplot layout " << p.layers.size() << ",2\n";
  for (const profile::LayerProfile& l : p.layers) {
    const std::string shape = "layer " + std::to_string(l.layer) + " (" + std::to_string(l.in) + " x " +
                              std::to_string(l.out) + ")";
    s << "set xlabel 'bits of |accumulator|'\n"
      << panel(shape + ": accumulators", "acc" + std::to_string(l.layer), l.accumulators.magnitude_bits.size(),
               {{"target", l.acc_bits}, {"provable", l.provable_acc_bits}})
      << "set xlabel 'bits of |activation code|'\n"
      << panel(shape + ": input activation codes", "act" + std::to_string(l.layer),
               l.activations.magnitude_bits.size(), {{"target", l.act_bits}});
  }
  s << "unset multiplot\n";
  return s.str();
}

// PREFIX.png and PREFIX.svg, drawn under temporary names beside them and renamed when whole.
void write_plots(const profile::Profile& p, const std::string& prefix) {
  if (prefix.find_first_of("\n\r") != std::string::npos)
    throw std::invalid_argument("--plot: '" + prefix + "' holds a line break");
  const fs::path png = prefix + ".png", svg = prefix + ".svg";
  const fs::path dir = png.parent_path().empty() ? fs::path(".") : png.parent_path();
  if (!fs::is_directory(dir)) throw std::invalid_argument("--plot: " + dir.string() + ": no such directory");
  const int height = std::max(300, 260 * static_cast<int>(p.layers.size()));
  try {
    util::draw_png_and_svg(plot_script(p), {png, svg, 1400, height, ",9"});
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(std::string("--plot: ") + e.what());
  }
}

int run_profile(const ProfileOptions& o) {
  const long samples = parse_samples(o.samples);
  // Checked before the data is run: a missing plotter should not cost a profiling run.
  if (!o.plot.empty() && !util::program_available("gnuplot"))
    throw std::runtime_error("--plot: gnuplot not found on PATH; install the Debian package gnuplot-nox");
  const ModelInputs in = load_model_inputs(o.model, o.target, o.data, samples);
  if (in.count == 0) throw training::DataError(in.test.source + ": no test images");
  const model::Bundle& bundle = in.bundle;
  const profile::Profile p = profile::profile_bundle(bundle, in.test.pixels.data(), in.count);

  std::printf("profile: %zu images of %s on target %s (%s), accumulator %d bits (%s), activations %d bits\n",
              in.count, o.model.c_str(), bundle.target.name.c_str(), bundle.target_hash.c_str(),
              bundle.target.format.acc_bits, std::string(target::to_string(bundle.target.format.overflow)).c_str(),
              bundle.target.format.act_bits);
  std::printf("  %-5s %-11s %8s %14s %5s %14s %5s %12s %8s %8s\n", "layer", "shape", "acc bits", "observed max",
              "bits", "provable max", "bits", "overflows", "act bits", "max act");
  for (const profile::LayerProfile& l : p.layers) {
    const std::string shape = std::to_string(l.in) + " x " + std::to_string(l.out);
    std::printf("  %-5d %-11s %8d %14lld %5d %14lld %5d %12llu %8d %8lld\n", l.layer, shape.c_str(), l.acc_bits,
                static_cast<long long>(l.observed_acc_max), l.observed_acc_bits,
                static_cast<long long>(l.bound_acc_max), l.provable_acc_bits, static_cast<unsigned long long>(l.overflows),
                l.act_bits, static_cast<long long>(l.observed_act_max));
  }
  std::uint64_t overflows = 0, accumulations = 0;
  for (const profile::LayerProfile& l : p.layers) {
    overflows += l.overflows;
    accumulations += l.accumulations;
  }
  std::printf("  accumulator bits: target %d, observed %d, provable %d; %llu of %llu accumulations overflow\n",
              bundle.target.format.acc_bits, p.observed_acc_bits, p.provable_acc_bits,
              static_cast<unsigned long long>(overflows), static_cast<unsigned long long>(accumulations));
  std::fflush(stdout);

  if (!o.json.empty()) {
    nlohmann::json j = profile::to_json(p);
    j["model"] = o.model;
    j["target"] = bundle.target.name;
    j["target_hash"] = bundle.target_hash;
    util::write_file_atomic(o.json, j.dump(2) + "\n");
  }
  if (!o.plot.empty()) {
    write_plots(p, o.plot);
    std::printf("  plots: %s.png, %s.svg\n", o.plot.c_str(), o.plot.c_str());
  }
  return kExitOk;
}

}  // namespace

void add_profile_command(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<ProfileOptions>();
  auto* cmd = app.add_subcommand(
      "profile", "Accumulator and activation ranges of a bundle on data against the target's widths");
  cmd->add_option("model", o->model, "Bundle directory (model.qhw)")->required();
  cmd->add_option("--data", o->data, "Folder with MNIST-style IDX files")->capture_default_str()->check(NonEmptyPath);
  cmd->add_option("--target", o->target, "Require the bundle to be built for this target")->check(NonEmptyTarget);
  cmd->add_option("--samples", o->samples, "Number of test images, or 'all'")->capture_default_str();
  cmd->add_option("--json", o->json, "Write the profile as JSON to this file")->check(NonEmptyPath);
  cmd->add_option("--plot", o->plot, "Write histograms to PREFIX.png and PREFIX.svg (gnuplot)");
  cmd->callback([o, &exit_code] { exit_code = run_profile(*o); });
}

}  // namespace qathw::cli
