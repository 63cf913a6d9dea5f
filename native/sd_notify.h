// sd_notify(3) from the addon: Node has no unix datagram sockets, and a
// service of Type=notify tells systemd it is ready (READY=1), alive
// (WATCHDOG=1) or stopping (STOPPING=1) by one datagram to $NOTIFY_SOCKET.
#ifndef PIDFD_REAP_SD_NOTIFY_H_
#define PIDFD_REAP_SD_NOTIFY_H_

#include <napi.h>

namespace pidfd_reap {

// Adds sdNotify(socketPath, state) to `exports`: the bytes sent, or -errno.
// It keeps no state: each call opens, sends and closes its own socket.
void RegisterSdNotify(Napi::Env env, Napi::Object exports);

}  // namespace pidfd_reap

#endif  // PIDFD_REAP_SD_NOTIFY_H_
