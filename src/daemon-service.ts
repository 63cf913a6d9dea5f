// What `pidfd-reap daemon` does for a service manager, around the daemon's
// log lines: with systemd (Type=notify) READY=1 once the trigger is armed,
// WATCHDOG=1 from the event loop, STATUS= after a kill and STOPPING=1 at the
// end; with journald on stdout, each line prefixed with its syslog priority;
// and the --on-kill command after each kill.
import { spawn } from 'node:child_process'
import { fstatSync } from 'node:fs'
import type { DaemonLogLine } from './daemon'
import { sdNotify, watchdogIntervalMs } from './sd-notify'

/**
 * The syslog priority of each line: journald reads a "<N>" prefix
 * (sd-daemon(3)) and files kills as notices, failed kills as warnings and
 * errors as errors.
 */
export const LINE_PRIORITY: Readonly<Record<DaemonLogLine['event'], number>> = {
  start: 6,
  pressure: 6,
  'would-kill': 6,
  stop: 6,
  kill: 5,
  'kill-failed': 4,
  error: 3,
}
/** The priority of the one-line messages on stderr (the daemon could not start or had to stop). */
export const ERROR_PRIORITY = 3

/**
 * Whether file descriptor `fd` is the stream journald connected to the
 * service: $JOURNAL_STREAM is "<device>:<inode>" of it (systemd.exec(5)).
 * A child whose output was redirected inherits the variable, so the stream
 * itself is compared, as the man page says to.
 */
export function isJournalStream(env: NodeJS.ProcessEnv, fd: number): boolean {
  const match = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? '')
  if (!match) return false
  try {
    const stat = fstatSync(fd, { bigint: true })
    return stat.dev === BigInt(match[1]) && stat.ino === BigInt(match[2])
  } catch {
    return false // not an open descriptor
  }
}

export interface ServiceOptions {
  env: NodeJS.ProcessEnv
  /** Prefix each line with its "<priority>" (stdout is journald's stream). */
  journal: boolean
  /** A shell command run after each kill (and each would-kill of a dry run). */
  onKill?: string
  /** The shell that runs onKill (default '/bin/sh'). */
  shell?: string
}

interface Output {
  write(text: string): unknown
}

export interface DaemonService {
  /** Writes one log line, and does what it calls for (see the file's comment). */
  log(line: DaemonLogLine): void
  /** Writes a message to stderr, as an error for journald. */
  error(message: string): void
  /** Stops the watchdog; the daemon has returned. */
  close(): void
}

export function daemonService(io: { stdout: Output; stderr: Output }, options: ServiceOptions): DaemonService {
  const { env, journal, onKill, shell = '/bin/sh' } = options
  let watchdog: NodeJS.Timeout | undefined
  let notifyFailed = false
  const error = (message: string): void => {
    io.stderr.write(`${journal ? `<${ERROR_PRIORITY}>` : ''}pidfd-reap: ${message}\n`)
  }
  // A notify socket that fails is said once, not at every watchdog tick.
  const notify = (state: string): void => {
    try {
      sdNotify(state, env)
    } catch (failure) {
      if (!notifyFailed) error(`sd_notify: ${(failure as Error).message}`)
      notifyFailed = true
    }
  }
  const runHook = (line: DaemonLogLine & { event: 'kill' | 'would-kill' }): void => {
    const hook = spawn(shell, ['-c', onKill!], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: {
        ...env,
        PIDFD_REAP_EVENT: line.event,
        PIDFD_REAP_PID: String(line.victim.pid),
        PIDFD_REAP_COMM: line.victim.comm,
        PIDFD_REAP_CGROUP: line.victim.cgroup,
        PIDFD_REAP_BYTES_REAPED: String(line.event === 'kill' ? line.bytesReaped : 0),
        PIDFD_REAP_LINE: JSON.stringify(line),
      },
    })
    hook.once('error', (failure) => error(`--on-kill: ${failure.message}`))
  }
  const close = (): void => clearInterval(watchdog)
  return {
    log(line) {
      io.stdout.write(`${journal ? `<${LINE_PRIORITY[line.event]}>` : ''}${JSON.stringify(line)}\n`)
      if (line.event === 'start') {
        notify(`READY=1\nSTATUS=watching ${line.path} (${line.trigger}), MemAvailable line ${line.minAvailable} bytes\nMAINPID=${process.pid}`)
        const interval = watchdogIntervalMs(env)
        if (interval !== null) watchdog = setInterval(() => notify('WATCHDOG=1'), interval)
      } else if (line.event === 'kill') {
        notify(`STATUS=last kill: ${line.victim.pid} (${line.victim.comm}), ${line.bytesReaped} bytes reaped, ${line.decision}`)
      } else if (line.event === 'stop') {
        close()
        // A stop for SIGHUP is a reload: READY=1 follows with the new start line.
        notify(line.reason === 'SIGHUP' ? 'RELOADING=1\nSTATUS=reloading' : `STOPPING=1\nSTATUS=stopped: ${line.reason}`)
      }
      if (onKill !== undefined && (line.event === 'kill' || line.event === 'would-kill')) runHook(line)
    },
    error,
    close,
  }
}
