// Checks of option values beyond what CLI11's own validators do: CLI::Range lets NaN through (every
// comparison with it is false), and an empty string passes wherever text is taken.
#pragma once

#include <cmath>
#include <sstream>
#include <string>

#include <CLI/CLI.hpp>

namespace qathw::cli {

// A finite number in [lo, hi]: refuses nan and inf as well as values out of range.
inline CLI::Validator FiniteRange(double lo, double hi) {
  std::ostringstream range;
  range << "[" << lo << ", " << hi << "]";
  const std::string text = range.str();
  return CLI::Validator(
      [lo, hi, text](std::string& value) -> std::string {
        double x = 0;
        if (!CLI::detail::lexical_cast(value, x)) return "'" + value + "' is not a number";
        if (!std::isfinite(x)) return "'" + value + "' is not a finite number in " + text;
        if (x < lo || x > hi) return "'" + value + "' is not in " + text;
        return {};
      },
      "FINITE in " + text, "FINITE RANGE");
}

// A path: anything but the empty string (which would silently mean the current folder or the
// option's default).
inline const CLI::Validator NonEmptyPath(
    [](std::string& value) -> std::string {
      return value.empty() ? std::string("must name a file or folder, not the empty string") : std::string();
    },
    "PATH", "NON-EMPTY PATH");

}  // namespace qathw::cli
