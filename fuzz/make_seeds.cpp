// Writes the seeds of fuzz/seeds/ that no test data provides: version-2 bundles and training
// checkpoints. Each target is trained with the settings of `qat-hw train --data tests/data/tiny-idx
// --hidden 4 --epochs 1 --batch 16 --no-fp32 --target T`; the checkpoint's run fingerprint is
// replaced by "fuzz", the one checkpoint_fuzzer loads with.
// Usage: make_fuzz_seeds TINY_IDX_DIR OUT_DIR
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>

#include "qathw/model/bundle.h"
#include "qathw/target/target_spec.h"
#include "qathw/training/checkpoint.h"
#include "qathw/training/export.h"
#include "qathw/training/trainer.h"

using namespace qathw;

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: make_fuzz_seeds TINY_IDX_DIR OUT_DIR\n";
    return 2;
  }
  const std::filesystem::path data = argv[1], out = argv[2];
  const training::Dataset train = training::load_split(data, training::Split::Train);
  const training::Dataset test = training::load_split(data, training::Split::Test, train.classes);
  training::TrainConfig config;
  config.hidden = {4};
  config.epochs = 1;
  config.batch = 16;
  config.train_fp32 = false;
  config.threads = 1;
  for (const char* name : {"ternary-asic", "int4-fpga"}) {
    const target::TargetSpec spec = target::builtin_target(name);
    const std::filesystem::path work = out / (std::string("work-") + name);
    const training::TrainResult r = training::train(spec, config, train, test, work, false, {});
    const nlohmann::json provenance = {{"config", training::to_json(config)}, {"device", "cpu"},
                                       {"qat_test_accuracy", r.qat_result.test_accuracy}};
    model::save_bundle(out / (std::string("bundle-v2-") + name),
                       training::make_bundle(r.qat, spec, static_cast<int>(train.rows), static_cast<int>(train.cols),
                                             provenance));
    // The trainer's fingerprint, from the checkpoint's JSON header (after the magic and its length).
    std::ifstream in(work / "qat.ckpt", std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::uint64_t length = 0;
    std::memcpy(&length, bytes.data() + 8, 8);
    const std::string fingerprint = nlohmann::json::parse(bytes.substr(16, length)).at("fingerprint");
    training::Checkpoint c = *training::load_checkpoint(work / "qat.ckpt", fingerprint);
    c.fingerprint = "fuzz";
    std::filesystem::create_directories(out / "checkpoint");
    training::save_checkpoint(out / "checkpoint" / (std::string(name) + ".ckpt"), c);
    std::filesystem::remove_all(work);
  }
  return 0;
}
