// Locks on output folders and sweep points: one holder at a time, the others told who holds it,
// and the lock gone with its holder however it ends (kill -9 included).
#include "qathw/util/file_lock.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include <gtest/gtest.h>

#include "../training/temp_dir.h"

namespace qathw::util {
namespace {

using qathw::test::TempDir;

// A child process that takes the lock, tells the parent through a pipe, and sleeps until killed.
pid_t hold_in_child(const std::filesystem::path& path) {
  int ready[2];
  if (::pipe(ready) != 0) return -1;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(ready[0]);
    std::string holder;
    auto lock = FileLock::try_acquire(path, holder);
    const char ok = lock ? '1' : '0';
    if (::write(ready[1], &ok, 1) != 1) _exit(1);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char ok = '0';
  const bool read_ok = ::read(ready[0], &ok, 1) == 1;
  ::close(ready[0]);
  return read_ok && ok == '1' ? pid : -1;
}

void kill_and_reap(pid_t pid) {
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
}

TEST(FileLock, OneHolderAtATimeAndTheOthersAreToldWho) {
  TempDir dir;
  const auto path = dir / "sub" / "run.lock";  // the folder is created
  const pid_t child = hold_in_child(path);
  ASSERT_GT(child, 0);
  std::string holder;
  EXPECT_FALSE(FileLock::try_acquire(path, holder).has_value());
  EXPECT_EQ(holder.rfind("pid " + std::to_string(child) + " on ", 0), 0u) << holder;
  EXPECT_NE(holder.find(" since "), std::string::npos) << holder;
  kill_and_reap(child);
  // kill -9 leaves no stale lock.
  auto mine = FileLock::try_acquire(path, holder);
  ASSERT_TRUE(mine.has_value());
  // Held by this process: a second open file description of the same file is refused too.
  std::string second;
  EXPECT_FALSE(FileLock::try_acquire(path, second).has_value());
  EXPECT_EQ(second.rfind("pid " + std::to_string(::getpid()) + " on ", 0), 0u) << second;
  mine.reset();
  EXPECT_TRUE(FileLock::try_acquire(path, second).has_value());
}

TEST(FileLock, AcquireWaitsForTheHolderAndNamesItOnce) {
  TempDir dir;
  const auto path = dir / "point.lock";
  const pid_t child = hold_in_child(path);
  ASSERT_GT(child, 0);
  // Release the child's lock a moment after the wait has begun.
  const pid_t killer = ::fork();
  if (killer == 0) {
    ::usleep(300000);
    ::kill(child, SIGKILL);
    _exit(0);
  }
  int waits = 0;
  std::string named;
  const FileLock lock = FileLock::acquire(path, [&](const std::string& holder) {
    ++waits;
    named = holder;
  });
  EXPECT_EQ(waits, 1);
  EXPECT_EQ(named.rfind("pid " + std::to_string(child) + " on ", 0), 0u) << named;
  int status = 0;
  ::waitpid(killer, &status, 0);
  ::waitpid(child, &status, 0);
}

TEST(FileLock, AFreeLockIsTakenWithoutWaiting) {
  TempDir dir;
  int waits = 0;
  const FileLock lock = FileLock::acquire(dir / "free.lock", [&](const std::string&) { ++waits; });
  EXPECT_EQ(waits, 0);
}

}  // namespace
}  // namespace qathw::util
