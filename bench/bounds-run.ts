// The runs of the bounds part (bench/bounds.ts): one victim per run of the C
// helper bench/bounds.c, built ahead and frozen, then killed and reaped; what
// each run measured; and the checks of its kernel answers against the ABI
// (/work/spec-v2.md, and v3's TRY_REAP_KILL for the kill arm).
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { Freezer, compileC, projectRoot } from '../victims'

/** The C helper, compiled once per process. */
export const boundsHelper = (): string => compileC(join(projectRoot(), 'bench', 'bounds.c'), ['-pthread'])

export const KiB = 1024
export const MiB = 1024 * KiB
const EAGAIN = -11
const EBUSY = -16

/** What a victim maps (bench/bounds.c's layout options). */
export interface Layout {
  reserveGiB?: number
  anonMiB?: number
  thpMiB?: number
  fileMiB?: number
  sparseMiB?: number
  vmas?: number
  vmaKiB?: number
  /** The file that fileMiB maps privately (else a fresh tmpfs file per victim, whose page cache goes with it). */
  filePath?: string
}

export interface Arm {
  id: string
  what: string
  layout: Layout
  /** kill: the first call is try_reap_dying_process(pidfd, TRY_REAP_KILL, cap) on the live (frozen) victim, no SIGKILL before. */
  method: 'tryreap' | 'kill' | 'mrelease'
  /** Bytes per call; 0: no cap (SIZE_MAX). */
  capBytes: number
  /** 2: a second reaper on the other CPU calls at the same time. */
  reapers?: 2
}

/** bench/bounds.c's JSON. */
export interface RunOutput {
  method: string
  cap: number
  setupMs: number
  vmas: number
  thpBytes: number
  pageSize: number
  rssBefore: number
  rssAfter: number
  ended: 'zero' | 'done' | 'error' | 'max-calls' | 'timeout'
  again: number
  calls: number
  eagain: number
  ebusy: number
  otherErrors: number
  firstOther: number
  bytes: number
  maxResult: number
  /** From the kill to the end of the last call. */
  wallNs: number
  /** From the kill to the end of the last call that returned bytes (either reaper); 0 if none did. */
  freedNs: number
  /** The first call killed (TRY_REAP_KILL), and what it returned (bytes or -errno; 0 when it did not kill). */
  killCall: boolean
  killResult: number
  reapers: number
  secondCalls: number
  secondBytes: number
  /** --reapers 2, before the kill: a user-space loop of 2 W on one CPU, and of W on each CPU at once (ns); [0, 0] otherwise. */
  parallelControlNs: [number, number]
  /** From the thaw until the victim was waited for. */
  exitMs: number
  /** The whole run, as the driver saw it (set by bounds.ts). */
  runMs: number
  counters: { calls: number; pagesReaped: number; busy: number }
  /** A fixed user-space loop timed just before the kill and just after the last call (vCPU speed). */
  calibrationNs: [number, number]
  /** The reaper's voluntary and involuntary context switches while it reaped. */
  reaperCsw: [number, number]
  /** /proc/vmstat deltas over the reaping (migration, compaction, reclaim). */
  vmstat: Record<string, number>
  victimRan: boolean
  frozen: [boolean, boolean]
  before: Record<string, number | string>
  after: Record<string, number | string>
  ns: number[]
  /** [result, how many in a row] */
  results: [number, number][]
}

export interface Run {
  round: number
  arm: string
  out: RunOutput
  /** Each call's result (expanded from the run-length encoding). */
  rets: number[]
}

export function layoutArgs(layout: Layout): string[] {
  const args: string[] = []
  const add = (flag: string, value: number | undefined): void => {
    if (value) args.push(flag, String(value))
  }
  add('--reserve-gib', layout.reserveGiB)
  add('--anon', layout.anonMiB)
  add('--thp', layout.thpMiB)
  add('--file', layout.fileMiB)
  add('--sparse-mib', layout.sparseMiB)
  add('--vmas', layout.vmas)
  add('--vma-kib', layout.vmaKiB)
  if (layout.fileMiB && layout.filePath) args.push('--file-path', layout.filePath)
  return args
}

/** What the builders need to know. */
export interface RunSettings {
  /** CPU of the reaper while it measures. */
  cpu: number
  /** MiB of MemAvailable left free when victims are built ahead of their measuring. */
  reserveMiB: number
}

/** One run of bench/bounds.c: `frozen` once its victim is built and frozen; `measure()` then kills and reaps. */
interface Pending {
  arm: Arm
  frozen: Promise<void>
  measure(): Promise<RunOutput>
  /** Ends a run that will not be measured (its victim is killed). */
  cancel(): void
}

function startRun(arm: Arm, freezer: Freezer, buildCpu: number, config: RunSettings): Pending {
  const args = ['run', '--freezer', freezer.group, '--method', arm.method, '--cap', String(arm.capBytes)]
  args.push('--build-cpu', String(buildCpu), '--cpu', String(config.cpu), ...layoutArgs(arm.layout))
  if (arm.reapers) args.push('--reapers', String(arm.reapers))
  const child = spawn(boundsHelper(), args, { stdio: ['pipe', 'pipe', 'inherit'] })
  child.stdin!.on('error', () => {}) // EPIPE if it died: reported through `closed`
  let json = ''
  let frozen!: () => void
  const isFrozen = new Promise<void>((resolve) => (frozen = resolve))
  createInterface({ input: child.stdout! }).on('line', (line) => {
    if (line === 'frozen') frozen()
    else json += line
  })
  const closed = new Promise<RunOutput>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code) => {
      if (code !== 0 || !json) reject(new Error(`bench/bounds.c ${args.join(' ')} failed (${code})`))
      else resolve(JSON.parse(json) as RunOutput)
    })
  })
  closed.catch(() => {}) // awaited through measure() or frozen
  let measureStart = 0
  return {
    arm,
    frozen: Promise.race([isFrozen, closed.then(() => Promise.reject(new Error(`bench/bounds.c ended before freezing its victim`)))]),
    measure: async () => {
      measureStart = Date.now()
      child.stdin!.end('go\n')
      const out = await closed
      out.runMs = Date.now() - measureStart
      return out
    },
    cancel: () => {
      if (!measureStart) child.stdin!.end()
    },
  }
}

/** MiB a victim holds (a private file page of a fresh file also has its tmpfs page), with some room for page tables. */
export function footprintMiB(layout: Layout): number {
  const l = { anonMiB: 0, thpMiB: 0, fileMiB: 0, sparseMiB: 0, vmas: 0, vmaKiB: 4, ...layout }
  return l.anonMiB + l.thpMiB + (l.filePath ? 1 : 2) * l.fileMiB + (l.vmas * l.vmaKiB) / KiB + l.sparseMiB / 256 + 16
}

function availableMiB(): number {
  const match = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'))
  return match ? Number(match[1]) / KiB : 0
}

/**
 * One round: the runs in `order`. Victims are built two at a time, one per
 * CPU (one at a time on one CPU), as many as fit in memory, and wait frozen; then they are measured one
 * by one in `order`, while nothing else runs. Then the next batch.
 */
export async function runRound(order: Arm[], round: number, freezer: Freezer, config: RunSettings): Promise<Run[]> {
  const runs: Run[] = []
  for (let next = 0; next < order.length; ) {
    const budget = availableMiB() - config.reserveMiB
    const batch: Arm[] = [order[next++]]
    let used = footprintMiB(batch[0].layout)
    while (next < order.length && used + footprintMiB(order[next].layout) <= budget) {
      used += footprintMiB(order[next].layout)
      batch.push(order[next++])
    }
    const pending: Pending[] = []
    try {
      let failed = false
      const builders = (availableParallelism() > 1 ? [0, 1] : [0]).map(async (cpu) => {
        while (!failed && pending.length < batch.length) {
          const run = startRun(batch[pending.length], freezer, cpu, config)
          pending.push(run)
          await run.frozen.catch((error) => {
            failed = true
            throw error
          })
        }
      })
      const built = await Promise.allSettled(builders)
      for (const b of built) if (b.status === 'rejected') throw b.reason
      for (const run of pending) {
        const out = await run.measure()
        runs.push({ round, arm: run.arm.id, out, rets: out.results.flatMap(([ret, n]) => Array<number>(n).fill(ret)) })
      }
    } finally {
      for (const run of pending) run.cancel()
    }
  }
  return runs
}

/** Calls that got the lock (all but EBUSY), in ns: the pool of the p99s. */
export function lockedNs(run: Run): number[] {
  return run.out.ns.filter((_, i) => run.rets[i] !== EBUSY)
}

export const sum = (values: number[]): number => values.reduce((a, b) => a + b, 0)

/** Time in all calls up to the 0 (the whole protocol). */
export const totalNs = (run: Run): number => sum(run.out.ns)

/** Time of the first pass: all calls but the closing 0 (process_mrelease: its one call). */
export function firstPassNs(run: Run): number {
  return run.out.method === 'mrelease' ? totalNs(run) : totalNs(run) - run.out.ns[run.out.ns.length - 1]
}

export const rssDropBytes = (run: Run): number => (run.out.rssBefore - run.out.rssAfter) * run.out.pageSize

export function longestEagainStreak(run: Run): number {
  return Math.max(0, ...run.out.results.filter(([ret]) => ret === EAGAIN).map(([, n]) => n))
}

/** Details of a run with an unusually long streak of EAGAIN (the walk made little progress). */
export function oddity(run: Run): Record<string, unknown> | null {
  const streak = longestEagainStreak(run)
  // A 4 KiB cap buys a walk of a few entries per call: long EAGAIN streaks
  // across 10000 VMAs are its normal way through, not an oddity.
  if (streak < 1000 || (run.out.cap > 0 && run.out.cap < 64 * KiB)) return null
  const r = run.out.results
  return {
    round: run.round,
    arm: run.arm,
    calls: run.out.calls,
    eagain: run.out.eagain,
    longestEagainStreak: streak,
    inSyscallMs: Math.round(totalNs(run) / 1e3) / 1e3,
    reaperCsw: run.out.reaperCsw,
    vmstat: run.out.vmstat,
    results: r.length <= 40 ? r : [...r.slice(0, 20), '…', ...r.slice(-20)],
  }
}

/** Why a run cannot be used: the victim ran, or the reaping did not end normally. */
export function invalidReason(run: Run): string | null {
  const o = run.out
  if (o.victimRan) return `${run.arm}: the victim ran (frozen ${o.frozen}, before ${JSON.stringify(o.before)}, after ${JSON.stringify(o.after)})`
  if (o.ended !== 'zero' && o.ended !== 'done') return `${run.arm}: ended with ${o.ended} (${o.firstOther})`
  return null
}

/** Kernel answers outside the v2 ABI (/work/spec-v2.md), one line each. */
export function anomalies(run: Run, arm: Arm): string[] {
  const o = run.out
  const found: string[] = []
  const pageAlign = (n: number): number => Math.ceil(n / o.pageSize) * o.pageSize
  if (arm.method !== 'mrelease') {
    if (arm.capBytes) {
      const over = run.rets.filter((r) => r > pageAlign(arm.capBytes) && r !== 2 * MiB)
      if (over.length) found.push(`result above the cap and not one THP: ${[...new Set(over)].join(', ')} (cap ${arm.capBytes})`)
    }
    if (arm.method === 'kill' && o.killResult <= 0) found.push(`the killing call (TRY_REAP_KILL, cap ${arm.capBytes || 'SIZE_MAX'}) on a live victim returned ${o.killResult}`)
    if (o.again !== 0) found.push(`the call after a 0 returned ${o.again} (spec: 0 again until the mm is released, then ESRCH)`)
    if (o.otherErrors) found.push(`error ${o.firstOther} while reaping`)
    if (o.counters.pagesReaped * o.pageSize !== o.bytes) {
      found.push(`reap_dying_pages (/proc/vmstat) rose by ${o.counters.pagesReaped} pages, the results sum to ${o.bytes / o.pageSize}`)
    }
    if (o.rssAfter > 4) found.push(`${o.rssAfter} pages still resident after the 0`)
    const rssDrop = (o.rssBefore - o.rssAfter) * o.pageSize
    if (o.ended === 'zero' && rssDrop !== o.bytes) found.push(`results sum to ${o.bytes} B, the victim's RSS dropped by ${rssDrop} B`)
  }
  return found
}


/** One line per run in results.json (bounds.runs.rows). */
export const RUN_COLUMNS = [
  'round', 'arm', 'calls', 'eagain', 'ebusy', 'totalUs', 'p99Us', 'maxUs', 'bytes', 'rssDropBytes',
  'thpBytes', 'vmas', 'setupMs', 'exitMs', 'runMs', 'longestEagainStreak', 'reaperCsw', 'calibrationUs',
]

export function runRow(run: Run): unknown[] {
  const o = run.out
  const sorted = Float64Array.from(lockedNs(run)).sort()
  const us = (ns: number): number => Math.round(ns / 1e3)
  const p99 = sorted[Math.min(sorted.length - 1, Math.ceil(0.99 * sorted.length) - 1)]
  return [
    run.round, run.arm, o.calls, o.eagain, o.ebusy, us(totalNs(run)), us(p99), us(sorted[sorted.length - 1]), o.bytes, rssDropBytes(run),
    o.thpBytes, o.vmas, Math.round(o.setupMs), Math.round(o.exitMs), o.runMs, longestEagainStreak(run), o.reaperCsw,
    o.calibrationNs.map((ns) => Math.round(ns / 100) / 10),
  ]
}

/**
 * How much slower than its best the vCPU ran around each run: the slower of
 * the two calibrations over the fastest calibration of all runs. Under TCG
 * on a shared host, 2 means the vCPU thread had half a host core.
 */
export function slowdowns(runs: Run[]): number[] {
  const best = Math.min(...runs.flatMap((r) => r.out.calibrationNs))
  return runs.map((r) => Math.max(...r.out.calibrationNs) / best)
}
