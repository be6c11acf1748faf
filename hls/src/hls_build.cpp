// The HLS tops of targets with no top compiled in: the same templates CMake fills for the built-in
// targets (hls_target.h.in, src/layer_top.cpp.in, src/transformer_top.cpp.in,
// src/tops_table.cpp.in), filled from the target's generated header and compiled at run time into
// a cached shared object, loaded with dlopen.
#include "hls_build.h"

#include <dlfcn.h>
#include <unistd.h>

#include <iostream>
#include <map>
#include <mutex>
#include <sstream>

#include "qathw/target/target_gen.h"
#include "qathw/util/atomic_file.h"
#include "qathw/util/hash.h"
#include "qathw/util/process.h"

namespace qathw::hls {
namespace {

namespace fs = std::filesystem;

const char* const kHlsDir = QATHW_HLS_SOURCE_DIR;          // hls/: templates and include/
const char* const kArithInclude = QATHW_ARITH_INCLUDE_DIR;  // sim/arith/include
const char* const kHlsFlags = QATHW_HLS_BUILD_FLAGS;        // as the built-in tops are compiled, less -Werror

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (std::size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

struct Sources {
  std::string target_header, hls_header, top;
};

Sources sources_of(const target::TargetSpec& t) {
  const std::string id = target::identifier(t);
  auto fill = [&](std::string text) {
    text = replace_all(text, "@TARGET@", t.name);
    text = replace_all(text, "@ID@", id);
    text = replace_all(text, "@STRUCT@", "Target_" + id);
    text = replace_all(text, "@P_HEADER@", "target_" + id + ".h");
    text = replace_all(text, "@QATHW_HLS_MAX_MAP@", std::to_string(kMaxMap));
    text = replace_all(text, "@QATHW_HLS_MAX_CONTEXT@", std::to_string(kMaxContext));
    text = replace_all(text, "@QATHW_HLS_MAX_FFN@", std::to_string(kMaxFfn));
    text = replace_all(text, "@QATHW_HLS_MAX_HEADS@", std::to_string(kMaxHeads));
    return replace_all(text, "@QATHW_HLS_MAX_WIDTH@", std::to_string(kMaxWidth));
  };
  Sources s;
  s.target_header = target::cpp_header(t);
  s.hls_header = fill(util::read_file(fs::path(kHlsDir) / "hls_target.h.in"));
  s.top = fill(util::read_file(fs::path(kHlsDir) / "src" / "layer_top.cpp.in")) + "\n" +
          fill(util::read_file(fs::path(kHlsDir) / "src" / "transformer_top.cpp.in")) + "\n" +
          fill(util::read_file(fs::path(kHlsDir) / "src" / "tops_table.cpp.in")) +
          "\n// The shared object's one exported symbol: the table of its tops, found with dlsym.\n"
          "extern \"C\" __attribute__((visibility(\"default\"))) const void* qathw_hls_tops() {\n"
          "  return &qathw::hls::tops_" + id + ";\n}\n";
  return s;
}

std::string build_key(const target::TargetSpec& t, const Sources& s) {
  static const std::string compiler = util::run_program({"c++", "--version"}).output;
  return util::fnv1a64_hex(s.target_header + s.hls_header + s.top +
                           util::folder_contents({fs::path(kArithInclude), fs::path(kHlsDir) / "include"}) + kHlsFlags + compiler +
                           target::content_hash(t));
}

fs::path build(const target::TargetSpec& t) {
  const Sources src = sources_of(t);
  const fs::path cache = util::default_cache_dir("hls");
  const std::string key = build_key(t, src);
  const fs::path done = cache / key, so = done / "qathw_hls_top.so";
  if (fs::exists(so)) return so;
  const std::string id = target::identifier(t);
  const fs::path work = cache / (key + ".build." + std::to_string(::getpid()));
  std::error_code ec;
  fs::remove_all(work, ec);
  fs::create_directories(work);
  util::write_file_atomic(work / ("target_" + id + ".h"), src.target_header);
  util::write_file_atomic(work / ("hls_target_" + id + ".h"), src.hls_header);
  util::write_file_atomic(work / "layer_top.cpp", src.top);
  std::cerr << "hls: building the HLS top of " << t.name << " in " << done.string() << "\n";
  std::vector<std::string> argv = {"c++", "-std=c++17", "-O2", "-fPIC", "-shared", "-fvisibility=hidden"};
  std::istringstream flags(kHlsFlags);  // space-separated, as CMake joined them
  for (std::string flag; flags >> flag;) argv.push_back(flag);
  for (const std::string& inc : {work.string(), std::string(kArithInclude), (fs::path(kHlsDir) / "include").string()})
    argv.push_back("-I" + inc);
  argv.insert(argv.end(), {(work / "layer_top.cpp").string(), "-o", (work / so.filename()).string()});
  const fs::path log = work / "build.log";
  const util::ProgramRun r = util::run_program(argv, log);
  if (r.status != 0 || !fs::exists(work / so.filename()))
    throw std::runtime_error(r.status == 127 ? "no C++ compiler (c++) on PATH for the HLS build"
                                             : "the HLS build of " + t.name + " failed, see " + log.string());
  fs::rename(work, done, ec);  // fails when another builder published first: theirs is the same
  if (ec) fs::remove_all(work, ec);
  return so;
}

}  // namespace

const Tops& runtime_tops(const target::TargetSpec& t) {
  static std::mutex mutex;
  static std::map<std::string, const Tops*> loaded;
  const std::lock_guard<std::mutex> lock(mutex);
  const std::string hash = target::content_hash(t);
  if (const auto it = loaded.find(hash); it != loaded.end()) return *it->second;
  const fs::path so = build(t);
  void* handle = dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) throw std::runtime_error(so.string() + ": cannot load: " + dlerror());
  // The entry names what it returns (a table of tops): an object with another entry is refused.
  auto entry = reinterpret_cast<const void* (*)()>(dlsym(handle, "qathw_hls_tops"));
  if (!entry) throw std::runtime_error(so.string() + ": not an HLS build of qat-hw (no entry point)");
  return *(loaded[hash] = static_cast<const Tops*>(entry()));
}

// One table of tops per built-in target, compiled in (hls/CMakeLists.txt generates the list).
struct BuiltinTop {
  const char* target;
  const Tops* tops;
};
extern const BuiltinTop kBuiltinTops[];
extern const int kBuiltinTopCount;

const Tops* builtin_tops(const model::Bundle& bundle) {
  for (int i = 0; i < kBuiltinTopCount; ++i)
    if (target::content_hash(target::builtin_target(kBuiltinTops[i].target)) == bundle.target_hash)
      return kBuiltinTops[i].tops;
  return nullptr;
}

const Tops& tops_of(const model::Bundle& bundle) {
  const Tops* tops = builtin_tops(bundle);
  return tops ? *tops : runtime_tops(bundle.target);
}

}  // namespace qathw::hls
