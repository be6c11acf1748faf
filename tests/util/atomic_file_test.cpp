// Bounded reads of regular files only, and a directory replaced so that a kill at any step leaves
// the old or the new version in place, with what interrupted runs left behind cleaned up.
#include "qathw/util/atomic_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "../training/temp_dir.h"
#include "kill_at_rename.h"

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

// A directory whose two files hold `version`.
void write_version(const fs::path& dir, const std::string& version) {
  write_file_atomic(dir / "a", version);
  write_file_atomic(dir / "b", version);
}

// The version in `dir`, which must be complete (both files, the same version).
std::string version_in(const fs::path& dir) {
  const std::string a = read_file(dir / "a");
  EXPECT_EQ(read_file(dir / "b"), a) << dir << " is half of one version";
  return a;
}

std::set<std::string> entries(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

TEST(ReplaceDirectory, ReplacesAnExistingDirectoryAndLeavesNothingBeside) {
  TempDir dir;
  const fs::path path = dir / "model.qhw";
  fs::path staged = staging_directory_for(path);
  write_version(staged, "1");
  replace_directory(staged, path);
  EXPECT_EQ(version_in(path), "1");
  staged = staging_directory_for(path);
  write_version(staged, "2");
  replace_directory(staged, path);
  EXPECT_EQ(version_in(path), "2");
  EXPECT_EQ(entries(dir.path()), std::set<std::string>{"model.qhw"});
}

TEST(ReplaceDirectory, ExchangeSwapsTwoDirectories) {
  TempDir dir;
  fs::create_directories(dir / "x");
  fs::create_directories(dir / "y");
  write_version(dir / "x", "x");
  write_version(dir / "y", "y");
  if (!exchange_paths(dir / "x", dir / "y")) GTEST_SKIP() << "RENAME_EXCHANGE not supported here";
  EXPECT_EQ(version_in(dir / "x"), "y");
  EXPECT_EQ(version_in(dir / "y"), "x");
}

// A re-export over an existing directory, killed at each of its renames in turn (the staged
// files' and the replacement's): the old version or the new one is in place, complete, every
// time; the next successful save removes what the killed one left beside it.
TEST(ReplaceDirectory, AKillAtAnyRenameLeavesTheOldOrTheNewVersion) {
  for (int allowed = 0;; ++allowed) {
    SCOPED_TRACE("killed at rename " + std::to_string(allowed + 1));
    TempDir dir;
    const fs::path path = dir / "model.qhw";
    fs::create_directories(path);
    write_version(path, "old");
    const test::RenameKill r = test::run_killed_at_rename(allowed, [&] {
      const fs::path staged = staging_directory_for(path);
      write_version(staged, "new");
      replace_directory(staged, path);
    });
    if (!r.supported) GTEST_SKIP() << "no seccomp user notification here: cannot inject the kill";
    ASSERT_FALSE(r.work_failed);
    ASSERT_TRUE(fs::is_directory(path)) << "no " << path << " after a kill at rename " << allowed + 1;
    const std::string version = version_in(path);
    if (!r.killed) {
      EXPECT_EQ(version, "new");
      EXPECT_EQ(entries(dir.path()), std::set<std::string>{"model.qhw"});
      EXPECT_GE(allowed, 3) << "fewer renames than the two staged files and the replacement";
      break;
    }
    EXPECT_TRUE(version == "old" || version == "new") << version;
    const fs::path staged = staging_directory_for(path);
    write_version(staged, "next");
    replace_directory(staged, path);
    EXPECT_EQ(version_in(path), "next");
    EXPECT_EQ(entries(dir.path()), std::set<std::string>{"model.qhw"}) << "leftovers of the killed run remain";
    ASSERT_LT(allowed, 20) << "the re-export never finished";
  }
}

// Leftovers of a run still going (its process alive) are not touched.
TEST(ReplaceDirectory, LeavesTheStagingOfARunningProcessAlone) {
  TempDir dir;
  const fs::path path = dir / "model.qhw";
  const fs::path running = path.string() + ".staging-" + std::to_string(::getppid()) + "-1";
  fs::create_directories(running);
  fs::path staged = staging_directory_for(path);
  write_version(staged, "1");
  replace_directory(staged, path);
  EXPECT_TRUE(fs::is_directory(running));
  EXPECT_EQ(remove_stale_staging(path), 0);
}

}  // namespace
}  // namespace qathw::util
