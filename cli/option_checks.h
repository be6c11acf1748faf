// Checks of option values beyond what CLI11's own validators do: CLI::Range lets NaN through (every
// comparison with it is false), and an empty string passes wherever text is taken.
#pragma once

#include <cmath>
#include <cstdint>
#include <sstream>
#include <optional>
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

// A target: a built-in name or a .toml file, not the empty string (which read as a target named "").
inline const CLI::Validator NonEmptyTarget(
    [](std::string& value) -> std::string {
      return value.empty() ? std::string("must name a built-in target or a .toml file, not the empty string")
                           : std::string();
    },
    "TARGET", "NON-EMPTY TARGET");

// A thread count: "auto" or an integer in [1, 1024].
inline const CLI::Validator ThreadCount(
    [](std::string& value) -> std::string {
      const bool digits = !value.empty() && value.size() <= 4 && value.find_first_not_of("0123456789") == std::string::npos;
      if (value == "auto" || (digits && std::stoi(value) >= 1 && std::stoi(value) <= 1024)) return {};
      return "'" + value + "' is neither auto nor a thread count in [1, 1024]";
    },
    "auto|N", "THREAD COUNT");

// A seed: decimal digits only, 0 to 2^64-1. (A plain unsigned option took "-1" as 2^64-1 and
// clamped larger values to it, so different seeds on the command line ran the same.)
inline const CLI::Validator Seed(
    [](std::string& value) -> std::string {
      const std::string bad = "'" + value + "' is not a seed: an integer in [0, 18446744073709551615]";
      if (value.empty() || value.size() > 20 || value.find_first_not_of("0123456789") != std::string::npos) return bad;
      std::uint64_t x = 0;
      for (const char c : value) {
        const auto digit = static_cast<std::uint64_t>(c - '0');
        if (x > (UINT64_MAX - digit) / 10) return bad;
        x = x * 10 + digit;
      }
      return {};
    },
    "SEED", "SEED");

// A static quantizer's calibration: "minmax", or the percentile of magnitudes in (0, 100] the
// initial step covers. Returns the fraction, 1 for minmax; nullopt when `text` is neither.
inline std::optional<double> calibration_fraction(const std::string& text) {
  if (text == "minmax") return 1.0;
  try {
    std::size_t used = 0;
    const double p = std::stod(text, &used);
    if (used == text.size() && p > 0.0 && p <= 100.0) return p / 100.0;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

inline const CLI::Validator Calibration(
    [](std::string& value) -> std::string {
      return calibration_fraction(value) ? std::string()
                                         : "'" + value + "' is neither minmax nor a percentile in (0, 100]";
    },
    "minmax|PERCENTILE", "CALIBRATION");

}  // namespace qathw::cli
