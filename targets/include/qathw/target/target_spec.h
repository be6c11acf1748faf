// A hardware target: the single source of every accelerator parameter, read from TOML.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "qathw/arith/core.h"

namespace qathw::target {

struct ArrayGeometry {
  int rows = 0;   // output channels computed in parallel (one adder tree each)
  int lanes = 0;  // activations consumed per row per cycle (adder-tree width)
};

struct Memory {
  int weight_sram_kib = 0;
  int activation_sram_kib = 0;
  // The part of the activation SRAM reserved for a transformer's KV caches (0: none reserved,
  // the caches take what the model needs).
  int kv_cache_kib = 0;
};

// Energy per event in picojoules, with the reference the figures come from.
struct Energy {
  std::string source;
  double add_pj_per_bit = 0;
  double sram_read_pj_per_bit = 0;
  double sram_write_pj_per_bit = 0;
  double register_pj_per_bit = 0;
};

struct TargetSpec {
  std::string name;
  std::string description;
  arith::Format format;
  ArrayGeometry array;
  // The attention's multiply-accumulate unit ([vector_unit], optional: arith's defaults).
  arith::VectorUnit vector_unit;
  Memory memory;
  double clock_mhz = 0;
  Energy energy;
  std::string origin;  // the file it was read from, or "built-in:<name>"
};

// A target that cannot be read or is invalid. The message names the file and the field.
class TargetError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Parses and validates TOML text; `origin` names the source in error messages.
TargetSpec parse_target(std::string_view toml_text, const std::string& origin);
TargetSpec load_target_file(const std::filesystem::path& path);

std::vector<std::string> builtin_names();
TargetSpec builtin_target(std::string_view name);
// A built-in name, or a path to a TOML file (anything containing '/' or ending in ".toml").
TargetSpec resolve_target(const std::string& name_or_path);

// The resolved spec with every field, as written by `qat-hw targets show`.
nlohmann::json to_json(const TargetSpec& spec);
// The inverse, validated like a TOML file (keys "hash" and "origin" are ignored).
TargetSpec target_from_json(const nlohmann::json& json, const std::string& origin);
// Stable 64-bit FNV-1a hash (16 hex digits) of every field that describes the hardware: all but
// name, description and the energy citation. Independent of field order and formatting, and of
// whether a default vector unit is written out (a target without [vector_unit] hashes as before).
std::string content_hash(const TargetSpec& spec);

std::string_view to_string(arith::WeightFormat v);
std::string_view to_string(arith::ActQuantizer v);
std::string_view to_string(arith::Rounding v);
std::string_view to_string(arith::Overflow v);

}  // namespace qathw::target
