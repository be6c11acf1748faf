// IDX files (the MNIST family format), gzip-compressed or plain, and labelled image data sets.
#pragma once

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace qathw::training {

// A data file that is missing, truncated or inconsistent. The message names the file.
class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An IDX array of unsigned bytes: dims (e.g. {count, rows, cols}) and the row-major values.
struct IdxArray {
  std::vector<std::uint32_t> dims;
  std::vector<std::uint8_t> values;
};

// Reads an IDX file of type unsigned byte (0x08); gzip is detected by its magic number.
IdxArray read_idx(const std::filesystem::path& path);

// Images with labels; each image is `features` bytes (rows x cols pixels), labels < classes.
struct Dataset {
  std::size_t count = 0;
  std::size_t rows = 0, cols = 0;
  std::size_t features = 0;
  int classes = 0;
  std::vector<std::uint8_t> pixels;  // count x features
  std::vector<std::uint8_t> labels;  // count
  std::string source;                // the images file
};

enum class Split { Train, Test };

// Loads a split from a folder holding {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
// (the MNIST naming). Image size comes from the files; classes = largest label + 1 over the
// training labels, so train and test agree (pass `classes` > 0 to impose it).
Dataset load_split(const std::filesystem::path& dir, Split split, int classes = 0);

// Where Debian's dataset-fashion-mnist package installs Fashion-MNIST.
inline const char* const kDefaultDataDir = "/usr/share/datasets/fashion-mnist";

}  // namespace qathw::training
