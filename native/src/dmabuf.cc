// dma-buf plumbing: udmabuf creation from memfd ranges, CPU-access brackets and implicit-fence import/export.
#include <errno.h>
#include <fcntl.h>
#include <linux/dma-buf.h>
#include <linux/udmabuf.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <vector>

#include "args.h"
#include "errors.h"
#include "ioctl.h"

namespace wlscanout {
namespace {

// Opens /dev/udmabuf, issues one create ioctl and closes the device again; returns the dmabuf fd or -1.
int UdmabufIoctl(Napi::Env env, unsigned long request, void* arg, const char* syscall) {
  int dev = open("/dev/udmabuf", O_RDWR | O_CLOEXEC);
  if (dev < 0) {
    ThrowErrno(env, "open(/dev/udmabuf)", errno);
    return -1;
  }
  int fd = RetryIoctl(dev, request, arg);
  int err = errno;
  close(dev);
  if (fd < 0) ThrowErrno(env, syscall, err);
  return fd;
}

bool GetEntry(const Napi::CallbackInfo& info, Napi::Value value, const std::string& name,
              struct udmabuf_create_item* item) {
  if (!value.IsObject()) {
    ThrowTypeError(info.Env(), name + " must be an object {memfd, offset, size} (got " + Describe(value) + ")");
    return false;
  }
  Napi::Object entry = value.As<Napi::Object>();
  const char* keys[] = {"memfd", "offset", "size"};
  int64_t values[3];
  for (int k = 0; k < 3; k++) {
    Napi::Value v = entry.Get(keys[k]);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    double max = k == 0 ? INT_MAX : kMaxSafeInteger;
    if (!std::isfinite(d) || std::trunc(d) != d || d < 0 || d > max) {
      Napi::RangeError::New(info.Env(), name + "." + keys[k] + " must be an integer in [0, " +
                                            std::to_string(static_cast<int64_t>(max)) + "] (got " + Describe(v) + ")")
          .ThrowAsJavaScriptException();
      return false;
    }
    values[k] = static_cast<int64_t>(d);
  }
  item->memfd = static_cast<__u32>(values[0]);
  item->__pad = 0;
  item->offset = static_cast<__u64>(values[1]);
  item->size = static_cast<__u64>(values[2]);
  return true;
}

// udmabufCreate(memfd, offset, size): one page-aligned range of a memfd sealed with F_SEAL_SHRINK.
Napi::Value UdmabufCreate(const Napi::CallbackInfo& info) {
  struct udmabuf_create create = {};
  int memfd;
  int64_t offset, size;
  if (!GetFd(info, 0, "memfd", &memfd) || !GetSize(info, 1, "offset", &offset) || !GetSize(info, 2, "size", &size))
    return Napi::Value();
  create.memfd = memfd;
  create.flags = UDMABUF_FLAGS_CLOEXEC;
  create.offset = offset;
  create.size = size;
  int fd = UdmabufIoctl(info.Env(), UDMABUF_CREATE, &create, "ioctl(UDMABUF_CREATE)");
  return fd < 0 ? Napi::Value() : Napi::Number::New(info.Env(), fd);
}

// udmabufCreateList([{memfd, offset, size}, ...]): several ranges (possibly of several memfds) as one dmabuf.
Napi::Value UdmabufCreateList(const Napi::CallbackInfo& info) {
  if (!info[0].IsArray() || info[0].As<Napi::Array>().Length() == 0) {
    ThrowTypeError(info.Env(), "entries must be a non-empty array (got " + Describe(info[0]) + ")");
    return Napi::Value();
  }
  Napi::Array entries = info[0].As<Napi::Array>();
  uint32_t count = entries.Length();
  std::vector<uint8_t> storage(sizeof(struct udmabuf_create_list) + count * sizeof(struct udmabuf_create_item));
  auto* list = reinterpret_cast<struct udmabuf_create_list*>(storage.data());
  list->flags = UDMABUF_FLAGS_CLOEXEC;
  list->count = count;
  for (uint32_t i = 0; i < count; i++) {
    if (!GetEntry(info, entries.Get(i), "entries[" + std::to_string(i) + "]", &list->list[i])) return Napi::Value();
  }
  int fd = UdmabufIoctl(info.Env(), UDMABUF_CREATE_LIST, list, "ioctl(UDMABUF_CREATE_LIST)");
  return fd < 0 ? Napi::Value() : Napi::Number::New(info.Env(), fd);
}

// dmabufSync(fd, flags): DMA_BUF_IOCTL_SYNC with DMA_BUF_SYNC_{START,END} | {READ,WRITE,RW}.
Napi::Value DmabufSync(const Napi::CallbackInfo& info) {
  int fd, flags;
  if (!GetFd(info, 0, "fd", &fd) || !GetFd(info, 1, "flags", &flags)) return Napi::Value();
  struct dma_buf_sync sync = {static_cast<__u64>(flags)};
  if (RetryIoctl(fd, DMA_BUF_IOCTL_SYNC, &sync) < 0) ThrowErrno(info.Env(), "ioctl(DMA_BUF_IOCTL_SYNC)", errno);
  return Napi::Value();
}

// dmabufExportSyncFile(fd, flags): a sync_file of the dmabuf's current implicit fences (READ and/or WRITE).
Napi::Value DmabufExportSyncFile(const Napi::CallbackInfo& info) {
  int fd, flags;
  if (!GetFd(info, 0, "fd", &fd) || !GetFd(info, 1, "flags", &flags)) return Napi::Value();
  struct dma_buf_export_sync_file arg = {static_cast<__u32>(flags), -1};
  if (RetryIoctl(fd, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, &arg) < 0) {
    ThrowErrno(info.Env(), "ioctl(DMA_BUF_IOCTL_EXPORT_SYNC_FILE)", errno);
    return Napi::Value();
  }
  return Napi::Number::New(info.Env(), arg.fd);
}

// dmabufImportSyncFile(fd, flags, syncFd): adds syncFd's fences to the dmabuf's implicit fences.
Napi::Value DmabufImportSyncFile(const Napi::CallbackInfo& info) {
  int fd, flags, syncFd;
  if (!GetFd(info, 0, "fd", &fd) || !GetFd(info, 1, "flags", &flags) || !GetFd(info, 2, "syncFd", &syncFd))
    return Napi::Value();
  struct dma_buf_import_sync_file arg = {static_cast<__u32>(flags), syncFd};
  if (RetryIoctl(fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &arg) < 0)
    ThrowErrno(info.Env(), "ioctl(DMA_BUF_IOCTL_IMPORT_SYNC_FILE)", errno);
  return Napi::Value();
}

}  // namespace

void InitDmabuf(Napi::Env env, Napi::Object exports) {
  exports.Set("udmabufCreate", Napi::Function::New(env, UdmabufCreate));
  exports.Set("udmabufCreateList", Napi::Function::New(env, UdmabufCreateList));
  exports.Set("dmabufSync", Napi::Function::New(env, DmabufSync));
  exports.Set("dmabufExportSyncFile", Napi::Function::New(env, DmabufExportSyncFile));
  exports.Set("dmabufImportSyncFile", Napi::Function::New(env, DmabufImportSyncFile));
  Napi::Object c = Napi::Object::New(env);
  c.Set("DMA_BUF_SYNC_READ", DMA_BUF_SYNC_READ);
  c.Set("DMA_BUF_SYNC_WRITE", DMA_BUF_SYNC_WRITE);
  c.Set("DMA_BUF_SYNC_RW", DMA_BUF_SYNC_RW);
  c.Set("DMA_BUF_SYNC_START", DMA_BUF_SYNC_START);
  c.Set("DMA_BUF_SYNC_END", DMA_BUF_SYNC_END);
  exports.Set("dmabufConstants", c);
}

}  // namespace wlscanout
