// Training state after an epoch, enough to continue to the same result as an uninterrupted run.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "qathw/training/network.h"

namespace qathw::training {

struct Checkpoint {
  std::string fingerprint;  // the run's settings; a checkpoint resumes only the same run
  int epochs_done = 0;
  long step = 0;
  double train_seconds = 0;
  Mlp net;
  std::vector<std::vector<float>> adam_m, adam_v;
};

// Binary: magic "QATHWCK1", JSON header length and header, each layer's weights and moments
// (float32 little-endian), then a CRC-32 of everything before it. Written atomically.
void save_checkpoint(const std::filesystem::path& path, const Checkpoint& c);

// Empty when the file does not exist; throws std::runtime_error naming the file when it is
// corrupt or belongs to another run (different fingerprint).
std::optional<Checkpoint> load_checkpoint(const std::filesystem::path& path, const std::string& fingerprint);

}  // namespace qathw::training
