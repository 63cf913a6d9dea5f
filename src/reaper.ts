// killAndReap: SIGKILL through a pidfd, then free the victim's memory right
// away instead of waiting for it to exit. Built for a daemon whose event loop
// must stay responsive: the kill and the whole capped reaping loop run on a
// thread of the addon's own (never the libuv pool), which reports progress at
// most every 50 ms. This module keeps the policy's surface: options, reports,
// 'progress' events, the deadline and aborts.
import { ChildProcess } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { performance } from 'node:perf_hooks'
import { native, type NativeKillPath, type NativeReapCounts, type NativeReapEvent, type NativeReapJob, type NativeReapScript } from './binding'
import { describeErrno, invalidArgValue, systemError } from './errors'
import { Pidfd } from './pidfd'
import { check, readRssBytes } from './syscalls'
import {
  UINT64_MAX,
  validateAbortSignal,
  validateByteAmount,
  validateFunction,
  validateMilliseconds,
  validateOptions,
  validatePid,
} from './validate'

export type Mechanism = 'try_reap' | 'process_mrelease' | 'none'

/**
 * How SIGKILL was sent: 'try_reap_kill' when the kernel has TRY_REAP_KILL and
 * the first try_reap_dying_process call killed (and reaped), else
 * 'pidfd_send_signal'.
 */
export type KillPath = NativeKillPath

export type StopReason =
  | 'exited' // the process exited: its pidfd became readable
  | 'done' // the kernel reports nothing left to reap (process_mrelease: it succeeded)
  | 'budget' // budgetBytes reached
  | 'deadline' // deadlineMs passed
  | 'aborted' // a signal aborted after the kill
  | 'refused' // the kernel refused to reap, or made no progress over a whole pass (see refusal)
  | 'unsupported' // no reaping syscall exists, or every one answered ENOSYS (see refusal)

export interface ReapProgress {
  pid: number
  /** The mechanism in use: 'process_mrelease' after a run-time fallback from try_reap. */
  mechanism: Mechanism
  bytesReaped: number
  /** Reaping syscalls made; one still blocked in the kernel at the deadline counts. */
  calls: number
  busyRetries: number
  elapsedMs: number
}

export interface ReapRefusal {
  code: string
  errno: number
  /** The call that answered: 'try_reap_dying_process' or 'process_mrelease'. */
  syscall: string
  message: string
}

export interface ReapReport extends ReapProgress {
  /** How SIGKILL was sent (see KillPath). */
  killPath: KillPath
  /** The process has exited: its pidfd was readable when the report was made. */
  exited: boolean
  /** The victim's resident set just before the kill (/proc/<pid>/statm), or null if unreadable. */
  rssBeforeBytes: number | null
  /**
   * How far its RSS fell from rssBeforeBytes by the report: reaping and the
   * exit together (all of it once exited). bytesReaped is only what the
   * reaping calls returned (process_mrelease: the RSS fall across that call).
   */
  rssDropBytes: number | null
  /** When SIGKILL was sent, in ms since the call (as elapsedMs), or null if it was not (the process was gone). */
  killedAtMs: number | null
  /**
   * When the process was first seen exited, in ms since the call: by the
   * reaping loop, or at the latest by the report (then equal to elapsedMs);
   * null while it has not exited.
   */
  exitedAtMs: number | null
  stopReason: StopReason
  /**
   * What the kernel answered when it refused (stopReason 'refused'), e.g. EPERM
   * for a shared mm or ESRCH for a process without an mm that does not exit,
   * or ENOSYS when every reaping call was blocked ('unsupported').
   */
  refusal?: ReapRefusal
}

export interface KillAndReapOptions {
  /** Bytes per try_reap_dying_process call (default 16 MiB). */
  chunkBytes?: number
  /** Stop after this many bytes (default Infinity). process_mrelease cannot be capped. */
  budgetBytes?: number
  /**
   * Settle once this many milliseconds have passed since the call (default
   * Infinity), even while process_mrelease is blocked in the kernel (that call
   * then finishes in the background). Without one the job still ends, at the
   * latest when try_reap makes no progress over a whole pass ('refused', EAGAIN).
   */
  deadlineMs?: number
  /** Called with each 'progress' event (at most every 50 ms, and once with the final counts). */
  onProgress?: (progress: ReapProgress) => void
  /** Aborting before the kill rejects with the signal's reason; after it, stops with 'aborted'. */
  signal?: AbortSignal
}

/** Options of one Reaper#killAndReap call. */
export interface KillAndReapCallOptions {
  /** Aborts this call, like the Reaper's own signal (either one aborts). */
  signal?: AbortSignal
}

/** @internal Test seam: scripted try_reap results (see NativeReapScript). */
export type TryReapScript = NativeReapScript

export const DEFAULT_CHUNK_BYTES = 16 * 1024 * 1024
const MAX_TIMER_MS = 2 ** 31 - 2

interface Settings {
  chunkBytes: number
  budgetBytes: number
  deadlineMs: number
  signal: AbortSignal | undefined
}

function parseOptions(options: unknown): Settings & { onProgress?: KillAndReapOptions['onProgress'] } {
  const raw = validateOptions<KillAndReapOptions>(options)
  return {
    chunkBytes:
      raw.chunkBytes === undefined ? DEFAULT_CHUNK_BYTES : validateByteAmount(raw.chunkBytes, 'options.chunkBytes', 1, false),
    budgetBytes:
      raw.budgetBytes === undefined ? Infinity : validateByteAmount(raw.budgetBytes, 'options.budgetBytes', 0, true),
    deadlineMs: raw.deadlineMs === undefined ? Infinity : validateMilliseconds(raw.deadlineMs, 'options.deadlineMs'),
    signal: raw.signal === undefined ? undefined : validateAbortSignal(raw.signal),
    onProgress:
      raw.onProgress === undefined
        ? undefined
        : (validateFunction(raw.onProgress, 'options.onProgress') as KillAndReapOptions['onProgress']),
  }
}

function refusalOf(negativeErrno: number, syscall: string, pid: number): ReapRefusal {
  const [code] = describeErrno(negativeErrno)
  return { code, errno: negativeErrno, syscall, message: systemError(negativeErrno, syscall, pid).message }
}

/**
 * Kills processes and reaps their memory; emits 'progress' (ReapProgress)
 * at most every 50 ms while reaping (only while it has 'progress'
 * listeners), and once with the final counts.
 */
export class Reaper extends EventEmitter<{ progress: [ReapProgress] }> {
  readonly #settings: Settings
  readonly #script: TryReapScript | undefined
  /** Jobs still reporting to this Reaper. */
  readonly #jobs = new Set<NativeReapJob>()

  constructor(options?: KillAndReapOptions)
  /** @internal Tests script try_reap results the host kernel cannot produce (stripped from the .d.ts). */
  constructor(options: KillAndReapOptions | undefined, script: TryReapScript)
  constructor(options?: KillAndReapOptions, script?: TryReapScript) {
    super()
    const { onProgress, ...settings } = parseOptions(options)
    this.#settings = settings
    this.#script = script
    if (onProgress) this.on('progress', onProgress)
  }

  // Throttled progress events wake the event loop, whose thread may share
  // the job's CPU: jobs send them only while the Reaper has 'progress'
  // listeners. 'newListener' comes before a listener is added,
  // 'removeListener' after one is removed.
  readonly #onNewListener = (event: string | symbol): void => {
    if (event === 'progress') for (const job of this.#jobs) native.reapProgress(job, true)
  }

  readonly #onRemoveListener = (event: string | symbol): void => {
    if (event !== 'progress') return
    const wanted = this.listenerCount('progress') > 0
    for (const job of this.#jobs) native.reapProgress(job, wanted)
  }

  /** Follows 'progress' listeners while a job runs (again, after a removeAllListeners()). */
  #followListeners(): void {
    // EventEmitter's own events, which the typed map of this one leaves out.
    const untyped = this as EventEmitter
    if (!untyped.listeners('newListener').includes(this.#onNewListener)) untyped.on('newListener', this.#onNewListener)
    if (!untyped.listeners('removeListener').includes(this.#onRemoveListener)) untyped.on('removeListener', this.#onRemoveListener)
  }

  /**
   * Sends SIGKILL through a pidfd and reaps: the given Pidfd, or one opened
   * for a child_process child (race-free, see Pidfd.fromChildProcess) or a
   * pid (which may name another process once the one meant was waited for).
   */
  async killAndReap(target: number | Pidfd | ChildProcess, options?: KillAndReapCallOptions): Promise<ReapReport> {
    if (target instanceof Pidfd) {
      // Readable when that thread exits, long before the mm is released.
      if (target.thread) throw invalidArgValue('target', `<Pidfd ${target.pid}>`, 'must be a process pidfd, not a PIDFD_THREAD one')
    } else if (!(target instanceof ChildProcess)) {
      validatePid(target, 'target')
    }
    const call = validateOptions<KillAndReapCallOptions>(options)
    const signals = [this.#settings.signal, call.signal === undefined ? undefined : validateAbortSignal(call.signal)]
      .filter((signal): signal is AbortSignal => signal !== undefined)
    for (const signal of signals) signal.throwIfAborted()
    const started = performance.now()
    const pidfd = target instanceof Pidfd ? target : target instanceof ChildProcess ? Pidfd.fromChildProcess(target) : Pidfd.open(target)
    try {
      return await pidfd.withFd((fd) => this.#run(fd, pidfd.pid, started, signals))
    } finally {
      if (pidfd !== target) pidfd.close()
    }
  }

  #run(fd: number, pid: number, started: number, signals: AbortSignal[]): Promise<ReapReport> {
    const { chunkBytes, budgetBytes, deadlineMs } = this.#settings
    return new Promise<ReapReport>((resolve, reject) => {
      let settled = false
      let lastEmitted: NativeReapCounts | undefined
      let timer: NodeJS.Timeout | undefined
      let job: NativeReapJob | undefined = undefined
      let jobStartedMs = 0

      const progressOf = (counts: NativeReapCounts): ReapProgress => {
        const { mechanism, bytesReaped, calls, busyRetries } = counts
        return { pid, mechanism, bytesReaped, calls, busyRetries, elapsedMs: performance.now() - started }
      }
      const emitProgress = (counts: NativeReapCounts): void => {
        lastEmitted = counts
        this.emit('progress', progressOf(counts))
      }
      const stopListening = (): void => {
        settled = true
        if (job) this.#jobs.delete(job)
        clearTimeout(timer)
        for (const signal of signals) signal.removeEventListener('abort', onAbort)
      }
      const fail = (error: unknown): void => {
        stopListening()
        reject(error)
      }
      // Settles in every case: it runs from the job's final event, and from a
      // timer or an abort listener, where a throw would be an uncaught
      // exception and leave the promise pending. A 'progress' listener that
      // throws on the final counts rejects the call, as during the run.
      const settle = (counts: NativeReapCounts, stopReason: StopReason, refusal?: ReapRefusal): void => {
        stopListening()
        let report: ReapReport
        try {
          // The final counts reach listeners even when the last throttled event missed them.
          const changed =
            lastEmitted === undefined || counts.calls !== lastEmitted.calls || counts.bytesReaped !== lastEmitted.bytesReaped
          if (counts.calls > 0 && changed) emitProgress(counts)
          // RSS first: once the pidfd is found unreadable after it, the pid
          // still named the victim when it was read.
          const rssNow = readRssBytes(pid)
          const exited = check(native.pollReadable(fd), 'poll', pid) === 1
          const progress = progressOf(counts)
          const { rssBeforeBytes = null, killedAfterMs, exitedAfterMs } = counts
          const rssAfter = exited ? 0 : rssNow
          report = {
            ...progress,
            // Every report comes after the kill (a failed kill rejects).
            killPath: counts.killPath!,
            exited,
            stopReason,
            rssBeforeBytes,
            rssDropBytes: rssBeforeBytes === null || rssAfter === null ? null : Math.max(0, rssBeforeBytes - rssAfter),
            killedAtMs: killedAfterMs === undefined ? null : jobStartedMs + killedAfterMs,
            exitedAtMs: exitedAfterMs !== undefined ? jobStartedMs + exitedAfterMs : exited ? progress.elapsedMs : null,
          }
        } catch (error) {
          return reject(error)
        }
        if (refusal) report.refusal = refusal
        resolve(report)
      }

      const onEvent = (event: NativeReapEvent): void => {
        if (settled) return
        if (event.final) {
          const { stopReason, errno, syscall } = event
          if (stopReason === 'error') return fail(systemError(errno!, syscall!, pid))
          return settle(event, stopReason!, syscall === undefined ? undefined : refusalOf(errno!, syscall, pid))
        }
        try {
          emitProgress(event)
        } catch (error) {
          // A throwing 'progress' listener: stop reaping, reject with its error.
          native.reapStop(job!, 'aborted')
          fail(error)
        }
      }

      // The job's thread stops by itself at the deadline or an abort, except
      // inside process_mrelease, which can block for seconds: then settle now.
      const interrupt = (reason: 'aborted' | 'deadline'): void => {
        const state = native.reapStop(job!, reason)
        if (state.blocked) settle(state, reason)
      }
      function onAbort(): void {
        interrupt('aborted')
      }

      const budget = budgetBytes === Infinity ? UINT64_MAX : BigInt(budgetBytes)
      // The job's times count from about here (its own clock starts in startReap).
      jobStartedMs = performance.now() - started
      const remainingMs = deadlineMs - jobStartedMs
      this.#followListeners()
      const wantProgress = this.listenerCount('progress') > 0
      const start = native.startReap(fd, pid, BigInt(chunkBytes), budget, remainingMs, onEvent, this.#script, wantProgress)
      if ('errno' in start) return fail(systemError(start.errno, start.syscall, pid))
      job = start.job
      this.#jobs.add(job)
      for (const signal of signals) signal.addEventListener('abort', onAbort, { once: true })
      // The thread keeps the deadline itself; this timer is for a blocked call.
      // Node's timers count whole milliseconds and may fire up to about 2 ms
      // early, which must not cut a call short: an early one waits for the
      // rest. Beyond the longest timer (24.8 days) Node would fire at once.
      const atDeadline = (): void => {
        const left = deadlineMs - (performance.now() - started)
        if (left > 0) timer = setTimeout(atDeadline, left)
        else interrupt('deadline')
      }
      if (remainingMs < MAX_TIMER_MS) timer = setTimeout(atDeadline, Math.max(0, remainingMs))
    })
  }
}

/** new Reaper(options).killAndReap(target). */
export async function killAndReap(target: number | Pidfd | ChildProcess, options?: KillAndReapOptions): Promise<ReapReport> {
  return new Reaper(options).killAndReap(target)
}
