// FdWatcher: a uv_poll_t on Node's own event loop, calling back into JS when an fd is ready.
#include <uv.h>

#include <climits>
#include <cmath>
#include <string>

#include "errors.h"

namespace wlscanout {
namespace {

class FdWatcher : public Napi::ObjectWrap<FdWatcher> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FdWatcher",
                       {InstanceMethod<&FdWatcher::Start>("start"), InstanceMethod<&FdWatcher::Stop>("stop"),
                        InstanceMethod<&FdWatcher::Close>("close")});
  }

  FdWatcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FdWatcher>(info), context_(info.Env(), "FdWatcher") {
    Napi::Env env = info.Env();
    double fd = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
    if (std::trunc(fd) != fd || fd < 0 || fd > INT_MAX) {
      ThrowTypeError(env, "fd must be a file descriptor (got " + info[0].ToString().Utf8Value() + ")");
      return;
    }
    if (!info[1].IsFunction()) {
      ThrowTypeError(env, "callback must be a function");
      return;
    }
    // Kept on the JS object rather than in a persistent reference, so that a callback that closes over
    // the watcher does not keep it alive forever.
    info.This().As<Napi::Object>().DefineProperty(
        Napi::PropertyDescriptor::Value("callback", info[1], napi_default));
    uv_loop_t* loop;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
      Napi::Error::New(env, "cannot get the libuv loop").ThrowAsJavaScriptException();
      return;
    }
    // The handle outlives this object when closed from the destructor (uv_close completes later), so it
    // is heap-allocated and freed by the close callback.
    uv_poll_t* handle = new uv_poll_t;
    int r = uv_poll_init(loop, handle, static_cast<int>(fd));
    if (r < 0) {
      delete handle;  // never registered with the loop
      ThrowErrno(env, "uv_poll_init", -r);
      return;
    }
    handle->data = this;
    handle_ = handle;
  }

  ~FdWatcher() override { CloseHandle(); }

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    double events = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
    const int all = UV_READABLE | UV_WRITABLE | UV_DISCONNECT;
    if (std::trunc(events) != events || events < 0 || (static_cast<int>(events) & ~all)) {
      ThrowTypeError(env, "events must be a mask of constants.POLL_* (got " + info[0].ToString().Utf8Value() + ")");
      return Napi::Value();
    }
    if (!handle_) {
      Napi::Error::New(env, "FdWatcher is closed").ThrowAsJavaScriptException();
      return Napi::Value();
    }
    int r = uv_poll_start(handle_, static_cast<int>(events), OnPoll);
    if (r < 0) {
      ThrowErrno(env, "uv_poll_start", -r);
      return Napi::Value();
    }
    // Like any active libuv handle, a started watcher must not be collected while it can still fire.
    if (!started_) Ref();
    started_ = true;
    return Napi::Value();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (handle_) uv_poll_stop(handle_);
    Unstarted();
    return Napi::Value();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseHandle();
    Unstarted();
    return Napi::Value();
  }

  void Unstarted() {
    if (started_) Unref();
    started_ = false;
  }

  void CloseHandle() {
    if (!handle_) return;
    handle_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(handle_),
             [](uv_handle_t* handle) { delete reinterpret_cast<uv_poll_t*>(handle); });
    handle_ = nullptr;
  }

  static void OnPoll(uv_poll_t* handle, int status, int events) {
    FdWatcher* self = static_cast<FdWatcher*>(handle->data);
    if (!self) return;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    Napi::Object object = self->Value();
    if (object.IsEmpty()) return;
    Napi::Value callback = object.Get("callback");
    if (!callback.IsFunction()) return;
    // MakeCallback (not Call) so that microtasks and nextTicks queued by the callback run afterwards.
    // `self` may be gone once the callback returns (it may close the watcher), so only env is used after.
    callback.As<Napi::Function>().MakeCallback(
        object, {Napi::Number::New(env, status), Napi::Number::New(env, events)}, self->context_);
    if (env.IsExceptionPending()) {
      Napi::Error error = env.GetAndClearPendingException();
      napi_fatal_exception(env, error.Value());
    }
  }

  uv_poll_t* handle_ = nullptr;  // null once closed
  bool started_ = false;
  Napi::AsyncContext context_;
};

}  // namespace

void InitFdWatcher(Napi::Env env, Napi::Object exports) {
  exports.Set("FdWatcher", FdWatcher::Define(env));
}

}  // namespace wlscanout
