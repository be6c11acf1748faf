#include "qathw/rtl/rtl_engine.h"

#include <stdexcept>

#include "qathw/target/target_spec.h"

namespace qathw::rtl {

// One entry point per RTL build (src/rtl_model.cpp compiled for each built-in target).
RtlRunFunction run_rtl_ternary_asic;
RtlRunFunction run_rtl_int4_fpga;

namespace {

struct Build {
  const char* target;
  RtlRunFunction* run;
};
const Build kBuilds[] = {{"ternary-asic", run_rtl_ternary_asic}, {"int4-fpga", run_rtl_int4_fpga}};

}  // namespace

RtlRunFunction* builtin_rtl(const model::Bundle& bundle) {
  for (const Build& b : kBuilds)
    if (target::content_hash(target::builtin_target(b.target)) == bundle.target_hash) return b.run;
  return nullptr;
}

RtlRun run_rtl_entry(RtlRunFunction* entry, const model::Bundle& bundle, const std::uint8_t* pixels, std::size_t count,
                     const std::string& fst_path) {
  const model::AcceleratorLowering lowering = model::accelerator_layers(bundle.graph);
  if (lowering.unsupported) throw std::runtime_error("RTL: " + *lowering.unsupported);
  return entry(bundle, lowering.layers, pixels, count, fst_path);
}

RtlRun run_rtl(const model::Bundle& bundle, const std::uint8_t* pixels, std::size_t count,
               const std::string& fst_path) {
  if (RtlRunFunction* run = builtin_rtl(bundle)) return run_rtl_entry(run, bundle, pixels, count, fst_path);
  throw std::runtime_error("no RTL build for target '" + bundle.target.name + "' (hash " + bundle.target_hash +
                           "): the RTL is built for the built-in targets ternary-asic and int4-fpga");
}

}  // namespace qathw::rtl
