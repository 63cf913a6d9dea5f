// callcost: a tiny Node-API addon of the benchmark (bench/calls.ts), so that
// the C side of js_vs_c_call runs in the same process as the JavaScript side:
//   loop(fd, maxBytes, n)  calls try_reap_dying_process(fd, 0, maxBytes) n
//                          times in a C loop; returns ns per call
//   call(fd, maxBytes)     one call; returns its result (bytes or -errno)
// Built with gcc against Node's headers (no node-gyp); loaded with process.dlopen.
#include <errno.h>
#include <node_api.h>

#include "../victims/reap-sys.h"

static long nr = -1;

static int args(napi_env env, napi_callback_info info, int32_t *fd, size_t *cap, int64_t *n) {
  size_t argc = 3;
  napi_value argv[3];
  double max = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) return -1;
  if (napi_get_value_int32(env, argv[0], fd) != napi_ok || napi_get_value_double(env, argv[1], &max) != napi_ok) return -1;
  *cap = max >= 18446744073709551615.0 ? SIZE_MAX : (size_t)max;
  if (n && (argc < 3 || napi_get_value_int64(env, argv[2], n) != napi_ok || *n <= 0)) return -1;
  return 0;
}

static napi_value number(napi_env env, double value) {
  napi_value out;
  napi_create_double(env, value, &out);
  return out;
}

static napi_value Loop(napi_env env, napi_callback_info info) {
  int32_t fd;
  size_t cap;
  int64_t n;
  if (args(env, info, &fd, &cap, &n) != 0) {
    napi_throw_type_error(env, NULL, "loop(fd, maxBytes, n)");
    return NULL;
  }
  uint64_t start = reap_now_ns();
  for (int64_t i = 0; i < n; i++) syscall(nr, fd, 0, cap);
  return number(env, (double)(reap_now_ns() - start) / (double)n);
}

static napi_value Call(napi_env env, napi_callback_info info) {
  int32_t fd;
  size_t cap;
  if (args(env, info, &fd, &cap, NULL) != 0) {
    napi_throw_type_error(env, NULL, "call(fd, maxBytes)");
    return NULL;
  }
  long ret = syscall(nr, fd, 0, cap);
  return number(env, ret < 0 ? -errno : ret);
}

NAPI_MODULE_INIT() {
  nr = reap_syscall_nr();
  napi_property_descriptor props[] = {
      {"loop", NULL, Loop, NULL, NULL, NULL, napi_default, NULL},
      {"call", NULL, Call, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 2, props);
  return exports;
}
