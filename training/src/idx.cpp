#include "qathw/training/idx.h"

#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <optional>

#include "qathw/util/atomic_file.h"

namespace qathw::training {
namespace {

namespace fs = std::filesystem;

std::uint32_t big_endian32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}

// Most values an IDX file may declare (read_idx refuses more).
constexpr std::size_t kMaxIdxValues = std::size_t{1} << 34;

// What the first bytes of an IDX file declare: the header's length and the number of values after
// it. Unknown (nullopt) while too few bytes are there to tell; `valid` false when the header is
// wrong, which read_idx reports from the bytes read so far.
struct Declared {
  bool valid = false;
  std::size_t header = 0;
  std::size_t values = 0;
};

std::optional<Declared> declared_by(const std::vector<std::uint8_t>& b) {
  if (b.size() < 4) return std::nullopt;
  if (b[0] != 0 || b[1] != 0 || b[2] != 0x08 || b[3] < 1 || b[3] > 4) return Declared{};
  Declared d;
  d.header = 4 + 4 * std::size_t{b[3]};
  if (b.size() < d.header) return std::nullopt;
  d.values = 1;
  for (std::size_t i = 0; i < b[3]; ++i) {
    const std::uint32_t dim = big_endian32(&b[4 + 4 * i]);
    if (dim == 0) return Declared{};
    d.values *= dim;
    if (d.values > kMaxIdxValues) return Declared{};
  }
  d.valid = true;
  return d;
}

// The file's bytes, inflated when it starts with the gzip magic number, read no further than its
// IDX header declares: a file with more (a small gzip stream that inflates to gigabytes) is
// refused as soon as it passes that size, and reading stops early at a header read_idx refuses.
// With header_only, reading stops once the header is read.
std::vector<std::uint8_t> read_bytes(const fs::path& path, bool header_only = false) {
  int fd = -1;
  try {
    fd = util::open_regular_file(path);
  } catch (const util::IoError& e) {
    throw DataError(e.what());
  }
  struct stat st {};
  std::array<unsigned char, 2> magic{};
  if (::fstat(fd, &st) != 0 || ::pread(fd, magic.data(), magic.size(), 0) < 0) {
    ::close(fd);
    throw DataError(path.string() + ": read error");
  }
  const bool gzip = st.st_size >= 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  // gzclose closes fd; the plain reader closes it itself.
  std::unique_ptr<gzFile_s, int (*)(gzFile)> gz(gzip ? gzdopen(fd, "rb") : nullptr, gzclose);
  if (gzip && !gz) {
    ::close(fd);
    throw DataError(path.string() + ": cannot open");
  }
  struct PlainCloser {
    int fd;
    ~PlainCloser() {
      if (fd >= 0) ::close(fd);
    }
  } plain_closer{gzip ? -1 : fd};

  std::vector<std::uint8_t> out;
  std::vector<std::uint8_t> chunk(std::size_t{1} << 16);
  for (;;) {
    int n = 0;
    if (gzip) {
      n = gzread(gz.get(), chunk.data(), static_cast<unsigned>(chunk.size()));
      if (n < 0) {
        int err = 0;
        throw DataError(path.string() + ": corrupt gzip data (" + gzerror(gz.get(), &err) + ")");
      }
    } else {
      const ssize_t got = ::read(fd, chunk.data(), chunk.size());
      if (got < 0) {
        if (errno == EINTR) continue;
        throw DataError(path.string() + ": read error (" + std::strerror(errno) + ")");
      }
      n = static_cast<int>(got);
    }
    if (n == 0) break;
    out.insert(out.end(), chunk.begin(), chunk.begin() + n);
    const std::optional<Declared> d = declared_by(out);
    if (!d) continue;
    if (!d->valid || header_only) return out;
    if (out.size() - d->header > d->values) {
      if (!gzip)
        throw DataError(path.string() + ": " + std::to_string(static_cast<std::uint64_t>(st.st_size) - d->header) +
                        " data bytes, header says " + std::to_string(d->values) + " (trailing bytes)");
      throw DataError(path.string() + ": inflates to more than the " + std::to_string(d->values) +
                      " data bytes its header declares (trailing bytes)");
    }
  }
  if (gzip) {
    // gzread returns 0 at a truncated stream's end too; zlib reports it through gzerror.
    int err = 0;
    gzerror(gz.get(), &err);
    if (err != Z_OK && err != Z_STREAM_END) throw DataError(path.string() + ": truncated or corrupt gzip data");
  }
  return out;
}

// The dims of the IDX header at the start of `bytes`, checked; `total` receives their product.
std::vector<std::uint32_t> header_dims(const fs::path& path, const std::vector<std::uint8_t>& bytes,
                                       std::size_t& total) {
  if (bytes.size() < 4) throw DataError(path.string() + ": too short for an IDX header");
  if (bytes[0] != 0 || bytes[1] != 0)
    throw DataError(path.string() + ": not an IDX file (magic number must start with two zero bytes)");
  if (bytes[2] != 0x08) {
    char type[8];
    std::snprintf(type, sizeof type, "0x%02x", bytes[2]);
    throw DataError(path.string() + ": IDX element type " + type + " is not supported (only unsigned bytes, 0x08)");
  }
  const int rank = bytes[3];
  if (rank < 1 || rank > 4) throw DataError(path.string() + ": IDX rank " + std::to_string(rank) + " not in [1, 4]");
  const std::size_t header = 4 + 4 * static_cast<std::size_t>(rank);
  if (bytes.size() < header) throw DataError(path.string() + ": truncated IDX header");
  std::vector<std::uint32_t> dims;
  total = 1;
  for (int i = 0; i < rank; ++i) {
    const std::uint32_t d = big_endian32(&bytes[4 + 4 * i]);
    if (d == 0) throw DataError(path.string() + ": IDX dimension " + std::to_string(i) + " is zero");
    dims.push_back(d);
    total *= d;
    if (total > kMaxIdxValues) throw DataError(path.string() + ": IDX dimensions implausibly large");
  }
  return dims;
}

// The dims an IDX file's header declares, reading no further than the header.
std::vector<std::uint32_t> read_idx_dims(const fs::path& path) {
  std::size_t total = 0;
  return header_dims(path, read_bytes(path, true), total);
}

// The path of `stem` or `stem`.gz in `dir`, if either exists.
std::optional<fs::path> find_optional(const fs::path& dir, const std::string& stem) {
  for (const char* suffix : {".gz", ""}) {
    const fs::path p = dir / (stem + suffix);
    if (fs::exists(p)) return p;
  }
  return std::nullopt;
}

fs::path find_file(const fs::path& dir, const std::string& stem) {
  if (auto p = find_optional(dir, stem)) return *p;
  throw DataError((dir / stem).string() + "[.gz]: not found (expected an MNIST-style IDX data set in " +
                  dir.string() + ")");
}

// Most rows and most columns of an image: the bundle's input limit (docs/bundle.md, input.rows).
constexpr std::uint32_t kMaxImageSide = 8192;

}  // namespace

IdxArray read_idx(const fs::path& path) {
  std::vector<std::uint8_t> bytes;
  try {
    bytes = read_bytes(path);
  } catch (const std::bad_alloc&) {
    throw DataError(path.string() + ": out of memory while reading it");
  }
  std::size_t total = 0;
  IdxArray a;
  a.dims = header_dims(path, bytes, total);
  const std::size_t header = 4 + 4 * a.dims.size();
  if (bytes.size() - header != total)
    throw DataError(path.string() + ": " + std::to_string(bytes.size() - header) + " data bytes, header says " +
                    std::to_string(total) + (bytes.size() - header < total ? " (truncated)" : " (trailing bytes)"));
  a.values.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return a;
}

Dataset load_split(const fs::path& dir, Split split, int classes) {
  if (!fs::is_directory(dir))
    throw DataError(dir.string() + (fs::exists(dir) ? ": not a folder (the data set is a folder of IDX files)"
                                                    : ": data folder not found"));
  const std::string prefix = split == Split::Train ? "train" : "t10k";
  const fs::path images_path = find_file(dir, prefix + "-images-idx3-ubyte");
  const fs::path labels_path = find_file(dir, prefix + "-labels-idx1-ubyte");
  // Image sides beyond a bundle's input are refused from the header, before the data is read.
  const std::vector<std::uint32_t> declared = read_idx_dims(images_path);
  if (declared.size() == 3 && (declared[1] > kMaxImageSide || declared[2] > kMaxImageSide))
    throw DataError(images_path.string() + ": images of " + std::to_string(declared[1]) + "x" +
                    std::to_string(declared[2]) + " pixels; rows and cols must each be in [1, " +
                    std::to_string(kMaxImageSide) + "]");
  IdxArray images = read_idx(images_path);
  IdxArray labels = read_idx(labels_path);
  if (images.dims.size() != 3)
    throw DataError(images_path.string() + ": images must have 3 dimensions (count, rows, cols), found " +
                    std::to_string(images.dims.size()));
  if (labels.dims.size() != 1)
    throw DataError(labels_path.string() + ": labels must have 1 dimension, found " +
                    std::to_string(labels.dims.size()));
  if (labels.dims[0] != images.dims[0])
    throw DataError(labels_path.string() + ": " + std::to_string(labels.dims[0]) + " labels for " +
                    std::to_string(images.dims[0]) + " images in " + images_path.string());
  if (split == Split::Test) {
    // A model trained on the training images reads test images of the same shape only.
    if (const auto train_images = find_optional(dir, "train-images-idx3-ubyte")) {
      const std::vector<std::uint32_t> train = read_idx_dims(*train_images);
      if (train.size() == 3 && (train[1] != images.dims[1] || train[2] != images.dims[2]))
        throw DataError(images_path.string() + ": test images are " + std::to_string(images.dims[1]) + "x" +
                        std::to_string(images.dims[2]) + " (rows x cols), the training images in " +
                        train_images->string() + " are " + std::to_string(train[1]) + "x" +
                        std::to_string(train[2]));
    }
  }
  Dataset d;
  d.count = images.dims[0];
  d.rows = images.dims[1];
  d.cols = images.dims[2];
  d.features = d.rows * d.cols;
  d.pixels = std::move(images.values);
  d.labels = std::move(labels.values);
  d.source = images_path.string();
  const int largest = *std::max_element(d.labels.begin(), d.labels.end());
  if (classes <= 0) {
    // The class count is a property of the data set: take it from the training labels.
    const std::vector<std::uint8_t> train_labels =
        split == Split::Train ? d.labels : read_idx(find_file(dir, "train-labels-idx1-ubyte")).values;
    classes = *std::max_element(train_labels.begin(), train_labels.end()) + 1;
  }
  if (largest >= classes)
    throw DataError(labels_path.string() + ": label " + std::to_string(largest) + " outside the " +
                    std::to_string(classes) + " classes of the training set");
  if (classes < 2) throw DataError(labels_path.string() + ": fewer than 2 classes");
  d.classes = classes;
  return d;
}

}  // namespace qathw::training
