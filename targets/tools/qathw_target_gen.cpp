// qathw-target-gen: writes the parameter files derived from one target file (qathw/target/target_gen.h).
//   qathw-target-gen TARGET.toml [--cmake PREFIX OUT] [--sv OUT] [--hpp OUT] [--cfg-sv OUT]
//   qathw-target-gen --cfg-sv OUT
// With no output option it prints the RTL parameters, one "Name=value" a line. A file is rewritten
// only when its text changes, so what includes it is not rebuilt needlessly. Exit codes: 0 done,
// 1 usage or output error, 2 invalid target (the message names the file and the field).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "qathw/target/target_gen.h"

namespace {

namespace fs = std::filesystem;
using qathw::target::TargetSpec;

constexpr const char* kUsage =
    "usage: qathw-target-gen TARGET.toml [--cmake PREFIX OUT] [--sv OUT] [--hpp OUT] [--cfg-sv OUT]\n"
    "       qathw-target-gen --cfg-sv OUT\n"
    "  --cmake PREFIX OUT  CMake fragment setting PREFIX_ROWS, PREFIX_LANES, ... (the RTL parameters)\n"
    "  --sv OUT            SystemVerilog package qathw_target_<id>_pkg\n"
    "  --hpp OUT           C++ header with struct qathw::target::generated::Target_<id>\n"
    "  --cfg-sv OUT        SystemVerilog package qathw_cfg_pkg: the configuration port's layout\n"
    "                      (the same for every target; needs no TARGET.toml)\n"
    "  no option           print the RTL parameters, one Name=value a line\n";

struct Output {
  std::string kind, prefix;
  fs::path path;
};

// Writes `text` to `path` unless the file already holds exactly that text.
void write_if_changed(const fs::path& path, const std::string& text) {
  {
    std::ifstream in(path, std::ios::binary);
    if (in) {
      std::ostringstream old;
      old << in.rdbuf();
      if (old.str() == text) return;
    }
  }
  if (path.has_parent_path()) fs::create_directories(path.parent_path());
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    out << text;
    if (!out.flush()) throw std::runtime_error(tmp.string() + ": cannot write");
  }
  fs::rename(tmp, path);
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  std::string target_file;
  std::vector<Output> outputs;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const std::size_t operands = a == "--cmake" ? 2 : (a == "--sv" || a == "--hpp" || a == "--cfg-sv") ? 1 : 0;
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      return 0;
    }
    if (operands > 0) {
      if (i + operands >= args.size()) {
        std::cerr << "qathw-target-gen: " << a << " needs " << operands << " argument(s)\n" << kUsage;
        return 1;
      }
      Output o{a.substr(2), operands == 2 ? args[i + 1] : "", args[i + operands]};
      outputs.push_back(o);
      i += operands;
    } else if (a.rfind("--", 0) == 0 || !target_file.empty()) {
      std::cerr << "qathw-target-gen: unexpected argument '" << a << "'\n" << kUsage;
      return 1;
    } else {
      target_file = a;
    }
  }
  const bool needs_target =
      outputs.empty() || std::any_of(outputs.begin(), outputs.end(), [](const Output& o) { return o.kind != "cfg-sv"; });
  if (target_file.empty() && needs_target) {
    std::cerr << kUsage;
    return 1;
  }
  if (target_file.empty()) {
    try {
      for (const Output& o : outputs) write_if_changed(o.path, qathw::target::config_port_sv_package());
    } catch (const std::exception& e) {
      std::cerr << "qathw-target-gen: " << e.what() << "\n";
      return 1;
    }
    return 0;
  }
  TargetSpec spec;
  try {
    spec = qathw::target::load_target_file(target_file);
  } catch (const qathw::target::TargetError& e) {
    std::cerr << "qathw-target-gen: " << e.what() << "\n";
    return 2;
  }
  try {
    if (outputs.empty())
      for (const auto& p : qathw::target::rtl_parameters(spec)) std::cout << p.name << "=" << p.value << "\n";
    for (const Output& o : outputs) {
      const std::string text = o.kind == "cmake"    ? qathw::target::cmake_fragment(spec, o.prefix)
                               : o.kind == "sv"     ? qathw::target::sv_package(spec)
                               : o.kind == "cfg-sv" ? qathw::target::config_port_sv_package()
                                                    : qathw::target::cpp_header(spec);
      write_if_changed(o.path, text);
    }
  } catch (const std::exception& e) {
    std::cerr << "qathw-target-gen: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
