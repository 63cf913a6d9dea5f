// PSI trigger watchers (Documentation/accounting/psi.rst): a pressure file
// (/proc/pressure/memory, or a cgroup v2 group's memory.pressure) opened,
// armed with a trigger such as "some 150000 1000000" and watched for POLLPRI
// by a uv_poll handle on the environment's own event loop. Nothing polls on a
// timer, nothing blocks the loop, nothing runs on the libuv thread pool: the
// kernel wakes the loop when the stall in a window crosses the threshold.
//
// Conventions (as in pidfd_reap.cc, which src/psi.ts relies on):
//  * psiWatch never throws for a kernel error: it returns { errno, syscall }
//    (errno negative) and JS builds the Node-style error.
//  * No mutable static state: each environment (main thread or worker) has
//    its own PsiState, freed by the environment's cleanup hook once every
//    watcher it still had is closed. The fd belongs to its watcher alone: it
//    is closed in the uv close callback, after libuv stopped polling it.

#include "psi.h"
#include "js_callback.h"
#include "syscalls.h"
#include "watchers.h"

#include <uv.h>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

namespace pidfd_reap {
namespace {

struct PsiState;

// One armed trigger: its fd, its poll handle and the JS callback.
struct PsiWatch {
  uv_poll_t handle;
  napi_env env = nullptr;
  int fd = -1;
  uint32_t id = 0;
  PsiState* state = nullptr;
  napi_ref callback = nullptr;
  napi_async_context context = nullptr;
};

struct PsiState {
  std::unordered_map<uint32_t, PsiWatch*> watches;
  uint32_t last_id = 0;
  // Handles whose uv close callback has not run yet: the state must outlive them.
  size_t closing = 0;
  bool torn_down = false;
  napi_async_cleanup_hook_handle hook = nullptr;
};

// After the environment's cleanup hook ran, the last close callback frees the
// state and tells Node that the hook has finished.
void FinishIfDone(PsiState* state) {
  if (!state->torn_down || state->closing != 0) return;
  napi_remove_async_cleanup_hook(state->hook);
  delete state;
}

void OnClosed(uv_handle_t* handle) {
  auto* watch = static_cast<PsiWatch*>(handle->data);
  PsiState* state = watch->state;
  // Closing the fd also destroys the kernel's trigger.
  close(watch->fd);
  delete watch;
  state->closing--;
  FinishIfDone(state);
}

// Releases the JS references (the environment is alive whenever this runs)
// and closes the handle; memory and fd go in OnClosed.
void CloseWatch(PsiWatch* watch) {
  if (watch->callback != nullptr) napi_delete_reference(watch->env, watch->callback);
  if (watch->context != nullptr) napi_async_destroy(watch->env, watch->context);
  watch->callback = nullptr;
  watch->context = nullptr;
  watch->state->closing++;
  uv_close(reinterpret_cast<uv_handle_t*>(&watch->handle), OnClosed);
}

// Calls the watcher's callback with `status` (0: the trigger fired; -errno:
// the watch failed and has ended).
void CallBack(PsiWatch* watch, int status) {
  CallWithStatus(watch->env, watch->callback, watch->context, status);
}

// Ends a watch: the callback gets `status` once, and may no longer find the
// watch by id.
void EndWatch(PsiWatch* watch, int status) {
  uv_poll_stop(&watch->handle);
  watch->state->watches.erase(watch->id);
  CallBack(watch, status);
  CloseWatch(watch);
}

// Whether the file went away: kernfs answers POLLERR | POLLPRI for good once
// its node is removed (the cgroup was removed), and libuv passes POLLERR
// with POLLPRI on as a plain UV_PRIORITIZED event (the sysfs_notify
// convention), so without this check the loop would spin on it.
bool Gone(int fd) {
  int revents = PollNow(fd, POLLPRI);
  return revents > 0 && (revents & (POLLERR | POLLNVAL)) != 0;
}

void OnPoll(uv_poll_t* handle, int status, int events) {
  auto* watch = static_cast<PsiWatch*>(handle->data);
  if (status < 0) return EndWatch(watch, status);  // POLLERR alone: UV_EBADF
  if (!(events & UV_PRIORITIZED)) return;
  // epoll's own poll of the file took the event (the kernel reports each
  // one once), so this poll finds POLLERR only on a node that is gone. (A
  // next event pending already would be folded into this one; events come
  // at most once per window, at least 500 ms apart.)
  if (Gone(watch->fd)) return EndWatch(watch, -ENODEV);
  CallBack(watch, 0);
}

Napi::Value Failure(Napi::Env env, int negative_errno, const char* syscall) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("errno", Napi::Number::New(env, negative_errno));
  result.Set("syscall", Napi::String::New(env, syscall));
  return result;
}

std::string StringArg(const Napi::CallbackInfo& info, size_t index) {
  if (index >= info.Length() || !info[index].IsString()) {
    throw Napi::TypeError::New(info.Env(), "pidfd-reap: expected a string");
  }
  return info[index].As<Napi::String>().Utf8Value();
}

uint32_t IdArg(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), "pidfd-reap: expected a number");
  }
  return info[0].As<Napi::Number>().Uint32Value();
}

// psiWatch(path, trigger, callback(status)) -> watcher id (> 0), or
// { errno, syscall } when open, write (the kernel parses the trigger),
// uv_poll_init or uv_poll_start failed; nothing stays open then.
// The callback gets 0 for each event, or -errno once when the watch fails
// (-ENODEV: the file went away, its cgroup was removed).
Napi::Value PsiWatchJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* state = static_cast<PsiState*>(info.Data());
  std::string path = StringArg(info, 0);
  std::string trigger = StringArg(info, 1);
  if (info.Length() < 3 || !info[2].IsFunction()) {
    throw Napi::TypeError::New(env, "pidfd-reap: expected a function");
  }
  uv_loop_t* loop = nullptr;
  NAPI_THROW_IF_FAILED(env, napi_get_uv_event_loop(env, &loop), Napi::Value());

  // Write access is all a trigger needs (and all a delegated cgroup grants).
  int fd = open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return Failure(env, -errno, "open");
  // The kernel terminates the text at the last byte written, so the NUL is
  // part of the write. The trigger lives as long as this fd.
  ssize_t written;
  do {
    written = write(fd, trigger.c_str(), trigger.size() + 1);
  } while (written < 0 && errno == EINTR);
  if (written < 0) {
    int error = errno;
    close(fd);
    return Failure(env, -error, "write");
  }

  auto watch = std::make_unique<PsiWatch>();
  int rc = uv_poll_init(loop, &watch->handle, fd);
  if (rc != 0) {  // libuv errors are -errno
    close(fd);
    return Failure(env, rc, "uv_poll_init");
  }
  watch->handle.data = watch.get();
  watch->env = env;
  watch->fd = fd;
  watch->state = state;
  // From here on the handle is registered with the loop: it must be closed,
  // not deleted.
  PsiWatch* registered = watch.release();
  napi_value name;
  napi_status status = napi_create_string_utf8(env, "pidfd-reap:psi", NAPI_AUTO_LENGTH, &name);
  if (status == napi_ok) status = napi_create_reference(env, info[2], 1, &registered->callback);
  if (status == napi_ok) status = napi_async_init(env, nullptr, name, &registered->context);
  if (status != napi_ok) {
    CloseWatch(registered);
    NAPI_THROW_IF_FAILED(env, status, Napi::Value());
  }
  rc = uv_poll_start(&registered->handle, UV_PRIORITIZED, OnPoll);
  if (rc != 0) {
    CloseWatch(registered);
    return Failure(env, rc, "uv_poll_start");
  }
  registered->id = ++state->last_id;
  state->watches[registered->id] = registered;
  return Napi::Number::New(env, registered->id);
}

// psiClose(id) -> true if the watcher was still open. Its callback never runs
// again; the fd (and with it the kernel's trigger) is closed right after.
Napi::Value PsiCloseJs(const Napi::CallbackInfo& info) {
  auto* state = static_cast<PsiState*>(info.Data());
  auto found = state->watches.find(IdArg(info));
  if (found == state->watches.end()) return Napi::Boolean::New(info.Env(), false);
  PsiWatch* watch = found->second;
  state->watches.erase(found);
  CloseWatch(watch);
  return Napi::Boolean::New(info.Env(), true);
}

// psiRef(id, ref) -> true if the watcher is open: whether it keeps the event
// loop alive (uv_ref / uv_unref; a new watcher does).
Napi::Value PsiRefJs(const Napi::CallbackInfo& info) {
  auto* state = static_cast<PsiState*>(info.Data());
  auto found = state->watches.find(IdArg(info));
  if (found == state->watches.end()) return Napi::Boolean::New(info.Env(), false);
  SetHandleRef(reinterpret_cast<uv_handle_t*>(&found->second->handle),
               info.Length() > 1 && info[1].ToBoolean());
  return Napi::Boolean::New(info.Env(), true);
}

// The environment (main thread or worker) shuts down: close every watcher;
// the last close callback (or this, if none) finishes the hook.
void OnEnvCleanup(napi_async_cleanup_hook_handle, void* data) {
  auto* state = static_cast<PsiState*>(data);
  state->torn_down = true;
  for (auto& entry : state->watches) CloseWatch(entry.second);
  state->watches.clear();
  FinishIfDone(state);
}

}  // namespace

void RegisterPsi(Napi::Env env, Napi::Object exports) {
  auto* state = new PsiState();
  napi_status status = napi_add_async_cleanup_hook(env, OnEnvCleanup, state, &state->hook);
  if (status != napi_ok) {
    delete state;
    NAPI_THROW_IF_FAILED_VOID(env, status);
  }
  exports.Set("psiWatch", Napi::Function::New(env, PsiWatchJs, "psiWatch", state));
  exports.Set("psiClose", Napi::Function::New(env, PsiCloseJs, "psiClose", state));
  exports.Set("psiRef", Napi::Function::New(env, PsiRefJs, "psiRef", state));
}

}  // namespace pidfd_reap
