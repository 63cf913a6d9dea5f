// One killAndReap, from the kill to the last reaping call, on a thread of its
// own: never on the libuv pool, because process_mrelease can block for
// seconds on the victim's mmap_lock and must not stall fs, dns or crypto.
// The thread talks to JS only through a thread-safe function: progress at
// most every kProgressInterval, then one final event.
#include "reap_job.h"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "js_args.h"
#include "thread_job.h"

namespace pidfd_reap {

namespace {

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
// EAGAIN means "call again": a whole pass took calls that freed nothing. A
// pass over the address space takes at most one call per page table's worth
// of it (each call walks at least that much); twice that many EAGAINs in a
// row, and never fewer than this, mean a kernel that makes no progress, and
// the job stops (refused, EAGAIN) instead of spinning for ever.
constexpr uint64_t kMinCallsPerPass = 64;

enum class Mechanism { kNone, kTryReap, kMrelease };

const char* MechanismName(Mechanism mechanism) {
  switch (mechanism) {
    case Mechanism::kTryReap: return "try_reap";
    case Mechanism::kMrelease: return "process_mrelease";
    default: return "none";
  }
}

const char* SyscallName(Mechanism mechanism) {
  return mechanism == Mechanism::kTryReap ? "try_reap_dying_process" : "process_mrelease";
}

// How the process was sent SIGKILL.
enum class KillPath : int { kNone, kSignal, kTryReapKill };

const char* KillPathName(KillPath path) {
  switch (path) {
    case KillPath::kTryReapKill: return "try_reap_kill";
    case KillPath::kSignal: return "pidfd_send_signal";
    default: return "none";
  }
}

// After a call with TRY_REAP_KILL, every answer but the errors settled
// before the kill (EINVAL, EBADF, EPERM or an LSM's error, ESRCH, and ENOSYS
// where a seccomp filter stops the call) means the process was killed.
bool KilledBy(long result) { return result >= 0 || result == -EAGAIN || result == -EBUSY; }

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

#ifdef PIDFD_REAP_TEST_HOOKS
// Test seam: scripted try_reap_dying_process results, for outcomes the host
// kernel (which has no such call) cannot produce. Everything else is real.
// Compiled only into the test build (binding.gyp: test_hooks, on in a
// source tree with its tests), never into a prebuild or an npm install.
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
#endif

struct ReapCounts {
  uint64_t bytes = 0;
  uint64_t calls = 0;
  uint64_t busy = 0;
  Mechanism mechanism = Mechanism::kNone;
  KillPath kill_path = KillPath::kNone;
  int64_t rss_before = -1;     // the victim's RSS before the kill (-1: unreadable)
  double killed_ms = -1;       // when it was killed, ms after the job started (-1: not yet)
  double exited_ms = -1;       // when the job saw it exited, likewise
};

struct ReapEvent {
  bool final = false;
  ReapCounts counts;
  Stop stop = Stop::kRunning;
  long error = 0;                 // -errno of a refusal, ENOSYS or a broken call
  const char* syscall = nullptr;  // the call that gave `error`
};

void SetCounts(Napi::Object object, const ReapCounts& counts) {
  object.Set("mechanism", MechanismName(counts.mechanism));
  object.Set("bytesReaped", static_cast<double>(counts.bytes));
  object.Set("calls", static_cast<double>(counts.calls));
  object.Set("busyRetries", static_cast<double>(counts.busy));
  if (counts.kill_path != KillPath::kNone) object.Set("killPath", KillPathName(counts.kill_path));
  if (counts.rss_before >= 0) object.Set("rssBeforeBytes", static_cast<double>(counts.rss_before));
  if (counts.killed_ms >= 0) object.Set("killedAfterMs", counts.killed_ms);
  if (counts.exited_ms >= 0) object.Set("exitedAfterMs", counts.exited_ms);
}

class ReapJob : public ThreadJob {
 public:
  ~ReapJob() override {
    if (wake_fd >= 0) close(wake_fd);
  }

  // Set on the JS thread before the job's thread starts, read-only afterwards.
  int32_t pid = 0;
  long syscall_nr = -ENOSYS;
  bool has_mrelease = false;
  bool has_kill_flag = false;  // try_reap_dying_process knows TRY_REAP_KILL
  uint64_t chunk = 0;
  uint64_t budget = UINT64_MAX;
  Clock::time_point deadline = Clock::time_point::max();
#ifdef PIDFD_REAP_TEST_HOOKS
  std::unique_ptr<ReapScript> script;
#endif

  // A stop the JS side asked for (Stop::kAborted or kDeadline).
  std::atomic<int> stop_request{static_cast<int>(Stop::kRunning)};
  // True while process_mrelease runs: it may block on the victim's mmap_lock
  // for seconds, so the JS side settles without waiting for this thread.
  std::atomic<bool> in_blocking_call{false};
  std::atomic<uint64_t> bytes{0}, calls{0}, busy{0};
  std::atomic<int> mechanism{static_cast<int>(Mechanism::kNone)};
  std::atomic<int> kill_path{static_cast<int>(KillPath::kNone)};
  // For the report: set by the job's thread, read by ReapStop too.
  const Clock::time_point started = Clock::now();
  std::atomic<int64_t> rss_before_kill{-1};
  std::atomic<int64_t> killed_after_ns{-1}, exited_after_ns{-1};
  // Whether JS listens to progress: throttled events wake the event loop,
  // whose thread may share this CPU, so none are sent when nobody listens.
  std::atomic<bool> want_progress{true};

  ReapCounts Counts() const {
    ReapCounts counts;
    counts.bytes = bytes.load();
    counts.calls = calls.load();
    counts.busy = busy.load();
    counts.mechanism = static_cast<Mechanism>(mechanism.load());
    counts.kill_path = static_cast<KillPath>(kill_path.load());
    counts.rss_before = rss_before_kill.load();
    int64_t killed = killed_after_ns.load(), exited = exited_after_ns.load();
    counts.killed_ms = killed < 0 ? -1 : killed / 1e6;
    counts.exited_ms = exited < 0 ? -1 : exited / 1e6;
    return counts;
  }

  // Asks the thread to stop (the first request wins) and wakes its waits.
  void RequestStop(Stop reason) {
    int expected = static_cast<int>(Stop::kRunning);
    stop_request.compare_exchange_strong(expected, static_cast<int>(reason));
    std::lock_guard<std::mutex> lock(mutex);
    Wake();
  }

  // JS settled without the final event (a blocked process_mrelease): the job
  // reports nothing more and no longer keeps the event loop alive.
  void StopListening(napi_env env) {
    std::lock_guard<std::mutex> lock(mutex);
    listening = false;
    if (tsfn != nullptr) napi_unref_threadsafe_function(env, tsfn);
  }

  // The thread-safe function's call_js (on the JS thread): hands an event to
  // the listener.
  static void CallListener(napi_env env, napi_value listener, void* context, void* data);

 protected:
  SetupError Prepare() override {
    wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd < 0) return {-errno, "eventfd"};
    return {};
  }

  // At environment teardown the job may still run: it stops soon (or,
  // blocked in the kernel, after that call returns) and never touches JS
  // again.
  void OnFinalized() override {
    int expected = static_cast<int>(Stop::kRunning);
    stop_request.compare_exchange_strong(expected, static_cast<int>(Stop::kAborted));
    listening = false;
    Wake();
  }

  void Run() override {
    ReapEvent final;
    final.final = true;
    // Before anything is killed: the victim exits from the kill on.
    Statm before;
    ReadStatm(pid, &before);
    rss_before = before.rss_bytes;
    rss_before_kill = before.rss_bytes;
    uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    uint64_t page_table_span = page * (page / sizeof(uint64_t));
    uint64_t pass_calls = before.size_bytes > 0 ? static_cast<uint64_t>(before.size_bytes) / page_table_span + 1 : 0;
    again_limit = std::max(kMinCallsPerPass, 2 * pass_calls);
    // TRY_REAP_KILL: the first call kills and reaps, so that the victim
    // cannot run (nor pass exit_mm) between the kill and the reap. Not when
    // no reaping is wanted any more: then the kill alone, as below.
    if (Mech() == Mechanism::kTryReap && has_kill_flag && CheckStop(&final) == Stop::kRunning) {
      long first = CallTryReap(kTryReapKill);
      if (KilledBy(first)) {
        MarkTime(&killed_after_ns);
        kill_path = static_cast<int>(KillPath::kTryReapKill);
        Loop(&final, first);
        return Report(&final);
      }
      // Nobody was killed. ENOSYS: a seccomp filter stops the call, so
      // process_mrelease it is; any other refusal (EPERM for a process
      // sharing the mm that may not be killed, EINVAL for a kernel thread,
      // ESRCH for a process already gone) is for the kill alone to settle.
      if (first == -ENOSYS && has_mrelease) mechanism = static_cast<int>(Mechanism::kMrelease);
    }
    // process_mrelease reports no byte count: its result is the RSS drop,
    // measured from before the kill (rss_before: the victim starts exiting
    // at once); a fallback from try_reap measures from the fallback on.
    long killed = PidfdSendSignal(pidfd, SIGKILL);
    if (killed >= 0) MarkTime(&killed_after_ns);
    kill_path = static_cast<int>(KillPath::kSignal);
    if (killed == -ESRCH) {
      // Already waited for by its parent: the pidfd is readable.
      MarkTime(&exited_after_ns);
      final.stop = Stop::kExited;
    } else if (killed < 0) {
      Fail(&final, Stop::kError, killed, "pidfd_send_signal");
    } else if (Mech() == Mechanism::kNone) {
      final.stop = Stop::kUnsupported;
    } else {
      Loop(&final, kNoResult);
    }
    Report(&final);
  }

 private:
  std::unique_ptr<ReapEvent> final_event = std::make_unique<ReapEvent>();
  int wake_fd = -1;       // eventfd: the JS thread wakes the job's waits with it
  bool listening = true;  // under `mutex`; false once JS settled without the final event
  int64_t rss_before = -1;  // the victim's RSS before process_mrelease's reaping (-1: unknown)
  uint64_t again_limit = kMinCallsPerPass;  // EAGAINs in a row that end the job

  static constexpr long kSkipped = LONG_MIN;
  static constexpr long kNoResult = LONG_MIN + 1;

  // The final event, and the job's end. The event was allocated with the
  // job: this thread runs under memory pressure, and a bad_alloc here would
  // end the whole process (or, caught, leave the promise unsettled).
  void Report(ReapEvent* final) {
    final->counts = Counts();
    *final_event = *final;
    Post(final_event.release());
    Finish();
  }

  Mechanism Mech() const { return static_cast<Mechanism>(mechanism.load()); }

  // Records now, in ns since the job started, unless a time is already there.
  void MarkTime(std::atomic<int64_t>* at) {
    int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - started).count();
    int64_t unset = -1;
    at->compare_exchange_strong(unset, now);
  }

  static void Fail(ReapEvent* event, Stop stop, long error, const char* syscall) {
    event->stop = stop;
    event->error = error;
    event->syscall = syscall;
  }

  // Under `mutex`.
  void Wake() {
    if (wake_fd < 0) return;
    uint64_t one = 1;
    ssize_t ignored = write(wake_fd, &one, sizeof one);
    (void)ignored;  // a full counter is still readable: the wake-up happened
  }

  // The reaping loop, after the kill; `first`: the result of the call that
  // killed (TRY_REAP_KILL), else kNoResult.
  void Loop(ReapEvent* final, long first) {
    const Clock::time_point killed_at = Clock::now();
    Clock::time_point last_progress = killed_at - kProgressInterval;
    auto backoff = std::chrono::duration_cast<Clock::duration>(kBackoffFirst);
    uint64_t again_in_row = 0;
    for (;;) {
      Mechanism mechanism_now = Mech();
      long result = first;
      first = kNoResult;
      if (result == kNoResult) {
        Stop stop = CheckStop(final);
        if (stop != Stop::kRunning) {
          final->stop = stop;
          return;
        }
        result = Call(mechanism_now);
        if (result == kSkipped) continue;  // a stop came in: checked above
      }
      Outcome outcome = Classify(mechanism_now, result);
      if (outcome == Outcome::kBusy) busy++;
      if (outcome == Outcome::kReaped) {
        again_in_row = 0;
        bytes += mechanism_now == Mechanism::kTryReap ? static_cast<uint64_t>(result) : RssDrop();
        backoff = kBackoffFirst;
      }
      Clock::time_point now = Clock::now();
      if (now - last_progress >= kProgressInterval && want_progress.load()) {
        last_progress = now;
        // Without memory for it, this throttled event is skipped: the final
        // one (allocated up front) carries the counts.
        auto* progress = new (std::nothrow) ReapEvent();
        if (progress != nullptr) {
          progress->counts = Counts();
          Post(progress);
        }
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
          if (++again_in_row < again_limit) break;
          Fail(final, Stop::kRefused, result, SyscallName(mechanism_now));
          return;
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
            rss_before = ReadRssBytes(pid);
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

  // One reaping call; counted when made, so that a call still blocked in the
  // kernel when JS settles is in the report.
  long Call(Mechanism mechanism_now) {
    if (mechanism_now == Mechanism::kTryReap) return CallTryReap(0);
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

  long CallTryReap(uint32_t flags) {
    uint64_t max_bytes = std::min(chunk, budget - bytes.load());
    calls++;
#ifdef PIDFD_REAP_TEST_HOOKS
    if (script) {
      long result = script->Next(max_bytes);
      // The scripted kernel's kill is a real one.
      if ((flags & kTryReapKill) && KilledBy(result)) PidfdSendSignal(pidfd, SIGKILL);
      return result;
    }
#endif
    return TryReapDyingProcess(syscall_nr, pidfd, max_bytes, flags);
  }

  // Exited, a requested stop, the deadline, the budget, or kRunning.
  Stop CheckStop(ReapEvent* final) {
    long readable = PollReadable(pidfd);
    if (readable < 0) {
      Fail(final, Stop::kError, readable, "poll");
      return Stop::kError;
    }
    if (readable == 1) {
      MarkTime(&exited_after_ns);
      return Stop::kExited;
    }
    int requested = stop_request.load();
    if (requested != static_cast<int>(Stop::kRunning)) return static_cast<Stop>(requested);
    if (Clock::now() >= deadline) return Stop::kDeadline;
    if (bytes.load() >= budget) return Stop::kBudget;
    return Stop::kRunning;
  }

  // The RSS drop across a successful process_mrelease. An unreadable statm, or
  // a readable pidfd, after the call means the process is gone with all of it.
  uint64_t RssDrop() {
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
    if (!listening || !PostLocked(event)) delete event;
  }

  void Finish() {
    std::lock_guard<std::mutex> lock(mutex);
    close(wake_fd);
    wake_fd = -1;
    close(pidfd);
    pidfd = -1;
    ReleaseLocked();
  }
};

void ReapJob::CallListener(napi_env env, napi_value listener, void* context, void* data) {
  std::unique_ptr<ReapEvent> event(static_cast<ReapEvent*>(data));
  // env is null when the tsfn is torn down with events still queued.
  if (env == nullptr || listener == nullptr) return;
  auto* job = static_cast<ReapJob*>(static_cast<ThreadJob*>(context));
  {
    std::lock_guard<std::mutex> lock(job->mutex);
    if (!job->listening) return;
  }
  try {
    Napi::Env js(env);
    Napi::Object object = Napi::Object::New(js);
    object.Set("final", Napi::Boolean::New(js, event->final));
    SetCounts(object, event->counts);
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

#ifdef PIDFD_REAP_TEST_HOOKS
std::unique_ptr<ReapScript> ParseScript(Napi::Object script) {
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
    parsed->delay =
        std::chrono::microseconds(static_cast<int64_t>(std::min(delay_ms, 10000.0) * 1000));
  }
  return parsed;
}
#endif

using JobHandle = std::shared_ptr<ReapJob>;

JobHandle& JobOf(const Napi::CallbackInfo& info, size_t index) {
  Napi::Value value = Arg(info, index);
  if (!value.IsExternal()) {
    throw Napi::TypeError::New(info.Env(), "pidfd-reap: expected a reap job");
  }
  return *value.As<Napi::External<JobHandle>>().Data();
}

Napi::Value SetupErrorResult(Napi::Env env, SetupError error) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("errno", static_cast<double>(error.error));
  result.Set("syscall", error.syscall);
  return result;
}

}  // namespace

// Starts a thread that sends SIGKILL through (a dup of) fd and reaps; the
// listener gets progress events and one final event (see ReapEvent).
Napi::Value StartReap(const Napi::CallbackInfo& info, SyscallNrCache& syscall_nr) {
  Napi::Env env = info.Env();
  int32_t fd = Int32Arg(info, 0);
  auto job = std::make_shared<ReapJob>();
  job->pid = Int32Arg(info, 1);
  job->chunk = Uint64Arg(info, 2);
  job->budget = Uint64Arg(info, 3);
  Napi::Value deadline_ms = Arg(info, 4);
  Napi::Value listener = Arg(info, 5);
  Napi::Value script = Arg(info, 6);
  Napi::Value progress = Arg(info, 7);
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
  if (!script.IsUndefined() && !script.IsNull()) {
#ifdef PIDFD_REAP_TEST_HOOKS
    if (!script.IsObject()) throw Napi::TypeError::New(env, "pidfd-reap: expected a script object");
    job->script = ParseScript(script.As<Napi::Object>());
    has_try_reap = !job->script->results.empty();
    job->has_mrelease = script.As<Napi::Object>().Get("processMrelease").ToBoolean();
    job->has_kill_flag = has_try_reap && script.As<Napi::Object>().Get("tryReapKill").ToBoolean();
#else
    throw Napi::Error::New(env, "pidfd-reap: this build has no test hooks (a scripted kernel needs the test build: binding.gyp test_hooks)");
#endif
  } else {
    job->syscall_nr = syscall_nr.Get();
    has_try_reap = job->syscall_nr > 0;
    job->has_mrelease = HasProcessMrelease();
    job->has_kill_flag = has_try_reap && HasTryReapKill(job->syscall_nr);
  }
  job->want_progress = progress.IsUndefined() || progress.ToBoolean();
  job->mechanism = static_cast<int>(has_try_reap        ? Mechanism::kTryReap
                                    : job->has_mrelease ? Mechanism::kMrelease
                                                        : Mechanism::kNone);

  SetupError error = ThreadJob::Start(env, job, fd, listener, "pidfd-reap:reap",
                                      &ReapJob::CallListener);
  if (error.error != 0) return SetupErrorResult(env, error);  // nothing was killed
  Napi::Object result = Napi::Object::New(env);
  result.Set("job", Napi::External<JobHandle>::New(env, new JobHandle(job),
                                                   [](Napi::Env, JobHandle* held) { delete held; }));
  return result;
}

Napi::Value ReapProgress(const Napi::CallbackInfo& info) {
  JobOf(info, 0)->want_progress = Arg(info, 1).ToBoolean();
  return info.Env().Undefined();
}

// When blocked (inside process_mrelease), the job no longer reports to JS
// and no longer keeps the event loop alive: JS settles with these counts
// while the call finishes in the background.
Napi::Value ReapStop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  JobHandle& job = JobOf(info, 0);
  Napi::Value reason = Arg(info, 1);
  std::string name = reason.IsString() ? reason.As<Napi::String>().Utf8Value() : "";
  if (name != "aborted" && name != "deadline") {
    throw Napi::TypeError::New(env, "pidfd-reap: expected 'aborted' or 'deadline'");
  }
  job->RequestStop(name == "aborted" ? Stop::kAborted : Stop::kDeadline);
  bool blocked = job->in_blocking_call.load();
  if (blocked) job->StopListening(env);
  Napi::Object result = Napi::Object::New(env);
  result.Set("blocked", Napi::Boolean::New(env, blocked));
  SetCounts(result, job->Counts());
  return result;
}

}  // namespace pidfd_reap
