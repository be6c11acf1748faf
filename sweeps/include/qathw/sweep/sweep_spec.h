// Design-space sweep specs: a base target plus axes (target fields with lists or ranges of
// values), training settings and the verification sample count. docs/sweep.md describes them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qathw/target/target_spec.h"

namespace qathw::sweep {

// The one axis that is not a target field: the network each point trains.
inline constexpr const char* kModelAxis = "training.model";

struct Axis {
  std::string field;                 // dotted target field, e.g. "array.rows", or kModelAxis
  std::vector<nlohmann::json> values;
};

struct TrainingSettings {
  std::string data;                   // as written in the spec (part of every point's hash)
  std::filesystem::path data_dir;     // where it is: a relative `data` is relative to the spec file
  std::vector<int> hidden = {256, 256};
  std::string model;                  // a built-in model name or a .toml path (relative to the spec);
                                      // empty: the MLP of `hidden`
  int epochs = 5;
  std::uint64_t seed = 1;
};

struct SweepSpec {
  std::string origin;  // the spec file
  std::filesystem::path base_dir;  // its folder: relative paths in it are relative to this
  target::TargetSpec base;
  std::vector<Axis> axes;
  TrainingSettings training;
  long verify_samples = 1000;
  // synthesis.flatten: false (the default) synthesizes each distinct module once and counts it
  // per instance (rtl::SynthSettings::flatten), several times faster than the flattened netlist.
  bool synth_flatten = false;
};

// One design point: the base target with one value of every axis.
struct Point {
  target::TargetSpec target;
  nlohmann::json overrides;  // {"array.rows": 8, ...}
  std::string hash;          // stable: the target's content hash, the training and synthesis settings
  std::string training_key;  // points with equal keys can share one training run
  std::string model;         // the model file it trains (a built-in name or a path); empty: the MLP
};

// Parses and validates a spec; errors (std::runtime_error) name the file and the field.
SweepSpec load_sweep(const std::filesystem::path& path);
SweepSpec parse_sweep(std::string_view toml_text, const std::string& origin,
                      const std::filesystem::path& base_dir);

// Every point of the cross product of the axes, in a stable order. Each point's target is
// validated like a target file; an invalid combination is an error naming the point.
std::vector<Point> expand(const SweepSpec& spec);

}  // namespace qathw::sweep
