#include <exception>
#include <iostream>

#include "commands.h"

int main(int argc, char** argv) {
  CLI::App app{"qat-hw: quantization-aware training for adder-only accelerators, checked bit for bit", "qat-hw"};
  app.set_version_flag("--version", "qat-hw " QATHW_VERSION);
  app.require_subcommand(0, 1);
  int exit_code = qathw::cli::kExitOk;
  qathw::cli::add_targets_command(app, exit_code);
  qathw::cli::add_models_command(app, exit_code);
  qathw::cli::add_train_command(app, exit_code);
  qathw::cli::add_infer_command(app, exit_code);
  qathw::cli::add_sim_command(app, exit_code);
  qathw::cli::add_verify_command(app, exit_code);
  qathw::cli::add_synth_command(app, exit_code);
  qathw::cli::add_profile_command(app, exit_code);
  qathw::cli::add_sweep_command(app, exit_code);
  qathw::cli::add_generate_command(app, exit_code);
  try {
    app.parse(argc, argv);
    if (app.get_subcommands().empty()) {
      std::cerr << app.help() << "qat-hw: a subcommand is required\n";
      return qathw::cli::kExitBadInput;
    }
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return qathw::cli::kExitBadInput;
  } catch (const std::exception& e) {
    std::cerr << "qat-hw: " << e.what() << "\n";
    return qathw::cli::kExitBadInput;
  }
  return exit_code;
}
