// The measurement code shared by the benchmark and the demo: runs one way of
// freeing a killed victim's memory (through the C helper reapbench, or
// killAndReap from Node with the helper only sampling) and turns the samples
// into figures. Victims come from test/fixtures/victims.ts.
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { Pidfd, killAndReap, type ReapReport } from 'pidfd-reap'
import { MiB, compileC, procView, projectRoot, type Victim } from '../test/fixtures/victims'

export const ROOT = projectRoot()

/** The C helper, compiled once per process. */
export function reapbench(): string {
  return compileC(join(ROOT, 'bench', 'reapbench.c'), ['-pthread'])
}

/** The raw addon (the same module instance the package uses). */
export function rawBinding(): {
  tryReap(fd: number, maxBytes: bigint, flags: number): number
  processMrelease(fd: number): number
} {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('node-gyp-build')(ROOT)
}

export interface SamplingOptions {
  /** CPU of the sampling thread (default 1: the starved CPU, where it preempts the busy loop). */
  sampleCpu?: number
  /** Sampling period in microseconds (default 1000). */
  sampleUs?: number
  /** Keep sampling this long after the method ended (default 30 ms). */
  settleMs?: number
}

function samplingArgs(options: SamplingOptions): string[] {
  return [
    '--sample-cpu', String(options.sampleCpu ?? 1),
    '--sample-us', String(options.sampleUs ?? 1000),
    '--settle-ms', String(options.settleMs ?? 30),
  ]
}

/** One way of getting a killed victim's memory back. */
export type Method =
  | { kind: 'wait'; releaseAfterMs?: number } // SIGKILL, then wait for the exit
  | { kind: 'mrelease' } // SIGKILL + process_mrelease
  | { kind: 'tryreap'; capBytes: number } // SIGKILL + try_reap_dying_process in a C loop (0: uncapped)
  | { kind: 'killAndReap'; chunkBytes: number } // the package, from Node

export function methodName(method: Method): string {
  switch (method.kind) {
    case 'wait':
      return 'exit'
    case 'mrelease':
      return 'process_mrelease'
    case 'tryreap':
      return method.capBytes ? `try_reap ${method.capBytes / MiB} MiB` : 'try_reap uncapped'
    case 'killAndReap':
      return `killAndReap ${method.chunkBytes / MiB} MiB`
  }
}

/** Times in milliseconds since the SIGKILL, sizes in bytes. */
export interface Sample {
  t: number
  /** Victim RSS; 0 once it is gone. */
  rss: number
  /** System MemAvailable and MemFree. */
  available: number
  free: number
}

export interface Call {
  start: number
  end: number
  /** Bytes, or -errno. */
  ret: number
}

export interface Run {
  method: string
  pid: number
  heldBytes: number
  rssBefore: number
  samples: Sample[]
  calls: Call[]
  /** When the pidfd became readable (ms since the kill), null if not seen. */
  exitMs: number | null
  /** When the busy loop was ended (wait method), null if not. */
  releasedMs: number | null
  busyCalls: number
  samplerRealtime: boolean
  report?: ReapReport
}

interface HelperOutput {
  tKill: number
  tExit: number
  tReleased: number
  rssBefore: number
  pageSize: number
  busyCalls: number
  samplerRealtime: boolean
  samples: [number, number, number, number][]
  calls: [number, number, number][]
}

/** Runs the helper and parses its JSON (stdin stays open until `endInput` is called). */
function runHelper(args: string[], onStdoutLine?: (line: string) => void): {
  result: Promise<HelperOutput>
  endInput: () => void
} {
  const child = spawn(reapbench(), args, { stdio: ['pipe', 'pipe', 'inherit'] })
  let json = ''
  const lines = createInterface({ input: child.stdout! })
  lines.on('line', (line) => {
    if (line.startsWith('{')) json = line
    else onStdoutLine?.(line)
  })
  const result = new Promise<HelperOutput>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code) => {
      if (code !== 0 || !json) reject(new Error(`reapbench ${args.join(' ')} failed (${code})`))
      else resolve(JSON.parse(json, (_key, value) => value) as HelperOutput)
    })
  })
  return { result, endInput: () => child.stdin!.end() }
}

// Nanosecond timestamps fit a double exactly enough (< 2^53 ns is 104 days of uptime).
function toRun(out: HelperOutput, method: string, victim: Victim, tKill: number, rssBefore: number): Run {
  const ms = (ns: number): number => (ns - tKill) / 1e6
  return {
    method,
    pid: victim.pid,
    heldBytes: victim.heldBytes,
    rssBefore,
    samples: out.samples.map(([t, rss, available, free]) => ({
      t: ms(t),
      rss: rss < 0 ? 0 : rss * out.pageSize,
      available: available * 1024,
      free: free * 1024,
    })),
    calls: out.calls.map(([start, end, ret]) => ({ start: ms(start), end: ms(end), ret })),
    exitMs: out.tExit ? ms(out.tExit) : null,
    releasedMs: out.tReleased ? ms(out.tReleased) : null,
    busyCalls: out.busyCalls,
    samplerRealtime: out.samplerRealtime,
  }
}

export interface RunOptions extends SamplingOptions {
  /** The busy loop starving the victim: ended after releaseAfterMs ('wait': its own releaseAfterMs, default 2000). */
  starverPid?: number
  releaseAfterMs?: number
  /** Called right after the SIGKILL (for live displays). */
  onKill?: () => void
  timeoutMs?: number
}

/** Kills `victim` and frees its memory with `method`; returns the measurements. */
export async function measure(victim: Victim, method: Method, options: RunOptions = {}): Promise<Run> {
  if (method.kind === 'killAndReap') return measureKillAndReap(victim, method.chunkBytes, options)
  const args = ['kill', '--pid', String(victim.pid), '--method', method.kind, ...samplingArgs(options)]
  if (method.kind === 'tryreap') args.push('--cap', String(method.capBytes))
  const releaseAfterMs = method.kind === 'wait' ? (method.releaseAfterMs ?? 2000) : options.releaseAfterMs
  if (options.starverPid !== undefined && releaseAfterMs !== undefined) {
    args.push('--release-pid', String(options.starverPid), '--release-after-ms', String(releaseAfterMs))
  }
  if (options.timeoutMs) args.push('--timeout-ms', String(options.timeoutMs))
  const out = await runHelper(args, (line) => {
    if (line === 'killed') options.onKill?.()
  }).result
  return toRun(out, methodName(method), victim, out.tKill, out.rssBefore * out.pageSize)
}

async function measureKillAndReap(victim: Victim, chunkBytes: number, options: RunOptions): Promise<Run> {
  let started!: () => void
  const sampling = new Promise<void>((resolve) => (started = resolve))
  const helper = runHelper(['sample', '--pid', String(victim.pid), ...samplingArgs(options)], (line) => {
    if (line === 'sampling') started()
  })
  await Promise.race([sampling, helper.result])
  using pidfd = Pidfd.open(victim.pid)
  const rssBefore = procView(victim.pid).rssBytes
  await sleep(3)
  const tKill = Number(process.hrtime.bigint())
  options.onKill?.()
  const report = await killAndReap(pidfd, { chunkBytes })
  await sleep(options.settleMs ?? 30)
  helper.endInput()
  const out = await helper.result
  const run = toRun(out, methodName({ kind: 'killAndReap', chunkBytes }), victim, tKill, rssBefore)
  run.report = report
  run.exitMs = pidfd.hasExited() ? run.samples.find((s) => s.rss === 0)?.t ?? null : null
  return run
}

/** Back-to-back capped try_reap calls for durationMs on a victim holding its mmap_lock. */
export async function measureBusy(victim: Victim, capBytes: number, durationMs: number, options: SamplingOptions = {}): Promise<Run> {
  const args = ['busy', '--pid', String(victim.pid), '--cap', String(capBytes), '--duration-ms', String(durationMs)]
  const out = await runHelper([...args, ...samplingArgs(options)]).result
  return toRun(out, `try_reap ${capBytes / MiB} MiB (busy victim)`, victim, out.tKill, out.rssBefore * out.pageSize)
}

export interface CallCost {
  syscall: string
  /** The kernel's answer (-errno) on the first call. */
  result: number
  nsPerCall: number[]
  median: number
}

/** Per-call cost of an error-path syscall on a live process from a C loop. */
export async function cCallCost(pid: number, syscall: 'tryreap0' | 'mrelease', n: number, batches: number): Promise<CallCost> {
  const child = spawn(reapbench(), ['calls', '--pid', String(pid), '--syscall', syscall, '--n', String(n), '--batches', String(batches)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let out = ''
  child.stdout!.on('data', (chunk) => (out += chunk))
  await new Promise((resolve) => child.once('close', resolve))
  return JSON.parse(out) as CallCost
}

/** The same from JavaScript through the raw binding (no validation, no exceptions). */
export function jsCallCost(pid: number, syscall: 'tryreap0' | 'mrelease', n: number, batches: number): CallCost {
  const binding = rawBinding()
  using pidfd = Pidfd.open(pid)
  const fd = pidfd.fd
  const call = syscall === 'tryreap0' ? () => binding.tryReap(fd, 0n, 0) : () => binding.processMrelease(fd)
  const result = call()
  for (let i = 0; i < n; i++) call() // warm-up (JIT)
  const nsPerCall: number[] = []
  for (let b = 0; b < batches; b++) {
    const start = process.hrtime.bigint()
    for (let i = 0; i < n; i++) call()
    nsPerCall.push(Number(process.hrtime.bigint() - start) / n)
  }
  return { syscall, result, nsPerCall, median: [...nsPerCall].sort((a, b) => a - b)[Math.floor(batches / 2)] }
}

// ---------------------------------------------------------------------------
// Figures from a run

export function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank]
}

export interface Spread {
  min: number | null
  median: number | null
  max: number | null
}

export function spread(values: (number | null)[]): Spread {
  const known = values.filter((v): v is number => v !== null && Number.isFinite(v)).sort((a, b) => a - b)
  if (known.length === 0) return { min: null, median: null, max: null }
  const mid = known.length >> 1
  const median = known.length % 2 ? known[mid] : (known[mid - 1] + known[mid]) / 2
  return { min: known[0], median, max: known[known.length - 1] }
}

export interface Figures {
  method: string
  heldBytes: number
  /**
   * "Memory back" is the system's view: the rise of MemFree since just before
   * the kill. (The victim's RSS is not usable for the exit: /proc/<pid>/statm
   * reads 0 as soon as the exiting task detaches its mm, seconds before
   * exit_mmap() has freed the pages.)
   */
  freedBytes: number
  /**
   * ms from SIGKILL until MemFree had risen by 50/90/"100" % of what the
   * victim held; "100 %" is 97 %: a few MiB stay in per-CPU free lists and
   * per-CPU vmstat deltas that MemFree does not show yet.
   */
  t50: number | null
  t90: number | null
  t100: number | null
  /** The victim's RSS view: ms until its RSS dropped by 90 % of what it held. */
  t90Rss: number | null
  /** heldBytes / t100. */
  bytesPerSec: number | null
  /** Bytes the reaping calls returned (try_reap) or the RSS drop across the call (process_mrelease). */
  reapedBytes: number
  /** reapedBytes / time spent inside the reaping calls. */
  syscallBytesPerSec: number | null
  /** First reaping call's start to the last one's end. */
  reapWallMs: number | null
  /** Reaping calls (results > 0 for try_reap) and their latencies in microseconds. */
  reapCalls: number
  latencyUs: { p50: number | null; p99: number | null; max: number | null }
  /** Largest single try_reap result, bytes. */
  maxCallBytes: number | null
  busyCalls: number
  /** Results other than bytes, EBUSY and the final 0 (e.g. -3 ESRCH: the victim exited meanwhile). */
  otherResults: number[]
  exitMs: number | null
  /** MemAvailable rise from before the kill to the end of sampling. */
  availableRise: number
  /** The most memory back (MemFree rise) while the victim had not exited yet. */
  freedBeforeExit: number
  /** The most memory back while the victim was still stuck (before the busy loop was ended, or ever if it never was). */
  freedWhileStuck: number
}

function baseline(run: Run): Sample {
  return [...run.samples].reverse().find((s) => s.t < 0) ?? run.samples[0]
}

/** First sample time at which `freed(sample)` reached `bytes`. */
function timeTo(run: Run, bytes: number, freed: (s: Sample) => number): number | null {
  for (const s of run.samples) if (s.t >= 0 && freed(s) >= bytes) return s.t
  return null
}

export function figures(run: Run): Figures {
  const held = run.heldBytes
  const last = run.samples[run.samples.length - 1]
  const before = baseline(run)
  const sys = (s: Sample): number => s.free - before.free
  const rssDrop = (s: Sample): number => (s.rss > 0 ? run.rssBefore - s.rss : 0)
  const reaping = run.calls.filter((c) => c.ret > 0 || (run.method === 'process_mrelease' && c.ret === 0))
  const latencies = reaping.map((c) => (c.end - c.start) * 1000).sort((a, b) => a - b)
  const callTime = reaping.reduce((sum, c) => sum + (c.end - c.start), 0)
  let reapedBytes: number
  if (run.report) reapedBytes = run.report.bytesReaped
  else if (run.method === 'process_mrelease' && reaping.length > 0) {
    // No byte count: the RSS drop from the kill to the first sample after the call.
    const after = run.samples.find((s) => s.t >= reaping[0].end) ?? last
    reapedBytes = Math.max(0, run.rssBefore - after.rss)
  } else reapedBytes = reaping.reduce((sum, c) => sum + c.ret, 0)
  const t100 = timeTo(run, 0.97 * held, sys)
  return {
    method: run.method,
    heldBytes: held,
    freedBytes: sys(last),
    t50: timeTo(run, 0.5 * held, sys),
    t90: timeTo(run, 0.9 * held, sys),
    t100,
    t90Rss: timeTo(run, 0.9 * held, rssDrop),
    bytesPerSec: t100 ? held / (t100 / 1000) : null,
    reapedBytes,
    syscallBytesPerSec: callTime > 0 ? reapedBytes / (callTime / 1000) : null,
    reapWallMs: reaping.length ? reaping[reaping.length - 1].end - reaping[0].start : null,
    reapCalls: run.report ? run.report.calls : reaping.length,
    latencyUs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: percentile(latencies, 100) },
    maxCallBytes: run.method.startsWith('try_reap') && reaping.length ? Math.max(...reaping.map((c) => c.ret)) : null,
    busyCalls: run.busyCalls,
    otherResults: run.calls.filter((c) => c.ret < 0 && c.ret !== -16).map((c) => c.ret),
    exitMs: run.exitMs,
    availableRise: last.available - before.available,
    freedBeforeExit: Math.max(0, ...run.samples.filter((s) => s.t >= 0 && (run.exitMs === null || s.t < run.exitMs)).map(sys)),
    freedWhileStuck: Math.max(
      0,
      ...run.samples.filter((s) => s.t >= 0 && s.t < (run.releasedMs ?? run.exitMs ?? Infinity)).map(sys),
    ),
  }
}

/** The freed-memory curve, thinned to at most `points` samples (for charts and results.json). */
export function curve(run: Run, points = 300): [number, number][] {
  const before = baseline(run)
  const freed = (s: Sample): number => Math.max(0, (s.free - before.free) / MiB)
  const after = run.samples.filter((s) => s.t >= -2)
  const step = Math.max(1, Math.ceil(after.length / points))
  const out: [number, number][] = []
  for (let i = 0; i < after.length; i += step) {
    out.push([round(after[i].t, 2), round(freed(after[i]), 2)])
  }
  const last = after[after.length - 1]
  if (last && out[out.length - 1]?.[0] !== round(last.t, 2)) out.push([round(last.t, 2), round(freed(last), 2)])
  return out
}

export function round(value: number, digits = 3): number {
  const f = 10 ** digits
  return Math.round(value * f) / f
}
