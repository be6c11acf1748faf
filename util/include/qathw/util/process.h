// External programs (yosys, verilator, gnuplot, sbatch) run without a shell: arguments are
// passed as they are, so no file name or value is ever interpreted by a shell.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace qathw::util {

struct ProgramRun {
  int status = 0;       // the exit status; 127 when the program could not be started, 128+N on signal N
  std::string output;   // stdout and stderr together, when captured
};

// Runs argv[0] (looked up on PATH) with `input` on its standard input. Standard output and error go
// to `log` when given, else are captured into the result. Never throws for the program's failure.
ProgramRun run_program(const std::vector<std::string>& argv, const std::filesystem::path& log = {},
                       const std::string& input = {});

// Whether `name` is an executable on PATH.
bool program_available(const std::string& name);

}  // namespace qathw::util
