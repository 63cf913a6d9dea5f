// Pidfd readiness watchers: one uv_poll_t per watched fd on the
// environment's own event loop, calling a JS callback once when the fd
// becomes readable (a pidfd: the process exited). Used by Pidfd#exited().
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

// The watchers of one environment (owned by its addon instance).
class Watchers {
 public:
  // Starts watching fd; returns the watcher's id (> 0) or -errno. The
  // callback runs once, with 0 when fd becomes readable or -errno when
  // polling fails; the watcher is gone after that.
  long Watch(Napi::Env env, int32_t fd, Napi::Function callback);

  // Stops a watcher (its callback never runs); false if it was not active.
  bool Unwatch(uint32_t id);

  // Whether the watcher keeps the event loop alive (uv_ref / uv_unref; a new
  // one does); false if it is not active.
  bool Ref(uint32_t id, bool ref);

  // Stops every watcher of fd, as Unwatch: libuv aborts when the fd of an
  // active poll handle is closed, so this comes before closing fd.
  void UnwatchFd(int32_t fd);

  // At environment teardown: closes every watcher, then (once the last
  // close callback has run, or at once if there is none) removes `hook`.
  void CloseAll(napi_async_cleanup_hook_handle hook);

 private:
  static void OnPoll(uv_poll_t* handle, int status, int events);

  std::unordered_map<uint32_t, Watcher*> active_;
  uint32_t last_id_ = 0;
};

}  // namespace pidfd_reap

#endif  // PIDFD_REAP_WATCHERS_H_
