#include "qathw/sweep/sweep_spec.h"

#include <cmath>
#include <limits>
#include <optional>
#include <sstream>
#include <stdexcept>

#include <toml++/toml.h>

#include "qathw/model/model_spec.h"
#include "qathw/util/atomic_file.h"
#include "qathw/util/hash.h"

namespace qathw::sweep {
namespace {

[[noreturn]] void fail(const std::string& origin, const std::string& field, const std::string& what) {
  throw std::runtime_error(origin + ": field '" + field + "': " + what);
}

nlohmann::json to_json_value(const toml::node& n, const std::string& origin, const std::string& field) {
  if (n.is_integer()) return n.as_integer()->get();
  if (n.is_floating_point()) {
    // No target field holds NaN or infinity (and JSON, where points go, has neither).
    const double v = n.as_floating_point()->get();
    if (!std::isfinite(v))
      fail(origin, field,
           std::string("values must be finite numbers, not ") + (std::isnan(v) ? "nan" : v < 0 ? "-inf" : "inf"));
    return v;
  }
  if (n.is_string()) return n.as_string()->get();
  if (n.is_boolean()) return n.as_boolean()->get();
  fail(origin, field, "values must be integers, numbers, strings or booleans");
}

// An axis: a list of values, or {from, to, step} (integers, inclusive).
std::vector<nlohmann::json> axis_values(const toml::node& n, const std::string& origin, const std::string& field) {
  std::vector<nlohmann::json> values;
  if (const toml::array* a = n.as_array()) {
    for (const toml::node& v : *a) values.push_back(to_json_value(v, origin, field));
  } else if (const toml::table* t = n.as_table()) {
    for (const auto& [k, v] : *t)
      if (k != "from" && k != "to" && k != "step")
        fail(origin, field + "." + std::string(k.str()),
             "unknown field; a range has from, to, step (a dotted target field needs quotes: \"array.rows\")");
    const auto from = (*t)["from"].value_exact<std::int64_t>(), to = (*t)["to"].value_exact<std::int64_t>();
    const auto step = t->contains("step") ? (*t)["step"].value_exact<std::int64_t>() : std::optional<std::int64_t>(1);
    if (!from || !to || !step) fail(origin, field, "a range needs integer 'from', 'to' and 'step' (step default 1)");
    if (*step <= 0 || *to < *from) fail(origin, field, "a range needs from <= to and step >= 1");
    const std::uint64_t count = (static_cast<std::uint64_t>(*to) - static_cast<std::uint64_t>(*from)) /
                                static_cast<std::uint64_t>(*step);  // no overflow near the int64 limits
    if (count >= 10000) fail(origin, field, "a range of more than 10000 values");
    for (std::uint64_t i = 0; i <= count; ++i) values.push_back(*from + static_cast<std::int64_t>(i) * *step);
  } else {
    fail(origin, field, "must be a list of values or a range {from, to, step}");
  }
  if (values.empty()) fail(origin, field, "has no values");
  for (std::size_t i = 0; i < values.size(); ++i)
    for (std::size_t j = i + 1; j < values.size(); ++j)
      if (values[i] == values[j]) fail(origin, field, "value " + values[i].dump() + " is listed twice");
  return values;
}

// Sets a dotted field in a target's JSON; the field must exist in the base target.
void set_field(nlohmann::json& target, const std::string& field, const nlohmann::json& value,
               const std::string& origin) {
  const auto dot = field.find('.');
  if (dot == std::string::npos)
    fail(origin, "axes." + field,
         "not a target field: an axis names a field of a target table, \"table.field\" (see docs/targets.md)");
  if (!target.contains(field.substr(0, dot)) ||
      !target[field.substr(0, dot)].contains(field.substr(dot + 1)))
    fail(origin, "axes." + field, "not a target field (see docs/targets.md)");
  target[field.substr(0, dot)][field.substr(dot + 1)] = value;
}

// Where a model reference of the spec is: a built-in name as it is, a path relative to the spec.
std::string model_location(const std::string& ref, const std::filesystem::path& base_dir) {
  return model::is_model_path(ref) ? (base_dir / ref).string() : ref;
}

// A model reference that resolves to a valid model file; errors name the spec's field and the
// model file's.
void check_model(const nlohmann::json& ref, const std::filesystem::path& base_dir, const std::string& origin,
                 const std::string& field) {
  if (!ref.is_string() || ref.get<std::string>().empty())
    fail(origin, field, "must be a model: a built-in name (lenet, ...) or a .toml path");
  try {
    model::resolve_model(model_location(ref.get<std::string>(), base_dir), 10);
  } catch (const std::exception& e) {
    fail(origin, field, e.what());
  }
}

// An optional integer field of table t: absent, the default; present, an integer in [lo, hi].
std::int64_t integer_field(const toml::table& t, const char* key, std::int64_t fallback, std::int64_t lo,
                           std::int64_t hi, const std::string& origin, const std::string& field,
                           const std::string& what) {
  if (!t.contains(key)) return fallback;
  const auto v = t[key].value_exact<std::int64_t>();
  if (!v || *v < lo || *v > hi) fail(origin, field, what);
  return *v;
}

// More points than a sweep can sensibly run (and than expand() should build) is a mistake.
constexpr std::size_t kMaxPoints = 100000;

}  // namespace

SweepSpec parse_sweep(std::string_view toml_text, const std::string& origin, const std::filesystem::path& base_dir) {
  toml::table root;
  try {
    root = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    throw std::runtime_error(origin + ":" + std::to_string(e.source().begin.line) + ": TOML syntax error: " +
                             std::string(e.description()));
  }
  for (const auto& [k, v] : root)
    if (k != "base" && k != "axes" && k != "training" && k != "verify" && k != "synthesis")
      fail(origin, std::string(k.str()), "unknown field; allowed here: base, axes, training, verify, synthesis");
  SweepSpec spec;
  spec.origin = origin;
  spec.base_dir = base_dir;
  if (root.contains("base") && !root["base"].is_string())
    fail(origin, "base", "must be a string: a built-in target name or a .toml path");
  const auto base = root["base"].value<std::string>();
  if (!base) fail(origin, "base", "missing: a built-in target name or a .toml path");
  const bool is_path = base->find('/') != std::string::npos || base->find(".toml") != std::string::npos;
  try {
    spec.base = target::resolve_target(is_path ? (base_dir / *base).string() : *base);
  } catch (const target::TargetError& e) {
    fail(origin, "base", e.what());
  }
  if (root.contains("axes") && !root["axes"].is_table())
    fail(origin, "axes", "must be a table of target fields and their values");
  const toml::table* axes = root["axes"].as_table();
  if (!axes || axes->empty()) fail(origin, "axes", "missing: a table of target fields and their values");
  const nlohmann::json base_json = target::to_json(spec.base);
  for (const auto& [k, v] : *axes) {
    Axis a{std::string(k.str()), axis_values(v, origin, "axes." + std::string(k.str()))};
    if (a.field == kModelAxis) {
      for (const nlohmann::json& m : a.values) check_model(m, base_dir, origin, "axes." + a.field);
    } else {
      nlohmann::json probe = base_json;
      set_field(probe, a.field, a.values.front(), origin);
    }
    spec.axes.push_back(std::move(a));
  }
  std::size_t points = 1;
  for (const Axis& a : spec.axes)
    if ((points *= a.values.size()) > kMaxPoints)
      fail(origin, "axes", "more than " + std::to_string(kMaxPoints) + " points in the cross product of the axes");
  for (const char* table : {"training", "verify", "synthesis"})
    if (root.contains(table) && !root[table].is_table()) fail(origin, table, "must be a table");
  if (const toml::table* t = root["training"].as_table()) {
    for (const auto& [k, v] : *t)
      if (k != "data" && k != "hidden" && k != "model" && k != "epochs" && k != "seed")
        fail(origin, "training." + std::string(k.str()), "unknown field; allowed here: data, hidden, model, epochs, seed");
    if (t->contains("model")) {
      if (t->contains("hidden"))
        fail(origin, "training.hidden", "sets the hidden sizes of the default MLP; with training.model, the model file sets them");
      const auto m = (*t)["model"].value<std::string>();
      check_model(m ? nlohmann::json(*m) : nlohmann::json(), base_dir, origin, "training.model");
      spec.training.model = *m;
    }
    if (t->contains("data") && !(*t)["data"].is_string()) fail(origin, "training.data", "must be a string: a data folder");
    spec.training.data = (*t)["data"].value_or(std::string("/usr/share/datasets/fashion-mnist"));
    if (spec.training.data.empty()) fail(origin, "training.data", "must name a data folder, not the empty string");
    if (t->contains("hidden")) {
      const toml::array* h = (*t)["hidden"].as_array();
      if (!h || h->empty()) fail(origin, "training.hidden", "must be a list of one or more layer sizes");
      spec.training.hidden.clear();
      for (const toml::node& n : *h) {
        const auto size = n.value_exact<std::int64_t>();
        if (!size || *size < 1 || *size > 65536) fail(origin, "training.hidden", "layer sizes must be integers in [1, 65536]");
        spec.training.hidden.push_back(static_cast<int>(*size));
      }
    }
    spec.training.epochs = static_cast<int>(
        integer_field(*t, "epochs", 5, 1, 10000, origin, "training.epochs", "must be an integer in [1, 10000]"));
    spec.training.seed = static_cast<std::uint64_t>(integer_field(
        *t, "seed", 1, 0, std::numeric_limits<std::int64_t>::max(), origin, "training.seed", "must be an integer >= 0"));
  } else {
    spec.training.data = "/usr/share/datasets/fashion-mnist";
  }
  spec.training.data_dir = std::filesystem::path(spec.training.data).is_absolute()
                              ? std::filesystem::path(spec.training.data)
                              : base_dir / spec.training.data;
  if (const toml::table* v = root["verify"].as_table()) {
    for (const auto& [k, n] : *v)
      if (k != "samples") fail(origin, "verify." + std::string(k.str()), "unknown field; allowed here: samples");
    spec.verify_samples = integer_field(*v, "samples", 1000, 1, std::numeric_limits<long>::max(), origin,
                                        "verify.samples", "must be an integer, at least 1");
  }
  if (const toml::table* y = root["synthesis"].as_table()) {
    for (const auto& [k, n] : *y)
      if (k != "flatten") fail(origin, "synthesis." + std::string(k.str()), "unknown field; allowed here: flatten");
    if (y->contains("flatten") && !(*y)["flatten"].is_boolean())
      fail(origin, "synthesis.flatten", "must be true or false");
    spec.synth_flatten = (*y)["flatten"].value_or(false);
  }
  return spec;
}

SweepSpec load_sweep(const std::filesystem::path& path) {
  // A sweep spec is a page of TOML: 1 MiB is far more than any needs (16 MiB of small inline
  // tables took 670 MB once parsed).
  constexpr std::uint64_t kSweepSpecLimit = std::uint64_t{1} << 20;
  std::string text;
  try {
    text = util::read_file(path, kSweepSpecLimit);
  } catch (const util::IoError& e) {
    throw std::runtime_error(e.what());
  }
  return parse_sweep(text, path.string(), path.parent_path());
}

std::vector<Point> expand(const SweepSpec& spec) {
  std::vector<Point> points;
  std::vector<std::size_t> index(spec.axes.size(), 0);
  const nlohmann::json base_json = target::to_json(spec.base);
  const nlohmann::json mlp_training = {{"data", spec.training.data}, {"hidden", spec.training.hidden},
                                       {"epochs", spec.training.epochs}, {"seed", spec.training.seed}};
  for (;;) {
    nlohmann::json t = base_json, overrides = nlohmann::json::object();
    std::string model = spec.training.model;
    for (std::size_t a = 0; a < spec.axes.size(); ++a) {
      if (spec.axes[a].field == kModelAxis)
        model = spec.axes[a].values[index[a]].get<std::string>();
      else
        set_field(t, spec.axes[a].field, spec.axes[a].values[index[a]], spec.origin);
      overrides[spec.axes[a].field] = spec.axes[a].values[index[a]];
    }
    Point p;
    p.overrides = overrides;
    // A model file's network is part of the training settings by its content (an edited file
    // makes new points); the MLP's settings hash as they always have.
    nlohmann::json training = mlp_training;
    if (!model.empty()) {
      p.model = model_location(model, spec.base_dir);
      training.erase("hidden");
      training["model"] = model::to_json(model::resolve_model(p.model, 10));
    }
    try {
      p.target = target::target_from_json(t, spec.origin + " point " + overrides.dump());
    } catch (const target::TargetError& e) {
      throw std::runtime_error(e.what());
    }
    // Area counted module by module is another figure than the flattened netlist's: another point.
    p.hash = util::fnv1a64_hex(target::content_hash(p.target) + training.dump() +
                               (spec.synth_flatten ? "" : "synthesis:by-module"));
    // Training depends on the numeric format (and on the adder-tree width where accumulators can
    // saturate mid-sum), not on rows, SRAM sizes, clock or energy.
    nlohmann::json key = target::to_json(p.target);
    key.erase("name");
    key.erase("description");
    key.erase("memory");
    key.erase("clock");
    key.erase("energy");
    key["array"].erase("rows");
    // With a wrapping accumulator the adder-tree width cannot change a sum (wrap is modular).
    if (p.target.format.overflow == arith::Overflow::Wrap) key["array"].erase("lanes");
    p.training_key = util::fnv1a64_hex(key.dump() + training.dump());
    points.push_back(std::move(p));
    std::size_t a = 0;
    while (a < index.size() && ++index[a] == spec.axes[a].values.size()) index[a++] = 0;
    if (a == index.size()) break;
  }
  return points;
}

}  // namespace qathw::sweep
