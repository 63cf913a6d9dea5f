// Statistics for the benchmark's ratios: a seeded random generator (the
// order of the methods in a round, the bootstrap), the nearest-rank
// percentile, and the percentile bootstrap over rounds.

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
  /** Percentile bootstrap 95 % interval. */
  ci95: [number, number]
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
  return { value, ci95: [nearestRank(draws, 2.5), nearestRank(draws, 97.5)] }
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
  return { value, ci95: [nearestRank(draws, 2.5), nearestRank(draws, 97.5)] }
}

/** The median of paired per-round ratios with its bootstrap interval (rounds resampled). */
export function pairedRatio(perRound: readonly number[], resamples: number, rand: () => number): Estimate {
  const known = perRound.filter((v) => Number.isFinite(v))
  return bootstrap(known.length, (picks) => median(picks.map((i) => known[i])), resamples, rand)
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
