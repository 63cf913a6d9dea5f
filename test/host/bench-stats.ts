// The benchmark's verdicts and intervals (bench/stats.ts, bench/ratios.ts)
// and how bench/run's boots become results.json (bench/combine.ts): pure
// code, tested on the host.
import t from 'tap'
import { combine, relativeSpread, repeatCheck, type Boot } from '../../bench/combine'
import { ratioFields } from '../../bench/ratios'
import { logTInterval, pairedRatio, random, t975, verdict, worstPairedRatio, type Estimate } from '../../bench/stats'

const close = (a: number, b: number, tolerance = 1e-9): boolean => Math.abs(a - b) <= tolerance * Math.max(1, Math.abs(b))

t.test('verdict: pass only when the whole interval meets the goal, fail when it all misses, else inconclusive', async (t) => {
  const atLeast = { op: '>=' as const, value: 0.95 }
  t.equal(verdict([0.96, 1.2], atLeast), 'pass')
  t.equal(verdict([0.95, 1.2], atLeast), 'pass', 'the goal itself meets >=')
  t.equal(verdict([0.8, 0.94], atLeast), 'fail')
  t.equal(verdict([0.9, 1.1], atLeast), 'inconclusive', 'an interval across the goal')
  const atMost = { op: '<=' as const, value: 1.25 }
  t.equal(verdict([1.0, 1.25], atMost), 'pass')
  t.equal(verdict([1.26, 2], atMost), 'fail')
  t.equal(verdict([1.2, 1.3], atMost), 'inconclusive')
  const below = { op: '<' as const, value: 10 }
  t.equal(verdict([1, 9.9], below), 'pass')
  t.equal(verdict([5, 10], below), 'inconclusive', '< excludes the goal itself')
  t.equal(verdict([10, 12], below), 'fail')
  t.equal(verdict([NaN, NaN], atLeast), 'inconclusive', 'no interval, no verdict either way')
})

t.test('logTInterval: geometric mean and t interval on log-ratios', async (t) => {
  t.equal(t975(1), 12.706)
  t.equal(t975(4), 2.776)
  t.equal(t975(100), 1.96)
  t.ok(Number.isNaN(t975(0)))
  // Logs 0, ln 2, ln 4 (mean ln 2, sd ln 2): exp(ln 2 ± 4.303 · ln 2 / √3).
  const e = logTInterval([1, 2, 4])
  t.ok(close(e.value, 2))
  const half = (4.303 * Math.LN2) / Math.sqrt(3)
  t.ok(close(e.ci95[0], Math.exp(Math.LN2 - half)))
  t.ok(close(e.ci95[1], Math.exp(Math.LN2 + half)))
  t.equal(e.n, 3)
  t.equal(e.noNumber, 0)
  t.match(e.method, /t interval on log-ratios/)
  // Symmetric in log space: a ratio and its inverse give reciprocal intervals.
  const inv = logTInterval([1, 0.5, 0.25])
  t.ok(close(inv.ci95[0], 1 / e.ci95[1]) && close(inv.ci95[1], 1 / e.ci95[0]))
  // Rounds without a number are counted, not used.
  const holes = logTInterval([2, NaN, 2, -1, Infinity, 2])
  t.ok(close(holes.value, 2))
  t.ok(close(holes.ci95[0], 2) && close(holes.ci95[1], 2), 'no spread, no width')
  t.equal(holes.n, 3)
  t.equal(holes.noNumber, 3)
  const one = logTInterval([3])
  t.ok(close(one.value, 3))
  t.ok(one.ci95.every(Number.isNaN), 'one value: no interval')
  t.ok(Number.isNaN(logTInterval([]).value))
})

t.test('pairedRatio: a t interval below 10 rounds, the median with a bootstrap from 10 on', async (t) => {
  const few = pairedRatio([0.9, 1.0, 1.1, NaN], 500, random(1))
  t.match(few.method, /t interval on log-ratios/)
  t.equal(few.n, 3)
  t.equal(few.noNumber, 1)
  const many = [0.9, 1.0, 1.1, 1.05, 0.95, 1.02, 0.98, 1.01, 0.99, 1.03, NaN]
  const e = pairedRatio(many, 500, random(1))
  t.match(e.method, /^median, percentile bootstrap over 10 rounds/)
  t.equal(e.value, 1.005)
  t.equal(e.noNumber, 1)
  t.ok(e.ci95[0] <= e.value && e.value <= e.ci95[1])
  t.ok(e.ci95[0] >= 0.9 && e.ci95[1] <= 1.1)
  // The interval covers: over many samples of 5 lognormal-ish ratios around 1,
  // the t interval holds 1 in about 95 % of them (not far less, as the
  // percentile bootstrap of 5 rounds would).
  const rand = random(7)
  const normal = (): number => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand())
  let covered = 0
  const trials = 2000
  for (let i = 0; i < trials; i++) {
    const ci = logTInterval(Array.from({ length: 5 }, () => Math.exp(0.1 * normal()))).ci95
    if (ci[0] <= 1 && 1 <= ci[1]) covered++
  }
  t.ok(covered / trials > 0.92 && covered / trials < 0.98, `coverage ${covered / trials}`)
})

t.test('worstPairedRatio: the larger side', async (t) => {
  const e = worstPairedRatio([[1, 1.1, 1.2], [2, 2.2, 2.4]], 100, random(1))
  t.ok(close(e.value, logTInterval([2, 2.2, 2.4]).value))
  t.ok(e.ci95[0] >= logTInterval([2, 2.2, 2.4]).ci95[0] - 1e-12)
  const sides = [Array.from({ length: 12 }, (_, i) => 1 + i / 100), Array.from({ length: 12 }, (_, i) => (i === 3 ? NaN : 0.5))]
  const b = worstPairedRatio(sides, 200, random(2))
  t.match(b.method, /percentile bootstrap over 11 rounds/)
  t.equal(b.noNumber, 1)
  t.ok(b.value > 1)
})

t.test('ratioFields: verdicts, methods, rounds; a ratio without any number is listed, inconclusive', async (t) => {
  const estimates: Record<string, Estimate> = {
    try_reap_vs_mrelease_throughput: { value: 0.97, ci95: [0.96, 0.99], method: 'm', n: 5, noNumber: 1 },
    capped_1MiB_total_vs_uncapped: { value: 1.3, ci95: [1.26, 1.4], method: 'm', n: 5, noNumber: 0 },
    two_reapers_speedup: { value: 1.7, ci95: [1.5, 1.9], method: 'm', n: 4, noNumber: 2 },
    shrinker_stall_ratio: { value: NaN, ci95: [NaN, NaN], method: 'm', n: 0, noNumber: 3 },
    js_vs_c_call_raw: { value: 1.1, ci95: [1, 1.2] },
  }
  const f = ratioFields(estimates)
  t.same(f.verdicts, { try_reap_vs_mrelease_throughput: 'pass', capped_1MiB_total_vs_uncapped: 'fail', two_reapers_speedup: 'inconclusive', shrinker_stall_ratio: 'inconclusive' })
  t.same(f.rounds.two_reapers_speedup, { n: 4, noNumber: 2 })
  t.same(f.noValue, { shrinker_stall_ratio: { noNumber: 3 } })
  t.notOk('shrinker_stall_ratio' in f.ratios)
  t.equal(f.intervalMethods.js_vs_c_call_raw, 'percentile bootstrap')
  t.notOk('js_vs_c_call_raw' in f.verdicts, 'no goal, no verdict')
  t.throws(() => ratioFields({ kill_call_reaped_fraction: { value: 1, ci95: [1, 1] } }), /no definition/, 'a ratio true by construction is gone')
  t.throws(() => ratioFields({ no_such_ratio: { value: 1, ci95: [1, 1] } }), /no definition of the ratio no_such_ratio/)
})

t.test('repeat check: every icount ratio of two runs within 2 %', async (t) => {
  t.ok(close(relativeSpread(1, 1.02), 0.02))
  t.ok(close(relativeSpread(1.02, 1), 0.02), 'symmetric')
  t.equal(relativeSpread(1, NaN), Infinity)
  t.equal(relativeSpread(0, 1), Infinity)
  const e = (value: number): Estimate => ({ value, ci95: [value, value] })
  const same = repeatCheck({ a: e(0.97), b: e(1.0) }, { a: e(0.98), b: e(1.015) })
  t.equal(same.pass, true)
  t.equal(same.maxSpread, 0.015)
  const apart = repeatCheck({ a: e(0.97), b: e(1.0) }, { a: e(0.97), b: e(1.03) })
  t.equal(apart.pass, false)
  t.same(apart.ratios.b, { values: [1, 1.03], spread: 0.03, within: false })
  const partial = repeatCheck({ a: e(1), b: e(2) }, { a: e(1.01), c: e(3) })
  t.equal(partial.pass, true, 'the ratios both runs have are compared')
  t.same(partial.notRepeated, ['b', 'c'], 'the others are listed, not compared')
  const noValue = repeatCheck({ a: e(1) }, { a: e(NaN) })
  t.equal(noValue.pass, false, 'a ratio without a value in one run is outside')
  t.equal(noValue.ratios.a.spread, null)
  t.equal(repeatCheck({ a: e(1) }, {}).pass, false, 'nothing compared proves nothing')
  t.equal(repeatCheck({ a: e(1) }, {}).maxSpread, null)
})

t.test('combine: the icount and wall boots into one results.json', async (t) => {
  const boot = (clock: 'icount' | 'wall', estimates: Record<string, Estimate>, sections: Record<string, unknown>, at: string): Boot => ({
    clock,
    generatedAt: at,
    durationMs: 60000,
    partMs: { bounds: 1000 },
    provenance: { kernel: { release: clock }, run: { clock } },
    settings: { clock },
    estimates,
    sections,
  })
  const e = (value: number): Estimate => ({ value, ci95: [value * 0.99, value * 1.01], method: 'm', n: 5, noNumber: 0 })
  const icount = boot('icount', { try_reap_vs_mrelease_throughput: e(0.98) }, { bounds: { from: 'icount' }, calls: {} }, '2026-01-01T00:00:00Z')
  const repeat = boot('icount', { try_reap_vs_mrelease_throughput: e(0.99) }, { bounds: { from: 'repeat' } }, '2026-01-01T01:00:00Z')
  const wall = boot('wall', { two_reapers_speedup: e(1.7) }, { bounds: { from: 'wall' }, memory: {} }, '2026-01-01T02:00:00Z')
  wall.hostLoad = { what: 'x', samples: 3, min: 1, median: 2, max: 3 }
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- results.json is untyped JSON
  const r = combine([icount, repeat, wall]) as Record<string, any>
  t.equal(r.schema, 3)
  t.same(r.ratios, { try_reap_vs_mrelease_throughput: 0.98, two_reapers_speedup: 1.7 }, 'the repeat boot gives no ratio of its own')
  t.same(r.clocks, { try_reap_vs_mrelease_throughput: 'icount', two_reapers_speedup: 'wall' })
  t.same(r.verdicts, { try_reap_vs_mrelease_throughput: 'pass', two_reapers_speedup: 'pass' })
  t.same(r.bounds, { from: 'icount' })
  t.same(r.boundsWall, { from: 'wall' }, 'a wall section named like an icount one is kept beside it')
  t.ok(r.memory && r.calls)
  t.equal(r.repeatCheck.pass, true)
  t.same(r.boots.map((b: { role: string }) => b.role), ['measured', 'repeat', 'measured'])
  t.same(r.boots[2].hostLoad.median, 2)
  t.equal(r.boots[0].hostLoad, null)
  t.equal(r.generatedAt, '2026-01-01T02:00:00Z')
  t.equal(r.durationMs, 180000)
  t.same(r.partMs, { 'bounds (icount)': 2000, 'bounds (wall)': 1000 })
  t.same(r.kernel, { release: 'icount' }, 'provenance of the first measured boot at the top; each boot keeps its own')
  t.notOk('repeatCheck' in (combine([icount, wall]) as object))
  t.throws(() => combine([]), /no boot/)
  t.throws(() => combine([wall, wall]), /at most 2 and 1/)
})
