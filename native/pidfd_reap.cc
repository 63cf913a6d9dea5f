// Native half of pidfd-reap: thin, errno-returning wrappers around the pidfd
// syscalls, try_reap_dying_process and process_mrelease, a uv_poll based
// readiness watcher for pidfds, and the reaping job of killAndReap (its whole
// capped loop on a thread of its own, see ReapJob).
//
// Conventions (the JS side relies on them):
//  * Syscall wrappers never throw for kernel errors: they return a Number,
//    >= 0 on success or -errno on failure. JS builds every error object in one
//    place (src/errors.ts).
//  * Arguments are validated in JS with Node-style errors first; the checks
//    here are only a backstop and throw a plain TypeError.
//  * No mutable static state: everything per environment lives in the
//    PidfdReap instance (Napi::Addon), so the addon works in worker_threads.
//  * Calls that may block in the kernel (process_mrelease, and killAndReap's
//    whole loop) run on threads of their own, never on the libuv pool. Such a
//    thread owns a dup of its fd and reaches JS only through a thread-safe
//    function whose teardown it checks under a mutex, so it may outlive its
//    environment (a terminated worker) without touching it.

#include <napi.h>
#include <uv.h>

#include "psi.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>
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
// The running kernel cannot change, so each addon instance keeps the answer
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

// One try_reap_dying_process call (bounded by its cap, never blocking) run on
// the libuv thread pool; its promise resolves with the same Number the
// synchronous wrapper returns (never rejects).
// Written against the C API so that nothing can throw while the environment is
// being torn down.
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
    call->result = TryReapDyingProcess(call->syscall_nr, call->pidfd,
                                       call->max_bytes, call->flags);
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
  int32_t fd = -1;
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

// ---- process_mrelease on a thread of its own -----------------------------------

// process_mrelease can block for seconds on the victim's mmap_lock, so its
// async form runs on a thread of its own, never on the libuv pool (eight such
// calls would take the whole default pool from fs, dns and crypto). The
// promise resolves with the same Number the synchronous wrapper returns.
struct MreleaseCall {
  int pidfd = -1;  // a dup: valid until the call has returned
  long result = -ECANCELED;
  napi_deferred deferred = nullptr;
  // Guards tsfn against environment teardown, which finalizes it early.
  std::mutex mutex;
  napi_threadsafe_function tsfn = nullptr;

  void Run() {
    result = ProcessMrelease(pidfd);
    close(pidfd);
    std::lock_guard<std::mutex> lock(mutex);
    if (tsfn == nullptr) return;  // the environment is gone: nobody to tell
    napi_call_threadsafe_function(tsfn, nullptr, napi_tsfn_nonblocking);
    napi_release_threadsafe_function(tsfn, napi_tsfn_release);
  }

  static void Resolve(napi_env env, napi_value, void* context, void*) {
    if (env == nullptr) return;
    auto* call = static_cast<MreleaseCall*>(context);
    napi_value value;
    if (napi_create_double(env, static_cast<double>(call->result), &value) == napi_ok) {
      napi_resolve_deferred(env, call->deferred, value);
    }
  }

  static void Finalize(napi_env, void* data, void*) {
    std::unique_ptr<std::shared_ptr<MreleaseCall>> holder(
        static_cast<std::shared_ptr<MreleaseCall>*>(data));
    std::lock_guard<std::mutex> lock((*holder)->mutex);
    (*holder)->tsfn = nullptr;
  }

  static Napi::Value Start(Napi::Env env, int32_t fd) {
    napi_value promise;
    auto call = std::make_shared<MreleaseCall>();
    NAPI_THROW_IF_FAILED(env, napi_create_promise(env, &call->deferred, &promise), Napi::Value());
    call->pidfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (call->pidfd < 0) {
      // A bad fd cannot block: let the kernel give its own answer (EBADF, or
      // ENOSYS without the call). Otherwise EMFILE and the like.
      call->result = errno == EBADF ? ProcessMrelease(fd) : -errno;
      Resolve(env, nullptr, call.get(), nullptr);
      return Napi::Value(env, promise);
    }
    napi_value name;
    NAPI_THROW_IF_FAILED(
        env, napi_create_string_utf8(env, "pidfd-reap:mrelease", NAPI_AUTO_LENGTH, &name),
        Napi::Value());
    auto* holder = new std::shared_ptr<MreleaseCall>(call);
    napi_status status = napi_create_threadsafe_function(
        env, nullptr, nullptr, name, 0, 1, holder, Finalize, call.get(), Resolve, &call->tsfn);
    if (status != napi_ok) {
      delete holder;
      close(call->pidfd);
      NAPI_THROW_IF_FAILED(env, status, Napi::Value());
    }
    try {
      StartDetachedThread([call] { call->Run(); });
    } catch (const std::system_error& error) {
      close(call->pidfd);
      call->result = -error.code().value();
      Resolve(env, nullptr, call.get(), nullptr);
      napi_release_threadsafe_function(call->tsfn, napi_tsfn_release);
    }
    return Napi::Value(env, promise);
  }
};

// ---- the reaping job of killAndReap ---------------------------------------------

// One killAndReap, from the kill to the last reaping call, on a thread of its
// own: never on the libuv pool, because process_mrelease can block for
// seconds on the victim's mmap_lock and must not stall fs, dns or crypto.
// The thread talks to JS only through a thread-safe function: progress at
// most every kProgressInterval, then one final event.

using Clock = std::chrono::steady_clock;
using Millis = std::chrono::duration<double, std::milli>;

// EBUSY backoff: the victim holds its mmap_lock; retry soon, then less often.
constexpr auto kBackoffFirst = std::chrono::milliseconds(1);
constexpr auto kBackoffMax = std::chrono::milliseconds(50);
// Right after SIGKILL the kernel may not report the victim as dying yet
// (try_reap: EPERM, process_mrelease: EINVAL); retry for this long.
constexpr auto kNotDyingGrace = std::chrono::milliseconds(250);
// After ESRCH (no mm) a dying process exits within microseconds; a pidfd that
// stays unreadable this long means a process that never had an mm to reap
// (a kernel thread), which is a refusal, not an exit.
constexpr auto kExitGrace = std::chrono::milliseconds(250);
constexpr auto kProgressInterval = std::chrono::milliseconds(50);

enum class Mechanism { kNone, kTryReap, kMrelease };

const char* MechanismName(Mechanism mechanism) {
  switch (mechanism) {
    case Mechanism::kTryReap: return "try_reap";
    case Mechanism::kMrelease: return "process_mrelease";
    default: return "none";
  }
}

const char* SyscallName(Mechanism mechanism) {
  return mechanism == Mechanism::kTryReap ? "try_reap_dying_process"
                                          : "process_mrelease";
}

enum class Stop : int {
  kRunning = 0,
  kDone,         // the kernel reports nothing left (or process_mrelease succeeded)
  kBudget,
  kDeadline,
  kAborted,
  kExited,       // the pidfd is readable
  kRefused,
  kUnsupported,  // no reaping syscall, or every one answered ENOSYS
  kError,        // a bug or a broken setup (EBADF, a failed kill): thrown in JS
};

const char* StopName(Stop stop) {
  switch (stop) {
    case Stop::kDone: return "done";
    case Stop::kBudget: return "budget";
    case Stop::kDeadline: return "deadline";
    case Stop::kAborted: return "aborted";
    case Stop::kExited: return "exited";
    case Stop::kRefused: return "refused";
    case Stop::kUnsupported: return "unsupported";
    case Stop::kError: return "error";
    default: return "running";
  }
}

// What one reaping syscall result means for the loop.
enum class Outcome { kReaped, kAgain, kDone, kBusy, kNotDying, kNoMm, kNoSyscall, kRefused, kBroken };

Outcome Classify(Mechanism mechanism, long result) {
  bool try_reap = mechanism == Mechanism::kTryReap;
  if (result > 0) return Outcome::kReaped;
  if (result == 0) return try_reap ? Outcome::kDone : Outcome::kReaped;
  switch (-result) {
    case EAGAIN:
      // try_reap: this call freed nothing but its walk is not over (its
      // page-table budget went on empty ranges): call again at once.
      // process_mrelease: an mmu notifier would have blocked.
      return try_reap ? Outcome::kAgain : Outcome::kBusy;
    case EBUSY:
    case EINTR:
      return Outcome::kBusy;
    case ESRCH:
      // The process has no mm (any more): it is exiting, or never had one.
      return Outcome::kNoMm;
    case EPERM:
      // try_reap: not dying yet, shared mm or core dump; mrelease: shared mm.
      return try_reap ? Outcome::kNotDying : Outcome::kRefused;
    case EINVAL:
      // try_reap: kernel thread; mrelease: not dying yet.
      return try_reap ? Outcome::kRefused : Outcome::kNotDying;
    case ENOSYS:
      return Outcome::kNoSyscall;
    case EBADF:
      return Outcome::kBroken;
    default:
      return Outcome::kRefused;
  }
}

// Resident bytes of pid from /proc/<pid>/statm, or -1 when unreadable (gone).
int64_t ReadRssBytes(int32_t pid) {
  char path[48];
  snprintf(path, sizeof path, "/proc/%d/statm", static_cast<int>(pid));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char text[128];
  ssize_t length;
  do {
    length = read(fd, text, sizeof text - 1);
  } while (length < 0 && errno == EINTR);
  close(fd);
  if (length <= 0) return -1;
  text[length] = '\0';
  unsigned long long size = 0, resident = 0;
  if (sscanf(text, "%llu %llu", &size, &resident) != 2) return -1;
  return static_cast<int64_t>(resident) * sysconf(_SC_PAGESIZE);
}

// Test seam: scripted try_reap_dying_process results, for outcomes the host
// kernel (which has no such call) cannot produce. Everything else is real.
struct ReapScript {
  // Stands for "as many bytes as the call's cap allows" (JS: Infinity).
  static constexpr long kCap = LONG_MAX;
  std::vector<long> results;  // in order; the last one repeats; empty: no try_reap
  size_t next = 0;
  std::chrono::microseconds delay{0};  // how long each scripted call takes

  long Next(uint64_t max_bytes) {
    if (delay.count() > 0) std::this_thread::sleep_for(delay);
    long result = results[next];
    if (next + 1 < results.size()) next++;
    return result == kCap ? static_cast<long>(std::min<uint64_t>(max_bytes, LONG_MAX)) : result;
  }
};

struct ReapCounts {
  uint64_t bytes = 0;
  uint64_t calls = 0;
  uint64_t busy = 0;
  Mechanism mechanism = Mechanism::kNone;
};

struct ReapEvent {
  bool final = false;
  ReapCounts counts;
  Stop stop = Stop::kRunning;
  long error = 0;                  // -errno of a refusal, ENOSYS or a broken call
  const char* syscall = nullptr;   // the call that gave `error`
};

class ReapJob {
 public:
  // Set on the JS thread before the job's thread starts, read-only afterwards.
  int32_t pid = 0;
  int pidfd = -1;    // a dup: valid until this job's last call has returned
  int wake_fd = -1;  // eventfd: the JS thread wakes the job's waits with it
  long syscall_nr = -ENOSYS;
  bool has_mrelease = false;
  uint64_t chunk = 0;
  uint64_t budget = UINT64_MAX;
  Clock::time_point deadline = Clock::time_point::max();
  std::unique_ptr<ReapScript> script;

  // A stop the JS side asked for (Stop::kAborted or kDeadline).
  std::atomic<int> stop_request{static_cast<int>(Stop::kRunning)};
  // True while process_mrelease runs: it may block on the victim's mmap_lock
  // for seconds, so the JS side settles without waiting for this thread.
  std::atomic<bool> in_blocking_call{false};
  std::atomic<uint64_t> bytes{0}, calls{0}, busy{0};
  std::atomic<int> mechanism{static_cast<int>(Mechanism::kNone)};

  // Guards tsfn, listening and wake_fd across this job's thread, the JS
  // thread and environment teardown (which finalizes the tsfn early).
  std::mutex mutex;
  napi_threadsafe_function tsfn = nullptr;
  bool listening = true;  // false once JS settled without the final event

  ReapCounts Counts() const {
    ReapCounts counts;
    counts.bytes = bytes.load();
    counts.calls = calls.load();
    counts.busy = busy.load();
    counts.mechanism = static_cast<Mechanism>(mechanism.load());
    return counts;
  }

  // Asks the thread to stop (the first request wins) and wakes its waits.
  void RequestStop(Stop reason) {
    int expected = static_cast<int>(Stop::kRunning);
    stop_request.compare_exchange_strong(expected, static_cast<int>(reason));
    std::lock_guard<std::mutex> lock(mutex);
    Wake();
  }

  // The thread's body.
  void Run() {
    ReapEvent final;
    final.final = true;
    // process_mrelease reports no byte count: its result is the RSS drop,
    // measured from before the kill (the victim starts exiting at once).
    int64_t rss_before = has_mrelease ? ReadRssBytes(pid) : -1;
    long killed = PidfdSendSignal(pidfd, SIGKILL);
    if (killed == -ESRCH) {
      // Already waited for by its parent: the pidfd is readable.
      final.stop = Stop::kExited;
    } else if (killed < 0) {
      Fail(&final, Stop::kError, killed, "pidfd_send_signal");
    } else if (Mech() == Mechanism::kNone) {
      final.stop = Stop::kUnsupported;
    } else {
      Loop(&final, rss_before);
    }
    final.counts = Counts();
    Post(new ReapEvent(final));
    Finish();
  }

  // Called under `mutex`.
  void Wake() {
    if (wake_fd < 0) return;
    uint64_t one = 1;
    ssize_t ignored = write(wake_fd, &one, sizeof one);
    (void)ignored;  // a full counter is still readable: the wake-up happened
  }

 private:
  Mechanism Mech() const { return static_cast<Mechanism>(mechanism.load()); }

  static void Fail(ReapEvent* event, Stop stop, long error, const char* syscall) {
    event->stop = stop;
    event->error = error;
    event->syscall = syscall;
  }

  void Loop(ReapEvent* final, int64_t rss_before) {
    const Clock::time_point killed_at = Clock::now();
    Clock::time_point last_progress = killed_at - kProgressInterval;
    auto backoff = std::chrono::duration_cast<Clock::duration>(kBackoffFirst);
    for (;;) {
      Stop stop = CheckStop(final);
      if (stop != Stop::kRunning) {
        final->stop = stop;
        return;
      }
      Mechanism mechanism_now = Mech();
      long result = Call(mechanism_now);
      if (result == kSkipped) continue;  // a stop came in: checked above
      Outcome outcome = Classify(mechanism_now, result);
      if (outcome == Outcome::kBusy) busy++;
      if (outcome == Outcome::kReaped) {
        bytes += mechanism_now == Mechanism::kTryReap
                     ? static_cast<uint64_t>(result)
                     : RssDrop(rss_before);
        backoff = kBackoffFirst;
      }
      Clock::time_point now = Clock::now();
      if (now - last_progress >= kProgressInterval) {
        last_progress = now;
        auto* progress = new ReapEvent();
        progress->counts = Counts();
        Post(progress);
      }
      switch (outcome) {
        case Outcome::kReaped:
          // process_mrelease reaps everything in one call.
          if (mechanism_now == Mechanism::kMrelease) {
            final->stop = Stop::kDone;
            return;
          }
          break;
        case Outcome::kAgain:
          break;
        case Outcome::kDone:
          final->stop = Stop::kDone;
          return;
        case Outcome::kBusy:
          Wait(backoff);
          backoff = std::min<Clock::duration>(backoff * 2, kBackoffMax);
          break;
        case Outcome::kNoMm:
          AwaitExit(final, result, mechanism_now);
          return;
        case Outcome::kNotDying:
          if (now - killed_at < kNotDyingGrace) {
            Wait(kBackoffFirst);
            break;
          }
          Fail(final, Stop::kRefused, result, SyscallName(mechanism_now));
          return;
        case Outcome::kNoSyscall:
          // A seccomp filter (or a kernel that lost the call) answers ENOSYS:
          // fall back to process_mrelease at run time.
          if (mechanism_now == Mechanism::kTryReap && has_mrelease) {
            mechanism = static_cast<int>(Mechanism::kMrelease);
            break;
          }
          Fail(final, Stop::kUnsupported, result, SyscallName(mechanism_now));
          return;
        case Outcome::kRefused:
          Fail(final, Stop::kRefused, result, SyscallName(mechanism_now));
          return;
        case Outcome::kBroken:
          Fail(final, Stop::kError, result, SyscallName(mechanism_now));
          return;
      }
    }
  }

  static constexpr long kSkipped = LONG_MIN;

  // One reaping call; counted when made, so that a call still blocked in the
  // kernel when JS settles is in the report.
  long Call(Mechanism mechanism_now) {
    if (mechanism_now == Mechanism::kTryReap) {
      uint64_t max_bytes = std::min(chunk, budget - bytes.load());
      calls++;
      return script ? script->Next(max_bytes)
                    : TryReapDyingProcess(syscall_nr, pidfd, max_bytes, 0);
    }
    // Announce the blocking call before the last look at stop_request; the JS
    // side sets stop_request before it reads in_blocking_call. Either this
    // thread sees the stop, or JS sees the call (both are sequentially
    // consistent atomics).
    in_blocking_call = true;
    if (stop_request.load() != static_cast<int>(Stop::kRunning)) {
      in_blocking_call = false;
      return kSkipped;
    }
    calls++;
    long result = ProcessMrelease(pidfd);
    in_blocking_call = false;
    return result;
  }

  // Exited, a requested stop, the deadline, the budget, or kRunning.
  Stop CheckStop(ReapEvent* final) {
    long readable = PollReadable(pidfd);
    if (readable < 0) {
      Fail(final, Stop::kError, readable, "poll");
      return Stop::kError;
    }
    if (readable == 1) return Stop::kExited;
    int requested = stop_request.load();
    if (requested != static_cast<int>(Stop::kRunning)) return static_cast<Stop>(requested);
    if (Clock::now() >= deadline) return Stop::kDeadline;
    if (bytes.load() >= budget) return Stop::kBudget;
    return Stop::kRunning;
  }

  // The RSS drop across a successful process_mrelease. An unreadable statm, or
  // a readable pidfd, after the call means the process is gone with all of it.
  uint64_t RssDrop(int64_t rss_before) {
    if (rss_before < 0) return 0;
    int64_t rss_after = PollReadable(pidfd) == 1 ? 0 : ReadRssBytes(pid);
    if (rss_after < 0) rss_after = 0;
    return rss_before > rss_after ? static_cast<uint64_t>(rss_before - rss_after) : 0;
  }

  // After ESRCH: an exit only if the pidfd becomes readable soon.
  void AwaitExit(ReapEvent* final, long result, Mechanism mechanism_now) {
    const Clock::time_point until = Clock::now() + kExitGrace;
    for (;;) {
      Stop stop = CheckStop(final);
      // The budget no longer matters: nothing is left to reap.
      if (stop != Stop::kRunning && stop != Stop::kBudget) {
        final->stop = stop;
        return;
      }
      Clock::time_point now = Clock::now();
      if (now >= until) {
        Fail(final, Stop::kRefused, result, SyscallName(mechanism_now));
        return;
      }
      Wait(until - now);
    }
  }

  // Sleeps up to `duration` (never past the deadline); returns early when the
  // process exits or JS asks to stop. The caller re-checks why.
  void Wait(Clock::duration duration) {
    Clock::time_point now = Clock::now();
    if (deadline - now < duration) duration = deadline - now;
    if (duration <= Clock::duration::zero()) return;
    auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(duration).count();
    struct timespec timeout = {static_cast<time_t>(nanos / 1000000000),
                               static_cast<long>(nanos % 1000000000)};
    struct pollfd fds[2] = {{pidfd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
    // EINTR: a spurious early return, which the caller's checks absorb.
    ppoll(fds, 2, &timeout, nullptr);
  }

  void Post(ReapEvent* event) {
    std::lock_guard<std::mutex> lock(mutex);
    if (listening && tsfn != nullptr &&
        napi_call_threadsafe_function(tsfn, event, napi_tsfn_nonblocking) == napi_ok) {
      return;
    }
    delete event;
  }

  void Finish() {
    std::lock_guard<std::mutex> lock(mutex);
    close(wake_fd);
    wake_fd = -1;
    close(pidfd);
    pidfd = -1;
    // After the environment's teardown finalized it, tsfn is null.
    if (tsfn != nullptr) napi_release_threadsafe_function(tsfn, napi_tsfn_release);
    tsfn = nullptr;
  }
};

// JS side of the thread-safe function (runs on the JS thread).
void CallReapListener(napi_env env, napi_value listener, void* context, void* data) {
  std::unique_ptr<ReapEvent> event(static_cast<ReapEvent*>(data));
  // env is null when the tsfn is torn down with events still queued.
  if (env == nullptr || listener == nullptr) return;
  auto* job = static_cast<ReapJob*>(context);
  {
    std::lock_guard<std::mutex> lock(job->mutex);
    if (!job->listening) return;
  }
  try {
    Napi::Env js(env);
    Napi::Object object = Napi::Object::New(js);
    object.Set("final", Napi::Boolean::New(js, event->final));
    object.Set("mechanism", MechanismName(event->counts.mechanism));
    object.Set("bytesReaped", static_cast<double>(event->counts.bytes));
    object.Set("calls", static_cast<double>(event->counts.calls));
    object.Set("busyRetries", static_cast<double>(event->counts.busy));
    if (event->final) object.Set("stopReason", StopName(event->stop));
    if (event->syscall != nullptr) {
      object.Set("errno", static_cast<double>(event->error));
      object.Set("syscall", event->syscall);
    }
    napi_value argument = object;
    napi_value ignored;
    // The listener catches its own errors; anything else is Node's to report.
    napi_call_function(env, js.Undefined(), listener, 1, &argument, &ignored);
  } catch (const Napi::Error&) {
    // Only while the environment shuts down: nobody is left to tell.
  }
}

// Runs on the JS thread once the tsfn is done: after the final event, or at
// environment teardown while the job may still run (it then stops soon, or,
// blocked in the kernel, after that call returns; it never touches JS again).
void FinalizeReapTsfn(napi_env, void* data, void*) {
  std::unique_ptr<std::shared_ptr<ReapJob>> holder(static_cast<std::shared_ptr<ReapJob>*>(data));
  ReapJob& job = **holder;
  int expected = static_cast<int>(Stop::kRunning);
  job.stop_request.compare_exchange_strong(expected, static_cast<int>(Stop::kAborted));
  std::lock_guard<std::mutex> lock(job.mutex);
  job.tsfn = nullptr;
  job.listening = false;
  job.Wake();
}

std::shared_ptr<ReapJob>& JobOf(const Napi::CallbackInfo& info, size_t index) {
  Napi::Value value = Arg(info, index);
  if (!value.IsExternal()) {
    throw Napi::TypeError::New(info.Env(), "pidfd-reap: expected a reap job");
  }
  return *value.As<Napi::External<std::shared_ptr<ReapJob>>>().Data();
}

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
            InstanceMethod("startReap", &PidfdReap::StartReapJs),
            InstanceMethod("reapStop", &PidfdReap::ReapStopJs),
            InstanceValue("pageSize",
                          Napi::Number::New(env, sysconf(_SC_PAGESIZE))),
            InstanceValue("syscallNrPath",
                          Napi::String::New(env, kSyscallNrPath)),
        });
    NAPI_THROW_IF_FAILED_VOID(
        env, napi_add_async_cleanup_hook(env, &PidfdReap::OnEnvCleanup, this,
                                         &cleanup_hook_));
    pidfd_reap::RegisterPsi(env, exports);  // PSI trigger watchers (psi.cc)
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
    return MreleaseCall::Start(info.Env(), Int32Arg(info, 0));
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
    watcher->fd = fd;
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
  // Watchers of the fd go first, as by unwatch (their callbacks never run):
  // libuv aborts when the fd of an active poll handle is closed.
  Napi::Value CloseFdJs(const Napi::CallbackInfo& info) {
    int32_t fd = Int32Arg(info, 0);
    for (auto entry = watchers_.begin(); entry != watchers_.end();) {
      if (entry->second->fd != fd) {
        ++entry;
        continue;
      }
      entry->second->Close();
      entry = watchers_.erase(entry);
    }
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

  // startReap(fd, pid, chunkBytes, budgetBytes, deadlineMs, listener, script?)
  //   -> { job } or, before anything was killed, { errno, syscall }.
  // Starts a thread that sends SIGKILL through (a dup of) fd and reaps; the
  // listener gets progress events and one final event (see ReapEvent).
  Napi::Value StartReapJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int32_t fd = Int32Arg(info, 0);
    auto job = std::make_shared<ReapJob>();
    job->pid = Int32Arg(info, 1);
    job->chunk = Uint64Arg(info, 2);
    job->budget = Uint64Arg(info, 3);
    Napi::Value deadline_ms = Arg(info, 4);
    Napi::Value listener = Arg(info, 5);
    Napi::Value script = Arg(info, 6);
    if (!deadline_ms.IsNumber() || std::isnan(deadline_ms.As<Napi::Number>().DoubleValue())) {
      throw Napi::TypeError::New(env, "pidfd-reap: expected a number");
    }
    if (!listener.IsFunction()) {
      throw Napi::TypeError::New(env, "pidfd-reap: expected a function");
    }
    double remaining_ms = deadline_ms.As<Napi::Number>().DoubleValue();
    // Anything beyond a year is no deadline (and cannot overflow the clock).
    if (remaining_ms < 365.0 * 24 * 3600 * 1000) {
      job->deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                         Millis(std::max(0.0, remaining_ms)));
    }
    bool has_try_reap;
    if (script.IsObject()) {
      job->script = ParseScript(script.As<Napi::Object>());
      has_try_reap = !job->script->results.empty();
      job->has_mrelease = script.As<Napi::Object>().Get("processMrelease").ToBoolean();
    } else {
      job->syscall_nr = SyscallNr();
      has_try_reap = job->syscall_nr > 0;
      job->has_mrelease = HasProcessMrelease();
    }
    job->mechanism = static_cast<int>(has_try_reap        ? Mechanism::kTryReap
                                      : job->has_mrelease ? Mechanism::kMrelease
                                                          : Mechanism::kNone);

    job->pidfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (job->pidfd < 0) return SetupError(env, -errno, "dup");
    job->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (job->wake_fd < 0) {
      long error = -errno;
      close(job->pidfd);
      return SetupError(env, error, "eventfd");
    }
    napi_value name;
    NAPI_THROW_IF_FAILED(
        env, napi_create_string_utf8(env, "pidfd-reap:reap", NAPI_AUTO_LENGTH, &name),
        Napi::Value());
    auto* holder = new std::shared_ptr<ReapJob>(job);
    napi_status status = napi_create_threadsafe_function(
        env, listener, nullptr, name, 0, 1, holder, FinalizeReapTsfn, job.get(),
        CallReapListener, &job->tsfn);
    if (status != napi_ok) {
      delete holder;
      close(job->pidfd);
      close(job->wake_fd);
      NAPI_THROW_IF_FAILED(env, status, Napi::Value());
    }
    try {
      StartDetachedThread([job] { job->Run(); });
    } catch (const std::system_error& error) {
      // Nothing was killed. The tsfn finalizer frees the job.
      napi_release_threadsafe_function(job->tsfn, napi_tsfn_release);
      close(job->pidfd);
      close(job->wake_fd);
      job->pidfd = job->wake_fd = -1;
      return SetupError(env, -error.code().value(), "pthread_create");
    }
    Napi::Object result = Napi::Object::New(env);
    result.Set("job", Napi::External<std::shared_ptr<ReapJob>>::New(
                          env, new std::shared_ptr<ReapJob>(job),
                          [](Napi::Env, std::shared_ptr<ReapJob>* held) { delete held; }));
    return result;
  }

  static Napi::Value SetupError(Napi::Env env, long error, const char* syscall) {
    Napi::Object result = Napi::Object::New(env);
    result.Set("errno", static_cast<double>(error));
    result.Set("syscall", syscall);
    return result;
  }

  static std::unique_ptr<ReapScript> ParseScript(Napi::Object script) {
    Napi::Env env = script.Env();
    Napi::Value results = script.Get("results");
    if (!results.IsArray()) {
      throw Napi::TypeError::New(env, "pidfd-reap: script.results must be an array");
    }
    auto parsed = std::make_unique<ReapScript>();
    Napi::Array array = results.As<Napi::Array>();
    for (uint32_t i = 0; i < array.Length(); i++) {
      Napi::Value value = array.Get(i);
      if (!value.IsNumber()) throw Napi::TypeError::New(env, "pidfd-reap: expected a number");
      double number = value.As<Napi::Number>().DoubleValue();
      parsed->results.push_back(std::isfinite(number) ? static_cast<long>(number) : ReapScript::kCap);
    }
    // A scripted call cannot be interrupted, like the real one: at most 10 s.
    Napi::Value delay = script.Get("delayMs");
    double delay_ms = delay.IsNumber() ? delay.As<Napi::Number>().DoubleValue() : 0;
    if (std::isfinite(delay_ms) && delay_ms > 0) {
      parsed->delay = std::chrono::microseconds(
          static_cast<int64_t>(std::min(delay_ms, 10000.0) * 1000));
    }
    return parsed;
  }

  // reapStop(job, 'aborted' | 'deadline') -> the counts so far and `blocked`.
  // When blocked (inside process_mrelease), the job no longer reports to JS
  // and no longer keeps the event loop alive: JS settles with these counts
  // while the call finishes in the background.
  Napi::Value ReapStopJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::shared_ptr<ReapJob>& job = JobOf(info, 0);
    Napi::Value reason = Arg(info, 1);
    std::string name = reason.IsString() ? reason.As<Napi::String>().Utf8Value() : "";
    if (name != "aborted" && name != "deadline") {
      throw Napi::TypeError::New(env, "pidfd-reap: expected 'aborted' or 'deadline'");
    }
    job->RequestStop(name == "aborted" ? Stop::kAborted : Stop::kDeadline);
    bool blocked = job->in_blocking_call.load();
    if (blocked) {
      std::lock_guard<std::mutex> lock(job->mutex);
      job->listening = false;
      if (job->tsfn != nullptr) napi_unref_threadsafe_function(env, job->tsfn);
    }
    ReapCounts counts = job->Counts();
    Napi::Object result = Napi::Object::New(env);
    result.Set("blocked", Napi::Boolean::New(env, blocked));
    result.Set("mechanism", MechanismName(counts.mechanism));
    result.Set("bytesReaped", static_cast<double>(counts.bytes));
    result.Set("calls", static_cast<double>(counts.calls));
    result.Set("busyRetries", static_cast<double>(counts.busy));
    return result;
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
  // Only the kernel's answer is kept (a number, no file, bad content): a
  // failure to read it (EMFILE, ENOMEM...) is tried again next time.
  long SyscallNr() {
    if (syscall_nr_ > 0 || syscall_nr_ == -ENOENT || syscall_nr_ == -EINVAL) {
      return syscall_nr_;
    }
    syscall_nr_ = ReadSyscallNr();
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
