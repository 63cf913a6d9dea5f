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
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { native } from './binding'
import { invalidArgType, invalidArgValue, outOfRange } from './errors'
import { Pidfd } from './pidfd'
import { readPressureQuietly, watchPressure, type PressureReading, type PressureWatcher, type PressureKind, type WatchPressureOptions } from './psi'
import { killAndReap, type KillAndReapOptions, type ReapReport } from './reaper'
import { closeUnit, killUnit, listUnits, pickUnitFrom, type UnitCandidate, type UnitKill, type UnitRanking } from './daemon-unit'
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
  /** /proc/<pid>/cmdline with its NULs as spaces ('' for a zombie). */
  cmdline: string
  /** The owner of /proc/<pid>: the process's effective user ID. */
  uid: number
  /** Whether --prefer or --avoid matched its comm or cmdline: ranked before or after the rest. */
  preference: 'prefer' | 'avoid' | 'none'
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
  /** Ranked before every other candidate when it matches the comm or the cmdline (as earlyoom's --prefer). */
  prefer?: RegExp
  /** Ranked after every other candidate when it matches the comm or the cmdline (as earlyoom's --avoid). */
  avoid?: RegExp
  /** Processes of these users (effective user IDs) are never picked. */
  protectUids?: number[]
  /** Processes in a cgroup of one of these names (a unit: 'sshd.service'), or below it, are never picked. */
  protectUnits?: string[]
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
export function readCandidate(pid: number, cgroup: string, procRoot = '/proc', options: Pick<VictimOptions, 'prefer' | 'avoid'> = {}): VictimCandidate | null {
  try {
    const dir = join(procRoot, String(pid))
    const stat = readFileSync(join(dir, 'stat'), 'utf8')
    const close = stat.lastIndexOf(')')
    const fields = stat.slice(close + 2).split(' ') // fields[0] is field 3 (state)
    if (Number(fields[6]) & PF_KTHREAD) return null
    const resident = Number(readFileSync(join(dir, 'statm'), 'utf8').split(' ')[1])
    const comm = stat.slice(stat.indexOf('(') + 1, close)
    const cmdline = readFileSync(join(dir, 'cmdline'), 'utf8').replace(/\0$/, '').replaceAll('\0', ' ')
    const matches = (pattern: RegExp | undefined): boolean => pattern !== undefined && (pattern.test(comm) || pattern.test(cmdline))
    return {
      pid,
      comm,
      cmdline,
      uid: statSync(dir).uid,
      preference: matches(options.prefer) ? 'prefer' : matches(options.avoid) ? 'avoid' : 'none',
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

const PREFERENCE_ORDER = { prefer: 0, none: 1, avoid: 2 } as const

/** Whether `group` is a protected unit or lies below one (the units are names of path components). */
function inProtectedUnit(group: string, units: readonly string[]): boolean {
  return units.length > 0 && group.split('/').some((name) => units.includes(name))
}

/**
 * The processes of `cgroup` (and the groups below it) that may be killed,
 * best victim first: the preferred ones (options.prefer), then the rest, then
 * the avoided ones (options.avoid); within each, highest oom_score, then
 * largest RSS, then lowest pid. Left out: PID 1, excluded pids (this process
 * by default), kernel threads, oom_score_adj -1000 (the kernel's "never
 * kill"), processes with nothing resident (killing them frees nothing), and
 * those of a protected user or unit.
 */
export function listCandidates(cgroup: string, options: VictimOptions = {}): VictimCandidate[] {
  const procRoot = options.procRoot ?? '/proc'
  const exclude = new Set([1, ...(options.exclude ?? [process.pid])])
  const protectUids = new Set(options.protectUids ?? [])
  const protectUnits = options.protectUnits ?? []
  const candidates: VictimCandidate[] = []
  for (const { pid, cgroup: group } of cgroupProcesses(cgroup)) {
    if (exclude.has(pid) || inProtectedUnit(group, protectUnits)) continue
    const candidate = readCandidate(pid, group, procRoot, options)
    if (candidate && candidate.oomScoreAdj > -1000 && candidate.rssBytes > 0 && !protectUids.has(candidate.uid)) candidates.push(candidate)
  }
  return candidates.sort(
    (a, b) =>
      PREFERENCE_ORDER[a.preference] - PREFERENCE_ORDER[b.preference] || b.oomScore - a.oomScore || b.rssBytes - a.rssBytes || a.pid - b.pid,
  )
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
  return pickFrom(listCandidates(cgroup, options), options.procRoot)
}

/**
 * @internal The first of `candidates` (ranked by listCandidates, maybe a
 * while ago) that is still the process that was ranked and still in its
 * group, with a pidfd open on it; or null.
 */
export function pickFrom(candidates: readonly VictimCandidate[], procRoot?: string): PickedVictim | null {
  for (const candidate of candidates) {
    let pidfd: Pidfd
    try {
      pidfd = Pidfd.open(candidate.pid)
    } catch {
      continue // exited meanwhile
    }
    const again = readCandidate(candidate.pid, candidate.cgroup, procRoot)
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
  return requiredField(readFileSync(join(procRoot, 'meminfo'), 'utf8'), field, procRoot)
}

/**
 * @internal A "Name:   N kB" field (of /proc/meminfo, /proc/<pid>/status) in
 * bytes, or undefined when it is not there (SwapTotal without CONFIG_SWAP).
 */
export function kibibyteField(text: string, field: string): number | undefined {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(text)
  return match ? Number(match[1]) * 1024 : undefined
}

function requiredField(text: string, field: string, procRoot: string): number {
  const value = kibibyteField(text, field)
  if (value === undefined) throw invalidArgValue('field', field, `is not in ${join(procRoot, 'meminfo')}`)
  return value
}

/** A cgroup v2 group's memory against its own limit. */
export interface CgroupMemory {
  /** The lower of memory.max and memory.high. */
  limit: number
  /** memory.current. */
  current: number
  /** What it can give back without killing: its page cache (memory.stat active_file + inactive_file). */
  reclaimable: number
  /** limit - current (at least 0) + reclaimable: what it can still take before it stalls or meets the OOM killer. */
  headroom: number
  /** memory.events (low, high, max, oom, oom_kill, ...), or null where it cannot be read. */
  events: Record<string, number> | null
}

/** "key value" lines (memory.stat, memory.events) as numbers. */
function keyedCounts(text: string): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const line of text.split('\n')) {
    const [key, value] = line.split(' ')
    if (value !== undefined) counts[key] = Number(value)
  }
  return counts
}

function readOptional(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return undefined
  }
}

/**
 * The memory of a cgroup v2 group against its limit (memory.max or
 * memory.high, the lower), or null when it has none: no limit set ("max"),
 * or no such files (a cgroup v1 group, no memory controller).
 */
export function readCgroupMemory(cgroup: string): CgroupMemory | null {
  const limits = ['memory.max', 'memory.high']
    .map((name) => readOptional(join(cgroup, name))?.trim())
    .filter((text): text is string => text !== undefined && /^\d+$/.test(text))
    .map(Number)
  const current = readOptional(join(cgroup, 'memory.current'))
  if (limits.length === 0 || current === undefined) return null
  const limit = Math.min(...limits)
  const stat = keyedCounts(readOptional(join(cgroup, 'memory.stat')) ?? '')
  const reclaimable = (stat.active_file ?? 0) + (stat.inactive_file ?? 0)
  const events = readOptional(join(cgroup, 'memory.events'))
  return {
    limit,
    current: Number(current),
    reclaimable,
    headroom: Math.max(0, limit - Number(current)) + reclaimable,
    events: events === undefined ? null : keyedCounts(events),
  }
}

/** What the daemon decides on, read at one time. */
export interface MemorySnapshot {
  memAvailable: number
  /** SwapFree (0 without swap). */
  swapFree: number
  /** The cgroup's own headroom, when it has a limit. */
  cgroupMemory: CgroupMemory | null
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
  /**
   * ...within a window of this many (default 1000000; 500000 to 10000000).
   * When the kernel refuses a window that is not a multiple of 2 s (EINVAL:
   * no CAP_SYS_RESOURCE), the daemon arms the next multiple of 2 s instead,
   * with the stall scaled alike, and the start line says so (triggerFallback).
   */
  windowUs?: number
  /**
   * Kill while MemAvailable is below this many bytes (default:
   * minAvailablePercent). A cgroup with a limit has its own line: the same
   * percentage of its limit, compared with its headroom (CgroupMemory).
   */
  minAvailableBytes?: number
  /** The same as a percentage of MemTotal (default 10), when minAvailableBytes is not given. */
  minAvailablePercent?: number
  /**
   * Kill only while SwapFree is at most this many bytes too (default:
   * minSwapFreePercent), as earlyoom: while swap can still take pages, the
   * kernel has somewhere to put them.
   */
  minSwapFreeBytes?: number
  /** The same as a percentage of SwapTotal (default 10; without swap, SwapFree 0 is always at the line). */
  minSwapFreePercent?: number
  /** At most this many kills for one wakeup (default 3). */
  maxKills?: number
  /**
   * After a wakeup that killed, wakeups within this many milliseconds kill
   * nobody while memory is no lower than the last kill left it (default
   * 1000): what the kill set going (its exit, reclaim) gets time to show
   * before the check, which comes every 100 ms while below the line, picks
   * the next victim. Memory falling further ends the cool-down: something
   * is taking it now.
   */
  coolDownMs?: number
  /**
   * Stop after this many kills in a row (default 3) after which the memory
   * did not come back (the shortfall did not shrink): the memory is taken
   * outside the cgroup, and killing more of it would not help.
   */
  maxUnhelpfulKills?: number
  /** Ranked first when it matches a candidate's comm or cmdline. */
  prefer?: RegExp
  /** Ranked last when it matches a candidate's comm or cmdline. */
  avoid?: RegExp
  /** Never kill processes of these users (effective user IDs). */
  protectUids?: number[]
  /** Never kill processes in a cgroup of one of these names ('sshd.service'), or below it. */
  protectUnits?: string[]
  /** killAndReap's chunkBytes (default 16 MiB). */
  chunkBytes?: number
  /** killAndReap's deadlineMs for each kill (default 1000). */
  deadlineMs?: number
  /** Pick and log ("would-kill"), but kill nothing. */
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
  /**
   * Lock every page of node's code (mlock), as before 0.2 (default false):
   * by default only the pages resident at the start and those faulted in
   * later are locked (lockMemory({ onFault: true })), and the addon whole.
   */
  lockAllCode?: boolean
  /**
   * Kill a whole unit at each kill instead of one process (default false):
   * the leaf cgroup under `cgroup` that matters most (killCgroupBy), through
   * cgroup.kill, its members reaped in parallel (see listUnits, killUnit).
   */
  killCgroup?: boolean
  /** Which unit matters most: 'memory' (memory.current, the default) or 'pressure' (memory.pressure some avg10, then memory). */
  killCgroupBy?: UnitRanking
  /** Stops the daemon: no new kill starts, and a kill in progress stops reaping. */
  signal?: AbortSignal
  /** Gets each decision (default: one JSON line on stdout). */
  log?: (line: DaemonLogLine) => void
  /** Called at each wakeup, with what woke the daemon (metrics count them). */
  onWakeup?: (source: 'psi' | 'check') => void
}

export type Decision = 'kill-another' | 'wait'

/** Which line memory is below: the machine's MemAvailable, or the cgroup's headroom. */
export type Scope = 'machine' | 'cgroup'

/** An error as the log lines carry it. */
export interface LoggedError {
  code?: string
  message: string
}

interface LineBase {
  /** ISO 8601. */
  time: string
}

export interface DaemonStartLine extends LineBase {
  event: 'start'
  pid: number
  cgroup: string
  /** The pressure file watched. */
  path: string
  /** The trigger armed: "<kind> <stallUs> <windowUs>". */
  trigger: string
  /** Set when the kernel refused the trigger asked for and a 2 s multiple was armed instead. */
  triggerFallback?: { requested: string; reason: string }
  memTotal: number
  memAvailable: number
  minAvailable: number
  swapTotal: number
  swapFree: number
  minSwapFree: number
  /** The cgroup's memory against its limit, or null when it has none. */
  cgroupMemory: CgroupMemory | null
  /** The line for cgroupMemory.headroom (minAvailablePercent of its limit), or null. */
  cgroupMinAvailable: number | null
  maxKills: number
  coolDownMs: number
  dryRun: boolean
  poll: boolean
  fillRateBytesPerSec: number
  memoryLocked: boolean
  /** 'onfault': the pages resident and those faulted in later (the default); 'all': every page of the code (lockAllCode). */
  lockMode?: 'onfault' | 'all'
  /** Bytes of the mappings locked (VmLck counts them). */
  lockedBytes?: number
  /** Of them, what is in RAM and locked now (/proc/self/smaps_rollup's Locked). */
  lockedResidentBytes?: number
  lockError?: string
  /** Where the CLI serves its Prometheus metrics (--metrics), when it does. */
  metrics?: string
  /** With --kill-cgroup: how the unit to kill is picked. */
  killCgroup?: UnitRanking
}

/** What every line about a wakeup says. */
export interface WakeupFields extends MemorySnapshot {
  /** What woke the daemon: a PSI event, or the MemAvailable check. */
  source: 'psi' | 'check'
  /** The pressure file read at the wakeup, or null if it could not be read. */
  pressure: PressureReading | null
  minAvailable: number
}

/** Bytes short of the line, and which line. */
export interface Shortfall {
  neededBytes: number
  scope: Scope
}

export type WaitReason =
  | 'enough memory available'
  | 'swap above its line'
  | 'no victim in the cgroup'
  | 'cooling down after a kill'

export interface DaemonPressureLine extends LineBase, WakeupFields, Partial<Shortfall> {
  event: 'pressure'
  decision: 'wait'
  reason: WaitReason
}

export interface VictimFields extends LineBase, WakeupFields, Shortfall {
  victim: VictimCandidate
}

/** The unit a --kill-cgroup kill picked, as a would-kill line names it. */
export type UnitFields = Pick<UnitCandidate, 'cgroup' | 'memoryBytes' | 'pressure'> & { ranking: UnitRanking; members: number }

export interface DaemonWouldKillLine extends VictimFields {
  event: 'would-kill'
  /** With killCgroup: the unit it would kill (victim is its largest member). */
  unit?: UnitFields
  decision: 'wait'
  reason: 'dry run: nothing killed'
}

interface KillOutcome {
  /**
   * Set when the victim was killed before and picked again: still dying and
   * still holding memory (a starved victim whose reaping hit the deadline),
   * so this kill only reaps more of it. No new process died.
   */
  again?: true
  bytesReaped: number
  memAvailableAfter: number
  /** The shortfall after the kill (0 when back above the lines). */
  neededBytesAfter: number
  /** From the wakeup to the decision. */
  sinceEventMs: number
  decision: Decision
  reason: 'enough memory back' | 'not enough memory back' | 'stopping' | 'maxKills reached for this event' | 'kills are not helping'
}

export interface DaemonKillLine extends VictimFields, KillOutcome {
  event: 'kill'
  report: ReapReport
}

/**
 * A --kill-cgroup kill: the whole unit. `victim` is its largest member;
 * `unit` says how it was killed, what each member gave back and when the
 * unit's memory was back; bytesReaped adds up the members'.
 */
export interface DaemonKillUnitLine extends VictimFields, KillOutcome {
  event: 'kill'
  unit: UnitKill
}

export interface DaemonKillFailedLine extends VictimFields {
  event: 'kill-failed'
  error: LoggedError
  decision: Decision
}

export interface DaemonErrorLine extends LineBase {
  event: 'error'
  error: LoggedError
}

export interface DaemonStopLine extends LineBase {
  event: 'stop'
  reason: string
  events: number
  checks: number
  kills: number
}

/** One line of the daemon's log: `event` tells which. */
export type DaemonLogLine =
  | DaemonStartLine
  | DaemonPressureLine
  | DaemonWouldKillLine
  | DaemonKillLine
  | DaemonKillUnitLine
  | DaemonKillFailedLine
  | DaemonErrorLine
  | DaemonStopLine

export interface DaemonSummary {
  /** Why it stopped: the abort signal's reason ('SIGTERM', ...), or 'error'. */
  reason: string
  /** The error that stopped it (the watch failed, the cgroup went away, kills are not helping). */
  error?: Error
  /** PSI events. */
  events: number
  /** MemAvailable checks that found it below the line and woke the handler. */
  checks: number
  kills: number
}

/** The error code of a daemon that stopped because its kills did not bring memory back. */
export const ERR_PIDFD_REAP_KILLS_NOT_HELPING = 'ERR_PIDFD_REAP_KILLS_NOT_HELPING'

/** What woke the daemon, with the memory as it was read at the wakeup. */
interface Wakeup {
  source: 'psi' | 'check'
  /** The pressure file read at the wakeup (null if it could not be read). */
  pressure: PressureReading | null
  /** The memory as the check just read it (a PSI wakeup reads it in the handler). */
  memory?: MemorySnapshot
}

/** @internal Test seams: the real ones by default. */
export interface DaemonHooks {
  watch: (options: WatchPressureOptions) => DaemonWatcher
  killAndReap: (target: Pidfd, options: KillAndReapOptions) => Promise<ReapReport>
  procRoot: string
  lockMemory: (options: { onFault: boolean }) => number
}

/** What the daemon needs of a PressureWatcher. */
export type DaemonWatcher = Pick<PressureWatcher, 'path' | 'on' | 'close'>

interface Settings {
  cgroup: string
  trigger: WatchPressureOptions & { kind: PressureKind; stallUs: number; windowUs: number }
  minAvailableBytes: number | undefined
  minAvailablePercent: number
  minSwapFreeBytes: number | undefined
  minSwapFreePercent: number
  maxKills: number
  coolDownMs: number
  maxUnhelpfulKills: number
  victims: Pick<VictimOptions, 'prefer' | 'avoid' | 'protectUids' | 'protectUnits'>
  chunkBytes: number | undefined
  deadlineMs: number
  dryRun: boolean
  poll: boolean
  fillRateBytesPerSec: number
  lockMemory: boolean
  lockAllCode: boolean
  killCgroup: UnitRanking | null
  signal: AbortSignal | undefined
  log: (line: DaemonLogLine) => void
  onWakeup: (source: 'psi' | 'check') => void
}

const MiB = 2 ** 20
const DEFAULT_FILL_RATE = 6000 * MiB
/** The MemAvailable check's interval, at least and at most (earlyoom's). */
export const CHECK_INTERVAL_MS = { min: 100, max: 1000 } as const
/**
 * How long the daemon reuses its ranking of the cgroup's processes while
 * memory stays below the line and no kill happens: the check comes every
 * 100 ms then, and a scan reads five /proc files per process on the event
 * loop. The pick re-checks the one it takes (pickFrom); a process that
 * joined meanwhile waits for the next scan.
 */
export const CANDIDATE_CACHE_MS = 1000
/** Without CAP_SYS_RESOURCE the kernel takes only PSI windows that are multiples of this. */
export const UNPRIVILEGED_WINDOW_US = 2_000_000

/**
 * When to read MemAvailable next: before memory filling at `fillRate` bytes
 * per second could take it from `available` below `minAvailable`, but not
 * more often than every 100 ms nor less than every second.
 */
export function nextCheckMs(available: number, minAvailable: number, fillRate: number): number {
  const headroomMs = ((available - minAvailable) / fillRate) * 1000
  return Math.min(CHECK_INTERVAL_MS.max, Math.max(CHECK_INTERVAL_MS.min, headroomMs))
}

/**
 * The trigger the kernel takes without CAP_SYS_RESOURCE: the window rounded
 * up to a multiple of 2 s, the stall scaled alike (the same share of the
 * window), or null when the window already is one.
 */
export function unprivilegedTrigger<T extends { stallUs: number; windowUs: number }>(trigger: T): T | null {
  if (trigger.windowUs % UNPRIVILEGED_WINDOW_US === 0) return null
  const windowUs = Math.ceil(trigger.windowUs / UNPRIVILEGED_WINDOW_US) * UNPRIVILEGED_WINDOW_US
  const stallUs = Math.max(1, Math.round((trigger.stallUs * windowUs) / trigger.windowUs))
  return { ...trigger, stallUs, windowUs }
}

function validateRegExp(value: unknown, name: string): RegExp | undefined {
  if (value !== undefined && !(value instanceof RegExp)) throw invalidArgType(name, 'an instance of RegExp', value)
  return value
}

function validateList<T>(value: unknown, name: string, check: (item: unknown) => item is T, expected: string): T[] {
  if (value === undefined) return []
  if (!Array.isArray(value)) throw invalidArgType(name, 'an array', value)
  value.forEach((item, i) => {
    if (!check(item)) throw invalidArgType(`${name}[${i}]`, expected, item)
  })
  return value
}

const isUid = (item: unknown): item is number => Number.isInteger(item) && (item as number) >= 0 && (item as number) <= 0xffffffff
const isUnitName = (item: unknown): item is string => typeof item === 'string' && item !== '' && !item.includes('/')

function unitRanking(value: unknown): UnitRanking {
  if (value === undefined) return 'memory'
  if (value !== 'memory' && value !== 'pressure') throw invalidArgValue('options.killCgroupBy', value, "must be 'memory' or 'pressure'")
  return value
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
  const percent = (value: unknown, name: string): number => {
    if (value === undefined) return 10
    if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value)
    if (!(value >= 0 && value <= 100)) throw outOfRange(name, '>= 0 && <= 100', value)
    return value
  }
  const bytes = (value: unknown, name: string): number | undefined => (value === undefined ? undefined : validateByteAmount(value, name, 0, false))
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
    minAvailableBytes: bytes(raw.minAvailableBytes, 'options.minAvailableBytes'),
    minAvailablePercent: percent(raw.minAvailablePercent, 'options.minAvailablePercent'),
    minSwapFreeBytes: bytes(raw.minSwapFreeBytes, 'options.minSwapFreeBytes'),
    minSwapFreePercent: percent(raw.minSwapFreePercent, 'options.minSwapFreePercent'),
    maxKills: int(raw.maxKills, 'options.maxKills', 1, 1000, 3),
    coolDownMs: raw.coolDownMs === undefined ? 1000 : validateMilliseconds(raw.coolDownMs, 'options.coolDownMs'),
    maxUnhelpfulKills: int(raw.maxUnhelpfulKills, 'options.maxUnhelpfulKills', 1, 1000, 3),
    victims: {
      prefer: validateRegExp(raw.prefer, 'options.prefer'),
      avoid: validateRegExp(raw.avoid, 'options.avoid'),
      protectUids: validateList(raw.protectUids, 'options.protectUids', isUid, 'a user ID (an integer from 0 to 4294967295)'),
      protectUnits: validateList(raw.protectUnits, 'options.protectUnits', isUnitName, "a cgroup's name (a non-empty string without '/')"),
    },
    chunkBytes: raw.chunkBytes === undefined ? undefined : validateByteAmount(raw.chunkBytes, 'options.chunkBytes', 1, false),
    deadlineMs: raw.deadlineMs === undefined ? 1000 : validateMilliseconds(raw.deadlineMs, 'options.deadlineMs'),
    dryRun: bool(raw.dryRun, 'options.dryRun'),
    poll: raw.poll === undefined || bool(raw.poll, 'options.poll'),
    fillRateBytesPerSec:
      raw.fillRateBytesPerSec === undefined
        ? DEFAULT_FILL_RATE
        : validateByteAmount(raw.fillRateBytesPerSec, 'options.fillRateBytesPerSec', 1, false),
    lockMemory: raw.lockMemory === undefined || bool(raw.lockMemory, 'options.lockMemory'),
    lockAllCode: bool(raw.lockAllCode, 'options.lockAllCode'),
    killCgroup: bool(raw.killCgroup, 'options.killCgroup') ? unitRanking(raw.killCgroupBy) : null,
    signal: raw.signal === undefined ? undefined : validateAbortSignal(raw.signal),
    log:
      raw.log === undefined
        ? (line) => process.stdout.write(`${JSON.stringify(line)}\n`)
        : (validateFunction(raw.log, 'options.log') as (line: DaemonLogLine) => void),
    onWakeup: raw.onWakeup === undefined ? () => {} : (validateFunction(raw.onWakeup, 'options.onWakeup') as Settings['onWakeup']),
  }
}

function errorFields(error: unknown): LoggedError {
  if (!(error instanceof Error)) return { message: String(error) } // an abort reason such as 'SIGTERM'
  const { code } = error as Error & { code?: string }
  return code === undefined ? { message: error.message } : { code, message: error.message }
}

const triggerText = ({ kind, stallUs, windowUs }: Settings['trigger']): string => `${kind} ${stallUs} ${windowUs}`

/**
 * Arms the trigger asked for, or, when the kernel refuses its window
 * (EINVAL on the write: no CAP_SYS_RESOURCE, which a window that is no
 * multiple of 2 s needs), the nearest one it takes. If that is refused too,
 * the first error is thrown: it names the trigger that was asked for.
 */
function armTrigger(watch: DaemonHooks['watch'], trigger: Settings['trigger']) {
  try {
    return { watcher: watch(trigger), trigger }
  } catch (error) {
    const { code, syscall } = error as NodeJS.ErrnoException
    const fallback = unprivilegedTrigger(trigger)
    if (code !== 'EINVAL' || syscall !== 'write' || !fallback) throw error
    let watcher: DaemonWatcher
    try {
      watcher = watch(fallback)
    } catch {
      throw error
    }
    const reason = `the kernel refused a ${trigger.windowUs / 1000} ms window (EINVAL): without CAP_SYS_RESOURCE it takes only multiples of 2 s`
    return { watcher, trigger: fallback, fallback: { requested: triggerText(trigger), reason } }
  }
}

/**
 * Runs the daemon until `options.signal` aborts (it resolves then, after a
 * kill in progress has settled), the watch fails, or kills stop helping (it
 * resolves with the error). Throws before logging anything if an argument
 * is bad, the cgroup cannot be read, or the trigger cannot be armed.
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
  // One read of /proc/meminfo per look at the memory; swap fields are absent without CONFIG_SWAP.
  const readMemory = (): MemorySnapshot => {
    const text = readFileSync(join(procRoot, 'meminfo'), 'utf8')
    return { memAvailable: requiredField(text, 'MemAvailable', procRoot), swapFree: kibibyteField(text, 'SwapFree') ?? 0, cgroupMemory: readCgroupMemory(cgroup) }
  }
  const meminfo = readFileSync(join(procRoot, 'meminfo'), 'utf8')
  const memTotal = requiredField(meminfo, 'MemTotal', procRoot)
  const swapTotal = kibibyteField(meminfo, 'SwapTotal') ?? 0
  const minAvailable = settings.minAvailableBytes ?? Math.floor((memTotal * settings.minAvailablePercent) / 100)
  const minSwapFree = settings.minSwapFreeBytes ?? Math.floor((swapTotal * settings.minSwapFreePercent) / 100)
  const cgroupLine = (memory: CgroupMemory): number => Math.floor((memory.limit * settings.minAvailablePercent) / 100)
  cgroupProcesses(cgroup) // the cgroup must be readable now, not at the first event
  let locked: Pick<DaemonStartLine, 'memoryLocked' | 'lockMode' | 'lockedBytes' | 'lockedResidentBytes' | 'lockError'> = { memoryLocked: false }
  if (settings.lockMemory) {
    const onFault = !settings.lockAllCode
    try {
      const lockedBytes = (hooks?.lockMemory ?? lockMemory)({ onFault })
      // What is locked and in RAM (smaps_rollup's Locked; with onFault less than lockedBytes).
      const resident = kibibyteField(readOptional(join(procRoot, 'self', 'smaps_rollup')) ?? '', 'Locked')
      locked = { memoryLocked: true, lockMode: onFault ? 'onfault' : 'all', lockedBytes, ...(resident !== undefined && { lockedResidentBytes: resident }) }
    } catch (error) {
      locked = { memoryLocked: false, lockError: (error as Error).message }
    }
  }
  const armed = armTrigger(watch, settings.trigger)
  const { watcher } = armed
  const now = (): string => new Date().toISOString()
  const atStart = readMemory()

  /** How far below its lines the memory is (negative: above), and which line is furthest. */
  const shortfall = (memory: MemorySnapshot): Shortfall => {
    const machine = minAvailable - memory.memAvailable
    const group = memory.cgroupMemory ? cgroupLine(memory.cgroupMemory) - memory.cgroupMemory.headroom : -Infinity
    return group > machine ? { neededBytes: group, scope: 'cgroup' } : { neededBytes: machine, scope: 'machine' }
  }
  // Both lines as earlyoom: memory below its line, and swap at or below its own.
  const belowLines = (memory: MemorySnapshot): boolean => shortfall(memory).neededBytes > 0 && memory.swapFree <= minSwapFree
  const nextCheck = (memory: MemorySnapshot): number => nextCheckMs(-shortfall(memory).neededBytes, 0, settings.fillRateBytesPerSec)

  log({
    time: now(),
    event: 'start',
    pid: process.pid,
    cgroup,
    path: watcher.path,
    trigger: triggerText(armed.trigger),
    ...(armed.fallback && { triggerFallback: armed.fallback }),
    memTotal,
    memAvailable: atStart.memAvailable,
    minAvailable,
    swapTotal,
    swapFree: atStart.swapFree,
    minSwapFree,
    cgroupMemory: atStart.cgroupMemory,
    cgroupMinAvailable: atStart.cgroupMemory && cgroupLine(atStart.cgroupMemory),
    maxKills: settings.maxKills,
    coolDownMs: settings.coolDownMs,
    dryRun: settings.dryRun,
    poll: settings.poll,
    fillRateBytesPerSec: settings.fillRateBytesPerSec,
    ...locked,
    ...(settings.killCgroup && { killCgroup: settings.killCgroup }),
  })

  const summary: DaemonSummary = { reason: '', events: 0, checks: 0, kills: 0 }
  let latest: Wakeup | undefined // a PSI event that came while another wakeup was handled
  let busy: Promise<void> | undefined
  let checkTimer: NodeJS.Timeout | undefined
  // A check below the line whose outcome changes nothing (no victim in the
  // cgroup, a dry run's pick, a cool-down) says so once, not every 100 ms:
  // again only when the outcome differs or memory was back above the line.
  let saidBelowLine: string | undefined
  const sayOnce = (source: Wakeup['source'], outcome: string, line: DaemonLogLine): void => {
    if (source === 'psi' || saidBelowLine !== outcome) log(line)
    saidBelowLine = outcome
  }
  // When the last kill settled (performance.now()) and the shortfall it left.
  let lastKill = { at: -Infinity, neededAfter: 0 }
  let ranked: { at: number; candidates: VictimCandidate[] } | undefined
  const rankedCandidates = (): VictimCandidate[] => {
    const at = performance.now()
    if (!ranked || at - ranked.at >= CANDIDATE_CACHE_MS) ranked = { at, candidates: listCandidates(cgroup, { procRoot, ...settings.victims }) }
    return ranked.candidates
  }
  let rankedUnitList: { at: number; units: UnitCandidate[] } | undefined
  const rankedUnits = (ranking: UnitRanking): UnitCandidate[] => {
    const at = performance.now()
    if (!rankedUnitList || at - rankedUnitList.at >= CANDIDATE_CACHE_MS) rankedUnitList = { at, units: listUnits(cgroup, { procRoot, ...settings.victims, ranking }) }
    return rankedUnitList.units
  }
  const coolingDown = (memory: MemorySnapshot): boolean =>
    performance.now() - lastKill.at < settings.coolDownMs && shortfall(memory).neededBytes <= lastKill.neededAfter
  // Kills in a row after which the shortfall did not shrink, and what they reaped.
  const unhelpful = { kills: 0, bytesReaped: 0 }
  // The victims killed so far, by identity (pid and start time).
  const killed = new Set<string>()
  const identity = (victim: VictimCandidate): string => `${victim.pid}:${victim.startTime}`
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
  // The cgroup or /proc/meminfo can no longer be read, the watch failed, or kills stopped helping.
  const fail = (error: Error): void => {
    log({ time: now(), event: 'error', error: errorFields(error) })
    stop('error', error)
  }
  const notHelping = (scope: Scope): Error =>
    Object.assign(
      new Error(
        `kills are not helping: ${unhelpful.kills} kills in a row reaped ${unhelpful.bytesReaped} bytes, but the memory did not come back` +
          (scope === 'machine' ? ' (it is being taken outside the cgroup)' : ''),
      ),
      { code: ERR_PIDFD_REAP_KILLS_NOT_HELPING },
    )

  // One wakeup: kill until enough memory is back, the cgroup has no victim
  // left, or maxKills is reached.
  const handle = async ({ source, pressure, memory: checked }: Wakeup): Promise<void> => {
    const started = performance.now()
    let memory = checked ?? readMemory()
    const wakeupFields = (): WakeupFields => ({ source, pressure, minAvailable, ...memory })
    const wait = (reason: WaitReason, outcome = reason): void => {
      const line: DaemonPressureLine = { time: now(), event: 'pressure', ...wakeupFields(), ...(reason !== 'enough memory available' && shortfall(memory)), decision: 'wait', reason }
      if (reason === 'enough memory available') log(line)
      else sayOnce(source, outcome, line)
    }
    if (shortfall(memory).neededBytes <= 0) return wait('enough memory available')
    if (memory.swapFree > minSwapFree) return wait('swap above its line')
    if (coolingDown(memory)) return wait('cooling down after a kill')
    // Each kill ends in a decision; 'kill-another' (never while stopping) goes round again.
    let decision: Decision = 'kill-another'
    for (let kills = 1; decision === 'kill-another'; kills++) {
      const before = shortfall(memory)
      const reapOptions = { chunkBytes: settings.chunkBytes, deadlineMs: settings.deadlineMs, signal }
      let outcome: { report: ReapReport } | { unit: UnitKill }
      let about: VictimFields
      if (settings.killCgroup) {
        const ranking = settings.killCgroup
        const picked = pickUnitFrom(rankedUnits(ranking), procRoot)
        if (!picked) return wait('no victim in the cgroup')
        const { cgroup: unitGroup, memoryBytes, pressure: unitPressure } = picked.unit
        about = { time: now(), ...wakeupFields(), ...before, victim: picked.members[0].victim }
        if (settings.dryRun) {
          closeUnit(picked)
          const unit = { cgroup: unitGroup, memoryBytes, pressure: unitPressure, ranking, members: picked.members.length }
          sayOnce(source, `dry run: ${unitGroup}`, { ...about, event: 'would-kill', unit, decision: 'wait', reason: 'dry run: nothing killed' })
          return
        }
        saidBelowLine = undefined
        rankedUnitList = undefined // the unit is gone, or going: rank again
        outcome = { unit: await killUnit(picked, ranking, reap, reapOptions) }
      } else {
        const picked = pickFrom(rankedCandidates(), procRoot)
        if (!picked) return wait('no victim in the cgroup')
        const { victim, pidfd } = picked
        about = { time: now(), ...wakeupFields(), ...before, victim }
        if (settings.dryRun) {
          pidfd.close()
          sayOnce(source, `dry run: ${victim.pid}`, { ...about, event: 'would-kill', decision: 'wait', reason: 'dry run: nothing killed' })
          return
        }
        saidBelowLine = undefined
        ranked = undefined // the victim is gone, or going: rank again
        try {
          outcome = { report: await reap(pidfd, reapOptions) }
        } catch (error) {
          // Stopping before the kill, or the victim exited before it (ESRCH).
          decision = !stopped && kills < settings.maxKills ? 'kill-another' : 'wait'
          log({ ...about, event: 'kill-failed', error: errorFields(error), decision })
          continue
        } finally {
          pidfd.close()
        }
      }
      const bytesReaped = 'unit' in outcome ? outcome.unit.bytesReaped : outcome.report.bytesReaped
      const again = killed.has(identity(about.victim))
      killed.add(identity(about.victim))
      summary.kills++
      memory = readMemory()
      const after = shortfall(memory)
      lastKill = { at: performance.now(), neededAfter: after.neededBytes }
      if (after.neededBytes < before.neededBytes) Object.assign(unhelpful, { kills: 0, bytesReaped: 0 })
      else Object.assign(unhelpful, { kills: unhelpful.kills + 1, bytesReaped: unhelpful.bytesReaped + bytesReaped })
      // The bytes came back to nobody: killing more of the cgroup would not help.
      const useless = unhelpful.kills >= settings.maxUnhelpfulKills
      // Enough when the reaped bytes cover what was needed, or memory is back
      // above the lines (the exit freed the rest, or someone else did).
      const enough = bytesReaped >= before.neededBytes || after.neededBytes <= 0
      decision = !enough && !useless && kills < settings.maxKills && !stopped ? 'kill-another' : 'wait'
      log({
        ...about,
        event: 'kill',
        ...outcome,
        ...(again && { again }),
        bytesReaped,
        memAvailableAfter: memory.memAvailable,
        neededBytesAfter: Math.max(0, after.neededBytes),
        sinceEventMs: performance.now() - started,
        decision,
        reason: useless ? 'kills are not helping' : enough ? 'enough memory back' : decision === 'kill-another' ? 'not enough memory back' : stopped ? 'stopping' : 'maxKills reached for this event',
      })
      if (useless) return fail(notHelping(after.scope))
    }
  }

  // Wakeups are handled one at a time: a PSI event that comes meanwhile is
  // handled next (several coalesce into one); a check that comes meanwhile is
  // dropped, since the handler reads the memory itself.
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

  // The memory check: wakes the handler while memory is below the lines,
  // and comes again before memory could fill down to them.
  const check = (): void => {
    let memory: MemorySnapshot
    try {
      memory = readMemory()
    } catch (error) {
      fail(error as Error)
      return
    }
    if (belowLines(memory)) {
      if (!busy) {
        summary.checks++
        settings.onWakeup('check')
        wake({ source: 'check', pressure: readPressureQuietly(watcher.path), memory })
      }
    } else {
      saidBelowLine = undefined
      ranked = undefined
    }
    if (!stopped) checkTimer = setTimeout(check, nextCheck(memory))
  }

  watcher.on('pressure', (event) => {
    if (stopped) return
    summary.events++
    settings.onWakeup('psi')
    wake({ source: 'psi', pressure: event.pressure })
  })
  watcher.on('error', (error) => {
    if (stopped) return // closed: a real watcher reports nothing more
    fail(error)
  })
  signal?.addEventListener('abort', onAbort, { once: true })
  if (settings.poll) checkTimer = setTimeout(check, nextCheck(atStart))
  await finished
  log({ time: now(), event: 'stop', reason: summary.reason, events: summary.events, checks: summary.checks, kills: summary.kills })
  return summary
}
