#include "qathw/util/file_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "qathw/util/atomic_file.h"

namespace qathw::util {
namespace {

int open_lock_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) throw IoError(path.string() + ": cannot open the lock file: " + std::strerror(errno));
  return fd;
}

std::string holder_of(int fd) {
  char text[256];
  const ssize_t n = ::pread(fd, text, sizeof text - 1, 0);
  std::string s(text, n > 0 ? static_cast<std::size_t>(n) : 0);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\0')) s.pop_back();
  return s.empty() ? std::string("another process (it has not named itself yet)") : s;
}

// Written after the lock is taken; a reader racing with this write sees part of it at worst.
void name_holder(int fd) {
  char host[256] = "?";
  ::gethostname(host, sizeof host - 1);
  const std::time_t now = std::time(nullptr);
  char since[32];
  std::strftime(since, sizeof since, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  const std::string text = "pid " + std::to_string(::getpid()) + " on " + host + " since " + since + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, text.data(), text.size(), 0) < 0) {
    // The lock holds without the name: others then say "another process".
  }
}

}  // namespace

std::optional<FileLock> FileLock::try_acquire(const std::filesystem::path& path, std::string& holder) {
  const int fd = open_lock_file(path);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    holder = holder_of(fd);
    ::close(fd);
    if (err != EWOULDBLOCK) throw IoError(path.string() + ": cannot lock: " + std::strerror(err));
    return std::nullopt;
  }
  name_holder(fd);
  return FileLock(fd);
}

FileLock FileLock::acquire(const std::filesystem::path& path, const std::function<void(const std::string&)>& on_wait) {
  std::string holder;
  if (auto lock = try_acquire(path, holder)) return std::move(*lock);
  if (on_wait) on_wait(holder);
  const int fd = open_lock_file(path);
  while (::flock(fd, LOCK_EX) != 0) {
    if (errno == EINTR) continue;
    const int err = errno;
    ::close(fd);
    throw IoError(path.string() + ": cannot lock: " + std::strerror(err));
  }
  name_holder(fd);
  return FileLock(fd);
}

FileLock::FileLock(FileLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }

FileLock& FileLock::operator=(FileLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace qathw::util
