#include "qathw/util/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

// glibc defines it in <stdio.h> from 2.28 on; the value is the kernel's (linux/fs.h).
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

namespace qathw::util {
namespace fs = std::filesystem;

namespace {

std::string unique_suffix() {
  static int counter = 0;
  return ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

// `<pid>-<n>` for this process, unique within it: what names a staged or an old directory.
std::string process_suffix() {
  static int counter = 0;
  return std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

std::string kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a plain file";
}

[[noreturn]] void fail(const fs::path& path, const std::string& what) {
  throw IoError(path.string() + ": " + what + " (" + std::strerror(errno) + ")");
}

}  // namespace

void write_file_atomic(const fs::path& path, std::string_view content) {
  const fs::path tmp = path.string() + unique_suffix();
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(tmp, "cannot create");
  std::size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      ::unlink(tmp.c_str());
      fail(tmp, "write failed");
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    fail(tmp, "cannot flush");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    fail(path, "cannot rename into place");
  }
}

void write_directory_atomic(const fs::path& path, const std::function<void(const fs::path& staged)>& fill) {
  const fs::path staged = staging_directory_for(path);
  try {
    fill(staged);
    replace_directory(staged, path);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(staged, ec);
    throw;
  }
}

fs::path staging_directory_for(const fs::path& path) {
  const fs::path staged = path.string() + ".staging-" + process_suffix();
  std::error_code ec;
  fs::remove_all(staged, ec);
  if (!fs::create_directories(staged, ec) || ec) throw IoError(staged.string() + ": cannot create (" + ec.message() + ")");
  return staged;
}

bool exchange_paths(const fs::path& a, const fs::path& b) {
#ifdef SYS_renameat2
  // The system call, not glibc's wrapper (glibc 2.28 and later only).
  if (::syscall(SYS_renameat2, AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) == 0) return true;
#else
  errno = ENOSYS;
#endif
  if (errno == EINVAL || errno == ENOSYS) return false;
  fail(b, "cannot exchange with " + a.string());
}

int remove_stale_staging(const fs::path& path) {
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  const std::string name = path.filename().string();
  int removed = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string entry = it->path().filename().string();
    if (entry.size() <= name.size() || entry.compare(0, name.size(), name) != 0) continue;
    std::string rest = entry.substr(name.size());
    bool ours = false;
    for (const char* infix : {".staging-", ".old-", ".old.tmp-", ".tmp-"}) {
      const std::size_t n = std::strlen(infix);
      if (rest.compare(0, n, infix) == 0) {
        rest = rest.substr(n);
        ours = true;
        break;
      }
    }
    // What follows is `<pid>-<n>`: left behind only when that process no longer runs.
    long pid = 0;
    int counter = 0;
    char trailing = 0;
    if (!ours || std::sscanf(rest.c_str(), "%ld-%d%c", &pid, &counter, &trailing) != 2 || pid <= 0) continue;
    if (pid == ::getpid() || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    std::error_code type_ec;
    if (!fs::is_directory(fs::symlink_status(it->path(), type_ec))) continue;
    std::error_code remove_ec;
    fs::remove_all(it->path(), remove_ec);
    if (!remove_ec) ++removed;
  }
  return removed;
}

void replace_directory(const fs::path& staged, const fs::path& path) {
  std::error_code ec;
  const bool had_old = fs::exists(fs::symlink_status(path, ec));
  if (had_old && exchange_paths(staged, path)) {
    // `staged` now holds the previous content.
    fs::remove_all(staged, ec);
  } else if (!had_old) {
    fs::rename(staged, path, ec);
    if (ec) throw IoError(path.string() + ": cannot rename into place (" + ec.message() + ")");
  } else {
    // No atomic exchange here: move the previous version aside, the new one in.
    const fs::path old = path.string() + ".old-" + process_suffix();
    fs::rename(path, old, ec);
    if (ec) throw IoError(path.string() + ": cannot move the previous version aside (" + ec.message() + ")");
    fs::rename(staged, path, ec);
    if (ec) {
      std::error_code restore_ec;
      fs::rename(old, path, restore_ec);
      throw IoError(path.string() + ": cannot rename into place (" + ec.message() + ")");
    }
    fs::remove_all(old, ec);
  }
  remove_stale_staging(path);
}

int open_regular_file(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) fail(path, "cannot open");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int saved = errno;
    ::close(fd);
    errno = saved;
    fail(path, "cannot stat");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw IoError(path.string() + ": is " + kind_of(st.st_mode) + ", not a regular file");
  }
  // Reads of a regular file never block; clear the flag all the same.
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

std::string read_file(const fs::path& path, std::uint64_t limit) {
  const int fd = open_regular_file(path);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  const auto over_limit = [&](const std::string& size) {
    return IoError(path.string() + ": " + size + ", over the limit of " + std::to_string(limit) + " bytes for this file");
  };
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail(path, "cannot stat");
  const std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
  if (size > limit) throw over_limit(std::to_string(size) + " bytes");
  std::string out;
  out.reserve(static_cast<std::size_t>(size));
  char chunk[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(path, "read error");
    }
    if (n == 0) break;
    if (out.size() + static_cast<std::size_t>(n) > limit) throw over_limit("grew while being read");
    out.append(chunk, static_cast<std::size_t>(n));
  }
  return out;
}

std::string folder_contents(const std::vector<fs::path>& folders) {
  std::string all;
  for (const fs::path& dir : folders) {
    std::vector<fs::path> files;
    for (const auto& e : fs::recursive_directory_iterator(dir))
      if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const fs::path& f : files) all += f.string() + "\n" + read_file(f);
  }
  return all;
}

fs::path default_cache_dir(const std::string& kind) {
  const char* root = std::getenv("QATHW_CACHE_DIR");
  if (root && *root) return fs::path(root) / kind;
  const char* home = std::getenv("HOME");
  return fs::path(home ? home : "/tmp") / ".cache" / "qat-hw" / kind;
}

}  // namespace qathw::util
