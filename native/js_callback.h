// Calling JS from an event-loop callback of the addon's own (a uv_poll
// handle), as Node calls its own: used by the watchers (watchers.cc), pidfd
// and PSI alike.
#ifndef PIDFD_REAP_JS_CALLBACK_H_
#define PIDFD_REAP_JS_CALLBACK_H_

#include <node_api.h>

namespace pidfd_reap {

// Calls the referenced function with `status` (an int32). make_callback
// (whose receiver must be an object: the global) runs the queued microtasks
// afterwards, so promise reactions to the event happen at once. A callback
// that throws is an uncaught exception, as in any other event-loop callback.
inline void CallWithStatus(napi_env env, napi_ref callback, napi_async_context context,
                           int status) {
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value function, receiver, argument, result;
  if (napi_get_reference_value(env, callback, &function) == napi_ok && function != nullptr &&
      napi_get_global(env, &receiver) == napi_ok &&
      napi_create_int32(env, status, &argument) == napi_ok) {
    if (napi_make_callback(env, context, receiver, function, 1, &argument, &result) ==
        napi_pending_exception) {
      napi_value error;
      if (napi_get_and_clear_last_exception(env, &error) == napi_ok) {
        napi_fatal_exception(env, error);
      }
    }
  }
  napi_close_handle_scope(env, scope);
}

}  // namespace pidfd_reap

#endif  // PIDFD_REAP_JS_CALLBACK_H_
