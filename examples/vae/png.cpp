// PNG output (stb_image_write) and text (stb_easy_font) for the VAE programs' pictures.
#include "common.hpp"

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wpedantic"
#endif
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO_UNUSED
#include <stb/stb_image_write.h>
#include <stb/stb_easy_font.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace vae {

void write_png(const std::string& path, const Picture& p) {
  if (!stbi_write_png(path.c_str(), p.w, p.h, 1, p.px.data(), p.w)) throw UsageError("cannot write " + path);
}

void draw_text(Picture& p, int x, int y, const std::string& s, unsigned char v) {
  static char buffer[64 * 1024];  // stb_easy_font: 4 vertices of 16 bytes per quad
  std::vector<char> text(s.begin(), s.end());
  text.push_back('\0');
  const int quads = stb_easy_font_print(float(x), float(y), text.data(), nullptr, buffer, sizeof buffer);
  for (int q = 0; q < quads; ++q) {
    const float* v0 = reinterpret_cast<const float*>(buffer + q * 64);
    const float* v2 = reinterpret_cast<const float*>(buffer + q * 64 + 32);
    for (int yy = int(v0[1]); yy < int(v2[1]); ++yy)
      for (int xx = int(v0[0]); xx < int(v2[0]); ++xx) p.set(xx, yy, v);
  }
}

}  // namespace vae
