// The raw calls' async forms: see async_calls.h.
#include "async_calls.h"

#include <unistd.h>

#include <cerrno>
#include <memory>

#include "syscalls.h"
#include "thread_job.h"

namespace pidfd_reap {

namespace {

// One try_reap_dying_process call on the libuv thread pool. Written against
// the C API so that nothing can throw while the environment is being torn
// down.
struct PoolCall {
  long syscall_nr;
  int32_t pidfd;
  uint64_t max_bytes;
  uint32_t flags;
  long result = -ECANCELED;
  napi_async_work work = nullptr;
  napi_deferred deferred = nullptr;

  static void Execute(napi_env, void* data) {
    auto* call = static_cast<PoolCall*>(data);
    call->result =
        TryReapDyingProcess(call->syscall_nr, call->pidfd, call->max_bytes, call->flags);
  }

  static void Complete(napi_env env, napi_status status, void* data) {
    std::unique_ptr<PoolCall> call(static_cast<PoolCall*>(data));
    if (status == napi_cancelled) call->result = -ECANCELED;
    // While the environment shuts down these calls may fail; nobody is left
    // to receive the result then, so failures are deliberately ignored.
    napi_value value;
    if (napi_create_double(env, static_cast<double>(call->result), &value) == napi_ok) {
      napi_resolve_deferred(env, call->deferred, value);
    }
    napi_delete_async_work(env, call->work);
  }
};

// process_mrelease on a thread of its own: eight such calls on the libuv
// pool would take the whole default pool from fs, dns and crypto.
class MreleaseCall : public ThreadJob {
 public:
  long result = -ECANCELED;
  napi_deferred deferred = nullptr;

  static void Resolve(napi_env env, napi_value, void* context, void*) {
    if (env == nullptr) return;
    auto* call = static_cast<MreleaseCall*>(static_cast<ThreadJob*>(context));
    napi_value value;
    if (napi_create_double(env, static_cast<double>(call->result), &value) == napi_ok) {
      napi_resolve_deferred(env, call->deferred, value);
    }
  }

 protected:
  void Run() override {
    result = ProcessMrelease(pidfd);
    std::lock_guard<std::mutex> lock(mutex);
    close(pidfd);
    pidfd = -1;
    PostLocked(nullptr);  // fails once the environment is gone: nobody to tell
    ReleaseLocked();
  }
};

}  // namespace

Napi::Value TryReapAsync(Napi::Env env, long syscall_nr, int32_t pidfd, uint64_t max_bytes,
                         uint32_t flags) {
  auto call = std::make_unique<PoolCall>();
  call->syscall_nr = syscall_nr;
  call->pidfd = pidfd;
  call->max_bytes = max_bytes;
  call->flags = flags;
  napi_value promise, name;
  NAPI_THROW_IF_FAILED(env, napi_create_promise(env, &call->deferred, &promise), Napi::Value());
  NAPI_THROW_IF_FAILED(env, napi_create_string_utf8(env, "pidfd-reap", NAPI_AUTO_LENGTH, &name),
                       Napi::Value());
  NAPI_THROW_IF_FAILED(env,
                       napi_create_async_work(env, nullptr, name, PoolCall::Execute,
                                              PoolCall::Complete, call.get(), &call->work),
                       Napi::Value());
  napi_status status = napi_queue_async_work(env, call->work);
  if (status != napi_ok) {
    napi_delete_async_work(env, call->work);
    NAPI_THROW_IF_FAILED(env, status, Napi::Value());
  }
  call.release();  // owned by the work item until Complete
  return Napi::Value(env, promise);
}

Napi::Value ProcessMreleaseAsync(Napi::Env env, int32_t pidfd) {
  napi_value promise;
  auto call = std::make_shared<MreleaseCall>();
  NAPI_THROW_IF_FAILED(env, napi_create_promise(env, &call->deferred, &promise), Napi::Value());
  SetupError error = ThreadJob::Start(env, call, pidfd, nullptr, "pidfd-reap:mrelease",
                                      &MreleaseCall::Resolve);
  if (error.error != 0) {
    // A bad fd cannot block: let the kernel give its own answer (EBADF, or
    // ENOSYS without the call). Otherwise EMFILE, EAGAIN and the like.
    call->result = error.error == -EBADF ? ProcessMrelease(pidfd) : error.error;
    MreleaseCall::Resolve(env, nullptr, static_cast<ThreadJob*>(call.get()), nullptr);
  }
  return Napi::Value(env, promise);
}

}  // namespace pidfd_reap
