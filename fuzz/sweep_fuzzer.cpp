// Feeds TOML text to qathw::sweep::parse_sweep (relative paths resolve against sweeps/), then
// expands the specs it accepts into points when there are few. Every error must be a
// std::runtime_error, as sweep_spec.h documents.
#include <cstddef>

#include "fuzz_support.h"
#include "qathw/sweep/sweep_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const qathw::sweep::SweepSpec spec =
        qathw::sweep::parse_sweep(qathw::fuzz::as_text(data, size), "fuzz.toml", QATHW_FUZZ_SWEEP_BASE_DIR);
    std::size_t points = 1;
    for (const auto& axis : spec.axes) points *= axis.values.size();
    if (points <= 64) (void)qathw::sweep::expand(spec);  // at most 100000 points: bounded, but slow
  } catch (const std::runtime_error&) {
  }
  return 0;
}
