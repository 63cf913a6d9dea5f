// Native half of pidfd-reap: thin, errno-returning wrappers around the pidfd
// syscalls, try_reap_dying_process and process_mrelease, plus a uv_poll based
// readiness watcher for pidfds.
//
// Conventions (the JS side relies on them):
//  * Syscall wrappers never throw for kernel errors: they return a Number,
//    >= 0 on success or -errno on failure. JS builds every error object in one
//    place (src/errors.ts).
//  * Arguments are validated in JS with Node-style errors first; the checks
//    here are only a backstop and throw a plain TypeError.
//  * No mutable static state: everything per environment lives in the
//    PidfdReap instance (Napi::Addon), so the addon works in worker_threads.

#include <napi.h>
#include <uv.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <unordered_map>
#include <unordered_set>

// Since Linux 5.1 new syscalls share one number on every architecture.
#ifndef __NR_pidfd_send_signal
#define __NR_pidfd_send_signal 424
#endif
#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif
#ifndef __NR_process_mrelease
#define __NR_process_mrelease 448
#endif

namespace {

constexpr const char kSyscallNrPath[] = "/sys/kernel/mm/reap_dying/syscall_nr";
// Generic syscall numbers are currently below 500; 1023 leaves room for growth
// while rejecting garbage (and the x32 bit, 0x40000000).
constexpr long kMaxSaneSyscallNr = 1023;

// Parses the sysfs text: a decimal number without sign or leading zeros,
// optionally followed by one newline. Returns the number or -EINVAL.
long ParseSyscallNr(const char* text, size_t length) {
  if (length > 0 && text[length - 1] == '\n') length--;
  if (length == 0 || length > 4 || text[0] == '0') return -EINVAL;
  long value = 0;
  for (size_t i = 0; i < length; i++) {
    if (text[i] < '0' || text[i] > '9') return -EINVAL;
    value = value * 10 + (text[i] - '0');
  }
  return value <= kMaxSaneSyscallNr ? value : -EINVAL;
}

// Reads the syscall number published by the patched kernel. Returns it, or
// -errno (-ENOENT on kernels without the patch, -EINVAL for bad content).
// The running kernel cannot change, so each addon instance reads it once
// (PidfdReap::SyscallNr) and only ever calls the number it confirmed.
long ReadSyscallNr() {
  int fd = open(kSyscallNrPath, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  char buffer[16];
  ssize_t length;
  do {
    length = read(fd, buffer, sizeof buffer);
  } while (length < 0 && errno == EINTR);
  int read_errno = errno;
  close(fd);
  if (length < 0) return -read_errno;
  // A full buffer means the file holds more than any valid number.
  if (static_cast<size_t>(length) == sizeof buffer) return -EINVAL;
  return ParseSyscallNr(buffer, static_cast<size_t>(length));
}

long Result(long rc) { return rc < 0 ? -errno : rc; }

long PidfdOpen(int32_t pid, uint32_t flags) {
  return Result(syscall(__NR_pidfd_open, pid, flags));
}

long PidfdSendSignal(int32_t pidfd, int32_t signal) {
  return Result(syscall(__NR_pidfd_send_signal, pidfd, signal, nullptr, 0));
}

long ProcessMrelease(int32_t pidfd) {
  return Result(syscall(__NR_process_mrelease, pidfd, 0));
}

// -ENOSYS when the kernel did not confirm a syscall number (nr < 0): the
// unpatched kernel may use any unconfirmed number for something else entirely.
long TryReapDyingProcess(long nr, int32_t pidfd, uint64_t max_bytes,
                         uint32_t flags) {
  if (nr < 0) return -ENOSYS;
  return Result(syscall(nr, pidfd, flags, static_cast<size_t>(max_bytes)));
}

// process_mrelease exists iff it gets as far as rejecting fd -1.
bool HasProcessMrelease() {
  return syscall(__NR_process_mrelease, -1, 0) < 0 && errno == EBADF;
}

// 1 when fd is readable (a pidfd: the process exited), 0 if not, or -errno.
long PollReadable(int32_t fd) {
  struct pollfd entry = {fd, POLLIN, 0};
  int rc;
  do {
    rc = poll(&entry, 1, 0);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) return -errno;
  if (rc == 0) return 0;
  if (entry.revents & POLLNVAL) return -EBADF;
  return (entry.revents & (POLLIN | POLLHUP | POLLERR)) ? 1 : 0;
}

// ---- argument backstops ---------------------------------------------------

Napi::Value Arg(const Napi::CallbackInfo& info, size_t index) {
  return index < info.Length() ? info[index] : info.Env().Undefined();
}

int32_t Int32Arg(const Napi::CallbackInfo& info, size_t index) {
  Napi::Value value = Arg(info, index);
  if (!value.IsNumber()) {
    throw Napi::TypeError::New(info.Env(), "pidfd-reap: expected a number");
  }
  return value.As<Napi::Number>().Int32Value();
}

uint32_t Uint32Arg(const Napi::CallbackInfo& info, size_t index) {
  Napi::Value value = Arg(info, index);
  if (value.IsUndefined()) return 0;
  if (!value.IsNumber()) {
    throw Napi::TypeError::New(info.Env(), "pidfd-reap: expected a number");
  }
  return value.As<Napi::Number>().Uint32Value();
}

uint64_t Uint64Arg(const Napi::CallbackInfo& info, size_t index) {
  Napi::Value value = Arg(info, index);
  if (!value.IsBigInt()) {
    throw Napi::TypeError::New(info.Env(), "pidfd-reap: expected a bigint");
  }
  bool lossless = false;
  uint64_t result = value.As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) {
    throw Napi::RangeError::New(info.Env(), "pidfd-reap: bigint out of range");
  }
  return result;
}

Napi::Number NumberResult(Napi::Env env, long result) {
  return Napi::Number::New(env, static_cast<double>(result));
}

// ---- thread-pool syscalls ---------------------------------------------------

// One reaping syscall run on the libuv thread pool; its promise resolves with
// the same Number the synchronous wrapper returns (never rejects).
// Written against the C API so that nothing can throw while the environment is
// being torn down.
struct PoolCall {
  enum class Kind { kTryReap, kMrelease } kind;
  long syscall_nr;
  int32_t pidfd;
  uint64_t max_bytes;
  uint32_t flags;
  long result = -ECANCELED;
  napi_async_work work = nullptr;
  napi_deferred deferred = nullptr;

  static void Execute(napi_env, void* data) {
    auto* call = static_cast<PoolCall*>(data);
    call->result = call->kind == Kind::kTryReap
                       ? TryReapDyingProcess(call->syscall_nr, call->pidfd,
                                             call->max_bytes,
                                             call->flags)
                       : ProcessMrelease(call->pidfd);
  }

  static void Complete(napi_env env, napi_status status, void* data) {
    std::unique_ptr<PoolCall> call(static_cast<PoolCall*>(data));
    if (status == napi_cancelled) call->result = -ECANCELED;
    // While the environment shuts down these calls may fail; nobody is left
    // to receive the result then, so failures are deliberately ignored.
    napi_value value;
    if (napi_create_double(env, static_cast<double>(call->result), &value) ==
        napi_ok) {
      napi_resolve_deferred(env, call->deferred, value);
    }
    napi_delete_async_work(env, call->work);
  }

  static Napi::Value Start(Napi::Env env, std::unique_ptr<PoolCall> call) {
    napi_value promise, name;
    NAPI_THROW_IF_FAILED(env, napi_create_promise(env, &call->deferred, &promise),
                         Napi::Value());
    NAPI_THROW_IF_FAILED(
        env, napi_create_string_utf8(env, "pidfd-reap", NAPI_AUTO_LENGTH, &name),
        Napi::Value());
    NAPI_THROW_IF_FAILED(
        env,
        napi_create_async_work(env, nullptr, name, Execute, Complete,
                               call.get(), &call->work),
        Napi::Value());
    napi_status status = napi_queue_async_work(env, call->work);
    if (status != napi_ok) {
      napi_delete_async_work(env, call->work);
      NAPI_THROW_IF_FAILED(env, status, Napi::Value());
    }
    call.release();  // owned by the work item until Complete
    return Napi::Value(env, promise);
  }
};

// ---- pidfd readiness watchers ---------------------------------------------------

// Remembers the cleanup hook while watchers close during environment teardown.
struct Teardown {
  napi_async_cleanup_hook_handle hook;
  size_t closing;
};

// One uv_poll_t on a pidfd. JS references (callback, async context) are
// released while the environment is alive; the uv close callback then only
// frees memory, because it may run after the addon instance is gone.
struct Watcher {
  uv_poll_t handle;
  napi_env env;
  uint32_t id = 0;
  // The owning addon's table of active watchers (valid while events arrive).
  std::unordered_map<uint32_t, Watcher*>* registry = nullptr;
  napi_ref callback = nullptr;
  napi_async_context context = nullptr;
  Teardown* teardown = nullptr;

  void ReleaseJs() {
    if (callback != nullptr) napi_delete_reference(env, callback);
    if (context != nullptr) napi_async_destroy(env, context);
    callback = nullptr;
    context = nullptr;
  }

  static void OnClosed(uv_handle_t* handle) {
    auto* watcher = static_cast<Watcher*>(handle->data);
    Teardown* teardown = watcher->teardown;
    delete watcher;
    if (teardown != nullptr && --teardown->closing == 0) {
      napi_remove_async_cleanup_hook(teardown->hook);
      delete teardown;
    }
  }

  void Close() {
    ReleaseJs();
    uv_close(reinterpret_cast<uv_handle_t*>(&handle), OnClosed);
  }
};

class PidfdReap : public Napi::Addon<PidfdReap> {
 public:
  PidfdReap(Napi::Env env, Napi::Object exports) {
    DefineAddon(
        exports,
        {
            InstanceMethod("pidfdOpen", &PidfdReap::PidfdOpenJs),
            InstanceMethod("pidfdSendSignal", &PidfdReap::PidfdSendSignalJs),
            InstanceMethod("tryReap", &PidfdReap::TryReapJs),
            InstanceMethod("tryReapAsync", &PidfdReap::TryReapAsyncJs),
            InstanceMethod("processMrelease", &PidfdReap::ProcessMreleaseJs),
            InstanceMethod("processMreleaseAsync",
                           &PidfdReap::ProcessMreleaseAsyncJs),
            InstanceMethod("pollReadable", &PidfdReap::PollReadableJs),
            InstanceMethod("watchReadable", &PidfdReap::WatchReadableJs),
            InstanceMethod("unwatch", &PidfdReap::UnwatchJs),
            InstanceMethod("adoptFd", &PidfdReap::AdoptFdJs),
            InstanceMethod("closeFd", &PidfdReap::CloseFdJs),
            InstanceMethod("features", &PidfdReap::FeaturesJs),
            InstanceMethod("parseSyscallNr", &PidfdReap::ParseSyscallNrJs),
            InstanceValue("pageSize",
                          Napi::Number::New(env, sysconf(_SC_PAGESIZE))),
            InstanceValue("syscallNrPath",
                          Napi::String::New(env, kSyscallNrPath)),
        });
    NAPI_THROW_IF_FAILED_VOID(
        env, napi_add_async_cleanup_hook(env, &PidfdReap::OnEnvCleanup, this,
                                         &cleanup_hook_));
  }

 private:
  Napi::Value PidfdOpenJs(const Napi::CallbackInfo& info) {
    return NumberResult(info.Env(), PidfdOpen(Int32Arg(info, 0), Uint32Arg(info, 1)));
  }

  Napi::Value PidfdSendSignalJs(const Napi::CallbackInfo& info) {
    return NumberResult(info.Env(),
                        PidfdSendSignal(Int32Arg(info, 0), Int32Arg(info, 1)));
  }

  Napi::Value TryReapJs(const Napi::CallbackInfo& info) {
    return NumberResult(info.Env(),
                        TryReapDyingProcess(SyscallNr(), Int32Arg(info, 0),
                                            Uint64Arg(info, 1),
                                            Uint32Arg(info, 2)));
  }

  Napi::Value TryReapAsyncJs(const Napi::CallbackInfo& info) {
    auto call = std::make_unique<PoolCall>();
    call->kind = PoolCall::Kind::kTryReap;
    call->syscall_nr = SyscallNr();
    call->pidfd = Int32Arg(info, 0);
    call->max_bytes = Uint64Arg(info, 1);
    call->flags = Uint32Arg(info, 2);
    return PoolCall::Start(info.Env(), std::move(call));
  }

  Napi::Value ProcessMreleaseJs(const Napi::CallbackInfo& info) {
    return NumberResult(info.Env(), ProcessMrelease(Int32Arg(info, 0)));
  }

  Napi::Value ProcessMreleaseAsyncJs(const Napi::CallbackInfo& info) {
    auto call = std::make_unique<PoolCall>();
    call->kind = PoolCall::Kind::kMrelease;
    call->syscall_nr = -ENOSYS;
    call->pidfd = Int32Arg(info, 0);
    call->max_bytes = 0;
    call->flags = 0;
    return PoolCall::Start(info.Env(), std::move(call));
  }

  Napi::Value PollReadableJs(const Napi::CallbackInfo& info) {
    return NumberResult(info.Env(), PollReadable(Int32Arg(info, 0)));
  }

  // watchReadable(fd, callback(status)) -> watcher id (> 0) or -errno.
  // The callback runs once, when fd becomes readable (status 0) or polling
  // fails (status -errno); the watcher is gone after that.
  Napi::Value WatchReadableJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int32_t fd = Int32Arg(info, 0);
    Napi::Value callback = Arg(info, 1);
    if (!callback.IsFunction()) {
      throw Napi::TypeError::New(env, "pidfd-reap: expected a function");
    }
    uv_loop_t* loop = nullptr;
    NAPI_THROW_IF_FAILED(env, napi_get_uv_event_loop(env, &loop), Napi::Value());

    auto watcher = std::make_unique<Watcher>();
    watcher->env = env;
    int rc = uv_poll_init(loop, &watcher->handle, fd);
    if (rc != 0) return NumberResult(env, rc);  // libuv errors are -errno
    watcher->handle.data = watcher.get();
    // From here on the handle is registered: it must be closed, not deleted.
    Watcher* registered = watcher.release();
    napi_value name;
    napi_status status =
        napi_create_string_utf8(env, "pidfd-reap:watch", NAPI_AUTO_LENGTH, &name);
    if (status == napi_ok) {
      status = napi_create_reference(env, callback, 1, &registered->callback);
    }
    if (status == napi_ok) {
      status = napi_async_init(env, nullptr, name, &registered->context);
    }
    if (status != napi_ok) {
      registered->Close();
      NAPI_THROW_IF_FAILED(env, status, Napi::Value());
    }
    rc = uv_poll_start(&registered->handle, UV_READABLE, &PidfdReap::OnPoll);
    if (rc != 0) {
      registered->Close();
      return NumberResult(env, rc);
    }
    registered->id = ++last_watcher_id_;
    registered->registry = &watchers_;
    watchers_[registered->id] = registered;
    return NumberResult(env, registered->id);
  }

  // unwatch(id) -> true if the watcher was still active.
  Napi::Value UnwatchJs(const Napi::CallbackInfo& info) {
    auto found = watchers_.find(Uint32Arg(info, 0));
    if (found == watchers_.end()) return Napi::Boolean::New(info.Env(), false);
    Watcher* watcher = found->second;
    watchers_.erase(found);
    watcher->Close();
    return Napi::Boolean::New(info.Env(), true);
  }

  // Pidfd objects register their fd here so that a worker that exits (or is
  // terminated) without closing them does not leak the fds.
  Napi::Value AdoptFdJs(const Napi::CallbackInfo& info) {
    owned_fds_.insert(Int32Arg(info, 0));
    return info.Env().Undefined();
  }

  // closeFd(fd) -> 0 or -errno; forgets an adopted fd and closes it.
  Napi::Value CloseFdJs(const Napi::CallbackInfo& info) {
    int32_t fd = Int32Arg(info, 0);
    owned_fds_.erase(fd);
    return NumberResult(info.Env(), close(fd) == 0 ? 0 : -errno);
  }

  static void OnPoll(uv_poll_t* handle, int status, int /*events*/) {
    auto* watcher = static_cast<Watcher*>(handle->data);
    // Poll events only arrive while the environment runs, so the addon that
    // owns the registry is alive here.
    watcher->registry->erase(watcher->id);
    uv_poll_stop(handle);
    CallOnce(watcher, status);
    watcher->Close();
  }

  static void CallOnce(Watcher* watcher, int status) {
    napi_env env = watcher->env;
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return;
    napi_value function, receiver, argument, result;
    if (napi_get_reference_value(env, watcher->callback, &function) == napi_ok &&
        function != nullptr && napi_get_global(env, &receiver) == napi_ok &&
        napi_create_int32(env, status, &argument) == napi_ok) {
      // make_callback (receiver must be an object) runs queued microtasks
      // afterwards, so promise reactions happen right away.
      if (napi_make_callback(env, watcher->context, receiver, function, 1,
                             &argument, &result) == napi_pending_exception) {
        napi_value error;
        if (napi_get_and_clear_last_exception(env, &error) == napi_ok) {
          napi_fatal_exception(env, error);
        }
      }
    }
    napi_close_handle_scope(env, scope);
  }

  // Runs when the environment (main thread or worker) shuts down: closes every
  // uv handle and tells Node when the last close callback has run.
  // Pending thread-pool calls have completed by now (Node drains them before
  // running cleanup hooks), so no syscall still uses these fds.
  static void OnEnvCleanup(napi_async_cleanup_hook_handle hook, void* data) {
    auto* addon = static_cast<PidfdReap*>(data);
    // uv_close unregisters each fd from epoll at once, so the fds may be
    // closed right after the handles.
    CloseWatchers(addon, hook);
    for (int fd : addon->owned_fds_) close(fd);
    addon->owned_fds_.clear();
  }

  // Closes every watcher; the last close callback (or this, if there are none)
  // tells Node that the cleanup hook has finished.
  static void CloseWatchers(PidfdReap* addon, napi_async_cleanup_hook_handle hook) {
    if (addon->watchers_.empty()) {
      napi_remove_async_cleanup_hook(hook);
      return;
    }
    auto* teardown = new Teardown{hook, addon->watchers_.size()};
    for (auto& entry : addon->watchers_) {
      entry.second->teardown = teardown;
      entry.second->Close();
    }
    addon->watchers_.clear();
  }

  Napi::Value FeaturesJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object result = Napi::Object::New(env);
    result.Set("syscallNr", NumberResult(env, SyscallNr()));
    result.Set("processMrelease", Napi::Boolean::New(env, HasProcessMrelease()));
    return result;
  }

  Napi::Value ParseSyscallNrJs(const Napi::CallbackInfo& info) {
    Napi::Value text = Arg(info, 0);
    if (!text.IsString()) {
      throw Napi::TypeError::New(info.Env(), "pidfd-reap: expected a string");
    }
    std::string utf8 = text.As<Napi::String>().Utf8Value();
    return NumberResult(info.Env(), ParseSyscallNr(utf8.data(), utf8.size()));
  }

  // The confirmed try_reap_dying_process number or -errno; 0 until first use.
  long SyscallNr() {
    if (syscall_nr_ == 0) syscall_nr_ = ReadSyscallNr();
    return syscall_nr_;
  }

  long syscall_nr_ = 0;
  std::unordered_map<uint32_t, Watcher*> watchers_;
  std::unordered_set<int32_t> owned_fds_;
  uint32_t last_watcher_id_ = 0;
  napi_async_cleanup_hook_handle cleanup_hook_ = nullptr;
};

}  // namespace

NODE_API_ADDON(PidfdReap)
