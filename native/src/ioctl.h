// ioctl as libdrm's drmIoctl does it: DRM, dma-buf and sync_file ioctls may be interrupted (EINTR) or asked to
// be retried (EAGAIN).
#pragma once
#include <errno.h>
#include <sys/ioctl.h>

namespace wlscanout {

inline int RetryIoctl(int fd, unsigned long request, void* arg) {
  int r;
  do r = ioctl(fd, request, arg);
  while (r < 0 && (errno == EINTR || errno == EAGAIN));
  return r;
}

}  // namespace wlscanout
