// Event-loop watchers (pidfd readiness, PSI triggers): see watchers.h.
#include "watchers.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

#include "js_callback.h"
#include "syscalls.h"

namespace pidfd_reap {

// Remembers the cleanup hook while watchers close during environment teardown.
struct WatcherTeardown {
  napi_async_cleanup_hook_handle hook;
  size_t closing;
};

// One uv_poll_t on an fd. JS references (callback, async context) are
// released while the environment is alive; the uv close callback then only
// frees memory (and closes an owned fd), because it may run after the
// Watchers that registered it, or the whole addon instance, is gone.
struct Watcher {
  uv_poll_t handle;
  napi_env env;
  int32_t fd = -1;
  uint32_t id = 0;
  WatchKind kind{};
  // The owning table of active watchers (valid while events arrive).
  std::unordered_map<uint32_t, Watcher*>* registry = nullptr;
  napi_ref callback = nullptr;
  napi_async_context context = nullptr;
  WatcherTeardown* teardown = nullptr;

  void ReleaseJs() {
    if (callback != nullptr) napi_delete_reference(env, callback);
    if (context != nullptr) napi_async_destroy(env, context);
    callback = nullptr;
    context = nullptr;
  }

  static void OnClosed(uv_handle_t* handle) {
    auto* watcher = static_cast<Watcher*>(handle->data);
    WatcherTeardown* teardown = watcher->teardown;
    // libuv has stopped polling it: an owned fd may go now (for a PSI
    // trigger, closing it also destroys the kernel's trigger).
    if (watcher->kind.owns_fd) close(watcher->fd);
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

  // Ends the watch: the callback gets `status` once, and the id no longer
  // finds it. Poll events only arrive while the environment runs, so the
  // registry is alive here.
  void End(int status) {
    registry->erase(id);
    uv_poll_stop(&handle);
    CallWithStatus(env, callback, context, status);
    Close();
  }
};

namespace {

// Whether the file went away: kernfs answers POLLERR | POLLPRI for good once
// its node is removed (the cgroup was removed), and libuv passes POLLERR
// with POLLPRI on as a plain UV_PRIORITIZED event (the sysfs_notify
// convention), so without this check the loop would spin on it.
bool Gone(int fd) {
  int revents = PollNow(fd, POLLPRI);
  return revents > 0 && (revents & (POLLERR | POLLNVAL)) != 0;
}

}  // namespace

long Watchers::Watch(Napi::Env env, int32_t fd, Napi::Value callback, const WatchKind& kind,
                     const char** failed) {
  auto fail = [&](int rc, const char* what) -> long {
    if (failed != nullptr) *failed = what;
    return rc;  // libuv errors are -errno
  };
  uv_loop_t* loop = nullptr;
  napi_status got_loop = napi_get_uv_event_loop(env, &loop);
  if (got_loop != napi_ok) {
    if (kind.owns_fd) close(fd);
    NAPI_THROW_IF_FAILED(env, got_loop, 0);
  }

  auto watcher = std::make_unique<Watcher>();
  watcher->env = env;
  watcher->fd = fd;
  watcher->kind = kind;
  int rc = uv_poll_init(loop, &watcher->handle, fd);
  if (rc != 0) {
    if (kind.owns_fd) close(fd);
    return fail(rc, "uv_poll_init");
  }
  watcher->handle.data = watcher.get();
  // From here on the handle is registered: it must be closed, not deleted
  // (closing it closes an owned fd).
  Watcher* registered = watcher.release();
  napi_value name;
  napi_status status = napi_create_string_utf8(env, kind.name, NAPI_AUTO_LENGTH, &name);
  if (status == napi_ok) status = napi_create_reference(env, callback, 1, &registered->callback);
  if (status == napi_ok) status = napi_async_init(env, nullptr, name, &registered->context);
  if (status != napi_ok) {
    registered->Close();
    NAPI_THROW_IF_FAILED(env, status, 0);
  }
  rc = uv_poll_start(&registered->handle, kind.events, &Watchers::OnPoll);
  if (rc != 0) {
    registered->Close();
    return fail(rc, "uv_poll_start");
  }
  registered->id = ++last_id_;
  registered->registry = &active_;
  active_[registered->id] = registered;
  return registered->id;
}

bool Watchers::Unwatch(uint32_t id) {
  auto found = active_.find(id);
  if (found == active_.end()) return false;
  Watcher* watcher = found->second;
  active_.erase(found);
  watcher->Close();
  return true;
}

bool Watchers::Ref(uint32_t id, bool ref) {
  auto found = active_.find(id);
  if (found == active_.end()) return false;
  SetHandleRef(reinterpret_cast<uv_handle_t*>(&found->second->handle), ref);
  return true;
}

void Watchers::UnwatchFd(int32_t fd) {
  for (auto entry = active_.begin(); entry != active_.end();) {
    if (entry->second->fd != fd) {
      ++entry;
      continue;
    }
    entry->second->Close();
    entry = active_.erase(entry);
  }
}

void Watchers::OnPoll(uv_poll_t* handle, int status, int events) {
  auto* watcher = static_cast<Watcher*>(handle->data);
  if (status < 0) return watcher->End(status);  // POLLERR alone: UV_EBADF
  if (watcher->kind.once) return watcher->End(0);
  if (!(events & watcher->kind.events)) return;
  // A repeating watch (PSI): epoll's own poll of the file took the event
  // (the kernel reports each one once), so this poll finds POLLERR only on
  // a node that is gone. (A next event pending already would be folded into
  // this one; PSI events come at most once per window, 500 ms apart.)
  if (Gone(watcher->fd)) return watcher->End(-ENODEV);
  CallWithStatus(watcher->env, watcher->callback, watcher->context, 0);
}

void Watchers::CloseAll(napi_async_cleanup_hook_handle hook) {
  if (active_.empty()) {
    napi_remove_async_cleanup_hook(hook);
    return;
  }
  auto* teardown = new WatcherTeardown{hook, active_.size()};
  for (auto& entry : active_) {
    entry.second->teardown = teardown;
    entry.second->Close();
  }
  active_.clear();
}

}  // namespace pidfd_reap
