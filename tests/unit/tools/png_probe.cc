// Looks at a screenshot of a `vtime-trace plot` picture (the render test):
// reads the PNG with libpng and checks what a person would see: a white
// background, the guest's run lines (#1f77b4) drawn over a good part of the
// width, and, with --pause, a grey pause band (#d9d9d9) with run lines on
// both sides of it. Prints what it counted, then "ok" (exit 0) or "not ok"
// with the reason (exit 1).
//   png_probe FILE [--pause]
#include <png.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

int Bad(const std::string& why) {
  std::printf("not ok: %s\n", why.c_str());
  return 1;
}

bool Near(const png_byte* p, int r, int g, int b) {
  return std::abs(p[0] - r) <= 12 && std::abs(p[1] - g) <= 12 && std::abs(p[2] - b) <= 12;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: png_probe FILE [--pause]\n");
    return 2;
  }
  const bool want_pause = argc > 2 && std::string(argv[2]) == "--pause";
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (png_image_begin_read_from_file(&image, argv[1]) == 0) {
    return Bad(std::string(argv[1]) + ": not a PNG libpng can read: " + image.message);
  }
  image.format = PNG_FORMAT_RGB;
  std::vector<png_byte> px(PNG_IMAGE_SIZE(image));
  if (png_image_finish_read(&image, nullptr, px.data(), 0, nullptr) == 0) {
    return Bad(std::string("decoding failed: ") + image.message);
  }
  const int w = static_cast<int>(image.width), h = static_cast<int>(image.height);
  auto at = [&](int x, int y) {
    return &px[(static_cast<std::size_t>(y) * image.width + static_cast<std::size_t>(x)) * 3];
  };
  long white = 0, line = 0, pause = 0;
  std::vector<int> line_cols(static_cast<std::size_t>(w)), pause_cols(static_cast<std::size_t>(w));
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const png_byte* p = at(x, y);
      if (Near(p, 255, 255, 255)) ++white;
      if (Near(p, 0x1f, 0x77, 0xb4)) ++line, ++line_cols[static_cast<std::size_t>(x)];
      if (Near(p, 0xd9, 0xd9, 0xd9)) ++pause, ++pause_cols[static_cast<std::size_t>(x)];
    }
  }
  // Columns with a run line, and the first and last column of the band.
  int cols = 0, band_first = -1, band_last = -1;
  for (int x = 0; x < w; ++x) {
    cols += line_cols[static_cast<std::size_t>(x)] > 0 ? 1 : 0;
    if (pause_cols[static_cast<std::size_t>(x)] > h / 3) {
      if (band_first < 0) band_first = x;
      band_last = x;
    }
  }
  int left_of_band = 0, right_of_band = 0;
  for (int x = 0; x < w; ++x) {
    if (line_cols[static_cast<std::size_t>(x)] == 0 || band_first < 0) continue;
    if (x < band_first) ++left_of_band;
    if (x > band_last) ++right_of_band;
  }
  std::printf("%dx%d: white %ld, run-line pixels %ld in %d columns, pause pixels %ld", w, h, white,
              line, cols, pause);
  if (band_first >= 0) std::printf(", band x %d..%d", band_first, band_last);
  std::printf("\n");
  if (!Near(at(2, 2), 255, 255, 255) || !Near(at(w - 3, h - 3), 255, 255, 255)) {
    return Bad("the corners are not white");
  }
  if (white < static_cast<long>(w) * h / 2) return Bad("less than half the picture is white");
  if (line < 500 || cols < w / 2) return Bad("no run line across the picture");
  if (want_pause) {
    if (band_first < 0) return Bad("no pause band");
    if (left_of_band < 10 || right_of_band < 10) return Bad("no run on both sides of the pause");
  }
  std::printf("ok\n");
  return 0;
}
