// The ratios of the bounds part (bench/bounds.ts) from its measured rounds,
// each with a bootstrap interval over rounds (goals: bench/ratios.ts).
import { type Run, MiB, firstPassNs, lockedNs, rssDropBytes, slowdowns, sum, totalNs } from './bounds-run'
import { PooledSamples, bootstrap, median, pairedRatio, worstPairedRatio, type Estimate } from './stats'

const NS = 1e9
/** A run whose vCPU ran at most this much slower than its best counts as uncontended. */
export const QUIET = 1.25

export interface RatioDetail {
  estimator: string
  numerator: string
  denominator: string
  [extra: string]: unknown
}

export function computeRatios(measured: Run[][], resamples: number, rand: () => number) {
  const byArm = (id: string): Run[] => measured.map((round) => round.find((r) => r.arm === id)!)
  // The arms of this clock's part (bounds.ts: arms()): a ratio is computed when both its sides ran.
  const ran = (...ids: string[]): boolean => ids.every((id) => measured[0]?.some((r) => r.arm === id))
  const estimates: Record<string, Estimate> = {}
  const details: Record<string, RatioDetail> = {}
  const n = measured.length
  const boot = (statistic: (picks: number[]) => number): Estimate => bootstrap(n, statistic, resamples, rand)

  // p99 ratios: nearest-rank p99 of the calls of all measured rounds pooled,
  // per side; the bootstrap resamples rounds.
  const pooled = (id: string): PooledSamples => new PooledSamples(byArm(id).map(lockedNs))
  const p99Ratio = (a: PooledSamples, b: PooledSamples) => (picks: number[]) => a.percentile(picks, 99) / b.percentile(picks, 99)
  const all = Array.from({ length: n }, (_, i) => i)
  const p99Detail = (idA: string, idB: string, a: PooledSamples, b: PooledSamples): RatioDetail => ({
    estimator: 'nearest-rank p99 of the pooled calls (EBUSY excluded) of each side over the measured rounds; bootstrap over rounds',
    numerator: idA,
    denominator: idB,
    pooledCalls: [a.count(all), b.count(all)],
    /** The p99 of fewer than 1000 calls is hardly more than their maximum. */
    atLeast1000Calls: Math.min(a.count(all), b.count(all)) >= 1000,
    p99Us: [a.percentile(all, 99) / 1e3, b.percentile(all, 99) / 1e3],
    maxUs: [a.percentile(all, 100) / 1e3, b.percentile(all, 100) / 1e3],
    perRoundMedian: median(all.map((i) => a.percentile([i], 99) / b.percentile([i], 99))),
  })
  const adversarial: [string, string][] = [
    ['p99_4KiB_reserved_vs_dense', '4KiB-reserved'],
    ['p99_4KiB_vmas_vs_dense', '4KiB-vmas'],
  ]
  for (const [key, id] of adversarial) {
    if (!ran(id, '4KiB-dense')) continue
    const dense = pooled('4KiB-dense')
    const side = pooled(id)
    estimates[key] = boot(p99Ratio(side, dense))
    details[key] = p99Detail(id, '4KiB-dense', side, dense)
  }

  // Per-round paired ratios (stats.ts pairedRatio: median and bootstrap
  // from 10 rounds on, else geometric mean and a t interval on log-ratios).
  const paired = (values: number[]): Estimate => pairedRatio(values, resamples, rand)
  // How much slower than its best each run's vCPU ran (the calibration loop
  // before the kill and after the last call; see slowdowns()): the wall
  // boot's rule for two_reapers_speedup below. Under icount it is 1 by construction.
  const runs = measured.flat()
  const slowdown = new Map(slowdowns(runs).map((v, i) => [runs[i], v]))
  const totals: [string, string][] = [
    ['capped_1MiB_total_vs_uncapped_mixed', 'mixed'],
    ['capped_1MiB_total_vs_uncapped_spread', 'spread'],
  ]
  const totalRatios = totals.filter(([, kind]) => ran(`${kind}-1MiB`, `${kind}-uncapped`)).map(([key, kind]) => {
    const capped = byArm(`${kind}-1MiB`)
    const uncapped = byArm(`${kind}-uncapped`)
    const ratios = all.map((i) => totalNs(capped[i]) / totalNs(uncapped[i]))
    estimates[key] = paired(ratios)
    // The same without the closing pass (calls after the last one that unmapped something).
    const reaping = (run: Run): number => {
      let last = run.rets.length - 1
      while (last >= 0 && run.rets[last] <= 0) last--
      return sum(run.out.ns.slice(0, last + 1))
    }
    details[key] = {
      estimator: estimates[key].method!,
      numerator: `${kind}-1MiB: sum of the in-syscall times of all calls from the kill to the 0`,
      denominator: `${kind}-uncapped: the same (the uncapped call, and the call that returns 0)`,
      perRound: ratios,
      totalMsMedian: [median(capped.map(totalNs)) / 1e6, median(uncapped.map(totalNs)) / 1e6],
      callsMedian: [median(capped.map((r) => r.out.calls)), median(uncapped.map((r) => r.out.calls))],
      withoutClosingPass: median(all.map((i) => reaping(capped[i]) / reaping(uncapped[i]))),
    }
    return ratios
  })
  if (totalRatios.length) {
    estimates.capped_1MiB_total_vs_uncapped = worstPairedRatio(totalRatios, resamples, rand)
    details.capped_1MiB_total_vs_uncapped = {
      estimator: estimates.capped_1MiB_total_vs_uncapped.method!,
      numerator: 'mixed-1MiB | spread-1MiB',
      denominator: 'mixed-uncapped | spread-uncapped',
    }
  }

  if (ran('mixed-1MiB', 'mixed-1MiB-2reapers')) {
    const oneReaper = byArm('mixed-1MiB')
    const twoReapers = byArm('mixed-1MiB-2reapers')
    const speedup = all.map((i) => oneReaper[i].out.wallNs / twoReapers[i].out.wallNs)
    // The rule, fixed before any run (README, "wall clock"): a round where
    // either run's vCPU ran more than QUIET times slower than the part's best
    // (the calibration loop before the kill and after the last call) gives no
    // number; it is counted and shown, not used.
    const slowedRound = all.map((i) => Math.max(slowdown.get(oneReaper[i])!, slowdown.get(twoReapers[i])!))
    estimates.two_reapers_speedup = paired(speedup.map((v, i) => (slowedRound[i] <= QUIET ? v : NaN)))
    details.two_reapers_speedup = {
      estimator: estimates.two_reapers_speedup.method!,
      rule: `a round whose runs' vCPU ran more than ${QUIET}x slower than the part's fastest calibration loop (before the kill or after the last call) gives no number`,
      calibrationSlowdownPerRound: slowedRound,
      roundsDiscardedAsSlowed: slowedRound.filter((v) => v > QUIET).length,
      numerator: 'mixed-1MiB: wall time from the kill to the 0, one reaper',
      denominator: 'mixed-1MiB-2reapers: the same, two reapers (one per CPU) until both saw the 0',
      perRound: speedup,
      wallMsMedian: [median(oneReaper.map((r) => r.out.wallNs)) / 1e6, median(twoReapers.map((r) => r.out.wallNs)) / 1e6],
      // Until the last call that returned bytes (the closing pass that proves
      // nothing is left not included): the memory back, not the protocol.
      freedSpeedupMedian: median(all.map((i) => oneReaper[i].out.freedNs / twoReapers[i].out.freedNs)),
      /** The second reaper's part of the bytes: about 0.5 when the claims split the work. */
      secondReaperShareMedian: median(twoReapers.map((r) => r.out.secondBytes / Math.max(1, r.out.bytes))),
      // The same work split in two in user space, just before each two-reaper
      // kill: what the vCPUs could give at all (2: two host cores for the guest).
      userSpaceSpeedupPerRound: twoReapers.map((r) => r.out.parallelControlNs[0] / r.out.parallelControlNs[1]),
    }
  }

  if (ran('mixed-uncapped', 'mixed-mrelease')) {
    const uncapped = byArm('mixed-uncapped')
    const mrelease = byArm('mixed-mrelease')
    const rate = (run: Run): number => rssDropBytes(run) / (firstPassNs(run) / NS)
    const throughput = all.map((i) => rate(uncapped[i]) / rate(mrelease[i]))
    estimates.try_reap_vs_mrelease_throughput = paired(throughput)
    details.try_reap_vs_mrelease_throughput = {
      estimator: estimates.try_reap_vs_mrelease_throughput.method!,
      numerator: 'mixed-uncapped: victim RSS drop / in-syscall time of the pass (calls before the closing 0)',
      denominator: 'mixed-mrelease: victim RSS drop / in-syscall time of the one call',
      perRound: throughput,
      gibPerSecMedian: [median(uncapped.map(rate)) / 2 ** 30, median(mrelease.map(rate)) / 2 ** 30],
      withClosingCall: median(all.map((i) => rssDropBytes(uncapped[i]) / totalNs(uncapped[i]) / (rssDropBytes(mrelease[i]) / totalNs(mrelease[i])))),
    }
  }
  return { estimates, details }
}


/** One run kind over the measured rounds, for the report. */
export function armSummary(runs: Run[]): Record<string, unknown> {
  const pool = new PooledSamples(runs.map(lockedNs))
  const all = runs.map((_, i) => i)
  const calls = runs.map((r) => r.out.calls)
  const r3 = (v: number): number => Math.round(v * 1000) / 1000
  return {
    callsPerRound: median(calls),
    pooledCalls: pool.count(all),
    p50Us: r3(pool.percentile(all, 50) / 1e3),
    p99Us: r3(pool.percentile(all, 99) / 1e3),
    maxUs: r3(pool.percentile(all, 100) / 1e3),
    eagainShare: r3(sum(runs.map((r) => r.out.eagain)) / Math.max(1, sum(calls))),
    ebusy: sum(runs.map((r) => r.out.ebusy)),
    totalMsMedian: r3(median(runs.map(totalNs)) / 1e6),
    reapedMiBMedian: r3(median(runs.map(rssDropBytes)) / MiB),
    thpMiBMedian: r3(median(runs.map((r) => Math.max(0, r.out.thpBytes))) / MiB),
    vmas: median(runs.map((r) => r.out.vmas)),
    setupMsMedian: Math.round(median(runs.map((r) => r.out.setupMs))),
  }
}

