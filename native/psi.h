// PSI (pressure stall information) trigger watchers: the native half of
// src/psi.ts. See psi.cc.
#ifndef PIDFD_REAP_PSI_H_
#define PIDFD_REAP_PSI_H_

#include <napi.h>

namespace pidfd_reap {

// Adds psiWatch, psiClose and psiRef to `exports`. Their state lives per
// environment (main thread or worker) and is freed by the environment's
// cleanup hook, which closes every watcher still open.
void RegisterPsi(Napi::Env env, Napi::Object exports);

}  // namespace pidfd_reap

#endif  // PIDFD_REAP_PSI_H_
