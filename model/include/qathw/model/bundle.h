// The deployed model bundle: the op graph, the target it was built for, and provenance, as a
// directory (manifest.json, weights.bin). docs/bundle.md describes the format.
#pragma once

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "qathw/model/graph.h"
#include "qathw/target/target_spec.h"

namespace qathw::model {

class BundleError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr int kBundleVersion = 2;  // written; version 1 (a chain of layers) still loads

struct Bundle {
  target::TargetSpec target;
  std::string target_hash;
  int rows = 0, cols = 0;  // input image shape: the input tensor holds rows * cols uint8 pixels
  int classes = 0;         // features of the output tensor
  Graph graph;
  nlohmann::json training;  // provenance: settings and accuracies
  int loaded_version = kBundleVersion;

  std::size_t features() const { return static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols); }
};

// Writes directory `path` (manifest.json, weights.bin) atomically: it appears whole or not at all.
void save_bundle(const std::filesystem::path& path, const Bundle& bundle);

// Loads and checks a bundle: format version, the embedded target's hash, the graph (validate()),
// every weight block's CRC-32. With `expected`, the bundle must have been built for that target.
Bundle load_bundle(const std::filesystem::path& path, const target::TargetSpec* expected = nullptr);

}  // namespace qathw::model
