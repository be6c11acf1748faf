// Files written so that a reader (or a run interrupted at any point) sees the old content or the
// new, never half of one: write a temporary file beside the target, flush it to disk, rename.
#pragma once

#include <filesystem>
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

// Replaces directory `path` by `staged` (a finished directory beside it) in one rename; a
// previous `path` is moved aside first and removed afterwards.
void replace_directory(const std::filesystem::path& staged, const std::filesystem::path& path);

// A fresh directory beside `path` to stage its new content in.
std::filesystem::path staging_directory_for(const std::filesystem::path& path);

std::string read_file(const std::filesystem::path& path);

// Every regular file below `folders`, as its path and content in path order: what a cache key
// hashes when any of those files (the headers a build includes) can change the cached result.
std::string folder_contents(const std::vector<std::filesystem::path>& folders);

// The default cache folder of one kind of cached work: $QATHW_CACHE_DIR/<kind> when that is set,
// else $HOME/.cache/qat-hw/<kind>.
std::filesystem::path default_cache_dir(const std::string& kind);

}  // namespace qathw::util
