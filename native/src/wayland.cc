#include <napi.h>
namespace wlscanout {
void InitWayland(Napi::Env env, Napi::Object exports) {}
}  // namespace wlscanout
