// Plots drawn by gnuplot (Debian's gnuplot-nox), run as a subprocess without a shell: one script
// (data inline) drawn once as PNG and once as SVG, each under a temporary name beside its file
// and renamed into place when whole.
#pragma once

#include <filesystem>
#include <string>

namespace qathw::util {

// A gnuplot single-quoted string: a quote inside is doubled, nothing else is interpreted; line
// breaks (which would end the command) become spaces.
std::string gnuplot_string(const std::string& text);

struct PlotFiles {
  std::filesystem::path png, svg;
  int width = 1400, height = 500;  // pixels
  std::string font;                // gnuplot font spec, e.g. ",9"; empty: the terminal's default
};

// Draws `script` (everything but terminal and output) into files.png (pngcairo where this gnuplot
// has it, else png) and files.svg. gnuplot's output goes to `log` when given. Throws
// std::runtime_error with the exit status and the log (or, without one, gnuplot's output) when
// gnuplot fails or cannot be run.
void draw_png_and_svg(const std::string& script, const PlotFiles& files, const std::filesystem::path& log = {});

}  // namespace qathw::util
