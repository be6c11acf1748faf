// An engine's run on a slice of the samples, as a file: what `qat-hw verify`'s worker processes
// hand back (each slice in a process of its own: the SystemC kernel elaborates once per process,
// the RTL model is single-threaded), and how the slices of one engine join into one run.
#pragma once

#include <filesystem>
#include <vector>

#include "qathw/verify/engine.h"

namespace qathw::verify {

// Binary: a JSON header line (seconds, stats, sizes), then each sample's ops as int32 counts and
// values, then each sample's RTL layer end cycles. Written atomically.
void write_engine_run(const std::filesystem::path& path, const EngineRun& run);

// Reads what write_engine_run wrote; throws std::runtime_error naming the file on anything else.
EngineRun read_engine_run(const std::filesystem::path& path);

// The slices of one engine, in sample order, as one run: outputs and layer end cycles joined,
// seconds summed (the engine's time, not the wall time of the parallel run), stats of the first
// slice (cycle counts per inference depend on the shapes only) with simulated_cycles summed and
// cycles_per_s recomputed.
EngineRun join_slices(std::vector<EngineRun>&& slices);

}  // namespace qathw::verify
