// Feeds IDX files to qathw::training::read_idx, as given and gzip-compressed (the reader detects
// gzip by its magic number). Bad input must end in a DataError, and both must read alike: the
// same array, or both an error.
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <optional>

#include "fuzz_support.h"
#include "qathw/training/idx.h"

using qathw::training::IdxArray;

namespace {

std::optional<IdxArray> read(const std::filesystem::path& path) {
  try {
    return qathw::training::read_idx(path);
  } catch (const qathw::training::DataError&) {
    return std::nullopt;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::optional<IdxArray> plain = read(qathw::fuzz::write_scratch("data-idx-ubyte", qathw::fuzz::as_text(data, size)));

  const std::filesystem::path gz_path = qathw::fuzz::scratch_dir() / "data-idx-ubyte.gz";
  gzFile gz = gzopen(gz_path.c_str(), "wb1");
  if (!gz || (size > 0 && gzwrite(gz, data, static_cast<unsigned>(size)) != static_cast<int>(size)) ||
      gzclose(gz) != Z_OK) {
    std::fprintf(stderr, "cannot write %s\n", gz_path.c_str());
    std::abort();
  }
  const std::optional<IdxArray> inflated = read(gz_path);

  // An input that is itself gzip data reads as its content, which the compressed copy does not.
  if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b) return 0;
  if (plain.has_value() != inflated.has_value() ||
      (plain && (plain->dims != inflated->dims || plain->values != inflated->values))) {
    std::fprintf(stderr, "plain and gzip-compressed copies read differently (plain %s, gzip %s)\n",
                 plain ? "read" : "refused", inflated ? "read" : "refused");
    std::abort();
  }
  return 0;
}
