// Bounded reads of regular files only.
#include "qathw/util/atomic_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "../training/temp_dir.h"

namespace qathw::util {
namespace {

namespace fs = std::filesystem;
using qathw::test::TempDir;

// Runs `f`, which must throw IoError whose message names `file` and contains `fragment`.
template <typename F>
void expect_io_error(F&& f, const fs::path& file, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "expected IoError naming " << file;
  } catch (const IoError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(file.string()), std::string::npos) << "message does not name the file: " << msg;
    EXPECT_NE(msg.find(fragment), std::string::npos) << "message lacks '" << fragment << "': " << msg;
  }
}

TEST(ReadFile, ReadsARegularFileUpToItsLimit) {
  TempDir dir;
  write_file_atomic(dir / "f", std::string(100, 'x'));
  EXPECT_EQ(read_file(dir / "f"), std::string(100, 'x'));
  EXPECT_EQ(read_file(dir / "f", 100), std::string(100, 'x'));
  expect_io_error([&] { read_file(dir / "f", 99); }, dir / "f", "over the limit of 99 bytes");
  write_file_atomic(dir / "empty", "");
  EXPECT_EQ(read_file(dir / "empty", 0), "");
}

TEST(ReadFile, MissingFile) {
  TempDir dir;
  expect_io_error([&] { read_file(dir / "nonesuch"); }, dir / "nonesuch", "cannot open");
}

// A device, a FIFO (which would block until a writer comes) and a directory are refused at once,
// without reading, naming the file and what it is.
TEST(ReadFile, RefusesWhatIsNotARegularFile) {
  TempDir dir;
  expect_io_error([&] { read_file("/dev/zero"); }, "/dev/zero", "is a character device, not a regular file");
  ASSERT_EQ(::mkfifo((dir / "fifo").c_str(), 0600), 0);
  expect_io_error([&] { read_file(dir / "fifo"); }, dir / "fifo", "is a FIFO, not a regular file");
  fs::create_directories(dir / "sub");
  expect_io_error([&] { read_file(dir / "sub"); }, dir / "sub", "is a directory, not a regular file");
  expect_io_error([&] { open_regular_file(dir / "sub"); }, dir / "sub", "is a directory");
}

}  // namespace
}  // namespace qathw::util
