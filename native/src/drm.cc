// DRM device probing through raw ioctls on an fd the caller opened (no libdrm library needed, only its header).
#include <errno.h>
#include <libdrm/drm.h>
#include <sys/ioctl.h>

#include <string>
#include <vector>

#include "args.h"
#include "errors.h"
#include "ioctl.h"

namespace wlscanout {
namespace {

// DRM_IOCTL_VERSION: {name, date, desc, major, minor, patch}. The first call learns the string lengths, the second
// fills them; the kernel never writes more than the lengths we pass and reports the full lengths back.
Napi::Value DrmVersion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, 0, "fd", &fd)) return Napi::Value();

  drm_version_t version = {};
  if (RetryIoctl(fd, DRM_IOCTL_VERSION, &version) < 0) {
    ThrowErrno(env, "ioctl", errno);
    return Napi::Value();
  }
  // +1 so each string is NUL-terminated even if the kernel fills the whole length.
  std::vector<char> name(version.name_len + 1), date(version.date_len + 1), desc(version.desc_len + 1);
  version.name = name.data();
  version.date = date.data();
  version.desc = desc.data();
  if (RetryIoctl(fd, DRM_IOCTL_VERSION, &version) < 0) {
    ThrowErrno(env, "ioctl", errno);
    return Napi::Value();
  }
  auto str = [&](const std::vector<char>& buf, size_t len) {
    return Napi::String::New(env, buf.data(), std::min(len, buf.size() - 1));
  };
  Napi::Object result = Napi::Object::New(env);
  result.Set("name", str(name, version.name_len));
  result.Set("date", str(date, version.date_len));
  result.Set("desc", str(desc, version.desc_len));
  result.Set("major", Napi::Number::New(env, version.version_major));
  result.Set("minor", Napi::Number::New(env, version.version_minor));
  result.Set("patch", Napi::Number::New(env, version.version_patchlevel));
  return result;
}

}  // namespace

void InitDrm(Napi::Env env, Napi::Object exports) {
  exports.Set("drmVersion", Napi::Function::New(env, DrmVersion, "drmVersion"));
}

}  // namespace wlscanout
