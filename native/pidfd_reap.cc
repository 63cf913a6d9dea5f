// Native half of pidfd-reap: the module's init and its JS-facing functions.
// The parts, by concern:
//   syscalls.cc     the raw system calls and kernel feature detection
//   watchers.cc     pidfd readiness watchers on the event loop (uv_poll)
//   thread_job.cc   what the jobs on threads of their own share
//   async_calls.cc  tryReapAsync (libuv pool), processMreleaseAsync (own thread)
//   reap_job.cc     killAndReap's job: the kill and the capped reaping loop
//   psi.cc          PSI trigger watchers (src/psi.ts)
//   sd_notify.cc    sd_notify(3) datagrams to systemd (src/sd-notify.ts)
//
// Conventions (the JS side relies on them):
//  * Syscall wrappers never throw for kernel errors: they return a Number,
//    >= 0 on success or -errno on failure. JS builds every error object in one
//    place (src/errors.ts).
//  * Arguments are validated in JS with Node-style errors first; the checks
//    here are only a backstop and throw a plain TypeError (js_args.h).
//  * No mutable static state: everything per environment lives in the
//    PidfdReap instance (Napi::Addon), so the addon works in worker_threads.
//  * Calls that may block in the kernel (process_mrelease, and killAndReap's
//    whole loop) run on threads of their own, never on the libuv pool
//    (thread_job.h).

#include <napi.h>

#include <unistd.h>

#include <cerrno>
#include <string>
#include <unordered_set>

#include "async_calls.h"
#include "js_args.h"
#include "psi.h"
#include "reap_job.h"
#include "sd_notify.h"
#include "syscalls.h"
#include "watchers.h"

namespace pidfd_reap {
namespace {

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
            InstanceMethod("processMreleaseAsync", &PidfdReap::ProcessMreleaseAsyncJs),
            InstanceMethod("lockMappedCode", &PidfdReap::LockMappedCodeJs),
            InstanceMethod("pollReadable", &PidfdReap::PollReadableJs),
            InstanceMethod("watchReadable", &PidfdReap::WatchReadableJs),
            InstanceMethod("unwatch", &PidfdReap::UnwatchJs),
            InstanceMethod("refWatch", &PidfdReap::RefWatchJs),
            InstanceMethod("adoptFd", &PidfdReap::AdoptFdJs),
            InstanceMethod("closeFd", &PidfdReap::CloseFdJs),
            InstanceMethod("features", &PidfdReap::FeaturesJs),
            InstanceMethod("parseSyscallNr", &PidfdReap::ParseSyscallNrJs),
            InstanceMethod("startReap", &PidfdReap::StartReapJs),
            InstanceMethod("reapStop", &PidfdReap::ReapStopJs),
            InstanceMethod("reapProgress", &PidfdReap::ReapProgressJs),
#ifdef PIDFD_REAP_TEST_HOOKS
            InstanceMethod("testAllocate", &PidfdReap::TestAllocateJs),
#endif
            InstanceValue("pageSize", Napi::Number::New(env, sysconf(_SC_PAGESIZE))),
            InstanceValue("syscallNrPath", Napi::String::New(env, kSyscallNrPath)),
#ifdef PIDFD_REAP_TEST_HOOKS
            InstanceValue("testHooks", Napi::Boolean::New(env, true)),
#else
            InstanceValue("testHooks", Napi::Boolean::New(env, false)),
#endif
        });
    NAPI_THROW_IF_FAILED_VOID(
        env, napi_add_async_cleanup_hook(env, &PidfdReap::OnEnvCleanup, this, &cleanup_hook_));
    RegisterPsi(env, exports);  // PSI trigger watchers (psi.cc)
    RegisterSdNotify(env, exports);  // sd_notify(3) (sd_notify.cc)
  }

 private:
  Napi::Value PidfdOpenJs(const Napi::CallbackInfo& info) {
    return NumberResult(info.Env(), PidfdOpen(Int32Arg(info, 0), Uint32Arg(info, 1)));
  }

  Napi::Value PidfdSendSignalJs(const Napi::CallbackInfo& info) {
    return NumberResult(info.Env(), PidfdSendSignal(Int32Arg(info, 0), Int32Arg(info, 1)));
  }

  Napi::Value TryReapJs(const Napi::CallbackInfo& info) {
    return NumberResult(info.Env(), TryReapDyingProcess(syscall_nr_.Get(), Int32Arg(info, 0),
                                                        Uint64Arg(info, 1), Uint32Arg(info, 2)));
  }

  Napi::Value TryReapAsyncJs(const Napi::CallbackInfo& info) {
    return TryReapAsync(info.Env(), syscall_nr_.Get(), Int32Arg(info, 0), Uint64Arg(info, 1),
                        Uint32Arg(info, 2));
  }

  Napi::Value ProcessMreleaseJs(const Napi::CallbackInfo& info) {
    return NumberResult(info.Env(), ProcessMrelease(Int32Arg(info, 0)));
  }

  Napi::Value ProcessMreleaseAsyncJs(const Napi::CallbackInfo& info) {
    return ProcessMreleaseAsync(info.Env(), Int32Arg(info, 0));
  }

  Napi::Value LockMappedCodeJs(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(LockMappedCode(info.Length() > 0 && info[0].ToBoolean().Value())));
  }

  Napi::Value PollReadableJs(const Napi::CallbackInfo& info) {
    return NumberResult(info.Env(), PollReadable(Int32Arg(info, 0)));
  }

  // watchReadable(fd, callback(status)) -> watcher id (> 0) or -errno.
  Napi::Value WatchReadableJs(const Napi::CallbackInfo& info) {
    int32_t fd = Int32Arg(info, 0);
    Napi::Value callback = Arg(info, 1);
    if (!callback.IsFunction()) {
      throw Napi::TypeError::New(info.Env(), "pidfd-reap: expected a function");
    }
    return NumberResult(info.Env(), watchers_.Watch(info.Env(), fd, callback, kPidfdWatch));
  }

  // unwatch(id) -> true if the watcher was still active.
  Napi::Value UnwatchJs(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), watchers_.Unwatch(Uint32Arg(info, 0)));
  }

  // refWatch(id, ref) -> true if the watcher is active: whether it keeps the
  // event loop alive.
  Napi::Value RefWatchJs(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(),
                              watchers_.Ref(Uint32Arg(info, 0), Arg(info, 1).ToBoolean()));
  }

  // Pidfd objects register their fd here so that a worker that exits (or is
  // terminated) without closing them does not leak the fds.
  Napi::Value AdoptFdJs(const Napi::CallbackInfo& info) {
    owned_fds_.insert(Int32Arg(info, 0));
    return info.Env().Undefined();
  }

  // closeFd(fd) -> 0 or -errno; forgets an adopted fd and closes it.
  // Watchers of the fd go first (their callbacks never run).
  Napi::Value CloseFdJs(const Napi::CallbackInfo& info) {
    int32_t fd = Int32Arg(info, 0);
    watchers_.UnwatchFd(fd);
    owned_fds_.erase(fd);
    return NumberResult(info.Env(), close(fd) == 0 ? 0 : -errno);
  }

  Napi::Value FeaturesJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object result = Napi::Object::New(env);
    long nr = syscall_nr_.Get();
    result.Set("syscallNr", NumberResult(env, nr));
    result.Set("tryReapKill", Napi::Boolean::New(env, HasTryReapKill(nr)));
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

  Napi::Value StartReapJs(const Napi::CallbackInfo& info) { return StartReap(info, syscall_nr_); }

  Napi::Value ReapStopJs(const Napi::CallbackInfo& info) { return ReapStop(info); }

  Napi::Value ReapProgressJs(const Napi::CallbackInfo& info) { return ReapProgress(info); }

#ifdef PIDFD_REAP_TEST_HOOKS
  // Test hook: allocates (and frees) `bytes` with operator new, as the
  // addon's own allocations do, so that a test can make one fail for real
  // (std::bad_alloc) and see it become a JS error instead of std::terminate.
  Napi::Value TestAllocateJs(const Napi::CallbackInfo& info) {
    uint64_t bytes = Uint64Arg(info, 0);
    void* memory = ::operator new(static_cast<size_t>(bytes));
    ::operator delete(memory);
    return info.Env().Undefined();
  }
#endif

  // Runs when the environment (main thread or worker) shuts down: closes every
  // uv handle and tells Node when the last close callback has run.
  // Pending thread-pool calls have completed by now (Node drains them before
  // running cleanup hooks), so no syscall still uses these fds.
  static void OnEnvCleanup(napi_async_cleanup_hook_handle hook, void* data) {
    auto* addon = static_cast<PidfdReap*>(data);
    // uv_close unregisters each fd from epoll at once, so the fds may be
    // closed right after the handles.
    addon->watchers_.CloseAll(hook);
    for (int fd : addon->owned_fds_) close(fd);
    addon->owned_fds_.clear();
  }

  SyscallNrCache syscall_nr_;
  Watchers watchers_;
  std::unordered_set<int32_t> owned_fds_;
  napi_async_cleanup_hook_handle cleanup_hook_ = nullptr;
};

}  // namespace
}  // namespace pidfd_reap

using PidfdReapAddon = pidfd_reap::PidfdReap;
NODE_API_ADDON(PidfdReapAddon)
