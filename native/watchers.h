// Event-loop watchers: one uv_poll_t per watched fd on the environment's own
// event loop, calling a JS callback with a status when the fd is ready. One
// type serves both users:
//  * pidfd readiness (Pidfd#exited()): UV_READABLE, once (the process
//    exited), the fd belongs to the caller;
//  * PSI triggers (psi.cc): UV_PRIORITIZED, every event, the fd belongs to
//    the watcher (closing it destroys the kernel's trigger), and a file
//    that went away (POLLERR: its cgroup was removed) ends the watch.
#ifndef PIDFD_REAP_WATCHERS_H_
#define PIDFD_REAP_WATCHERS_H_

#include <napi.h>
#include <uv.h>

#include <cstdint>
#include <unordered_map>

namespace pidfd_reap {

struct Watcher;

// uv_ref or uv_unref: whether a handle keeps its event loop alive. The pidfd
// and PSI watchers offer it to JS as ref()/unref().
inline void SetHandleRef(uv_handle_t* handle, bool ref) {
  if (ref) {
    uv_ref(handle);
  } else {
    uv_unref(handle);
  }
}

// What a watch waits for.
struct WatchKind {
  int events;          // UV_READABLE or UV_PRIORITIZED
  bool once;           // the callback runs once, then the watch is gone
  bool owns_fd;        // the fd is closed with the watch (after libuv stopped polling it)
  const char* name;    // the async resource's name
};

constexpr WatchKind kPidfdWatch{UV_READABLE, true, false, "pidfd-reap:watch"};
constexpr WatchKind kPsiWatch{UV_PRIORITIZED, false, true, "pidfd-reap:psi"};

// The watchers of one environment (the addon instance's pidfd watchers, the
// PSI module's own). The callback gets 0 for each event (once: the one
// event) or -errno once when polling fails (-ENODEV: a repeating watch's
// file went away); the watcher is gone after a -errno or a once event.
class Watchers {
 public:
  // Starts watching fd; returns the watcher's id (> 0), or -errno from
  // libuv with *failed (if given) set to "uv_poll_init" or "uv_poll_start".
  // An fd the kind owns is closed on every failure. Throws Napi::Error when
  // N-API fails.
  long Watch(Napi::Env env, int32_t fd, Napi::Value callback, const WatchKind& kind,
             const char** failed = nullptr);

  // Stops a watcher (its callback never runs again); false if it was not active.
  bool Unwatch(uint32_t id);

  // Whether the watcher keeps the event loop alive (uv_ref / uv_unref; a new
  // one does); false if it is not active.
  bool Ref(uint32_t id, bool ref);

  // Stops every watcher of fd, as Unwatch: libuv aborts when the fd of an
  // active poll handle is closed, so this comes before closing fd.
  void UnwatchFd(int32_t fd);

  // At environment teardown: closes every watcher, then (once the last
  // close callback has run, or at once if there is none) removes `hook`.
  // The Watchers object itself may be gone before those callbacks run.
  void CloseAll(napi_async_cleanup_hook_handle hook);

 private:
  static void OnPoll(uv_poll_t* handle, int status, int events);

  std::unordered_map<uint32_t, Watcher*> active_;
  uint32_t last_id_ = 0;
};

}  // namespace pidfd_reap

#endif  // PIDFD_REAP_WATCHERS_H_
