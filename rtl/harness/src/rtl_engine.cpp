#include "qathw/rtl/rtl_engine.h"

#include <stdexcept>

#include "qathw/rtl/rtl_fit.h"
#include "qathw/target/target_spec.h"

namespace qathw::rtl {

// One entry point per RTL build compiled in (rtl/harness/CMakeLists.txt generates the table).
struct BuiltinModel {
  const char* target;
  RtlRunFunction* run;           // image bundles
  RtlRunFunction* run_sequence;  // sequence bundles: the transformer's units built in
};
extern const BuiltinModel kBuiltinModels[];
extern const int kBuiltinModelCount;

RtlRunFunction* builtin_rtl(const model::Bundle& bundle) {
  for (int i = 0; i < kBuiltinModelCount; ++i)
    if (target::content_hash(target::builtin_target(kBuiltinModels[i].target)) == bundle.target_hash)
      return bundle.sequence() ? kBuiltinModels[i].run_sequence : kBuiltinModels[i].run;
  return nullptr;
}

namespace {
// The RTL runs the transformer's layers (Transformer builds: every built-in target's, and a
// run-time build of a sequence bundle).
RtlSequence sequence_of(const model::Bundle& bundle, const model::AcceleratorLowering& lowering) {
  return {&bundle.graph, bundle.sequence() ? lowering.tokens : 0, bundle.target.format.acc_bits};
}
}  // namespace

std::optional<std::string> rtl_unsupported(const model::Bundle& bundle) {
  const model::AcceleratorLowering lowering = model::accelerator_layers(bundle.graph, true);
  if (lowering.unsupported) return lowering.unsupported;
  return rtl_memory_misfit(lowering.layers, bundle.target, sequence_of(bundle, lowering));
}

RtlRun run_rtl_entry(RtlRunFunction* entry, const model::Bundle& bundle, const std::uint8_t* pixels, std::size_t count,
                     const std::string& fst_path) {
  const model::AcceleratorLowering lowering = model::accelerator_layers(bundle.graph, true);
  if (lowering.unsupported) throw std::runtime_error("RTL: " + *lowering.unsupported);
  if (const auto misfit = rtl_memory_misfit(lowering.layers, bundle.target, sequence_of(bundle, lowering)))
    throw std::runtime_error("RTL: " + *misfit);
  return entry(bundle, lowering.layers, pixels, count, fst_path);
}

RtlRun run_rtl(const model::Bundle& bundle, const std::uint8_t* pixels, std::size_t count,
               const std::string& fst_path) {
  if (RtlRunFunction* run = builtin_rtl(bundle)) return run_rtl_entry(run, bundle, pixels, count, fst_path);
  throw std::runtime_error("no RTL model compiled in for target '" + bundle.target.name + "' (hash " +
                           bundle.target_hash + "): the built-in targets have one; qat-hw verify builds others");
}

}  // namespace qathw::rtl
