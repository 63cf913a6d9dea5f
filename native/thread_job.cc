// Jobs on threads of their own: see thread_job.h.
#include "thread_job.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <thread>

namespace pidfd_reap {

namespace {

// Starts fn on a detached thread that blocks every signal, so that signals
// meant for Node (SIGCHLD, SIGINT...) never land there and never cut its
// waits short. Throws std::system_error like std::thread.
template <typename Fn>
void StartDetachedThread(Fn fn) {
  sigset_t all, saved;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &saved);  // the new thread inherits it
  try {
    std::thread(std::move(fn)).detach();
  } catch (...) {
    pthread_sigmask(SIG_SETMASK, &saved, nullptr);
    throw;
  }
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
}

}  // namespace

ThreadJob::~ThreadJob() {
  if (pidfd >= 0) close(pidfd);
}

SetupError ThreadJob::Start(Napi::Env env, const std::shared_ptr<ThreadJob>& job, int32_t fd,
                            napi_value function, const char* name,
                            napi_threadsafe_function_call_js call_js) {
  job->pidfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (job->pidfd < 0) return {-errno, "dup"};
  SetupError prepared = job->Prepare();
  if (prepared.error != 0) return prepared;  // the destructor closes the dup

  napi_value resource_name;
  NAPI_THROW_IF_FAILED(
      env, napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource_name), SetupError());
  // The function's finalizer holds the job until the environment is done with it.
  auto* holder = new std::shared_ptr<ThreadJob>(job);
  napi_status status = napi_create_threadsafe_function(
      env, function, nullptr, resource_name, 0, 1, holder, &ThreadJob::Finalize, job.get(),
      call_js, &job->tsfn);
  if (status != napi_ok) {
    delete holder;
    NAPI_THROW_IF_FAILED(env, status, SetupError());
  }
  try {
    StartDetachedThread([job] { job->Run(); });
  } catch (const std::system_error& error) {
    // Nothing ran. The finalizer frees the holder.
    napi_release_threadsafe_function(job->tsfn, napi_tsfn_release);
    close(job->pidfd);
    job->pidfd = -1;
    return {-error.code().value(), "pthread_create"};
  }
  return {};
}

bool ThreadJob::PostLocked(void* data) {
  return tsfn != nullptr &&
         napi_call_threadsafe_function(tsfn, data, napi_tsfn_nonblocking) == napi_ok;
}

void ThreadJob::ReleaseLocked() {
  // After the environment's teardown finalized it, tsfn is null.
  if (tsfn != nullptr) napi_release_threadsafe_function(tsfn, napi_tsfn_release);
  tsfn = nullptr;
}

void ThreadJob::Finalize(napi_env, void* data, void*) {
  std::unique_ptr<std::shared_ptr<ThreadJob>> holder(static_cast<std::shared_ptr<ThreadJob>*>(data));
  ThreadJob& job = **holder;
  // Unlocked before the holder (maybe the job's last owner) goes.
  std::lock_guard<std::mutex> lock(job.mutex);
  job.tsfn = nullptr;
  job.OnFinalized();
}

}  // namespace pidfd_reap
