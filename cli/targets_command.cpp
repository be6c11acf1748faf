// qat-hw targets [--json] | qat-hw targets show NAME|FILE
#include <iomanip>
#include <iostream>
#include <memory>
#include <string>

#include "commands.h"
#include "qathw/target/target_spec.h"

namespace qathw::cli {
namespace {

std::string summary_geometry(const target::TargetSpec& s) {
  return std::to_string(s.array.rows) + "x" + std::to_string(s.array.lanes);
}

// Lists the built-in targets, validating each; a broken built-in makes the exit code 2.
int list_targets(bool json) {
  nlohmann::json out = nlohmann::json::array();
  int status = kExitOk;
  if (!json)
    std::cout << std::left << std::setw(16) << "NAME" << std::setw(9) << "WEIGHTS" << std::setw(6) << "ACT"
              << std::setw(22) << "ACCUMULATOR" << std::setw(8) << "ARRAY" << std::setw(10) << "CLOCK"
              << "HASH\n";
  for (const auto& name : target::builtin_names()) {
    try {
      const target::TargetSpec s = target::builtin_target(name);
      const std::string hash = target::content_hash(s);
      if (json) {
        nlohmann::json j = target::to_json(s);
        j["hash"] = hash;
        out.push_back(j);
        continue;
      }
      std::cout << std::left << std::setw(16) << s.name << std::setw(9) << target::to_string(s.format.weights)
                << std::setw(6) << ("A" + std::to_string(s.format.act_bits))
                << std::setw(22)
                << (std::to_string(s.format.acc_bits) + "-bit " + std::string(target::to_string(s.format.overflow)))
                << std::setw(8) << summary_geometry(s) << std::setw(10)
                << (std::to_string(static_cast<int>(s.clock_mhz)) + " MHz") << hash << "\n";
    } catch (const target::TargetError& e) {
      std::cerr << "qat-hw: invalid built-in target: " << e.what() << "\n";
      status = kExitBadInput;
    }
  }
  if (json) std::cout << out.dump(2) << "\n";
  return status;
}

int show_target(const std::string& which) {
  try {
    const target::TargetSpec s = target::resolve_target(which);
    nlohmann::json j = target::to_json(s);
    j["hash"] = target::content_hash(s);
    j["origin"] = s.origin;
    std::cout << j.dump(2) << "\n";
    return kExitOk;
  } catch (const target::TargetError& e) {
    std::cerr << "qat-hw: " << e.what() << "\n";
    return kExitBadInput;
  }
}

}  // namespace

void add_targets_command(CLI::App& app, int& exit_code) {
  auto* targets = app.add_subcommand("targets", "List and validate hardware targets");
  auto* json = targets->add_flag("--json", "Print the built-in targets as JSON");
  targets->callback([targets, json, &exit_code] {
    if (targets->get_subcommands().empty()) exit_code = list_targets(json->count() > 0);
  });

  auto* show = targets->add_subcommand("show", "Print a target's resolved spec as JSON, with its content hash");
  auto which = std::make_shared<std::string>();
  show->add_option("target", *which, "Built-in target name or path to a .toml file")->required();
  show->callback([which, &exit_code] { exit_code = show_target(*which); });
}

}  // namespace qathw::cli
