// The memory-back part: victims of a few hundred MiB, killed and freed one
// way per run (bench/measure.ts), every method once per round in a random
// order, rounds after a warm-up. "Starved" victims (victims/: SCHED_FIFO 1
// next to a SCHED_FIFO 50 busy loop on CPU 1) cannot run their exit; a run
// whose starved victim ran anyway before its memory was back is invalid and
// repeated. Also the starvation sweep: waiting for the exit against
// killAndReap as the starvation lasts longer.
import { mixOf, startScenario, type MixShares, type ScenarioKind } from '../victims'
import { curve, figures, type Figures } from './figures'
import { measure, type Method } from './measure'
import { sweepKey } from './ratios'
import { median, pairedRatio, round, shuffled, spread, type Estimate } from './stats'

const MiB = 1024 * 1024

export interface MemoryConfig {
  sizesMiB: number[]
  rounds: number
  warmup: number
  shares: MixShares
  chunkMiB: number
  /** Starvation lengths of the sweep, ms. */
  sweepMs: number[]
  /**
   * Sweep points from this length on reuse the round's unreleased killAndReap
   * run (valid only if its memory was 90 % back before the release would
   * have come: checked per round); shorter ones get their own run.
   */
  sweepOwnRunBelowMs: number
  sampleUs: number
  /** Run only the arms with these ids (PIDFD_REAP_BENCH_ARMS, separated by ';'; default: all of them). */
  arms?: string[]
  /** Attempts of a run whose starved victim ran, before the round goes on without it. */
  maxAttempts: number
  resamples: number
  filePath?: string
}

interface Arm {
  id: string
  scenario: ScenarioKind
  method: Method
  releaseAfterMs?: number
}

export const PLAIN = 'exit (plain)'
export const MRELEASE = 'process_mrelease'
export const KILL_AND_REAP = 'killAndReap'
export const C_LOOP = 'C loop'
export const KILL_AND_REAP_MONITORED = 'killAndReap, event loop monitored'
export const C_LOOP_MONITORED = 'C loop, event loop monitored'
export const sweepExit = (ms: number): string => `exit, starved ${ms / 1000} s`
export const sweepReap = (ms: number): string => `killAndReap, starved ${ms / 1000} s`

export function memoryArms(config: MemoryConfig): Arm[] {
  const chunkBytes = config.chunkMiB * MiB
  const arms: Arm[] = [
    { id: PLAIN, scenario: 'plain', method: { kind: 'wait' } },
    { id: MRELEASE, scenario: 'starved', method: { kind: 'mrelease' } },
    { id: C_LOOP, scenario: 'starved', method: { kind: 'tryreap', capBytes: chunkBytes } },
    { id: KILL_AND_REAP, scenario: 'starved', method: { kind: 'killAndReap', chunkBytes } },
    // The same with monitorEventLoopDelay on, whose 1 ms timer keeps waking
    // the event loop: its own arm, so that the ratios above stay unperturbed.
    { id: KILL_AND_REAP_MONITORED, scenario: 'starved', method: { kind: 'killAndReap', chunkBytes, monitorEventLoop: true } },
    // Its control: this process's event loop while the C loop reaps the same
    // way in another process on the same CPU.
    { id: C_LOOP_MONITORED, scenario: 'starved', method: { kind: 'tryreap', capBytes: chunkBytes, monitorEventLoop: true } },
  ]
  for (const ms of config.sweepMs) {
    arms.push({ id: sweepExit(ms), scenario: 'starved', method: { kind: 'wait' }, releaseAfterMs: ms })
    if (ms < config.sweepOwnRunBelowMs) arms.push({ id: sweepReap(ms), scenario: 'starved', method: { kind: 'killAndReap', chunkBytes }, releaseAfterMs: ms })
  }
  if (!config.arms) return arms
  const unknown = config.arms.filter((id) => !arms.some((arm) => arm.id === id))
  if (unknown.length) throw new Error(`PIDFD_REAP_BENCH_ARMS: no arm ${unknown.map((id) => `'${id}'`).join(', ')} (arms: ${arms.map((arm) => arm.id).join(', ')})`)
  return arms.filter((arm) => config.arms!.includes(arm.id))
}

export interface RunRecord {
  sizeMiB: number
  round: number
  warmup: boolean
  arm: string
  attempt: number
  valid: boolean
  setupMs: number
  figures: Figures
  /** [ms since SIGKILL, MiB back (MemFree), MiB reaped (kernel count)] */
  curve: [number, number, number][]
}

function log(text: string): void {
  process.stderr.write(`bench memory: ${text}\n`)
}

async function oneRun(config: MemoryConfig, sizeMiB: number, arm: Arm): Promise<Omit<RunRecord, 'round' | 'warmup' | 'attempt'>> {
  const started = Date.now()
  const s = await startScenario(arm.scenario, { memory: mixOf(sizeMiB, config.shares), filePath: config.filePath, victimCpu: 1, maxStarveSeconds: 120 })
  const setupMs = Date.now() - started
  try {
    const run = await measure(s.victim, arm.method, {
      starverPid: s.starver?.pid,
      releaseAfterMs: arm.releaseAfterMs,
      sampleUs: config.sampleUs,
      timeoutMs: 120_000,
    })
    const f = figures(run, arm.scenario === 'starved')
    return { sizeMiB, arm: arm.id, valid: f.victimRan !== true, setupMs, figures: f, curve: curve(run) }
  } finally {
    await s.cleanup()
  }
}

const ms = (v: number | null): string => (v === null ? '-' : `${v.toFixed(0)} ms`)

export async function runMemory(config: MemoryConfig, rand: () => number): Promise<RunRecord[]> {
  const records: RunRecord[] = []
  const arms = memoryArms(config)
  for (const sizeMiB of config.sizesMiB) {
    for (let r = 0; r < config.warmup + config.rounds; r++) {
      const warmup = r < config.warmup
      const started = Date.now()
      for (const arm of shuffled(arms, rand)) {
        for (let attempt = 0; attempt < config.maxAttempts; attempt++) {
          const record = { ...(await oneRun(config, sizeMiB, arm)), round: r - config.warmup, warmup, attempt }
          records.push(record)
          const f = record.figures
          log(`${sizeMiB} MiB ${warmup ? 'warm-up' : `r${r - config.warmup}`} ${arm.id}: 90 % back ${ms(f.t90)}, exit ${ms(f.exitMs)}, setup ${record.setupMs} ms`)
          if (!record.valid) log(`${sizeMiB} MiB ${arm.id}: the starved victim ran before ${ms(f.stuckUntilMs)}: invalid, repeated`)
          if (record.valid) break
        }
      }
      const label = warmup ? 'warm-up' : `round ${r - config.warmup + 1}/${config.rounds}`
      log(`${sizeMiB} MiB ${label} in ${((Date.now() - started) / 1000).toFixed(0)} s`)
    }
  }
  return records
}

/** The valid measured run of `arm` in each round (undefined where there is none). */
function byRound(records: RunRecord[], sizeMiB: number, arm: string, rounds: number): (Figures | undefined)[] {
  const out: (Figures | undefined)[] = Array.from({ length: rounds }, () => undefined)
  for (const r of records) if (!r.warmup && r.valid && r.sizeMiB === sizeMiB && r.arm === arm) out[r.round] = r.figures
  return out
}

export function memoryEstimates(config: MemoryConfig, records: RunRecord[], sizeMiB: number, rand: () => number) {
  const n = config.rounds
  const t90 = (arm: string): (number | null)[] => byRound(records, sizeMiB, arm, n).map((f) => f?.t90 ?? null)
  const ratio = (a: (number | null)[], b: (number | null)[]): number[] => a.map((x, i) => (x !== null && b[i] ? x / b[i]! : NaN))
  const boot = (values: number[]): Estimate => pairedRatio(values, config.resamples, rand)
  const kar = t90(KILL_AND_REAP)
  const perRound: Record<string, number[]> = {
    starved_reap_vs_plain_exit_90pct: ratio(kar, t90(PLAIN)),
    killAndReap_vs_c_loop_90pct: ratio(kar, t90(C_LOOP)),
    killAndReap_vs_mrelease_90pct: ratio(kar, t90(MRELEASE)),
    freed_while_stuck_fraction: byRound(records, sizeMiB, KILL_AND_REAP, n).map((f) => f?.freedWhileStuckFraction ?? NaN),
    killAndReap_event_loop_p99_ms: byRound(records, sizeMiB, KILL_AND_REAP_MONITORED, n).map((f) => f?.eventLoopP99Ms ?? NaN),
    idle_event_loop_p99_ms: byRound(records, sizeMiB, KILL_AND_REAP_MONITORED, n).map((f) => f?.eventLoopIdleP99Ms ?? NaN),
    c_loop_event_loop_p99_ms: byRound(records, sizeMiB, C_LOOP_MONITORED, n).map((f) => f?.eventLoopP99Ms ?? NaN),
  }
  // The sweep: each starvation length against killAndReap at the same length.
  const sweep: Record<string, unknown>[] = []
  const karAt = (lengthMs: number): (number | null)[] =>
    lengthMs < config.sweepOwnRunBelowMs ? t90(sweepReap(lengthMs)) : kar.map((t) => (t !== null && t < lengthMs ? t : null))
  for (const lengthMs of config.sweepMs) {
    const exit = t90(sweepExit(lengthMs))
    const reap = karAt(lengthMs)
    // From sweepOwnRunBelowMs on, killAndReap's point reuses its unreleased
    // run, kept only where it beat the release: exit ÷ it then exceeds 1 by
    // construction, so no ratio is reported there (the chart keeps the point).
    if (lengthMs < config.sweepOwnRunBelowMs) perRound[sweepKey(lengthMs)] = ratio(exit, reap)
    sweep.push({ starvedMs: lengthMs, exitT90: spread(exit), killAndReapT90: spread(reap), killAndReapRun: lengthMs < config.sweepOwnRunBelowMs ? sweepReap(lengthMs) : KILL_AND_REAP })
  }
  const estimates: Record<string, Estimate> = {}
  for (const [key, values] of Object.entries(perRound)) if (values.some(Number.isFinite)) estimates[key] = boot(values)
  return { estimates, perRound: Object.fromEntries(Object.entries(perRound).map(([k, v]) => [k, v.map((x) => (Number.isFinite(x) ? round(x, 4) : null))])), sweep: { points: sweep, breakEven: breakEven(config, t90(PLAIN), sweep) } }
}

/**
 * The starvation length from which waiting for the exit takes longer than
 * killAndReap to have 90 % back, on the median curves (linear between the
 * measured lengths; 0 s starved is the unstarved exit).
 */
function breakEven(config: MemoryConfig, plain: (number | null)[], sweep: Record<string, unknown>[]): Record<string, unknown> {
  const med = (values: (number | null)[]): number => median(values.filter((v): v is number => v !== null))
  const points: [number, number, number][] = [[0, med(plain), (sweep[0]?.killAndReapT90 as { median: number | null })?.median ?? NaN]]
  for (const p of sweep) points.push([p.starvedMs as number, (p.exitT90 as { median: number }).median, (p.killAndReapT90 as { median: number }).median])
  if (points[0][1] >= points[0][2]) return { ms: 0, text: 'killAndReap had 90 % back sooner than even an unstarved victim exits: it wins at any starvation length' }
  for (let i = 1; i < points.length; i++) {
    const [x0, e0, k0] = points[i - 1]
    const [x1, e1, k1] = points[i]
    if (e1 >= k1) {
      const d0 = e0 - k0
      const d1 = e1 - k1
      const at = x0 + ((x1 - x0) * -d0) / (d1 - d0)
      return { ms: round(at, 0), text: `waiting for the exit is slower from about ${(at / 1000).toFixed(2)} s of starvation on` }
    }
  }
  return { ms: null, text: `waiting for the exit was not slower at any measured length (up to ${config.sweepMs[config.sweepMs.length - 1] / 1000} s)` }
}

const FIELDS = ['t50', 't90', 't100', 'exitMs', 'freedWhileStuckFraction', 'memFreeVsKernelCount', 'reapCalls', 'allCalls', 'eventLoopP99Ms', 'eventLoopIdleP99Ms', 'callP50Us', 'callMaxUs', 'samplerCpuShare', 'samplerUsPerSample'] as const

/** Per size and arm: median, min and max of each figure over the valid measured runs. */
export function memorySummary(records: RunRecord[]): Record<string, Record<string, Record<string, unknown>>> {
  const out: Record<string, Record<string, Record<string, unknown>>> = {}
  for (const r of records) {
    if (r.warmup || !r.valid) continue
    const bySize = (out[r.sizeMiB] ??= {})
    bySize[r.arm] ??= {}
  }
  for (const [size, arms] of Object.entries(out)) {
    for (const arm of Object.keys(arms)) {
      const runs = records.filter((r) => !r.warmup && r.valid && String(r.sizeMiB) === size && r.arm === arm)
      const entry: Record<string, unknown> = { runs: runs.length, setupMs: spread(runs.map((r) => r.setupMs)) }
      for (const field of FIELDS) entry[field] = spread(runs.map((r) => r.figures[field]))
      arms[arm] = entry
    }
  }
  return out
}

/** results.json rows: one per run, the curve as a compact array. */
export const RECORD_COLUMNS = ['sizeMiB', 'round', 'warmup', 'arm', 'attempt', 'valid', 'setupMs', 'figures', 'curve'] as const
export const recordRow = (r: RunRecord): unknown[] => RECORD_COLUMNS.map((c) => (c === 'figures' ? roundFigures(r.figures) : r[c]))

function roundFigures(f: Figures): Record<string, unknown> {
  return Object.fromEntries(Object.entries(f).map(([k, v]) => [k, typeof v === 'number' ? round(v, 4) : v]))
}
