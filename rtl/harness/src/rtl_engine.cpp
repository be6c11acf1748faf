#include "qathw/rtl/rtl_engine.h"

#include <stdexcept>

#include "qathw/target/target_spec.h"

namespace qathw::rtl {

// One entry point per RTL build (src/rtl_model.cpp compiled for each built-in target).
RtlRun run_rtl_ternary_asic(const training::Bundle&, const std::uint8_t*, std::size_t, const std::string&);
RtlRun run_rtl_int4_fpga(const training::Bundle&, const std::uint8_t*, std::size_t, const std::string&);

namespace {

struct Build {
  const char* target;
  RtlRunFunction* run;
};
const Build kBuilds[] = {{"ternary-asic", run_rtl_ternary_asic}, {"int4-fpga", run_rtl_int4_fpga}};

}  // namespace

RtlRunFunction* builtin_rtl(const training::Bundle& bundle) {
  for (const Build& b : kBuilds)
    if (target::content_hash(target::builtin_target(b.target)) == bundle.target_hash) return b.run;
  return nullptr;
}

RtlRun run_rtl(const training::Bundle& bundle, const std::uint8_t* pixels, std::size_t count,
               const std::string& fst_path) {
  if (RtlRunFunction* run = builtin_rtl(bundle)) return run(bundle, pixels, count, fst_path);
  throw std::runtime_error("no RTL build for target '" + bundle.target.name + "' (hash " + bundle.target_hash +
                           "): the RTL is built for the built-in targets ternary-asic and int4-fpga");
}

}  // namespace qathw::rtl
