// clock_gettime for an arbitrary clock id: wp_presentation reports times on a clock of the compositor's choice.
#include <napi.h>
#include <time.h>

#include "errors.h"

namespace wlscanout {

static Napi::Value ClockNow(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) {
    ThrowTypeError(env, "clockNow(clockId: number)");
    return env.Undefined();
  }
  struct timespec ts;
  if (clock_gettime(static_cast<clockid_t>(info[0].As<Napi::Number>().Int32Value()), &ts) != 0) {
    ThrowErrno(env, "clock_gettime", errno);
    return env.Undefined();
  }
  int64_t ns = static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
  return Napi::BigInt::New(env, ns);
}

void InitClock(Napi::Env env, Napi::Object exports) {
  exports.Set("clockNow", Napi::Function::New(env, ClockNow, "clockNow"));
}

}  // namespace wlscanout
