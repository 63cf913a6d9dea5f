// Pidfd readiness watchers: see watchers.h.
#include "watchers.h"

#include <memory>

#include "js_callback.h"

namespace pidfd_reap {

// Remembers the cleanup hook while watchers close during environment teardown.
struct WatcherTeardown {
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

  void CallOnce(int status) { CallWithStatus(env, callback, context, status); }
};

long Watchers::Watch(Napi::Env env, int32_t fd, Napi::Function callback) {
  uv_loop_t* loop = nullptr;
  NAPI_THROW_IF_FAILED(env, napi_get_uv_event_loop(env, &loop), 0);

  auto watcher = std::make_unique<Watcher>();
  watcher->env = env;
  watcher->fd = fd;
  int rc = uv_poll_init(loop, &watcher->handle, fd);
  if (rc != 0) return rc;  // libuv errors are -errno
  watcher->handle.data = watcher.get();
  // From here on the handle is registered: it must be closed, not deleted.
  Watcher* registered = watcher.release();
  napi_value name;
  napi_status status = napi_create_string_utf8(env, "pidfd-reap:watch", NAPI_AUTO_LENGTH, &name);
  if (status == napi_ok) status = napi_create_reference(env, callback, 1, &registered->callback);
  if (status == napi_ok) status = napi_async_init(env, nullptr, name, &registered->context);
  if (status != napi_ok) {
    registered->Close();
    NAPI_THROW_IF_FAILED(env, status, 0);
  }
  rc = uv_poll_start(&registered->handle, UV_READABLE, &Watchers::OnPoll);
  if (rc != 0) {
    registered->Close();
    return rc;
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

void Watchers::OnPoll(uv_poll_t* handle, int status, int /*events*/) {
  auto* watcher = static_cast<Watcher*>(handle->data);
  // Poll events only arrive while the environment runs, so the addon that
  // owns the registry is alive here.
  watcher->registry->erase(watcher->id);
  uv_poll_stop(handle);
  watcher->CallOnce(status);
  watcher->Close();
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
