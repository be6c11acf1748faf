// Files written so that a reader (or a run interrupted at any point) sees the old content or the
// new, never half of one: write a temporary file beside the target, flush it to disk, rename.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace qathw::util {

class IoError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

void write_file_atomic(const std::filesystem::path& path, std::string_view content);

// Replaces directory `path` by `staged` (a finished directory beside it) so that a reader, or a
// run killed at any point, finds the old `path` or the new one, never none: on Linux the two are
// swapped in one renameat2(RENAME_EXCHANGE) and the old content (now under the staged name) is
// removed afterwards. Where the file system or kernel does not support the exchange (EINVAL,
// ENOSYS) it falls back to moving the previous `path` aside and the staged one in: two renames,
// between which `path` is missing. Once `path` is in place, leftovers of earlier runs that were
// killed before they could clean up (see remove_stale_staging) are removed.
void replace_directory(const std::filesystem::path& staged, const std::filesystem::path& path);

// Swaps `a` and `b` (both present) in one atomic rename; false when the system cannot
// (RENAME_EXCHANGE unsupported: EINVAL or ENOSYS). Throws IoError on any other failure.
bool exchange_paths(const std::filesystem::path& a, const std::filesystem::path& b);

// Writes directory `path` whole or not at all: `fill` writes the new content into a staging
// directory beside it, which then replaces `path` (replace_directory); on any failure the staging
// directory is removed and the exception passed on.
void write_directory_atomic(const std::filesystem::path& path,
                            const std::function<void(const std::filesystem::path& staged)>& fill);

// A fresh directory beside `path` to stage its new content in: `<path>.staging-<pid>-<n>`.
std::filesystem::path staging_directory_for(const std::filesystem::path& path);

// Removes what interrupted runs left beside `path`: directories named `<path>.staging-<pid>-<n>`
// or `<path>.old-<pid>-<n>` (and `<path>.tmp-...`, `<path>.old.tmp-...` of earlier releases)
// whose process no longer runs. Returns how many it removed.
int remove_stale_staging(const std::filesystem::path& path);

// A read-only descriptor of regular file `path` (opened without blocking, so a FIFO without a
// writer is refused rather than waited for); the caller closes it. Throws IoError naming the file
// and what it is when it cannot be opened or is not a regular file.
int open_regular_file(const std::filesystem::path& path);

// What read_file reads at most unless told otherwise.
inline constexpr std::uint64_t kDefaultReadLimit = std::uint64_t{256} << 20;

// The whole content of regular file `path`, at most `limit` bytes: a directory, a device, a FIFO
// or a socket is refused without reading (and without blocking), and so is a file larger than
// `limit`, both before reading (its size) and while reading (a file that grows). Every error is an
// IoError naming the file.
std::string read_file(const std::filesystem::path& path, std::uint64_t limit = kDefaultReadLimit);

// Every regular file below `folders`, as its path and content in path order: what a cache key
// hashes when any of those files (the headers a build includes) can change the cached result.
std::string folder_contents(const std::vector<std::filesystem::path>& folders);

// The default cache folder of one kind of cached work: $QATHW_CACHE_DIR/<kind> when that is set,
// else $HOME/.cache/qat-hw/<kind>.
std::filesystem::path default_cache_dir(const std::string& kind);

}  // namespace qathw::util
