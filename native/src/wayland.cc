// Generic libwayland-client binding: interface tables built at runtime from descriptors (generated from the
// protocol XML), requests through wl_proxy_marshal_array_flags, events through one dispatcher, and the display
// fd driven by a uv_poll on Node's loop. No per-protocol code lives here.
#include <fcntl.h>
#include <napi.h>
#include <uv.h>
#include <wayland-client-core.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "errors.h"

namespace wlscanout {
namespace {

// libwayland keeps pointers into these tables for the life of the process, so they are never freed.
struct InterfaceTables {
  std::unordered_map<std::string, wl_interface*> byName;
  std::deque<std::string> strings;
};
InterfaceTables& Tables() {
  static InterfaceTables* tables = new InterfaceTables();
  return *tables;
}

const char* Intern(const std::string& s) {
  Tables().strings.push_back(s);
  return Tables().strings.back().c_str();
}

bool IsArgChar(char c) { return std::strchr("iufsonah", c) != nullptr && c != '\0'; }

size_t ArgCount(const char* signature) {
  size_t n = 0;
  for (const char* p = signature; *p; p++) n += IsArgChar(*p);
  return n;
}

wl_interface* FindInterface(const std::string& name) {
  auto it = Tables().byName.find(name);
  return it == Tables().byName.end() ? nullptr : it->second;
}

bool BuildMessages(Napi::Env env, Napi::Array list, const wl_message** out, int* count) {
  uint32_t n = list.Length();
  wl_message* messages = new wl_message[n > 0 ? n : 1]();
  for (uint32_t i = 0; i < n; i++) {
    Napi::Object m = list.Get(i).As<Napi::Object>();
    std::string signature = m.Get("signature").As<Napi::String>().Utf8Value();
    Napi::Array types = m.Get("types").As<Napi::Array>();
    size_t args = ArgCount(signature.c_str());
    if (types.Length() != args) {
      ThrowTypeError(env, "message " + m.Get("name").As<Napi::String>().Utf8Value() + ": types has " +
                              std::to_string(types.Length()) + " entries for " + std::to_string(args) + " arguments");
      return false;
    }
    const wl_interface** typeArray = new const wl_interface*[args > 0 ? args : 1]();
    for (uint32_t t = 0; t < args; t++) {
      Napi::Value type = types.Get(t);
      if (type.IsString()) {
        wl_interface* iface = FindInterface(type.As<Napi::String>().Utf8Value());
        if (!iface) {
          ThrowTypeError(env, "unknown interface referenced: " + type.As<Napi::String>().Utf8Value());
          return false;
        }
        typeArray[t] = iface;
      }
    }
    messages[i].name = Intern(m.Get("name").As<Napi::String>().Utf8Value());
    messages[i].signature = Intern(signature);
    messages[i].types = typeArray;
  }
  *out = messages;
  *count = static_cast<int>(n);
  return true;
}

// wlDefineInterfaces(descriptors): two passes so that cross references (also across protocols) resolve.
Napi::Value DefineInterfaces(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) {
    ThrowTypeError(env, "wlDefineInterfaces: expected an array of interface descriptors");
    return env.Undefined();
  }
  Napi::Array list = info[0].As<Napi::Array>();
  std::vector<std::pair<wl_interface*, Napi::Object>> fresh;
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Object d = list.Get(i).As<Napi::Object>();
    std::string name = d.Get("name").As<Napi::String>().Utf8Value();
    if (FindInterface(name)) continue;  // already defined: tables are immutable once handed to libwayland
    wl_interface* iface = new wl_interface();
    iface->name = Intern(name);
    iface->version = d.Get("version").As<Napi::Number>().Int32Value();
    Tables().byName[name] = iface;
    fresh.emplace_back(iface, d);
  }
  for (auto& [iface, d] : fresh) {
    if (!BuildMessages(env, d.Get("requests").As<Napi::Array>(), &iface->methods, &iface->method_count)) break;
    if (!BuildMessages(env, d.Get("events").As<Napi::Array>(), &iface->events, &iface->event_count)) break;
  }
  return env.Undefined();
}

// libwayland reports a protocol error's text only through its log handler: keep the last line for our error.
std::string& LastLogLine() {
  static std::string* line = new std::string();
  return *line;
}

void LogHandler(const char* format, va_list args) {
  char buffer[1024];
  vsnprintf(buffer, sizeof buffer, format, args);
  std::string line(buffer);
  while (!line.empty() && line.back() == '\n') line.pop_back();
  LastLogLine() = line;
}

struct ProxyEntry {
  wl_proxy* proxy;
  const wl_interface* iface;
};

class WlConnection : public Napi::ObjectWrap<WlConnection> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "WlConnection",
                       {
                           InstanceAccessor<&WlConnection::Fd>("fd"),
                           InstanceAccessor<&WlConnection::DisplayHandle>("displayHandle"),
                           InstanceMethod<&WlConnection::Marshal>("marshal"),
                           InstanceMethod<&WlConnection::DestroyProxy>("destroyProxy"),
                           InstanceMethod<&WlConnection::Version>("version"),
                           InstanceMethod<&WlConnection::Id>("id"),
                           InstanceMethod<&WlConnection::Flush>("flush"),
                           InstanceMethod<&WlConnection::Disconnect>("disconnect"),
                       });
  }

  WlConnection(const Napi::CallbackInfo& info) : Napi::ObjectWrap<WlConnection>(info), env_(info.Env()) {
    Napi::Env env = info.Env();
    if (!(info[0].IsString() || info[0].IsNull()) || !info[1].IsFunction() || !info[2].IsFunction()) {
      ThrowTypeError(env, "WlConnection(name: string | null, onEvent: function, onError: function)");
      return;
    }
    std::string name = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    display_ = wl_display_connect(info[0].IsString() ? name.c_str() : nullptr);
    if (!display_) {
      int err = errno ? errno : ECONNREFUSED;
      Napi::Error error = ErrnoError(env, "wl_display_connect", err);
      const char* shown = info[0].IsString() ? name.c_str() : getenv("WAYLAND_DISPLAY");
      error.Set("message", Napi::String::New(env, std::string("cannot connect to Wayland display '") +
                                                      (shown ? shown : "wayland-0") + "': " + strerror(err)));
      error.ThrowAsJavaScriptException();
      return;
    }
    onEvent_ = Napi::Persistent(info[1].As<Napi::Function>());
    onError_ = Napi::Persistent(info[2].As<Napi::Function>());
    proxies_[kDisplayHandle] = {reinterpret_cast<wl_proxy*>(display_), FindInterface("wl_display")};

    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = new uv_poll_t();
    poll_->data = this;
    uv_poll_init(loop, poll_, wl_display_get_fd(display_));
    uv_poll_start(poll_, UV_READABLE, OnPoll);
    Ref();  // the poll handle points at us: stay alive until disconnect()
  }

  ~WlConnection() override { Close(); }

 private:
  static constexpr uint32_t kDisplayHandle = 1;

  Napi::Value Fd(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), display_ ? wl_display_get_fd(display_) : -1);
  }
  Napi::Value DisplayHandle(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), kDisplayHandle); }

  ProxyEntry* Lookup(Napi::Env env, Napi::Value handle) {
    if (!display_) {
      Napi::Error::New(env, "Wayland connection is closed").ThrowAsJavaScriptException();
      return nullptr;
    }
    auto it = proxies_.find(handle.As<Napi::Number>().Uint32Value());
    if (it == proxies_.end()) {
      ThrowTypeError(env, "unknown or destroyed Wayland proxy handle " + handle.ToString().Utf8Value());
      return nullptr;
    }
    return &it->second;
  }

  uint32_t Track(wl_proxy* proxy, const wl_interface* iface) {
    uint32_t handle = nextHandle_++;
    wl_proxy_set_user_data(proxy, reinterpret_cast<void*>(static_cast<uintptr_t>(handle)));
    wl_proxy_add_dispatcher(proxy, Dispatch, this, reinterpret_cast<void*>(static_cast<uintptr_t>(handle)));
    proxies_[handle] = {proxy, iface};
    return handle;
  }

  // marshal(handle, opcode, args, newInterface, newVersion, destroy) -> new handle or 0
  Napi::Value Marshal(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ProxyEntry* entry = Lookup(env, info[0]);
    if (!entry) return env.Undefined();
    uint32_t opcode = info[1].As<Napi::Number>().Uint32Value();
    if (opcode >= static_cast<uint32_t>(entry->iface->method_count)) {
      ThrowTypeError(env, std::string(entry->iface->name) + " has no request " + std::to_string(opcode));
      return env.Undefined();
    }
    const wl_message& msg = entry->iface->methods[opcode];
    Napi::Array jsArgs = info[2].As<Napi::Array>();
    size_t count = ArgCount(msg.signature);
    std::string where = std::string(entry->iface->name) + "." + msg.name;
    if (jsArgs.Length() != count) {
      ThrowTypeError(env, where + ": expected " + std::to_string(count) + " arguments, got " +
                              std::to_string(jsArgs.Length()));
      return env.Undefined();
    }
    std::vector<wl_argument> args(count > 0 ? count : 1);
    std::deque<std::string> strings;
    std::deque<wl_array> arrays;
    bool nullable = false;
    size_t i = 0;
    for (const char* p = msg.signature; *p; p++) {
      if (*p == '?') { nullable = true; continue; }
      if (!IsArgChar(*p)) continue;
      Napi::Value v = jsArgs.Get(i);
      std::string argWhere = where + " argument " + std::to_string(i);
      switch (*p) {
        case 'i':
        case 'u':
        case 'h':
        case 'f':
          if (!v.IsNumber()) {
            ThrowTypeError(env, argWhere + " must be a number");
            return env.Undefined();
          }
          if (*p == 'i') args[i].i = v.As<Napi::Number>().Int32Value();
          if (*p == 'u') args[i].u = v.As<Napi::Number>().Uint32Value();
          if (*p == 'f') args[i].f = wl_fixed_from_double(v.As<Napi::Number>().DoubleValue());
          if (*p == 'h') {
            args[i].h = v.As<Napi::Number>().Int32Value();
            // libwayland dup()s the fd and aborts the process if that fails: check it first.
            if (fcntl(args[i].h, F_GETFD) < 0) {
              ThrowErrno(env, (where + " (fd " + std::to_string(args[i].h) + ")").c_str(), errno);
              return env.Undefined();
            }
          }
          break;
        case 's':
          if (v.IsNull() || v.IsUndefined()) {
            if (!nullable) {
              ThrowTypeError(env, argWhere + " must be a string");
              return env.Undefined();
            }
            args[i].s = nullptr;
          } else {
            strings.push_back(v.ToString().Utf8Value());
            args[i].s = strings.back().c_str();
          }
          break;
        case 'o': {
          uint32_t h = v.IsNumber() ? v.As<Napi::Number>().Uint32Value() : 0;
          if (h == 0) {
            if (!nullable) {
              ThrowTypeError(env, argWhere + " must be an object, not null");
              return env.Undefined();
            }
            args[i].o = nullptr;
          } else {
            auto it = proxies_.find(h);
            if (it == proxies_.end()) {
              ThrowTypeError(env, argWhere + ": unknown or destroyed proxy handle " + std::to_string(h));
              return env.Undefined();
            }
            args[i].o = reinterpret_cast<wl_object*>(it->second.proxy);
          }
          break;
        }
        case 'n':
          args[i].o = nullptr;
          break;
        case 'a': {
          if (!v.IsTypedArray()) {
            ThrowTypeError(env, argWhere + " must be a Uint8Array");
            return env.Undefined();
          }
          Napi::Uint8Array bytes = v.As<Napi::Uint8Array>();
          arrays.push_back({bytes.ByteLength(), bytes.ByteLength(), bytes.Data()});
          args[i].a = &arrays.back();
          break;
        }
      }
      nullable = false;
      i++;
    }
    const wl_interface* child = nullptr;
    if (info[3].IsString()) {
      child = FindInterface(info[3].As<Napi::String>().Utf8Value());
      if (!child) {
        ThrowTypeError(env, where + ": unknown interface " + info[3].As<Napi::String>().Utf8Value());
        return env.Undefined();
      }
    }
    uint32_t version = child ? info[4].As<Napi::Number>().Uint32Value() : wl_proxy_get_version(entry->proxy);
    bool destroy = info[5].ToBoolean().Value();
    uint32_t handle = info[0].As<Napi::Number>().Uint32Value();
    wl_proxy* created = wl_proxy_marshal_array_flags(entry->proxy, opcode, child, version,
                                                     destroy ? WL_MARSHAL_FLAG_DESTROY : 0, args.data());
    if (destroy) proxies_.erase(handle);
    if (!child) return Napi::Number::New(env, 0);
    if (!created) {
      Napi::Error::New(env, where + ": the connection has failed, no object was created").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    return Napi::Number::New(env, Track(created, child));
  }

  Napi::Value DestroyProxy(const Napi::CallbackInfo& info) {
    uint32_t handle = info[0].As<Napi::Number>().Uint32Value();
    auto it = proxies_.find(handle);
    if (it != proxies_.end() && handle != kDisplayHandle) {
      wl_proxy_destroy(it->second.proxy);
      proxies_.erase(it);
    }
    return info.Env().Undefined();
  }

  Napi::Value Version(const Napi::CallbackInfo& info) {
    ProxyEntry* entry = Lookup(info.Env(), info[0]);
    return entry ? Napi::Number::New(info.Env(), wl_proxy_get_version(entry->proxy)) : info.Env().Undefined();
  }

  Napi::Value Id(const Napi::CallbackInfo& info) {
    ProxyEntry* entry = Lookup(info.Env(), info[0]);
    return entry ? Napi::Number::New(info.Env(), wl_proxy_get_id(entry->proxy)) : info.Env().Undefined();
  }

  Napi::Value Flush(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), DoFlush()); }

  Napi::Value Disconnect(const Napi::CallbackInfo& info) {
    if (dispatching_) {
      closeRequested_ = true;  // freeing the display inside wl_display_dispatch_pending would be use-after-free
    } else {
      Close();
    }
    return info.Env().Undefined();
  }

  void Close() {
    if (!display_) return;
    if (poll_) {
      uv_poll_stop(poll_);
      uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
      poll_ = nullptr;
    }
    for (auto& [handle, entry] : proxies_) {
      if (handle != kDisplayHandle) wl_proxy_destroy(entry.proxy);
    }
    proxies_.clear();
    wl_display_disconnect(display_);
    display_ = nullptr;
    onEvent_.Reset();
    onError_.Reset();
    Unref();
  }

  // Returns true when everything was written; on EAGAIN waits for writable and finishes from OnPoll.
  bool DoFlush() {
    if (!display_ || failed_) return false;
    if (wl_display_flush(display_) < 0) {
      if (errno == EAGAIN) {
        if (!wantWritable_) uv_poll_start(poll_, UV_READABLE | UV_WRITABLE, OnPoll);
        wantWritable_ = true;
        return false;
      }
      Fail(ErrnoError(env_, "wl_display_flush", errno));
      return false;
    }
    if (wantWritable_) uv_poll_start(poll_, UV_READABLE, OnPoll);
    wantWritable_ = false;
    return true;
  }

  void FailFromDisplay() {
    int err = wl_display_get_error(display_);
    if (err == EPROTO) {
      const wl_interface* iface = nullptr;
      uint32_t id = 0;
      uint32_t code = wl_display_get_protocol_error(display_, &iface, &id);
      std::string name = iface ? iface->name : "unknown";
      std::string text = LastLogLine();
      Napi::Error error = Napi::Error::New(env_, "Wayland protocol error on " + name + "#" + std::to_string(id) +
                                                     ": error code " + std::to_string(code) +
                                                     (text.empty() ? "" : " (" + text + ")"));
      Napi::Object details = Napi::Object::New(env_);
      details.Set("interface", name);
      details.Set("id", id);
      details.Set("code", code);
      error.Set("protocolError", details);
      error.Set("code", "EPROTO");
      Fail(error);
    } else {
      Fail(ErrnoError(env_, "wl_display_read_events", err ? err : EPIPE));
    }
  }

  void Fail(Napi::Error error) {
    if (failed_) return;
    failed_ = true;
    if (poll_) uv_poll_stop(poll_);
    if (!onError_.IsEmpty()) CallJs(onError_, {error.Value()});
  }

  void CallJs(Napi::FunctionReference& fn, const std::initializer_list<napi_value>& args) {
    fn.Call(args);
    if (env_.IsExceptionPending()) {
      Napi::Error e = env_.GetAndClearPendingException();
      napi_fatal_exception(env_, e.Value());  // surfaces as 'uncaughtException', as a throw in any loop callback
    }
  }

  static void OnPoll(uv_poll_t* handle, int status, int events) {
    auto* self = static_cast<WlConnection*>(handle->data);
    Napi::Env env = self->env_;
    Napi::HandleScope scope(env);
    napi_async_context context;
    napi_async_init(env, nullptr, Napi::String::New(env, "wayland"), &context);
    {
      // One callback scope per wake-up: promise jobs queued by event handlers run once, after dispatch.
      Napi::CallbackScope callbackScope(env, context);
      self->Pump(status, events);
    }
    napi_async_destroy(env, context);
  }

  void Pump(int status, int events) {
    if (status < 0) {
      // libuv reports POLLERR (e.g. a reset connection) as UV_EBADF: reading tells the socket's real error.
      if (ReadAndDispatch()) Fail(ErrnoError(env_, "uv_poll", -status));
      if (closeRequested_) Close();
      return;
    }
    if (events & UV_WRITABLE) DoFlush();
    if (failed_ || !(events & (UV_READABLE | UV_DISCONNECT))) return;
    ReadAndDispatch();
    if (closeRequested_) {
      Close();
      return;
    }
    DoFlush();
  }

  // Reads what the socket has and dispatches it; on failure reports libwayland's error and returns false.
  bool ReadAndDispatch() {
    dispatching_ = true;
    bool ok = true;
    while (ok && wl_display_prepare_read(display_) != 0) ok = wl_display_dispatch_pending(display_) >= 0;
    if (ok) ok = wl_display_read_events(display_) >= 0;
    if (ok) ok = wl_display_dispatch_pending(display_) >= 0;
    dispatching_ = false;
    if (!ok) FailFromDisplay();
    return ok;
  }

  static int Dispatch(const void* impl, void* target, uint32_t opcode, const wl_message* msg, wl_argument* args) {
    auto* self = const_cast<WlConnection*>(static_cast<const WlConnection*>(impl));
    auto* proxy = static_cast<wl_proxy*>(target);
    uint32_t handle = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(wl_proxy_get_user_data(proxy)));
    return self->DispatchEvent(handle, opcode, msg, args);
  }

  int DispatchEvent(uint32_t handle, uint32_t opcode, const wl_message* msg, wl_argument* args) {
    Napi::Env env = env_;
    Napi::HandleScope scope(env);
    Napi::Array values = Napi::Array::New(env);
    uint32_t i = 0;
    for (const char* p = msg->signature; *p; p++) {
      if (!IsArgChar(*p)) continue;
      Napi::Value v = env.Null();
      switch (*p) {
        case 'i': v = Napi::Number::New(env, args[i].i); break;
        case 'u': v = Napi::Number::New(env, args[i].u); break;
        case 'f': v = Napi::Number::New(env, wl_fixed_to_double(args[i].f)); break;
        case 'h': v = Napi::Number::New(env, args[i].h); break;
        case 's': if (args[i].s) v = Napi::String::New(env, args[i].s); break;
        case 'o': {
          auto* obj = reinterpret_cast<wl_proxy*>(args[i].o);
          v = Napi::Number::New(env, obj ? static_cast<uint32_t>(reinterpret_cast<uintptr_t>(wl_proxy_get_user_data(obj))) : 0);
          break;
        }
        case 'n': {
          // libwayland already made the proxy: it must get our dispatcher before we return.
          auto* obj = reinterpret_cast<wl_proxy*>(args[i].o);
          v = Napi::Number::New(env, obj ? Track(obj, msg->types[i]) : 0);
          break;
        }
        case 'a':
          v = args[i].a ? Napi::Buffer<uint8_t>::Copy(env, static_cast<uint8_t*>(args[i].a->data), args[i].a->size)
                        : Napi::Buffer<uint8_t>::New(env, 0);
          break;
      }
      values.Set(i, v);
      i++;
    }
    if (closeRequested_ || failed_) {
      // Nobody will take ownership of fds in this event: do not leak them.
      i = 0;
      for (const char* p = msg->signature; *p; p++) {
        if (!IsArgChar(*p)) continue;
        if (*p == 'h') close(args[i].h);
        i++;
      }
      return 0;
    }
    CallJs(onEvent_, {Napi::Number::New(env, handle), Napi::Number::New(env, opcode), values});
    return 0;
  }

  Napi::Env env_;
  wl_display* display_ = nullptr;
  uv_poll_t* poll_ = nullptr;
  Napi::FunctionReference onEvent_;
  Napi::FunctionReference onError_;
  std::unordered_map<uint32_t, ProxyEntry> proxies_;
  uint32_t nextHandle_ = kDisplayHandle + 1;
  bool failed_ = false;
  bool dispatching_ = false;
  bool closeRequested_ = false;
  bool wantWritable_ = false;
};

}  // namespace

void InitWayland(Napi::Env env, Napi::Object exports) {
  wl_log_set_handler_client(LogHandler);
  exports.Set("wlDefineInterfaces", Napi::Function::New(env, DefineInterfaces, "wlDefineInterfaces"));
  exports.Set("WlConnection", WlConnection::Define(env));
}

}  // namespace wlscanout
