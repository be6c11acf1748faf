// IDX files (plain and gzip) and labelled data sets: round trips and every error naming its file.
#include "qathw/training/idx.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "../arith/test_support.h"
#include "../util/address_space_limit.h"
#include "temp_dir.h"

namespace qathw::training {
namespace {

namespace fs = std::filesystem;
using qathw::test::read_binary;
using qathw::test::TempDir;
using qathw::test::write_binary;

// An IDX file's bytes: magic (0, 0, type, rank), big-endian dimensions, then the values.
std::vector<unsigned char> idx_bytes(const std::vector<std::uint32_t>& dims, const std::vector<std::uint8_t>& values,
                                     std::uint8_t type = 0x08) {
  std::vector<unsigned char> b = {0, 0, type, static_cast<unsigned char>(dims.size())};
  for (std::uint32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<unsigned char>(d >> shift));
  b.insert(b.end(), values.begin(), values.end());
  return b;
}

void write_gzip(const fs::path& p, const std::vector<unsigned char>& bytes) {
  gzFile gz = gzopen(p.c_str(), "wb");
  ASSERT_NE(gz, nullptr) << p;
  ASSERT_EQ(gzwrite(gz, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(gz), Z_OK);
}

std::vector<std::uint8_t> random_bytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> u(0, 255);
  std::vector<std::uint8_t> v(n);
  for (auto& x : v) x = static_cast<std::uint8_t>(u(rng));
  return v;
}

// Runs `f`, which must throw DataError whose message names `file` and contains `fragment`.
template <typename F>
void expect_data_error(F&& f, const fs::path& file, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "expected DataError naming " << file;
  } catch (const DataError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(file.string()), std::string::npos) << "message does not name the file: " << msg;
    EXPECT_NE(msg.find(fragment), std::string::npos) << "message lacks '" << fragment << "': " << msg;
  }
}

TEST(ReadIdx, PlainRoundTrip) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  TempDir dir;
  const std::vector<std::uint8_t> values = random_bytes(3 * 5 * 7, seed);
  write_binary(dir / "a.idx", idx_bytes({3, 5, 7}, values));
  const IdxArray a = read_idx(dir / "a.idx");
  EXPECT_EQ(a.dims, (std::vector<std::uint32_t>{3, 5, 7}));
  EXPECT_EQ(a.values, values);
}

TEST(ReadIdx, GzipRoundTripOfEveryRank) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  TempDir dir;
  const std::vector<std::vector<std::uint32_t>> shapes = {{300}, {4, 70}, {9, 8, 10}, {2, 3, 4, 5}};
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    std::size_t n = 1;
    for (auto d : shapes[i]) n *= d;
    const std::vector<std::uint8_t> values = random_bytes(n, seed + i);
    const fs::path p = dir / ("r" + std::to_string(i) + ".gz");
    write_gzip(p, idx_bytes(shapes[i], values));
    ASSERT_EQ(read_binary(p).at(0), 0x1f) << "not written as gzip";
    const IdxArray a = read_idx(p);
    EXPECT_EQ(a.dims, shapes[i]);
    EXPECT_EQ(a.values, values);
  }
}

TEST(ReadIdx, MissingFile) {
  TempDir dir;
  const fs::path p = dir / "nonesuch-idx1-ubyte";
  expect_data_error([&] { read_idx(p); }, p, "cannot open");
}

// A folder where a data file should be (an archive unpacked under the file's name) is a data
// error naming it, like any other unreadable file.
TEST(ReadIdx, DirectoryInsteadOfAFile) {
  TempDir dir;
  fs::create_directories(dir / "train-images-idx3-ubyte");
  try {
    read_idx(dir / "train-images-idx3-ubyte");
    ADD_FAILURE() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find((dir / "train-images-idx3-ubyte").string()), std::string::npos) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a DataError naming the file: " << e.what();
  }
}

TEST(ReadIdx, BadMagic) {
  TempDir dir;
  std::vector<unsigned char> b = idx_bytes({4}, {1, 2, 3, 4});
  b[0] = 0x50;  // e.g. a PNG or text file
  write_binary(dir / "bad-magic", b);
  expect_data_error([&] { read_idx(dir / "bad-magic"); }, dir / "bad-magic", "not an IDX file");
}

TEST(ReadIdx, TooShortForAHeader) {
  TempDir dir;
  write_binary(dir / "short", {0, 0});
  expect_data_error([&] { read_idx(dir / "short"); }, dir / "short", "too short");
}

TEST(ReadIdx, NonByteElementTypeIsRejected) {
  TempDir dir;
  // 0x0D: IDX float32; 4 values of 4 bytes.
  write_binary(dir / "floats", idx_bytes({4}, std::vector<std::uint8_t>(16, 0), 0x0D));
  expect_data_error([&] { read_idx(dir / "floats"); }, dir / "floats", "only unsigned bytes");
}

TEST(ReadIdx, ElementTypeIsReportedInHex) {
  // The message says "element type 0x..": the digits after 0x must be the type in hexadecimal
  // (0x0D, IDX float32), not its decimal value written after "0x" (which reads as 0x13).
  TempDir dir;
  write_binary(dir / "floats", idx_bytes({4}, std::vector<std::uint8_t>(16, 0), 0x0D));
  try {
    read_idx(dir / "floats");
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    std::string msg = e.what();
    std::transform(msg.begin(), msg.end(), msg.begin(), [](unsigned char c) { return std::tolower(c); });
    const bool hex = msg.find("0x0d") != std::string::npos || msg.find("0xd ") != std::string::npos;
    EXPECT_TRUE(hex) << "element type 0x0D misreported: " << e.what();
  }
}

TEST(ReadIdx, RankOutOfRange) {
  TempDir dir;
  write_binary(dir / "rank0", {0, 0, 0x08, 0});
  expect_data_error([&] { read_idx(dir / "rank0"); }, dir / "rank0", "rank 0");
  write_binary(dir / "rank5", idx_bytes({1, 1, 1, 1, 1}, {7}));
  expect_data_error([&] { read_idx(dir / "rank5"); }, dir / "rank5", "rank 5");
}

TEST(ReadIdx, ZeroDimension) {
  TempDir dir;
  write_binary(dir / "zero", idx_bytes({3, 0}, {}));
  expect_data_error([&] { read_idx(dir / "zero"); }, dir / "zero", "dimension 1 is zero");
}

TEST(ReadIdx, TruncatedHeader) {
  TempDir dir;
  std::vector<unsigned char> b = idx_bytes({3, 4, 5}, std::vector<std::uint8_t>(60, 1));
  b.resize(9);  // magic + 1 of 3 dimensions and a byte
  write_binary(dir / "hdr", b);
  expect_data_error([&] { read_idx(dir / "hdr"); }, dir / "hdr", "truncated IDX header");
}

TEST(ReadIdx, TruncatedData) {
  TempDir dir;
  std::vector<unsigned char> b = idx_bytes({10, 3}, std::vector<std::uint8_t>(30, 9));
  b.pop_back();
  write_binary(dir / "trunc", b);
  expect_data_error([&] { read_idx(dir / "trunc"); }, dir / "trunc", "29 data bytes, header says 30 (truncated)");
  // The same through gzip: the stream is complete, its content is not.
  write_gzip(dir / "trunc.gz", b);
  expect_data_error([&] { read_idx(dir / "trunc.gz"); }, dir / "trunc.gz", "(truncated)");
}

TEST(ReadIdx, TrailingBytes) {
  TempDir dir;
  std::vector<unsigned char> b = idx_bytes({10}, std::vector<std::uint8_t>(10, 9));
  b.push_back(0);
  b.push_back(0);
  write_binary(dir / "trail", b);
  expect_data_error([&] { read_idx(dir / "trail"); }, dir / "trail", "12 data bytes, header says 10 (trailing bytes)");
}

// A small gzip file that inflates far past what its header declares (here 10 values, then 512 MiB
// of zeros in 0.5 MiB of gzip) is refused once it passes the declared size, naming the file: under
// a 256 MiB address-space limit, where inflating it all fails for want of memory.
TEST(ReadIdx, GzipInflatingPastItsHeaderIsRefusedEarly) {
  TempDir dir;
  const fs::path p = dir / "bomb.gz";
  {
    gzFile gz = gzopen(p.c_str(), "wb1");
    ASSERT_NE(gz, nullptr) << p;
    const std::vector<unsigned char> header = idx_bytes({10}, std::vector<std::uint8_t>(10, 7));
    ASSERT_EQ(gzwrite(gz, header.data(), static_cast<unsigned>(header.size())), static_cast<int>(header.size()));
    const std::vector<unsigned char> zeros(std::size_t{1} << 20, 0);
    for (int mib = 0; mib < 512; ++mib)
      ASSERT_EQ(gzwrite(gz, zeros.data(), static_cast<unsigned>(zeros.size())), static_cast<int>(zeros.size()));
    ASSERT_EQ(gzclose(gz), Z_OK);
  }
  ASSERT_LT(fs::file_size(p), std::uintmax_t{4} << 20);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    qathw::test::limit_address_space(rlim_t{256} << 20);
    try {
      read_idx(p);
    } catch (const DataError& e) {
      const std::string msg = e.what();
      const bool named = msg.find(p.string()) != std::string::npos;
      ::_exit(named && msg.find("more than the 10 data bytes its header declares") != std::string::npos ? 0 : 1);
    } catch (...) {
      ::_exit(2);
    }
    ::_exit(3);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: a DataError without the file or the declared size; 2: another error "
                                       "(out of memory); 3: accepted";
}

// A FIFO where a data file should be is refused at once (opening it would wait for a writer).
TEST(ReadIdx, FifoIsRefused) {
  TempDir dir;
  const fs::path p = dir / "train-labels-idx1-ubyte";
  ASSERT_EQ(::mkfifo(p.c_str(), 0600), 0);
  expect_data_error([&] { read_idx(p); }, p, "is a FIFO, not a regular file");
}

TEST(ReadIdx, TruncatedGzipStream) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  TempDir dir;
  // Random bytes do not compress, so the deflate stream is about as long as the data.
  write_gzip(dir / "full.gz", idx_bytes({64, 32}, random_bytes(64 * 32, seed)));
  const std::vector<unsigned char> full = read_binary(dir / "full.gz");
  ASSERT_GT(full.size(), 1000u);
  ASSERT_NO_THROW(read_idx(dir / "full.gz"));
  // Cut in the middle of the deflate data, and cut only the 8-byte trailer (CRC-32 and length).
  for (std::size_t keep : {full.size() / 2, full.size() - 8, full.size() - 1}) {
    SCOPED_TRACE("kept " + std::to_string(keep) + " of " + std::to_string(full.size()) + " bytes");
    const fs::path p = dir / ("cut" + std::to_string(keep) + ".gz");
    write_binary(p, std::vector<unsigned char>(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(keep)));
    expect_data_error([&] { read_idx(p); }, p, "gzip");
  }
}

TEST(ReadIdx, CorruptGzipStream) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  TempDir dir;
  write_gzip(dir / "full.gz", idx_bytes({64, 32}, random_bytes(64 * 32, seed)));
  std::vector<unsigned char> b = read_binary(dir / "full.gz");
  b[b.size() - 6] ^= 0xff;  // inside the stored CRC-32
  write_binary(dir / "crc.gz", b);
  expect_data_error([&] { read_idx(dir / "crc.gz"); }, dir / "crc.gz", "gzip");
}

// A data folder in the MNIST naming, written with the given labels (images of 2x3 pixels).
void write_split(const fs::path& dir, const std::string& prefix, std::size_t images,
                 const std::vector<std::uint8_t>& labels, bool gzip) {
  const auto img = idx_bytes({static_cast<std::uint32_t>(images), 2, 3}, std::vector<std::uint8_t>(images * 6, 17));
  const auto lab = idx_bytes({static_cast<std::uint32_t>(labels.size())}, labels);
  if (gzip) {
    write_gzip(dir / (prefix + "-images-idx3-ubyte.gz"), img);
    write_gzip(dir / (prefix + "-labels-idx1-ubyte.gz"), lab);
  } else {
    write_binary(dir / (prefix + "-images-idx3-ubyte"), img);
    write_binary(dir / (prefix + "-labels-idx1-ubyte"), lab);
  }
}

TEST(LoadSplit, LabelCountMismatchNamesBothFiles) {
  TempDir dir;
  write_split(dir.path(), "train", 5, {0, 1, 2, 1}, false);
  const fs::path labels = dir / "train-labels-idx1-ubyte";
  expect_data_error([&] { load_split(dir.path(), Split::Train); }, labels, "4 labels for 5 images");
  expect_data_error([&] { load_split(dir.path(), Split::Train); }, dir / "train-images-idx3-ubyte", "labels");
}

TEST(LoadSplit, TestLabelBeyondTheTrainingClasses) {
  TempDir dir;
  write_split(dir.path(), "train", 4, {0, 1, 2, 3}, true);
  write_split(dir.path(), "t10k", 3, {1, 5, 0}, false);
  // Classes come from the training labels (4), so label 5 in the test split is an error.
  expect_data_error([&] { load_split(dir.path(), Split::Test); }, dir / "t10k-labels-idx1-ubyte",
                    "label 5 outside the 4 classes");
  // An imposed class count is checked too.
  expect_data_error([&] { load_split(dir.path(), Split::Train, 3); }, dir / "train-labels-idx1-ubyte",
                    "label 3 outside the 3 classes");
  EXPECT_EQ(load_split(dir.path(), Split::Train).classes, 4);
  EXPECT_EQ(load_split(dir.path(), Split::Test, 6).classes, 6);
}

TEST(LoadSplit, GzipPreferredAndShapesFromTheFiles) {
  TempDir dir;
  write_split(dir.path(), "train", 4, {0, 1, 1, 0}, true);
  const Dataset d = load_split(dir.path(), Split::Train);
  EXPECT_EQ(d.count, 4u);
  EXPECT_EQ(d.rows, 2u);
  EXPECT_EQ(d.cols, 3u);
  EXPECT_EQ(d.features, 6u);
  EXPECT_EQ(d.classes, 2);
  EXPECT_EQ(d.labels, (std::vector<std::uint8_t>{0, 1, 1, 0}));
  EXPECT_EQ(d.source, (dir / "train-images-idx3-ubyte.gz").string());
}

TEST(LoadSplit, MissingFolderAndMissingFiles) {
  TempDir dir;
  expect_data_error([&] { load_split(dir / "absent", Split::Train); }, dir / "absent", "data folder not found");
  write_split(dir.path(), "train", 2, {0, 1}, false);
  expect_data_error([&] { load_split(dir.path(), Split::Test); }, dir / "t10k-images-idx3-ubyte", "not found");
  fs::remove(dir / "train-labels-idx1-ubyte");
  expect_data_error([&] { load_split(dir.path(), Split::Train); }, dir / "train-labels-idx1-ubyte", "not found");
}

TEST(LoadSplit, ImagesOfTheWrongRank) {
  TempDir dir;
  write_binary(dir / "train-images-idx3-ubyte", idx_bytes({2, 6}, std::vector<std::uint8_t>(12, 0)));
  write_binary(dir / "train-labels-idx1-ubyte", idx_bytes({2}, {0, 1}));
  expect_data_error([&] { load_split(dir.path(), Split::Train); }, dir / "train-images-idx3-ubyte", "3 dimensions");
}

// A test split whose images have another shape than the training images is refused, naming both
// files and shapes (a model trained on 8 x 10 images cannot read 10 x 8 ones, though both hold 80
// pixels); a folder without training images is compared with nothing.
TEST(LoadSplit, TestImagesOfAnotherShapeThanTheTrainingImages) {
  TempDir dir;
  write_split(dir.path(), "train", 4, {0, 1, 2, 3}, true);  // 2 x 3 images
  write_binary(dir / "t10k-images-idx3-ubyte", idx_bytes({2, 3, 2}, std::vector<std::uint8_t>(12, 7)));
  write_binary(dir / "t10k-labels-idx1-ubyte", idx_bytes({2}, {0, 1}));
  expect_data_error([&] { load_split(dir.path(), Split::Test); }, dir / "t10k-images-idx3-ubyte",
                    "test images are 3x2 (rows x cols), the training images in " +
                        (dir / "train-images-idx3-ubyte.gz").string() + " are 2x3");
  expect_data_error([&] { load_split(dir.path(), Split::Test, 4); }, dir / "t10k-images-idx3-ubyte", "are 2x3");
  fs::remove(dir / "train-images-idx3-ubyte.gz");
  EXPECT_EQ(load_split(dir.path(), Split::Test, 4).rows, 3u);
}

// Image sides beyond the bundle's input limit (8192) are refused when the data is read, not after
// training when the bundle is written.
TEST(LoadSplit, ImageSidesWithinTheBundleLimit) {
  TempDir dir;
  write_binary(dir / "train-images-idx3-ubyte", idx_bytes({2, 1, 8193}, std::vector<std::uint8_t>(2 * 8193, 0)));
  write_binary(dir / "train-labels-idx1-ubyte", idx_bytes({2}, {0, 1}));
  expect_data_error([&] { load_split(dir.path(), Split::Train); }, dir / "train-images-idx3-ubyte",
                    "images of 1x8193 pixels; rows and cols must each be in [1, 8192]");
}

TEST(LoadSplit, DataPathThatIsAFile) {
  TempDir dir;
  write_binary(dir / "file", {1, 2, 3});
  expect_data_error([&] { load_split(dir / "file", Split::Train); }, dir / "file", "not a folder");
}

TEST(LoadSplit, TinyDataSet) {
  const fs::path dir = QATHW_TINY_IDX_DIR;
  const Dataset train = load_split(dir, Split::Train);
  const Dataset test = load_split(dir, Split::Test);
  EXPECT_EQ(train.count, 256u);
  EXPECT_EQ(test.count, 64u);
  for (const Dataset* d : {&train, &test}) {
    EXPECT_EQ(d->rows, 8u);
    EXPECT_EQ(d->cols, 10u);
    EXPECT_EQ(d->features, 80u);
    EXPECT_EQ(d->classes, 4);
    EXPECT_EQ(d->pixels.size(), d->count * 80);
    EXPECT_EQ(d->labels.size(), d->count);
    // Every class occurs.
    for (int c = 0; c < 4; ++c) EXPECT_NE(std::count(d->labels.begin(), d->labels.end(), c), 0) << "class " << c;
  }
  EXPECT_EQ(train.source, (dir / "train-images-idx3-ubyte.gz").string());
  EXPECT_EQ(test.source, (dir / "t10k-images-idx3-ubyte").string());
}

}  // namespace
}  // namespace qathw::training
