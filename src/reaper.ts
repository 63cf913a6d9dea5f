// killAndReap: SIGKILL through a pidfd, then free the victim's memory right
// away instead of waiting for it to exit. Built for a daemon whose event loop
// must stay responsive: every reaping syscall runs on the thread pool and the
// loop yields (setImmediate) between calls.
import { EventEmitter } from 'node:events'
import { constants as osConstants } from 'node:os'
import { performance } from 'node:perf_hooks'
import { setImmediate as yieldToLoop, setTimeout as sleep } from 'node:timers/promises'
import { native } from './binding'
import { errno, systemError } from './errors'
import { Pidfd } from './pidfd'
import { check, features, readRssBytes, type Features } from './syscalls'
import {
  validateAbortSignal,
  validateByteAmount,
  validateFunction,
  validateMilliseconds,
  validateOptions,
  validatePid,
} from './validate'

export type Mechanism = 'try_reap' | 'process_mrelease' | 'none'

export type StopReason =
  | 'exited' // the process exited (or was already gone)
  | 'done' // the kernel reports nothing left to reap
  | 'budget' // budgetBytes reached
  | 'deadline' // deadlineMs passed
  | 'aborted' // options.signal aborted after the kill
  | 'refused' // the kernel refused to reap (see refusal)
  | 'unsupported' // neither try_reap_dying_process nor process_mrelease exists

export interface ReapProgress {
  pid: number
  mechanism: Mechanism
  bytesReaped: number
  calls: number
  busyRetries: number
  elapsedMs: number
}

export interface ReapReport extends ReapProgress {
  exited: boolean
  stopReason: StopReason
  /** Why the kernel refused (stopReason 'refused'), e.g. EPERM for a shared mm. */
  refusal?: { code: string; errno: number; message: string }
}

export interface KillAndReapOptions {
  /** Bytes per try_reap_dying_process call (default 16 MiB). */
  chunkBytes?: number
  /** Stop after this many bytes (default Infinity). process_mrelease cannot be capped. */
  budgetBytes?: number
  /** Stop once this many milliseconds have passed since the call (default Infinity). */
  deadlineMs?: number
  /** Called after every reaping syscall, like the 'progress' event. */
  onProgress?: (progress: ReapProgress) => void
  /** Aborting before the kill rejects with the signal's reason; after it, stops with 'aborted'. */
  signal?: AbortSignal
}

/**
 * The syscalls the policy uses, as raw results (>= 0, or -errno). The real one
 * is the addon; tests substitute it only for outcomes the host kernel cannot
 * produce (the try_reap path needs the patched kernel).
 */
export interface ReapBackend {
  features(): Features
  sendSignal(pidfd: number, signal: number): number
  tryReapAsync(pidfd: number, maxBytes: bigint): Promise<number>
  mreleaseAsync(pidfd: number): Promise<number>
  pollReadable(pidfd: number): number
  readRssBytes(pid: number): number | null
}

export const kernelBackend: ReapBackend = {
  features,
  sendSignal: (pidfd, signal) => native.pidfdSendSignal(pidfd, signal),
  tryReapAsync: (pidfd, maxBytes) => native.tryReapAsync(pidfd, maxBytes, 0),
  mreleaseAsync: (pidfd) => native.processMreleaseAsync(pidfd),
  pollReadable: (pidfd) => native.pollReadable(pidfd),
  readRssBytes,
}

export const DEFAULT_CHUNK_BYTES = 16 * 1024 * 1024
// EBUSY backoff: the victim holds its mmap_lock; retry soon, then less often.
const BACKOFF_FIRST_MS = 1
const BACKOFF_MAX_MS = 50
// Right after SIGKILL the kernel may not report the victim as dying yet
// (try_reap: EPERM, process_mrelease: EINVAL); retry for this long.
const NOT_DYING_GRACE_MS = 250

const SIGKILL = osConstants.signals.SIGKILL

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

/** What one reaping syscall result means for the loop. */
type Outcome = 'reaped' | 'again' | 'done' | 'busy' | 'not-dying' | 'exited' | 'refused'

function classify(mechanism: Mechanism, result: number): Outcome {
  if (result > 0) return 'reaped'
  if (result === 0) return mechanism === 'try_reap' ? 'done' : 'reaped'
  switch (-result) {
    case errno.EAGAIN:
      // try_reap: this call freed nothing but its walk is not over (its
      // page-table budget went on empty ranges): call again at once.
      // process_mrelease: an mmu notifier would have blocked.
      return mechanism === 'try_reap' ? 'again' : 'busy'
    case errno.EBUSY:
    case errno.EINTR:
      return 'busy'
    case errno.ESRCH:
      return 'exited'
    case errno.EPERM:
      // try_reap: not dying yet, shared mm or core dump; mrelease: shared mm.
      return mechanism === 'try_reap' ? 'not-dying' : 'refused'
    case errno.EINVAL:
      // try_reap: kernel thread; mrelease: not dying yet.
      return mechanism === 'try_reap' ? 'refused' : 'not-dying'
    default:
      return 'refused'
  }
}

// Results that mean a bug or a broken setup rather than a decision about
// this victim: they are thrown instead of reported.
function isFatal(result: number): boolean {
  return result === -errno.EBADF || result === -errno.ENOSYS
}

/**
 * Kills processes and reaps their memory; emits 'progress' (ReapProgress)
 * after every reaping syscall.
 */
export class Reaper extends EventEmitter<{ progress: [ReapProgress] }> {
  readonly #settings: Settings
  readonly #backend: ReapBackend

  /** `backend` is internal: tests substitute it for outcomes the host kernel cannot produce. */
  constructor(options?: KillAndReapOptions, backend: ReapBackend = kernelBackend) {
    super()
    const { onProgress, ...settings } = parseOptions(options)
    this.#settings = settings
    this.#backend = backend
    if (onProgress) this.on('progress', onProgress)
  }

  /** Sends SIGKILL through a pidfd (opened from pid, or the given one) and reaps. */
  async killAndReap(target: number | Pidfd): Promise<ReapReport> {
    if (!(target instanceof Pidfd)) validatePid(target, 'target')
    this.#settings.signal?.throwIfAborted()
    const started = performance.now()
    const pidfd = target instanceof Pidfd ? target : Pidfd.open(target)
    try {
      return await pidfd.withFd((fd) => this.#run(fd, pidfd.pid, started))
    } finally {
      if (pidfd !== target) pidfd.close()
    }
  }

  async #run(fd: number, pid: number, started: number): Promise<ReapReport> {
    const backend = this.#backend
    const { chunkBytes, budgetBytes, deadlineMs, signal } = this.#settings
    const available = backend.features()
    const mechanism: Mechanism = available.tryReap ? 'try_reap' : available.processMrelease ? 'process_mrelease' : 'none'
    const report: ReapReport = {
      pid,
      mechanism,
      bytesReaped: 0,
      calls: 0,
      busyRetries: 0,
      elapsedMs: 0,
      exited: false,
      stopReason: 'unsupported',
    }
    const elapsed = (): number => performance.now() - started
    const hasExited = (): boolean => check(backend.pollReadable(fd), 'poll') === 1
    const finish = (stopReason: StopReason): ReapReport => {
      report.stopReason = stopReason
      report.exited = report.exited || hasExited()
      report.elapsedMs = elapsed()
      if (stopReason === 'refused' && report.bytesReaped === 0) report.mechanism = 'none'
      return report
    }

    // process_mrelease reports no byte count: measure the RSS it drops, from
    // before the kill (the victim starts exiting as soon as it is killed).
    const rssBefore = mechanism === 'process_mrelease' ? backend.readRssBytes(pid) : null

    const killed = backend.sendSignal(fd, SIGKILL)
    if (killed === -errno.ESRCH) {
      report.exited = true
      return finish('exited')
    }
    check(killed, 'pidfd_send_signal')
    if (mechanism === 'none') return finish('unsupported')
    const killedAt = elapsed()

    let backoffMs = BACKOFF_FIRST_MS
    for (;;) {
      if (hasExited()) return finish('exited')
      if (signal?.aborted) return finish('aborted')
      if (elapsed() >= deadlineMs) return finish('deadline')
      const remaining = budgetBytes - report.bytesReaped
      if (remaining <= 0) return finish('budget')

      const result =
        mechanism === 'try_reap'
          ? await backend.tryReapAsync(fd, BigInt(Math.min(chunkBytes, remaining)))
          : await backend.mreleaseAsync(fd)
      report.calls++
      if (isFatal(result)) check(result, mechanism === 'try_reap' ? 'try_reap_dying_process' : 'process_mrelease')
      const outcome = classify(mechanism, result)
      if (outcome === 'busy') report.busyRetries++
      if (outcome === 'reaped') {
        report.bytesReaped += mechanism === 'try_reap' ? result : this.#rssDrop(rssBefore, pid, fd)
        backoffMs = BACKOFF_FIRST_MS
      }
      report.elapsedMs = elapsed()
      this.emit('progress', progressOf(report))

      switch (outcome) {
        case 'reaped':
          // process_mrelease reaps everything in one call.
          if (mechanism === 'process_mrelease') return finish('done')
          await yieldToLoop()
          break
        case 'again':
          await yieldToLoop()
          break
        case 'done':
          return finish('done')
        case 'exited':
          report.exited = true
          return finish('exited')
        case 'busy':
          await sleep(Math.max(0, Math.min(backoffMs, deadlineMs - elapsed())))
          backoffMs = Math.min(backoffMs * 2, BACKOFF_MAX_MS)
          break
        case 'not-dying':
          if (elapsed() - killedAt < NOT_DYING_GRACE_MS) {
            await sleep(BACKOFF_FIRST_MS)
            break
          }
        // falls through: still "not dying" after the grace period is a refusal
        case 'refused': {
          const error = systemError(result, mechanism === 'try_reap' ? 'try_reap_dying_process' : 'process_mrelease')
          report.refusal = { code: error.code, errno: error.errno, message: error.message }
          return finish('refused')
        }
      }
    }
  }

  // The RSS drop across a successful process_mrelease. An unreadable statm
  // after the call means the process is gone, so all of its RSS is.
  #rssDrop(rssBefore: number | null, pid: number, fd: number): number {
    if (rssBefore === null) return 0
    const exited = this.#backend.pollReadable(fd) === 1
    const rssAfter = exited ? 0 : (this.#backend.readRssBytes(pid) ?? 0)
    return Math.max(0, rssBefore - rssAfter)
  }
}

function progressOf(report: ReapReport): ReapProgress {
  const { pid, mechanism, bytesReaped, calls, busyRetries, elapsedMs } = report
  return { pid, mechanism, bytesReaped, calls, busyRetries, elapsedMs }
}

/** new Reaper(options).killAndReap(target). */
export async function killAndReap(target: number | Pidfd, options?: KillAndReapOptions): Promise<ReapReport> {
  return new Reaper(options).killAndReap(target)
}
