// sd_notify(3) for a daemon run by systemd (Type=notify): READY=1 once it is
// armed, WATCHDOG=1 while its event loop runs, STOPPING=1 on the way out.
// The datagram goes out from the addon (native/sd_notify.cc): Node has no
// unix datagram sockets.
import { native } from './binding'
import { invalidArgType, invalidArgValue } from './errors'
import { pathError } from './psi'

interface SdNotifyNative {
  /** The bytes sent, or -errno. */
  sdNotify(socketPath: string, state: string): number
}

/**
 * Sends `state` ("READY=1", "WATCHDOG=1\nSTATUS=...") to the service manager
 * at `env.NOTIFY_SOCKET`. Returns false when there is none (not run by
 * systemd with Type=notify or NotifyAccess), true once sent. Throws a
 * SystemError (`syscall: 'sendto'`, `path`: the socket) if it cannot be sent.
 */
export function sdNotify(state: string, env: NodeJS.ProcessEnv = process.env): boolean {
  if (typeof state !== 'string') throw invalidArgType('state', 'of type string', state)
  if (state === '' || state.includes('\0')) throw invalidArgValue('state', state, 'must be KEY=VALUE lines')
  const socket = env.NOTIFY_SOCKET
  if (socket === undefined || socket === '') return false
  const result = (native as unknown as SdNotifyNative).sdNotify(socket, state)
  if (result < 0) throw pathError(result, 'sendto', socket)
  return true
}

/**
 * How often to send WATCHDOG=1: half of `env.WATCHDOG_USEC` (as
 * sd_watchdog_enabled(3) advises), in milliseconds, or null when systemd
 * asked for none or asked another process (WATCHDOG_PID).
 */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv = process.env, pid = process.pid): number | null {
  const usec = Number(env.WATCHDOG_USEC)
  if (!Number.isInteger(usec) || usec <= 0) return null
  if (env.WATCHDOG_PID !== undefined && env.WATCHDOG_PID !== String(pid)) return null
  return Math.max(1, Math.floor(usec / 2000))
}
