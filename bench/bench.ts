// The benchmark, run inside the patched guest (npm run bench → bench/run).
// For each victim size, round and method: a starved victim (plain for the
// 'exit (plain)' baseline) is killed and its memory freed; figures per run go
// to bench/results.json, charts and bench/results.md are made from it. Then
// the bounds part (bench/bounds.ts) adds its own section; PIDFD_REAP_BENCH_ONLY
// runs one part alone.
import { createHash } from 'node:crypto'
import { readFileSync, readdirSync, existsSync } from 'node:fs'
import { cpus, totalmem, release } from 'node:os'
import { basename, join } from 'node:path'
import { features, formatBytes } from 'pidfd-reap'
import {
  MiB,
  mixOf,
  parseShares,
  pinProcess,
  startScenario,
  startSleeper,
  killQuietly,
  unthrottleRt,
  DEFAULT_SHARES,
  type MixShares,
  type ScenarioKind,
} from '../test/fixtures/victims'
import {
  ROOT,
  cCallCost,
  curve,
  figures,
  jsCallCost,
  measure,
  measureBusy,
  percentile,
  round,
  spread,
  type CallCost,
  type Figures,
  type Method,
  type Run,
} from './measure'
import { runBounds } from './bounds'
import { mergeBounds, writeArtifacts } from './report'

export interface BenchConfig {
  sizesMiB: number[]
  rounds: number
  warmup: number
  /** Sizes from this on get `bigRounds` rounds and fewer methods (touching 4 GiB under TCG is slow). */
  bigFromMiB: number
  bigRounds: number
  shares: MixShares
  starveMs: number
  sampleUs: number
  callsN: number
  callsBatches: number
  busyDurationMs: number
}

function envNumber(name: string, fallback: number): number {
  const text = process.env[name]
  if (text === undefined || text === '') return fallback
  const value = Number(text)
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name}=${text}: not a number`)
  return value
}

function parseSizes(text: string): number[] {
  return text.split(',').map((part) => {
    const match = /^(\d+)([MG])?$/i.exec(part.trim())
    if (!match) throw new Error(`bad size '${part}' in PIDFD_REAP_BENCH_SIZES (e.g. 256M,1G,4G)`)
    return Number(match[1]) * (match[2]?.toUpperCase() === 'G' ? 1024 : 1)
  })
}

export function benchConfig(env = process.env): BenchConfig {
  return {
    sizesMiB: parseSizes(env.PIDFD_REAP_BENCH_SIZES || '256M,1G'),
    rounds: envNumber('PIDFD_REAP_BENCH_ROUNDS', 3),
    warmup: envNumber('PIDFD_REAP_BENCH_WARMUP', 1),
    bigFromMiB: envNumber('PIDFD_REAP_BENCH_BIG_MIB', 2048),
    bigRounds: envNumber('PIDFD_REAP_BENCH_BIG_ROUNDS', 3),
    shares: env.PIDFD_REAP_BENCH_MIX ? parseShares(env.PIDFD_REAP_BENCH_MIX) : { anon: 2, thp: 1, file: 1 },
    starveMs: envNumber('PIDFD_REAP_BENCH_STARVE_MS', 2000),
    sampleUs: envNumber('PIDFD_REAP_BENCH_SAMPLE_US', 1000),
    callsN: envNumber('PIDFD_REAP_BENCH_CALLS', 20000),
    callsBatches: 7,
    busyDurationMs: 500,
  }
}

interface MethodPlan {
  name: string
  scenario: ScenarioKind
  method: Method
  /** Runs on big sizes too. */
  big: boolean
}

export function plan(config: BenchConfig): MethodPlan[] {
  const tryreap = (capMiB: number, big: boolean): MethodPlan => ({
    name: capMiB ? `try_reap ${capMiB} MiB` : 'try_reap uncapped',
    scenario: 'starved',
    method: { kind: 'tryreap', capBytes: capMiB * MiB },
    big,
  })
  return [
    { name: 'exit (starved)', scenario: 'starved', method: { kind: 'wait', releaseAfterMs: config.starveMs }, big: true },
    { name: 'exit (plain)', scenario: 'plain', method: { kind: 'wait' }, big: false },
    { name: 'process_mrelease', scenario: 'starved', method: { kind: 'mrelease' }, big: true },
    tryreap(0, true),
    tryreap(1, false),
    tryreap(16, true),
    tryreap(64, false),
    { name: 'killAndReap 16 MiB', scenario: 'starved', method: { kind: 'killAndReap', chunkBytes: 16 * MiB }, big: true },
  ]
}

export interface RunRecord {
  sizeMiB: number
  round: number
  warmup: boolean
  name: string
  scenario: ScenarioKind
  setupMs: number
  thpBytes: number
  figures: Figures
  /** [ms since SIGKILL, MiB freed] */
  curve: [number, number][]
  /** try_reap calls: latency in µs and bytes returned, in call order. */
  callsUs?: number[]
  callsBytes?: number[]
}

function log(text: string): void {
  process.stderr.write(`bench: ${text}\n`)
}

function anonHugeBytes(pid: number): number {
  try {
    const match = /^AnonHugePages:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))
    return match ? Number(match[1]) * 1024 : 0
  } catch {
    return 0
  }
}

async function oneRun(config: BenchConfig, sizeMiB: number, roundNo: number, warmup: boolean, m: MethodPlan): Promise<RunRecord> {
  const started = Date.now()
  const s = await startScenario(m.scenario, { memory: mixOf(sizeMiB, config.shares), victimCpu: 1, maxStarveSeconds: 600 })
  const setupMs = Date.now() - started
  try {
    const thpBytes = anonHugeBytes(s.victim.pid)
    const run: Run = await measure(s.victim, m.method, {
      starverPid: s.starver?.pid,
      sampleUs: config.sampleUs,
      timeoutMs: 300_000,
    })
    run.method = m.name
    const f = figures(run)
    const record: RunRecord = {
      sizeMiB,
      round: roundNo,
      warmup,
      name: m.name,
      scenario: m.scenario,
      setupMs,
      thpBytes,
      figures: f,
      curve: curve(run),
    }
    if (m.method.kind === 'tryreap') {
      const reaping = run.calls.filter((c) => c.ret > 0)
      record.callsUs = reaping.map((c) => round((c.end - c.start) * 1000, 1))
      record.callsBytes = reaping.map((c) => c.ret)
    }
    const ms = (v: number | null): string => (v === null ? '-' : `${v.toFixed(1)} ms`)
    log(
      `${sizeMiB} MiB r${roundNo}${warmup ? ' (warm-up)' : ''} ${m.name}: 50% ${ms(f.t50)}, 90% ${ms(f.t90)}, 100% ${ms(f.t100)}, ` +
        `(RSS 90% ${ms(f.t90Rss)}), exit ${ms(f.exitMs)}, ${f.reapCalls} calls${f.otherResults.length ? ` (other results ${f.otherResults.join(',')})` : ''}, ` +
        `max call ${f.maxCallBytes === null ? '-' : formatBytes(f.maxCallBytes)}, freed ${formatBytes(f.freedBytes)} of ${formatBytes(f.heldBytes)} ` +
        `(THP ${formatBytes(thpBytes)}, setup ${setupMs} ms)`,
    )
    return record
  } finally {
    await s.cleanup()
  }
}

/** EBUSY latency: a starved victim whose second thread holds its mmap_lock for write. */
async function busyRuns(config: BenchConfig): Promise<Record<string, unknown>> {
  const attempts: Record<string, unknown>[] = []
  for (let attempt = 0; attempt < 6; attempt++) {
    const s = await startScenario('starved', { memory: 256, mprotect: true, victimCpu: 1, maxStarveSeconds: 120 })
    try {
      const run = await measureBusy(s.victim, MiB, config.busyDurationMs, { sampleUs: 5000 })
      const busy = run.calls.filter((c) => c.ret === -16).map((c) => (c.end - c.start) * 1000).sort((a, b) => a - b)
      const reaped = run.calls.filter((c) => c.ret > 0).length
      const entry = {
        attempt,
        calls: run.calls.length,
        busyCalls: busy.length,
        reapingCalls: reaped,
        ebusyLatencyUs: { p50: percentile(busy, 50), p99: percentile(busy, 99), max: percentile(busy, 100) },
        firstResult: run.calls[0]?.ret ?? null,
      }
      attempts.push(entry)
      log(`EBUSY attempt ${attempt}: ${busy.length} EBUSY of ${run.calls.length} calls, p50 ${entry.ebusyLatencyUs.p50?.toFixed(1)} µs`)
      if (busy.length >= 100) break
    } finally {
      await s.cleanup()
    }
  }
  // process_mrelease on the same kind of victim blocks on the lock until the holder runs again.
  return { cap: MiB, durationMs: config.busyDurationMs, attempts, mreleaseBlocked: await mreleaseBlocked() }
}

/** process_mrelease against a starved victim holding its mmap_lock for write: how long it blocks. */
async function mreleaseBlocked(releaseAfterMs = 1000): Promise<Record<string, unknown>> {
  const s = await startScenario('starved', { memory: 256, mprotect: true, victimCpu: 1, maxStarveSeconds: 120 })
  try {
    const run = await measure(s.victim, { kind: 'mrelease' }, { starverPid: s.starver!.pid, releaseAfterMs, sampleUs: 5000 })
    const call = run.calls[0]
    const result = { releaseAfterMs, callMs: call ? round(call.end - call.start, 3) : null, result: call?.ret ?? null }
    log(`process_mrelease on a victim holding its mmap_lock, starved for ${releaseAfterMs} ms: ${JSON.stringify(result)}`)
    return result
  } finally {
    await s.cleanup()
  }
}

export async function callCosts(): Promise<Record<string, CallCost | string>> {
  const config = benchConfig()
  const sleeper = startSleeper()
  try {
    const out: Record<string, CallCost | string> = {}
    const tryReap = features().tryReap !== null
    const syscall = tryReap ? 'tryreap0' : 'mrelease'
    out.description = tryReap
      ? 'try_reap_dying_process(pidfd, 0, max_bytes 0) on a live process: EPERM'
      : 'process_mrelease(pidfd, 0) on a live process: EINVAL'
    await cCallCost(sleeper.pid, syscall, 1000, 1) // warm-up
    out.c = await cCallCost(sleeper.pid, syscall, config.callsN, config.callsBatches)
    out.js = jsCallCost(sleeper.pid, syscall, config.callsN, config.callsBatches)
    if (tryReap) {
      out.cMrelease = await cCallCost(sleeper.pid, 'mrelease', config.callsN, config.callsBatches)
      out.jsMrelease = jsCallCost(sleeper.pid, 'mrelease', config.callsN, config.callsBatches)
    }
    return out
  } finally {
    await killQuietly(sleeper)
  }
}

function machine(): Record<string, unknown> {
  return { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', memoryBytes: totalmem() }
}

function seriesHash(): string {
  const dir = join(ROOT, 'kernel-patch', 'linux-6.12')
  const hash = createHash('sha256')
  for (const name of readdirSync(dir).filter((n) => n.endsWith('.patch')).sort()) {
    hash.update(name).update(readFileSync(join(dir, name)))
  }
  return hash.digest('hex')
}

export function hostMachine(): Record<string, unknown> {
  return { ...machine(), kernel: release() }
}

/** PIDFD_REAP_BENCH_ONLY: '' (everything), 'main' (all but the bounds part) or 'bounds' (only it). */
function benchOnly(env = process.env): '' | 'main' | 'bounds' {
  const only = env.PIDFD_REAP_BENCH_ONLY ?? ''
  if (only !== '' && only !== 'main' && only !== 'bounds') throw new Error(`PIDFD_REAP_BENCH_ONLY=${only}: expected main or bounds`)
  return only
}

/** The `bounds` section of the last results.json, kept when only the main part runs. */
function previousBounds(): unknown {
  const file = join(ROOT, 'bench', 'results.json')
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')).bounds : undefined
}

export async function runBench(hostFile?: string): Promise<void> {
  const config = benchConfig()
  const startedAt = Date.now()
  const tryReap = features().tryReap
  if (!tryReap) throw new Error('bench: try_reap_dying_process is not available (not the patched kernel?)')
  pinProcess(0)
  const only = benchOnly()
  if (only === 'bounds') {
    mergeBounds(await runBounds(), join(ROOT, 'bench'))
    log(`wrote the bounds section of bench/results.json and bench/results.md in ${((Date.now() - startedAt) / 1000).toFixed(0)} s`)
    return
  }
  const restoreRt = unthrottleRt()
  const records: RunRecord[] = []
  let busy: Record<string, unknown> = {}
  let calls: Record<string, unknown> = {}
  try {
    log(`config ${JSON.stringify(config)}`)
    calls = await callCosts()
    log(`call cost: ${JSON.stringify({ c: (calls.c as CallCost).median, js: (calls.js as CallCost).median })} ns`)
    for (const sizeMiB of config.sizesMiB) {
      const big = sizeMiB >= config.bigFromMiB
      const methods = plan(config).filter((m) => !big || m.big)
      // One warm-up round (JIT, compiled helpers, page allocator state) before the first size only.
      const warmups = big || sizeMiB !== config.sizesMiB[0] ? 0 : config.warmup
      const rounds = big ? config.bigRounds : config.rounds
      for (let round = 0; round < warmups + rounds; round++) {
        // Rotate the order per round so no method always runs first or last.
        const order = methods.map((_, i) => methods[(i + round) % methods.length])
        for (const m of order) records.push(await oneRun(config, sizeMiB, round - warmups, round < warmups, m))
      }
    }
    busy = await busyRuns(config)
  } finally {
    restoreRt()
  }
  const bounds = only === 'main' ? previousBounds() : await runBounds()
  const host = hostFile && existsSync(hostFile) ? JSON.parse(readFileSync(hostFile, 'utf8')) : null
  const results = assemble(config, records, busy, calls, host, Date.now() - startedAt, tryReap.syscallNr)
  if (bounds !== undefined) results.bounds = bounds
  writeArtifacts(results, join(ROOT, 'bench'))
  log(`wrote bench/results.json, bench/results.md, bench/memory-freed.svg, bench/latency-vs-cap.svg in ${((Date.now() - startedAt) / 1000).toFixed(0)} s`)
}

type Summary = Record<string, Record<string, Record<string, ReturnType<typeof spread>>>>

const SUMMARY_FIELDS = [
  't50',
  't90',
  't100',
  't90Rss',
  'bytesPerSec',
  'syscallBytesPerSec',
  'reapWallMs',
  'reapCalls',
  'maxCallBytes',
  'exitMs',
  'freedBytes',
  'availableRise',
] as const

function summarize(records: RunRecord[]): Summary {
  const summary: Summary = {}
  for (const r of records.filter((r) => !r.warmup)) {
    summary[r.sizeMiB] ??= {}
    summary[r.sizeMiB][r.name] ??= {}
  }
  for (const [size, byMethod] of Object.entries(summary)) {
    for (const name of Object.keys(byMethod)) {
      const runs = records.filter((r) => !r.warmup && String(r.sizeMiB) === size && r.name === name)
      const out: Record<string, ReturnType<typeof spread>> = {}
      for (const field of SUMMARY_FIELDS) out[field] = spread(runs.map((r) => r.figures[field]))
      out.latencyP50Us = spread(runs.map((r) => r.figures.latencyUs.p50))
      out.latencyP99Us = spread(runs.map((r) => r.figures.latencyUs.p99))
      out.latencyMaxUs = spread(runs.map((r) => r.figures.latencyUs.max))
      byMethod[name] = out
    }
  }
  return summary
}

function median(values: (number | null | undefined)[]): number | null {
  return spread(values.map((v) => v ?? null)).median
}

export function assemble(
  config: BenchConfig,
  records: RunRecord[],
  busy: Record<string, unknown>,
  calls: Record<string, unknown>,
  host: Record<string, unknown> | null,
  durationMs: number,
  syscallNr: number,
): Record<string, unknown> {
  const summary = summarize(records)
  const refSize = config.sizesMiB.includes(1024) ? 1024 : Math.max(...config.sizesMiB.filter((s) => s < config.bigFromMiB))
  const ref = summary[refSize] ?? {}
  const med = (name: string, field: string): number | null => ref[name]?.[field]?.median ?? null
  const ratio = (a: number | null, b: number | null): number | null => (a !== null && b !== null && b !== 0 ? round(a / b, 3) : null)
  // Per-round ratios: from runs of the same round, then their median.
  const perRound = (fn: (round: number) => number | null): number | null =>
    median([...new Set(records.filter((r) => !r.warmup && r.sizeMiB === refSize).map((r) => r.round))].map(fn))
  const fig = (round: number, name: string): Figures | undefined =>
    records.find((r) => !r.warmup && r.sizeMiB === refSize && r.round === round && r.name === name)?.figures
  const c = calls.c as CallCost | undefined
  const js = calls.js as CallCost | undefined
  const hostCalls = (host?.calls ?? null) as Record<string, CallCost> | null
  const ratios = {
    try_reap_vs_mrelease_throughput: ratio(med('try_reap uncapped', 'syscallBytesPerSec'), med('process_mrelease', 'syscallBytesPerSec')),
    capped_1MiB_total_vs_uncapped: ratio(med('try_reap 1 MiB', 'reapWallMs'), med('try_reap uncapped', 'reapWallMs')),
    p99_1MiB_vs_64MiB: ratio(med('try_reap 1 MiB', 'latencyP99Us'), med('try_reap 64 MiB', 'latencyP99Us')),
    starved_wait_vs_killAndReap_90pct: ratio(med('exit (starved)', 't90'), med('killAndReap 16 MiB', 't90')),
    js_vs_c_call: ratio(js?.median ?? null, c?.median ?? null),
  }
  const ratiosPerRound = {
    try_reap_vs_mrelease_throughput: perRound((r) =>
      ratio(fig(r, 'try_reap uncapped')?.syscallBytesPerSec ?? null, fig(r, 'process_mrelease')?.syscallBytesPerSec ?? null),
    ),
    capped_1MiB_total_vs_uncapped: perRound((r) =>
      ratio(fig(r, 'try_reap 1 MiB')?.reapWallMs ?? null, fig(r, 'try_reap uncapped')?.reapWallMs ?? null),
    ),
    p99_1MiB_vs_64MiB: perRound((r) => ratio(fig(r, 'try_reap 1 MiB')?.latencyUs.p99 ?? null, fig(r, 'try_reap 64 MiB')?.latencyUs.p99 ?? null)),
    starved_wait_vs_killAndReap_90pct: perRound((r) =>
      ratio(fig(r, 'exit (starved)')?.t90 ?? null, fig(r, 'killAndReap 16 MiB')?.t90 ?? null),
    ),
  }
  let kernelRelease = 'unknown'
  try {
    kernelRelease = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()
  } catch {
    // not Linux
  }
  return {
    schema: 1,
    generatedAt: new Date().toISOString(),
    durationMs,
    kernel: {
      release: kernelRelease,
      seriesSha256: seriesHash(),
      buildKey: process.env.PIDFD_REAP_KERNEL_OUT ? basename(process.env.PIDFD_REAP_KERNEL_OUT) : null,
      tryReapSyscallNr: syscallNr,
    },
    accelerator: process.env.PIDFD_REAP_BENCH_ACCEL ?? (process.env.PIDFD_REAP_VM ? 'tcg' : 'none'),
    machine: { guest: machine(), host: host?.machine ?? null },
    config: { ...config, shares: config.shares ?? DEFAULT_SHARES, referenceSizeMiB: refSize },
    ratios,
    ratios_host: { js_vs_c_call: hostCalls ? ratio(hostCalls.js?.median ?? null, hostCalls.c?.median ?? null) : null },
    ratiosNotes: {
      reference: `${refSize} MiB starved victim, medians over ${config.rounds} rounds (perRound: median of per-round ratios)`,
      try_reap_vs_mrelease_throughput: 'bytes / time inside the syscall; process_mrelease bytes = victim RSS drop across the call',
      capped_1MiB_total_vs_uncapped: 'first call start to last reaping call end, 1 MiB calls vs the one uncapped call',
      p99_1MiB_vs_64MiB: 'p99 latency of calls that freed memory',
      starved_wait_vs_killAndReap_90pct: `time from SIGKILL to 90 % of the victim's memory back; the exit is bounded by ending the busy loop ${config.starveMs} ms after the kill`,
      js_vs_c_call: calls.description ?? null,
      js_vs_c_call_host: hostCalls ? (host?.calls as Record<string, unknown>).description : null,
    },
    ratiosPerRound,
    summary,
    callCost: { guest: calls, host: hostCalls },
    ebusy: busy,
    raw: records,
  }
}
