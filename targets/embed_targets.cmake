# Writes OUT: a header holding the text of every built-in target TOML file, so the qat-hw binary
# carries its targets wherever it is installed. The TOML files stay the single source.
# Usage: cmake -DOUT=file.h -DTOML_FILES="a.toml|b.toml" -P embed_targets.cmake
set(body "// Generated from targets/*.toml by targets/embed_targets.cmake. Do not edit.\n#pragma once\n#include <string_view>\n\nnamespace qathw::target {\nstruct BuiltinTarget { std::string_view name; std::string_view toml; };\ninline constexpr BuiltinTarget kBuiltinTargets[] = {\n")
string(REPLACE "|" ";" TOML_FILES "${TOML_FILES}")
foreach(file IN LISTS TOML_FILES)
  get_filename_component(stem "${file}" NAME_WE)
  file(READ "${file}" text)
  string(APPEND body "  {\"${stem}\", R\"qathw_toml(${text})qathw_toml\"},\n")
endforeach()
string(APPEND body "};\n}  // namespace qathw::target\n")
file(WRITE "${OUT}.tmp" "${body}")
file(RENAME "${OUT}.tmp" "${OUT}")
