// Argument readers shared by the addon parts: each checks one JS argument and throws a TypeError/RangeError
// naming the argument and the value it got, returning false so the caller can return at once.
#pragma once
#include <napi.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

#include "errors.h"

namespace wlscanout {

constexpr double kMaxSafeInteger = 9007199254740991.0;  // 2^53 - 1

inline std::string Describe(const Napi::Value& value) {
  return value.IsString() ? "\"" + value.ToString().Utf8Value() + "\"" : value.ToString().Utf8Value();
}

// Reads a non-negative safe integer; throws a TypeError (not a number) or RangeError naming the argument.
inline bool GetUint(const Napi::CallbackInfo& info, size_t i, const char* name, double max, int64_t* out) {
  Napi::Value value = info[i];
  if (!value.IsNumber()) {
    ThrowTypeError(info.Env(), std::string(name) + " must be a number (got " + Describe(value) + ")");
    return false;
  }
  double d = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::trunc(d) != d || d < 0 || d > max) {
    Napi::RangeError::New(info.Env(), std::string(name) + " must be an integer in [0, " +
                                          Napi::Number::New(info.Env(), max).ToString().Utf8Value() + "] (got " +
                                          Describe(value) + ")")
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = value.As<Napi::Number>().Int64Value();
  return true;
}

inline bool GetSize(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t* out) {
  return GetUint(info, i, name, kMaxSafeInteger, out);
}

inline bool GetFd(const Napi::CallbackInfo& info, size_t i, const char* name, int* out) {
  int64_t v;
  if (!GetUint(info, i, name, INT_MAX, &v)) return false;
  *out = static_cast<int>(v);
  return true;
}

inline bool GetBool(const Napi::CallbackInfo& info, size_t i, const char* name, bool* out) {
  if (!info[i].IsBoolean()) {
    ThrowTypeError(info.Env(), std::string(name) + " must be a boolean (got " + Describe(info[i]) + ")");
    return false;
  }
  *out = info[i].As<Napi::Boolean>().Value();
  return true;
}

inline bool GetBytes(const Napi::CallbackInfo& info, size_t i, const char* name, uint8_t** data, size_t* length) {
  if (!info[i].IsTypedArray()) {
    ThrowTypeError(info.Env(), std::string(name) + " must be a Uint8Array or Buffer (got " + Describe(info[i]) + ")");
    return false;
  }
  Napi::TypedArray array = info[i].As<Napi::TypedArray>();
  *data = static_cast<uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
  *length = array.ByteLength();
  return true;
}

}  // namespace wlscanout
