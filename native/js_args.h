// Argument backstops and results of the JS-facing functions. Arguments are
// validated in JS with Node-style errors first (src/validate.ts); these checks
// only keep a bad call from reaching the kernel, with a plain TypeError.
#ifndef PIDFD_REAP_JS_ARGS_H_
#define PIDFD_REAP_JS_ARGS_H_

#include <napi.h>

#include <cstdint>

namespace pidfd_reap {

inline Napi::Value Arg(const Napi::CallbackInfo& info, size_t index) {
  return index < info.Length() ? info[index] : info.Env().Undefined();
}

inline int32_t Int32Arg(const Napi::CallbackInfo& info, size_t index) {
  Napi::Value value = Arg(info, index);
  if (!value.IsNumber()) {
    throw Napi::TypeError::New(info.Env(), "pidfd-reap: expected a number");
  }
  return value.As<Napi::Number>().Int32Value();
}

inline uint32_t Uint32Arg(const Napi::CallbackInfo& info, size_t index) {
  Napi::Value value = Arg(info, index);
  if (value.IsUndefined()) return 0;
  if (!value.IsNumber()) {
    throw Napi::TypeError::New(info.Env(), "pidfd-reap: expected a number");
  }
  return value.As<Napi::Number>().Uint32Value();
}

inline uint64_t Uint64Arg(const Napi::CallbackInfo& info, size_t index) {
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

// A syscall wrapper's result for JS: >= 0, or -errno.
inline Napi::Number NumberResult(Napi::Env env, long result) {
  return Napi::Number::New(env, static_cast<double>(result));
}

}  // namespace pidfd_reap

#endif  // PIDFD_REAP_JS_ARGS_H_
