// Feeds model bundles to qathw::model::load_bundle. The input is manifest.json, then the line
// "--- weights.bin ---", then weights.bin (no such line: all manifest, empty weights); the two
// files are written into this process's scratch directory, which is loaded as the bundle. A
// manifest that parses is loaded a second time with its checksums (target hash, weight CRC-32s)
// made to match, so that mutations reach the checks behind them. Bad input must end in a
// BundleError; a bundle that loads must run on the integer engine (within a size bound).
#include <zlib.h>

#include <algorithm>
#include <limits>
#include <random>
#include <utility>
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
  for (const model::Op& op : b.graph.ops) {
    const std::size_t out = b.graph.tensor(op.output).size();
    if (op.type == model::OpType::Linear || op.type == model::OpType::Conv2d)
      work += out * static_cast<std::size_t>(op.linear.in);
    if (op.type == model::OpType::MaxPool || op.type == model::OpType::AvgPool)
      work += out * static_cast<std::size_t>(op.window.kernel_h) * static_cast<std::size_t>(op.window.kernel_w);
  }
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

std::pair<std::string_view, std::string_view> split(std::string_view input) {
  const std::size_t cut = input.find(kSeparator);
  if (cut == std::string_view::npos) return {input, {}};
  return {input.substr(0, cut), input.substr(cut + kSeparator.size())};
}

void collect(nlohmann::json& j, std::vector<nlohmann::json*>& nodes) {
  nodes.push_back(&j);
  if (j.is_structured())
    for (nlohmann::json& child : j) collect(child, nodes);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto [manifest, weights] = split(fuzz::as_text(data, size));
  load(manifest, weights);
  if (const std::optional<std::string> fixed = with_checksums(manifest, weights)) load(*fixed, weights);
  return 0;
}

extern "C" std::size_t LLVMFuzzerMutate(std::uint8_t* data, std::size_t size, std::size_t max_size);

// Byte mutations of a manifest mostly break its JSON syntax, so half the time one value of the
// parsed manifest is changed instead: set to a boundary integer, another type, a string or a
// value found elsewhere in the manifest; an array element or object key removed, repeated or
// swapped. This reaches the graph and requantization checks behind the syntax.
extern "C" std::size_t LLVMFuzzerCustomMutator(std::uint8_t* data, std::size_t size, std::size_t max_size,
                                               unsigned int seed) {
  std::minstd_rand rng(seed);
  const auto [manifest, weights] = split(fuzz::as_text(data, size));
  nlohmann::json j = nlohmann::json::parse(manifest, nullptr, false);
  if (rng() % 2 == 0 || j.is_discarded()) return LLVMFuzzerMutate(data, size, max_size);
  std::vector<nlohmann::json*> nodes;
  collect(j, nodes);
  nlohmann::json& n = *nodes[rng() % nodes.size()];
  const nlohmann::json other = *nodes[rng() % nodes.size()];
  static const nlohmann::json kValues = {0, 1, -1, 2, 7, 8, 15, 16, 24, 63, 64, 255, 256, 8192, 8193, 67108864,
                                         67108865, 2147483647, 2147483648u, 4294967295u, 4294967296u,
                                         9223372036854775807ll, 18446744073709551615ull, -2147483648ll, 0.5,
                                         1e300, nullptr, true, "", "values", "codes", "uint8", "linear",
                                         "quantize", "relu", nlohmann::json::array(), nlohmann::json::object()};
  switch (rng() % 6) {
    case 0: n = kValues[rng() % kValues.size()]; break;
    case 1:  // a neighbour, in unsigned arithmetic (wraps, no overflow)
      if (n.is_number_integer())
        n = static_cast<std::int64_t>(
            (n.is_number_unsigned() ? n.get<std::uint64_t>() : static_cast<std::uint64_t>(n.get<std::int64_t>())) +
            rng() % 5 - 2);
      break;
    case 2: n = other; break;
    case 3:
      if (n.is_array() && !n.empty()) n.erase(rng() % n.size());
      else if (n.is_object() && !n.empty()) n.erase(std::next(n.begin(), static_cast<long>(rng() % n.size())));
      break;
    case 4: if (n.is_array() && !n.empty()) n.push_back(n[rng() % n.size()]); break;
    default:
      if (n.is_array() && n.size() > 1) std::swap(n[rng() % n.size()], n[rng() % n.size()]);
      break;
  }
  const std::string out = j.dump() + std::string(kSeparator) + std::string(weights);
  if (out.size() > max_size) return LLVMFuzzerMutate(data, size, max_size);
  std::copy(out.begin(), out.end(), data);
  return out.size();
}
