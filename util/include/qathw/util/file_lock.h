// Exclusive locks that say who holds them: a run that writes an output folder or runs a sweep's
// point holds one, so that a second run on the same place waits, or stops naming the holder,
// instead of silently doing the same work or replacing the other's files.
//
// The lock is flock(2) on a file: the kernel releases it when the holder ends, however it ends
// (kill -9 included), so no stale lock survives a crash. The holder writes "pid N on HOST since
// TIME" into the file for the others' messages.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>

namespace qathw::util {

class FileLock {
 public:
  // Takes the lock on `path` (created, with its folder, when missing) if no one holds it;
  // otherwise returns nothing and sets `holder` to the holder's "pid N on HOST since TIME".
  static std::optional<FileLock> try_acquire(const std::filesystem::path& path, std::string& holder);

  // Takes the lock on `path`, waiting for the holder to release it; `on_wait` is told the holder
  // once, before waiting.
  static FileLock acquire(const std::filesystem::path& path, const std::function<void(const std::string&)>& on_wait);

  FileLock(FileLock&& other) noexcept;
  FileLock& operator=(FileLock&& other) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock();  // releases the lock (the file stays: removing it would race with a waiter)

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace qathw::util
