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
//    its own table of watchers (watchers.h, the kind kPsiWatch), freed by
//    the environment's cleanup hook, which closes every watcher still open.
//    The fd belongs to its watcher alone: it is closed in the uv close
//    callback, after libuv stopped polling it.

#include "psi.h"
#include "watchers.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>

namespace pidfd_reap {
namespace {

// One environment's PSI watchers, and its cleanup hook.
struct PsiState {
  Watchers watchers;
  napi_async_cleanup_hook_handle hook = nullptr;
};

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

  // The watcher owns fd from here on, failures included.
  const char* failed = nullptr;
  long id = state->watchers.Watch(env, fd, info[2], kPsiWatch, &failed);
  if (id < 0) return Failure(env, static_cast<int>(id), failed);
  return Napi::Number::New(env, static_cast<double>(id));
}

// psiClose(id) -> true if the watcher was still open. Its callback never runs
// again; the fd (and with it the kernel's trigger) is closed right after.
Napi::Value PsiCloseJs(const Napi::CallbackInfo& info) {
  auto* state = static_cast<PsiState*>(info.Data());
  return Napi::Boolean::New(info.Env(), state->watchers.Unwatch(IdArg(info)));
}

// psiRef(id, ref) -> true if the watcher is open: whether it keeps the event
// loop alive (uv_ref / uv_unref; a new watcher does).
Napi::Value PsiRefJs(const Napi::CallbackInfo& info) {
  auto* state = static_cast<PsiState*>(info.Data());
  return Napi::Boolean::New(info.Env(),
                            state->watchers.Ref(IdArg(info), info.Length() > 1 && info[1].ToBoolean()));
}

// The environment (main thread or worker) shuts down: close every watcher;
// the last close callback (or this, if none) finishes the hook. The close
// callbacks need nothing of the state.
void OnEnvCleanup(napi_async_cleanup_hook_handle hook, void* data) {
  auto* state = static_cast<PsiState*>(data);
  state->watchers.CloseAll(hook);
  delete state;
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
