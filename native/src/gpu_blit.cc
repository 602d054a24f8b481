// GpuBlitter: a GLES2 context on one DRM node that imports dma-bufs as EGLImages, uploads CPU pixels into
// textures, draws one image onto another 1:1 (format conversion, y-flip, rects) and allocates dma-bufs with GBM.
// libEGL.so.1, libGLESv2.so.2 and libgbm.so.1 are loaded lazily with dlopen on the first open (and never
// unloaded), so the addon loads on machines without them; the TS side (src/native/gpu-blit.ts) picks the node.
//
// Display: the GBM platform (gbm_create_device on the node, EGL_PLATFORM_GBM_KHR) first, then the EGL device
// platform (the EGL device whose DRM node is this node). Context: GLES2, surfaceless (EGL_KHR_surfaceless_context),
// rendering into a framebuffer object over the destination image.
//
// Seen in the lab VM (Mesa 22.3, lab kernel 6.1 with vgem + vkms, no GPU; lab/tests/gpu-blit.lab.test.ts):
// - GBM platform on vgem's card0 (and on vkms's card1): GBM finds no "vgem"/"vkms" DRI driver ("MESA-LOADER:
//   failed to open vgem" on stderr) and falls back to kms_swrast by itself: no environment variable is needed.
//   EGL reports the driver "kms_swrast" with EGL_EXT_image_dma_buf_import(_modifiers); udmabufs and GBM buffers
//   import, and blits into them are pixel-exact.
// - The render node (renderD128) does NOT work with kms_swrast: the display and even imports succeed, but the
//   driver maps buffers with DRM_IOCTL_MODE_MAP_DUMB, which DRM refuses on render nodes, and llvmpipe then
//   crashes (SIGSEGV) on the first draw. Open() refuses that combination, so the default order (renderD*, card*)
//   ends on the card node.
// - kms_swrast does not check that a dma-buf is large enough for the layout it is given (a too-small stride
//   imported fine), so importDmabuf checks linear single-plane layouts against the dma-buf's size itself.
// - GBM allocations are dumb buffers (linear); gbm_bo_create_with_modifiers fails with ENOSYS, so a modifier
//   list that allows LINEAR falls back to a linear gbm_bo_create.
// - gbm_bo_get_fd exports read-only dma-bufs (no DRM_RDWR: mmap for writing is EACCES), so allocate() exports
//   the GEM handles itself with DRM_IOCTL_PRIME_HANDLE_TO_FD(DRM_CLOEXEC | DRM_RDWR).
// - EGL_ANDROID_native_fence_sync: absent (llvmpipe has no native fences), so blit() ends with glFinish.
// - Timing under TCG: open ~0.5 s (1.5 s for the first in a process), the first blit ~1.4 s (llvmpipe compiles
//   the shaders), later blits ~1-2 ms for 32x32.
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#define EGL_EGL_PROTOTYPES 0  // only the PFN typedefs: every entry point comes from dlsym/eglGetProcAddress
#include <EGL/egl.h>
#include <EGL/eglext.h>
#define GL_GLES_PROTOTYPES 0
#include <GLES2/gl2.h>
#include <GLES2/gl2ext.h>
#include <gbm.h>  // only for types: every gbm_* entry point comes from dlsym
#include <libdrm/drm.h>
#include <napi.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "args.h"
#include "egl_util.h"
#include "ioctl.h"

namespace wlscanout {
namespace {

// ---- libraries -------------------------------------------------------------------------------------------------

struct Gles {
  PFNGLGETERRORPROC GetError;
  PFNGLGETSTRINGPROC GetString;
  PFNGLGENTEXTURESPROC GenTextures;
  PFNGLDELETETEXTURESPROC DeleteTextures;
  PFNGLBINDTEXTUREPROC BindTexture;
  PFNGLACTIVETEXTUREPROC ActiveTexture;
  PFNGLTEXPARAMETERIPROC TexParameteri;
  PFNGLTEXIMAGE2DPROC TexImage2D;
  PFNGLTEXSUBIMAGE2DPROC TexSubImage2D;
  PFNGLPIXELSTOREIPROC PixelStorei;
  PFNGLGENFRAMEBUFFERSPROC GenFramebuffers;
  PFNGLDELETEFRAMEBUFFERSPROC DeleteFramebuffers;
  PFNGLBINDFRAMEBUFFERPROC BindFramebuffer;
  PFNGLFRAMEBUFFERTEXTURE2DPROC FramebufferTexture2D;
  PFNGLFRAMEBUFFERRENDERBUFFERPROC FramebufferRenderbuffer;
  PFNGLCHECKFRAMEBUFFERSTATUSPROC CheckFramebufferStatus;
  PFNGLGENRENDERBUFFERSPROC GenRenderbuffers;
  PFNGLDELETERENDERBUFFERSPROC DeleteRenderbuffers;
  PFNGLBINDRENDERBUFFERPROC BindRenderbuffer;
  PFNGLCREATESHADERPROC CreateShader;
  PFNGLSHADERSOURCEPROC ShaderSource;
  PFNGLCOMPILESHADERPROC CompileShader;
  PFNGLGETSHADERIVPROC GetShaderiv;
  PFNGLGETSHADERINFOLOGPROC GetShaderInfoLog;
  PFNGLDELETESHADERPROC DeleteShader;
  PFNGLCREATEPROGRAMPROC CreateProgram;
  PFNGLATTACHSHADERPROC AttachShader;
  PFNGLBINDATTRIBLOCATIONPROC BindAttribLocation;
  PFNGLLINKPROGRAMPROC LinkProgram;
  PFNGLGETPROGRAMIVPROC GetProgramiv;
  PFNGLGETPROGRAMINFOLOGPROC GetProgramInfoLog;
  PFNGLDELETEPROGRAMPROC DeleteProgram;
  PFNGLUSEPROGRAMPROC UseProgram;
  PFNGLGETUNIFORMLOCATIONPROC GetUniformLocation;
  PFNGLUNIFORM1IPROC Uniform1i;
  PFNGLUNIFORM1FPROC Uniform1f;
  PFNGLVERTEXATTRIBPOINTERPROC VertexAttribPointer;
  PFNGLENABLEVERTEXATTRIBARRAYPROC EnableVertexAttribArray;
  PFNGLBINDBUFFERPROC BindBuffer;
  PFNGLDRAWARRAYSPROC DrawArrays;
  PFNGLVIEWPORTPROC Viewport;
  PFNGLDISABLEPROC Disable;
  PFNGLFINISHPROC Finish;
  PFNGLFLUSHPROC Flush;
  // GL_OES_EGL_image (null when absent).
  PFNGLEGLIMAGETARGETTEXTURE2DOESPROC EGLImageTargetTexture2DOES;
  PFNGLEGLIMAGETARGETRENDERBUFFERSTORAGEOESPROC EGLImageTargetRenderbufferStorageOES;
};

struct Gbm {
  decltype(&::gbm_create_device) create_device;
  decltype(&::gbm_device_destroy) device_destroy;
  decltype(&::gbm_bo_create) bo_create;
  decltype(&::gbm_bo_create_with_modifiers) bo_create_with_modifiers;  // may be null
  decltype(&::gbm_bo_destroy) bo_destroy;
  decltype(&::gbm_bo_get_plane_count) bo_get_plane_count;
  decltype(&::gbm_bo_get_fd) bo_get_fd;
  decltype(&::gbm_bo_get_fd_for_plane) bo_get_fd_for_plane;  // may be null (GBM before Mesa 21)
  decltype(&::gbm_bo_get_handle_for_plane) bo_get_handle_for_plane;  // may be null
  decltype(&::gbm_bo_get_stride_for_plane) bo_get_stride_for_plane;
  decltype(&::gbm_bo_get_offset) bo_get_offset;
  decltype(&::gbm_bo_get_modifier) bo_get_modifier;
};

// Each loader runs once per process; the libraries are never dlclose'd (EGL keeps threads and atexit handlers).
// libEGL's is LoadEgl (egl_util.h), shared with the probe.

// GL entry points: from libGLESv2.so.2 when it is there, else through eglGetProcAddress (EGL 1.5 /
// EGL_KHR_get_all_proc_addresses resolve core GL functions too).
const Gles* LoadGles(const Egl& egl, std::string* error) {
  static Gles gl;
  static std::string failure;
  static bool tried = false;
  if (tried) {
    *error = failure;
    return failure.empty() ? &gl : nullptr;
  }
  tried = true;
  void* lib = dlopen("libGLESv2.so.2", RTLD_NOW | RTLD_LOCAL);
  std::string missing;
  auto get = [&](const char* name, bool required) {
    void* p = lib ? dlsym(lib, name) : nullptr;
    if (!p) p = reinterpret_cast<void*>(egl.GetProcAddress(name));
    if (!p && required) missing += (missing.empty() ? "" : ", ") + std::string(name);
    return p;
  };
#define GL_FN(field, name) gl.field = reinterpret_cast<decltype(gl.field)>(get(name, true))
  GL_FN(GetError, "glGetError");
  GL_FN(GetString, "glGetString");
  GL_FN(GenTextures, "glGenTextures");
  GL_FN(DeleteTextures, "glDeleteTextures");
  GL_FN(BindTexture, "glBindTexture");
  GL_FN(ActiveTexture, "glActiveTexture");
  GL_FN(TexParameteri, "glTexParameteri");
  GL_FN(TexImage2D, "glTexImage2D");
  GL_FN(TexSubImage2D, "glTexSubImage2D");
  GL_FN(PixelStorei, "glPixelStorei");
  GL_FN(GenFramebuffers, "glGenFramebuffers");
  GL_FN(DeleteFramebuffers, "glDeleteFramebuffers");
  GL_FN(BindFramebuffer, "glBindFramebuffer");
  GL_FN(FramebufferTexture2D, "glFramebufferTexture2D");
  GL_FN(FramebufferRenderbuffer, "glFramebufferRenderbuffer");
  GL_FN(CheckFramebufferStatus, "glCheckFramebufferStatus");
  GL_FN(GenRenderbuffers, "glGenRenderbuffers");
  GL_FN(DeleteRenderbuffers, "glDeleteRenderbuffers");
  GL_FN(BindRenderbuffer, "glBindRenderbuffer");
  GL_FN(CreateShader, "glCreateShader");
  GL_FN(ShaderSource, "glShaderSource");
  GL_FN(CompileShader, "glCompileShader");
  GL_FN(GetShaderiv, "glGetShaderiv");
  GL_FN(GetShaderInfoLog, "glGetShaderInfoLog");
  GL_FN(DeleteShader, "glDeleteShader");
  GL_FN(CreateProgram, "glCreateProgram");
  GL_FN(AttachShader, "glAttachShader");
  GL_FN(BindAttribLocation, "glBindAttribLocation");
  GL_FN(LinkProgram, "glLinkProgram");
  GL_FN(GetProgramiv, "glGetProgramiv");
  GL_FN(GetProgramInfoLog, "glGetProgramInfoLog");
  GL_FN(DeleteProgram, "glDeleteProgram");
  GL_FN(UseProgram, "glUseProgram");
  GL_FN(GetUniformLocation, "glGetUniformLocation");
  GL_FN(Uniform1i, "glUniform1i");
  GL_FN(Uniform1f, "glUniform1f");
  GL_FN(VertexAttribPointer, "glVertexAttribPointer");
  GL_FN(EnableVertexAttribArray, "glEnableVertexAttribArray");
  GL_FN(BindBuffer, "glBindBuffer");
  GL_FN(DrawArrays, "glDrawArrays");
  GL_FN(Viewport, "glViewport");
  GL_FN(Disable, "glDisable");
  GL_FN(Finish, "glFinish");
  GL_FN(Flush, "glFlush");
#undef GL_FN
  gl.EGLImageTargetTexture2DOES =
      reinterpret_cast<PFNGLEGLIMAGETARGETTEXTURE2DOESPROC>(get("glEGLImageTargetTexture2DOES", false));
  gl.EGLImageTargetRenderbufferStorageOES = reinterpret_cast<PFNGLEGLIMAGETARGETRENDERBUFFERSTORAGEOESPROC>(
      get("glEGLImageTargetRenderbufferStorageOES", false));
  if (!missing.empty()) {
    *error = failure = std::string(lib ? "libGLESv2.so.2" : "libGLESv2.so.2 (" + DlFailure("libGLESv2.so.2") +
                                             ") and eglGetProcAddress") +
                       " lack " + missing;
    return nullptr;
  }
  return &gl;
}

// libgbm is optional: without it there is no GBM platform and no allocate().
const Gbm* LoadGbm(std::string* error) {
  static Gbm gbm;
  static std::string failure;
  static bool tried = false;
  if (tried) {
    *error = failure;
    return failure.empty() ? &gbm : nullptr;
  }
  tried = true;
  void* lib = dlopen("libgbm.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    *error = failure = "libgbm " + DlFailure("libgbm.so.1");
    return nullptr;
  }
  std::string missing;
  auto get = [&](const char* name, bool required) {
    void* p = dlsym(lib, name);
    if (!p && required) missing += (missing.empty() ? "" : ", ") + std::string(name);
    return p;
  };
#define GBM_FN(field, required) gbm.field = reinterpret_cast<decltype(gbm.field)>(get("gbm_" #field, required))
  GBM_FN(create_device, true);
  GBM_FN(device_destroy, true);
  GBM_FN(bo_create, true);
  GBM_FN(bo_create_with_modifiers, false);
  GBM_FN(bo_destroy, true);
  GBM_FN(bo_get_plane_count, true);
  GBM_FN(bo_get_fd, true);
  GBM_FN(bo_get_fd_for_plane, false);
  GBM_FN(bo_get_handle_for_plane, false);
  GBM_FN(bo_get_stride_for_plane, true);
  GBM_FN(bo_get_offset, true);
  GBM_FN(bo_get_modifier, true);
#undef GBM_FN
  if (!missing.empty()) {
    *error = failure = "libgbm.so.1 lacks " + missing;
    return nullptr;
  }
  return &gbm;
}

// ---- formats ---------------------------------------------------------------------------------------------------

constexpr uint32_t Fourcc(char a, char b, char c, char d) {
  return static_cast<uint32_t>(a) | static_cast<uint32_t>(b) << 8 | static_cast<uint32_t>(c) << 16 |
         static_cast<uint32_t>(d) << 24;
}
constexpr uint32_t kXRGB8888 = Fourcc('X', 'R', '2', '4');
constexpr uint32_t kARGB8888 = Fourcc('A', 'R', '2', '4');
constexpr uint32_t kXBGR8888 = Fourcc('X', 'B', '2', '4');
constexpr uint32_t kABGR8888 = Fourcc('A', 'B', '2', '4');
constexpr uint64_t kModLinear = 0;
constexpr uint64_t kModInvalid = 0x00ffffffffffffffULL;

bool HasAlpha(uint32_t fourcc) {
  return fourcc != kXRGB8888 && fourcc != kXBGR8888 && fourcc != Fourcc('X', 'R', '3', '0') &&
         fourcc != Fourcc('X', 'B', '3', '0') && fourcc != Fourcc('R', 'G', '1', '6') &&
         fourcc != Fourcc('B', 'G', '2', '4') && fourcc != Fourcc('R', 'G', '2', '4');
}

std::string Hex(uint64_t value) {
  char buf[24];
  snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(value));
  return buf;
}

std::string DescribeImage(uint32_t width, uint32_t height, uint32_t fourcc) {
  return std::to_string(width) + "x" + std::to_string(height) + " " + FourccName(fourcc);
}

// Bytes per pixel of the single-plane formats whose linear layout import() checks; 0 for the others.
uint32_t BytesPerPixel(uint32_t fourcc) {
  switch (fourcc) {
    case Fourcc('X', 'R', '2', '4'): case Fourcc('A', 'R', '2', '4'): case Fourcc('X', 'B', '2', '4'):
    case Fourcc('A', 'B', '2', '4'): case Fourcc('R', 'X', '2', '4'): case Fourcc('R', 'A', '2', '4'):
    case Fourcc('B', 'X', '2', '4'): case Fourcc('B', 'A', '2', '4'): case Fourcc('X', 'R', '3', '0'):
    case Fourcc('A', 'R', '3', '0'): case Fourcc('X', 'B', '3', '0'): case Fourcc('A', 'B', '3', '0'):
      return 4;
    case Fourcc('R', 'G', '2', '4'): case Fourcc('B', 'G', '2', '4'):
      return 3;
    case Fourcc('R', 'G', '1', '6'): case Fourcc('B', 'G', '1', '6'):
      return 2;
    case Fourcc('X', 'R', '4', 'H'): case Fourcc('A', 'R', '4', 'H'): case Fourcc('X', 'B', '4', 'H'):
    case Fourcc('A', 'B', '4', 'H'):
      return 8;
    default:
      return 0;
  }
}

// What an fd is, from /proc/self/fd (e.g. "/memfd:frame (deleted)", "anon_inode:dmabuf", "/dmabuf:").
std::string FdTarget(int fd) {
  char link[64], target[256];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof target - 1);
  if (n < 0) return "";
  target[n] = 0;
  return target;
}

std::string GlErrorName(GLenum code) {
  switch (code) {
    case GL_NO_ERROR: return "GL_NO_ERROR";
    case GL_INVALID_ENUM: return "GL_INVALID_ENUM";
    case GL_INVALID_VALUE: return "GL_INVALID_VALUE";
    case GL_INVALID_OPERATION: return "GL_INVALID_OPERATION";
    case GL_INVALID_FRAMEBUFFER_OPERATION: return "GL_INVALID_FRAMEBUFFER_OPERATION";
    case GL_OUT_OF_MEMORY: return "GL_OUT_OF_MEMORY";
    default: return Hex(code);
  }
}

// ---- shaders ---------------------------------------------------------------------------------------------------

const char* const kVertexShader = R"(
attribute vec2 a_pos;
attribute vec2 a_uv;
varying highp vec2 v_uv;
void main() {
  v_uv = a_uv;
  gl_Position = vec4(a_pos, 0.0, 1.0);
}
)";

// u_opaque: 1.0 for sources without alpha (their X byte may hold anything), which then draw alpha 1. SAMPLER is
// defined by the line put before it: the 2D and the external-image programs differ only there.
const std::string kFragmentShaderBody = R"(
#ifdef GL_FRAGMENT_PRECISION_HIGH
precision highp float;
#else
precision mediump float;
#endif
varying highp vec2 v_uv;
uniform SAMPLER u_tex;
uniform float u_opaque;
void main() {
  vec4 c = texture2D(u_tex, v_uv);
  gl_FragColor = vec4(c.rgb, max(c.a, u_opaque));
}
)";
const std::string kFragmentShader2D = "#define SAMPLER sampler2D\n" + kFragmentShaderBody;
const std::string kFragmentShaderExternal =
    "#extension GL_OES_EGL_image_external : require\n#define SAMPLER samplerExternalOES\n" + kFragmentShaderBody;

struct Program {
  GLuint id = 0;
  GLint opaque = -1;
};

// ---- the blitter -----------------------------------------------------------------------------------------------

struct Image {
  uint32_t width = 0, height = 0, fourcc = 0;
  EGLImageKHR eglImage = EGL_NO_IMAGE_KHR;  // dmabuf imports
  GLuint texture = 0;                      // uploads; imports once sampled
  GLenum textureTarget = GL_TEXTURE_2D;
  GLuint renderbuffer = 0;  // imports once drawn into
  GLuint framebuffer = 0;
};

// Displays from the EGL device platform are shared per device in libEGL: count our users so that closing one
// blitter does not terminate another's display. (GBM displays are one per gbm_device, i.e. per blitter.)
std::map<EGLDisplay, int>& DisplayUsers() {
  static std::map<EGLDisplay, int> users;
  return users;
}

class GpuBlitter : public Napi::ObjectWrap<GpuBlitter> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "GpuBlitter",
                       {InstanceMethod<&GpuBlitter::ImportDmabuf>("importDmabuf"),
                        InstanceMethod<&GpuBlitter::Upload>("upload"), InstanceMethod<&GpuBlitter::Blit>("blit"),
                        InstanceMethod<&GpuBlitter::Allocate>("allocate"),
                        InstanceMethod<&GpuBlitter::DestroyImage>("destroyImage"),
                        InstanceMethod<&GpuBlitter::Close>("close")});
  }

  // new GpuBlitter(devicePath): throws an Error saying what is missing when no context can be made.
  GpuBlitter(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GpuBlitter>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) {
      ThrowTypeError(env, "device must be a string (got " + Describe(info[0]) + ")");
      return;
    }
    device_ = info[0].As<Napi::String>().Utf8Value();
    std::string error;
    if (!Open(&error)) {
      Teardown();
      Napi::Error::New(env, "GpuBlitter on " + device_ + ": " + error).ThrowAsJavaScriptException();
      return;
    }
    Napi::Object object = Napi::Object::New(env);
    object.Set("device", device_);
    object.Set("driver", driver_);
    object.Set("platform", platform_);
    object.Set("nativeFenceSync", Napi::Boolean::New(env, nativeFence_));
    object.Set("importModifiers", Napi::Boolean::New(env, importModifiers_));
    object.Set("gbm", Napi::Boolean::New(env, gbmDevice_ != nullptr));
    info.This().As<Napi::Object>().DefineProperty(Napi::PropertyDescriptor::Value("info", object, napi_enumerable));
  }

  ~GpuBlitter() override { Teardown(); }

 private:
  // ---- open / close ----

  bool Open(std::string* error) {
    fd_ = open(device_.c_str(), O_RDWR | O_CLOEXEC);
    if (fd_ < 0) {
      *error = "cannot open it: " + std::string(strerror(errno));
      return false;
    }
    drm_version_t version = {};
    if (RetryIoctl(fd_, DRM_IOCTL_VERSION, &version) < 0) {
      *error = "not a DRM device (DRM_IOCTL_VERSION failed: " + std::string(strerror(errno)) + ")";
      return false;
    }
    egl_ = LoadEgl(error);
    if (!egl_) return false;
    const Egl& egl = *egl_;
    std::vector<std::string> client = SplitNames(egl.QueryString(EGL_NO_DISPLAY, EGL_EXTENSIONS));
    egl.GetError();
    if (!egl.GetPlatformDisplayEXT) {
      *error = "eglGetPlatformDisplayEXT not available (no EGL_EXT_platform_base)";
      return false;
    }
    std::string gbmError, gbmPlatformError, devicePlatformError;
    gbm_ = LoadGbm(&gbmError);
    if (gbm_) {
      gbmDevice_ = gbm_->create_device(fd_);
      if (!gbmDevice_) gbmError = "gbm_create_device failed: " + std::string(strerror(errno));
    }
    // 1. The GBM platform on this node.
    if (!gbmDevice_) {
      gbmPlatformError = gbmError;
    } else if (!Has(client, "EGL_KHR_platform_gbm") && !Has(client, "EGL_MESA_platform_gbm")) {
      gbmPlatformError = "EGL_KHR_platform_gbm not supported";
    } else {
      dpy_ = egl.GetPlatformDisplayEXT(EGL_PLATFORM_GBM_KHR, gbmDevice_, nullptr);
      if (dpy_ == EGL_NO_DISPLAY) {
        gbmPlatformError = EglFailure("eglGetPlatformDisplayEXT(EGL_PLATFORM_GBM_KHR)");
      } else if (!egl.Initialize(dpy_, nullptr, nullptr)) {
        gbmPlatformError = EglFailure("eglInitialize(GBM)");
        dpy_ = EGL_NO_DISPLAY;
      } else {
        platform_ = "gbm";
      }
    }
    // 2. The EGL device platform: the device whose DRM node is this one.
    if (dpy_ == EGL_NO_DISPLAY) {
      if (!OpenDeviceDisplay(client, &devicePlatformError)) {
        *error = "no EGL display: GBM platform: " + gbmPlatformError + "; device platform: " + devicePlatformError;
        return false;
      }
      platform_ = "device";
    }
    DisplayUsers()[dpy_]++;

    std::vector<std::string> extensions = SplitNames(egl.QueryString(dpy_, EGL_EXTENSIONS));
    if (Has(extensions, "EGL_MESA_query_driver") && egl.GetDisplayDriverName) {
      const char* name = egl.GetDisplayDriverName(dpy_);
      if (name) driver_ = name;
    }
    egl.GetError();
    auto lacks = [&](const char* what) {
      *error = "the EGL display (" + platform_ + " platform, driver " + (driver_.empty() ? "unknown" : driver_) +
               ") lacks " + what;
      return false;
    };
    if (!Has(extensions, "EGL_EXT_image_dma_buf_import")) return lacks("EGL_EXT_image_dma_buf_import");
    // kms_swrast reaches every dma-buf through DRM dumb-buffer ioctls (MODE_MAP_DUMB, CREATE_DUMB), which DRM
    // refuses on render nodes: it would import buffers there, then crash drawing from an unmapped one.
    struct stat node;
    if (driver_ == "kms_swrast" && fstat(fd_, &node) == 0 && (minor(node.st_rdev) >> 6) == 2) {
      *error = "kms_swrast (software rendering) cannot map buffers through a render node (DRM refuses "
               "DRM_IOCTL_MODE_MAP_DUMB there): use the card node of the same device";
      return false;
    }
    if (!egl.CreateImageKHR || !egl.DestroyImageKHR ||
        (!Has(extensions, "EGL_KHR_image_base") && !Has(extensions, "EGL_KHR_image")))
      return lacks("EGL_KHR_image_base");
    if (!Has(extensions, "EGL_KHR_surfaceless_context")) return lacks("EGL_KHR_surfaceless_context");
    importModifiers_ = Has(extensions, "EGL_EXT_image_dma_buf_import_modifiers");
    nativeFence_ = Has(extensions, "EGL_ANDROID_native_fence_sync") && egl.CreateSyncKHR && egl.DestroySyncKHR &&
                   egl.DupNativeFenceFDANDROID;

    if (!egl.BindAPI(EGL_OPENGL_ES_API)) {
      *error = EglFailure("eglBindAPI(EGL_OPENGL_ES_API)");
      return false;
    }
    EGLConfig config = EGL_NO_CONFIG_KHR;
    if (!Has(extensions, "EGL_KHR_no_config_context") && !Has(extensions, "EGL_MESA_configless_context")) {
      const EGLint want[] = {EGL_RENDERABLE_TYPE, EGL_OPENGL_ES2_BIT, EGL_NONE};
      EGLint count = 0;
      if (!egl.ChooseConfig(dpy_, want, &config, 1, &count) || count < 1) {
        *error = count < 1 ? "no EGL config for OpenGL ES 2" : EglFailure("eglChooseConfig");
        return false;
      }
    }
    const EGLint contextAttribs[] = {EGL_CONTEXT_CLIENT_VERSION, 2, EGL_NONE};
    context_ = egl.CreateContext(dpy_, config, EGL_NO_CONTEXT, contextAttribs);
    if (context_ == EGL_NO_CONTEXT) {
      *error = EglFailure("eglCreateContext(OpenGL ES 2)");
      return false;
    }
    if (!egl.MakeCurrent(dpy_, EGL_NO_SURFACE, EGL_NO_SURFACE, context_)) {
      *error = EglFailure("eglMakeCurrent(surfaceless)");
      return false;
    }
    gl_ = LoadGles(egl, error);
    if (!gl_) return false;
    const Gles& gl = *gl_;
    const char* renderer = reinterpret_cast<const char*>(gl.GetString(GL_RENDERER));
    if (driver_.empty()) driver_ = renderer ? renderer : "unknown";
    std::vector<std::string> glExtensions = SplitNames(reinterpret_cast<const char*>(gl.GetString(GL_EXTENSIONS)));
    if (!Has(glExtensions, "GL_OES_EGL_image") || !gl.EGLImageTargetTexture2DOES ||
        !gl.EGLImageTargetRenderbufferStorageOES) {
      *error = std::string("the GL context (") + (renderer ? renderer : "?") + ") lacks GL_OES_EGL_image";
      return false;
    }
    bgraUpload_ = Has(glExtensions, "GL_EXT_texture_format_BGRA8888");
    unpackRowLength_ = Has(glExtensions, "GL_EXT_unpack_subimage");
    if (!Compile(kFragmentShader2D.c_str(), &program2D_, error)) return false;
    if (Has(glExtensions, "GL_OES_EGL_image_external")) {
      std::string ignored;  // without it, external-only imports cannot be sampled (reported when one is)
      Compile(kFragmentShaderExternal.c_str(), &programExternal_, &ignored);
    }
    gl.Disable(GL_BLEND);
    gl.Disable(GL_DEPTH_TEST);
    gl.Disable(GL_SCISSOR_TEST);
    gl.PixelStorei(GL_UNPACK_ALIGNMENT, 4);
    return true;
  }

  bool OpenDeviceDisplay(const std::vector<std::string>& client, std::string* error) {
    const Egl& egl = *egl_;
    if (!Has(client, "EGL_EXT_platform_device") || !egl.QueryDevicesEXT || !egl.QueryDeviceStringEXT) {
      *error = "EGL_EXT_platform_device not supported";
      return false;
    }
    EGLint count = 0;
    if (!egl.QueryDevicesEXT(0, nullptr, &count)) {
      *error = EglFailure("eglQueryDevicesEXT");
      return false;
    }
    std::vector<EGLDeviceEXT> devices(count > 0 ? count : 0);
    if (count > 0 && !egl.QueryDevicesEXT(count, devices.data(), &count)) {
      *error = EglFailure("eglQueryDevicesEXT");
      return false;
    }
    struct stat want;
    if (fstat(fd_, &want) != 0) {
      *error = "fstat failed: " + std::string(strerror(errno));
      return false;
    }
    std::string seen;
    for (EGLint i = 0; i < count; i++) {
      std::vector<std::string> extensions = SplitNames(egl.QueryDeviceStringEXT(devices[i], EGL_EXTENSIONS));
      const char* files[2] = {nullptr, nullptr};
      if (Has(extensions, "EGL_EXT_device_drm"))
        files[0] = egl.QueryDeviceStringEXT(devices[i], EGL_DRM_DEVICE_FILE_EXT);
      if (Has(extensions, "EGL_EXT_device_drm_render_node"))
        files[1] = egl.QueryDeviceStringEXT(devices[i], EGL_DRM_RENDER_NODE_FILE_EXT);
      egl.GetError();
      bool match = false;
      for (const char* file : files) {
        struct stat st;
        if (!file) continue;
        seen += (seen.empty() ? "" : ", ") + std::string(file);
        if (stat(file, &st) == 0 && st.st_rdev == want.st_rdev) match = true;
      }
      if (!match) continue;
      dpy_ = egl.GetPlatformDisplayEXT(EGL_PLATFORM_DEVICE_EXT, devices[i], nullptr);
      if (dpy_ == EGL_NO_DISPLAY) {
        *error = EglFailure("eglGetPlatformDisplayEXT(EGL_PLATFORM_DEVICE_EXT)");
        return false;
      }
      if (!egl.Initialize(dpy_, nullptr, nullptr)) {
        *error = EglFailure("eglInitialize(device)");
        dpy_ = EGL_NO_DISPLAY;
        return false;
      }
      return true;
    }
    *error = "no EGL device has this DRM node (devices' nodes: " + (seen.empty() ? "none" : seen) + ")";
    return false;
  }

  bool Compile(const char* fragmentSource, Program* program, std::string* error) {
    const Gles& gl = *gl_;
    auto shader = [&](GLenum type, const char* source) -> GLuint {
      GLuint id = gl.CreateShader(type);
      gl.ShaderSource(id, 1, &source, nullptr);
      gl.CompileShader(id);
      GLint ok = 0;
      gl.GetShaderiv(id, GL_COMPILE_STATUS, &ok);
      if (!ok) {
        char log[1024] = "";
        gl.GetShaderInfoLog(id, sizeof log, nullptr, log);
        *error = std::string("shader compilation failed: ") + log;
        gl.DeleteShader(id);
        return 0;
      }
      return id;
    };
    GLuint vs = shader(GL_VERTEX_SHADER, kVertexShader);
    if (!vs) return false;
    GLuint fs = shader(GL_FRAGMENT_SHADER, fragmentSource);
    if (!fs) {
      gl.DeleteShader(vs);
      return false;
    }
    GLuint id = gl.CreateProgram();
    gl.AttachShader(id, vs);
    gl.AttachShader(id, fs);
    gl.BindAttribLocation(id, 0, "a_pos");
    gl.BindAttribLocation(id, 1, "a_uv");
    gl.LinkProgram(id);
    gl.DeleteShader(vs);
    gl.DeleteShader(fs);
    GLint ok = 0;
    gl.GetProgramiv(id, GL_LINK_STATUS, &ok);
    if (!ok) {
      char log[1024] = "";
      gl.GetProgramInfoLog(id, sizeof log, nullptr, log);
      *error = std::string("shader program link failed: ") + log;
      gl.DeleteProgram(id);
      return false;
    }
    gl.UseProgram(id);
    gl.Uniform1i(gl.GetUniformLocation(id, "u_tex"), 0);
    program->id = id;
    program->opaque = gl.GetUniformLocation(id, "u_opaque");
    return true;
  }

  // Releases everything; safe on a half-opened blitter and more than once.
  void Teardown() {
    if (egl_ && context_ != EGL_NO_CONTEXT && MakeCurrent()) {
      for (auto& entry : images_) FreeImage(&entry.second);
      if (program2D_.id) gl_->DeleteProgram(program2D_.id);
      if (programExternal_.id) gl_->DeleteProgram(programExternal_.id);
    } else if (egl_ && dpy_ != EGL_NO_DISPLAY) {
      for (auto& entry : images_)
        if (entry.second.eglImage != EGL_NO_IMAGE_KHR) egl_->DestroyImageKHR(dpy_, entry.second.eglImage);
    }
    images_.clear();
    program2D_ = programExternal_ = Program();
    if (egl_ && dpy_ != EGL_NO_DISPLAY) {
      if (context_ != EGL_NO_CONTEXT) {
        if (egl_->GetCurrentContext() == context_)
          egl_->MakeCurrent(dpy_, EGL_NO_SURFACE, EGL_NO_SURFACE, EGL_NO_CONTEXT);
        egl_->DestroyContext(dpy_, context_);
      }
      auto& users = DisplayUsers();
      auto it = users.find(dpy_);
      if (it == users.end() || --it->second <= 0) {
        if (it != users.end()) users.erase(it);
        egl_->Terminate(dpy_);
      }
      egl_->GetError();
    }
    context_ = EGL_NO_CONTEXT;
    dpy_ = EGL_NO_DISPLAY;
    if (gbmDevice_) gbm_->device_destroy(gbmDevice_);
    gbmDevice_ = nullptr;
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  bool MakeCurrent() {
    if (egl_->GetCurrentContext() == context_) return true;
    return egl_->MakeCurrent(dpy_, EGL_NO_SURFACE, EGL_NO_SURFACE, context_);
  }

  void FreeImage(Image* image) {
    const Gles& gl = *gl_;
    if (image->framebuffer) gl.DeleteFramebuffers(1, &image->framebuffer);
    if (image->renderbuffer) gl.DeleteRenderbuffers(1, &image->renderbuffer);
    if (image->texture) gl.DeleteTextures(1, &image->texture);
    if (image->eglImage != EGL_NO_IMAGE_KHR) egl_->DestroyImageKHR(dpy_, image->eglImage);
    *image = Image();
  }

  std::string EglFailure(const std::string& call) { return call + " failed: " + EglErrorName(egl_->GetError()); }

  // Throws "GpuBlitter on DEVICE is closed" (and returns false) after close(); otherwise makes the context current.
  bool Ready(Napi::Env env) {
    if (dpy_ == EGL_NO_DISPLAY) {
      Napi::Error::New(env, "GpuBlitter on " + device_ + " is closed").ThrowAsJavaScriptException();
      return false;
    }
    if (!MakeCurrent()) {
      Napi::Error::New(env, EglFailure("eglMakeCurrent")).ThrowAsJavaScriptException();
      return false;
    }
    return true;
  }

  Image* FindImage(Napi::Env env, const Napi::Value& value, const char* name) {
    int64_t id;
    if (!value.IsNumber() || (id = value.As<Napi::Number>().Int64Value()) <= 0 ||
        value.As<Napi::Number>().DoubleValue() != static_cast<double>(id)) {
      ThrowTypeError(env, std::string(name) + " must be an image id (got " + Describe(value) + ")");
      return nullptr;
    }
    auto it = images_.find(static_cast<uint32_t>(id));
    if (it == images_.end()) {
      Napi::Error::New(env, std::string(name) + " (image " + std::to_string(id) + ") was destroyed")
          .ThrowAsJavaScriptException();
      return nullptr;
    }
    return &it->second;
  }

  Napi::Value AddImage(Napi::Env env, const Image& image) {
    uint32_t id = nextId_++;
    images_[id] = image;
    return Napi::Number::New(env, id);
  }

  // ---- importDmabuf(width, height, fourcc, modifier: bigint, planes: {fd, offset, stride}[]) -> id ----

  Napi::Value ImportDmabuf(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int64_t width, height, fourcc;
    if (!GetUint(info, 0, "width", 16384, &width) || !GetUint(info, 1, "height", 16384, &height) ||
        !GetUint(info, 2, "fourcc", UINT32_MAX, &fourcc))
      return Napi::Value();
    if (!info[3].IsBigInt()) {
      ThrowTypeError(env, "modifier must be a bigint (got " + Describe(info[3]) + ")");
      return Napi::Value();
    }
    bool lossless = false;
    uint64_t modifier = info[3].As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) {
      Napi::RangeError::New(env, "modifier must fit in 64 bits (got " + Describe(info[3]) + ")")
          .ThrowAsJavaScriptException();
      return Napi::Value();
    }
    if (!info[4].IsArray() || info[4].As<Napi::Array>().Length() < 1 || info[4].As<Napi::Array>().Length() > 4) {
      ThrowTypeError(env, "planes must be an array of 1 to 4 {fd, offset, stride} (got " +
                              Describe(info[4]) + ")");
      return Napi::Value();
    }
    if (!Ready(env)) return Napi::Value();
    const std::string what = DescribeImage(width, height, fourcc) + " modifier " + Hex(modifier);
    if (width == 0 || height == 0) {
      Napi::RangeError::New(env, "cannot import an empty dmabuf (" + what + ")").ThrowAsJavaScriptException();
      return Napi::Value();
    }
    bool explicitModifier = modifier != kModInvalid;
    if (explicitModifier && !importModifiers_ && modifier != kModLinear) {
      Napi::Error::New(env, "cannot import " + what + ": modifiers need EGL_EXT_image_dma_buf_import_modifiers")
          .ThrowAsJavaScriptException();
      return Napi::Value();
    }
    explicitModifier = explicitModifier && importModifiers_;
    static const EGLint kPlaneAttribs[4][5] = {
        {EGL_DMA_BUF_PLANE0_FD_EXT, EGL_DMA_BUF_PLANE0_OFFSET_EXT, EGL_DMA_BUF_PLANE0_PITCH_EXT,
         EGL_DMA_BUF_PLANE0_MODIFIER_LO_EXT, EGL_DMA_BUF_PLANE0_MODIFIER_HI_EXT},
        {EGL_DMA_BUF_PLANE1_FD_EXT, EGL_DMA_BUF_PLANE1_OFFSET_EXT, EGL_DMA_BUF_PLANE1_PITCH_EXT,
         EGL_DMA_BUF_PLANE1_MODIFIER_LO_EXT, EGL_DMA_BUF_PLANE1_MODIFIER_HI_EXT},
        {EGL_DMA_BUF_PLANE2_FD_EXT, EGL_DMA_BUF_PLANE2_OFFSET_EXT, EGL_DMA_BUF_PLANE2_PITCH_EXT,
         EGL_DMA_BUF_PLANE2_MODIFIER_LO_EXT, EGL_DMA_BUF_PLANE2_MODIFIER_HI_EXT},
        {EGL_DMA_BUF_PLANE3_FD_EXT, EGL_DMA_BUF_PLANE3_OFFSET_EXT, EGL_DMA_BUF_PLANE3_PITCH_EXT,
         EGL_DMA_BUF_PLANE3_MODIFIER_LO_EXT, EGL_DMA_BUF_PLANE3_MODIFIER_HI_EXT},
    };
    std::vector<EGLint> attribs = {EGL_WIDTH, static_cast<EGLint>(width), EGL_HEIGHT, static_cast<EGLint>(height),
                                   EGL_LINUX_DRM_FOURCC_EXT, static_cast<EGLint>(fourcc)};
    Napi::Array planes = info[4].As<Napi::Array>();
    std::vector<int> planeFds;
    for (uint32_t i = 0; i < planes.Length(); i++) {
      Napi::Value plane = planes.Get(i);
      std::string name = "planes[" + std::to_string(i) + "]";
      if (!plane.IsObject()) {
        ThrowTypeError(env, name + " must be an object {fd, offset, stride} (got " + Describe(plane) + ")");
        return Napi::Value();
      }
      const char* keys[3] = {"fd", "offset", "stride"};
      EGLint values[3];
      for (int k = 0; k < 3; k++) {
        Napi::Value v = plane.As<Napi::Object>().Get(keys[k]);
        double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
        if (!v.IsNumber() || d != static_cast<double>(static_cast<int64_t>(d)) || d < 0 || d > INT32_MAX) {
          ThrowTypeError(env, name + "." + keys[k] + " must be an integer in [0, 2147483647] (got " +
                                  Describe(v) + ")");
          return Napi::Value();
        }
        values[k] = static_cast<EGLint>(d);
      }
      planeFds.push_back(values[0]);
      // A linear single-plane image must fit its dma-buf: software drivers (kms_swrast) do not check, and would
      // read or write past the end of the mapping.
      uint32_t cpp = BytesPerPixel(static_cast<uint32_t>(fourcc));
      if (cpp && i == 0 && (modifier == kModLinear || modifier == kModInvalid)) {
        uint64_t row = static_cast<uint64_t>(width) * cpp;
        if (static_cast<uint64_t>(values[2]) < row) {
          Napi::RangeError::New(env, "cannot import " + what + ": stride " + std::to_string(values[2]) +
                                         " is less than a row (" + std::to_string(row) + " bytes)")
              .ThrowAsJavaScriptException();
          return Napi::Value();
        }
        struct stat st;
        uint64_t end = static_cast<uint64_t>(values[1]) + static_cast<uint64_t>(values[2]) * (height - 1) + row;
        if (fstat(values[0], &st) == 0 && st.st_size > 0 && end > static_cast<uint64_t>(st.st_size)) {
          Napi::RangeError::New(env, "cannot import " + what + ": offset " + std::to_string(values[1]) +
                                         " and stride " + std::to_string(values[2]) + " need " + std::to_string(end) +
                                         " bytes, fd " + std::to_string(values[0]) + " has " +
                                         std::to_string(st.st_size))
              .ThrowAsJavaScriptException();
          return Napi::Value();
        }
      }
      for (int k = 0; k < 3; k++) {
        attribs.push_back(kPlaneAttribs[i][k]);
        attribs.push_back(values[k]);
      }
      if (explicitModifier) {
        attribs.push_back(kPlaneAttribs[i][3]);
        attribs.push_back(static_cast<EGLint>(modifier & 0xffffffff));
        attribs.push_back(kPlaneAttribs[i][4]);
        attribs.push_back(static_cast<EGLint>(modifier >> 32));
      }
    }
    attribs.push_back(EGL_NONE);
    // The fds are borrowed: EGL takes its own references (the driver imports them into GEM handles).
    EGLImageKHR image = egl_->CreateImageKHR(dpy_, EGL_NO_CONTEXT, EGL_LINUX_DMA_BUF_EXT, nullptr, attribs.data());
    if (image == EGL_NO_IMAGE_KHR) {
      std::string message = EglFailure("eglCreateImageKHR") + " for " + what;
      for (int fd : planeFds) {
        std::string target = FdTarget(fd);
        if (target.empty())
          message += " (fd " + std::to_string(fd) + " is not open)";
        else if (target.rfind("/dmabuf:", 0) != 0 && target.rfind("anon_inode:dmabuf", 0) != 0)
          message += " (fd " + std::to_string(fd) + " is not a dma-buf: " + target + ")";
      }
      Napi::Error::New(env, message).ThrowAsJavaScriptException();
      return Napi::Value();
    }
    Image result;
    result.width = static_cast<uint32_t>(width);
    result.height = static_cast<uint32_t>(height);
    result.fourcc = static_cast<uint32_t>(fourcc);
    result.eglImage = image;
    return AddImage(env, result);
  }

  // ---- upload(bytes, width, height, stride, fourcc) -> id ----

  Napi::Value Upload(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint8_t* data;
    size_t length;
    int64_t width, height, stride, fourcc;
    if (!GetBytes(info, 0, "bytes", &data, &length) || !GetUint(info, 1, "width", 16384, &width) ||
        !GetUint(info, 2, "height", 16384, &height) || !GetUint(info, 3, "stride", INT32_MAX, &stride) ||
        !GetUint(info, 4, "fourcc", UINT32_MAX, &fourcc))
      return Napi::Value();
    std::string what = DescribeImage(width, height, fourcc);
    GLenum format;
    if (fourcc == kXRGB8888 || fourcc == kARGB8888) {
      format = GL_BGRA_EXT;  // little-endian B, G, R, A bytes
    } else if (fourcc == kXBGR8888 || fourcc == kABGR8888) {
      format = GL_RGBA;  // R, G, B, A bytes
    } else {
      Napi::RangeError::New(env, "cannot upload " + what +
                                     ": the format must be XRGB8888, ARGB8888, XBGR8888 or ABGR8888")
          .ThrowAsJavaScriptException();
      return Napi::Value();
    }
    if (width == 0 || height == 0) {
      Napi::RangeError::New(env, "cannot upload an empty image (" + what + ")").ThrowAsJavaScriptException();
      return Napi::Value();
    }
    if (stride < width * 4) {
      Napi::RangeError::New(env, "stride " + std::to_string(stride) + " is less than a row of " + what + " (" +
                                     std::to_string(width * 4) + " bytes)")
          .ThrowAsJavaScriptException();
      return Napi::Value();
    }
    uint64_t needed = static_cast<uint64_t>(stride) * (height - 1) + width * 4;
    if (length < needed) {
      Napi::RangeError::New(env, "bytes holds " + std::to_string(length) + " bytes, " + what + " with stride " +
                                     std::to_string(stride) + " needs " + std::to_string(needed))
          .ThrowAsJavaScriptException();
      return Napi::Value();
    }
    if (!Ready(env)) return Napi::Value();
    if (format == GL_BGRA_EXT && !bgraUpload_) {
      Napi::Error::New(env, "cannot upload " + what + ": the GL context lacks GL_EXT_texture_format_BGRA8888")
          .ThrowAsJavaScriptException();
      return Napi::Value();
    }
    const Gles& gl = *gl_;
    gl.GetError();
    Image image;
    image.width = static_cast<uint32_t>(width);
    image.height = static_cast<uint32_t>(height);
    image.fourcc = static_cast<uint32_t>(fourcc);
    gl.GenTextures(1, &image.texture);
    gl.BindTexture(GL_TEXTURE_2D, image.texture);
    SetSampling(GL_TEXTURE_2D);
    bool rowLength = stride != width * 4 && unpackRowLength_ && stride % 4 == 0;
    if (stride == width * 4 || rowLength) {
      if (rowLength) gl.PixelStorei(GL_UNPACK_ROW_LENGTH_EXT, static_cast<GLint>(stride / 4));
      gl.TexImage2D(GL_TEXTURE_2D, 0, format, width, height, 0, format, GL_UNSIGNED_BYTE, data);
      if (rowLength) gl.PixelStorei(GL_UNPACK_ROW_LENGTH_EXT, 0);
    } else {  // row by row
      gl.TexImage2D(GL_TEXTURE_2D, 0, format, width, height, 0, format, GL_UNSIGNED_BYTE, nullptr);
      for (int64_t y = 0; y < height; y++)
        gl.TexSubImage2D(GL_TEXTURE_2D, 0, 0, y, width, 1, format, GL_UNSIGNED_BYTE, data + y * stride);
    }
    GLenum glError = gl.GetError();
    if (glError != GL_NO_ERROR) {
      FreeImage(&image);
      Napi::Error::New(env, "glTexImage2D failed: " + GlErrorName(glError) + " for " + what)
          .ThrowAsJavaScriptException();
      return Napi::Value();
    }
    return AddImage(env, image);
  }

  void SetSampling(GLenum target) {
    const Gles& gl = *gl_;
    gl.TexParameteri(target, GL_TEXTURE_MIN_FILTER, GL_NEAREST);
    gl.TexParameteri(target, GL_TEXTURE_MAG_FILTER, GL_NEAREST);
    gl.TexParameteri(target, GL_TEXTURE_WRAP_S, GL_CLAMP_TO_EDGE);
    gl.TexParameteri(target, GL_TEXTURE_WRAP_T, GL_CLAMP_TO_EDGE);
  }

  // A texture to sample the image from: GL_TEXTURE_2D, or GL_TEXTURE_EXTERNAL_OES when the driver can only
  // import it as external.
  bool SourceTexture(Image* image, std::string* error) {
    if (image->texture) return true;
    const Gles& gl = *gl_;
    for (GLenum target : {GLenum(GL_TEXTURE_2D), GLenum(GL_TEXTURE_EXTERNAL_OES)}) {
      if (target == GL_TEXTURE_EXTERNAL_OES && !programExternal_.id) break;
      gl.GetError();
      GLuint texture;
      gl.GenTextures(1, &texture);
      gl.BindTexture(target, texture);
      gl.EGLImageTargetTexture2DOES(target, image->eglImage);
      GLenum glError = gl.GetError();
      if (glError == GL_NO_ERROR) {
        SetSampling(target);
        image->texture = texture;
        image->textureTarget = target;
        return true;
      }
      gl.DeleteTextures(1, &texture);
      *error = "glEGLImageTargetTexture2DOES(" + std::string(target == GL_TEXTURE_2D ? "GL_TEXTURE_2D" :
                                                 "GL_TEXTURE_EXTERNAL_OES") + ") failed: " + GlErrorName(glError);
    }
    return false;
  }

  // A framebuffer that draws into the image: a renderbuffer over the EGLImage, or the upload's texture.
  bool TargetFramebuffer(Image* image, std::string* error) {
    if (image->framebuffer) return true;
    const Gles& gl = *gl_;
    gl.GetError();
    GLuint framebuffer, renderbuffer = 0;
    gl.GenFramebuffers(1, &framebuffer);
    gl.BindFramebuffer(GL_FRAMEBUFFER, framebuffer);
    if (image->eglImage != EGL_NO_IMAGE_KHR) {
      gl.GenRenderbuffers(1, &renderbuffer);
      gl.BindRenderbuffer(GL_RENDERBUFFER, renderbuffer);
      gl.EGLImageTargetRenderbufferStorageOES(GL_RENDERBUFFER, image->eglImage);
      GLenum glError = gl.GetError();
      if (glError != GL_NO_ERROR) {
        *error = "glEGLImageTargetRenderbufferStorageOES failed: " + GlErrorName(glError);
        gl.DeleteRenderbuffers(1, &renderbuffer);
        gl.DeleteFramebuffers(1, &framebuffer);
        return false;
      }
      gl.FramebufferRenderbuffer(GL_FRAMEBUFFER, GL_COLOR_ATTACHMENT0, GL_RENDERBUFFER, renderbuffer);
    } else {
      gl.FramebufferTexture2D(GL_FRAMEBUFFER, GL_COLOR_ATTACHMENT0, GL_TEXTURE_2D, image->texture, 0);
    }
    GLenum status = gl.CheckFramebufferStatus(GL_FRAMEBUFFER);
    if (status != GL_FRAMEBUFFER_COMPLETE) {
      *error = "the framebuffer is incomplete (glCheckFramebufferStatus " + Hex(status) + ")";
      if (renderbuffer) gl.DeleteRenderbuffers(1, &renderbuffer);
      gl.DeleteFramebuffers(1, &framebuffer);
      return false;
    }
    image->framebuffer = framebuffer;
    image->renderbuffer = renderbuffer;
    return true;
  }

  // ---- blit(src, dst, yFlip, rects: number[] (x, y, w, h, ...) | null) -> fence fd or -1 ----

  Napi::Value Blit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bool yFlip;
    if (!GetBool(info, 2, "yFlip", &yFlip)) return Napi::Value();
    if (!info[3].IsNull() && !info[3].IsArray()) {
      ThrowTypeError(env, "rects must be an array of x, y, width, height numbers or null (got " +
                              Describe(info[3]) + ")");
      return Napi::Value();
    }
    if (!Ready(env)) return Napi::Value();
    Image* src = FindImage(env, info[0], "src");
    if (!src) return Napi::Value();
    Image* dst = FindImage(env, info[1], "dst");
    if (!dst) return Napi::Value();
    std::string srcWhat = DescribeImage(src->width, src->height, src->fourcc);
    std::string dstWhat = DescribeImage(dst->width, dst->height, dst->fourcc);
    if (src == dst) {
      Napi::Error::New(env, "cannot blit an image (" + srcWhat + ") onto itself").ThrowAsJavaScriptException();
      return Napi::Value();
    }
    if (src->width != dst->width || src->height != dst->height) {
      Napi::RangeError::New(env, "blit needs images of the same size: src is " + srcWhat + ", dst is " + dstWhat)
          .ThrowAsJavaScriptException();
      return Napi::Value();
    }
    const double W = src->width, H = src->height;
    // Rects, clipped to the image; all of it when null.
    std::vector<double> rects;
    if (info[3].IsNull()) {
      rects = {0, 0, W, H};
    } else {
      Napi::Array array = info[3].As<Napi::Array>();
      if (array.Length() % 4 != 0) {
        ThrowTypeError(env, "rects must hold 4 numbers per rect (got " + std::to_string(array.Length()) + ")");
        return Napi::Value();
      }
      for (uint32_t i = 0; i < array.Length(); i += 4) {
        double r[4];
        for (uint32_t k = 0; k < 4; k++) {
          Napi::Value v = array.Get(i + k);
          r[k] = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
          if (!(r[k] == std::trunc(r[k]) && std::fabs(r[k]) <= kMaxSafeInteger)) {
            ThrowTypeError(env, "rect " + std::to_string(i / 4) + " must have integer x, y, width, height (got " +
                                    Describe(v) + ")");
            return Napi::Value();
          }
        }
        double x0 = std::max(0.0, r[0]), y0 = std::max(0.0, r[1]);
        double x1 = std::min(W, r[0] + r[2]), y1 = std::min(H, r[1] + r[3]);
        if (x1 <= x0 || y1 <= y0) continue;
        rects.insert(rects.end(), {x0, y0, x1 - x0, y1 - y0});
      }
    }
    std::string error;
    if (!SourceTexture(src, &error)) {
      Napi::Error::New(env, "cannot sample src (" + srcWhat + "): " + error).ThrowAsJavaScriptException();
      return Napi::Value();
    }
    if (!TargetFramebuffer(dst, &error)) {
      Napi::Error::New(env, "cannot draw into dst (" + dstWhat + "): " + error).ThrowAsJavaScriptException();
      return Napi::Value();
    }
    const Gles& gl = *gl_;
    if (!rects.empty()) {
      // Two triangles per rect: a = (x, y) in source pixels samples (x/W, y/H) and lands at (x, y), or at
      // (x, H - y) flipped. Both textures and framebuffers keep the image's first row at coordinate 0.
      std::vector<GLfloat> vertices;
      vertices.reserve(rects.size() / 4 * 6 * 4);
      for (size_t i = 0; i < rects.size(); i += 4) {
        double x0 = rects[i], y0 = rects[i + 1], x1 = x0 + rects[i + 2], y1 = y0 + rects[i + 3];
        const double corners[6][2] = {{x0, y0}, {x1, y0}, {x0, y1}, {x1, y0}, {x1, y1}, {x0, y1}};
        for (const auto& c : corners) {
          double dy = yFlip ? H - c[1] : c[1];
          vertices.push_back(static_cast<GLfloat>(c[0] / W * 2 - 1));
          vertices.push_back(static_cast<GLfloat>(dy / H * 2 - 1));
          vertices.push_back(static_cast<GLfloat>(c[0] / W));
          vertices.push_back(static_cast<GLfloat>(c[1] / H));
        }
      }
      gl.GetError();
      gl.BindFramebuffer(GL_FRAMEBUFFER, dst->framebuffer);
      gl.Viewport(0, 0, dst->width, dst->height);
      const Program& program = src->textureTarget == GL_TEXTURE_2D ? program2D_ : programExternal_;
      gl.UseProgram(program.id);
      gl.Uniform1f(program.opaque, HasAlpha(src->fourcc) ? 0.0f : 1.0f);
      gl.ActiveTexture(GL_TEXTURE0);
      gl.BindTexture(src->textureTarget, src->texture);
      gl.BindBuffer(GL_ARRAY_BUFFER, 0);
      gl.VertexAttribPointer(0, 2, GL_FLOAT, GL_FALSE, 4 * sizeof(GLfloat), vertices.data());
      gl.VertexAttribPointer(1, 2, GL_FLOAT, GL_FALSE, 4 * sizeof(GLfloat), vertices.data() + 2);
      gl.EnableVertexAttribArray(0);
      gl.EnableVertexAttribArray(1);
      gl.DrawArrays(GL_TRIANGLES, 0, static_cast<GLsizei>(vertices.size() / 4));
      GLenum glError = gl.GetError();
      if (glError != GL_NO_ERROR) {
        Napi::Error::New(env, "glDrawArrays failed: " + GlErrorName(glError) + " drawing " + srcWhat + " into " +
                                  dstWhat)
            .ThrowAsJavaScriptException();
        return Napi::Value();
      }
    }
    // A native fence for the caller when the driver has them; otherwise the drawing is done on return.
    if (nativeFence_) {
      const EGLint attribs[] = {EGL_SYNC_NATIVE_FENCE_FD_ANDROID, EGL_NO_NATIVE_FENCE_FD_ANDROID, EGL_NONE};
      EGLSyncKHR sync = egl_->CreateSyncKHR(dpy_, EGL_SYNC_NATIVE_FENCE_ANDROID, attribs);
      if (sync != EGL_NO_SYNC_KHR) {
        gl.Flush();  // the fence fd exists once the fence is flushed
        int fd = egl_->DupNativeFenceFDANDROID(dpy_, sync);
        egl_->DestroySyncKHR(dpy_, sync);
        if (fd >= 0) return Napi::Number::New(env, fd);
      }
      egl_->GetError();
    }
    gl.Finish();
    return Napi::Number::New(env, -1);
  }

  // ---- allocate(width, height, fourcc, modifiers: bigint[] | null) -> {modifier, planes} ----

  Napi::Value Allocate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int64_t width, height, fourcc;
    if (!GetUint(info, 0, "width", 16384, &width) || !GetUint(info, 1, "height", 16384, &height) ||
        !GetUint(info, 2, "fourcc", UINT32_MAX, &fourcc))
      return Napi::Value();
    std::vector<uint64_t> modifiers;
    if (!info[3].IsNull()) {
      if (!info[3].IsArray()) {
        ThrowTypeError(env, "modifiers must be an array of bigints or null (got " + Describe(info[3]) + ")");
        return Napi::Value();
      }
      Napi::Array array = info[3].As<Napi::Array>();
      for (uint32_t i = 0; i < array.Length(); i++) {
        Napi::Value v = array.Get(i);
        bool lossless = false;
        if (v.IsBigInt()) modifiers.push_back(v.As<Napi::BigInt>().Uint64Value(&lossless));
        if (!lossless) {
          ThrowTypeError(env, "modifiers[" + std::to_string(i) + "] must be a 64-bit bigint (got " +
                                  Describe(v) + ")");
          return Napi::Value();
        }
      }
    }
    if (!Ready(env)) return Napi::Value();
    std::string what = DescribeImage(width, height, fourcc);
    if (!gbmDevice_) {
      Napi::Error::New(env, "cannot allocate " + what + ": no GBM device on " + device_ + " (libgbm missing?)")
          .ThrowAsJavaScriptException();
      return Napi::Value();
    }
    if (width == 0 || height == 0) {
      Napi::RangeError::New(env, "cannot allocate an empty buffer (" + what + ")").ThrowAsJavaScriptException();
      return Napi::Value();
    }
    const Gbm& gbm = *gbm_;
    errno = 0;
    gbm_bo* bo;
    bool linear = false;  // made with GBM_BO_USE_LINEAR
    std::string call;
    if (!modifiers.empty()) {
      if (!gbm.bo_create_with_modifiers) {
        Napi::Error::New(env, "cannot allocate " + what + " with modifiers: libgbm lacks gbm_bo_create_with_modifiers")
            .ThrowAsJavaScriptException();
        return Napi::Value();
      }
      call = "gbm_bo_create_with_modifiers";
      bo = gbm.bo_create_with_modifiers(gbmDevice_, width, height, fourcc, modifiers.data(),
                                        static_cast<unsigned>(modifiers.size()));
      // Drivers without modifier support (kms_swrast: ENOSYS) can still make the LINEAR buffer when it is allowed.
      if (!bo && errno == ENOSYS && std::find(modifiers.begin(), modifiers.end(), kModLinear) != modifiers.end()) {
        call += " (ENOSYS), then gbm_bo_create(GBM_BO_USE_RENDERING | GBM_BO_USE_LINEAR)";
        linear = true;
        errno = 0;
        bo = gbm.bo_create(gbmDevice_, width, height, fourcc, GBM_BO_USE_RENDERING | GBM_BO_USE_LINEAR);
      }
    } else {
      linear = true;
      call = "gbm_bo_create(GBM_BO_USE_RENDERING | GBM_BO_USE_LINEAR)";
      bo = gbm.bo_create(gbmDevice_, width, height, fourcc, GBM_BO_USE_RENDERING | GBM_BO_USE_LINEAR);
    }
    if (!bo) {
      int err = errno;
      std::string list;
      for (uint64_t m : modifiers) list += (list.empty() ? "" : ", ") + Hex(m);
      Napi::Error::New(env, call + " failed for " + what + (modifiers.empty() ? "" : " modifiers [" + list + "]") +
                                " on " + device_ + (err ? ": " + std::string(strerror(err)) : ""))
          .ThrowAsJavaScriptException();
      return Napi::Value();
    }
    int count = gbm.bo_get_plane_count(bo);
    std::vector<int> fds;
    Napi::Array planes = Napi::Array::New(env);
    for (int i = 0; i < count; i++) {
      int fd = ExportPlane(bo, i);
      if (fd < 0) {
        int err = errno;
        for (int f : fds) close(f);
        gbm.bo_destroy(bo);
        Napi::Error::New(env, "exporting plane " + std::to_string(i) + " of " + what + " failed" +
                                  (err ? ": " + std::string(strerror(err)) : ""))
            .ThrowAsJavaScriptException();
        return Napi::Value();
      }
      fds.push_back(fd);
      Napi::Object plane = Napi::Object::New(env);
      plane.Set("fd", fd);
      plane.Set("offset", Napi::Number::New(env, gbm.bo_get_offset(bo, i)));
      plane.Set("stride", Napi::Number::New(env, gbm.bo_get_stride_for_plane(bo, i)));
      planes.Set(i, plane);
    }
    Napi::Object result = Napi::Object::New(env);
    // GBM says DRM_FORMAT_MOD_INVALID for buffers made without modifiers; GBM_BO_USE_LINEAR ones are LINEAR.
    uint64_t modifier = gbm.bo_get_modifier(bo);
    if (linear && modifier == kModInvalid) modifier = kModLinear;
    result.Set("modifier", Napi::BigInt::New(env, modifier));
    result.Set("planes", planes);
    gbm.bo_destroy(bo);  // the exported fds keep the buffer alive
    return result;
  }

  // A dma-buf fd for one plane, read-write so that the caller can mmap it for writing: gbm_bo_get_fd exports
  // without DRM_RDWR (mmap(PROT_WRITE) then fails with EACCES), so export the GEM handle ourselves and fall back
  // to GBM's own export when that is refused.
  int ExportPlane(gbm_bo* bo, int plane) {
    const Gbm& gbm = *gbm_;
    if (gbm.bo_get_handle_for_plane) {
      gbm_bo_handle handle = gbm.bo_get_handle_for_plane(bo, plane);
      drm_prime_handle args = {};
      args.handle = handle.u32;
      args.flags = DRM_CLOEXEC | DRM_RDWR;
      args.fd = -1;
      if (handle.s32 > 0 && RetryIoctl(fd_, DRM_IOCTL_PRIME_HANDLE_TO_FD, &args) == 0 && args.fd >= 0) return args.fd;
    }
    if (gbm.bo_get_fd_for_plane) return gbm.bo_get_fd_for_plane(bo, plane);
    return plane == 0 ? gbm.bo_get_fd(bo) : -1;
  }

  Napi::Value DestroyImage(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int64_t id;
    if (!GetUint(info, 0, "image", UINT32_MAX, &id)) return Napi::Value();
    auto it = images_.find(static_cast<uint32_t>(id));
    if (it == images_.end() || dpy_ == EGL_NO_DISPLAY) return Napi::Value();  // idempotent
    if (!MakeCurrent()) {
      Napi::Error::New(env, EglFailure("eglMakeCurrent")).ThrowAsJavaScriptException();
      return Napi::Value();
    }
    FreeImage(&it->second);
    images_.erase(it);
    return Napi::Value();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Teardown();
    return Napi::Value();
  }

  std::string device_;
  const Egl* egl_ = nullptr;
  const Gles* gl_ = nullptr;
  const Gbm* gbm_ = nullptr;
  int fd_ = -1;
  gbm_device* gbmDevice_ = nullptr;
  EGLDisplay dpy_ = EGL_NO_DISPLAY;
  EGLContext context_ = EGL_NO_CONTEXT;
  std::string platform_;  // "gbm" or "device"
  std::string driver_;
  bool importModifiers_ = false;
  bool nativeFence_ = false;
  bool bgraUpload_ = false;
  bool unpackRowLength_ = false;
  Program program2D_, programExternal_;
  std::map<uint32_t, Image> images_;
  uint32_t nextId_ = 1;
};

}  // namespace

void InitGpuBlit(Napi::Env env, Napi::Object exports) {
  exports.Set("GpuBlitter", GpuBlitter::Define(env));
}

}  // namespace wlscanout
