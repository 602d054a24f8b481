// Small EGL helpers shared by egl.cc (the probe) and gpu_blit.cc (the blitter): error names, extension lists,
// fourcc names. Header-only; needs <EGL/egl.h> included first (with or without prototypes).
#pragma once
#include <cstdint>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

namespace wlscanout {

inline std::string EglErrorName(EGLint code) {
  switch (code) {
#define WLSCANOUT_EGL_NAME(c) \
  case c:                     \
    return #c;
    WLSCANOUT_EGL_NAME(EGL_SUCCESS)
    WLSCANOUT_EGL_NAME(EGL_NOT_INITIALIZED)
    WLSCANOUT_EGL_NAME(EGL_BAD_ACCESS)
    WLSCANOUT_EGL_NAME(EGL_BAD_ALLOC)
    WLSCANOUT_EGL_NAME(EGL_BAD_ATTRIBUTE)
    WLSCANOUT_EGL_NAME(EGL_BAD_CONFIG)
    WLSCANOUT_EGL_NAME(EGL_BAD_CONTEXT)
    WLSCANOUT_EGL_NAME(EGL_BAD_CURRENT_SURFACE)
    WLSCANOUT_EGL_NAME(EGL_BAD_DISPLAY)
    WLSCANOUT_EGL_NAME(EGL_BAD_MATCH)
    WLSCANOUT_EGL_NAME(EGL_BAD_NATIVE_PIXMAP)
    WLSCANOUT_EGL_NAME(EGL_BAD_NATIVE_WINDOW)
    WLSCANOUT_EGL_NAME(EGL_BAD_PARAMETER)
    WLSCANOUT_EGL_NAME(EGL_BAD_SURFACE)
    WLSCANOUT_EGL_NAME(EGL_CONTEXT_LOST)
#ifdef EGL_BAD_DEVICE_EXT
    WLSCANOUT_EGL_NAME(EGL_BAD_DEVICE_EXT)
#endif
#undef WLSCANOUT_EGL_NAME
    default: {
      char buf[32];
      snprintf(buf, sizeof buf, "0x%04x", static_cast<unsigned>(code));
      return buf;
    }
  }
}

// Extension strings are space-separated names; compare whole names (EGL_EXT_image_dma_buf_import is a prefix of
// EGL_EXT_image_dma_buf_import_modifiers, so substring search would be wrong).
inline std::vector<std::string> SplitNames(const char* list) {
  std::vector<std::string> names;
  if (!list) return names;
  std::istringstream in(list);
  std::string name;
  while (in >> name) names.push_back(name);
  return names;
}

inline bool Has(const std::vector<std::string>& names, const char* name) {
  for (const std::string& n : names)
    if (n == name) return true;
  return false;
}

// A DRM fourcc's four characters, e.g. "XR24" ('?' for unprintable bytes).
inline std::string FourccName(uint32_t fourcc) {
  std::string name;
  for (int i = 0; i < 4; i++) {
    char c = static_cast<char>((fourcc >> (8 * i)) & 0xff);
    name += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  return name;
}

}  // namespace wlscanout
