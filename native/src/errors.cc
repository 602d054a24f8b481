#include "errors.h"

#include <string.h>
#include <uv.h>

namespace wlscanout {

Napi::Error ErrnoError(Napi::Env env, const char* syscall, int err) {
  const char* code = uv_err_name(-err);
  std::string message = std::string(syscall) + " failed: " + code + " (" + strerror(err) + ")";
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  error.Set("errno", Napi::Number::New(env, -err));
  error.Set("syscall", Napi::String::New(env, syscall));
  return error;
}

void ThrowErrno(Napi::Env env, const char* syscall, int err) {
  ErrnoError(env, syscall, err).ThrowAsJavaScriptException();
}

void ThrowTypeError(Napi::Env env, const std::string& message) {
  Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
}

}  // namespace wlscanout
