// The ratios of the bounds part (bench/bounds.ts) from its measured rounds,
// each with a bootstrap interval over rounds (goals: bench/ratios.ts).
import { type Run, MiB, firstPassNs, lockedNs, rssDropBytes, slowdowns, sum, totalNs } from './bounds-run'
import { PooledSamples, bootstrap, median, type Estimate } from './stats'

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
  const dense = pooled('4KiB-dense')
  const adversarial: [string, string][] = [
    ['p99_4KiB_reserved_vs_dense', '4KiB-reserved'],
    ['p99_4KiB_vmas_vs_dense', '4KiB-vmas'],
  ]
  for (const [key, id] of adversarial) {
    const side = pooled(id)
    estimates[key] = boot(p99Ratio(side, dense))
    details[key] = p99Detail(id, '4KiB-dense', side, dense)
  }

  // Per-round paired ratios: their median; the bootstrap resamples rounds.
  const perRound = (values: number[]) => (picks: number[]) => median(picks.map((i) => values[i]))
  // A secondary view: only the rounds where neither run saw its vCPU slowed
  // by other work on the host (see slowdowns()).
  const runs = measured.flat()
  const slowdown = new Map(slowdowns(runs).map((v, i) => [runs[i], v]))
  const uncontended = (ratios: number[], a: Run[], b: Run[]) => {
    const rounds = all.filter((i) => slowdown.get(a[i])! <= QUIET && slowdown.get(b[i])! <= QUIET)
    return { rounds: rounds.length, median: rounds.length ? Math.round(1000 * median(rounds.map((i) => ratios[i]))) / 1000 : null }
  }
  const totals: [string, string][] = [
    ['capped_1MiB_total_vs_uncapped_mixed', 'mixed'],
    ['capped_1MiB_total_vs_uncapped_spread', 'spread'],
  ]
  const totalRatios = totals.map(([key, kind]) => {
    const capped = byArm(`${kind}-1MiB`)
    const uncapped = byArm(`${kind}-uncapped`)
    const ratios = all.map((i) => totalNs(capped[i]) / totalNs(uncapped[i]))
    estimates[key] = boot(perRound(ratios))
    // The same without the closing pass (calls after the last one that unmapped something).
    const reaping = (run: Run): number => {
      let last = run.rets.length - 1
      while (last >= 0 && run.rets[last] <= 0) last--
      return sum(run.out.ns.slice(0, last + 1))
    }
    details[key] = {
      estimator: 'median of the per-round ratios; bootstrap over rounds',
      numerator: `${kind}-1MiB: sum of the in-syscall times of all calls from the kill to the 0`,
      denominator: `${kind}-uncapped: the same (the uncapped call, and the call that returns 0)`,
      perRound: ratios,
      totalMsMedian: [median(capped.map(totalNs)) / 1e6, median(uncapped.map(totalNs)) / 1e6],
      callsMedian: [median(capped.map((r) => r.out.calls)), median(uncapped.map((r) => r.out.calls))],
      withoutClosingPass: median(all.map((i) => reaping(capped[i]) / reaping(uncapped[i]))),
      uncontendedRounds: uncontended(ratios, capped, uncapped),
    }
    return ratios
  })
  estimates.capped_1MiB_total_vs_uncapped = boot((picks) => Math.max(...totalRatios.map((ratios) => perRound(ratios)(picks))))
  details.capped_1MiB_total_vs_uncapped = {
    estimator: 'max over the two victims of the median per-round ratio; bootstrap over rounds (same resample for both)',
    numerator: 'mixed-1MiB | spread-1MiB',
    denominator: 'mixed-uncapped | spread-uncapped',
  }

  const oneReaper = byArm('mixed-1MiB')
  const twoReapers = byArm('mixed-1MiB-2reapers')
  const speedup = all.map((i) => oneReaper[i].out.wallNs / twoReapers[i].out.wallNs)
  estimates.two_reapers_speedup = boot(perRound(speedup))
  details.two_reapers_speedup = {
    estimator: 'median of the per-round ratios; bootstrap over rounds',
    numerator: 'mixed-1MiB: wall time from the kill to the 0, one reaper',
    denominator: 'mixed-1MiB-2reapers: the same, two reapers (one per CPU) until both saw the 0',
    perRound: speedup,
    wallMsMedian: [median(oneReaper.map((r) => r.out.wallNs)) / 1e6, median(twoReapers.map((r) => r.out.wallNs)) / 1e6],
    // Until the last call that returned bytes (the closing pass that proves
    // nothing is left not included): the memory back, not the protocol.
    freedSpeedupMedian: median(all.map((i) => oneReaper[i].out.freedNs / twoReapers[i].out.freedNs)),
    /** The second reaper's part of the bytes: about 0.5 when the claims split the work. */
    secondReaperShareMedian: median(twoReapers.map((r) => r.out.secondBytes / Math.max(1, r.out.bytes))),
    uncontendedRounds: uncontended(speedup, oneReaper, twoReapers),
    // The same work split in two in user space, just before each two-reaper
    // kill: what the vCPUs could give at all (2: two host cores for the guest).
    userSpaceSpeedupPerRound: twoReapers.map((r) => r.out.parallelControlNs[0] / r.out.parallelControlNs[1]),
  }

  // One killing call on a live victim: what it reaped ÷ the RSS just before it.
  const kill = byArm('kill-uncapped')
  const killed = (run: Run): number => Math.max(0, run.out.killResult)
  const fraction = kill.map((run) => killed(run) / (run.out.rssBefore * run.out.pageSize))
  estimates.kill_call_reaped_fraction = boot(perRound(fraction))
  details.kill_call_reaped_fraction = {
    estimator: 'median of the per-round values; bootstrap over rounds',
    numerator: "kill-uncapped: the result of try_reap_dying_process(pidfd, TRY_REAP_KILL, SIZE_MAX) on the live, frozen victim (bytes it unmapped)",
    denominator: "the victim's RSS (/proc/PID/statm) just before that call",
    perRound: fraction,
    victimCheck: 'the victim frozen and its CPU time, context switches and se.sum_exec_runtime unchanged from before the call to after the last call (else the round is repeated)',
    rssMiBMedian: median(kill.map((r) => (r.out.rssBefore * r.out.pageSize) / MiB)),
    killCallMiBMedian: median(kill.map((r) => killed(r) / MiB)),
    killCallMsMedian: median(kill.map((r) => r.out.ns[0] / 1e6)),
    /** What the calls after it (without the flag, until the 0) still found. */
    afterKillCallMiBMedian: median(kill.map((r) => (r.out.bytes - killed(r)) / MiB)),
    callsMedian: median(kill.map((r) => r.out.calls)),
  }

  const uncapped = byArm('mixed-uncapped')
  const mrelease = byArm('mixed-mrelease')
  const rate = (run: Run): number => rssDropBytes(run) / (firstPassNs(run) / NS)
  const throughput = all.map((i) => rate(uncapped[i]) / rate(mrelease[i]))
  estimates.try_reap_vs_mrelease_throughput = boot(perRound(throughput))
  details.try_reap_vs_mrelease_throughput = {
    estimator: 'median of the per-round ratios; bootstrap over rounds',
    numerator: 'mixed-uncapped: victim RSS drop / in-syscall time of the pass (calls before the closing 0)',
    denominator: 'mixed-mrelease: victim RSS drop / in-syscall time of the one call',
    perRound: throughput,
    gibPerSecMedian: [median(uncapped.map(rate)) / 2 ** 30, median(mrelease.map(rate)) / 2 ** 30],
    withClosingCall: median(all.map((i) => rssDropBytes(uncapped[i]) / totalNs(uncapped[i]) / (rssDropBytes(mrelease[i]) / totalNs(mrelease[i])))),
    uncontendedRounds: uncontended(throughput, uncapped, mrelease),
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

