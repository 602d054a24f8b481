// The addon is split by the kernel/library surface it wraps; each part registers its own functions.
#include <napi.h>

namespace wlscanout {
void InitFds(Napi::Env env, Napi::Object exports);
void InitFdWatcher(Napi::Env env, Napi::Object exports);
void InitWayland(Napi::Env env, Napi::Object exports);
void InitClock(Napi::Env env, Napi::Object exports);
void InitDmabuf(Napi::Env env, Napi::Object exports);
void InitSyncFile(Napi::Env env, Napi::Object exports);
void InitDrm(Napi::Env env, Napi::Object exports);
void InitEgl(Napi::Env env, Napi::Object exports);
void InitGpuBlit(Napi::Env env, Napi::Object exports);
void InitPixelCopy(Napi::Env env, Napi::Object exports);
}  // namespace wlscanout

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  wlscanout::InitFds(env, exports);
  wlscanout::InitFdWatcher(env, exports);
  wlscanout::InitWayland(env, exports);
  wlscanout::InitClock(env, exports);
  wlscanout::InitDmabuf(env, exports);
  wlscanout::InitSyncFile(env, exports);
  wlscanout::InitDrm(env, exports);
  wlscanout::InitEgl(env, exports);
  wlscanout::InitGpuBlit(env, exports);
  wlscanout::InitPixelCopy(env, exports);
  return exports;
}

NODE_API_MODULE(wlscanout, Init)
