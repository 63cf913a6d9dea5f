// killAndReap's job: the kill and the whole capped reaping loop on a thread
// of its own (see reap_job.cc).
#ifndef PIDFD_REAP_REAP_JOB_H_
#define PIDFD_REAP_REAP_JOB_H_

#include <napi.h>

#include "syscalls.h"

namespace pidfd_reap {

// startReap(fd, pid, chunkBytes, budgetBytes, deadlineMs, listener, script?, progress?)
//   -> { job } or, before anything was killed, { errno, syscall }.
// progress (default true): whether throttled progress events are wanted.
Napi::Value StartReap(const Napi::CallbackInfo& info, SyscallNrCache& syscall_nr);

// reapProgress(job, wanted): progress events from now on, or none.
Napi::Value ReapProgress(const Napi::CallbackInfo& info);

// reapStop(job, 'aborted' | 'deadline') -> the counts so far and `blocked`.
Napi::Value ReapStop(const Napi::CallbackInfo& info);

}  // namespace pidfd_reap

#endif  // PIDFD_REAP_REAP_JOB_H_
