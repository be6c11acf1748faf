#include "qathw/rtl/point_rtl.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>

#include "qathw/target/target_gen.h"
#include "qathw/util/atomic_file.h"
#include "qathw/util/hash.h"
#include "qathw/util/process.h"

namespace qathw::rtl {
namespace {

namespace fs = std::filesystem;

// What CMake knows about the RTL build (rtl/flow/CMakeLists.txt): the sources (the configuration
// port's package first), the harness and the include folders it needs.
const char* const kRtlSources = QATHW_RTL_POINT_SOURCES;
const char* const kHarness = QATHW_RTL_POINT_HARNESS;
const char* const kIncludes = QATHW_RTL_POINT_INCLUDES;

std::vector<std::string> split(const std::string& list) {
  std::vector<std::string> items;
  std::istringstream in(list);
  std::string item;
  while (std::getline(in, item, ';'))
    if (!item.empty()) items.push_back(item);
  return items;
}

std::vector<std::string> parameter_args(const target::TargetSpec& t, bool transformer) {
  std::vector<std::string> args = target::verilator_parameter_args(t);
  for (const std::string& a : target::verilator_memory_args(t)) args.push_back(a);
  if (transformer) {
    args.push_back("-GTransformer=1");
    for (const target::RtlParameter& p : target::vector_unit_parameters(t))
      args.push_back("-G" + p.name + "=" + std::to_string(p.value));
  }
  return args;
}

// Every header the harness includes can change the shared object: hash the include folders' files.
std::string include_contents() {
  std::string all;
  for (const std::string& dir : split(kIncludes)) {
    std::vector<fs::path> files;
    for (const auto& e : fs::recursive_directory_iterator(dir))
      if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const fs::path& f : files) all += f.string() + "\n" + util::read_file(f);
  }
  return all;
}

std::string tool_versions() {
  static const std::string versions = [] {
    return util::run_program({"verilator", "--version"}).output + util::run_program({"c++", "--version"}).output;
  }();
  return versions;
}

fs::path cache_dir_of(const RtlBuildSettings& s) {
  return s.cache_dir.empty() ? util::default_cache_dir("rtl") : s.cache_dir;
}

RtlRunFunction* load(const fs::path& so) {
  // One load per shared object and process: dlopen keeps it for the process's life.
  static std::mutex mutex;
  static std::map<std::string, RtlRunFunction*> loaded;
  std::lock_guard<std::mutex> lock(mutex);
  if (auto it = loaded.find(so.string()); it != loaded.end()) return it->second;
  void* handle = dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) throw std::runtime_error(so.string() + ": cannot load the RTL build: " + dlerror());
  using Entry = RtlRunFunction* (*)();
  auto entry = reinterpret_cast<Entry>(dlsym(handle, "qathw_rtl_entry"));
  if (!entry) throw std::runtime_error(so.string() + ": not an RTL build of qat-hw (no entry point)");
  return loaded[so.string()] = entry();
}

// The Verilator runtime's objects: the same for every design built with the same tools and flags,
// and a third of a build's compile time. The first build keeps them beside the builds; later ones
// start with copies in their object folder, which make finds up to date (newer than the sources).
std::vector<std::string> runtime_objects(bool trace) {
  std::vector<std::string> objects = {"verilated.o", "verilated_threads.o"};
  if (trace) objects.push_back("verilated_fst_c.o");
  return objects;
}

void start_with_runtime(const fs::path& runtime, const fs::path& obj, bool trace) {
  if (!fs::exists(runtime)) return;
  std::error_code ec;
  for (const std::string& o : runtime_objects(trace)) fs::copy_file(runtime / o, obj / o, ec);
}

void keep_runtime(const fs::path& obj, const fs::path& runtime, bool trace) {
  if (fs::exists(runtime)) return;
  const fs::path staged = runtime.string() + ".staged." + std::to_string(::getpid());
  std::error_code ec;
  fs::remove_all(staged, ec);
  fs::create_directories(staged);
  for (const std::string& o : runtime_objects(trace))
    if (!fs::copy_file(obj / o, staged / o, ec)) {
      fs::remove_all(staged, ec);
      return;  // a Verilator that names its objects otherwise: every build compiles its own
    }
  fs::rename(staged, runtime, ec);  // fails when another build kept them first: the same objects
  if (ec) fs::remove_all(staged, ec);
}

}  // namespace

std::string rtl_build_key(const target::TargetSpec& t, bool trace, bool transformer) {
  std::string inputs = trace ? "trace-fst\n" : "";
  for (const std::string& a : parameter_args(t, transformer)) inputs += a + "\n";
  for (const std::string& f : split(kRtlSources)) inputs += util::read_file(f);
  inputs += util::read_file(kHarness) + include_contents() + tool_versions();
  return util::fnv1a64_hex(inputs);
}

fs::path build_rtl(const target::TargetSpec& t, const RtlBuildSettings& s) {
  const fs::path cache = cache_dir_of(s);
  const std::string key = rtl_build_key(t, s.trace, s.transformer);
  const fs::path done = cache / key, so = done / "qathw_rtl_point.so";
  if (fs::exists(so)) return so;
  fs::create_directories(cache);
  const fs::path work = cache / (key + ".build." + std::to_string(::getpid()));
  std::error_code ec;
  fs::remove_all(work, ec);
  fs::create_directories(work);
  const fs::path log = work / "build.log";
  if (!s.quiet)
    std::cerr << "rtl: building the RTL of " << t.name << " (" << t.array.rows << "x" << t.array.lanes << ", acc "
              << t.format.acc_bits << ", act " << t.format.act_bits << " bits) in " << done.string() << "\n";

  std::string cflags = "-fPIC -fvisibility=hidden -std=c++17 -DQATHW_RTL_SHARED -DQATHW_RTL_MODEL=Vaccel "
                       "-DQATHW_RTL_ENTRY=run_rtl_point";
  for (const std::string& i : split(kIncludes)) cflags += " -I" + i;
  const fs::path obj = work / "obj";
  const fs::path runtime = cache / ("verilator-runtime-" + util::fnv1a64_hex(tool_versions() + cflags +
                                                                           (s.trace ? " trace-fst" : "")));
  // Verilate, then compile: the kept runtime objects go in between, newer than the makefile.
  std::vector<std::string> argv = {"verilator", "--cc", "--exe", "-Wall", "-Wno-fatal", "-O3", "--x-assign", "fast",
                                   "--x-initial", "fast", "--top-module", "qathw_accel", "--prefix", "Vaccel",
                                   "--Mdir", obj.string(), "-o", so.filename().string(),
                                   "-CFLAGS", cflags, "-LDFLAGS", "-shared -Wl,-Bsymbolic"};
  if (s.trace) argv.push_back("--trace-fst");
  for (const std::string& a : parameter_args(t, s.transformer)) argv.push_back(a);
  for (const std::string& f : split(kRtlSources)) argv.push_back(f);
  argv.push_back(kHarness);
  util::ProgramRun r = util::run_program(argv, work / "verilate.log");
  if (r.status == 0) {
    start_with_runtime(runtime, obj, s.trace);
    r = util::run_program({"make", "-C", obj.string(), "-f", "Vaccel.mk", "-j", std::to_string(std::max(1, s.jobs)),
                           so.filename().string()},
                          log);
  }
  const fs::path built = obj / so.filename();
  if (r.status != 0 || !fs::exists(built)) {
    std::error_code ec;
    if (fs::exists(work / "verilate.log") && !fs::exists(log)) fs::rename(work / "verilate.log", log, ec);
    throw std::runtime_error(r.status == 127 && !fs::exists(obj / "Vaccel.mk")
                                 ? "verilator is not installed (the Debian package verilator)"
                                 : "the RTL build of " + t.name + " failed, see " + log.string());
  }
  keep_runtime(obj, runtime, s.trace);
  // Publish the shared object and its log alone; the object files are not needed again.
  const fs::path staged = cache / (key + ".staged." + std::to_string(::getpid()));
  fs::remove_all(staged, ec);
  fs::create_directories(staged);
  fs::rename(built, staged / so.filename());
  fs::rename(log, staged / "build.log");
  fs::remove_all(work, ec);
  fs::rename(staged, done, ec);  // fails when another builder published first: theirs is the same
  if (ec) fs::remove_all(staged, ec);
  return so;
}

RtlRun run_rtl_any(const model::Bundle& bundle, const std::uint8_t* pixels, std::size_t count,
                   const std::string& fst_path, const RtlBuildSettings& settings) {
  RtlRunFunction* run = builtin_rtl(bundle);
  if (!run) {
    RtlBuildSettings s = settings;
    s.trace = s.trace || !fst_path.empty();
    s.transformer = s.transformer || bundle.sequence();
    run = load(build_rtl(bundle.target, s));
  }
  return run_rtl_entry(run, bundle, pixels, count, fst_path);
}

}  // namespace qathw::rtl
