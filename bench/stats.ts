// Statistics for the benchmark's ratios: a seeded random generator (the
// order of the methods in a round, the bootstrap), the nearest-rank
// percentile, the percentile bootstrap over rounds, the t interval on
// log-ratios (fewer than 10 rounds) and the verdict against a goal.

/** mulberry32: a small seeded generator of numbers in [0, 1). */
export function random(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A shuffled copy (Fisher–Yates). */
export function shuffled<T>(items: readonly T[], rand: () => number): T[] {
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1))
    ;[out[i], out[j]] = [out[j], out[i]]
  }
  return out
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** The nearest-rank p-th percentile of ascending `sorted`: the ceil(p/100·n)-th smallest. */
export function nearestRank(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]
}

/**
 * Per-round samples, kept so that the nearest-rank percentile of any
 * multiset of rounds (a bootstrap resample) is quick: for p near 100 only
 * each round's largest values can matter.
 */
export class PooledSamples {
  /** Each round's values, largest first. */
  readonly #rounds: Float64Array[]

  constructor(rounds: readonly (readonly number[])[]) {
    this.#rounds = rounds.map((values) => Float64Array.from(values).sort().reverse())
  }

  count(picks: readonly number[]): number {
    return picks.reduce((n, i) => n + this.#rounds[i].length, 0)
  }

  /** Nearest-rank percentile (p >= 50) of the rounds `picks` pooled (a round may be picked more than once). */
  percentile(picks: readonly number[], p: number): number {
    const n = this.count(picks)
    if (n === 0) return NaN
    const rank = Math.min(n, Math.max(1, Math.ceil((p / 100) * n))) // 1-based, ascending
    const k = n - rank + 1 // the k-th largest
    // Merge the picked rounds (each largest first) down to the k-th value:
    // O(k · picks), no sort (the bootstrap calls this thousands of times).
    const lists = picks.map((i) => this.#rounds[i])
    const at = new Array<number>(lists.length).fill(0)
    let value = NaN
    for (let taken = 0; taken < k; taken++) {
      let best = -1
      for (let l = 0; l < lists.length; l++) {
        if (at[l] < lists[l].length && (best < 0 || lists[l][at[l]] > lists[best][at[best]])) best = l
      }
      value = lists[best][at[best]++]
    }
    return value
  }
}

export interface Estimate {
  value: number
  /** 95 % interval (see `method`). */
  ci95: [number, number]
  /** How `value` and `ci95` were computed (shown in the report). */
  method?: string
  /** Rounds (or clones) that gave a number. */
  n?: number
  /** Rounds that gave no number (a failed run, a ratio that is not finite): counted, never dropped silently. */
  noNumber?: number
}

/** Below this many rounds the percentile bootstrap under-covers; pairedRatio uses a t interval on log-ratios instead. */
export const MIN_BOOTSTRAP_ROUNDS = 10

// Two-sided 97.5 % quantiles of Student's t, df 1..30 (beyond: the normal's 1.96).
const T975 = [
  12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069,
  2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042,
]
export const t975 = (df: number): number => (df < 1 ? NaN : df <= T975.length ? T975[df - 1] : 1.96)

/**
 * Geometric mean of positive ratios with the t interval on their logarithms:
 * exp(mean ± t(0.975, n − 1) · sd / √n). Covers at any n when the
 * log-ratios are about normal; NaN interval with fewer than 2 values.
 */
export function logTInterval(ratios: readonly number[]): Estimate {
  const logs = ratios.filter((v) => Number.isFinite(v) && v > 0).map(Math.log)
  const n = logs.length
  const noNumber = ratios.length - n
  const method = 't interval on log-ratios (geometric mean)'
  if (n === 0) return { value: NaN, ci95: [NaN, NaN], method, n, noNumber }
  const mean = logs.reduce((a, b) => a + b, 0) / n
  if (n < 2) return { value: Math.exp(mean), ci95: [NaN, NaN], method, n, noNumber }
  const sd = Math.sqrt(logs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1))
  const half = (t975(n - 1) * sd) / Math.sqrt(n)
  return { value: Math.exp(mean), ci95: [Math.exp(mean - half), Math.exp(mean + half)], method, n, noNumber }
}

/**
 * A statistic of `rounds` rounds, with its percentile bootstrap interval:
 * `resamples` times, draw that many rounds with replacement (keeping each
 * round's methods together, so pairs stay paired) and recompute.
 */
export function bootstrap(rounds: number, statistic: (picks: number[]) => number, resamples: number, rand: () => number): Estimate {
  const all = Array.from({ length: rounds }, (_, i) => i)
  const value = statistic(all)
  const draws: number[] = []
  for (let b = 0; b < resamples; b++) {
    const picks = all.map(() => Math.floor(rand() * rounds))
    const v = statistic(picks)
    if (Number.isFinite(v)) draws.push(v)
  }
  draws.sort((a, b) => a - b)
  return { value, ci95: [nearestRank(draws, 2.5), nearestRank(draws, 97.5)], method: `percentile bootstrap over ${rounds} rounds`, n: rounds, noNumber: 0 }
}

/**
 * The same for statistics of several independent groups of samples (for
 * example the clones reaped with a 1 MiB cap and those reaped with a 64 MiB
 * cap, which are not paired): each resample draws each group's members with
 * replacement, `sizes[g]` of them.
 */
export function bootstrapGroups(
  sizes: readonly number[],
  statistic: (picks: number[][]) => number,
  resamples: number,
  rand: () => number,
): Estimate {
  const all = sizes.map((n) => Array.from({ length: n }, (_, i) => i))
  const value = statistic(all)
  const draws: number[] = []
  for (let b = 0; b < resamples; b++) {
    const v = statistic(sizes.map((n) => Array.from({ length: n }, () => Math.floor(rand() * n))))
    if (Number.isFinite(v)) draws.push(v)
  }
  draws.sort((a, b) => a - b)
  return { value, ci95: [nearestRank(draws, 2.5), nearestRank(draws, 97.5)], method: `percentile bootstrap over groups of ${sizes.join(' and ')}`, n: Math.min(...sizes), noNumber: 0 }
}

/**
 * Paired per-round ratios: with at least MIN_BOOTSTRAP_ROUNDS rounds their
 * median and its percentile bootstrap interval (rounds resampled); with
 * fewer, their geometric mean and the t interval on log-ratios. Rounds
 * without a number (not finite, or not positive) are counted in `noNumber`.
 */
export function pairedRatio(perRound: readonly number[], resamples: number, rand: () => number): Estimate {
  const known = perRound.filter((v) => Number.isFinite(v) && v > 0)
  const noNumber = perRound.length - known.length
  if (known.length < MIN_BOOTSTRAP_ROUNDS) return logTInterval(perRound)
  const e = bootstrap(known.length, (picks) => median(picks.map((i) => known[i])), resamples, rand)
  return { ...e, method: `median, percentile bootstrap over ${known.length} rounds`, noNumber }
}

/**
 * The larger of several paired ratios over the same rounds (for example the
 * worse of two victims): per side as pairedRatio; the value is the largest
 * side's, the interval [largest low end, largest high end] (with fewer than
 * MIN_BOOTSTRAP_ROUNDS rounds; else the bootstrap of the max, one resample
 * for all sides).
 */
export function worstPairedRatio(sides: readonly (readonly number[])[], resamples: number, rand: () => number): Estimate {
  const n = Math.min(...sides.map((side) => side.filter((v) => Number.isFinite(v) && v > 0).length))
  const noNumber = Math.max(...sides.map((side) => side.length)) - n
  if (n < MIN_BOOTSTRAP_ROUNDS) {
    const each = sides.map((side) => logTInterval(side))
    return {
      value: Math.max(...each.map((e) => e.value)),
      ci95: [Math.max(...each.map((e) => e.ci95[0])), Math.max(...each.map((e) => e.ci95[1]))],
      method: 'the larger of the sides; each a t interval on log-ratios (geometric mean)',
      n,
      noNumber,
    }
  }
  // Rounds where every side has a number, so that a resample keeps them paired.
  const rounds = sides[0].map((_, i) => i).filter((i) => sides.every((side) => Number.isFinite(side[i]) && side[i] > 0))
  const e = bootstrap(rounds.length, (picks) => Math.max(...sides.map((side) => median(picks.map((i) => side[rounds[i]])))), resamples, rand)
  return { ...e, method: `the larger of the sides' medians, percentile bootstrap over ${rounds.length} rounds`, noNumber: sides[0].length - rounds.length }
}

export interface Goal {
  /** The ratio must be below (<), at most (<=) or at least (>=) this. */
  op: '<' | '<=' | '>='
  value: number
}

export type Verdict = 'pass' | 'fail' | 'inconclusive'

export const meets = (value: number, goal: Goal): boolean =>
  goal.op === '<' ? value < goal.value : goal.op === '<=' ? value <= goal.value : value >= goal.value

/**
 * `pass` only when the whole 95 % interval meets the goal, `fail` when the
 * whole interval misses it, `inconclusive` otherwise (the interval crosses
 * the goal, or there is none).
 */
export function verdict(ci95: readonly [number, number], goal: Goal): Verdict {
  const [lo, hi] = ci95
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return 'inconclusive'
  const both = meets(lo, goal) && meets(hi, goal)
  const neither = !meets(lo, goal) && !meets(hi, goal)
  return both ? 'pass' : neither ? 'fail' : 'inconclusive'
}

/** min, median, max of the finite values (null when there is none). */
export function spread(values: readonly (number | null | undefined)[]): { min: number | null; median: number | null; max: number | null } {
  const known = values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v))
  if (known.length === 0) return { min: null, median: null, max: null }
  return { min: Math.min(...known), median: median(known), max: Math.max(...known) }
}

export function round(value: number, digits = 3): number {
  const f = 10 ** digits
  return Math.round(value * f) / f
}
