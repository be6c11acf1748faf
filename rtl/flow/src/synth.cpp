#include "qathw/rtl/synth.h"

#include <unistd.h>

#include <iostream>
#include <regex>
#include <sstream>

#include "qathw/target/target_gen.h"
#include "qathw/util/atomic_file.h"
#include "qathw/util/hash.h"
#include "qathw/util/process.h"

namespace qathw::rtl {
namespace {

namespace fs = std::filesystem;

const char* const kRtlFiles[] = {"pe/qathw_accumulator.sv", "pe/qathw_pe_row.sv",      "pe/qathw_pe_array.sv",
                                 "quant/qathw_round_shift.sv", "quant/qathw_requant.sv", "quant/qathw_act_code.sv",
                                 "quant/qathw_reciprocal.sv",  "top/qathw_datapath.sv"};

// "Number of cells" and every cell type of the last `stat` in a yosys report.
nlohmann::json parse_stat(const std::string& text) {
  const std::size_t at = text.rfind("Number of cells:");
  if (at == std::string::npos) throw std::runtime_error("no cell count in yosys's report");
  nlohmann::json j = {{"cells", std::stol(text.substr(at + 16))}, {"by_type", nlohmann::json::object()}};
  std::istringstream in(text.substr(at));
  std::string line;
  std::getline(in, line);
  const std::regex row(R"(^\s+(\S+)\s+(\d+)\s*$)");
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, m, row)) j["by_type"][m[1].str()] = std::stol(m[2].str());
    else if (!line.empty() && line.find_first_not_of(' ') != std::string::npos && j["by_type"].size() > 0) break;
  }
  return j;
}

// The yosys commands of a synthesis: read the sources, set the parameters, synthesize, count.
struct Script {
  std::string read, params, synth, stat, sources;
};

Script script_for(const target::TargetSpec& t, const std::string& flow, const SynthSettings& o) {
  if (flow != "generic" && flow != "xilinx") throw std::invalid_argument("unknown synthesis flow '" + flow + "'");
  if (flow == "xilinx" && !o.flatten)
    throw std::invalid_argument("the xilinx flow is always flattened (module by module it counts about 16% more LUTs)");
  std::ostringstream params;
  params << "chparam";
  for (const target::RtlParameter& p : target::rtl_parameters(t)) params << " -set " << p.name << " " << p.value;
  params << " qathw_datapath";
  // Module by module, `stat -top` sums each module's cells times its instances (the submodule
  // instances themselves not counted).
  Script s{"read_verilog -sv", params.str(),
           flow == "xilinx" ? "synth_xilinx -flatten -top qathw_datapath"
                            : o.flatten ? "synth -flatten -top qathw_datapath" : "synth -top qathw_datapath",
           o.flatten ? "stat" : "stat -top qathw_datapath", ""};
  for (const char* file : kRtlFiles) {
    const fs::path p = o.rtl_dir / file;
    s.sources += util::read_file(p);
    s.read += " " + p.string();
  }
  return s;
}

fs::path cache_dir_of(const SynthSettings& o) {
  return o.cache_dir.empty() ? util::default_cache_dir("synth") : o.cache_dir;
}

// The figures derived from the by-type table, recomputed on every read (a cached report from an
// older count is corrected too).
void add_figures(nlohmann::json& j, const std::string& flow) {
  const nlohmann::json& by = j["by_type"];
  if (flow == "xilinx") {
    j["luts"] = count_cell_types(by, {"LUT"});
    j["carry"] = count_cell_types(by, {"CARRY"});
    j["flip_flops"] = count_cell_types(by, {"FD"});
    j["bram"] = count_cell_types(by, {"RAMB"});
    j["dsp"] = count_cell_types(by, {"DSP"});
  } else {
    j["flip_flops"] = count_cell_types(by, kGenericFlipFlops);
  }
}

}  // namespace

const std::vector<std::string> kGenericFlipFlops = {"$_DFF", "$_SDFF", "$_ALDFF"};

long count_cell_types(const nlohmann::json& by_type, const std::vector<std::string>& prefixes) {
  long n = 0;
  for (const auto& [name, count] : by_type.items())
    for (const auto& p : prefixes)
      if (name.rfind(p, 0) == 0) {
        n += count.get<long>();
        break;  // "$_DFF" and a longer prefix both match "$_DFFE_PN0P_": count it once
      }
  return n;
}

std::string synth_key(const target::TargetSpec& t, const std::string& flow, const SynthSettings& o) {
  const Script s = script_for(t, flow, o);
  return util::fnv1a64_hex(s.sources + s.params + s.synth);
}

nlohmann::json synthesize(const target::TargetSpec& t, const std::string& flow, const SynthSettings& o) {
  const Script s = script_for(t, flow, o);
  const fs::path cache_dir = cache_dir_of(o);
  const std::string key = util::fnv1a64_hex(s.sources + s.params + s.synth);
  const fs::path cached = cache_dir / (key + ".json");
  if (fs::exists(cached)) {
    nlohmann::json j = nlohmann::json::parse(util::read_file(cached), nullptr, false);
    if (!j.is_discarded() && j.contains("by_type")) {
      add_figures(j, flow);
      j["flatten"] = o.flatten;
      j["cached"] = true;
      return j;
    }
  }
  fs::create_directories(cache_dir);
  // Per-process report and log names: parallel sweep points may synthesize the same key at once.
  const std::string run = key + "." + std::to_string(::getpid());
  const fs::path stat = cache_dir / (run + ".stat.txt"), log = cache_dir / (key + ".log");
  const fs::path run_log = cache_dir / (run + ".log");
  const std::string script = s.read + "; " + s.params + "; " + s.synth + "; tee -q -o " + stat.string() + " " + s.stat;
  if (!o.quiet)
    std::cerr << "synth: yosys " << flow << (o.flatten ? "" : " (module by module)") << " flow for " << t.name << " (" << t.array.rows << "x" << t.array.lanes
              << "), log " << log.string() << "\n";
  const util::ProgramRun r = util::run_program({"yosys", "-q", "-p", script}, run_log);
  std::error_code ec;
  fs::rename(run_log, log, ec);
  if (r.status != 0) {
    fs::remove(stat, ec);
    throw std::runtime_error(r.status == 127 ? "yosys is not installed (the Debian package yosys)"
                                             : "yosys failed, see " + log.string());
  }
  nlohmann::json j = parse_stat(util::read_file(stat));
  fs::remove(stat, ec);
  j["flow"] = flow;
  j["flatten"] = o.flatten;
  add_figures(j, flow);
  util::write_file_atomic(cached, j.dump(2) + "\n");
  j["cached"] = false;
  return j;
}

}  // namespace qathw::rtl
