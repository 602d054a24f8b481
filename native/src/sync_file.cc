// sync_file fences: merge, info, and the sw_sync debug timeline that makes real fences for tests.
#include <errno.h>
#include <fcntl.h>
#include <linux/sync_file.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "args.h"
#include "errors.h"
#include "ioctl.h"

namespace wlscanout {
namespace {

// sw_sync's ioctls are not in the uapi headers (drivers/dma-buf/sw_sync.c).
struct sw_sync_create_fence_data {
  __u32 value;
  char name[32];
  __s32 fence;
};
#define SW_SYNC_IOC_CREATE_FENCE _IOWR('W', 0, struct sw_sync_create_fence_data)
#define SW_SYNC_IOC_INC _IOW('W', 1, __u32)

bool GetName(const Napi::CallbackInfo& info, size_t i, char (*out)[32]) {
  if (!info[i].IsString()) {
    ThrowTypeError(info.Env(), "name must be a string (got " + Describe(info[i]) + ")");
    return false;
  }
  std::string name = info[i].As<Napi::String>().Utf8Value();
  memset(*out, 0, sizeof *out);
  strncpy(*out, name.c_str(), sizeof *out - 1);
  return true;
}

// syncMerge(name, fd1, fd2): a new sync_file that signals when both have.
Napi::Value SyncMerge(const Napi::CallbackInfo& info) {
  struct sync_merge_data data = {};
  int fd1, fd2;
  if (!GetName(info, 0, &data.name) || !GetFd(info, 1, "fd1", &fd1) || !GetFd(info, 2, "fd2", &fd2))
    return Napi::Value();
  data.fd2 = fd2;
  if (RetryIoctl(fd1, SYNC_IOC_MERGE, &data) < 0) {
    ThrowErrno(info.Env(), "ioctl(SYNC_IOC_MERGE)", errno);
    return Napi::Value();
  }
  return Napi::Number::New(info.Env(), data.fence);
}

// syncFileInfo(fd): {name, status, fences: [{objName, driverName, status, timestampNs}]}; status 1 signalled,
// 0 active, < 0 error.
Napi::Value SyncFileInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, 0, "fd", &fd)) return Napi::Value();
  struct sync_file_info head = {};
  if (RetryIoctl(fd, SYNC_IOC_FILE_INFO, &head) < 0) {
    ThrowErrno(env, "ioctl(SYNC_IOC_FILE_INFO)", errno);
    return Napi::Value();
  }
  std::vector<struct sync_fence_info> fences(head.num_fences);
  struct sync_file_info full = {};
  full.num_fences = head.num_fences;
  full.sync_fence_info = reinterpret_cast<__u64>(fences.data());
  if (head.num_fences > 0 && RetryIoctl(fd, SYNC_IOC_FILE_INFO, &full) < 0) {
    ThrowErrno(env, "ioctl(SYNC_IOC_FILE_INFO)", errno);
    return Napi::Value();
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("name", Napi::String::New(env, head.name, strnlen(head.name, sizeof head.name)));
  result.Set("status", Napi::Number::New(env, head.status));
  Napi::Array list = Napi::Array::New(env, fences.size());
  for (size_t i = 0; i < fences.size(); i++) {
    Napi::Object f = Napi::Object::New(env);
    f.Set("objName", Napi::String::New(env, fences[i].obj_name, strnlen(fences[i].obj_name, 32)));
    f.Set("driverName", Napi::String::New(env, fences[i].driver_name, strnlen(fences[i].driver_name, 32)));
    f.Set("status", Napi::Number::New(env, fences[i].status));
    f.Set("timestampNs", Napi::BigInt::New(env, static_cast<uint64_t>(fences[i].timestamp_ns)));
    list.Set(i, f);
  }
  result.Set("fences", list);
  return result;
}

// swSyncCreateFence(timelineFd, value, name): a sync_file that signals when the timeline reaches value.
Napi::Value SwSyncCreateFence(const Napi::CallbackInfo& info) {
  struct sw_sync_create_fence_data data = {};
  int timeline;
  int64_t value;
  if (!GetFd(info, 0, "timelineFd", &timeline) || !GetUint(info, 1, "value", UINT32_MAX, &value) ||
      !GetName(info, 2, &data.name))
    return Napi::Value();
  data.value = static_cast<__u32>(value);
  if (RetryIoctl(timeline, SW_SYNC_IOC_CREATE_FENCE, &data) < 0) {
    ThrowErrno(info.Env(), "ioctl(SW_SYNC_IOC_CREATE_FENCE)", errno);
    return Napi::Value();
  }
  return Napi::Number::New(info.Env(), data.fence);
}

// swSyncInc(timelineFd, count): advances the timeline, signalling every fence at or below the new value.
Napi::Value SwSyncInc(const Napi::CallbackInfo& info) {
  int timeline;
  int64_t count;
  if (!GetFd(info, 0, "timelineFd", &timeline) || !GetUint(info, 1, "count", UINT32_MAX, &count))
    return Napi::Value();
  __u32 inc = static_cast<__u32>(count);
  if (RetryIoctl(timeline, SW_SYNC_IOC_INC, &inc) < 0) ThrowErrno(info.Env(), "ioctl(SW_SYNC_IOC_INC)", errno);
  return Napi::Value();
}

}  // namespace

void InitSyncFile(Napi::Env env, Napi::Object exports) {
  exports.Set("syncMerge", Napi::Function::New(env, SyncMerge));
  exports.Set("syncFileInfo", Napi::Function::New(env, SyncFileInfo));
  exports.Set("swSyncCreateFence", Napi::Function::New(env, SwSyncCreateFence));
  exports.Set("swSyncInc", Napi::Function::New(env, SwSyncInc));
}

}  // namespace wlscanout
