// The CPU blit: copies rectangles of pixels between two mapped buffers, converting between the 32-bit RGB formats
// and flipping vertically when asked. It is the fallback of the GPU blit (gpu_blit.cc) and gives the same results.
#include <napi.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "args.h"

namespace wlscanout {
namespace {

// Byte positions of R, G, B and A in a little-endian pixel; a < 0: no alpha (the X byte).
struct Layout {
  uint32_t fourcc;
  int bpp;
  int r, g, b, a;
};

constexpr uint32_t Fourcc(char a, char b, char c, char d) {
  return static_cast<uint32_t>(a) | static_cast<uint32_t>(b) << 8 | static_cast<uint32_t>(c) << 16 |
         static_cast<uint32_t>(d) << 24;
}

const Layout kLayouts[] = {
    {Fourcc('X', 'R', '2', '4'), 4, 2, 1, 0, -1},
    {Fourcc('A', 'R', '2', '4'), 4, 2, 1, 0, 3},
    {Fourcc('X', 'B', '2', '4'), 4, 0, 1, 2, -1},
    {Fourcc('A', 'B', '2', '4'), 4, 0, 1, 2, 3},
    {Fourcc('R', 'G', '1', '6'), 2, -1, -1, -1, -1},  // copied as is only
};

const Layout* LayoutOf(uint32_t fourcc) {
  for (const Layout& l : kLayouts)
    if (l.fourcc == fourcc) return &l;
  return nullptr;
}

std::string FourccName(uint32_t f) {
  std::string s;
  for (int i = 0; i < 4; i++) s += static_cast<char>((f >> (8 * i)) & 0xff);
  return s;
}

bool GetLayout(const Napi::CallbackInfo& info, size_t i, const char* name, const Layout** out) {
  int64_t value;
  if (!GetUint(info, i, name, UINT32_MAX, &value)) return false;
  *out = LayoutOf(static_cast<uint32_t>(value));
  if (!*out) {
    Napi::RangeError::New(info.Env(), std::string(name) + " " + FourccName(static_cast<uint32_t>(value)) +
                                          " is not a format the CPU blit knows")
        .ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

void ConvertRow(const uint8_t* src, const Layout& s, uint8_t* dst, const Layout& d, int64_t pixels) {
  for (int64_t i = 0; i < pixels; i++, src += 4, dst += 4) {
    uint8_t r = src[s.r], g = src[s.g], b = src[s.b];
    uint8_t a = s.a >= 0 ? src[s.a] : 0xff;
    dst[d.r] = r;
    dst[d.g] = g;
    dst[d.b] = b;
    dst[d.a >= 0 ? d.a : 3] = a;
  }
}

// copyPixels(src, srcStride, srcFourcc, dst, dstStride, dstFourcc, width, height, rects, yFlip) → bytes written.
// src and dst start at the first pixel; rects is an Int32Array of x, y, w, h quads in source coordinates (null:
// the whole image), clipped to the image. With yFlip, source row y goes to destination row height - 1 - y.
Napi::Value CopyPixels(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t *src, *dst;
  size_t srcLength, dstLength;
  int64_t srcStride, dstStride, width, height;
  const Layout *s, *d;
  bool yFlip;
  if (!GetBytes(info, 0, "src", &src, &srcLength) || !GetSize(info, 1, "srcStride", &srcStride) ||
      !GetLayout(info, 2, "srcFourcc", &s) || !GetBytes(info, 3, "dst", &dst, &dstLength) ||
      !GetSize(info, 4, "dstStride", &dstStride) || !GetLayout(info, 5, "dstFourcc", &d) ||
      !GetUint(info, 6, "width", 65536, &width) || !GetUint(info, 7, "height", 65536, &height) ||
      !GetBool(info, 9, "yFlip", &yFlip))
    return Napi::Value();
  if (s->bpp != d->bpp || (s->r < 0 && s != d)) {
    Napi::RangeError::New(env, "cannot convert " + FourccName(s->fourcc) + " to " + FourccName(d->fourcc))
        .ThrowAsJavaScriptException();
    return Napi::Value();
  }
  if (width == 0 || height == 0) return Napi::Number::New(env, 0);
  const int64_t row = width * s->bpp;
  if (srcStride < row || dstStride < row) {
    Napi::RangeError::New(env, "stride " + std::to_string(srcStride < row ? srcStride : dstStride) + " of the " +
                                   (srcStride < row ? "source" : "destination") + " is less than " +
                                   std::to_string(row) + " bytes for " + std::to_string(width) + " pixels")
        .ThrowAsJavaScriptException();
    return Napi::Value();
  }
  const int64_t need = (height - 1) * srcStride + row, dstNeed = (height - 1) * dstStride + row;
  if (static_cast<int64_t>(srcLength) < need || static_cast<int64_t>(dstLength) < dstNeed) {
    bool source = static_cast<int64_t>(srcLength) < need;
    Napi::RangeError::New(env, std::string(source ? "source" : "destination") + " has " +
                                   std::to_string(source ? srcLength : dstLength) + " bytes, " +
                                   std::to_string(source ? need : dstNeed) + " needed for " + std::to_string(width) +
                                   "x" + std::to_string(height))
        .ThrowAsJavaScriptException();
    return Napi::Value();
  }
  std::vector<int32_t> rects;
  if (info[8].IsNull() || info[8].IsUndefined()) {
    rects = {0, 0, static_cast<int32_t>(width), static_cast<int32_t>(height)};
  } else if (info[8].IsTypedArray() && info[8].As<Napi::TypedArray>().TypedArrayType() == napi_int32_array &&
             info[8].As<Napi::TypedArray>().ElementLength() % 4 == 0) {
    Napi::Int32Array array = info[8].As<Napi::Int32Array>();
    rects.assign(array.Data(), array.Data() + array.ElementLength());
  } else {
    ThrowTypeError(env, "rects must be null or an Int32Array of x, y, width, height quads (got " + Describe(info[8]) + ")");
    return Napi::Value();
  }
  const bool same = s == d;
  double written = 0;
  for (size_t i = 0; i < rects.size(); i += 4) {
    int64_t x0 = std::max<int64_t>(0, rects[i]), y0 = std::max<int64_t>(0, rects[i + 1]);
    int64_t x1 = std::min<int64_t>(width, static_cast<int64_t>(rects[i]) + rects[i + 2]);
    int64_t y1 = std::min<int64_t>(height, static_cast<int64_t>(rects[i + 1]) + rects[i + 3]);
    if (x1 <= x0 || y1 <= y0) continue;
    for (int64_t y = y0; y < y1; y++) {
      const uint8_t* from = src + y * srcStride + x0 * s->bpp;
      uint8_t* to = dst + (yFlip ? height - 1 - y : y) * dstStride + x0 * d->bpp;
      if (same)
        memcpy(to, from, (x1 - x0) * s->bpp);
      else
        ConvertRow(from, *s, to, *d, x1 - x0);
    }
    written += static_cast<double>((x1 - x0) * (y1 - y0) * d->bpp);
  }
  return Napi::Number::New(env, written);
}

}  // namespace

void InitPixelCopy(Napi::Env env, Napi::Object exports) {
  exports.Set("copyPixels", Napi::Function::New(env, CopyPixels, "copyPixels"));
}

}  // namespace wlscanout
