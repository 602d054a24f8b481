// EGL shared by egl.cc (the probe) and gpu_blit.cc (the blitter): the one libEGL loader, error names, extension
// lists, fourcc names. Header-only; needs <EGL/egl.h> and <EGL/eglext.h> included first (without prototypes:
// every entry point comes from dlsym or eglGetProcAddress).
#pragma once
#include <dlfcn.h>

#include <cstdint>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

namespace wlscanout {

// Why dlopen(library) failed, for messages: "not found: ..." or "could not be loaded: ...".
inline std::string DlFailure(const char* library) {
  const char* why = dlerror();
  std::string reason = why ? why : library;
  return std::string(reason.find("No such file") != std::string::npos ? "not found: " : "could not be loaded: ") +
         reason;
}

// The libEGL entry points the probe and the blitter use. Core ones come from dlsym, extension ones from
// eglGetProcAddress (null when absent).
struct Egl {
  PFNEGLGETPROCADDRESSPROC GetProcAddress;
  PFNEGLGETERRORPROC GetError;
  PFNEGLQUERYSTRINGPROC QueryString;
  PFNEGLINITIALIZEPROC Initialize;
  PFNEGLTERMINATEPROC Terminate;
  PFNEGLRELEASETHREADPROC ReleaseThread;
  PFNEGLBINDAPIPROC BindAPI;
  PFNEGLCHOOSECONFIGPROC ChooseConfig;
  PFNEGLCREATECONTEXTPROC CreateContext;
  PFNEGLDESTROYCONTEXTPROC DestroyContext;
  PFNEGLMAKECURRENTPROC MakeCurrent;
  PFNEGLGETCURRENTCONTEXTPROC GetCurrentContext;
  PFNEGLGETPLATFORMDISPLAYEXTPROC GetPlatformDisplayEXT;
  PFNEGLQUERYDEVICESEXTPROC QueryDevicesEXT;
  PFNEGLQUERYDEVICESTRINGEXTPROC QueryDeviceStringEXT;
  PFNEGLQUERYDISPLAYATTRIBEXTPROC QueryDisplayAttribEXT;
  PFNEGLQUERYDMABUFFORMATSEXTPROC QueryDmaBufFormatsEXT;
  PFNEGLQUERYDMABUFMODIFIERSEXTPROC QueryDmaBufModifiersEXT;
  PFNEGLCREATEIMAGEKHRPROC CreateImageKHR;
  PFNEGLDESTROYIMAGEKHRPROC DestroyImageKHR;
  PFNEGLCREATESYNCKHRPROC CreateSyncKHR;
  PFNEGLDESTROYSYNCKHRPROC DestroySyncKHR;
  PFNEGLDUPNATIVEFENCEFDANDROIDPROC DupNativeFenceFDANDROID;
  PFNEGLGETDISPLAYDRIVERNAMEPROC GetDisplayDriverName;
};

// Loads libEGL.so.1 once per process (one copy for every translation unit: an inline function's statics are
// shared) and remembers a failure. Never dlclose'd once loaded: EGL implementations keep threads and atexit handlers.
inline const Egl* LoadEgl(std::string* error) {
  static Egl egl;
  static std::string failure;
  static bool tried = false;
  if (tried) {
    *error = failure;
    return failure.empty() ? &egl : nullptr;
  }
  tried = true;
  void* lib = dlopen("libEGL.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    *error = failure = "libEGL " + DlFailure("libEGL.so.1");
    return nullptr;
  }
  bool ok = true;
  auto core = [&](const char* name) {
    void* p = dlsym(lib, name);
    if (!p) ok = false;
    return p;
  };
  egl.GetProcAddress = reinterpret_cast<PFNEGLGETPROCADDRESSPROC>(core("eglGetProcAddress"));
  egl.GetError = reinterpret_cast<PFNEGLGETERRORPROC>(core("eglGetError"));
  egl.QueryString = reinterpret_cast<PFNEGLQUERYSTRINGPROC>(core("eglQueryString"));
  egl.Initialize = reinterpret_cast<PFNEGLINITIALIZEPROC>(core("eglInitialize"));
  egl.Terminate = reinterpret_cast<PFNEGLTERMINATEPROC>(core("eglTerminate"));
  egl.ReleaseThread = reinterpret_cast<PFNEGLRELEASETHREADPROC>(core("eglReleaseThread"));
  egl.BindAPI = reinterpret_cast<PFNEGLBINDAPIPROC>(core("eglBindAPI"));
  egl.ChooseConfig = reinterpret_cast<PFNEGLCHOOSECONFIGPROC>(core("eglChooseConfig"));
  egl.CreateContext = reinterpret_cast<PFNEGLCREATECONTEXTPROC>(core("eglCreateContext"));
  egl.DestroyContext = reinterpret_cast<PFNEGLDESTROYCONTEXTPROC>(core("eglDestroyContext"));
  egl.MakeCurrent = reinterpret_cast<PFNEGLMAKECURRENTPROC>(core("eglMakeCurrent"));
  egl.GetCurrentContext = reinterpret_cast<PFNEGLGETCURRENTCONTEXTPROC>(core("eglGetCurrentContext"));
  if (!ok) {
    *error = failure = "libEGL.so.1 lacks core EGL entry points";
    dlclose(lib);
    return nullptr;
  }
  auto ext = [&](const char* name) { return reinterpret_cast<void*>(egl.GetProcAddress(name)); };
  egl.GetPlatformDisplayEXT = reinterpret_cast<PFNEGLGETPLATFORMDISPLAYEXTPROC>(ext("eglGetPlatformDisplayEXT"));
  egl.QueryDevicesEXT = reinterpret_cast<PFNEGLQUERYDEVICESEXTPROC>(ext("eglQueryDevicesEXT"));
  egl.QueryDeviceStringEXT = reinterpret_cast<PFNEGLQUERYDEVICESTRINGEXTPROC>(ext("eglQueryDeviceStringEXT"));
  egl.QueryDisplayAttribEXT = reinterpret_cast<PFNEGLQUERYDISPLAYATTRIBEXTPROC>(ext("eglQueryDisplayAttribEXT"));
  egl.QueryDmaBufFormatsEXT = reinterpret_cast<PFNEGLQUERYDMABUFFORMATSEXTPROC>(ext("eglQueryDmaBufFormatsEXT"));
  egl.QueryDmaBufModifiersEXT =
      reinterpret_cast<PFNEGLQUERYDMABUFMODIFIERSEXTPROC>(ext("eglQueryDmaBufModifiersEXT"));
  egl.CreateImageKHR = reinterpret_cast<PFNEGLCREATEIMAGEKHRPROC>(ext("eglCreateImageKHR"));
  egl.DestroyImageKHR = reinterpret_cast<PFNEGLDESTROYIMAGEKHRPROC>(ext("eglDestroyImageKHR"));
  egl.CreateSyncKHR = reinterpret_cast<PFNEGLCREATESYNCKHRPROC>(ext("eglCreateSyncKHR"));
  egl.DestroySyncKHR = reinterpret_cast<PFNEGLDESTROYSYNCKHRPROC>(ext("eglDestroySyncKHR"));
  egl.DupNativeFenceFDANDROID =
      reinterpret_cast<PFNEGLDUPNATIVEFENCEFDANDROIDPROC>(ext("eglDupNativeFenceFDANDROID"));
  egl.GetDisplayDriverName = reinterpret_cast<PFNEGLGETDISPLAYDRIVERNAMEPROC>(ext("eglGetDisplayDriverName"));
  return &egl;
}

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
