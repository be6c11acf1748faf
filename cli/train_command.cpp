// qat-hw train --target T: FP32 twin, PTQ and QAT on a data set, exported as a deployed bundle
// whose integer engine is checked against the trainer's quantized forward on the test set.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>

#include "commands.h"
#include "option_checks.h"
#include "qathw/kernels/device.h"
#include "qathw/target/target_spec.h"
#include "qathw/model/int_engine.h"
#include "qathw/model/model_spec.h"
#include "qathw/training/export.h"
#include "qathw/training/recipe.h"
#include "qathw/training/trainer.h"
#include "qathw/training/transformer_net.h"
#include "qathw/util/atomic_file.h"
#include "qathw/util/cpus.h"
#include "qathw/util/file_lock.h"

namespace qathw::cli {
namespace {

struct TrainOptions {
  std::string target = "ternary-asic";
  std::string model;  // empty: the MLP of --hidden
  std::string data = training::kDefaultDataDir;
  std::string out;
  std::string hidden = "256,256";
  std::string ste = "identity";
  std::string device = "auto";
  std::string threads = "auto";
  std::string calibration = "99.99";
  std::string qat_init = "scratch";
  bool hidden_given = false;
  bool data_given = false;
  long steps_per_epoch = 0;  // 0: the transformer model file's (or 100)
  std::set<std::string> given;  // options set on the command line (a model file's recipe yields to them)
  bool resume = false;
  bool no_fp32 = false;
  training::TrainConfig config;
};

std::vector<int> parse_sizes(const std::string& text) {
  if (text.empty()) throw std::invalid_argument("--hidden: '' is not a list of layer sizes in [1, 65536]");
  std::vector<int> sizes;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    std::size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || v < 1 || v > 65536)
      throw std::invalid_argument("--hidden: '" + item + "' is not a layer size in [1, 65536]");
    sizes.push_back(v);
  }
  return sizes;
}

std::string percent(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", 100.0 * fraction);
  return buf;
}

nlohmann::json phase_json(const training::PhaseResult& r) {
  return {{"test_accuracy", r.test_accuracy}, {"steps_per_s", r.steps_per_s},
          {"epoch_steps_per_s", r.epoch_steps_per_s}, {"steps", r.steps},
          {"train_seconds", r.train_seconds}, {"epochs_resumed", r.epochs_resumed}};
}

// The recipe fields the command line gives (--weight-decay: weight_decay), over a model file's recipe.
std::set<std::string> recipe_fields_given(const TrainOptions& o) {
  std::set<std::string> user_set;
  for (const std::string& option : o.given) {
    std::string field = option.substr(2);
    for (char& c : field)
      if (c == '-') c = '_';
    user_set.insert(field);
  }
  return user_set;
}

// qat-hw train --model bitnet-tiny --data text:PATH: the transformer's FP32 twin, PTQ and QAT on a
// text corpus, reported in bits per byte on the validation split; the QAT network exported as a
// bundle whose integer engine must give the trainer's logits on every validation sequence.
int run_train_text(const TrainOptions& o, const std::optional<training::TransformerSpec>& found,
                   const kernels::DeviceChoice& device) {
  const bool text = o.data.rfind("text:", 0) == 0;
  if (!found)
    throw std::invalid_argument("--data " + o.data + ": a text corpus trains a transformer model (--model bitnet-tiny); " +
                                (o.model.empty() ? std::string("the MLP") : "'" + o.model + "'") +
                                " is an image network");
  if (!text && o.data_given)
    throw std::invalid_argument("--data " + o.data + ": " + found->origin +
                                " is a language model: give a text corpus as --data text:PATH");
  if (o.hidden_given)
    throw std::invalid_argument("--hidden: sets the hidden sizes of the default MLP; with --model, the model file sets them");
  if (device.device == kernels::Device::Cuda && o.device == "cuda")
    throw std::runtime_error("training on CUDA: the transformer trains on the CPU only; use --device cpu");
  if (device.device == kernels::Device::Cuda) std::cerr << "train: device: cpu (the transformer trains on the CPU)\n";
  const training::TransformerSpec& spec_m = *found;
  const target::TargetSpec spec = target::resolve_target(o.target);
  training::TrainConfig config = o.config;
  training::apply_recipe(spec_m.recipe, config, recipe_fields_given(o));
  config.ste_clip = o.ste == "clipped";
  config.train_fp32 = !o.no_fp32;
  config.device = training::TrainDevice::Cpu;
  config.fit_threads = false;  // a fixed count (results never depend on it)
  config.calibration = *calibration_fraction(o.calibration);
  config.threads = o.threads == "auto" ? util::usable_cpus() : std::stoi(o.threads);
  const long steps_per_epoch = o.steps_per_epoch ? o.steps_per_epoch : spec_m.steps_per_epoch.value_or(100);
  const std::string path = text ? o.data.substr(5) : training::kDefaultTextCorpus;
  const training::TextCorpus corpus = training::load_text_corpus(path);

  const std::filesystem::path out =
      o.out.empty() ? std::filesystem::path("runs") / (spec_m.name + "-" + spec.name) : std::filesystem::path(o.out);
  std::filesystem::create_directories(out);
  std::string holder;
  const auto lock = util::FileLock::try_acquire(out / "train.lock", holder);
  if (!lock)
    throw std::runtime_error(out.string() + ": another qat-hw train is writing this folder (" + holder +
                             "); wait for it to end, or choose another --out");
  std::cerr << "train: target " << spec.name << " (" << target::content_hash(spec) << "), model " << spec_m.name
            << ", data text:" << path << ": " << corpus.train.size() << " training / " << corpus.validation.size()
            << " validation bytes (" << corpus.train_entries << " / " << corpus.validation_entries << " entries), "
            << config.epochs << " epochs of " << steps_per_epoch << " steps of " << config.batch << " x "
            << spec_m.context << " tokens, " << config.threads << " threads\n";
  auto progress = [](const training::TextProgress& p) {
    char line[200];
    std::snprintf(line, sizeof line,
                  "%-6s epoch %2d/%-2d  loss %.4f (%.3f bits/byte)  validation %.3f bits/byte (first %zu sequences)  "
                  "%5.2f steps/s  ETA %4.0fs\n",
                  training::phase_name(p.phase), p.epoch, p.epochs, p.loss, p.loss / std::log(2.0), p.validation_bpb,
                  training::kProgressSequences, p.steps_per_s, p.eta_s);
    std::cerr << line << std::flush;
  };
  training::TextTrainResult r =
      training::train_transformer(spec_m, spec, config, steps_per_epoch, corpus, out / "checkpoints", o.resume, progress);
  nlohmann::json cfg = training::to_json(config);
  for (const char* k : {"hidden", "fit_threads", "distill"}) cfg.erase(k);
  cfg["steps_per_epoch"] = steps_per_epoch;
  const auto phase = [](const training::TextPhaseResult& p) {
    return nlohmann::json{{"validation_bits_per_byte", p.validation_bpb}, {"train_loss", p.train_loss},
                          {"steps_per_s", p.steps_per_s}, {"steps", p.steps},
                          {"train_seconds", p.train_seconds}, {"epochs_resumed", p.epochs_resumed}};
  };
  nlohmann::json report = {{"target", spec.name},
                           {"target_hash", target::content_hash(spec)},
                           {"model", training::to_json(spec_m)},
                           {"data", {{"corpus", path}, {"files", corpus.files.size()},
                                     {"train_bytes", corpus.train.size()}, {"validation_bytes", corpus.validation.size()},
                                     {"train_entries", corpus.train_entries},
                                     {"validation_entries", corpus.validation_entries}}},
                           {"config", cfg},
                           {"device", "cpu"}};
  if (r.fp32.ran) {
    report["fp32"] = phase(r.fp32);
    report["ptq"] = {{"validation_bits_per_byte", r.ptq.validation_bpb}};
  }
  report["qat"] = phase(r.qat);

  // The bundle, and its integer engine against the trainer's integers on every validation sequence.
  nlohmann::json provenance = {{"model", training::to_json(spec_m)}, {"config", cfg},
                               {"qat_validation_bits_per_byte", r.qat.validation_bpb}};
  const std::filesystem::path bundle_path = out / "model.qhw";
  model::save_bundle(bundle_path, training::make_bundle(*r.qat_net, spec, provenance));
  const model::Bundle bundle = model::load_bundle(bundle_path, &spec);
  training::SequenceIntegers trained;
  training::bits_per_byte(*r.qat_net, corpus.validation, true, spec, 0, &trained);
  std::cerr << "train: the integer engine on " << trained.sequences << " validation sequences\n";
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<std::int32_t> engine = model::IntEngine(bundle).run_batch(trained.inputs.data(), trained.sequences);
  const double engine_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  long mismatches = 0;
  std::int64_t largest = 0;
  for (std::size_t i = 0; i < engine.size(); ++i) {
    const std::int64_t d = std::llabs(static_cast<std::int64_t>(engine[i]) - trained.logits[i]);
    if (d != 0) ++mismatches;
    largest = std::max(largest, d);
  }
  report["bundle"] = bundle_path.string();
  report["agreement"] = {{"sequences", trained.sequences},
                         {"output_integers", engine.size()},
                         {"mismatches", mismatches},
                         {"largest_difference_lsb", largest},
                         {"int_engine_sequences_per_s", static_cast<double>(trained.sequences) / engine_seconds}};
  util::write_file_atomic(out / "report.json", report.dump(2) + "\n");
  const auto bpb = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4f", v);
    return std::string(buf);
  };
  if (r.fp32.ran) {
    std::cout << "FP32 twin   validation " << bpb(r.fp32.validation_bpb) << " bits/byte\n";
    std::cout << "PTQ         validation " << bpb(r.ptq.validation_bpb) << " bits/byte\n";
  }
  std::cout << "QAT         validation " << bpb(r.qat.validation_bpb) << " bits/byte  (" << std::fixed
            << std::setprecision(2) << r.qat.steps_per_s << " steps/s)\n";
  std::cout << "integer engine vs trainer: " << trained.sequences << " validation sequences, " << mismatches
            << " mismatching logit integers" << (mismatches ? " (largest " + std::to_string(largest) + " LSB)" : std::string())
            << "\n";
  std::cout << "bundle " << bundle_path.string() << ", report " << (out / "report.json").string() << "\n";
  return mismatches == 0 ? kExitOk : kExitMismatch;
}

int run_train(const TrainOptions& o) {
  // The device first: `--device cuda` without one fails before any work.
  const kernels::DeviceChoice device =
      kernels::choose_device(kernels::parse_device_request(o.device), kernels::probe_cuda());
  if (device.error) {
    std::cerr << "qat-hw: " << device.message << "\n";
    return kExitBadInput;
  }
  std::cerr << "train: " << device.message << "\n";
  // A transformer model file, or a text corpus: the language model's run.
  const std::optional<training::TransformerSpec> transformer =
      o.model.empty() ? std::nullopt : training::resolve_transformer(o.model);
  if (transformer || o.data.rfind("text:", 0) == 0) return run_train_text(o, transformer, device);
  if (o.steps_per_epoch) throw std::invalid_argument("--steps-per-epoch: sets a transformer's epochs (text corpora)");
  const target::TargetSpec spec = target::resolve_target(o.target);
  training::TrainConfig config = o.config;
  config.hidden = parse_sizes(o.hidden);
  if (!o.model.empty() && o.hidden_given)
    throw std::invalid_argument("--hidden: sets the hidden sizes of the default MLP; with --model, the model file sets them");
  config.ste_clip = o.ste == "clipped";
  config.train_fp32 = !o.no_fp32;
  config.device = device.device == kernels::Device::Cuda ? training::TrainDevice::Cuda : training::TrainDevice::Cpu;
  config.fit_threads = o.threads == "auto";
  config.calibration = *calibration_fraction(o.calibration);
  config.qat_from_fp32 = o.qat_init == "fp32";
  config.threads = config.fit_threads ? util::usable_cpus() : std::stoi(o.threads);
  const training::Dataset train = training::load_split(o.data, training::Split::Train);
  const training::Dataset test = training::load_split(o.data, training::Split::Test, train.classes);

  // The network: a model file's, trained by the MLP trainer when it is a plain MLP.
  std::optional<model::ModelSpec> model_spec;
  if (!o.model.empty()) {
    model_spec = model::resolve_model(o.model, train.classes);
    // Options on the command line (--weight-decay) are the recipe's fields (weight_decay).
    training::apply_recipe(model_spec->recipe, config, recipe_fields_given(o));
    training::check_model_input(*model_spec, train, o.data);
    const auto hidden = training::mlp_hidden_sizes(*model_spec);
    if (hidden && spec.format.act_quantizer == arith::ActQuantizer::DynamicPerTokenAbsmax) {
      config.hidden = *hidden;
      model_spec.reset();
    }
  }
  // Distillation trains on the CPU only: `--device auto` takes the CPU for it, an explicit
  // `--device cuda` is refused by the trainer. Model files train on the GPU when asked for by
  // name (`--device cuda`); `auto` keeps them on the CPU, the trainer their tests hold the GPU's to.
  if (config.device == training::TrainDevice::Cuda && o.device == "auto" && (model_spec || config.distill)) {
    config.device = training::TrainDevice::Cpu;
    std::cerr << "train: device: cpu (--device auto: "
              << (config.distill ? "distillation trains on the CPU" : "model files train on CUDA with --device cuda")
              << ")\n";
  }
  const std::string device_name = config.device == training::TrainDevice::Cuda ? "cuda" : "cpu";
  const std::string run_name = model_spec ? model_spec->name + "-" + spec.name : spec.name;
  const std::filesystem::path out = o.out.empty() ? std::filesystem::path("runs") / run_name : std::filesystem::path(o.out);
  std::filesystem::create_directories(out);
  // One run per output folder: a second would resume from, and replace, the first one's files.
  std::string holder;
  const auto lock = util::FileLock::try_acquire(out / "train.lock", holder);
  if (!lock)
    throw std::runtime_error(out.string() + ": another qat-hw train is writing this folder (" + holder +
                             "); wait for it to end, or choose another --out");

  std::cerr << "train: target " << spec.name << " (" << target::content_hash(spec) << "), model "
            << (model_spec ? model_spec->name : "mlp " + o.hidden) << ", data " << o.data << ": " << train.count
            << " train / " << test.count << " test images of " << train.rows << "x" << train.cols << ", "
            << train.classes << " classes, " << config.threads << " threads"
            << (config.fit_threads ? " at most (fewer while other processes hold CPUs)" : "") << "\n";

  auto progress = [](const training::EpochProgress& p) {
    char line[200];
    std::snprintf(line, sizeof line,
                  "%-6s epoch %2d/%-2d  loss %.4f  train %6.2f%%  test %6.2f%%  %6.0f steps/s  %d threads  ETA %4.0fs\n",
                  training::phase_name(p.phase), p.epoch, p.epochs, p.loss,
                  100.0 * p.train_accuracy, 100.0 * p.test_accuracy, p.steps_per_s, p.threads, p.eta_s);
    std::cerr << line << std::flush;
  };
  nlohmann::json report = {{"target", spec.name},
                           {"target_hash", target::content_hash(spec)},
                           {"data", {{"dir", o.data}, {"train", train.count}, {"test", test.count},
                                     {"rows", train.rows}, {"cols", train.cols}, {"classes", train.classes}}},
                           {"config", training::to_json(config)},
                           {"device", device_name}};
  if (model_spec) {
    report["config"].erase("hidden");
    report["model"] = model::to_json(*model_spec);
  }
  nlohmann::json provenance = {{"config", report["config"]}, {"device", device_name}};

  // Train, export, and keep the trainer's quantized forward on the test set to hold the deployed
  // bundle's integer engine to.
  training::PhaseResult fp32_result, ptq_result, qat_result, kd_result;
  model::Bundle trained;
  training::QuantizedEval trainer_eval;
  if (model_spec) {
    training::ModelTrainResult r =
        training::train_model(*model_spec, spec, config, train, test, out / "checkpoints", o.resume, progress);
    fp32_result = r.fp32_result;
    ptq_result = r.ptq_result;
    qat_result = r.qat_result;
    kd_result = r.kd_result;
    training::SpecNet& exported = config.distill ? r.kd : r.qat;
    provenance["qat_test_accuracy"] = (config.distill ? kd_result : qat_result).test_accuracy;
    trained = training::make_bundle(exported, spec, provenance);
    trainer_eval = training::evaluate_quantized(exported, spec, test);
  } else {
    const training::TrainResult r = training::train(spec, config, train, test, out / "checkpoints", o.resume, progress);
    fp32_result = r.fp32_result;
    ptq_result = r.ptq_result;
    qat_result = r.qat_result;
    kd_result = r.kd_result;
    const training::Mlp& exported = config.distill ? r.kd : r.qat;
    provenance["qat_test_accuracy"] = (config.distill ? kd_result : qat_result).test_accuracy;
    trained = training::make_bundle(exported, spec, static_cast<int>(train.rows), static_cast<int>(train.cols), provenance);
    trainer_eval = training::evaluate_quantized(exported, spec, test);
  }
  if (fp32_result.ran) {
    report["fp32"] = phase_json(fp32_result);
    report["ptq"] = {{"test_accuracy", ptq_result.test_accuracy}};
  }
  report["qat"] = phase_json(qat_result);
  if (kd_result.ran) report["qat_kd"] = phase_json(kd_result);
  report["exported"] = kd_result.ran ? "qat_kd" : "qat";

  const std::filesystem::path bundle_path = out / "model.qhw";
  model::save_bundle(bundle_path, trained);
  const model::Bundle bundle = model::load_bundle(bundle_path, &spec);
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<std::int32_t> engine = model::IntEngine(bundle).run_batch(test.pixels.data(), test.count);
  const double engine_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  long mismatches = 0;
  std::int64_t largest = 0;
  for (std::size_t i = 0; i < engine.size(); ++i) {
    const std::int64_t d = std::llabs(static_cast<std::int64_t>(engine[i]) - trainer_eval.outputs[i]);
    if (d != 0) ++mismatches;
    largest = std::max(largest, d);
  }
  report["bundle"] = bundle_path.string();
  report["agreement"] = {{"samples", test.count},
                         {"output_integers", engine.size()},
                         {"mismatches", mismatches},
                         {"largest_difference_lsb", largest},
                         {"int_engine_images_per_s", test.count / engine_seconds}};
  util::write_file_atomic(out / "report.json", report.dump(2) + "\n");

  if (fp32_result.ran) {
    std::cout << "FP32 twin   test accuracy " << percent(fp32_result.test_accuracy) << "\n";
    std::cout << "PTQ         test accuracy " << percent(ptq_result.test_accuracy) << "\n";
  }
  std::cout << "QAT         test accuracy " << percent(qat_result.test_accuracy) << "  ("
            << static_cast<long>(qat_result.steps_per_s) << " steps/s)\n";
  if (kd_result.ran)
    std::cout << "QAT+KD      test accuracy " << percent(kd_result.test_accuracy) << "  ("
              << static_cast<long>(kd_result.steps_per_s) << " steps/s; exported)\n";
  std::cout << "integer engine vs trainer: " << test.count << " images, " << mismatches << " mismatching output integers"
            << (mismatches ? " (largest " + std::to_string(largest) + " LSB)" : std::string()) << "\n";
  std::cout << "bundle " << bundle_path.string() << ", report " << (out / "report.json").string() << "\n";
  return mismatches == 0 ? kExitOk : kExitMismatch;
}

}  // namespace

void add_train_command(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<TrainOptions>();
  auto* cmd = app.add_subcommand("train", "Quantization-aware training for a target, exported as a deployed bundle");
  cmd->add_option("--target", o->target, "Built-in target name or .toml file")->capture_default_str()->check(NonEmptyTarget);
  cmd->add_option("--data", o->data,
                  "Folder with MNIST-style IDX files, or text:PATH (a text corpus, for a transformer model)")
      ->capture_default_str()->check(NonEmptyPath);
  cmd->add_option("--steps-per-epoch", o->steps_per_epoch,
                  "Steps of an epoch of a transformer on text (default: the model file's, else 100)")
      ->check(CLI::Range(1L, 1000000L));
  cmd->add_option("--out", o->out, "Output folder (default runs/<target>)")->check(NonEmptyPath);
  cmd->add_option("--model", o->model, "Built-in model name (qat-hw models) or a .toml file (default: the MLP of --hidden)")
      ->check(NonEmptyPath);
  cmd->add_option("--hidden", o->hidden, "Hidden layer sizes of the default MLP, comma separated")->capture_default_str();
  cmd->add_option("--epochs", o->config.epochs, "Epochs of each phase")->capture_default_str()->check(CLI::Range(1, 10000));
  cmd->add_option("--batch", o->config.batch, "Batch size")->capture_default_str()->check(CLI::Range(1, 65536));
  cmd->add_option("--lr", o->config.lr, "Peak learning rate (AdamW)")->capture_default_str()->check(FiniteRange(1e-7, 10.0));
  cmd->add_option("--weight-decay", o->config.weight_decay, "AdamW weight decay in the first half of training")
      ->capture_default_str()->check(FiniteRange(0.0, 10.0));
  cmd->add_option("--warmup-frac", o->config.warmup_frac, "Fraction of steps of linear warm-up")
      ->capture_default_str()->check(FiniteRange(0.0, 1.0));
  cmd->add_option("--seed", o->config.seed, "Random seed (initialisation and sample order)")
      ->capture_default_str()->check(Seed);
  cmd->add_option("--threads", o->threads,
                  "CPU threads: N, or auto (up to the CPUs this process may use, fewer while other processes hold them)")
      ->capture_default_str()->check(ThreadCount);
  cmd->add_option("--ste", o->ste, "Weight straight-through estimator: identity, or clipped (zero where the quantizer clips)")
      ->capture_default_str()->check(CLI::IsMember({"identity", "clipped"}));
  cmd->add_option("--device", o->device, "Where training steps run: auto (a CUDA GPU when present), cpu, cuda")
      ->capture_default_str()->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->add_option("--calibration", o->calibration,
                  "Initial step of static quantizers (model files with residual adds, static targets): minmax, or "
                  "the percentile of input magnitudes it covers")
      ->capture_default_str()->check(Calibration);
  cmd->add_option("--qat-init", o->qat_init,
                  "Where QAT starts: scratch (the seed's initialisation), or fp32 (the FP32 twin's trained weights)")
      ->capture_default_str()->check(CLI::IsMember({"scratch", "fp32"}));
  cmd->add_flag("--distill", o->config.distill,
                "A further QAT run distilled from the FP32 twin (QAT+KD), reported beside QAT and exported");
  cmd->add_option("--distill-temperature", o->config.distill_temperature, "Softmax temperature of distillation")
      ->capture_default_str()->check(FiniteRange(0.1, 100.0));
  cmd->add_option("--distill-weight", o->config.distill_weight,
                  "Weight of the distillation term (the rest: cross-entropy with the labels)")
      ->capture_default_str()->check(FiniteRange(0.0, 1.0));
  cmd->add_flag("--resume", o->resume, "Continue from the checkpoints in the output folder");
  cmd->add_flag("--no-fp32", o->no_fp32, "Skip the FP32 twin (and so PTQ)");
  cmd->callback([o, cmd, &exit_code] {
    o->hidden_given = cmd->count("--hidden") > 0;
    o->data_given = cmd->count("--data") > 0;
    for (const char* option : {"--epochs", "--batch", "--lr", "--weight-decay", "--qat-init"})
      if (cmd->count(option) > 0) o->given.insert(option);
    exit_code = run_train(*o);
  });
}

}  // namespace qathw::cli
