#include "qathw/verify/engine_run_file.h"

#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "qathw/util/atomic_file.h"

namespace qathw::verify {
namespace {

constexpr const char* kMagic = "qat-hw-engine-run 1";

template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

// Reads fixed-size values from the payload, refusing to run past its end.
class Reader {
 public:
  Reader(const std::string& bytes, std::size_t at, std::string file) : bytes_(bytes), at_(at), file_(std::move(file)) {}
  template <typename T>
  T get() {
    if (bytes_.size() - at_ < sizeof(T)) throw std::runtime_error(file_ + ": truncated engine run");
    T v;
    std::memcpy(&v, bytes_.data() + at_, sizeof v);
    at_ += sizeof v;
    return v;
  }
  // A count of elements of `size` bytes each that the rest of the payload can hold.
  std::size_t count(std::size_t size) {
    const auto n = get<std::uint64_t>();
    if (n > (bytes_.size() - at_) / size) throw std::runtime_error(file_ + ": engine run with a count past its end");
    return static_cast<std::size_t>(n);
  }
  // `n` elements into `out`, after count() vouched for them.
  void copy(void* out, std::size_t n) {
    std::memcpy(out, bytes_.data() + at_, n);
    at_ += n;
  }
  bool done() const { return at_ == bytes_.size(); }

 private:
  const std::string& bytes_;
  std::size_t at_;
  std::string file_;
};

}  // namespace

void write_engine_run(const std::filesystem::path& path, const EngineRun& run) {
  const nlohmann::json header = {{"format", kMagic}, {"seconds", run.seconds}, {"stats", run.stats}};
  std::string out = header.dump() + "\n";
  put<std::uint64_t>(out, run.outputs.size());
  for (const model::OpOutputs& sample : run.outputs) {
    put<std::uint64_t>(out, sample.size());
    for (const auto& op : sample) {
      put<std::uint64_t>(out, op.size());
      out.append(reinterpret_cast<const char*>(op.data()), op.size() * sizeof(std::int32_t));
    }
  }
  put<std::uint64_t>(out, run.layer_end.size());
  for (const auto& sample : run.layer_end) {
    put<std::uint64_t>(out, sample.size());
    out.append(reinterpret_cast<const char*>(sample.data()), sample.size() * sizeof(std::uint64_t));
  }
  util::write_file_atomic(path, out);
}

EngineRun read_engine_run(const std::filesystem::path& path) {
  const std::string file = path.string();
  const std::string bytes = util::read_file(path, std::numeric_limits<std::uint64_t>::max());
  const std::size_t newline = bytes.find('\n');
  const nlohmann::json header =
      nlohmann::json::parse(bytes.substr(0, newline == std::string::npos ? 0 : newline), nullptr, false);
  if (newline == std::string::npos || header.is_discarded() || !header.is_object() ||
      header.value("format", "") != kMagic || !header.contains("seconds") || !header["seconds"].is_number())
    throw std::runtime_error(file + ": not an engine run");
  EngineRun run;
  run.seconds = header["seconds"].get<double>();
  run.stats = header.value("stats", nlohmann::json::object());
  Reader in(bytes, newline + 1, file);
  run.outputs.resize(in.count(8));
  for (model::OpOutputs& sample : run.outputs) {
    sample.resize(in.count(8));
    for (auto& op : sample) {
      op.resize(in.count(sizeof(std::int32_t)));
      in.copy(op.data(), op.size() * sizeof(std::int32_t));
    }
  }
  run.layer_end.resize(in.count(8));
  for (auto& sample : run.layer_end) {
    sample.resize(in.count(sizeof(std::uint64_t)));
    in.copy(sample.data(), sample.size() * sizeof(std::uint64_t));
  }
  if (!in.done()) throw std::runtime_error(file + ": bytes after the engine run");
  return run;
}

EngineRun join_slices(std::vector<EngineRun>&& slices) {
  EngineRun all;
  if (slices.empty()) return all;
  all.stats = slices.front().stats;
  std::uint64_t simulated = 0;
  for (EngineRun& s : slices) {
    all.seconds += s.seconds;
    for (auto& o : s.outputs) all.outputs.push_back(std::move(o));
    for (auto& e : s.layer_end) all.layer_end.push_back(std::move(e));
    if (s.stats.contains("simulated_cycles")) simulated += s.stats["simulated_cycles"].get<std::uint64_t>();
  }
  if (all.stats.contains("simulated_cycles")) {
    all.stats["simulated_cycles"] = simulated;
    all.stats["cycles_per_s"] = all.seconds > 0 ? static_cast<double>(simulated) / all.seconds : 0.0;
  }
  return all;
}

}  // namespace qathw::verify
