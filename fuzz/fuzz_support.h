// What the harnesses share: one scratch directory per process, made on first use and removed at
// exit (a crash leaves it behind), into which inputs are written under fixed names: an iteration
// rewrites a file, it does not create a directory.
#pragma once

#include <stdlib.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace qathw::fuzz {

inline const std::filesystem::path& scratch_dir() {
  // Never destroyed: the exit handler that removes the directory still reads it.
  static const std::filesystem::path* const dir = [] {
    // In memory (tmpfs) where there is one: ext4 starts writeback when a file truncated to zero is
    // closed, which made an iteration wait for the disk.
    std::error_code ec;
    const std::filesystem::path base =
        std::filesystem::is_directory("/dev/shm", ec) ? "/dev/shm" : std::filesystem::temp_directory_path();
    std::string pattern = (base / "qathw-fuzz-XXXXXX").string();
    if (!mkdtemp(pattern.data())) {
      std::perror("mkdtemp");
      std::abort();
    }
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    });
    return new std::filesystem::path(pattern);
  }();
  return *dir;
}

// Writes `bytes` to scratch_dir()/name and returns that path; a failed write stops the fuzzer
// (it would otherwise test the loader on a file that is not the input).
inline std::filesystem::path write_scratch(const std::string& name, std::string_view bytes) {
  const std::filesystem::path path = scratch_dir() / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    std::abort();
  }
  return path;
}

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace qathw::fuzz
