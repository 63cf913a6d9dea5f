// `npm run bench` inside the patched guest (bench/run boots it): runs the
// parts (calls.ts, latency.ts, bounds.ts, memory.ts, pressure.ts, shrinker.ts), turns their per-round
// numbers into the tracked ratios (ratios.ts) and writes results.json,
// results.md and the charts (report.ts, charts.ts).
import { accessSync, closeSync, constants, mkdirSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { features } from 'pidfd-reap'
import { pinProcess, projectRoot, unthrottleRt } from '../victims'
import { runBounds } from './bounds'
import { runCalls } from './calls'
import { benchConfig, fileMiB, type BenchConfig, type Part } from './config'
import { ConfigError } from './env'
import { runLatency } from './latency'
import { RECORD_COLUMNS, memoryEstimates, memorySummary, recordRow, runMemory } from './memory'
import { smallFreeLists } from './measure'
import { runPressure } from './pressure'
import { provenance } from './provenance'
import { runShrinker } from './shrinker'
import { combine, type Boot } from './combine'
import { writeArtifacts } from './report'
import { bootstrap, median, pairedRatio, type Estimate } from './stats'
import { random } from './stats'

const MiB = 1024 * 1024

function log(text: string): void {
  process.stderr.write(`bench: ${text}\n`)
}

/** The tmpfs file whose page cache the victims' private-file part copies from (written once, so it is all in memory). */
function createSharedFile(path: string, mib: number): void {
  const fd = openSync(path, 'w')
  try {
    const chunk = Buffer.alloc(MiB, 0x5a)
    for (let i = 0; i < mib; i++) writeSync(fd, chunk)
  } finally {
    closeSync(fd)
  }
}

/** Where results go: bench/ unless PIDFD_REAP_BENCH_OUT says otherwise (trial runs). */
export const outDir = (env = process.env): string => env.PIDFD_REAP_BENCH_OUT || join(projectRoot(), 'bench')

export async function runBench(config: BenchConfig = benchConfig()): Promise<void> {
  const startedAt = Date.now()
  if (!features().tryReap) throw new ConfigError('bench: try_reap_dying_process is not available (not the patched kernel?)')
  // Before the run, not after it: a run's results must have somewhere to go.
  // (In the guest only the project is writable.)
  const resultsDir = outDir()
  try {
    mkdirSync(resultsDir, { recursive: true })
    accessSync(resultsDir, constants.W_OK)
  } catch (error) {
    throw new ConfigError(`bench: cannot write the results to ${resultsDir}: ${(error as Error).message} (PIDFD_REAP_BENCH_OUT must be inside the project)`)
  }
  const rand = random(config.seed)
  log(`config ${JSON.stringify(config)}`)
  pinProcess(0)
  createSharedFile(config.filePath, fileMiB(config))
  const restoreRt = unthrottleRt()
  const estimates: Record<string, Estimate> = {}
  const results: Record<string, unknown> = {}
  const partMs: Record<string, number> = {}
  // A part that fails is recorded (failedParts) and the others still run:
  // one failure must not throw away an hour of measuring.
  const failedParts: Record<string, string> = {}
  const part = async (name: Part, fn: () => Promise<void>): Promise<void> => {
    if (!config.parts.includes(name)) return
    const t0 = Date.now()
    log(`${name}: starting (${((t0 - startedAt) / 60000).toFixed(1)} min so far)`)
    try {
      await fn()
    } catch (error) {
      failedParts[name] = error instanceof ConfigError ? error.message : error instanceof Error ? (error.stack ?? error.message) : String(error)
      log(`${name}: FAILED: ${failedParts[name]}`)
    } finally {
      partMs[name] = Date.now() - t0
    }
  }
  let addedNs: number[] = []
  try {
    await part('calls', async () => {
      const calls = await runCalls(config.calls, rand)
      for (const [key, values] of Object.entries(calls.perRoundRatios)) estimates[key] = pairedRatio(values, config.resamples, rand)
      addedNs = calls.addedNs
      results.calls = calls.section
    })
    await part('latency', async () => {
      const latency = await runLatency(config.latency, rand)
      Object.assign(estimates, latency.estimates)
      results.latency = latency.section
    })
    await part('bounds', async () => {
      const bounds = await runBounds(config.bounds, rand)
      Object.assign(estimates, bounds.estimates)
      results.bounds = bounds.section
    })
    await part('memory', async () => {
      // Only this part reads MemFree, which pages kept in per-CPU lists miss.
      // The others keep the kernel's default lists, as production does:
      // small ones send every free through the zone lock, which parallel
      // reapers then contend on.
      const restoreFreeLists = smallFreeLists()
      const records = await runMemory(config.memory, rand).finally(restoreFreeLists)
      const size = config.memory.sizesMiB[0]
      const m = memoryEstimates(config.memory, records, size, rand)
      Object.assign(estimates, m.estimates)
      results.memory = {
        referenceSizeMiB: size,
        summary: memorySummary(records),
        sweep: m.sweep,
        perRound: m.perRound,
        invalidRuns: records.filter((r) => !r.valid).map((r) => ({ sizeMiB: r.sizeMiB, round: r.round, arm: r.arm, attempt: r.attempt, stuckUntilMs: r.figures.stuckUntilMs })),
        runs: { columns: RECORD_COLUMNS, rows: records.map(recordRow) },
      }
    })
    await part('pressure', async () => {
      const pressure = await runPressure(config.pressure)
      Object.assign(estimates, pressure.ratios)
      // Its failed runs are recorded without a time.
      const back = pressure.runs.flatMap((run) => (run.method === 'killAndReap' && run.pressureToMemoryBackMs !== undefined ? [run.pressureToMemoryBackMs] : []))
      estimates.pressure_to_memory_back_ms = bootstrap(back.length, (picks) => median(picks.map((i) => back[i])), config.resamples, rand)
      results.pressure = pressure
    })
    // Last: its allocations against a full guest push page cache out.
    await part('shrinker', async () => {
      const shrinker = await runShrinker(config.shrinker, rand)
      Object.assign(estimates, shrinker.estimates)
      results.shrinker = shrinker.section
    })
    if (Object.keys(failedParts).length) results.failedParts = failedParts
  } finally {
    restoreRt()
    rmSync(config.filePath, { force: true })
  }
  // The product path's added time against a 1 MiB call that frees memory (bounds: mixed victim), else a clone's.
  const oneMiBCallUs = oneMiBCall(results)
  if (addedNs.length && oneMiBCallUs) {
    estimates.product_path_added_vs_1MiB_call = bootstrap(addedNs.length, (picks) => median(picks.map((i) => addedNs[i])) / (oneMiBCallUs.us * 1000), config.resamples, rand)
    ;(results.calls as Record<string, unknown>).oneMiBCall = oneMiBCallUs
  }
  const boot: Boot = {
    clock: config.clock,
    generatedAt: new Date().toISOString(),
    durationMs: Date.now() - startedAt,
    partMs,
    provenance: provenance(),
    settings: {
      ...config,
      system:
        'during the run: RT throttling off (sched_rt_runtime_us = -1, for the starving busy loops); during the memory part only, vm.percpu_pagelist_high_fraction = 100000 (per-CPU free lists of about 1 MiB, so that MemFree shows freed pages when they are freed; the other parts do not read MemFree and keep the default lists, since small ones push every free through the zone lock, a cost production does not pay and parallel reapers contend on); both restored after',
    },
    estimates,
    sections: results,
  }
  // bench/run boots one guest per clock and combines them on the host (main.js combine).
  const partial = process.env.PIDFD_REAP_BENCH_PARTIAL
  if (partial) {
    writeFileSync(partial, JSON.stringify(boot))
    log(`wrote this boot's results to ${partial} in ${((Date.now() - startedAt) / 60000).toFixed(1)} min`)
    return
  }
  writeArtifacts(combine([boot]), resultsDir)
  log(`wrote results.json, results.md and the charts to ${resultsDir} in ${((Date.now() - startedAt) / 60000).toFixed(1)} min`)
}

function oneMiBCall(results: Record<string, unknown>): { us: number; from: string } | null {
  const arms = (results.bounds as { arms?: Record<string, { p50Us: number }> } | undefined)?.arms
  if (arms?.['mixed-1MiB']) return { us: arms['mixed-1MiB'].p50Us, from: 'median 1 MiB call on the fresh mixed victim (bounds part, mixed-1MiB)' }
  const anon = (results.latency as { kinds?: Record<string, { caps: Record<string, { p50Us: number }> }> } | undefined)?.kinds?.anon
  if (anon) return { us: anon.caps[MiB].p50Us, from: 'median 1 MiB call on a clone of the anon victim (latency part)' }
  return null
}
