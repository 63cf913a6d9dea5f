// The benchmark's `bounds` part (issue "Kernel series v2"): is the time of a
// try_reap_dying_process call bounded by its cap whatever the victim's
// layout, what do capped calls cost in total, and how does an uncapped call
// compare with process_mrelease? Each run is one victim, built, frozen,
// killed and reaped by the C helper bench/bounds.c (driven by bounds-run.ts);
// the ratios come from bounds-ratios.ts. This file: the settings, the
// victims, the rounds (repeated when a victim ran) and the section it
// returns for results.json.
import { Freezer } from '../victims'
import type { Clock } from './env'
import { type Arm, type Layout, type Run, KiB, RUN_COLUMNS, anomalies, invalidReason, oddity, runRound, runRow, slowdowns } from './bounds-run'
import { QUIET, armSummary, computeRatios } from './bounds-ratios'
import { median, round, shuffled, type Estimate } from './stats'
import { AnomalyTally, runRounds, type Rounds } from './rounds'
import { envInt } from './env'

export interface BoundsConfig {
  /**
   * icount (one vCPU, instruction-count clock): the comparisons whose sides
   * need one CPU at a time (throughput, totals, adversarial p99s); wall (two
   * vCPUs): one reaper against two, ABBA-interleaved.
   */
  clock: Clock
  rounds: number
  warmup: number
  resamples: number
  /** CPU of the reaper and the (frozen) victim; the Node driver stays on CPU 0. */
  cpu: number
  /** Size of the victims of the total-time and throughput ratios. */
  bigMiB: number
  /** Rounds whose victim ran (or that failed) may be repeated this many times in all. */
  maxInvalid: number
  /** MiB of MemAvailable left free when victims are built ahead of their measuring. */
  reserveMiB: number
  /** The benchmark's tmpfs file that the private-file part maps (its page cache outlives the victims). */
  filePath?: string
}

/** The bounds part's own settings; rounds, warm-up and resamples are the benchmark's (bench/config.ts). */
export function boundsConfig(common: { clock: Clock; rounds: number; warmup: number; resamples: number; filePath?: string }, env = process.env): BoundsConfig {
  return {
    ...common,
    // icount: one vCPU, so reaper, victims and driver share CPU 0 (the victims frozen).
    cpu: envInt(env, 'PIDFD_REAP_BOUNDS_CPU', common.clock === 'icount' ? 0 : 1),
    bigMiB: envInt(env, 'PIDFD_REAP_BOUNDS_BIG_MIB', 256),
    maxInvalid: Math.max(3, common.rounds),
    reserveMiB: 768,
  }
}

export function arms(config: BoundsConfig): Arm[] {
  const big = config.bigMiB
  const mixed: Layout = { anonMiB: big / 2, thpMiB: big / 4, fileMiB: big / 4, filePath: config.filePath }
  // Thousands of VMAs whatever the size: 64 KiB each (4096 of them at 256 MiB).
  const spread: Layout = { vmas: (big * KiB) / 64, vmaKiB: 64 }
  const tryreap = (id: string, what: string, layout: Layout, capBytes: number): Arm => ({ id, what, layout, method: 'tryreap', capBytes })
  if (config.clock === 'wall') {
    return [
      tryreap('mixed-1MiB', `mixed ${big} MiB: 4 KiB anon 1/2, THP 1/4, written private tmpfs file pages 1/4`, mixed, 1024 * KiB),
      { ...tryreap('mixed-1MiB-2reapers', 'the same, 1 MiB calls from two reapers at once (one per CPU)', mixed, 1024 * KiB), reapers: 2 },
    ]
  }
  return [
    tryreap('4KiB-dense', 'dense: 4 MiB of 4 KiB pages', { anonMiB: 4 }, 4 * KiB),
    tryreap('4KiB-reserved', 'the same + an empty 1 TiB PROT_NONE reservation', { reserveGiB: 1024, anonMiB: 4 }, 4 * KiB),
    tryreap('4KiB-vmas', 'many VMAs: 10000 one-page VMAs (alternating protections)', { vmas: 10000, vmaKiB: 4 }, 4 * KiB),
    tryreap('mixed-1MiB', `mixed ${big} MiB: 4 KiB anon 1/2, THP 1/4, written private tmpfs file pages 1/4`, mixed, 1024 * KiB),
    tryreap('mixed-uncapped', 'the same, one uncapped call (SIZE_MAX)', mixed, 0),
    { id: 'mixed-mrelease', what: 'the same, process_mrelease', layout: mixed, method: 'mrelease', capBytes: 0 },
    tryreap('spread-1MiB', `spread ${big} MiB: 4 KiB pages in ${spread.vmas} VMAs of ${spread.vmaKiB} KiB (alternating protections)`, spread, 1024 * KiB),
    tryreap('spread-uncapped', 'the same, one uncapped call (SIZE_MAX)', spread, 0),
  ]
}

function log(text: string): void {
  process.stderr.write(`bench bounds: ${text}\n`)
}

/** How often the vCPU ran slow around a measured run (see slowdowns()). */
function contention(runs: Run[]): Record<string, unknown> {
  const s = slowdowns(runs).sort((a, b) => a - b)
  const share = (limit: number): number => Math.round((1000 * s.filter((v) => v > limit).length) / s.length) / 1000
  return {
    what: 'vCPU slowdown around each measured run: the slower of a fixed loop timed before the kill and after the last call, over the fastest such loop of the run',
    median: Math.round(1000 * median(s)) / 1000,
    max: Math.round(1000 * s[s.length - 1]) / 1000,
    shareAbove1_25: share(QUIET),
    shareAbove1_5: share(1.5),
  }
}

/** Runs the bounds part: its estimates, and its section of results.json. */
export async function runBounds(config: BoundsConfig, rand: () => number): Promise<{ estimates: Record<string, Estimate>; section: Record<string, unknown> }> {
  const started = Date.now()
  const list = arms(config)
  const freezer = Freezer.create(`pidfd-reap-bounds-${process.pid}`)
  const found = new AnomalyTally<string>()
  const oddities: Record<string, unknown>[] = []
  log(`config ${JSON.stringify(config)}`)
  let rounds: Rounds<Run, string[]>
  try {
    rounds = await runRounds(config, log, async (index, warmup) => {
      // wall: ABBA, one reaper and two alternating seconds apart (A B, then B A);
      // icount: a random order (the clock does not drift).
      const order = config.clock === 'wall' ? (((index % 2) + 2) % 2 === 0 ? list : [...list].reverse()) : shuffled(list, rand)
      const runs = await runRound(order, index, freezer, config)
      for (const run of runs) {
        for (const text of anomalies(run, list.find((a) => a.id === run.arm)!)) found.add(run.arm, text)
        const odd = oddity(run)
        if (odd) {
          oddities.push({ ...odd, warmup })
          log(`odd run: ${JSON.stringify(odd)}`)
        }
      }
      return { runs, order: order.map((a) => a.id), reasons: runs.map(invalidReason).filter((r): r is string => r !== null) }
    })
  } finally {
    await freezer.destroy()
  }
  const { measured, orders, invalid } = rounds
  if (measured.length < 2) throw new Error(`bench bounds: only ${measured.length} valid rounds`)

  const { estimates, details } = computeRatios(measured, config.resamples, rand)
  for (const d of Object.values(details)) {
    for (const [k, v] of Object.entries(d)) {
      if (typeof v === 'number') d[k] = round(v)
      else if (Array.isArray(v) && v.every((x) => typeof x === 'number')) d[k] = v.map((x) => round(x))
    }
  }
  const perArm: Record<string, unknown> = {}
  for (const arm of list) perArm[arm.id] = { what: arm.what, method: arm.method, capBytes: arm.capBytes, layout: arm.layout, ...armSummary(measured.map((round) => round.find((r) => r.arm === arm.id)!)) }
  const durationMs = Date.now() - started
  log(`done in ${(durationMs / 60000).toFixed(1)} min`)
  return {
    estimates,
    section: {
      durationMs,
      settings: {
        ...config,
        roundsMeasured: measured.length,
        order: `the ${list.length} runs of a round in a random order, a new order each round`,
        victims:
          'forked by bench/bounds.c, built (two at a time, one per CPU, as many as fit in memory), frozen in a cgroup v1 freezer, then measured one by one while nothing else runs: SIGKILL through a pidfd, reaping, thaw',
        victimCheck:
          'utime, stime, voluntary and involuntary context switches, se.sum_exec_runtime and the freezer state, read before the kill and after the last call, unchanged; else the round is repeated',
        placement: `reaper and victim on CPU ${config.cpu}, nothing else runnable there; the Node driver on CPU 0`,
        calls:
          'try_reap_dying_process called until it returns 0 (EAGAIN and EBUSY: called again at once); one more call checks that 0 stays 0 (not timed); kill-uncapped: no SIGKILL, the first call (TRY_REAP_KILL) kills',
        timing: 'CLOCK_MONOTONIC around each syscall (in-syscall wall time)',
        p99: 'nearest rank (the ceil(0.99 n)-th smallest) over all calls but EBUSY, pooled over the measured rounds per side',
        interval: `percentile bootstrap 95 %, ${config.resamples} resamples of the rounds (paired: a round's runs stay together)`,
      },
      details,
      arms: perArm,
      hostContention: contention(measured.flat()),
      invalidRounds: invalid,
      anomalies: found.list('arm'),
      oddities,
      orders,
      runs: { columns: RUN_COLUMNS, rows: measured.flat().map(runRow) },
    },
  }
}
