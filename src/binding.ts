// Loads the native addon. The platform check comes first and is a function of
// the platform name, so the non-Linux path is testable on Linux.
import { join } from 'node:path'
import { unsupportedPlatformError } from './errors'

export type NativeMechanism = 'try_reap' | 'process_mrelease' | 'none'

/** How the process was sent SIGKILL: by the first try_reap_dying_process call (TRY_REAP_KILL), or by pidfd_send_signal. */
export type NativeKillPath = 'try_reap_kill' | 'pidfd_send_signal'

/** The counts of a reaping job, as its thread last published them. */
export interface NativeReapCounts {
  /** The mechanism in use ('process_mrelease' after a run-time fallback from try_reap). */
  mechanism: NativeMechanism
  bytesReaped: number
  /** Reaping syscalls made (a call still blocked in the kernel counts). */
  calls: number
  busyRetries: number
  /** Set once the kill was sent. */
  killPath?: NativeKillPath
  /** The victim's RSS read just before the kill (absent: unreadable). */
  rssBeforeBytes?: number
  /** When the kill was sent, in ms after startReap (absent: not sent). */
  killedAfterMs?: number
  /** When the job saw the pidfd readable, in ms after startReap (absent: not seen). */
  exitedAfterMs?: number
}

/** What a job's thread reports: progress (at most every 50 ms), then one final event. */
export interface NativeReapEvent extends NativeReapCounts {
  final: boolean
  /** Final events: why the job stopped ('error': a failed kill or a broken call, to throw). */
  stopReason?: 'done' | 'budget' | 'deadline' | 'aborted' | 'exited' | 'refused' | 'unsupported' | 'error'
  /** The -errno of the refusal, ENOSYS or broken call that ended the job, and its syscall. */
  errno?: number
  syscall?: string
}

/** An opaque handle of a running job. */
export interface NativeReapJob {
  readonly __nativeReapJob: unique symbol
}

/**
 * Test seam: scripted try_reap_dying_process results (the last one repeats)
 * instead of the real call, for outcomes the host kernel cannot produce; the
 * kill, exit detection and process_mrelease stay real.
 */
export interface NativeReapScript {
  /** Results in order, the last one repeats; Infinity: the call's cap; empty: no try_reap. */
  results: number[]
  /** How long each scripted call takes (default 0). */
  delayMs?: number
  /** Whether process_mrelease may be used (the fallback, or the mechanism). */
  processMrelease: boolean
  /**
   * Whether the scripted kernel knows TRY_REAP_KILL (default false): then
   * the first scripted result answers the call that kills, and a result that
   * means "killed" kills for real, with pidfd_send_signal.
   */
  tryReapKill?: boolean
}

/**
 * The raw addon. Syscall wrappers return a number: >= 0 on success, -errno on
 * failure (the async ones resolve with it and never reject).
 */
export interface NativeBinding {
  pidfdOpen(pid: number, flags: number): number
  pidfdSendSignal(pidfd: number, signal: number): number
  tryReap(pidfd: number, maxBytes: bigint, flags: number): number
  tryReapAsync(pidfd: number, maxBytes: bigint, flags: number): Promise<number>
  processMrelease(pidfd: number): number
  processMreleaseAsync(pidfd: number): Promise<number>
  lockMappedCode(onFault: boolean): number
  /** 1 when readable (pidfd: the process exited), 0 if not, or -errno. */
  pollReadable(fd: number): number
  /** Calls back once when fd becomes readable; returns a watcher id (> 0) or -errno. */
  watchReadable(fd: number, callback: (status: number) => void): number
  unwatch(id: number): boolean
  /** Whether the watcher keeps the event loop alive; false if it is not active. */
  refWatch(id: number, ref: boolean): boolean
  /** Registers an fd owned by a Pidfd: closed at environment exit if still open. */
  adoptFd(fd: number): void
  /** Closes (and forgets) an adopted fd; 0 or -errno. */
  closeFd(fd: number): number
  /**
   * syscallNr: the confirmed number, or -errno (-ENOENT: no patched kernel);
   * tryReapKill: try_reap_dying_process(-1, TRY_REAP_KILL, 0) answers EBADF.
   */
  features(): { syscallNr: number; tryReapKill: boolean; processMrelease: boolean }
  /**
   * Starts killAndReap's job: a thread that sends SIGKILL through a dup of fd
   * and runs the capped reaping loop (budget: 2^64-1 for none; deadlineMs:
   * Infinity for none). Before anything is killed, setup can fail: then the
   * result is { errno, syscall }.
   */
  startReap(
    fd: number,
    pid: number,
    chunkBytes: bigint,
    budgetBytes: bigint,
    deadlineMs: number,
    listener: (event: NativeReapEvent) => void,
    script?: NativeReapScript,
    /** Whether throttled progress events are wanted (default true); the final event always comes. */
    progress?: boolean,
  ): { job: NativeReapJob } | { errno: number; syscall: string }
  /** Turns a job's throttled progress events on or off. */
  reapProgress(job: NativeReapJob, wanted: boolean): void
  /**
   * Asks the job to stop; returns its counts so far. `blocked`: it is inside
   * process_mrelease, will report no more and no longer holds the event loop.
   */
  reapStop(job: NativeReapJob, reason: 'aborted' | 'deadline'): NativeReapCounts & { blocked: boolean }
  /** The strict parser used for the sysfs file; -EINVAL for bad text. */
  parseSyscallNr(text: string): number
  readonly pageSize: number
  readonly syscallNrPath: string
  /**
   * Whether this build has the test hooks (startReap's script): only the
   * test build of a source tree with its tests, never a prebuild or an
   * npm install (binding.gyp's test_hooks).
   */
  readonly testHooks: boolean
  /** Test build only: allocates and frees `bytes` with C++ operator new (a failure throws std::bad_alloc). */
  testAllocate?(bytes: bigint): void
}

const packageRoot = join(__dirname, '..')

function loadBuiltAddon(): NativeBinding {
  // node-gyp-build picks prebuilds/ or build/Release for this Node and platform.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const nodeGypBuild = require('node-gyp-build') as (dir: string) => NativeBinding
  return nodeGypBuild(packageRoot)
}

export function loadNative(platform: string, load: () => NativeBinding = loadBuiltAddon): NativeBinding {
  if (platform !== 'linux') throw unsupportedPlatformError(platform)
  return load()
}

export const native: NativeBinding = loadNative(process.platform)
