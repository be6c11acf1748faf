// qat-hw infer MODEL --engine int|cuda: runs a deployed bundle on a data set's test split, with
// the integer engine or its CUDA counterpart (packed-weight kernels, bit-exact with it); with
// --dump DIR, writes every op's output integers (golden vectors) of the samples run.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>

#include "commands.h"
#include "model_inputs.h"
#include "option_checks.h"
#include "qathw/kernels/device.h"
#include "qathw/kernels/cuda_engine.h"
#include "qathw/model/golden.h"
#include "qathw/model/int_engine.h"
#include "qathw/training/idx.h"
#include "qathw/training/network.h"
#include "qathw/util/atomic_file.h"

namespace qathw::cli {
namespace {

struct InferOptions {
  std::string model;
  std::string engine = "int";
  std::string data = training::kDefaultDataDir;
  std::string target;
  std::string json;
  std::string dump;
  long samples = 0;
};

// Golden vectors of samples without --samples: enough for a testbench, small enough to read.
constexpr long kDefaultDumpSamples = 100;

int run_infer(const InferOptions& o) {
  if (o.engine == "cuda") {
    const kernels::DeviceChoice device = kernels::choose_device(kernels::DeviceRequest::Cuda, kernels::probe_cuda());
    if (device.error) {
      std::cerr << "qat-hw: --engine cuda: " << device.message.substr(device.message.find(": ") + 2) << "\n";
      return kExitBadInput;
    }
    std::cerr << "infer: " << device.message << "\n";
  }
  const ModelInputs in = load_model_inputs(o.model, o.target, o.data, o.samples);
  const model::Bundle& bundle = in.bundle;
  const training::Dataset& test = in.test;
  const std::size_t count =
      o.samples == 0 && !o.dump.empty() ? std::min<std::size_t>(kDefaultDumpSamples, in.count) : in.count;
  std::vector<std::int32_t> out;
  double seconds = 0;
  if (o.engine == "cuda") {
    const kernels::CudaEngine engine(bundle);  // weights uploaded before the clock starts
    const auto t0 = std::chrono::steady_clock::now();
    out = engine.run_batch(test.pixels.data(), count);
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  } else {
    const auto t0 = std::chrono::steady_clock::now();
    out = model::IntEngine(bundle).run_batch(test.pixels.data(), count);
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  if (!o.dump.empty()) {
    // The integer engine's outputs: the reference every engine (and a user's testbench) meets.
    model::write_golden_vectors(o.dump, bundle, test.pixels.data(), model::IntEngine(bundle).run_all(test.pixels.data(), count),
                                o.model);
    std::cerr << "infer: golden vectors of " << count << " samples, every op, written to " << o.dump << "\n";
  }
  long correct = 0;
  for (std::size_t i = 0; i < count; ++i)
    if (training::argmax(out.data() + i * bundle.classes, bundle.classes) == test.labels[i]) ++correct;
  const double accuracy = static_cast<double>(correct) / static_cast<double>(count);
  char line[160];
  std::snprintf(line, sizeof line, "engine %s: %zu images, accuracy %.2f%%, %.0f images/s\n", o.engine.c_str(), count,
                100.0 * accuracy, count / seconds);
  std::cout << line;
  if (!o.json.empty()) {
    const nlohmann::json j = {{"engine", o.engine},   {"model", o.model},       {"target", bundle.target.name},
                              {"target_hash", bundle.target_hash}, {"samples", count}, {"accuracy", accuracy},
                              {"images_per_s", count / seconds}};
    util::write_file_atomic(o.json, j.dump(2) + "\n");
  }
  return kExitOk;
}

}  // namespace

void add_infer_command(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<InferOptions>();
  auto* cmd = app.add_subcommand("infer", "Run a deployed bundle on the test split and report accuracy");
  cmd->add_option("model", o->model, "Bundle directory (model.qhw)")->required();
  cmd->add_option("--engine", o->engine, "Engine: int (integer engine), cuda (packed-weight GPU kernels)")
      ->capture_default_str()
      ->check(CLI::IsMember({"int", "cuda"}));
  cmd->add_option("--data", o->data, "Folder with MNIST-style IDX files")->capture_default_str()->check(NonEmptyPath);
  cmd->add_option("--target", o->target, "Require the bundle to be built for this target")->check(NonEmptyTarget);
  cmd->add_option("--samples", o->samples, "Use the first N test images (default all)")->check(CLI::Range(1L, 1L << 40));
  cmd->add_option("--json", o->json, "Write the result as JSON to this file")->check(NonEmptyPath);
  cmd->add_option("--dump", o->dump,
                  "Write every op's output integers (integer engine) as .npy and $readmemh files with index.json to "
                  "this folder (" + std::to_string(kDefaultDumpSamples) + " samples unless --samples)")->check(NonEmptyPath);
  cmd->callback([o, &exit_code] { exit_code = run_infer(*o); });
}

}  // namespace qathw::cli
