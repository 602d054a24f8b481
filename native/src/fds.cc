// File-descriptor plumbing: memfds and seals, mappings, and fd passing over Unix sockets.
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <cstddef>
#include <unistd.h>
#include <uv.h>

#include <climits>
#include <cstring>
#include <cmath>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "args.h"
#include "errors.h"

namespace wlscanout {
namespace {

// ---- memfd, seals, stat ----

Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) {
    ThrowTypeError(env, "name must be a string (got " + Describe(info[0]) + ")");
    return Napi::Value();
  }
  bool allowSealing;
  if (!GetBool(info, 1, "allowSealing", &allowSealing)) return Napi::Value();
  std::string name = info[0].As<Napi::String>().Utf8Value();
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC | (allowSealing ? MFD_ALLOW_SEALING : 0));
  if (fd < 0) {
    ThrowErrno(env, "memfd_create", errno);
    return Napi::Value();
  }
  return Napi::Number::New(env, fd);
}

Napi::Value Ftruncate(const Napi::CallbackInfo& info) {
  int fd;
  int64_t size;
  if (!GetFd(info, 0, "fd", &fd) || !GetSize(info, 1, "size", &size)) return Napi::Value();
  int r;
  do r = ftruncate(fd, size);
  while (r < 0 && errno == EINTR);
  if (r < 0) ThrowErrno(info.Env(), "ftruncate", errno);
  return Napi::Value();
}

Napi::Value AddSeals(const Napi::CallbackInfo& info) {
  int fd, seals;
  if (!GetFd(info, 0, "fd", &fd) || !GetFd(info, 1, "seals", &seals)) return Napi::Value();
  if (fcntl(fd, F_ADD_SEALS, seals) < 0) ThrowErrno(info.Env(), "fcntl(F_ADD_SEALS)", errno);
  return Napi::Value();
}

Napi::Value GetSeals(const Napi::CallbackInfo& info) {
  int fd;
  if (!GetFd(info, 0, "fd", &fd)) return Napi::Value();
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0) {
    ThrowErrno(info.Env(), "fcntl(F_GET_SEALS)", errno);
    return Napi::Value();
  }
  return Napi::Number::New(info.Env(), seals);
}

Napi::Value Fstat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, 0, "fd", &fd)) return Napi::Value();
  struct stat st;
  if (fstat(fd, &st) < 0) {
    ThrowErrno(env, "fstat", errno);
    return Napi::Value();
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("size", Napi::Number::New(env, static_cast<double>(st.st_size)));
  result.Set("mode", Napi::Number::New(env, st.st_mode));
  result.Set("dev", Napi::Number::New(env, static_cast<double>(st.st_dev)));
  result.Set("ino", Napi::Number::New(env, static_cast<double>(st.st_ino)));
  return result;
}

// ---- mmap ----

// One record per mapping, owned by the ArrayBuffer's finalizer (so munmap() never frees it). The registry
// finds it from the buffer's data pointer; entries leave it when unmapped, so a later mapping at the same
// address cannot be confused with a dead one.
struct Mapping {
  void* base;
  size_t length;
  bool unmapped;
};
std::mutex registryMutex;  // mappings may be made and finalized on worker threads too
std::unordered_map<void*, Mapping*> registry;

void UnmapLocked(void* data, Mapping* mapping) {
  if (mapping->unmapped) return;
  munmap(mapping->base, mapping->length);
  mapping->unmapped = true;
  registry.erase(data);
}

void FinalizeMapping(napi_env, void* data, void* hint) {
  Mapping* mapping = static_cast<Mapping*>(hint);
  {
    std::lock_guard<std::mutex> lock(registryMutex);
    UnmapLocked(data, mapping);
  }
  delete mapping;
}

Napi::Value Mmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t offset, length;
  bool writable;
  if (!GetFd(info, 0, "fd", &fd) || !GetSize(info, 1, "offset", &offset) || !GetSize(info, 2, "length", &length) ||
      !GetBool(info, 3, "writable", &writable))
    return Napi::Value();
  if (length == 0) {
    Napi::RangeError::New(env, "mmap length must be > 0").ThrowAsJavaScriptException();
    return Napi::Value();
  }
  // The kernel maps past the end of a file, but touching those pages raises SIGBUS.
  struct stat st;
  if (fstat(fd, &st) < 0) {
    ThrowErrno(env, "fstat", errno);
    return Napi::Value();
  }
  if (S_ISREG(st.st_mode) && offset + length > st.st_size) {
    Napi::RangeError::New(env, "mmap range [" + std::to_string(offset) + ", " + std::to_string(offset + length) +
                                   ") is beyond the end of fd " + std::to_string(fd) + " (size " +
                                   std::to_string(st.st_size) + ")")
        .ThrowAsJavaScriptException();
    return Napi::Value();
  }
  int64_t page = sysconf(_SC_PAGESIZE);
  int64_t aligned = offset - offset % page;
  size_t delta = static_cast<size_t>(offset - aligned);
  size_t mapLength = static_cast<size_t>(length) + delta;
  void* base = mmap(nullptr, mapLength, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, aligned);
  if (base == MAP_FAILED) {
    ThrowErrno(env, "mmap", errno);
    return Napi::Value();
  }
  void* data = static_cast<uint8_t*>(base) + delta;
  Mapping* mapping = new Mapping{base, mapLength, false};
  napi_value buffer;
  if (napi_create_external_arraybuffer(env, data, static_cast<size_t>(length), FinalizeMapping, mapping, &buffer) !=
      napi_ok) {
    munmap(base, mapLength);
    delete mapping;
    if (!env.IsExceptionPending()) Napi::Error::New(env, "cannot create an external ArrayBuffer").ThrowAsJavaScriptException();
    return Napi::Value();
  }
  std::lock_guard<std::mutex> lock(registryMutex);
  registry[data] = mapping;
  return Napi::Value(env, buffer);
}

Napi::Value Munmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArrayBuffer()) {
    ThrowTypeError(env, "buffer must be an ArrayBuffer returned by mmap (got " + Describe(info[0]) + ")");
    return Napi::Value();
  }
  Napi::ArrayBuffer buffer = info[0].As<Napi::ArrayBuffer>();
  if (buffer.IsDetached()) return Napi::Value();
  void* data = buffer.Data();
  {
    std::lock_guard<std::mutex> lock(registryMutex);
    auto it = registry.find(data);
    if (it == registry.end()) {
      ThrowTypeError(env, "buffer was not returned by mmap");
      return Napi::Value();
    }
    UnmapLocked(data, it->second);
  }
  buffer.Detach();
  return Napi::Value();
}

// ---- sockets ----

Napi::Value Socketpair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0) {
    ThrowErrno(env, "socketpair", errno);
    return Napi::Value();
  }
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(0u, Napi::Number::New(env, sv[0]));
  result.Set(1u, Napi::Number::New(env, sv[1]));
  return result;
}

// unixConnect(path, abstract): a connected, non-blocking AF_UNIX stream socket (connecting to a unix socket
// completes at once or fails), e.g. to a D-Bus bus; an abstract address has no file (Linux's leading NUL).
Napi::Value UnixConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool abstract;
  if (!info[0].IsString()) {
    ThrowTypeError(env, "path must be a string (got " + Describe(info[0]) + ")");
    return Napi::Value();
  }
  if (!GetBool(info, 1, "abstract", &abstract)) return Napi::Value();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  size_t offset = abstract ? 1 : 0;
  if (path.empty() || path.size() + offset >= sizeof(addr.sun_path) || path.find('\0') != std::string::npos) {
    Napi::RangeError::New(env, "unix socket path \"" + path + "\" is empty, too long or contains NUL").ThrowAsJavaScriptException();
    return Napi::Value();
  }
  memcpy(addr.sun_path + offset, path.data(), path.size());
  socklen_t length = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + offset + path.size() + (abstract ? 0 : 1));
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowErrno(env, "socket", errno);
    return Napi::Value();
  }
  int rc;
  do rc = connect(fd, reinterpret_cast<struct sockaddr*>(&addr), length);
  while (rc < 0 && errno == EINTR);
  if (rc < 0 || fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, "connect", err);
    return Napi::Value();
  }
  return Napi::Number::New(env, fd);
}

Napi::Value Sendmsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  uint8_t* data;
  size_t length;
  if (!GetFd(info, 0, "fd", &fd) || !GetBytes(info, 1, "data", &data, &length)) return Napi::Value();
  if (!info[2].IsArray()) {
    ThrowTypeError(env, "fds must be an array of fds (got " + Describe(info[2]) + ")");
    return Napi::Value();
  }
  Napi::Array fdArray = info[2].As<Napi::Array>();
  std::vector<int> fds(fdArray.Length());
  for (uint32_t i = 0; i < fds.size(); i++) {
    Napi::Value v = fdArray.Get(i);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (std::trunc(d) != d || d < 0 || d > INT_MAX) {
      ThrowTypeError(env, "fds[" + std::to_string(i) + "] must be an fd (got " + Describe(v) + ")");
      return Napi::Value();
    }
    fds[i] = static_cast<int>(d);
  }
  // On a stream socket, ancillary data rides on the bytes: with no bytes the fds would be dropped.
  if (!fds.empty() && length == 0) {
    Napi::RangeError::New(env, "sendmsg needs at least one byte of data to carry fds").ThrowAsJavaScriptException();
    return Napi::Value();
  }
  struct iovec iov = {data, length};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control;
  if (!fds.empty()) {
    size_t fdBytes = fds.size() * sizeof(int);
    control.assign(CMSG_SPACE(fdBytes), 0);
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(fdBytes);
    memcpy(CMSG_DATA(cmsg), fds.data(), fdBytes);
  }
  ssize_t n;
  do n = sendmsg(fd, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    ThrowErrno(env, "sendmsg", errno);
    return Napi::Value();
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

// Receives into buf (non-blocking). Returns false with a pending JS exception on error; *n = -1 on EAGAIN.
bool ReceiveInto(Napi::Env env, int fd, uint8_t* buf, size_t length, int64_t maxFds, ssize_t* n, std::vector<int>* fds) {
  struct iovec iov = {buf, length};
  std::vector<char> control(maxFds > 0 ? CMSG_SPACE(maxFds * sizeof(int)) : 0);
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.empty() ? nullptr : control.data();
  // CMSG_LEN rather than CMSG_SPACE: the kernel fills the padding with one more fd when maxFds is odd.
  msg.msg_controllen = maxFds > 0 ? CMSG_LEN(maxFds * sizeof(int)) : 0;
  do *n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  while (*n < 0 && errno == EINTR);
  if (*n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      *n = -1;
      return true;
    }
    ThrowErrno(env, "recvmsg", errno);
    return false;
  }
  for (struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const uint8_t* p = CMSG_DATA(cmsg);
    for (size_t i = 0; i < count; i++) {
      int received;
      memcpy(&received, p + i * sizeof(int), sizeof(int));
      fds->push_back(received);
    }
  }
  if (msg.msg_flags & MSG_CTRUNC) {
    for (int received : *fds) close(received);
    Napi::Error error = Napi::Error::New(
        env, "recvmsg: control message truncated: the peer sent more than maxFds=" + std::to_string(maxFds) +
                 " fds with " + std::to_string(*n) + " bytes; the " + std::to_string(fds->size()) +
                 " fds that arrived were closed and those bytes are lost");
    error.Set("code", Napi::String::New(env, "ECTRUNC"));
    error.Set("syscall", Napi::String::New(env, "recvmsg"));
    error.ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

Napi::Array FdArray(Napi::Env env, const std::vector<int>& fds) {
  Napi::Array array = Napi::Array::New(env, fds.size());
  for (uint32_t i = 0; i < fds.size(); i++) array.Set(i, Napi::Number::New(env, fds[i]));
  return array;
}

Napi::Value Recvmsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t maxBytes, maxFds;
  if (!GetFd(info, 0, "fd", &fd) || !GetUint(info, 1, "maxBytes", 1 << 30, &maxBytes) ||
      !GetUint(info, 2, "maxFds", 253 /* SCM_MAX_FD */, &maxFds))
    return Napi::Value();
  if (maxBytes == 0) {  // a 0-byte read would look like EOF
    Napi::RangeError::New(env, "recvmsg maxBytes must be > 0").ThrowAsJavaScriptException();
    return Napi::Value();
  }
  std::unique_ptr<uint8_t[]> bytes(new uint8_t[maxBytes]);
  ssize_t n;
  std::vector<int> fds;
  if (!ReceiveInto(env, fd, bytes.get(), static_cast<size_t>(maxBytes), maxFds, &n, &fds)) return Napi::Value();
  if (n < 0) return env.Null();
  Napi::Object result = Napi::Object::New(env);
  result.Set("data", Napi::Buffer<uint8_t>::Copy(env, bytes.get(), static_cast<size_t>(n)));
  result.Set("fds", FdArray(env, fds));
  return result;
}

// recvmsgInto(fd, target, maxFds): as recvmsg, but straight into the caller's memory (no intermediate copy).
Napi::Value RecvmsgInto(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t maxFds;
  uint8_t* data;
  size_t length;
  if (!GetFd(info, 0, "fd", &fd) || !GetBytes(info, 1, "target", &data, &length) ||
      !GetUint(info, 2, "maxFds", 253 /* SCM_MAX_FD */, &maxFds))
    return Napi::Value();
  if (length == 0) {  // a 0-byte read would look like EOF
    Napi::RangeError::New(env, "recvmsgInto target must not be empty").ThrowAsJavaScriptException();
    return Napi::Value();
  }
  ssize_t n;
  std::vector<int> fds;
  if (!ReceiveInto(env, fd, data, length, maxFds, &n, &fds)) return Napi::Value();
  if (n < 0) return env.Null();
  Napi::Object result = Napi::Object::New(env);
  result.Set("bytes", Napi::Number::New(env, static_cast<double>(n)));
  result.Set("fds", FdArray(env, fds));
  return result;
}

// ---- plain fd calls ----

Napi::Value Pwrite(const Napi::CallbackInfo& info) {
  int fd;
  uint8_t* data;
  size_t length;
  int64_t offset;
  if (!GetFd(info, 0, "fd", &fd) || !GetBytes(info, 1, "data", &data, &length) ||
      !GetSize(info, 2, "offset", &offset))
    return Napi::Value();
  ssize_t n;
  do n = pwrite(fd, data, length, offset);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    ThrowErrno(info.Env(), "pwrite", errno);
    return Napi::Value();
  }
  return Napi::Number::New(info.Env(), static_cast<double>(n));
}

Napi::Value Pread(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t length, offset;
  if (!GetFd(info, 0, "fd", &fd) || !GetUint(info, 1, "length", 1 << 30, &length) ||
      !GetSize(info, 2, "offset", &offset))
    return Napi::Value();
  std::unique_ptr<uint8_t[]> bytes(new uint8_t[length > 0 ? length : 1]);
  ssize_t n;
  do n = pread(fd, bytes.get(), length, offset);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    ThrowErrno(env, "pread", errno);
    return Napi::Value();
  }
  return Napi::Buffer<uint8_t>::Copy(env, bytes.get(), static_cast<size_t>(n));
}

Napi::Value Dup(const Napi::CallbackInfo& info) {
  int fd;
  if (!GetFd(info, 0, "fd", &fd)) return Napi::Value();
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) {
    ThrowErrno(info.Env(), "dup", errno);
    return Napi::Value();
  }
  return Napi::Number::New(info.Env(), copy);
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  int fd;
  if (!GetFd(info, 0, "fd", &fd)) return Napi::Value();
  // On Linux the fd is released even when close() reports EINTR, so that is not an error.
  if (close(fd) < 0 && errno != EINTR) ThrowErrno(info.Env(), "close", errno);
  return Napi::Value();
}

}  // namespace

void InitFds(Napi::Env env, Napi::Object exports) {
  Napi::Object constants = Napi::Object::New(env);
  auto constant = [&](const char* name, double value) { constants.Set(name, Napi::Number::New(env, value)); };
  constant("F_SEAL_SEAL", F_SEAL_SEAL);
  constant("F_SEAL_SHRINK", F_SEAL_SHRINK);
  constant("F_SEAL_GROW", F_SEAL_GROW);
  constant("F_SEAL_WRITE", F_SEAL_WRITE);
  constant("F_SEAL_FUTURE_WRITE", F_SEAL_FUTURE_WRITE);
  constant("POLL_READABLE", UV_READABLE);
  constant("POLL_WRITABLE", UV_WRITABLE);
  constant("POLL_DISCONNECT", UV_DISCONNECT);
  constant("PAGE_SIZE", sysconf(_SC_PAGESIZE));
  exports.Set("constants", constants);

  struct Entry {
    const char* name;
    Napi::Value (*fn)(const Napi::CallbackInfo&);
  };
  const Entry entries[] = {
      {"memfdCreate", MemfdCreate}, {"ftruncate", Ftruncate}, {"addSeals", AddSeals}, {"getSeals", GetSeals},
      {"fstat", Fstat},             {"mmap", Mmap},           {"munmap", Munmap},     {"socketpair", Socketpair},
      {"sendmsg", Sendmsg},         {"recvmsg", Recvmsg},     {"recvmsgInto", RecvmsgInto}, {"pwrite", Pwrite},     {"pread", Pread},
      {"dup", Dup},                 {"close", Close},         {"unixConnect", UnixConnect},
  };
  for (const Entry& e : entries) exports.Set(e.name, Napi::Function::New(env, e.fn, e.name));
}

}  // namespace wlscanout
