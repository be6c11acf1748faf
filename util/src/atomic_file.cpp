#include "qathw/util/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace qathw::util {
namespace fs = std::filesystem;

namespace {

std::string unique_suffix() {
  static int counter = 0;
  return ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
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

fs::path staging_directory_for(const fs::path& path) {
  const fs::path staged = path.string() + unique_suffix();
  std::error_code ec;
  fs::remove_all(staged, ec);
  if (!fs::create_directories(staged, ec) || ec) throw IoError(staged.string() + ": cannot create (" + ec.message() + ")");
  return staged;
}

void replace_directory(const fs::path& staged, const fs::path& path) {
  std::error_code ec;
  const fs::path old = path.string() + ".old" + unique_suffix();
  const bool had_old = fs::exists(path);
  if (had_old) {
    fs::rename(path, old, ec);
    if (ec) throw IoError(path.string() + ": cannot move the previous version aside (" + ec.message() + ")");
  }
  fs::rename(staged, path, ec);
  if (ec) {
    if (had_old) fs::rename(old, path, ec);
    throw IoError(path.string() + ": cannot rename into place (" + ec.message() + ")");
  }
  if (had_old) fs::remove_all(old, ec);
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
