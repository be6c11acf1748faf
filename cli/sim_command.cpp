// qat-hw sim MODEL: the SystemC model on the test split: accuracy, cycles, utilisation, traffic,
// energy and simulation speed; with --check, every layer's outputs against the integer engine.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>

#include "commands.h"
#include "engine_workers.h"
#include "model_inputs.h"
#include "option_checks.h"
#include "qathw/sim/systemc_engine.h"
#include "qathw/training/idx.h"
#include "qathw/training/network.h"
#include "qathw/util/atomic_file.h"
#include "qathw/util/timing.h"
#include "qathw/verify/compare.h"
#include "qathw/verify/engine.h"

namespace qathw::cli {
namespace {

struct SimOptions {
  std::string model;
  std::string data = training::kDefaultDataDir;
  std::string target;
  std::string json;
  long samples = 0;
  bool check = false;
  int jobs = 0;  // 0: the usable CPUs
};

int run_sim(const SimOptions& o) {
  const ModelInputs in = load_model_inputs(o.model, o.target, o.data, o.samples);
  const model::Bundle& bundle = in.bundle;
  const training::Dataset& test = in.test;
  const std::size_t count = in.count;
  if (const auto why = verify::find_engine("systemc")->unsupported(bundle))
    throw std::invalid_argument(o.model + ": the SystemC model cannot run it: " + *why);
  const model::AcceleratorLowering lowering = model::accelerator_layers(bundle.graph);
  // From 400 images (or with --jobs) the samples are shared among worker processes, each running
  // the model on its slice; the counts of an inference depend on the shapes only, so this process
  // takes them from one sample.
  const WorkerPlan plan = plan_workers(o.jobs, count);
  const bool workers = plan.workers;
  const auto t0 = std::chrono::steady_clock::now();
  sim::SimRun run;
  std::vector<model::OpOutputs> int_outputs;
  if (workers) {
    run = sim::run_systemc(bundle, test.pixels.data(), 1, false);
    std::vector<std::string> failed, names = {"systemc"};
    if (o.check) names.push_back("int");
    auto runs = run_engines_in_workers(o.model, o.data, names, in, plan.jobs, plan.smallest, failed);
    if (!failed.empty()) throw std::runtime_error(failed.front());
    run.outputs.clear();
    for (const model::OpOutputs& ops : runs["systemc"].outputs)
      run.outputs.push_back(model::layer_outputs(lowering.layers, ops));
    run.stats.assign(count, run.stats.front());
    int_outputs = std::move(runs["int"].outputs);
  } else {
    run = sim::run_systemc(bundle, test.pixels.data(), count, o.check);
  }
  run.wall_seconds = util::seconds_since(t0);

  long correct = 0;
  sim::LayerStats total;
  std::vector<sim::LayerStats> per_layer(lowering.layers.size());
  for (std::size_t i = 0; i < count; ++i) {
    const std::vector<std::int32_t>& logits = run.outputs[i].back();
    if (training::argmax(logits.data(), bundle.classes) == test.labels[i]) ++correct;
    total += run.stats[i].total;
    for (std::size_t l = 0; l < per_layer.size(); ++l) per_layer[l] += run.stats[i].layers[l];
  }
  const double n = static_cast<double>(count);
  const double accuracy = correct / n;
  const double cycles = static_cast<double>(total.cycles) / n;
  const double utilization = static_cast<double>(total.macs) / static_cast<double>(total.mac_slots);
  const double energy_nj = sim::energy_pj(total, bundle.target) / n / 1000.0;
  const double us = cycles / bundle.target.clock_mhz;

  // --check: every layer of every sample against the integer engine.
  verify::Comparison check;
  if (o.check) {
    std::vector<model::OpOutputs> systemc;
    for (auto& o : run.outputs) systemc.push_back(model::op_outputs(bundle.graph, lowering.layers, std::move(o)));
    if (!workers) int_outputs = verify::find_engine("int")->run(bundle, test.pixels.data(), count).outputs;
    check = verify::compare(bundle.graph, "int", int_outputs, "systemc", systemc);
  }

  char line[256];
  std::printf("systemc: %zu images of %s on target %s (%s)\n", count, o.model.c_str(), bundle.target.name.c_str(),
              bundle.target_hash.c_str());
  std::printf("  accuracy            %.2f%%\n", 100.0 * accuracy);
  std::printf("  cycles/inference    %.0f (%.2f us at %.0f MHz)\n", cycles, us, bundle.target.clock_mhz);
  std::printf("  PE utilisation      %.1f%%\n", 100.0 * utilization);
  std::printf("  energy/inference    %.2f nJ\n", energy_nj);
  for (std::size_t l = 0; l < per_layer.size(); ++l) {
    const sim::LayerStats& s = per_layer[l];
    const model::AcceleratorLayer& layer = lowering.layers[l];
    // Pools and adds run beside the array: no MAC slots, no utilisation.
    char use[16] = "     -";
    if (s.mac_slots)
      std::snprintf(use, sizeof use, "%5.1f%%", 100.0 * static_cast<double>(s.macs) / static_cast<double>(s.mac_slots));
    const std::string name = bundle.graph.ops[layer.linear_op].name + " (" + model::to_string(layer.kind) + ")";
    std::snprintf(line, sizeof line, "  layer %zu %-30s %6d x %-6d  %9.0f cycles  utilisation %s  %8.2f nJ\n", l,
                  name.c_str(), layer.in, layer.out, s.cycles / n, use, sim::energy_pj(s, bundle.target) / n / 1000.0);
    std::cout << line;
  }
  std::printf("  simulation speed    %.0f images/s, %.1f M cycles/s\n", n / run.wall_seconds,
              static_cast<double>(total.cycles) / run.wall_seconds / 1e6);
  if (o.check) {
    if (!check.first)
      std::printf("  check vs int engine: every layer of %zu images identical\n", count);
    else
      std::printf("  check vs int engine: %zu of %zu images differ; first: %s\n", check.mismatching_samples, count,
                  verify::describe(*check.first).c_str());
  }
  std::fflush(stdout);

  if (!o.json.empty()) {
    nlohmann::json j = {{"model", o.model},
                        {"target", bundle.target.name},
                        {"target_hash", bundle.target_hash},
                        {"samples", count},
                        {"accuracy", accuracy},
                        {"cycles_per_inference", cycles},
                        {"latency_us", us},
                        {"utilization", utilization},
                        {"energy_nj_per_inference", energy_nj},
                        {"sim_images_per_s", n / run.wall_seconds},
                        {"sim_cycles_per_s", static_cast<double>(total.cycles) / run.wall_seconds},
                        {"per_inference", sim::to_json(run.stats.front().total)},
                        {"layers", nlohmann::json::array()}};
    // The counts depend on the shapes only, so every inference has the same; the first stands for all.
    for (std::size_t l = 0; l < run.stats.front().layers.size(); ++l) {
      nlohmann::json layer = sim::to_json(run.stats.front().layers[l]);
      layer["op"] = bundle.graph.ops[lowering.layers[l].linear_op].name;
      layer["kind"] = model::to_string(lowering.layers[l].kind);
      j["layers"].push_back(std::move(layer));
    }
    if (o.check) j["check"] = verify::to_json(check);
    util::write_file_atomic(o.json, j.dump(2) + "\n");
  }
  return check.first ? kExitMismatch : kExitOk;
}

}  // namespace

void add_sim_command(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<SimOptions>();
  auto* cmd = app.add_subcommand("sim", "Run a bundle on the SystemC model: cycles, utilisation, traffic, energy");
  cmd->add_option("model", o->model, "Bundle directory (model.qhw)")->required();
  cmd->add_option("--data", o->data, "Folder with MNIST-style IDX files")->capture_default_str()->check(NonEmptyPath);
  cmd->add_option("--target", o->target, "Require the bundle to be built for this target")->check(NonEmptyTarget);
  cmd->add_option("--samples", o->samples, "Use the first N test images (default all)")->check(CLI::Range(1L, 1L << 40));
  cmd->add_option("--json", o->json, "Write the results as JSON to this file")->check(NonEmptyPath);
  cmd->add_option("--jobs", o->jobs, "Worker processes at a time (default: the usable CPUs)")->check(CLI::Range(1, 1024));
  cmd->add_flag("--check", o->check, "Compare every layer's outputs with the integer engine (exit 1 on a difference)");
  cmd->callback([o, &exit_code] { exit_code = run_sim(*o); });
}

}  // namespace qathw::cli
