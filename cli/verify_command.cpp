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
#include <set>
#include <sstream>

#include <sys/wait.h>

#include "commands.h"
#include "model_inputs.h"
#include "option_checks.h"
#include "qathw/rtl/point_rtl.h"
#include "qathw/util/atomic_file.h"
#include "qathw/util/cpus.h"
#include "qathw/util/process.h"
#include "qathw/verify/compare.h"
#include "qathw/verify/engine.h"
#include "qathw/verify/engine_run_file.h"

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

// One slice of one engine's samples, run by a worker process (verify-slice).
struct SliceOptions {
  std::string model, engine, data, out;
  long first = 0, count = 0;
};

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

int run_verify_slice(const SliceOptions& o) {
  const ModelInputs in = load_model_inputs(o.model, "", o.data, 0);
  if (o.first < 0 || o.count < 1 || static_cast<std::size_t>(o.first + o.count) > in.count)
    throw std::invalid_argument("verify-slice: samples " + std::to_string(o.first) + " + " + std::to_string(o.count) +
                                " lie outside the " + std::to_string(in.count) + " test images");
  const verify::Engine* engine = verify::find_engine(o.engine);
  if (!engine) throw std::invalid_argument("verify-slice: unknown engine '" + o.engine + "'");
  const verify::EngineRun run = engine->run(in.bundle, in.test.pixels.data() + o.first * in.test.features,
                                            static_cast<std::size_t>(o.count));
  verify::write_engine_run(o.out, run);
  return kExitOk;
}

// The last line a failed worker wrote: its error.
std::string last_line(const fs::path& log) {
  std::string text;
  try {
    text = util::read_file(log, 1 << 20);
  } catch (const std::exception&) {
    return "(no log)";
  }
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text.substr(text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1);
}

// A folder that is removed when the verify ends.
struct TempFolder {
  fs::path path;
  TempFolder() {
    std::string pattern = (fs::temp_directory_path() / "qat-hw-verify-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("cannot create a temporary folder in " +
                                                            fs::temp_directory_path().string());
    path = pattern;
  }
  ~TempFolder() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// Runs the engines on slices of the samples in worker processes, `jobs` at a time: the RTL in
// several slices first (the slowest engine), then the SystemC model and HLS, the integer engine
// last. Prints a progress line with an ETA as slices finish. An engine whose slice fails is
// reported in `failed` and left out of the result.
std::map<std::string, verify::EngineRun> run_in_workers(const VerifyOptions& o, const std::vector<std::string>& names,
                                                        const ModelInputs& in, int jobs,
                                                        std::vector<std::string>& failed) {
  struct Slice {
    std::string engine;
    std::size_t first, count;
    fs::path out, log;
  };
  // Run-time builds (an RTL model or HLS top of a target without a built-in one) happen here,
  // once, before the workers would each start them: each engine runs one sample.
  for (const std::string& name : {std::string("rtl"), std::string("hls")})
    if (std::find(names.begin(), names.end(), name) != names.end()) verify::find_engine(name)->run(in.bundle, in.test.pixels.data(), 1);
  const TempFolder work;
  std::vector<Slice> slices;
  for (const std::string& name : {std::string("rtl"), std::string("systemc"), std::string("hls"), std::string("int"),
                                  std::string("cuda")}) {
    if (std::find(names.begin(), names.end(), name) == names.end()) continue;
    const std::size_t wanted = name == "rtl" ? 2 * static_cast<std::size_t>(jobs)
                               : name == "int" || name == "cuda" ? 1 : static_cast<std::size_t>(jobs);
    // Slices of at least 200 images unless --jobs asks for workers explicitly.
    const std::size_t smallest = o.jobs > 0 ? 1 : 200;
    const std::size_t parts = std::max<std::size_t>(1, std::min(wanted, in.count / smallest));
    for (std::size_t p = 0; p < parts; ++p) {
      const std::size_t first = in.count * p / parts, last = in.count * (p + 1) / parts;
      const std::string id = name + "-" + std::to_string(p);
      slices.push_back({name, first, last - first, work.path / (id + ".run"), work.path / (id + ".log")});
    }
  }
  const fs::path model = fs::absolute(o.model), data = fs::absolute(o.data);
  std::map<pid_t, std::size_t> running;
  std::vector<std::optional<verify::EngineRun>> results(slices.size());  // by slice: joined in sample order
  std::set<std::string> broken;
  std::size_t next = 0, finished = 0;
  const auto t0 = Clock::now();
  while (next < slices.size() || !running.empty()) {
    while (next < slices.size() && static_cast<int>(running.size()) < jobs) {
      const Slice& s = slices[next];
      running[util::start_worker({util::self_executable().string(), "verify-slice", model.string(), "--engine",
                                  s.engine, "--data", data.string(), "--first", std::to_string(s.first), "--count",
                                  std::to_string(s.count), "--out", s.out.string()},
                                 s.log)] = next;
      ++next;
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("verify: lost the worker processes");
    }
    const auto it = running.find(pid);
    if (it == running.end()) continue;
    const std::size_t index = it->second;
    const Slice& s = slices[index];
    running.erase(it);
    ++finished;
    if (util::exit_status(status) != 0) {
      if (broken.insert(s.engine).second) failed.push_back(s.engine + ": " + last_line(s.log));
    } else {
      results[index] = verify::read_engine_run(s.out);
    }
    std::error_code ec;
    fs::remove(s.out, ec);
    const double elapsed = seconds_since(t0);
    const double eta = elapsed / static_cast<double>(finished) * static_cast<double>(slices.size() - finished);
    std::fprintf(stderr, "verify: [%zu/%zu] %s images %zu-%zu done; elapsed %.0fs, ETA %.0fs\n", finished,
                 slices.size(), s.engine.c_str(), s.first, s.first + s.count - 1, elapsed, eta);
  }
  std::map<std::string, std::vector<verify::EngineRun>> parts;
  for (std::size_t i = 0; i < slices.size(); ++i)
    if (!broken.count(slices[i].engine)) parts[slices[i].engine].push_back(std::move(*results[i]));
  std::map<std::string, verify::EngineRun> runs;
  for (auto& [name, slices_of] : parts) runs[name] = verify::join_slices(std::move(slices_of));
  return runs;
}

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
  const ModelInputs in = load_model_inputs(o.model, o.target, o.data, parse_samples(o.samples));
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
  const int jobs = o.jobs > 0 ? o.jobs : util::usable_cpus();
  const bool workers = jobs > 1 && (o.jobs > 0 || in.count >= 400);
  const auto t0 = Clock::now();
  if (workers) {
    std::cerr << "verify: " << names.size() << " engines on " << in.count << " images in up to " << jobs
              << " worker processes\n";
    runs = run_in_workers(o, names, in, jobs, failed);
  } else {
    for (const auto& name : names) {
      std::cerr << "verify: running " << name << " on " << in.count << " images\n";
      try {
        runs[name] = verify::find_engine(name)->run(in.bundle, in.test.pixels.data(), in.count);
      } catch (const std::exception& e) {
        std::cerr << "verify: " << name << " failed: " << e.what() << "\n";
        failed.push_back(name + ": " + e.what());
      }
    }
  }
  const double wall = seconds_since(t0);
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
    e["images_per_s"] = r.seconds > 0 ? in.count / r.seconds : 0.0;
    report["engines"][name] = e;
  }
  bool agree = true;
  std::optional<std::size_t> failing_sample;
  const std::string& ref = names.front();
  std::printf("verify %s (target %s): %zu images, every op both engines observe compared exactly\n", o.model.c_str(),
              in.bundle.target.name.c_str(), in.count);
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
      std::printf("  %s vs %s: %zu of %zu images differ; first: %s%s\n", ref.c_str(), names[k].c_str(),
                  c.mismatching_samples, c.samples, verify::describe(*c.first).c_str(), at_cycle.c_str());
    } else {
      std::printf("  %s vs %s: identical on %zu ops\n", ref.c_str(), names[k].c_str(), c.ops.size());
    }
  }
  for (const auto& name : names)
    std::printf("  %-8s %.2f s (%.0f images/s)\n", name.c_str(), runs[name].seconds, in.count / runs[name].seconds);
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
  cmd->add_option("--samples", o->samples, "Number of test images, or 'all'")->capture_default_str();
  cmd->add_option("--data", o->data, "Folder with MNIST-style IDX files")->capture_default_str()->check(NonEmptyPath);
  cmd->add_option("--target", o->target, "Require the bundle to be built for this target")->check(NonEmptyTarget);
  cmd->add_option("--json", o->json, "Write a JSON summary to this file")->check(NonEmptyPath);
  cmd->add_option("--trace", o->trace, "Write the RTL's FST waveform of the first differing sample (or of sample 0)");
  cmd->add_option("--jobs", o->jobs, "Worker processes at a time (default: the usable CPUs)")->check(CLI::Range(1, 1024));
  cmd->callback([o, &exit_code] { exit_code = run_verify(*o); });

  // What the workers run; not for users.
  auto s = std::make_shared<SliceOptions>();
  auto* slice = app.add_subcommand("verify-slice", "One slice of a verify run (what its worker processes run)");
  slice->group("");  // hidden from --help
  slice->add_option("model", s->model)->required();
  slice->add_option("--engine", s->engine)->required();
  slice->add_option("--data", s->data)->required();
  slice->add_option("--first", s->first)->required();
  slice->add_option("--count", s->count)->required();
  slice->add_option("--out", s->out)->required();
  slice->callback([s, &exit_code] { exit_code = run_verify_slice(*s); });
}

}  // namespace qathw::cli
