// Feeds training checkpoint files to qathw::training::load_checkpoint (run fingerprint "fuzz"),
// once as given and once with the trailing CRC-32 recomputed, so that mutations also reach the
// checks behind the checksum. Bad input must end in a std::runtime_error (checkpoint.h).
#include <zlib.h>

#include <cstring>
#include <string>

#include "fuzz_support.h"
#include "qathw/training/checkpoint.h"

namespace {

void load(const std::string& bytes) {
  try {
    (void)qathw::training::load_checkpoint(qathw::fuzz::write_scratch("checkpoint.bin", bytes), "fuzz");
  } catch (const std::runtime_error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string bytes(qathw::fuzz::as_text(data, size));
  load(bytes);
  if (bytes.size() < 4) return 0;
  const std::uint32_t crc = static_cast<std::uint32_t>(
      crc32(crc32(0L, Z_NULL, 0), data, static_cast<uInt>(bytes.size() - 4)));
  std::memcpy(&bytes[bytes.size() - 4], &crc, 4);  // little-endian, as save_checkpoint writes it
  load(bytes);
  return 0;
}
