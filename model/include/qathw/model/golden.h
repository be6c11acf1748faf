// Golden vectors: the integers a bundle computes, written for users' own testbenches (cocotb,
// UVM): per op one NumPy .npy file (int32, shape [samples, tokens, features]) and one
// $readmemh file (one 32-bit two's-complement word per line, sample after sample, row-major),
// the input likewise (uint8, 8-bit words), and index.json naming each. docs/bundle.md describes it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "qathw/model/bundle.h"

namespace qathw::model {

// Writes directory `dir` atomically (whole or not at all) from the engine's outputs of `samples`
// inputs (`inputs` holds them back to back, the input tensor's size each).
void write_golden_vectors(const std::filesystem::path& dir, const Bundle& bundle, const std::uint8_t* inputs,
                          const std::vector<OpOutputs>& outputs, const std::string& bundle_path);

// A .npy array as written above: its shape and its elements widened to int64.
struct NpyArray {
  std::vector<std::size_t> shape;
  std::vector<std::int64_t> values;
};
NpyArray read_npy(const std::filesystem::path& path);  // '<i4' or '|u1', C order; throws BundleError

// A $readmemh file's words as signed values of `bits` bits.
std::vector<std::int64_t> read_memh(const std::filesystem::path& path, int bits);

}  // namespace qathw::model
