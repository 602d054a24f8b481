// Errors thrown to JS carry the failing call's name and errno, like Node's own system errors.
#pragma once
#include <napi.h>

namespace wlscanout {

// Throws (as a pending JS exception) an Error with .code (e.g. "EBADF"), .errno, .syscall.
void ThrowErrno(Napi::Env env, const char* syscall, int err);
// Builds the same error without throwing it (for callbacks).
Napi::Error ErrnoError(Napi::Env env, const char* syscall, int err);
void ThrowTypeError(Napi::Env env, const std::string& message);

}  // namespace wlscanout
