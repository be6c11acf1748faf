// Feeds TOML text to qathw::target::parse_target. Bad input must end in a TargetError; a target
// it accepts must also survive what the tools do with it: the JSON round trip (bundles, `targets
// show`) to the same content hash, and the generated parameter files.
#include <cstdio>
#include <cstdlib>

#include "fuzz_support.h"
#include "qathw/target/target_gen.h"
#include "qathw/target/target_spec.h"

using namespace qathw::target;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  TargetSpec spec;
  try {
    spec = parse_target(qathw::fuzz::as_text(data, size), "fuzz.toml");
  } catch (const TargetError&) {
    return 0;
  }
  const TargetSpec back = target_from_json(to_json(spec), "fuzz.json");
  if (content_hash(back) != content_hash(spec)) {
    std::fprintf(stderr, "JSON round trip changed the target: %s\n", to_json(spec).dump().c_str());
    std::abort();
  }
  (void)sv_package(spec);
  (void)cpp_header(spec);
  (void)cmake_fragment(spec, "FUZZ");
  return 0;
}
