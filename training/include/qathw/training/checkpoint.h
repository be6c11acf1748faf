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

// What a checkpoint must hold to resume a run: the run's network (each layer's in, out and relu)
// and its schedule. A default-constructed one checks the file's own consistency only.
struct CheckpointExpectation {
  const Mlp* net = nullptr;   // the freshly initialised network of the run
  int epochs = 0;             // epochs of the phase: epochs_done lies in [1, epochs]
  long steps_per_epoch = 0;   // step = epochs_done x steps_per_epoch
};

// Empty when the file does not exist; throws std::runtime_error naming the file (and the header
// field) when it is corrupt, does not fit `expect`, or belongs to another run (different
// fingerprint).
std::optional<Checkpoint> load_checkpoint(const std::filesystem::path& path, const std::string& fingerprint,
                                          const CheckpointExpectation& expect = {});

}  // namespace qathw::training
