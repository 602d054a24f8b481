// EGL probing without a window system: the surfaceless platform and every EGL device, with what each offers for
// dma-buf import/export and fences. libEGL.so.1 is loaded lazily with dlopen on the first probe (and never
// unloaded), so the addon loads on machines without it; "not available" of any kind is reported as data.
#include <dlfcn.h>
#define EGL_EGL_PROTOTYPES 0  // only the PFN typedefs: every entry point comes from dlsym/eglGetProcAddress
#include <EGL/egl.h>
#include <EGL/eglext.h>
#include <napi.h>

#include <string>
#include <vector>

#include "egl_util.h"

namespace wlscanout {
namespace {

// "<call> failed: <EGL error name>", consuming the thread's EGL error.
std::string Failure(const Egl& egl, const char* call) { return std::string(call) + " failed: " + EglErrorName(egl.GetError()); }

Napi::Array ToArray(Napi::Env env, const std::vector<std::string>& names) {
  Napi::Array array = Napi::Array::New(env, names.size());
  for (uint32_t i = 0; i < names.size(); i++) array.Set(i, Napi::String::New(env, names[i]));
  return array;
}

Napi::Value StringOrNull(Napi::Env env, const char* s) {
  return s ? Napi::Value(Napi::String::New(env, s)) : env.Null();
}

// The display extensions a doctor reports individually.
const char* const kFeatures[] = {
    "EGL_EXT_image_dma_buf_import", "EGL_EXT_image_dma_buf_import_modifiers", "EGL_MESA_image_dma_buf_export",
    "EGL_ANDROID_native_fence_sync", "EGL_KHR_fence_sync", "EGL_KHR_wait_sync",
};

// A device's extensions and DRM node names (null when the device is not a DRM device, e.g. Mesa's software one).
struct DeviceInfo {
  std::vector<std::string> extensions;
  const char* drmDeviceFile = nullptr;
  const char* drmRenderNodeFile = nullptr;
};

DeviceInfo QueryDevice(const Egl& egl, EGLDeviceEXT device) {
  DeviceInfo info;
  if (!egl.QueryDeviceStringEXT) return info;
  info.extensions = SplitNames(egl.QueryDeviceStringEXT(device, EGL_EXTENSIONS));
  if (Has(info.extensions, "EGL_EXT_device_drm"))
    info.drmDeviceFile = egl.QueryDeviceStringEXT(device, EGL_DRM_DEVICE_FILE_EXT);
  if (Has(info.extensions, "EGL_EXT_device_drm_render_node"))
    info.drmRenderNodeFile = egl.QueryDeviceStringEXT(device, EGL_DRM_RENDER_NODE_FILE_EXT);
  egl.GetError();  // a failed string query is reported as null, not left pending
  return info;
}

Napi::Object DeviceObject(Napi::Env env, const DeviceInfo& info) {
  Napi::Object object = Napi::Object::New(env);
  object.Set("extensions", ToArray(env, info.extensions));
  object.Set("drmDeviceFile", StringOrNull(env, info.drmDeviceFile));
  object.Set("drmRenderNodeFile", StringOrNull(env, info.drmRenderNodeFile));
  return object;
}

// eglQueryDmaBufFormatsEXT / eglQueryDmaBufModifiersEXT into entry.dmabufFormats (or entry.dmabufFormatsError).
void QueryFormats(Napi::Env env, const Egl& egl, EGLDisplay dpy, Napi::Object entry) {
  if (!egl.QueryDmaBufFormatsEXT || !egl.QueryDmaBufModifiersEXT) {
    entry.Set("dmabufFormatsError", "eglQueryDmaBufFormatsEXT/eglQueryDmaBufModifiersEXT not found");
    return;
  }
  EGLint count = 0;
  if (!egl.QueryDmaBufFormatsEXT(dpy, 0, nullptr, &count)) {
    entry.Set("dmabufFormatsError", Failure(egl, "eglQueryDmaBufFormatsEXT"));
    return;
  }
  std::vector<EGLint> formats(count > 0 ? count : 0);
  if (count > 0 && !egl.QueryDmaBufFormatsEXT(dpy, count, formats.data(), &count)) {
    entry.Set("dmabufFormatsError", Failure(egl, "eglQueryDmaBufFormatsEXT"));
    return;
  }
  formats.resize(count > 0 ? count : 0);
  Napi::Array list = Napi::Array::New(env, formats.size());
  for (uint32_t i = 0; i < formats.size(); i++) {
    Napi::Object format = Napi::Object::New(env);
    format.Set("fourcc", Napi::Number::New(env, static_cast<uint32_t>(formats[i])));
    format.Set("name", FourccName(static_cast<uint32_t>(formats[i])));
    EGLint n = 0;
    std::vector<EGLuint64KHR> modifiers;
    std::vector<EGLBoolean> externalOnly;
    bool ok = egl.QueryDmaBufModifiersEXT(dpy, formats[i], 0, nullptr, nullptr, &n);
    if (ok && n > 0) {
      modifiers.resize(n);
      externalOnly.resize(n);
      ok = egl.QueryDmaBufModifiersEXT(dpy, formats[i], n, modifiers.data(), externalOnly.data(), &n);
      if (ok) {
        modifiers.resize(n > 0 ? n : 0);
        externalOnly.resize(modifiers.size());
      }
    }
    if (!ok) {
      format.Set("modifiersError", Failure(egl, "eglQueryDmaBufModifiersEXT"));
      modifiers.clear();
      externalOnly.clear();
    }
    Napi::Array mods = Napi::Array::New(env, modifiers.size());
    for (uint32_t j = 0; j < modifiers.size(); j++) {
      Napi::Object mod = Napi::Object::New(env);
      mod.Set("modifier", Napi::BigInt::New(env, static_cast<uint64_t>(modifiers[j])));
      mod.Set("externalOnly", Napi::Boolean::New(env, externalOnly[j] == EGL_TRUE));
      mods.Set(j, mod);
    }
    format.Set("modifiers", mods);
    list.Set(i, format);
  }
  entry.Set("dmabufFormats", list);
}

// Opens, initializes, describes and terminates one display. Failures land in entry.error.
void ProbeDisplay(Napi::Env env, const Egl& egl, const std::vector<std::string>& clientExtensions, EGLenum platform,
                  void* nativeDisplay, Napi::Object entry) {
  if (!egl.GetPlatformDisplayEXT) {
    entry.Set("error", "eglGetPlatformDisplayEXT not available (no EGL_EXT_platform_base)");
    return;
  }
  // With EGL_KHR_display_reference the display is our own reference: eglTerminate then leaves any other user of
  // the same display in this process initialized. Without it, terminating ends every user's initialization.
  std::vector<EGLint> attribs;
  if (Has(clientExtensions, "EGL_KHR_display_reference")) {
    attribs.push_back(EGL_TRACK_REFERENCES_KHR);
    attribs.push_back(EGL_TRUE);
  }
  attribs.push_back(EGL_NONE);
  EGLDisplay dpy = egl.GetPlatformDisplayEXT(platform, nativeDisplay, attribs.data());
  if (dpy == EGL_NO_DISPLAY) {
    entry.Set("error", Failure(egl, "eglGetPlatformDisplayEXT"));
    return;
  }
  EGLint major = 0, minor = 0;
  if (!egl.Initialize(dpy, &major, &minor)) {
    entry.Set("error", Failure(egl, "eglInitialize"));
    return;
  }
  entry.Set("vendor", StringOrNull(env, egl.QueryString(dpy, EGL_VENDOR)));
  entry.Set("version", StringOrNull(env, egl.QueryString(dpy, EGL_VERSION)));
  entry.Set("eglMajor", Napi::Number::New(env, major));
  entry.Set("eglMinor", Napi::Number::New(env, minor));
  entry.Set("clientApis", StringOrNull(env, egl.QueryString(dpy, EGL_CLIENT_APIS)));
  std::vector<std::string> extensions = SplitNames(egl.QueryString(dpy, EGL_EXTENSIONS));
  entry.Set("extensions", ToArray(env, extensions));

  // Mesa's driver name (swrast, kms_swrast, iris, ...) and the device the display runs on, when it says.
  const char* driver = nullptr;
  if (Has(extensions, "EGL_MESA_query_driver") && egl.GetDisplayDriverName) driver = egl.GetDisplayDriverName(dpy);
  entry.Set("driver", StringOrNull(env, driver));
  Napi::Value displayDevice = env.Null();
  EGLAttrib device = 0;
  if (Has(clientExtensions, "EGL_EXT_device_query") && egl.QueryDisplayAttribEXT &&
      egl.QueryDisplayAttribEXT(dpy, EGL_DEVICE_EXT, &device) && device)
    displayDevice = DeviceObject(env, QueryDevice(egl, reinterpret_cast<EGLDeviceEXT>(device)));
  entry.Set("displayDevice", displayDevice);
  egl.GetError();

  Napi::Object features = Napi::Object::New(env);
  for (const char* name : kFeatures) features.Set(name, Napi::Boolean::New(env, Has(extensions, name)));
  entry.Set("features", features);
  if (Has(extensions, "EGL_EXT_image_dma_buf_import_modifiers")) QueryFormats(env, egl, dpy, entry);

  if (!egl.Terminate(dpy)) entry.Set("terminateError", Failure(egl, "eglTerminate"));
}

Napi::Value EglProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object result = Napi::Object::New(env);
  Napi::Array displays = Napi::Array::New(env);
  std::string loadError;
  const Egl* loaded = LoadEgl(&loadError);
  if (!loaded) {
    result.Set("library", env.Null());
    result.Set("error", loadError);
    result.Set("clientExtensions", Napi::Array::New(env));
    result.Set("displays", displays);
    return result;
  }
  const Egl& egl = *loaded;
  result.Set("library", "libEGL.so.1");
  // Client extensions (EGL_EXT_client_extensions): null display; EGL_BAD_DISPLAY when unsupported.
  std::vector<std::string> clientExtensions = SplitNames(egl.QueryString(EGL_NO_DISPLAY, EGL_EXTENSIONS));
  egl.GetError();
  result.Set("clientExtensions", ToArray(env, clientExtensions));
  uint32_t next = 0;

  Napi::Object surfaceless = Napi::Object::New(env);
  surfaceless.Set("platform", "surfaceless");
  if (Has(clientExtensions, "EGL_MESA_platform_surfaceless"))
    ProbeDisplay(env, egl, clientExtensions, EGL_PLATFORM_SURFACELESS_MESA, EGL_DEFAULT_DISPLAY, surfaceless);
  else
    surfaceless.Set("error", "EGL_MESA_platform_surfaceless not supported");
  displays.Set(next++, surfaceless);

  if (Has(clientExtensions, "EGL_EXT_device_enumeration") && egl.QueryDevicesEXT) {
    EGLint count = 0;
    std::vector<EGLDeviceEXT> devices;
    bool ok = egl.QueryDevicesEXT(0, nullptr, &count);
    if (ok && count > 0) {
      devices.resize(count);
      ok = egl.QueryDevicesEXT(count, devices.data(), &count);
      devices.resize(ok && count > 0 ? count : 0);
    }
    if (!ok) result.Set("devicesError", Failure(egl, "eglQueryDevicesEXT"));
    bool platformDevice = Has(clientExtensions, "EGL_EXT_platform_device");
    for (uint32_t i = 0; ok && i < devices.size(); i++) {
      Napi::Object entry = Napi::Object::New(env);
      entry.Set("platform", "device");
      entry.Set("deviceIndex", Napi::Number::New(env, i));
      entry.Set("device", DeviceObject(env, QueryDevice(egl, devices[i])));
      if (platformDevice)
        ProbeDisplay(env, egl, clientExtensions, EGL_PLATFORM_DEVICE_EXT, devices[i], entry);
      else
        entry.Set("error", "EGL_EXT_platform_device not supported");
      displays.Set(next++, entry);
    }
  }
  result.Set("displays", displays);
  egl.ReleaseThread();
  return result;
}

}  // namespace

void InitEgl(Napi::Env env, Napi::Object exports) {
  exports.Set("eglProbe", Napi::Function::New(env, EglProbe, "eglProbe"));
}

}  // namespace wlscanout
