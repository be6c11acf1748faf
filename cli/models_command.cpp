// qat-hw models [--json] | qat-hw models show NAME|FILE [--classes N]: the networks qat-hw can
// train (models/*.toml), each layer with its inferred shape.
#include <iomanip>
#include <iostream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "qathw/model/model_spec.h"

namespace qathw::cli {
namespace {

std::string shape_text(const model::Shape& s) {
  if (s.is_map()) return std::to_string(s.height) + "x" + std::to_string(s.width) + "x" + std::to_string(s.channels);
  return std::to_string(s.channels);
}

int list_models(bool json, int classes) {
  nlohmann::json out = nlohmann::json::array();
  int status = kExitOk;
  if (!json)
    std::cout << std::left << std::setw(14) << "NAME" << std::setw(10) << "INPUT" << std::setw(8) << "LAYERS"
              << std::setw(12) << "PARAMETERS" << std::setw(12) << "MACS" << "DESCRIPTION\n";
  for (const std::string& name : model::builtin_model_names()) {
    try {
      const model::ModelSpec m = model::resolve_model(name, classes);
      if (json) {
        out.push_back(model::to_json(m));
        continue;
      }
      std::cout << std::left << std::setw(14) << m.name << std::setw(10) << shape_text(m.input) << std::setw(8)
                << m.layers.size() << std::setw(12) << model::model_parameters(m) << std::setw(12) << model::model_macs(m)
                << m.description << "\n";
    } catch (const model::ModelError& e) {
      std::cerr << "qat-hw: invalid built-in model: " << e.what() << "\n";
      status = kExitBadInput;
    }
  }
  if (json) std::cout << out.dump(2) << "\n";
  return status;
}

int show_model(const std::string& which, int classes) {
  try {
    std::cout << model::to_json(model::resolve_model(which, classes)).dump(2) << "\n";
    return kExitOk;
  } catch (const model::ModelError& e) {
    std::cerr << "qat-hw: " << e.what() << "\n";
    return kExitBadInput;
  }
}

}  // namespace

void add_models_command(CLI::App& app, int& exit_code) {
  auto* models = app.add_subcommand("models", "List and check the networks qat-hw trains (models/*.toml)");
  auto* json = models->add_flag("--json", "Print the built-in models as JSON");
  auto classes = std::make_shared<int>(10);
  models->add_option("--classes", *classes, "Classes of the last layer")->capture_default_str()->check(CLI::Range(2, 65536));
  models->callback([models, json, classes, &exit_code] {
    if (models->get_subcommands().empty()) exit_code = list_models(json->count() > 0, *classes);
  });

  auto* show = models->add_subcommand("show", "Print a model's layers and their shapes as JSON");
  auto which = std::make_shared<std::string>();
  show->add_option("model", *which, "Built-in model name or path to a .toml file")->required();
  show->add_option("--classes", *classes, "Classes of the last layer")->capture_default_str()->check(CLI::Range(2, 65536));
  show->callback([which, classes, &exit_code] { exit_code = show_model(*which, *classes); });
}

}  // namespace qathw::cli
