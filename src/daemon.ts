// The example memory-pressure daemon (`pidfd-reap daemon`): it arms a PSI
// trigger and checks MemAvailable on a timer, and while MemAvailable is
// below its line picks the process with the highest oom_score in a cgroup
// it was given, kills it and reaps its memory with killAndReap, then decides
// from the bytes reaped (and MemAvailable) whether to kill another or wait.
// Each decision is one JSON line.
//
// It never signals a process outside that cgroup: a victim's pidfd is opened
// first, then its membership (and identity: its start time) is checked
// again, and the kill goes through that pidfd, which can only reach the
// process that was checked.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { native } from './binding'
import { invalidArgType, invalidArgValue, outOfRange } from './errors'
import { Pidfd } from './pidfd'
import { readPressureQuietly, watchPressure, type PressureReading, type PressureWatcher, type PressureKind, type WatchPressureOptions } from './psi'
import { killAndReap, type KillAndReapOptions, type ReapReport } from './reaper'
import { lockMemory } from './syscalls'
import {
  validateAbortSignal,
  validateByteAmount,
  validateFunction,
  validateMilliseconds,
  validateOptions,
} from './validate'

/** A process the daemon may kill: what it is ranked by, read from /proc. */
export interface VictimCandidate {
  pid: number
  /** The command name (/proc/<pid>/comm, from stat). */
  comm: string
  /** /proc/<pid>/oom_score: the kernel's own badness, 0 to 2000. */
  oomScore: number
  /** /proc/<pid>/oom_score_adj: -1000 (never picked) to 1000. */
  oomScoreAdj: number
  rssBytes: number
  /** The cgroup directory whose cgroup.procs lists it: the given one or a group below it. */
  cgroup: string
  /** Start time in clock ticks after boot (/proc/<pid>/stat field 22): with the pid, the process's identity. */
  startTime: number
}

export interface VictimOptions {
  /** Where /proc is (default '/proc'): tests use a fake one. */
  procRoot?: string
  /** Pids never picked (default: this process). PID 1 is never picked either. */
  exclude?: number[]
}

const PF_KTHREAD = 0x00200000

/** Every pid in cgroup.procs of `cgroup` and of the groups below it, with its group. */
export function cgroupProcesses(cgroup: string): { pid: number; cgroup: string }[] {
  const found: { pid: number; cgroup: string }[] = []
  const walk = (dir: string): void => {
    for (const line of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n')) {
      if (line !== '') found.push({ pid: Number(line), cgroup: dir })
    }
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      // A group removed meanwhile is skipped; the given one must be there.
      if (entry.isDirectory()) {
        try {
          walk(join(dir, entry.name))
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
        }
      }
    }
  }
  walk(cgroup)
  return found
}

/** One process's ranking data, or null when it is gone, a kernel thread, or unreadable. */
export function readCandidate(pid: number, cgroup: string, procRoot = '/proc'): VictimCandidate | null {
  try {
    const dir = join(procRoot, String(pid))
    const stat = readFileSync(join(dir, 'stat'), 'utf8')
    const close = stat.lastIndexOf(')')
    const fields = stat.slice(close + 2).split(' ') // fields[0] is field 3 (state)
    if (Number(fields[6]) & PF_KTHREAD) return null
    const resident = Number(readFileSync(join(dir, 'statm'), 'utf8').split(' ')[1])
    return {
      pid,
      comm: stat.slice(stat.indexOf('(') + 1, close),
      oomScore: Number(readFileSync(join(dir, 'oom_score'), 'utf8')),
      oomScoreAdj: Number(readFileSync(join(dir, 'oom_score_adj'), 'utf8')),
      rssBytes: resident * native.pageSize,
      cgroup,
      startTime: Number(fields[19]),
    }
  } catch {
    return null // exited meanwhile (ENOENT, ESRCH) or not ours to read
  }
}

/**
 * The processes of `cgroup` (and the groups below it) that may be killed,
 * best victim first: highest oom_score, then largest RSS, then lowest pid.
 * Left out: PID 1, excluded pids (this process by default), kernel threads,
 * oom_score_adj -1000 (the kernel's "never kill"), and processes with
 * nothing resident (killing them frees nothing).
 */
export function listCandidates(cgroup: string, options: VictimOptions = {}): VictimCandidate[] {
  const procRoot = options.procRoot ?? '/proc'
  const exclude = new Set([1, ...(options.exclude ?? [process.pid])])
  const candidates: VictimCandidate[] = []
  for (const { pid, cgroup: group } of cgroupProcesses(cgroup)) {
    if (exclude.has(pid)) continue
    const candidate = readCandidate(pid, group, procRoot)
    if (candidate && candidate.oomScoreAdj > -1000 && candidate.rssBytes > 0) candidates.push(candidate)
  }
  return candidates.sort((a, b) => b.oomScore - a.oomScore || b.rssBytes - a.rssBytes || a.pid - b.pid)
}

/** A victim with a pidfd open on it, checked to be in the cgroup. Close the pidfd. */
export interface PickedVictim {
  victim: VictimCandidate
  pidfd: Pidfd
}

/**
 * The best candidate of `cgroup` with a pidfd open on it, or null when there
 * is none. After opening the pidfd, the pid must still be listed in its
 * group's cgroup.procs and have the same start time: then the pidfd refers
 * to the process that was ranked, in the cgroup. (If it exits afterwards,
 * signals through the pidfd fail with ESRCH: they never reach a process that
 * reuses its pid.)
 */
export function pickVictim(cgroup: string, options: VictimOptions = {}): PickedVictim | null {
  for (const candidate of listCandidates(cgroup, options)) {
    let pidfd: Pidfd
    try {
      pidfd = Pidfd.open(candidate.pid)
    } catch {
      continue // exited meanwhile
    }
    const again = readCandidate(candidate.pid, candidate.cgroup, options.procRoot)
    if (again?.startTime === candidate.startTime && stillListed(candidate)) return { victim: candidate, pidfd }
    pidfd.close()
  }
  return null
}

function stillListed({ pid, cgroup }: VictimCandidate): boolean {
  try {
    return readFileSync(join(cgroup, 'cgroup.procs'), 'utf8').split('\n').includes(String(pid))
  } catch {
    return false
  }
}

/** A field of /proc/meminfo in bytes. */
export function readMeminfo(field: string, procRoot = '/proc'): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(readFileSync(join(procRoot, 'meminfo'), 'utf8'))
  if (!match) throw invalidArgValue('field', field, `is not in ${join(procRoot, 'meminfo')}`)
  return Number(match[1]) * 1024
}

export interface DaemonOptions {
  /** The cgroup directory whose processes (and those of the groups below it) may be killed. */
  cgroup: string
  /** Watch the cgroup's memory.pressure instead of /proc/pressure/memory (default false). */
  cgroupPressure?: boolean
  /** The trigger: 'some' (default) or 'full' stall... */
  kind?: PressureKind
  /** ...of this many microseconds (default 150000)... */
  stallUs?: number
  /** ...within a window of this many (default 1000000; 500000 to 10000000). */
  windowUs?: number
  /** Keep killing while MemAvailable is below this many bytes (default: minAvailablePercent). */
  minAvailableBytes?: number
  /** The same as a percentage of MemTotal (default 10), when minAvailableBytes is not given. */
  minAvailablePercent?: number
  /** At most this many kills for one wakeup (default 3). */
  maxKills?: number
  /** killAndReap's chunkBytes (default 16 MiB). */
  chunkBytes?: number
  /** killAndReap's deadlineMs for each kill (default 1000). */
  deadlineMs?: number
  /** Pick and log, but kill nothing. */
  dryRun?: boolean
  /**
   * Also check MemAvailable on a timer (default true), as earlyoom does. PSI
   * reports stalls, and with no swap and the page cache already gone,
   * anonymous memory can grow to the OOM killer's door before tasks stall
   * for long: the check catches MemAvailable crossing the line between PSI
   * events. It reads /proc/meminfo, between every 100 ms and every second.
   */
  poll?: boolean
  /**
   * The fastest memory is assumed to fill, in bytes per second (default
   * 6000 MiB/s, earlyoom's figure for RAM): the next check comes before
   * memory filling at this rate could cross the line (see nextCheckMs).
   */
  fillRateBytesPerSec?: number
  /**
   * Lock the daemon's code in memory first (lockMemory(); lmkd and earlyoom
   * lock themselves too), so that the pressure it acts on cannot page its
   * code out and stall it (default true). The start line says how it went:
   * memoryLocked and lockedBytes, or lockError; a failure does not stop it.
   */
  lockMemory?: boolean
  /** Stops the daemon: no new kill starts, and a kill in progress stops reaping. */
  signal?: AbortSignal
  /** Gets each decision (default: one JSON line on stdout). */
  log?: (line: DaemonLogLine) => void
}

export type Decision = 'kill-another' | 'wait'

export interface DaemonLogLine {
  /** ISO 8601. */
  time: string
  event: 'start' | 'pressure' | 'kill' | 'kill-failed' | 'stop' | 'error'
  [field: string]: unknown
}

export interface DaemonSummary {
  /** Why it stopped: the abort signal's reason ('SIGTERM', ...), or 'error'. */
  reason: string
  /** The error that stopped it (the watch failed, the cgroup went away). */
  error?: Error
  /** PSI events. */
  events: number
  /** MemAvailable checks that found it below the line and woke the handler. */
  checks: number
  kills: number
}

/** What woke the daemon: a PSI event, or the MemAvailable check finding it below the line. */
interface Wakeup {
  source: 'psi' | 'check'
  /** The pressure file read at the wakeup (null if it could not be read). */
  pressure: PressureReading | null
  /** MemAvailable as the check just read it (a PSI wakeup reads it in the handler). */
  memAvailable?: number
}

/** @internal Test seams: the real ones by default. */
export interface DaemonHooks {
  watch: (options: WatchPressureOptions) => DaemonWatcher
  killAndReap: (target: Pidfd, options: KillAndReapOptions) => Promise<ReapReport>
  procRoot: string
  lockMemory: () => number
}

/** What the daemon needs of a PressureWatcher. */
export type DaemonWatcher = Pick<PressureWatcher, 'path' | 'on' | 'close'>

interface Settings {
  cgroup: string
  trigger: WatchPressureOptions
  minAvailableBytes: number | undefined
  minAvailablePercent: number
  maxKills: number
  chunkBytes: number | undefined
  deadlineMs: number
  dryRun: boolean
  poll: boolean
  fillRateBytesPerSec: number
  lockMemory: boolean
  signal: AbortSignal | undefined
  log: (line: DaemonLogLine) => void
}

const MiB = 2 ** 20
const DEFAULT_FILL_RATE = 6000 * MiB
/** The MemAvailable check's interval, at least and at most (earlyoom's). */
export const CHECK_INTERVAL_MS = { min: 100, max: 1000 } as const

/**
 * When to read MemAvailable next: before memory filling at `fillRate` bytes
 * per second could take it from `available` below `minAvailable`, but not
 * more often than every 100 ms nor less than every second.
 */
export function nextCheckMs(available: number, minAvailable: number, fillRate: number): number {
  const headroomMs = ((available - minAvailable) / fillRate) * 1000
  return Math.min(CHECK_INTERVAL_MS.max, Math.max(CHECK_INTERVAL_MS.min, headroomMs))
}

function parseDaemonOptions(options: unknown): Settings {
  const raw = validateOptions<DaemonOptions>(options)
  if (typeof raw.cgroup !== 'string' || raw.cgroup === '') throw invalidArgType('options.cgroup', 'a non-empty string', raw.cgroup)
  const int = (value: unknown, name: string, min: number, max: number, fallback: number): number => {
    if (value === undefined) return fallback
    if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value)
    if (!Number.isInteger(value) || value < min || value > max) throw outOfRange(name, `an integer >= ${min} && <= ${max}`, value)
    return value
  }
  const percent = raw.minAvailablePercent ?? 10
  if (typeof percent !== 'number') throw invalidArgType('options.minAvailablePercent', 'of type number', percent)
  if (!(percent >= 0 && percent <= 100)) throw outOfRange('options.minAvailablePercent', '>= 0 && <= 100', percent)
  const bool = (value: unknown, name: string): boolean => {
    if (value !== undefined && typeof value !== 'boolean') throw invalidArgType(name, 'of type boolean', value)
    return value === true
  }
  return {
    cgroup: raw.cgroup,
    // watchPressure validates these three.
    trigger: {
      kind: raw.kind ?? 'some',
      stallUs: raw.stallUs ?? 150_000,
      windowUs: raw.windowUs ?? 1_000_000,
      cgroup: bool(raw.cgroupPressure, 'options.cgroupPressure') ? raw.cgroup : undefined,
    },
    minAvailableBytes:
      raw.minAvailableBytes === undefined ? undefined : validateByteAmount(raw.minAvailableBytes, 'options.minAvailableBytes', 0, false),
    minAvailablePercent: percent,
    maxKills: int(raw.maxKills, 'options.maxKills', 1, 1000, 3),
    chunkBytes: raw.chunkBytes === undefined ? undefined : validateByteAmount(raw.chunkBytes, 'options.chunkBytes', 1, false),
    deadlineMs: raw.deadlineMs === undefined ? 1000 : validateMilliseconds(raw.deadlineMs, 'options.deadlineMs'),
    dryRun: bool(raw.dryRun, 'options.dryRun'),
    poll: raw.poll === undefined || bool(raw.poll, 'options.poll'),
    fillRateBytesPerSec:
      raw.fillRateBytesPerSec === undefined
        ? DEFAULT_FILL_RATE
        : validateByteAmount(raw.fillRateBytesPerSec, 'options.fillRateBytesPerSec', 1, false),
    lockMemory: raw.lockMemory === undefined || bool(raw.lockMemory, 'options.lockMemory'),
    signal: raw.signal === undefined ? undefined : validateAbortSignal(raw.signal),
    log:
      raw.log === undefined
        ? (line) => process.stdout.write(`${JSON.stringify(line)}\n`)
        : (validateFunction(raw.log, 'options.log') as (line: DaemonLogLine) => void),
  }
}

function errorFields(error: unknown): { code?: string; message: string } {
  if (!(error instanceof Error)) return { message: String(error) } // an abort reason such as 'SIGTERM'
  const { code } = error as Error & { code?: string }
  return code === undefined ? { message: error.message } : { code, message: error.message }
}

/**
 * Runs the daemon until `options.signal` aborts (it resolves then, after a
 * kill in progress has settled) or the watch fails (it resolves with the
 * error). Throws before logging anything if an argument is bad, the cgroup
 * cannot be read, or the trigger cannot be armed.
 */
export async function runPressureDaemon(options: DaemonOptions): Promise<DaemonSummary>
/** @internal With test seams (stripped from the .d.ts, as DaemonHooks is). */
export async function runPressureDaemon(options: DaemonOptions, hooks: Partial<DaemonHooks>): Promise<DaemonSummary>
export async function runPressureDaemon(options: DaemonOptions, hooks?: Partial<DaemonHooks>): Promise<DaemonSummary> {
  const settings = parseDaemonOptions(options)
  const { cgroup, log, signal } = settings
  const watch = hooks?.watch ?? watchPressure
  const reap = hooks?.killAndReap ?? killAndReap
  const procRoot = hooks?.procRoot ?? '/proc'
  signal?.throwIfAborted()
  const memAvailable = (): number => readMeminfo('MemAvailable', procRoot)
  const memTotal = readMeminfo('MemTotal', procRoot)
  const minAvailable = settings.minAvailableBytes ?? Math.floor((memTotal * settings.minAvailablePercent) / 100)
  cgroupProcesses(cgroup) // the cgroup must be readable now, not at the first event
  let locked: { memoryLocked: boolean; lockedBytes?: number; lockError?: string } = { memoryLocked: false }
  if (settings.lockMemory) {
    try {
      locked = { memoryLocked: true, lockedBytes: (hooks?.lockMemory ?? lockMemory)() }
    } catch (error) {
      locked = { memoryLocked: false, lockError: (error as Error).message }
    }
  }
  const watcher = watch(settings.trigger)
  const now = (): string => new Date().toISOString()
  const { kind, stallUs, windowUs } = settings.trigger
  const availableAtStart = memAvailable()
  log({
    time: now(),
    event: 'start',
    pid: process.pid,
    cgroup,
    path: watcher.path,
    trigger: `${kind} ${stallUs} ${windowUs}`,
    memTotal,
    memAvailable: availableAtStart,
    minAvailable,
    maxKills: settings.maxKills,
    dryRun: settings.dryRun,
    poll: settings.poll,
    fillRateBytesPerSec: settings.fillRateBytesPerSec,
    ...locked,
  })

  const summary: DaemonSummary = { reason: '', events: 0, checks: 0, kills: 0 }
  let latest: Wakeup | undefined // a PSI event that came while another wakeup was handled
  let busy: Promise<void> | undefined
  let checkTimer: NodeJS.Timeout | undefined
  // A check below the line whose outcome changes nothing (no victim in the
  // cgroup, a dry run's pick) says so once, not every 100 ms: again only
  // when the outcome differs or MemAvailable was back above the line.
  let saidBelowLine: string | undefined
  const sayOnce = (source: Wakeup['source'], outcome: string, line: DaemonLogLine): void => {
    if (source === 'psi' || saidBelowLine !== outcome) log(line)
    saidBelowLine = outcome
  }
  let stopped = false
  let finish!: () => void
  const finished = new Promise<void>((resolve) => (finish = resolve))

  const stop = (reason: string, error?: Error): void => {
    if (stopped) return
    stopped = true
    summary.reason = reason
    if (error) summary.error = error
    signal?.removeEventListener('abort', onAbort)
    clearTimeout(checkTimer)
    watcher.close()
    void (busy ?? Promise.resolve()).then(finish)
  }
  function onAbort(): void {
    stop(String(signal!.reason instanceof Error ? signal!.reason.message : signal!.reason))
  }
  // The cgroup or /proc/meminfo can no longer be read, or the watch failed.
  const fail = (error: Error): void => {
    log({ time: now(), event: 'error', error: errorFields(error) })
    stop('error', error)
  }

  // One wakeup: kill until enough memory is back, the cgroup has no victim
  // left, or maxKills is reached.
  const handle = async ({ source, pressure, memAvailable: checked }: Wakeup): Promise<void> => {
    const started = performance.now()
    const base = { source, pressure, minAvailable }
    let available = checked ?? memAvailable()
    if (available >= minAvailable) {
      log({ time: now(), event: 'pressure', ...base, memAvailable: available, decision: 'wait', reason: 'enough memory available' })
      return
    }
    // Each kill ends in a decision; 'kill-another' (never while stopping) goes round again.
    let decision: Decision = 'kill-another'
    for (let kills = 1; decision === 'kill-another'; kills++) {
      const needed = minAvailable - available
      const picked = pickVictim(cgroup, { procRoot })
      if (!picked) {
        const reason = 'no victim in the cgroup'
        sayOnce(source, reason, { time: now(), event: 'pressure', ...base, memAvailable: available, neededBytes: needed, decision: 'wait', reason })
        return
      }
      const { victim, pidfd } = picked
      const about = { ...base, memAvailable: available, neededBytes: needed, victim }
      if (settings.dryRun) {
        pidfd.close()
        sayOnce(source, `dry run: ${victim.pid}`, { time: now(), event: 'kill', ...about, dryRun: true, decision: 'wait', reason: 'dry run: nothing killed' })
        return
      }
      saidBelowLine = undefined
      let report: ReapReport
      try {
        report = await reap(pidfd, { chunkBytes: settings.chunkBytes, deadlineMs: settings.deadlineMs, signal })
      } catch (error) {
        // Stopping before the kill, or the victim exited before it (ESRCH).
        decision = !stopped && kills < settings.maxKills ? 'kill-another' : 'wait'
        log({ time: now(), event: 'kill-failed', ...about, error: errorFields(error), decision })
        continue
      } finally {
        pidfd.close()
      }
      summary.kills++
      const after = memAvailable()
      // Enough when the reaped bytes cover what was needed, or MemAvailable
      // is back above the line (the exit freed the rest, or someone else did).
      const enough = report.bytesReaped >= needed || after >= minAvailable
      decision = !enough && kills < settings.maxKills && !stopped ? 'kill-another' : 'wait'
      const reason = enough ? 'enough memory back' : decision === 'kill-another' ? 'not enough memory back' : stopped ? 'stopping' : 'maxKills reached for this event'
      log({
        time: now(),
        event: 'kill',
        ...about,
        report,
        bytesReaped: report.bytesReaped,
        memAvailableAfter: after,
        sinceEventMs: performance.now() - started,
        decision,
        reason,
      })
      available = after
    }
  }

  // Wakeups are handled one at a time: a PSI event that comes meanwhile is
  // handled next (several coalesce into one); a check that comes meanwhile is
  // dropped, since the handler reads MemAvailable itself.
  const wake = (wakeup: Wakeup): void => {
    if (busy) {
      if (wakeup.source === 'psi') latest = wakeup
      return
    }
    // Set before the handler runs: a stop from inside it waits for it.
    let handled!: () => void
    busy = new Promise<void>((resolve) => (handled = resolve))
    void (async () => {
      try {
        let next: Wakeup | undefined = wakeup
        while (next && !stopped) {
          await handle(next)
          next = latest
          latest = undefined
        }
      } catch (error) {
        fail(error as Error)
      } finally {
        busy = undefined
        handled()
      }
    })()
  }

  // The MemAvailable check: wakes the handler while MemAvailable is below
  // the line, and comes again before memory could fill down to it.
  const check = (): void => {
    let available: number
    try {
      available = memAvailable()
    } catch (error) {
      fail(error as Error)
      return
    }
    if (available < minAvailable) {
      if (!busy) {
        summary.checks++
        wake({ source: 'check', pressure: readPressureQuietly(watcher.path), memAvailable: available })
      }
    } else {
      saidBelowLine = undefined
    }
    if (!stopped) checkTimer = setTimeout(check, nextCheckMs(available, minAvailable, settings.fillRateBytesPerSec))
  }

  watcher.on('pressure', (event) => {
    if (stopped) return
    summary.events++
    wake({ source: 'psi', pressure: event.pressure })
  })
  watcher.on('error', (error) => {
    if (stopped) return // closed: a real watcher reports nothing more
    fail(error)
  })
  signal?.addEventListener('abort', onAbort, { once: true })
  if (settings.poll) checkTimer = setTimeout(check, nextCheckMs(availableAtStart, minAvailable, settings.fillRateBytesPerSec))
  await finished
  log({ time: now(), event: 'stop', reason: summary.reason, events: summary.events, checks: summary.checks, kills: summary.kills })
  return summary
}
