// Looks at a screenshot of a `vtime-trace plot` picture (the render test):
// reads the PNG with libpng and checks what a person would see. Always: a
// white background, the plot's frame (a dark rectangle over most of the
// picture, its top in the picture's first fifth), and the guest's run lines (#1f77b4) inside it
// over at least half its width, rising from left to right (guest time grows with host time). With
// --pause, a grey pause band (#d9d9d9) over the frame's height with run lines ending and starting
// at its two edges; with --step-up also, the line right of the band starts well above where it
// ended left of it (the guest's counter jumped across the pause). Prints what it measured, then
// "ok" (exit 0) or "not ok: REASON" (exit 1); 2 for usage.
//   png_probe FILE [--pause] [--step-up]
#include <png.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

int Bad(const std::string& why) {
  std::printf("not ok: %s\n", why.c_str());
  return 1;
}

struct Rgb {
  int r, g, b;
};
constexpr Rgb kWhite{255, 255, 255}, kLine{0x1f, 0x77, 0xb4}, kPause{0xd9, 0xd9, 0xd9};

class Picture {
 public:
  Picture(std::vector<png_byte> px, int w, int h) : px_(std::move(px)), w_(w), h_(h) {}
  int w() const { return w_; }
  int h() const { return h_; }
  // Within 12 of `c` in each channel (anti-aliasing blends edges only).
  bool Is(int x, int y, Rgb c) const {
    const png_byte* p = At(x, y);
    return std::abs(p[0] - c.r) <= 12 && std::abs(p[1] - c.g) <= 12 && std::abs(p[2] - c.b) <= 12;
  }
  bool Dark(int x, int y) const {
    const png_byte* p = At(x, y);
    return p[0] < 140 && p[1] < 140 && p[2] < 140;
  }

 private:
  const png_byte* At(int x, int y) const {
    return &px_[(static_cast<std::size_t>(y) * static_cast<std::size_t>(w_) +
                 static_cast<std::size_t>(x)) *
                3];
  }
  std::vector<png_byte> px_;
  int w_, h_;
};

// The mean row of the run line's pixels in column x between rows top and
// bottom, or -1 where the column has none.
double LineRow(const Picture& p, int x, int top, int bottom) {
  long sum = 0, n = 0;
  for (int y = top; y <= bottom; ++y) {
    if (p.Is(x, y, kLine)) sum += y, ++n;
  }
  return n == 0 ? -1 : static_cast<double>(sum) / static_cast<double>(n);
}

// The line's row in the first column that has one, from x stepping by dx
// (at most `reach` columns).
double NearestLineRow(const Picture& p, int x, int dx, int reach, int top, int bottom) {
  for (int k = 0; k < reach && x >= 0 && x < p.w(); ++k, x += dx) {
    const double r = LineRow(p, x, top, bottom);
    if (r >= 0) return r;
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  bool want_pause = false, want_step_up = false;
  for (int i = 2; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--pause") {
      want_pause = true;
    } else if (a == "--step-up") {
      want_pause = want_step_up = true;
    } else {
      argc = 0;
    }
  }
  if (argc < 2) {
    std::fprintf(stderr, "usage: png_probe FILE [--pause] [--step-up]\n");
    return 2;
  }
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
  const Picture p(std::move(px), static_cast<int>(image.width), static_cast<int>(image.height));
  const int w = p.w(), h = p.h();
  if (w < 320 || h < 240)
    return Bad("the screenshot is " + std::to_string(w) + "x" + std::to_string(h));

  long white = 0;
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) white += p.Is(x, y, kWhite) ? 1 : 0;
  }
  // The frame: the first and last rows dark over half the width, and the
  // first and last columns dark over half the height between them.
  int top = -1, bottom = -1, left = -1, right = -1;
  for (int y = 0; y < h; ++y) {
    int dark = 0;
    for (int x = 0; x < w; ++x) dark += p.Dark(x, y) ? 1 : 0;
    if (dark > w / 2) {
      if (top < 0) top = y;
      bottom = y;
    }
  }
  if (top >= 0) {
    for (int x = 0; x < w; ++x) {
      int dark = 0;
      for (int y = top; y <= bottom; ++y) dark += p.Dark(x, y) ? 1 : 0;
      if (dark > (bottom - top) / 2) {
        if (left < 0) left = x;
        right = x;
      }
    }
  }
  std::printf("%dx%d: white %ld of %ld pixels; frame x %d..%d y %d..%d\n", w, h, white,
              static_cast<long>(w) * h, left, right, top, bottom);
  if (!p.Is(2, 2, kWhite) || !p.Is(w - 3, h - 3, kWhite)) return Bad("the corners are not white");
  if (white < static_cast<long>(w) * h / 2) return Bad("less than half the picture is white");
  if (top < 0 || left < 0 || right - left < w / 2 || bottom - top < h / 3) {
    return Bad("no plot frame over most of the picture");
  }
  // Where the SVG puts it: the top under the title, not pushed down (by an
  // error banner above a partial rendering).
  if (top > h / 5) return Bad("the plot frame starts " + std::to_string(top) + " rows down");
  // Inside the frame (off its edges): run-line columns, band columns.
  const int in_top = top + 3, in_bottom = bottom - 3;
  int line_cols = 0, band_first = -1, band_last = -1;
  long line_px = 0;
  for (int x = left + 3; x <= right - 3; ++x) {
    int line = 0, grey = 0;
    for (int y = in_top; y <= in_bottom; ++y) {
      line += p.Is(x, y, kLine) ? 1 : 0;
      grey += p.Is(x, y, kPause) ? 1 : 0;
    }
    line_px += line;
    line_cols += line > 0 ? 1 : 0;
    // The first band: the first run of columns grey over most of the height.
    const bool band = grey > (in_bottom - in_top) * 6 / 10;
    if (band && band_first < 0) band_first = x;
    if (band && band_first >= 0 && band_last == x - 1) band_last = x;
    if (band && band_first == x) band_last = x;
  }
  const int inner = right - left - 6;
  std::printf("run line: %ld pixels in %d of %d columns", line_px, line_cols, inner);
  if (band_first >= 0) std::printf("; first pause band x %d..%d", band_first, band_last);
  std::printf("\n");
  if (line_px < 500 || line_cols < inner / 2) return Bad("no run line across the plot");
  // Rising: the line's left end lower on the screen than its right end.
  const double first = NearestLineRow(p, left + 3, 1, inner, in_top, in_bottom);
  const double last = NearestLineRow(p, right - 3, -1, inner, in_top, in_bottom);
  std::printf("run line from row %.1f (left) to row %.1f (right)\n", first, last);
  if (!(first - last > (bottom - top) / 4.0)) return Bad("the run line does not rise to the right");
  if (want_pause) {
    if (band_first < 0 || band_last < 0) return Bad("no pause band");
    if (band_last - band_first < 8) return Bad("the pause band is under 8 pixels wide");
    // A run ends at the band's left edge and another starts at its right.
    const double before = NearestLineRow(p, band_first - 1, -1, 4, in_top, in_bottom);
    const double after = NearestLineRow(p, band_last + 1, 1, 4, in_top, in_bottom);
    std::printf("at the band: the line ends at row %.1f, starts again at row %.1f\n", before,
                after);
    if (before < 0 || after < 0) return Bad("no run on both sides of the pause band");
    for (int x = band_first + 2; x <= band_last - 2; ++x) {
      if (LineRow(p, x, in_top, in_bottom) >= 0) return Bad("a run line crosses the pause band");
    }
    if (want_step_up && !(before - after > (bottom - top) / 10.0)) {
      return Bad("the guest's counter does not step up across the pause");
    }
  }
  std::printf("ok\n");
  return 0;
}
