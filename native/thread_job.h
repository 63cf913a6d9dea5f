// What the two jobs that may block in the kernel share (a process_mrelease
// call, async_calls.cc, and killAndReap's reaping job, reap_job.cc): each runs on
// a detached thread of its own, never on the libuv pool, owns a dup of its
// pidfd, and reaches JS only through a thread-safe function whose teardown
// it checks under a mutex, so that it may outlive its environment (a
// terminated worker) without touching it.
#ifndef PIDFD_REAP_THREAD_JOB_H_
#define PIDFD_REAP_THREAD_JOB_H_

#include <napi.h>

#include <memory>
#include <mutex>

namespace pidfd_reap {

// Why a job did not start: -errno and the call that failed; error 0: started.
struct SetupError {
  long error = 0;
  const char* syscall = nullptr;
};

class ThreadJob {
 public:
  virtual ~ThreadJob();

  // Dups fd into pidfd, runs Prepare, creates the thread-safe function
  // (`function`, which may be null, is handed to `call_js` with each event;
  // the job itself is the context) and starts Run on a detached thread that
  // blocks every signal. Returns what failed before the thread started
  // (nothing of the job's was done then; the dup is closed), else {}.
  // Throws for Node-API failures.
  static SetupError Start(Napi::Env env, const std::shared_ptr<ThreadJob>& job, int32_t fd,
                          napi_value function, const char* name,
                          napi_threadsafe_function_call_js call_js);

 protected:
  // The thread's body; it ends with Release().
  virtual void Run() = 0;
  // After the dup, on the JS thread: more setup that can fail.
  virtual SetupError Prepare() { return {}; }
  // On the JS thread, under `mutex`, when the thread-safe function is
  // finalized: after the thread's Release(), or early at environment
  // teardown while the thread may still run.
  virtual void OnFinalized() {}

  // Queues `data` for call_js. Under `mutex`. False when there is nobody
  // to tell any more (the environment is gone): the caller keeps `data`.
  bool PostLocked(void* data);
  // The thread's last word to JS (under `mutex`): releases the function.
  void ReleaseLocked();

  int pidfd = -1;  // the dup: valid until the job closes it
  // Guards tsfn (and what subclasses say) across the job's thread, the JS
  // thread and environment teardown, which finalizes the function early.
  std::mutex mutex;
  napi_threadsafe_function tsfn = nullptr;

 private:
  static void Finalize(napi_env env, void* data, void* hint);
};

}  // namespace pidfd_reap

#endif  // PIDFD_REAP_THREAD_JOB_H_
