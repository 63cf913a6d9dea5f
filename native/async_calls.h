// The raw calls' async forms: try_reap_dying_process on the libuv thread
// pool (bounded by its cap, it never blocks), process_mrelease on a thread of
// its own (it can block for seconds on the victim's mmap_lock). Each returns a
// promise that resolves with what the synchronous wrapper returns (a result
// >= 0 or -errno) and never rejects.
#ifndef PIDFD_REAP_ASYNC_CALLS_H_
#define PIDFD_REAP_ASYNC_CALLS_H_

#include <napi.h>

#include <cstdint>

namespace pidfd_reap {

Napi::Value TryReapAsync(Napi::Env env, long syscall_nr, int32_t pidfd, uint64_t max_bytes,
                         uint32_t flags);

Napi::Value ProcessMreleaseAsync(Napi::Env env, int32_t pidfd);

}  // namespace pidfd_reap

#endif  // PIDFD_REAP_ASYNC_CALLS_H_
