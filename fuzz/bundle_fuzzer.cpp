// Feeds model bundles to qathw::model::load_bundle. The input is manifest.json, then the line
// "--- weights.bin ---", then weights.bin (no such line: all manifest, empty weights); the two
// files are written into this process's scratch directory, which is loaded as the bundle. A
// manifest that parses is loaded a second time with its checksums (target hash, weight CRC-32s)
// made to match, so that mutations reach the checks behind them. Bad input must end in a
// BundleError; a bundle that loads must run on the integer engine (within a size bound).
#include <zlib.h>

#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "qathw/model/bundle.h"
#include "qathw/model/int_engine.h"

using namespace qathw;

namespace {

constexpr std::string_view kSeparator = "\n--- weights.bin ---\n";

void load(std::string_view manifest, std::string_view weights) {
  fuzz::write_scratch("manifest.json", manifest);
  fuzz::write_scratch("weights.bin", weights);
  model::Bundle b;
  try {
    b = model::load_bundle(fuzz::scratch_dir(), nullptr);
  } catch (const model::BundleError&) {
    return;
  }
  // Engines trust a loaded bundle: run one sample where that is cheap (multiply-adds and tensor
  // elements bounded).
  std::size_t work = 0;
  for (const model::Tensor& t : b.graph.tensors) work += t.size();
  for (const model::Op& op : b.graph.ops)
    if (op.type == model::OpType::Linear)
      work += b.graph.tensor(op.output).size() * static_cast<std::size_t>(op.linear.in);
  if (work > (std::size_t{1} << 22)) return;
  std::vector<std::uint8_t> sample(b.features());
  for (std::size_t i = 0; i < sample.size(); ++i) sample[i] = static_cast<std::uint8_t>(i * 37);
  (void)model::IntEngine(b).run(sample.data());
}

// The manifest with its target hash and weight CRC-32s recomputed; nullopt when it is not a JSON
// object or nothing changed.
std::optional<std::string> with_checksums(std::string_view manifest, std::string_view weights) {
  nlohmann::json j = nlohmann::json::parse(manifest, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  const nlohmann::json before = j;
  if (j.contains("target")) {
    try {
      j["target_hash"] = target::content_hash(target::target_from_json(j["target"], "fuzz"));
    } catch (const target::TargetError&) {
    }
  }
  for (const char* list : {"ops", "layers"}) {
    if (!j.contains(list) || !j[list].is_array()) continue;
    for (nlohmann::json& op : j[list]) {
      if (!op.is_object() || !op.contains("weights") || !op["weights"].is_object()) continue;
      nlohmann::json& w = op["weights"];
      if (!w.contains("offset") || !w["offset"].is_number_unsigned() || !w.contains("bytes") ||
          !w["bytes"].is_number_unsigned())
        continue;
      const std::uint64_t offset = w["offset"].get<std::uint64_t>(), bytes = w["bytes"].get<std::uint64_t>();
      if (offset > weights.size() || bytes > weights.size() - offset) continue;
      w["crc32"] = crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(weights.data() + offset),
                         static_cast<uInt>(bytes));
    }
  }
  if (j == before) return std::nullopt;
  return j.dump();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input = fuzz::as_text(data, size);
  const std::size_t cut = input.find(kSeparator);
  const std::string_view manifest = input.substr(0, cut);
  const std::string_view weights = cut == std::string_view::npos ? std::string_view() : input.substr(cut + kSeparator.size());
  load(manifest, weights);
  if (const std::optional<std::string> fixed = with_checksums(manifest, weights)) load(*fixed, weights);
  return 0;
}
