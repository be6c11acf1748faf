#include "qathw/util/gnuplot.h"

#include <unistd.h>

#include <stdexcept>

#include "qathw/util/process.h"

namespace qathw::util {

namespace fs = std::filesystem;

std::string gnuplot_string(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out += '\'';
    out += (c == '\n' || c == '\r') ? ' ' : c;
  }
  return out + "'";
}

void draw_png_and_svg(const std::string& script, const PlotFiles& files, const fs::path& log) {
  const std::string tag = ".tmp." + std::to_string(::getpid());
  const fs::path png_tmp = files.png.string() + tag, svg_tmp = files.svg.string() + tag;
  const std::string size = " size " + std::to_string(files.width) + "," + std::to_string(files.height);
  const std::string font = files.font.empty() ? "" : " font " + gnuplot_string(files.font);
  const std::string full =
      // pngcairo draws anti-aliased; gnuplot builds without cairo have the libgd png terminal.
      "if (strstrt(GPVAL_TERMINALS, ' pngcairo ') > 0) {\n  set terminal pngcairo" + size + font +
      "\n} else {\n  set terminal png" + size + "\n}\nset output " + gnuplot_string(png_tmp.string()) + "\n" + script +
      "unset output\nset terminal svg" + size + " dynamic" + font + "\nset output " + gnuplot_string(svg_tmp.string()) +
      "\n" + script + "unset output\n";
  const ProgramRun r = run_program({"gnuplot"}, log, full);
  std::error_code ec;
  const auto whole = [&](const fs::path& p) { return fs::is_regular_file(p) && fs::file_size(p, ec) > 0; };
  if (r.status != 0 || !whole(png_tmp) || !whole(svg_tmp)) {
    fs::remove(png_tmp, ec);
    fs::remove(svg_tmp, ec);
    if (r.status == 127) throw std::runtime_error("cannot run gnuplot; install the Debian package gnuplot-nox");
    throw std::runtime_error("gnuplot failed (exit status " + std::to_string(r.status) + ") drawing " +
                             files.png.string() + (log.empty() ? ":\n" + r.output : "; its log: " + log.string()));
  }
  fs::rename(png_tmp, files.png);
  fs::rename(svg_tmp, files.svg);
}

}  // namespace qathw::util
