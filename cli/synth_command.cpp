// qat-hw synth --target T: yosys synthesis of the accelerator's datapath with the target's
// parameters: generic cells, and for an FPGA flow (synth_xilinx) LUTs, carry cells, flip-flops
// and block RAM. Results are cached by the RTL sources, the parameters and the flow.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <regex>
#include <sstream>

#include "commands.h"
#include "qathw/target/target_spec.h"
#include "qathw/util/atomic_file.h"
#include "qathw/util/hash.h"

namespace qathw::cli {
namespace {

namespace fs = std::filesystem;

const char* const kRtlFiles[] = {"pe/qathw_pe_row.sv",     "pe/qathw_pe_array.sv",     "quant/qathw_round_shift.sv",
                                 "quant/qathw_requant.sv", "quant/qathw_act_code.sv",  "quant/qathw_reciprocal.sv",
                                 "top/qathw_datapath.sv"};

struct SynthOptions {
  std::string target = "ternary-asic";
  std::string flow = "both";
  std::string json;
  std::string cache;
  std::string rtl_dir = QATHW_RTL_DIR;
};


// Runs a program without a shell; its output goes to `log`. Returns the exit status.
int run_program(const std::vector<std::string>& argv, const fs::path& log) {
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("cannot start " + argv[0]);
  if (pid == 0) {
    std::FILE* out = std::freopen(log.c_str(), "w", stdout);
    if (!out || dup2(fileno(stdout), STDERR_FILENO) < 0) _exit(127);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

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

long count_prefix(const nlohmann::json& by_type, const std::vector<std::string>& prefixes) {
  long n = 0;
  for (const auto& [name, count] : by_type.items())
    for (const auto& p : prefixes)
      if (name.rfind(p, 0) == 0) n += count.get<long>();
  return n;
}

nlohmann::json synthesize(const target::TargetSpec& t, const std::string& flow, const SynthOptions& o) {
  const arith::Format& f = t.format;
  std::ostringstream params;
  params << "chparam -set Rows " << t.array.rows << " -set Lanes " << t.array.lanes << " -set ActBits " << f.act_bits
         << " -set AccBits " << f.acc_bits << " -set MantBits " << f.scale_mantissa_bits << " -set ShiftMin "
         << f.scale_shift_min << " -set ShiftMax " << f.scale_shift_max << " -set WeightInt4 "
         << (f.weights == arith::WeightFormat::Int4) << " -set Saturate " << (f.overflow == arith::Overflow::Saturate)
         << " -set HalfEven " << (f.rounding == arith::Rounding::HalfEven) << " qathw_datapath";
  std::string read = "read_verilog -sv";
  std::string sources;
  for (const char* file : kRtlFiles) {
    const fs::path p = fs::path(o.rtl_dir) / file;
    sources += util::read_file(p);
    read += " " + p.string();
  }
  const std::string synth = flow == "xilinx" ? "synth_xilinx -flatten -top qathw_datapath"
                                             : "synth -flatten -top qathw_datapath";
  const fs::path cache_dir = o.cache.empty()
                                 ? fs::path(std::getenv("HOME") ? std::getenv("HOME") : "/tmp") / ".cache/qat-hw/synth"
                                 : fs::path(o.cache);
  const std::string key = util::fnv1a64_hex(sources + params.str() + synth);
  const fs::path cached = cache_dir / (key + ".json");
  if (fs::exists(cached)) {
    nlohmann::json j = nlohmann::json::parse(util::read_file(cached), nullptr, false);
    if (!j.is_discarded()) {
      j["cached"] = true;
      return j;
    }
  }
  fs::create_directories(cache_dir);
  const fs::path stat = cache_dir / (key + ".stat.txt"), log = cache_dir / (key + ".log");
  const std::string script = read + "; " + params.str() + "; " + synth + "; tee -q -o " + stat.string() + " stat";
  std::cerr << "synth: yosys " << flow << " flow for " << t.name << " (" << t.array.rows << "x" << t.array.lanes
            << "), log " << log.string() << "\n";
  if (run_program({"yosys", "-q", "-p", script}, log) != 0)
    throw std::runtime_error("yosys failed (is it installed? see " + log.string() + ")");
  nlohmann::json j = parse_stat(util::read_file(stat));
  j["flow"] = flow;
  if (flow == "xilinx") {
    j["luts"] = count_prefix(j["by_type"], {"LUT"});
    j["carry"] = count_prefix(j["by_type"], {"CARRY"});
    j["flip_flops"] = count_prefix(j["by_type"], {"FD"});
    j["bram"] = count_prefix(j["by_type"], {"RAMB"});
    j["dsp"] = count_prefix(j["by_type"], {"DSP"});
  } else {
    j["flip_flops"] = count_prefix(j["by_type"], {"$_DFF", "$_SDFF", "$_DFFE", "$_SDFFE", "$_ALDFF"});
  }
  util::write_file_atomic(cached, j.dump(2) + "\n");
  j["cached"] = false;
  return j;
}

int run_synth(const SynthOptions& o) {
  const target::TargetSpec t = target::resolve_target(o.target);
  nlohmann::json report = {{"target", t.name}, {"target_hash", target::content_hash(t)}, {"top", "qathw_datapath"}};
  std::printf("synth %s (%s): datapath of %dx%d PEs\n", t.name.c_str(), target::content_hash(t).c_str(),
              t.array.rows, t.array.lanes);
  for (const std::string flow : {"generic", "xilinx"}) {
    if (o.flow != "both" && o.flow != flow) continue;
    const nlohmann::json r = synthesize(t, flow, o);
    report[flow] = r;
    if (flow == "generic")
      std::printf("  generic:  %ld cells, %ld flip-flops%s\n", r["cells"].get<long>(), r["flip_flops"].get<long>(),
                  r["cached"].get<bool>() ? " (cached)" : "");
    else
      std::printf("  xilinx:   %ld LUTs, %ld carry cells, %ld flip-flops, %ld BRAM, %ld DSP%s\n", r["luts"].get<long>(),
                  r["carry"].get<long>(), r["flip_flops"].get<long>(), r["bram"].get<long>(), r["dsp"].get<long>(),
                  r["cached"].get<bool>() ? " (cached)" : "");
  }
  if (!o.json.empty()) util::write_file_atomic(o.json, report.dump(2) + "\n");
  return kExitOk;
}

}  // namespace

void add_synth_command(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<SynthOptions>();
  auto* cmd = app.add_subcommand("synth", "yosys synthesis of the accelerator's datapath for a target");
  cmd->add_option("--target", o->target, "Built-in target name or .toml file")->capture_default_str();
  cmd->add_option("--flow", o->flow, "generic (yosys synth), xilinx (synth_xilinx) or both")
      ->capture_default_str()->check(CLI::IsMember({"generic", "xilinx", "both"}));
  cmd->add_option("--json", o->json, "Write the results as JSON to this file");
  cmd->add_option("--cache", o->cache, "Cache folder (default ~/.cache/qat-hw/synth)");
  cmd->add_option("--rtl", o->rtl_dir, "Folder of the RTL sources")->capture_default_str();
  cmd->callback([o, &exit_code] { exit_code = run_synth(*o); });
}

}  // namespace qathw::cli
