#include "engine_workers.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>

#include "commands.h"
#include "qathw/util/atomic_file.h"
#include "qathw/util/cpus.h"
#include "qathw/util/process.h"
#include "qathw/util/timing.h"
#include "qathw/verify/engine_run_file.h"

namespace qathw::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// One slice of one engine's samples, run by a worker process (verify-slice).
struct SliceOptions {
  std::string model, engine, data, out;
  long first = 0, count = 0;
};

int run_verify_slice(const SliceOptions& o) {
  const ModelInputs in = load_model_inputs(o.model, "", o.data, 0, true);
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

}  // namespace

WorkerPlan plan_workers(int jobs_option, std::size_t count) {
  WorkerPlan p;
  p.jobs = jobs_option > 0 ? jobs_option : util::usable_cpus();
  p.workers = p.jobs > 1 && (jobs_option > 0 || count >= 400);
  p.smallest = jobs_option > 0 ? 1 : 200;
  return p;
}

std::map<std::string, verify::EngineRun> run_engines_in_workers(const std::string& model_path, const std::string& data_path,
                                                                const std::vector<std::string>& names,
                                                                const ModelInputs& in, int jobs, std::size_t smallest,
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
    const std::size_t parts = std::max<std::size_t>(1, std::min(wanted, in.count / smallest));
    for (std::size_t p = 0; p < parts; ++p) {
      const std::size_t first = in.count * p / parts, last = in.count * (p + 1) / parts;
      const std::string id = name + "-" + std::to_string(p);
      slices.push_back({name, first, last - first, work.path / (id + ".run"), work.path / (id + ".log")});
    }
  }
  const fs::path model = fs::absolute(model_path), data = fs::absolute(data_path);
  std::vector<std::optional<verify::EngineRun>> results(slices.size());  // by slice: joined in sample order
  std::set<std::string> broken;
  std::size_t finished = 0;
  const auto t0 = Clock::now();
  auto start = [&](std::size_t index) {
    const Slice& s = slices[index];
    return util::start_worker({util::self_executable().string(), "verify-slice", model.string(), "--engine", s.engine,
                               "--data", data.string(), "--first", std::to_string(s.first), "--count",
                               std::to_string(s.count), "--out", s.out.string()},
                              s.log);
  };
  util::run_workers(slices.size(), jobs, start, [&](std::size_t index, int status) {
    const Slice& s = slices[index];
    ++finished;
    if (status != 0) {
      // A worker killed by a signal, or whose program vanished, may have written nothing.
      std::string why = last_line(s.log);
      if (why.empty()) why = "its worker (images " + std::to_string(s.first) + "-" + std::to_string(s.first + s.count - 1) +
                             ") ended with status " + std::to_string(status) + " and no message";
      if (broken.insert(s.engine).second) failed.push_back(s.engine + ": " + why);
    } else {
      results[index] = verify::read_engine_run(s.out);
    }
    std::error_code ec;
    fs::remove(s.out, ec);
    const double elapsed = util::seconds_since(t0);
    const double eta = elapsed / static_cast<double>(finished) * static_cast<double>(slices.size() - finished);
    std::fprintf(stderr, "verify: [%zu/%zu] %s images %zu-%zu done; elapsed %.0fs, ETA %.0fs\n", finished,
                 slices.size(), s.engine.c_str(), s.first, s.first + s.count - 1, elapsed, eta);
  });
  std::map<std::string, std::vector<verify::EngineRun>> parts;
  for (std::size_t i = 0; i < slices.size(); ++i)
    if (!broken.count(slices[i].engine)) parts[slices[i].engine].push_back(std::move(*results[i]));
  std::map<std::string, verify::EngineRun> runs;
  for (auto& [name, slices_of] : parts) runs[name] = verify::join_slices(std::move(slices_of));
  return runs;
}

void add_verify_slice_command(CLI::App& app, int& exit_code) {
  auto s = std::make_shared<SliceOptions>();
  auto* slice = app.add_subcommand("verify-slice", "One slice of a verify or sim run (what their worker processes run)");
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
