// qat-hw verify MODEL: runs the deployed bundle on several engines (verify/engine.h) and compares
// every op's output integers that both engines observe, exactly; exit 0 when all agree, 1 on a
// difference (the first is reported), 2 on bad input.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <memory>
#include <sstream>

#include "commands.h"
#include "engine_workers.h"
#include "model_inputs.h"
#include "option_checks.h"
#include "qathw/rtl/point_rtl.h"
#include "qathw/util/atomic_file.h"
#include "qathw/util/timing.h"
#include "qathw/verify/compare.h"
#include "qathw/verify/engine.h"

namespace qathw::cli {
namespace {

struct VerifyOptions {
  std::string model;
  std::string engines = "int,systemc,rtl,hls";
  bool engines_given = false;
  std::string samples = "all";
  std::string data = training::kDefaultDataDir;
  std::string target;
  std::string json;
  std::string trace;
  int jobs = 0;  // 0: the usable CPUs
};

using Clock = std::chrono::steady_clock;


std::vector<std::string> parse_engines(const std::string& text) {
  std::vector<std::string> names;
  std::stringstream in(text);
  std::string name;
  while (std::getline(in, name, ',')) {
    if (!verify::find_engine(name)) {
      std::string list;
      for (const auto& e : verify::engines()) list += (list.empty() ? "" : ", ") + e.name;
      throw std::invalid_argument("--engines: unknown engine '" + name + "' (available: " + list + ")");
    }
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  }
  if (names.size() < 2) throw std::invalid_argument("--engines: name at least two engines to compare");
  return names;
}

int run_verify(const VerifyOptions& o) {
  std::vector<std::string> names = parse_engines(o.engines);
  const ModelInputs in = load_model_inputs(o.model, o.target, o.data, parse_samples(o.samples), true);
  const std::string unit = in.bundle.sequence() ? "sequences" : "images";
  // Each engine says whether it can run the bundle. Named with --engines, one that cannot is an
  // error; by default it is left out with its reason.
  std::vector<std::string> runnable;
  for (const auto& name : names) {
    if (const auto why = verify::find_engine(name)->unsupported(in.bundle)) {
      if (o.engines_given) throw std::invalid_argument("--engines: " + name + " cannot run " + o.model + ": " + *why);
      std::cerr << "verify: leaving out " << name << ": " << *why << "\n";
      continue;
    }
    runnable.push_back(name);
  }
  names = runnable;
  if (names.size() < 2) throw std::invalid_argument(o.model + ": fewer than two engines can run it");
  // An engine that fails to run is reported after the comparisons of those that ran. Runs of a
  // few hundred images stay in this process; larger ones are shared among worker processes.
  std::map<std::string, verify::EngineRun> runs;
  std::vector<std::string> failed;
  const WorkerPlan plan = plan_workers(o.jobs, in.count);
  const int jobs = plan.jobs;
  const bool workers = plan.workers;
  const auto t0 = Clock::now();
  if (workers) {
    std::cerr << "verify: " << names.size() << " engines on " << in.count << " " << unit << " in up to " << jobs
              << " worker processes\n";
    runs = run_engines_in_workers(o.model, o.data, names, in, jobs, plan.smallest, failed);
  } else {
    for (const auto& name : names) {
      std::cerr << "verify: running " << name << " on " << in.count << " " << unit << "\n";
      try {
        runs[name] = verify::find_engine(name)->run(in.bundle, in.test.pixels.data(), in.count);
      } catch (const std::exception& e) {
        std::cerr << "verify: " << name << " failed: " << e.what() << "\n";
        failed.push_back(name + ": " + e.what());
      }
    }
  }
  const double wall = util::seconds_since(t0);
  std::vector<std::string> ran;
  for (const auto& name : names)
    if (runs.count(name)) ran.push_back(name);
  names = ran;
  if (names.empty()) throw std::runtime_error("no engine ran: " + failed.front());
  nlohmann::json report = {{"model", o.model},
                           {"target", in.bundle.target.name},
                           {"target_hash", in.bundle.target_hash},
                           {"samples", in.count},
                           {"engines", nlohmann::json::object()},
                           {"comparisons", nlohmann::json::array()}};
  for (const auto& name : names) {
    const verify::EngineRun& r = runs[name];
    nlohmann::json e = r.stats;
    e["seconds"] = r.seconds;
    e[unit + "_per_s"] = r.seconds > 0 ? in.count / r.seconds : 0.0;
    report["engines"][name] = e;
  }
  bool agree = true;
  std::optional<std::size_t> failing_sample;
  const std::string& ref = names.front();
  std::printf("verify %s (target %s): %zu %s, every op both engines observe compared exactly\n", o.model.c_str(),
              in.bundle.target.name.c_str(), in.count, unit.c_str());
  for (std::size_t k = 1; k < names.size(); ++k) {
    const verify::Comparison c =
        verify::compare(in.bundle.graph, ref, runs[ref].outputs, names[k], runs[names[k]].outputs);
    nlohmann::json cj = verify::to_json(c);
    std::string at_cycle;
    const auto fused = c.first ? verify::fused_layer_of(in.bundle.graph, c.first->op) : std::nullopt;
    if (c.first && c.first->shape.empty() && fused) {
      // The RTL's clock cycle at which the differing layer finished, for the waveform.
      for (const std::string& e : {ref, names[k]})
        if (!runs[e].layer_end.empty()) {
          const std::uint64_t cycle = runs[e].layer_end.at(c.first->sample).at(*fused);
          cj["first_divergence"]["rtl_cycle"] = cycle;
          at_cycle = " (rtl: layer finished at cycle " + std::to_string(cycle) + " of its run)";
        }
    }
    report["comparisons"].push_back(cj);
    if (c.first) {
      agree = false;
      if (!failing_sample) failing_sample = c.first->sample;
      std::printf("  %s vs %s: %zu of %zu %s differ; first: %s%s\n", ref.c_str(), names[k].c_str(),
                  c.mismatching_samples, c.samples, unit.c_str(), verify::describe(*c.first).c_str(), at_cycle.c_str());
    } else {
      std::printf("  %s vs %s: identical on %zu ops\n", ref.c_str(), names[k].c_str(), c.ops.size());
    }
  }
  for (const auto& name : names)
    std::printf("  %-8s %.2f s (%.0f %s/s)\n", name.c_str(), runs[name].seconds, in.count / runs[name].seconds,
                unit.c_str());
  std::printf("  wall time %.2f s (%s)\n", wall,
              workers ? (std::to_string(jobs) + " worker processes at a time").c_str() : "one process");
  report["wall_seconds"] = wall;
  report["jobs"] = workers ? jobs : 1;
  // Cycle counts: the SystemC model's cycle model against the RTL's clock, layer by layer.
  if (runs.count("systemc") && runs.count("rtl")) {
    const auto& s = runs["systemc"].stats["cycles_per_layer"];
    const auto& r = runs["rtl"].stats["cycles_per_layer"];
    nlohmann::json layers = nlohmann::json::array();
    double worst = 0;
    for (std::size_t l = 0; l < s.size() && l < r.size(); ++l) {
      const double sc = s[l].get<double>(), rc = r[l].get<double>();
      const double diff = rc > 0 ? (sc - rc) / rc : 0;
      worst = std::max(worst, std::fabs(diff));
      layers.push_back({{"systemc", s[l]}, {"rtl", r[l]}, {"relative_difference", diff}});
      std::printf("  cycles, layer %zu: systemc %.0f, rtl %.0f (%+.2f%%)\n", l, sc, rc, 100 * diff);
    }
    report["cycles"] = {{"layers", layers}, {"largest_relative_difference", worst}};
  }
  report["agree"] = agree;
  report["engine_errors"] = failed;
  // The waveform of the first differing sample (or of the first sample when all agree): the RTL
  // runs it again with tracing switched on.
  if (!o.trace.empty()) {
    const std::size_t sample = failing_sample.value_or(0);
    rtl::run_rtl_any(in.bundle, in.test.pixels.data() + sample * in.test.features, 1, o.trace);
    std::printf("  waveform of sample %zu (rtl, every signal, every cycle) written to %s\n", sample, o.trace.c_str());
    report["trace"] = {{"file", o.trace}, {"sample", sample}};
  }
  if (!o.json.empty()) util::write_file_atomic(o.json, report.dump(2) + "\n");
  if (!agree) return kExitMismatch;
  for (const std::string& f : failed) std::fprintf(stderr, "qat-hw: verify: engine %s\n", f.c_str());
  return failed.empty() ? kExitOk : kExitBadInput;
}

}  // namespace

void add_verify_command(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<VerifyOptions>();
  auto* cmd = app.add_subcommand("verify", "Run a bundle on several engines and compare every op's outputs bit for bit");
  cmd->add_option("model", o->model, "Bundle directory (model.qhw)")->required();
  cmd->add_option("--engines", o->engines, "Comma-separated engines (int, systemc, rtl, hls, cuda); the first is the reference")
      ->capture_default_str()
      ->each([o](const std::string&) { o->engines_given = true; });
  cmd->add_option("--samples", o->samples, "Number of test images (a language model: validation sequences), or 'all'")->capture_default_str();
  cmd->add_option("--data", o->data, "Folder with MNIST-style IDX files, or text:PATH for a language model "
                  "(default: the fortunes corpus)")->capture_default_str()->check(NonEmptyPath);
  cmd->add_option("--target", o->target, "Require the bundle to be built for this target")->check(NonEmptyTarget);
  cmd->add_option("--json", o->json, "Write a JSON summary to this file")->check(NonEmptyPath);
  cmd->add_option("--trace", o->trace, "Write the RTL's FST waveform of the first differing sample (or of sample 0)");
  cmd->add_option("--jobs", o->jobs, "Worker processes at a time (default: the usable CPUs)")->check(CLI::Range(1, 1024));
  cmd->callback([o, &exit_code] { exit_code = run_verify(*o); });

  add_verify_slice_command(app, exit_code);
}

}  // namespace qathw::cli
