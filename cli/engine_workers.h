// Engines run on slices of the samples in worker processes: what `verify` and `sim` use to run at
// the machine's speed. Each slice runs in a process of its own (a SystemC model elaborates once
// per process, and the RTL model is single-threaded): the same program, started as
// `qat-hw verify-slice`, which hands its slice back in a file (verify/engine_run_file.h).
#pragma once

#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "model_inputs.h"
#include "qathw/verify/engine.h"

namespace qathw::cli {

// Whether a run of `count` images uses worker processes, how many at a time and the smallest
// slice: from 400 images, or whenever --jobs is given (`jobs_option` > 0; then slices of any size).
struct WorkerPlan {
  bool workers = false;
  int jobs = 1;
  std::size_t smallest = 200;
};
WorkerPlan plan_workers(int jobs_option, std::size_t count);

// Runs `names` on the first in.count test images of `data` in worker processes, `jobs` at a time:
// the RTL in two slices per job first (the slowest engine), then the SystemC model and HLS in
// one per job, the integer and CUDA engines in one; no slice smaller than `smallest` images.
// Prints a progress line with an ETA to stderr as slices finish. An engine with a failed slice is
// reported in `failed` ("engine: its last line") and left out. Slices join in sample order.
std::map<std::string, verify::EngineRun> run_engines_in_workers(const std::string& model, const std::string& data,
                                                                const std::vector<std::string>& names,
                                                                const ModelInputs& in, int jobs, std::size_t smallest,
                                                                std::vector<std::string>& failed);

// The hidden subcommand the workers run.
void add_verify_slice_command(CLI::App& app, int& exit_code);

}  // namespace qathw::cli
