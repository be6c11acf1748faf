// The built-in targets: the text of targets/*.toml, embedded at build time, parsed on lookup.
#include <string>

#include "builtin_targets.h"
#include "qathw/target/target_spec.h"

namespace qathw::target {

std::vector<std::string> builtin_names() {
  std::vector<std::string> names;
  for (const auto& b : kBuiltinTargets) names.emplace_back(b.name);
  return names;
}

TargetSpec builtin_target(std::string_view name) {
  for (const auto& b : kBuiltinTargets)
    if (b.name == name) return parse_target(b.toml, "built-in:" + std::string(b.name));
  std::string list;
  for (const auto& n : builtin_names()) list += (list.empty() ? "" : ", ") + n;
  throw TargetError("unknown target '" + std::string(name) + "' (built-in targets: " + list +
                    "; or give a path to a .toml file)");
}

TargetSpec resolve_target(const std::string& name_or_path) {
  const bool is_path = name_or_path.find('/') != std::string::npos ||
                       (name_or_path.size() > 5 && name_or_path.substr(name_or_path.size() - 5) == ".toml");
  return is_path ? load_target_file(name_or_path) : builtin_target(name_or_path);
}

}  // namespace qathw::target
