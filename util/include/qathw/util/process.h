// External programs (yosys, verilator, gnuplot, sbatch) run without a shell: arguments are
// passed as they are, so no file name or value is ever interpreted by a shell.
#pragma once

#include <filesystem>
#include <functional>
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

// Starts argv[0] (a path) as a worker process with stdout and stderr to `log`, and returns its
// pid; the caller waits for it. The worker is killed when this process ends, however it ends
// (kill -9 included), so no worker outlives an interrupted run.
int start_worker(const std::vector<std::string>& argv, const std::filesystem::path& log);

// Runs items 0..count-1 as worker processes, at most `jobs` at a time, in order: `start(i)`
// starts item i (start_worker) and returns its pid; `done(i, status)` is called as each ends, in
// the order they end, with its exit status (exit_status). Returns when all have ended.
void run_workers(std::size_t count, int jobs, const std::function<int(std::size_t)>& start,
                 const std::function<void(std::size_t, int)>& done);

// The path of this program (/proc/self/exe), to start workers of it.
std::filesystem::path self_executable();

// The exit status of a finished child as run_program reports it (128+N on signal N).
int exit_status(int wait_status);

}  // namespace qathw::util
