// The deployed model bundle: what the accelerator loads. docs/bundle.md describes the format.
#pragma once

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qathw/arith.h"
#include "qathw/target/target_spec.h"
#include "qathw/training/network.h"

namespace qathw::training {

class BundleError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct BundleLayer {
  int in = 0, out = 0;
  bool relu = false;
  arith::WeightFormat format = arith::WeightFormat::Ternary;  // the target's
  std::vector<std::uint8_t> packed;        // weight codes, row-major out x in, packed as the SRAM holds them
  std::vector<arith::FixedPoint> requant;  // per output channel
  std::vector<float> scales;               // real weight scales (documentation; engines use integers only)
  float reference = 0;

  int code(int n, int k) const;            // one weight code
  std::vector<std::int8_t> codes() const;  // all codes, unpacked
};

struct Bundle {
  target::TargetSpec target;
  std::string target_hash;
  int rows = 0, cols = 0;  // input image shape; features = rows * cols pixels, uint8
  int classes = 0;
  std::vector<BundleLayer> layers;
  nlohmann::json training;  // provenance: settings and accuracies
};

Bundle make_bundle(const Mlp& net, const target::TargetSpec& target, int rows, int cols, nlohmann::json training);

// Writes directory `path` (manifest.json, weights.bin) atomically: it appears whole or not at all.
void save_bundle(const std::filesystem::path& path, const Bundle& bundle);

// Loads and checks a bundle: format version, the embedded target's hash, every layer's shape and
// CRC-32, valid codes. With `expected`, the bundle must have been built for that target.
Bundle load_bundle(const std::filesystem::path& path, const target::TargetSpec* expected = nullptr);

}  // namespace qathw::training
