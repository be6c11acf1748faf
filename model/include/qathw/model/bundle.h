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

// What a sample of the bundle's input is (the manifest's input.encoding).
enum class InputKind : std::uint8_t {
  Image,     // "uint8 pixels": rows x cols pixels
  Sequence,  // "uint8 byte tokens": `context` byte tokens, the input tensor [context, 1]
};

struct Bundle {
  target::TargetSpec target;
  std::string target_hash;
  InputKind input_kind = InputKind::Image;
  int rows = 0, cols = 0;  // Image: the input tensor holds rows * cols uint8 pixels
  int context = 0;         // Sequence: the tokens of a sample
  int classes = 0;         // features of the output tensor (Sequence: of each token's row)
  Graph graph;
  nlohmann::json training;  // provenance: settings and accuracies
  int loaded_version = kBundleVersion;

  bool sequence() const { return input_kind == InputKind::Sequence; }
  // uint8 integers of one sample: an image's pixels or a sequence's tokens.
  std::size_t features() const {
    return sequence() ? static_cast<std::size_t>(context) : static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
  }
};

// Writes directory `path` (manifest.json, weights.bin) atomically: it appears whole or not at all.
void save_bundle(const std::filesystem::path& path, const Bundle& bundle);

// Loads and checks a bundle: format version, the embedded target's hash, the graph (validate()),
// every weight block's CRC-32. With `expected`, the bundle must have been built for that target.
Bundle load_bundle(const std::filesystem::path& path, const target::TargetSpec* expected = nullptr);

}  // namespace qathw::model
