// qat-hw synth --target T: yosys synthesis of the accelerator's datapath with the target's
// parameters: generic cells, and for an FPGA flow (synth_xilinx) LUTs, carry cells, flip-flops
// and block RAM. Results are cached by the RTL sources, the parameters and the flow.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <regex>
#include <sstream>

#include "commands.h"
#include "option_checks.h"
#include "qathw/rtl/synth.h"
#include "qathw/target/target_spec.h"
#include "qathw/util/atomic_file.h"

namespace qathw::cli {
namespace {

namespace fs = std::filesystem;

struct SynthOptions {
  std::string target = "ternary-asic";
  std::string flow = "both";
  std::string json;
  rtl::SynthSettings settings;
};

int run_synth(const SynthOptions& o) {
  const target::TargetSpec t = target::resolve_target(o.target);
  nlohmann::json report = {{"target", t.name}, {"target_hash", target::content_hash(t)}, {"top", "qathw_datapath"}};
  std::printf("synth %s (%s): datapath of %dx%d PEs\n", t.name.c_str(), target::content_hash(t).c_str(),
              t.array.rows, t.array.lanes);
  for (const std::string flow : {"generic", "xilinx"}) {
    if (o.flow != "both" && o.flow != flow) continue;
    if (o.flow == "both" && flow == "xilinx" && !o.settings.flatten) continue;  // --by-module: generic only
    const nlohmann::json r = rtl::synthesize(t, flow, o.settings);
    report[flow] = r;
    if (flow == "generic")
      std::printf("  generic:  %ld cells, %ld flip-flops%s%s\n", r["cells"].get<long>(), r["flip_flops"].get<long>(),
                  o.settings.flatten ? "" : " (module by module)", r["cached"].get<bool>() ? " (cached)" : "");
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
  cmd->add_option("--target", o->target, "Built-in target name or .toml file")->capture_default_str()->check(NonEmptyTarget);
  cmd->add_option("--flow", o->flow, "generic (yosys synth), xilinx (synth_xilinx) or both")
      ->capture_default_str()->check(CLI::IsMember({"generic", "xilinx", "both"}));
  cmd->add_option("--json", o->json, "Write the results as JSON to this file")->check(NonEmptyPath);
  cmd->add_option("--cache", o->settings.cache_dir, "Cache folder (default ~/.cache/qat-hw/synth)")->check(NonEmptyPath);
  cmd->add_option("--rtl", o->settings.rtl_dir, "Folder of the RTL sources")->capture_default_str();
  cmd->add_flag("--by-module{false}", o->settings.flatten,
                "Generic flow: synthesize each distinct module once and count it per instance (faster; "
                "within about 1% of the flattened cell count, docs/sweep.md)");
  cmd->callback([o, &exit_code] { exit_code = run_synth(*o); });
}

}  // namespace qathw::cli
