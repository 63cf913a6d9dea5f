// One memory-back run: kills a victim and frees its memory one way, through
// the C helper bench/reapbench.c (which also samples MemFree, the victim's
// RSS and the kernel's count of reaped pages), or through killAndReap from
// Node with the helper only sampling. Returns the raw run; figures.ts turns
// it into numbers.
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { Pidfd, killAndReap, type ReapReport } from 'pidfd-reap'
import { MiB, compileC, overrideSetting, procView, projectRoot, type Victim } from '../victims'

/** The C helper, compiled once per process. */
export const reapbench = (): string => compileC(join(projectRoot(), 'bench', 'reapbench.c'), ['-pthread'])

export const PCP_HIGH_FRACTION = '/proc/sys/vm/percpu_pagelist_high_fraction'

/**
 * Makes the per-CPU free page lists small (vm.percpu_pagelist_high_fraction
 * = 100000: about 1 MiB per CPU) until the returned function restores the
 * setting. Otherwise Linux >= 6.7 lets a CPU that frees many pages keep
 * them in its own list, which MemFree does not count: an exit's 128 MiB
 * then showed as 30 MiB back, the rest trickling in over seconds as the
 * lists decay. Every method frees through the same lists, so all pay the
 * same (small) cost of the smaller lists.
 */
export function smallFreeLists(): () => void {
  return overrideSetting(PCP_HIGH_FRACTION, '100000')
}

/** One way of getting a killed victim's memory back. */
export type Method =
  | { kind: 'wait' } // SIGKILL, then wait for the exit
  | { kind: 'mrelease' } // SIGKILL + process_mrelease
  | { kind: 'tryreap'; capBytes: number; monitorEventLoop?: boolean } // try_reap_dying_process(pidfd, TRY_REAP_KILL, cap) kills and reaps (killAndReap's first call), then a C loop without the flag (0: uncapped)
  | { kind: 'killAndReap'; chunkBytes: number; monitorEventLoop?: boolean } // the package, from Node

export function methodName(method: Method): string {
  switch (method.kind) {
    case 'wait':
      return 'exit'
    case 'mrelease':
      return 'process_mrelease'
    case 'tryreap':
      return `${method.capBytes ? `C loop ${method.capBytes / MiB} MiB` : 'C loop uncapped'}${method.monitorEventLoop ? ', event loop monitored' : ''}`
    case 'killAndReap':
      return `killAndReap ${method.chunkBytes / MiB} MiB${method.monitorEventLoop ? ', event loop monitored' : ''}`
  }
}

/** Times in milliseconds since the SIGKILL, sizes in bytes. */
export interface Sample {
  t: number
  /** Victim RSS; 0 once it is gone. */
  rss: number
  /** MemFree. */
  free: number
  /** reap_dying_pages in /proc/vmstat (the kernel's own count, all callers). */
  reapedPages: number
}

export interface Call {
  start: number
  end: number
  /** Bytes, or -errno. */
  ret: number
}

/** The victim's CPU time and context switches (victims/reap-sys.h). */
export interface RanState {
  state: string
  utime: number
  stime: number
  nvcsw: number
  nivcsw: number
  sumExecNs: number
}

/** A look at the victim: when (ms since the kill) and what it had run. */
export interface Look {
  t: number
  ran: RanState
}

export interface Run {
  method: string
  pid: number
  heldBytes: number
  rssBefore: number
  pageSize: number
  samples: Sample[]
  calls: Call[]
  /** When the pidfd became readable (ms since the kill), null if not seen. */
  exitMs: number | null
  /** When the busy loop starving the victim was ended, null if not during the run. */
  releasedMs: number | null
  atKill: Look | null
  atRelease: Look | null
  /** Right after the reaping ended (reapers) or the exit was seen (wait). */
  atEnd: Look | null
  sampler: { busyNs: number; spanNs: number; count: number; periodUs: number; realtime: boolean }
  report?: ReapReport
  /** With monitorEventLoop: this process's event loop delay while killAndReap ran, or while the C loop reaped (from the kill to its last call). */
  eventLoop?: EventLoopDelay
  /** The same over 300 ms just before the kill, with nothing to do: the floor the guest and host give. */
  eventLoopIdle?: EventLoopDelay
}

/**
 * perf_hooks.monitorEventLoopDelay({ resolution: 1 }) from just before the
 * killAndReap call until its promise settled: what the histogram records is
 * the time between the ticks of a 1 ms timer (so about 1 ms on an idle
 * loop), in ms.
 */
export interface EventLoopDelay {
  p50: number
  p99: number
  max: number
  count: number
}

interface HelperLook {
  t: number
  ran: RanState
}

interface HelperOutput {
  tKill: number
  tExit: number
  tReleased: number
  rssBefore: number
  pageSize: number
  samplerRealtime: boolean
  samplerBusyNs: number
  samplerSpanNs: number
  sampleUs: number
  atKill: HelperLook | null
  atRelease: HelperLook | null
  atEnd: HelperLook | null
  samples: [number, number, number, number][]
  calls: [number, number, number][]
}

/** Runs the helper and parses its JSON; `send` writes a line to its stdin, `lines` yields its other output lines. */
function runHelper(args: string[], onLine: (line: string) => void) {
  const child = spawn(reapbench(), args, { stdio: ['pipe', 'pipe', 'inherit'] })
  child.stdin!.on('error', () => {}) // EPIPE if it died: reported through `result`
  let json = ''
  createInterface({ input: child.stdout! }).on('line', (line) => {
    if (line.startsWith('{')) json = line
    else onLine(line)
  })
  const result = new Promise<HelperOutput>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code) => {
      if (code !== 0 || !json) reject(new Error(`reapbench ${args.join(' ')} failed (${code})`))
      else resolve(JSON.parse(json) as HelperOutput)
    })
  })
  result.catch(() => {}) // awaited by the caller
  return { result, send: (line: string) => child.stdin!.write(`${line}\n`), endInput: () => child.stdin!.end() }
}

// Nanosecond timestamps fit a double exactly enough (< 2^53 ns is 104 days of uptime).
/** Samples [t, rss, freeKb, reaped] with each unread count (-1) replaced by the last one read. */
function carryCounter(samples: [number, number, number, number][]): [number, number, number, number][] {
  let last = -1
  return samples.map(([t, rss, freeKb, reaped]) => {
    if (reaped >= 0) last = reaped
    return [t, rss, freeKb, last]
  })
}

function toRun(out: HelperOutput, method: string, victim: Victim, tKill: number, rssBefore: number): Run {
  const ms = (ns: number): number => (ns - tKill) / 1e6
  const look = (l: HelperLook | null): Look | null => (l ? { t: ms(l.t), ran: l.ran } : null)
  return {
    method,
    pid: victim.pid,
    heldBytes: victim.heldBytes,
    rssBefore,
    pageSize: out.pageSize,
    // reapbench reads the kernel's count only every 32nd sample (-1 in between): carry the last one forward.
    samples: carryCounter(out.samples).map(([t, rss, freeKb, reaped]) => ({ t: ms(t), rss: rss < 0 ? 0 : rss * out.pageSize, free: freeKb * 1024, reapedPages: reaped })),
    calls: out.calls.map(([start, end, ret]) => ({ start: ms(start), end: ms(end), ret })),
    exitMs: out.tExit ? ms(out.tExit) : null,
    releasedMs: out.tReleased ? ms(out.tReleased) : null,
    atKill: look(out.atKill),
    atRelease: look(out.atRelease),
    atEnd: look(out.atEnd),
    sampler: { busyNs: out.samplerBusyNs, spanNs: out.samplerSpanNs, count: out.samples.length, periodUs: out.sampleUs, realtime: out.samplerRealtime },
  }
}

export interface RunOptions {
  /** The busy loop starving the victim, ended `releaseAfterMs` after the kill (if both are given). */
  starverPid?: number
  releaseAfterMs?: number
  /** CPU of the sampling thread (default 1: the starved CPU, where it preempts the busy loop). */
  sampleCpu?: number
  /** Sampling period in microseconds (default 1000). */
  sampleUs?: number
  /** Keep sampling this long after the method ended (default 30 ms). */
  settleMs?: number
  /** Called right after the SIGKILL (for live displays). */
  onKill?: () => void
  timeoutMs?: number
}

function helperArgs(victim: Victim, options: RunOptions): string[] {
  const args = ['--pid', String(victim.pid), '--sample-cpu', String(options.sampleCpu ?? 1), '--sample-us', String(options.sampleUs ?? 1000)]
  args.push('--settle-ms', String(options.settleMs ?? 30))
  if (options.starverPid !== undefined && options.releaseAfterMs !== undefined) {
    args.push('--release-pid', String(options.starverPid), '--release-after-ms', String(Math.round(options.releaseAfterMs)))
  }
  if (options.timeoutMs) args.push('--timeout-ms', String(options.timeoutMs))
  return args
}

/** A release timer is wanted: the helper must learn the kill's time at once. */
const releasing = (options: RunOptions): boolean => options.starverPid !== undefined && options.releaseAfterMs !== undefined

/** Kills `victim` and frees its memory with `method`; returns the measurements. */
export async function measure(victim: Victim, method: Method, options: RunOptions = {}): Promise<Run> {
  if (method.kind === 'killAndReap') return measureKillAndReap(victim, method.chunkBytes, options, method.monitorEventLoop ?? false)
  const args = ['kill', '--method', method.kind, ...helperArgs(victim, options)]
  if (method.kind === 'tryreap') args.push('--cap', String(method.capBytes))
  // The "killed" and "reaped" lines wake this process: only for live
  // displays, and to measure its event loop while the C loop reaps.
  const delay = method.kind === 'tryreap' && method.monitorEventLoop ? monitorEventLoopDelay({ resolution: 1 }) : undefined
  if (options.onKill || delay) args.push('--notify-kill', '1')
  const out = await runHelper(args, (line) => {
    if (line === 'killed') {
      delay?.enable()
      options.onKill?.()
    }
    if (line === 'reaped') delay?.disable()
  }).result
  const run = toRun(out, methodName(method), victim, out.tKill, out.rssBefore * out.pageSize)
  if (delay) run.eventLoop = delayOf(delay)
  return run
}

const delayOf = (h: IntervalHistogram): EventLoopDelay => ({ p50: h.percentile(50) / 1e6, p99: h.percentile(99) / 1e6, max: h.max / 1e6, count: h.count })

async function measureKillAndReap(victim: Victim, chunkBytes: number, options: RunOptions, monitorEventLoop: boolean): Promise<Run> {
  const waiting = new Map<string, () => void>()
  const answer = (line: string): Promise<void> => new Promise((resolve) => waiting.set(line, resolve))
  const helper = runHelper(['sample', ...helperArgs(victim, options)], (line) => waiting.get(line)?.())
  const failed = helper.result.then(() => Promise.reject(new Error('reapbench sample ended early')))
  const sampling = answer('sampling')
  await Promise.race([sampling, failed])
  using pidfd = Pidfd.open(victim.pid)
  const rssBefore = procView(victim.pid).rssBytes
  let idle: EventLoopDelay | undefined
  if (monitorEventLoop) {
    const control = monitorEventLoopDelay({ resolution: 1 })
    control.enable()
    await sleep(300)
    control.disable()
    idle = delayOf(control)
  }
  await sleep(3) // a few samples before the kill
  const marked = answer('marked')
  helper.send('mark')
  await Promise.race([marked, failed])
  // Its 1 ms timer wakes the event loop, which then competes with the job's
  // thread for CPU 0: runs that monitor it are an arm of their own.
  const delay = monitorEventLoop ? monitorEventLoopDelay({ resolution: 1 }) : undefined
  delay?.enable()
  const tKill = Number(process.hrtime.bigint())
  options.onKill?.()
  const reaping = killAndReap(pidfd, { chunkBytes })
  // Writing to the helper wakes its main thread on this CPU: at the kill only
  // for its release timer (the C loop's helper wakes nobody either).
  if (releasing(options)) helper.send(`killed ${tKill}`)
  const report = await reaping
  delay?.disable()
  if (!releasing(options)) helper.send(`killed ${tKill}`)
  helper.send('end')
  await sleep(options.settleMs ?? 30)
  helper.endInput()
  const out = await helper.result
  const run = toRun(out, methodName({ kind: 'killAndReap', chunkBytes }), victim, tKill, rssBefore)
  run.report = report
  if (delay) run.eventLoop = delayOf(delay)
  run.eventLoopIdle = idle
  run.exitMs = pidfd.hasExited() ? (run.samples.find((s) => s.rss === 0 && s.t >= 0)?.t ?? null) : null
  return run
}
