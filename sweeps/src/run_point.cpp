#include "qathw/sweep/run_point.h"

#include <chrono>
#include <ctime>
#include <iostream>

#include "qathw/profile/profile.h"
#include "qathw/rtl/point_rtl.h"
#include "qathw/rtl/synth.h"
#include "qathw/sim/systemc_engine.h"
#include "qathw/sweep/results_db.h"
#include "qathw/model/int_engine.h"
#include "qathw/model/model_spec.h"
#include "qathw/training/export.h"
#include "qathw/training/idx.h"
#include "qathw/training/recipe.h"
#include "qathw/training/trainer.h"
#include "qathw/util/atomic_file.h"
#include "qathw/util/file_lock.h"
#include "qathw/util/hash.h"
#include "qathw/util/process.h"
#include "qathw/util/timing.h"
#include "qathw/verify/compare.h"
#include "qathw/verify/engine.h"

namespace qathw::sweep {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;


struct SharedTraining {
  fs::path bundle;
  double accuracy = 0;
  double seconds = 0;
  bool shared = false;
};

// The training run of the point's key: made by the first point that needs it (under a lock, so
// concurrent points wait rather than train twice), resumed from its checkpoints after a kill,
// published with one rename.
SharedTraining training_for(const SweepSpec& spec, const Point& p, const PointSettings& s) {
  const fs::path dir = s.work_dir / "train";
  fs::create_directories(dir);
  const util::FileLock lock = util::FileLock::acquire(dir / (p.training_key + ".lock"), nullptr);
  const fs::path done = dir / p.training_key, result = done / "result.json";
  if (fs::exists(result)) {
    const nlohmann::json r = nlohmann::json::parse(util::read_file(result));
    return {done / "model.qhw", r.at("qat_test_accuracy").get<double>(), 0, true};
  }
  const auto t0 = Clock::now();
  const fs::path partial = dir / (p.training_key + ".partial");
  fs::create_directories(partial);
  training::TrainConfig config;
  config.hidden = spec.training.hidden;
  config.epochs = spec.training.epochs;
  config.seed = spec.training.seed;
  config.threads = s.threads;
  config.fit_threads = true;  // the share of the CPUs is an upper bound: other jobs may hold some
  config.train_fp32 = false;
  const training::Dataset train = training::load_split(spec.training.data_dir, training::Split::Train);
  const training::Dataset test = training::load_split(spec.training.data_dir, training::Split::Test, train.classes);
  // A model file's network, with its recipe but for the sweep's epochs; a plain MLP goes to the
  // MLP trainer, as with `qat-hw train --model`.
  std::optional<model::ModelSpec> m;
  if (!p.model.empty()) {
    m = model::resolve_model(p.model, train.classes);
    training::check_model_input(*m, train, spec.training.data);
    training::apply_recipe(m->recipe, config, {"epochs"});
    const auto hidden = training::mlp_hidden_sizes(*m);
    if (hidden && p.target.format.act_quantizer == arith::ActQuantizer::DynamicPerTokenAbsmax) {
      config.hidden = *hidden;
      m.reset();
    }
  }
  nlohmann::json provenance = {{"config", training::to_json(config)}};
  double accuracy = 0;
  model::Bundle bundle;
  if (m) {
    training::ModelTrainResult r = training::train_model(*m, p.target, config, train, test, partial / "checkpoints", true, {});
    accuracy = r.qat_result.test_accuracy;
    provenance["config"].erase("hidden");
    provenance["model"] = model::to_json(*m);
    provenance["qat_test_accuracy"] = accuracy;
    bundle = training::make_bundle(r.qat, p.target, provenance);
  } else {
    const training::TrainResult r = training::train(p.target, config, train, test, partial / "checkpoints", true, {});
    accuracy = r.qat_result.test_accuracy;
    provenance["qat_test_accuracy"] = accuracy;
    bundle = training::make_bundle(r.qat, p.target, static_cast<int>(train.rows), static_cast<int>(train.cols), provenance);
  }
  model::save_bundle(partial / "model.qhw", bundle);
  util::write_file_atomic(partial / "result.json",
                          nlohmann::json{{"qat_test_accuracy", accuracy},
                                         {"training_key", p.training_key}, {"target_hash", target::content_hash(p.target)}}
                                  .dump(2) + "\n");
  fs::rename(partial, done);
  return {done / "model.qhw", accuracy, util::seconds_since(t0), false};
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

nlohmann::json tool_versions(const std::string& version) {
  return {{"qat-hw", version},
          {"verilator", first_line(util::run_program({"verilator", "--version"}).output)},
          {"yosys", first_line(util::run_program({"yosys", "-V"}).output)},
          {"compiler", first_line(util::run_program({"c++", "--version"}).output)}};
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return buf;
}


}  // namespace

fs::path work_dir_for(const fs::path& db) { return fs::path(db.string() + ".work"); }

std::string spec_hash(const SweepSpec& spec, const std::vector<Point>& points) {
  std::string all = "verify " + std::to_string(spec.verify_samples) + "\n";
  for (const Point& p : points) all += p.hash + "\n";
  return util::fnv1a64_hex(all);
}

nlohmann::json run_point(const SweepSpec& spec, const Point& p, std::size_t index, const PointSettings& s) {
  const auto t0 = Clock::now();
  const target::TargetSpec& t = p.target;
  nlohmann::json row = {{"hash", p.hash},
                        {"point_index", index},
                        {"overrides", p.overrides.dump()},
                        {"target_hash", target::content_hash(t)},
                        {"training_key", p.training_key},
                        {"rows", t.array.rows},
                        {"lanes", t.array.lanes},
                        {"weights", std::string(target::to_string(t.format.weights))},
                        {"act_bits", t.format.act_bits},
                        {"acc_bits", t.format.acc_bits},
                        {"overflow", std::string(target::to_string(t.format.overflow))},
                        {"clock_mhz", t.clock_mhz},
                        {"tool_versions", tool_versions(s.version).dump()}};
  std::string stage = "training";
  try {
    const SharedTraining trained = training_for(spec, p, s);
    row["accuracy"] = trained.accuracy;
    row["train_shared"] = trained.shared ? 1 : 0;
    row["train_seconds"] = trained.seconds;
    // The shared bundle was exported for a point of the same training key; this point's target
    // (its geometry, clock, memories) is the one the engines below must run.
    model::Bundle bundle = model::load_bundle(trained.bundle);
    bundle.target = t;
    bundle.target_hash = target::content_hash(t);

    // The engines this point runs must be able to run its bundle (the registry says why not).
    for (const char* name : {"systemc", "rtl"})
      if (const auto why = verify::find_engine(name)->unsupported(bundle))
        throw std::runtime_error(std::string(name) + " cannot run the point's bundle: " + *why);

    stage = "simulation";
    const training::Dataset test = training::load_split(spec.training.data_dir, training::Split::Test, bundle.classes);
    const std::size_t count = std::min<std::size_t>(static_cast<std::size_t>(spec.verify_samples), test.count);
    row["sim_samples"] = count;
    auto t1 = Clock::now();
    sim::SimRun sim = sim::run_systemc(bundle, test.pixels.data(), count, true);
    sim::LayerStats total = sim.stats.front().total;  // the counts depend on the shapes only
    row["cycles"] = total.cycles;
    row["latency_us"] = static_cast<double>(total.cycles) / t.clock_mhz;
    row["utilization"] = static_cast<double>(total.macs) / static_cast<double>(total.mac_slots);
    row["energy_nj"] = sim::energy_pj(total, t) / 1000.0;
    row["sim_seconds"] = util::seconds_since(t1);

    stage = "synthesis";
    t1 = Clock::now();
    rtl::SynthSettings synth;
    synth.quiet = true;
    synth.flatten = spec.synth_flatten;
    if (!s.cache_dir.empty()) synth.cache_dir = s.cache_dir / "synth";
    const nlohmann::json area = rtl::synthesize(t, "generic", synth);
    row["area_cells"] = area.at("cells");
    row["flip_flops"] = area.at("flip_flops");
    row["synth_seconds"] = area.at("cached").get<bool>() ? 0.0 : util::seconds_since(t1);

    stage = "profile";
    const profile::Profile prof = profile::profile_bundle(bundle, test.pixels.data(), count);
    row["observed_acc_bits"] = prof.observed_acc_bits;
    row["provable_acc_bits"] = prof.provable_acc_bits;

    stage = "verification";
    t1 = Clock::now();
    const auto reference = verify::find_engine("int")->run(bundle, test.pixels.data(), count).outputs;
    rtl::RtlBuildSettings build;
    build.quiet = true;
    if (!s.cache_dir.empty()) build.cache_dir = s.cache_dir / "rtl";
    rtl::RtlRun rtl_run = rtl::run_rtl_any(bundle, test.pixels.data(), count, "", build);
    row["verify_seconds"] = util::seconds_since(t1);
    row["verified_engines"] = "int,systemc,rtl";
    const std::vector<model::OpOutputs> systemc_ops = verify::fused_to_ops(bundle, std::move(sim.outputs));
    const std::vector<model::OpOutputs> rtl_ops = verify::fused_to_ops(bundle, std::move(rtl_run.outputs));
    for (const auto& [name, outputs] : {std::pair{"systemc", &systemc_ops}, std::pair{"rtl", &rtl_ops}}) {
      const verify::Comparison c = verify::compare(bundle.graph, "int", reference, name, *outputs);
      if (c.first) {
        row["status"] = kFailed;
        row["mismatch"] = verify::describe(*c.first);
        break;
      }
    }
    if (!row.contains("status")) row["status"] = kDone;
  } catch (const std::exception& e) {
    row["status"] = kError;
    row["error"] = stage + ": " + e.what();
  }
  row["wall_seconds"] = util::seconds_since(t0);
  row["finished_at"] = utc_now();
  return row;
}

}  // namespace qathw::sweep
