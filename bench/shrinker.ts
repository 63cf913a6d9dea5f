// The benchmark's `shrinker` part (issue 8, `shrinker_stall_ratio`): how
// long an allocation stalls when the memory it needs is held by a killed
// victim that cannot run its exit, with the v3 series' reap_dying shrinker
// on, against the same with it off (then only the OOM path helps: it marks
// the dying victim, thaws it and lets it exit).
//
// A round is two pairs of runs of `bench/bounds.c stall`, the pairs in a
// random order, each pair a baseline right before its measured run:
//   free  the allocation (N MiB of 4 KiB anonymous pages, populated) with
//         memory free: the baseline of the run that follows it;
//   on    a victim of 4 KiB anonymous pages holding most of the guest's
//         memory, frozen (cgroup v1 freezer: a killed task there stays
//         frozen) and killed by try_reap_dying_process(pidfd,
//         TRY_REAP_KILL, 0) (killed, doomed, nothing reaped), then the same
//         allocation, with /sys/kernel/mm/reap_dying/shrinker_enabled = 1;
//   off   the same with shrinker_enabled = 0.
// Only ratios of allocation times: on ÷ its free baseline, off ÷ its
// baseline, on ÷ off. The stall ratio is (on ÷ free − 1) ÷ (off ÷ free − 1);
// a round where on or off is not slower than its baseline (a negative stall)
// is an error: counted and shown, no number. The setting is restored at the end, every
// victim is thawed and waited for by bounds.c (which started it).
import { spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { Freezer, overrideSetting } from '../victims'
import { boundsHelper } from './bounds-run'
import { AnomalyTally, runRounds, type Rounds } from './rounds'
import { median, pairedRatio, round, shuffled, spread, type Estimate } from './stats'
import { ConfigError, envInt } from './env'

export const SHRINKER_ENABLED = '/sys/kernel/mm/reap_dying/shrinker_enabled'
const DROP_CACHES = '/proc/sys/vm/drop_caches'
const MiB = 1024 * 1024

export interface ShrinkerConfig {
  rounds: number
  warmup: number
  resamples: number
  /** CPU of the allocation (the Node driver stays on CPU 0). */
  cpu: number
  /** MiB left free beside the victim: the victim takes MemAvailable (at the part's start) less this. */
  freeMiB: number
  /** MiB the allocation asks for beyond freeMiB: what has to come from the victim. */
  beyondMiB: number
  /** Rounds with a failed run may be repeated this many times in all. */
  maxInvalid: number
  /**
   * How long an `off` allocation may take. One that takes longer (the OOM
   * path can take minutes on a busy host) is stopped and counted as taking
   * exactly this long: its stall is a lower bound, so the round's ratio is
   * an upper bound, never flattering to the shrinker.
   */
  offDeadlineMs: number
}

/**
 * The part's settings. Each round builds two victims of most of the guest's
 * memory, which under TCG takes about half a minute each: the part runs
 * PIDFD_REAP_BENCH_SHRINKER_ROUNDS rounds (default 10, at most the bench's).
 */
export function shrinkerConfig(common: { rounds: number; warmup: number; resamples: number; cpu: number }, env = process.env): ShrinkerConfig {
  const rounds = Math.min(common.rounds, envInt(env, 'PIDFD_REAP_BENCH_SHRINKER_ROUNDS', 10))
  return {
    rounds,
    warmup: Math.min(common.warmup, 1),
    resamples: common.resamples,
    cpu: common.cpu,
    freeMiB: envInt(env, 'PIDFD_REAP_BENCH_SHRINKER_FREE_MIB', 384),
    beyondMiB: envInt(env, 'PIDFD_REAP_BENCH_SHRINKER_BEYOND_MIB', 384),
    maxInvalid: Math.max(2, rounds),
    offDeadlineMs: envInt(env, 'PIDFD_REAP_BENCH_SHRINKER_OFF_DEADLINE_MS', 60000),
  }
}

export type Mode = 'free' | 'on' | 'off'
const MEASURED: ('on' | 'off')[] = ['on', 'off']

/** bench/bounds.c stall's JSON. */
export interface StallOutput {
  mode: 'free' | 'victim'
  victimMiB: number
  allocMiB: number
  pageSize: number
  setupMs: number
  killResult: number
  killNs: number
  rssBefore: number
  rssAfterKill: number
  rssAfterAlloc: number
  memFreeKiB: [number, number]
  memAvailableKiB: number
  allocated: boolean
  allocNs: number
  allocErrno: number
  allocStatus: number
  /** The allocation was not done by --timeout-ms (killed then; not a failure of its own). */
  timedOut: boolean
  timeoutMs: number
  /** The victim's CPU time, context switches or freezer state changed from before the kill to the end of the allocation. */
  victimRan: boolean
  /** The victim had exited (a zombie) when the allocation was done. */
  victimExited: boolean
  frozen: [boolean, boolean]
  vmstat: Record<string, number>
  exitMs: number
  exit: number
}

export interface StallRun {
  round: number
  mode: Mode
  /** free runs: the measured run this one is the baseline of (it runs right before it). */
  baselineOf?: 'on' | 'off'
  /** shrinker_enabled during the run. */
  shrinker: 0 | 1
  out: StallOutput
  runMs: number
}

function log(text: string): void {
  process.stderr.write(`bench shrinker: ${text}\n`)
}

function availableMiB(): number {
  const match = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'))
  if (!match) throw new Error('no MemAvailable in /proc/meminfo')
  return Math.floor(Number(match[1]) / 1024)
}

function stallRun(args: string[]): Promise<StallOutput> {
  const child = spawn(boundsHelper(), ['stall', ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  let json = ''
  child.stdout!.on('data', (chunk: Buffer) => (json += chunk.toString()))
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code) => {
      if (code !== 0 || !json) reject(new Error(`bench/bounds.c stall ${args.join(' ')} failed (${code})`))
      else resolve(JSON.parse(json) as StallOutput)
    })
  })
}

/** An `off` allocation stopped at its deadline: counted as taking the deadline. */
export const censored = (run: StallRun): boolean => run.mode === 'off' && run.out.timedOut

/** Why a run cannot be used, or null. */
export function invalidReason(run: StallRun): string | null {
  const o = run.out
  if (!o.allocated && !censored(run)) return `${run.mode}: the allocation failed (errno ${o.allocErrno}, wait status ${o.allocStatus}, ${o.allocNs ? 'done' : 'no answer'})`
  if (run.mode !== 'free') {
    if (o.killResult !== 0) return `${run.mode}: try_reap_dying_process(pidfd, TRY_REAP_KILL, 0) returned ${o.killResult}, not 0`
    if (!o.frozen[0]) return `${run.mode}: the victim was not frozen at the kill`
  }
  return null
}

/** Things worth a line in the report: the kill reaped something, the shrinker off yet no OOM path, ... */
export function anomalies(run: StallRun): string[] {
  const o = run.out
  const found: string[] = []
  if (run.mode === 'free') return found
  if (o.rssAfterKill < o.rssBefore - 4) found.push(`the kill with cap 0 let the victim's RSS fall by ${o.rssBefore - o.rssAfterKill} pages`)
  if (censored(run)) found.push(`shrinker off: stopped at the deadline (${o.timeoutMs} ms), the victim ${o.victimRan ? 'thawed by the OOM path but not gone in time' : 'still frozen: the OOM path had not come'}`)
  else if (run.mode === 'off' && !o.victimRan) found.push('shrinker off, yet the victim did not run (the allocation did not need its memory?)')
  if (run.mode === 'off' && o.vmstat.reap_dying_shrinker_pages > 0) found.push(`shrinker off, yet reap_dying_shrinker_pages rose by ${o.vmstat.reap_dying_shrinker_pages}`)
  if (run.mode === 'on' && o.vmstat.reap_dying_shrinker_pages <= 0) found.push('shrinker on, yet it reaped nothing')
  return found
}

const shrunkMiB = (o: StallOutput): number => (Math.max(0, o.vmstat.reap_dying_shrinker_pages) * o.pageSize) / MiB
const allocMs = (o: StallOutput): number => (o.timedOut ? o.timeoutMs : o.allocNs / 1e6)

export const RUN_COLUMNS = [
  'round', 'mode', 'shrinkerEnabled', 'allocMs', 'stoppedAtDeadline', 'setupMs', 'memFreeMiBBefore', 'victimRssMiB', 'victimRssMiBAfter', 'shrunkMiB',
  'victimRan', 'victimExited', 'oomKill', 'allocstall', 'pgscanDirect', 'pgscanKswapd', 'refaultFile', 'exitMs', 'runMs',
]

function runRow(run: StallRun): unknown[] {
  const o = run.out
  const v = o.vmstat
  const mib = (pages: number): number => round((pages * o.pageSize) / MiB, 1)
  return [
    run.round, run.mode, run.shrinker, round(allocMs(o), 1), censored(run), Math.round(o.setupMs), round(o.memFreeKiB[0] / 1024, 1),
    run.mode === 'free' ? null : mib(o.rssBefore), run.mode === 'free' ? null : mib(Math.max(0, o.rssAfterAlloc)), round(shrunkMiB(o), 1),
    o.victimRan, o.victimExited, v.oom_kill, v.allocstall_dma32 + v.allocstall_normal + v.allocstall_movable, v.pgscan_direct, v.pgscan_kswapd,
    v.workingset_refault_file, Math.round(o.exitMs), run.runMs,
  ]
}

/** Runs the shrinker part: its estimate, and its section of results.json. */
export async function runShrinker(config: ShrinkerConfig, rand: () => number): Promise<{ estimates: Record<string, Estimate>; section: Record<string, unknown> }> {
  const started = Date.now()
  log(`config ${JSON.stringify(config)}`)
  const restore = overrideSetting(SHRINKER_ENABLED, '0')
  const freezer = Freezer.create(`pidfd-reap-shrinker-${process.pid}`)
  const found = new AnomalyTally<Mode>()
  let rounds: Rounds<StallRun, Mode[]>
  let sizing: { availableMiB: number; victimMiB: number; allocMiB: number }
  try {
    writeFileSync(DROP_CACHES, '3')
    const available = availableMiB()
    sizing = { availableMiB: available, victimMiB: available - config.freeMiB, allocMiB: config.freeMiB + config.beyondMiB }
    log(`MemAvailable ${available} MiB: victims of ${sizing.victimMiB} MiB, allocations of ${sizing.allocMiB} MiB`)
    if (sizing.victimMiB < 2 * sizing.allocMiB) throw new ConfigError(`bench shrinker: ${available} MiB available is too little for this sizing`)
    const { allocMiB, victimMiB } = sizing
    rounds = await runRounds(config, log, async (index) => {
      // Each measured run right after its own baseline; the pairs in a random order.
      const order = shuffled(MEASURED, rand).flatMap((m): Mode[] => ['free', m])
      const runs: StallRun[] = []
      const reasons: string[] = []
      for (const [at, mode] of order.entries()) {
        const shrinker = mode === 'on' ? 1 : 0
        writeFileSync(SHRINKER_ENABLED, String(shrinker))
        // Every run starts from the same page cache: none but what is mapped.
        writeFileSync(DROP_CACHES, '3')
        const timeoutMs = mode === 'off' ? config.offDeadlineMs : 300000
        const args = ['--freezer', freezer.group, '--alloc-mib', String(allocMiB), '--cpu', String(config.cpu), '--build-cpu', String(config.cpu), '--timeout-ms', String(timeoutMs)]
        if (mode !== 'free') args.push('--victim-mib', String(victimMiB))
        const runStart = Date.now()
        try {
          const out = await stallRun(args)
          const run: StallRun = { round: index, mode, shrinker, out, runMs: Date.now() - runStart }
          if (mode === 'free') run.baselineOf = order[at + 1] as 'on' | 'off'
          runs.push(run)
          const reason = invalidReason(run)
          if (reason) reasons.push(reason)
          for (const text of anomalies(run)) found.add(mode, text)
          log(`${mode}: ${out.timedOut ? `stopped at its deadline (${out.timeoutMs / 1000} s)` : `${(out.allocNs / 1e9).toFixed(2)} s`} to allocate${mode === 'free' ? '' : `, shrinker reaped ${shrunkMiB(out).toFixed(0)} MiB, victim ${out.victimExited ? 'exited' : out.victimRan ? 'ran' : 'still frozen'}, built in ${(out.setupMs / 1000).toFixed(1)} s, gone ${(out.exitMs / 1000).toFixed(1)} s after the thaw`} (run ${((Date.now() - runStart) / 1000).toFixed(1)} s)`)
        } catch (error) {
          reasons.push(`${mode}: ${error instanceof Error ? error.message : String(error)}`)
        }
        writeFileSync(SHRINKER_ENABLED, '0')
      }
      return { runs, order, reasons }
    })
  } finally {
    restore()
    await freezer.destroy()
  }
  const { measured, orders, invalid } = rounds
  if (measured.length < 2) throw new Error(`bench shrinker: only ${measured.length} valid rounds`)

  const r3 = (v: number): number => round(v, 3)
  const byMode = (mode: Mode): StallRun[] => measured.map((runs) => runs.find((r) => r.mode === mode)!)
  const baselineOf = (mode: 'on' | 'off'): StallRun[] => measured.map((runs) => runs.find((r) => r.mode === 'free' && r.baselineOf === mode)!)
  const free = measured.flatMap((runs) => runs.filter((r) => r.mode === 'free'))
  const [on, off] = MEASURED.map(byMode)
  // Allocation time ÷ that of its baseline, run right before it.
  const slowdown = (mode: 'on' | 'off'): number[] => byMode(mode).map((r, i) => allocMs(r.out) / allocMs(baselineOf(mode)[i].out))
  const onVsFree = slowdown('on')
  const offVsFree = slowdown('off')
  // A negative stall (not slower than memory free) is an error: the round gives no number.
  const errors: string[] = []
  const perRound = onVsFree.map((a, i) => {
    const b = offVsFree[i]
    if (a <= 1 || b <= 1) {
      errors.push(`round ${i + 1}: negative stall (on ÷ free ${r3(a)}, off ÷ free ${r3(b)})`)
      return NaN
    }
    return (a - 1) / (b - 1)
  })
  const onVsOff = on.map((r, i) => allocMs(r.out) / allocMs(off[i].out))
  const estimates = {
    shrinker_stall_ratio: pairedRatio(perRound, config.resamples, rand),
    shrinker_alloc_on_vs_off: pairedRatio(onVsOff, config.resamples, rand),
    shrinker_alloc_on_vs_free: pairedRatio(onVsFree, config.resamples, rand),
  }
  const stallOn = on.map((_, i) => allocMs(on[i].out) - allocMs(baselineOf('on')[i].out))
  const stallOff = off.map((_, i) => allocMs(off[i].out) - allocMs(baselineOf('off')[i].out))
  const summary = (runs: StallRun[]) => ({
    allocMs: spread(runs.map((r) => r3(allocMs(r.out)))),
    shrunkMiB: spread(runs.map((r) => r3(shrunkMiB(r.out)))),
    victimRan: runs.filter((r) => r.out.victimRan).length,
    victimExited: runs.filter((r) => r.out.victimExited).length,
    stoppedAtDeadline: runs.filter(censored).length,
    stillFrozen: runs.filter((r) => r.mode !== 'free' && !r.out.victimRan && !r.out.victimExited).length,
    oomKill: runs.reduce((n, r) => n + Math.max(0, r.out.vmstat.oom_kill), 0),
    directReclaimStalls: spread(runs.map((r) => r.out.vmstat.allocstall_dma32 + r.out.vmstat.allocstall_normal + r.out.vmstat.allocstall_movable)),
    setupMs: spread(runs.map((r) => Math.round(r.out.setupMs))),
  })
  const durationMs = Date.now() - started
  log(`done in ${(durationMs / 60000).toFixed(1)} min`)
  return {
    estimates,
    section: {
      durationMs,
      settings: {
        ...config,
        ...sizing,
        roundsMeasured: measured.length,
        order: 'two pairs per round, (free, on) and (free, off), the pairs in a random order: each measured run right after its own baseline',
        victim: `${sizing.victimMiB} MiB of 4 KiB anonymous pages (MemAvailable at the part's start less ${config.freeMiB} MiB), forked by bench/bounds.c, frozen in a cgroup v1 freezer, killed by try_reap_dying_process(pidfd, TRY_REAP_KILL, 0): killed, doomed, nothing reaped`,
        allocation: `${sizing.allocMiB} MiB of 4 KiB anonymous pages (MADV_NOHUGEPAGE) mapped and populated (MADV_POPULATE_WRITE) by a child on CPU ${config.cpu}; timed from before the mmap to the end of the populate`,
        eachRun: 'starts with drop_caches = 3 (the same page cache for every run); shrinker_enabled 1 for on, 0 otherwise; restored at the end',
        stall: "only ratios of allocation times: on ÷ the free run just before it, off ÷ its own; stall ratio = (on ÷ free − 1) ÷ (off ÷ free − 1); a round where either is not above 1 (a negative stall) is an error, counted, without a number",
        offDeadline: `an off allocation not done after ${config.offDeadlineMs / 1000} s is stopped and counted as taking ${config.offDeadlineMs / 1000} s (a lower bound of its stall, so an upper bound of the round's ratio)`,
        interval: estimates.shrinker_stall_ratio.method,
      },
      errors,
      details: {
        shrinker_stall_ratio: {
          estimator: estimates.shrinker_stall_ratio.method,
          numerator: 'on: allocation time with the killed frozen victim, shrinker_enabled = 1, ÷ the free allocation run right before it, less 1',
          denominator: 'off: the same with shrinker_enabled = 0 (the OOM path thaws the victim and lets it exit)',
          perRound: perRound.map((v) => (Number.isFinite(v) ? r3(v) : null)),
          onVsFree: onVsFree.map(r3),
          offVsFree: offVsFree.map(r3),
          onVsOff: onVsOff.map(r3),
          stallMsMedian: [r3(median(stallOn)), r3(median(stallOff))],
          stallMs: { on: stallOn.map(r3), off: stallOff.map(r3) },
        },
      },
      modes: { free: summary(free), on: summary(on), off: summary(off) },
      invalidRounds: invalid,
      anomalies: found.list('mode'),
      orders,
      runs: { columns: RUN_COLUMNS, rows: measured.flat().map(runRow) },
    },
  }
}

/* eslint-disable @typescript-eslint/no-explicit-any */
/** The part's section of results.md (called by report.ts). */
export function shrinkerMarkdown(r: any): string[] {
  const s = r.shrinker
  if (!s) return []
  const st = s.settings
  const d = s.details.shrinker_stall_ratio
  const ms = (v: number | null): string => (v === null ? '–' : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(0)} ms`)
  const sp = (x: any, fmt: (v: number) => string): string => (!x || x.median === null ? '–' : x.min === x.max ? fmt(x.median) : `${fmt(x.median)} (${fmt(x.min)}–${fmt(x.max)})`)
  const lines = [
    '### An allocation against a killed, frozen victim: the shrinker on and off',
    '',
    `${st.roundsMeasured} measured rounds after ${st.warmup} warm-up; ${s.invalidRounds.length} round(s) repeated because a run failed. Runs: ${st.order}. Victim: ${st.victim}. ` +
      `Allocation: ${st.allocation}. Each run ${st.eachRun}. Stall: ${st.stall}. MemAvailable at the start: ${st.availableMiB} MiB.`,
    '',
    '| run | shrinker_enabled | allocation | stall (median) | shrinker reaped | victim ran (OOM path) | exited by the end | still frozen | direct reclaim stalls | victim built in |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  const stall = { free: '–', on: ms(d.stallMsMedian[0]), off: ms(d.stallMsMedian[1]) }
  for (const mode of ['free', 'on', 'off'] as const) {
    const m = s.modes[mode]
    const victim = mode === 'free'
    lines.push(
      `| ${mode} | ${mode === 'on' ? 1 : 0} | ${sp(m.allocMs, ms)} | ${stall[mode]} | ${victim ? '–' : sp(m.shrunkMiB, (v) => `${v.toFixed(0)} MiB`)} | ` +
        `${victim ? '–' : `${m.victimRan}/${st.roundsMeasured}`} | ${victim ? '–' : `${m.victimExited}/${st.roundsMeasured}`} | ${victim ? '–' : `${m.stillFrozen}/${st.roundsMeasured}`} | ` +
        `${sp(m.directReclaimStalls, (v) => v.toFixed(0))} | ${victim ? '–' : sp(m.setupMs, ms)} |`,
    )
  }
  if (s.errors?.length) lines.push('', `Rounds without a number (errors): ${s.errors.join('; ')}.`)
  lines.push('', 'Median (min–max) over the measured rounds. "victim ran": its CPU time, context switches or freezer state changed between the kill and the end of the allocation (the OOM path thawed it); "still frozen": it did not.')
  if (st.offDeadline) lines.push('', `Off runs stopped at their deadline: ${s.modes.off.stoppedAtDeadline ?? 0}/${st.roundsMeasured}; ${st.offDeadline}.`)
  if (s.anomalies.length) {
    lines.push('', 'Worth a note (all runs, warm-up and repeated rounds included):', '')
    for (const a of s.anomalies) lines.push(`- ${a.mode} (${a.runs} runs): ${a.what}`)
  }
  return lines
}
