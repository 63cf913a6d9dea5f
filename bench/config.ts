// Every setting of `npm run bench`, with its environment knob (bench/run
// passes PIDFD_REAP_* into the guest). The defaults are what the published
// results use; any knob set is recorded in results.json and shown in
// results.md as an override.
import { parseShares, type MixShares } from '../victims'
import { ConfigError, envClock, envList, envNumber, type Clock } from './env'
import { boundsConfig, type BoundsConfig } from './bounds'
import type { CallsConfig } from './calls'
import type { LatencyConfig } from './latency'
import type { MemoryConfig } from './memory'
import { pressureConfig, type PressureConfig } from './pressure'
import { shrinkerConfig, type ShrinkerConfig } from './shrinker'

const MiB = 1024 * 1024
export const PARTS = ['memory', 'latency', 'calls', 'bounds', 'pressure', 'shrinker'] as const
export type Part = (typeof PARTS)[number]
/**
 * The parts of each clock (bench/run boots one guest per clock). icount: the
 * comparisons whose sides need one CPU at a time; wall: what needs two CPUs
 * at once (bounds: one reaper against two; memory: a victim starved on the
 * other CPU; pressure: the victim pinned to the other CPU).
 */
export const CLOCK_PARTS: Record<Clock, Part[]> = { icount: ['calls', 'latency', 'bounds', 'shrinker'], wall: ['memory', 'bounds', 'pressure'] }

export interface BenchConfig {
  clock: Clock
  seed: number
  resamples: number
  parts: Part[]
  memory: MemoryConfig
  latency: LatencyConfig
  calls: CallsConfig
  bounds: BoundsConfig
  shrinker: ShrinkerConfig
  pressure: PressureConfig
  /** The tmpfs file the victims' private-file part maps; its page cache stays for the whole run. */
  filePath: string
  /** PIDFD_REAP_* variables set for this run (the overrides). */
  overrides: Record<string, string>
}

function parseSizes(text: string): number[] {
  return text.split(',').map((part) => {
    const match = /^(\d+)([MG])?$/i.exec(part.trim())
    if (!match) throw new ConfigError(`bad size '${part}' in PIDFD_REAP_BENCH_SIZES (e.g. 256M,1G)`)
    return Number(match[1]) * (match[2]?.toUpperCase() === 'G' ? 1024 : 1)
  })
}

/** The clock's parts, or those of them PIDFD_REAP_BENCH_ONLY names (a part of the other clock is not run in this boot). */
function parseParts(text: string | undefined, clock: Clock): Part[] {
  const own = CLOCK_PARTS[clock]
  if (!text) return [...own]
  const parts = text.split(',').map((p) => p.trim())
  for (const p of parts) if (!(PARTS as readonly string[]).includes(p)) throw new ConfigError(`PIDFD_REAP_BENCH_ONLY=${text}: parts are ${PARTS.join(', ')}`)
  return own.filter((p) => parts.includes(p))
}

function sharesOf(text: string): MixShares {
  try {
    return parseShares(text)
  } catch (error) {
    throw new ConfigError(`PIDFD_REAP_BENCH_MIX=${text}: ${(error as Error).message}`)
  }
}

export function benchConfig(env = process.env): BenchConfig {
  const rounds = envNumber(env, 'PIDFD_REAP_BENCH_ROUNDS', 15)
  const warmup = envNumber(env, 'PIDFD_REAP_BENCH_WARMUP', 1)
  const resamples = envNumber(env, 'PIDFD_REAP_BENCH_RESAMPLES', 2000)
  const seed = envNumber(env, 'PIDFD_REAP_BENCH_SEED', Date.now() % 2 ** 31)
  const filePath = '/dev/shm/pidfd-reap-bench-file'
  const clock = envClock(env)
  // icount: one vCPU, everything on CPU 0; wall: the measured side on CPU 1, the driver on CPU 0.
  const cpu = clock === 'icount' ? 0 : 1
  const shares: MixShares = env.PIDFD_REAP_BENCH_MIX ? sharesOf(env.PIDFD_REAP_BENCH_MIX) : { anon: 2, thp: 1, file: 1 }
  const overrides = Object.fromEntries(
    Object.entries(env).filter(([k, v]) => /^PIDFD_REAP_(BENCH|BOUNDS)_/.test(k) && v !== undefined && !INFORMATIONAL.has(k)),
  ) as Record<string, string>
  return {
    clock,
    seed,
    resamples,
    parts: parseParts(env.PIDFD_REAP_BENCH_ONLY, clock),
    filePath,
    overrides,
    memory: {
      sizesMiB: parseSizes(env.PIDFD_REAP_BENCH_SIZES || '256M'),
      rounds,
      warmup,
      shares,
      chunkMiB: 16,
      sweepMs: envList(env, 'PIDFD_REAP_BENCH_SWEEP_MS', [500, 1000, 2000, 5000, 10000]),
      sweepOwnRunBelowMs: envNumber(env, 'PIDFD_REAP_BENCH_SWEEP_OWN_RUN_BELOW_MS', 2000),
      sampleUs: envNumber(env, 'PIDFD_REAP_BENCH_SAMPLE_US', 1000),
      arms: env.PIDFD_REAP_BENCH_ARMS ? env.PIDFD_REAP_BENCH_ARMS.split(';').map((id) => id.trim()) : undefined,
      maxAttempts: 3,
      resamples,
      filePath,
    },
    latency: {
      parentMiB: envNumber(env, 'PIDFD_REAP_BENCH_CLONE_MIB', 512),
      caps: [
        { bytes: 1 * MiB, minCalls: envNumber(env, 'PIDFD_REAP_BENCH_P99_CALLS', 1000) },
        { bytes: 16 * MiB, minCalls: Math.ceil(envNumber(env, 'PIDFD_REAP_BENCH_P99_CALLS', 1000) / 4) },
        // Each 64 MiB call frees 64 MiB the clone populated first: a quarter as many calls.
        { bytes: 64 * MiB, minCalls: Math.ceil(envNumber(env, 'PIDFD_REAP_BENCH_P99_CALLS', 1000) / 4) },
      ],
      cpu,
      resamples,
      filePath,
      minClones: 8,
      maxClones: 400,
    },
    calls: {
      rounds,
      warmup: Math.max(1, warmup),
      batch: envNumber(env, 'PIDFD_REAP_BENCH_CALLS', 2000),
      asyncBatch: Math.ceil(envNumber(env, 'PIDFD_REAP_BENCH_CALLS', 2000) / 10),
    },
    bounds: boundsConfig({ clock, rounds, warmup, resamples, filePath }, env),
    shrinker: shrinkerConfig({ rounds, warmup, resamples, cpu }, env),
    pressure: pressureConfigOf(rounds, seed, resamples, env),
  }
}

/** The pressure part's settings, with the run's seed and resamples, and at most its rounds. */
function pressureConfigOf(rounds: number, seed: number, resamples: number, env: NodeJS.ProcessEnv): PressureConfig {
  const own = pressureConfig(env)
  return { ...own, rounds: Math.min(rounds, own.rounds), seed, resamples }
}

/** Set by bench/run to describe the run, not to change it. */
const INFORMATIONAL = new Set(['PIDFD_REAP_BENCH_CLOCK', 'PIDFD_REAP_BENCH_PARTIAL', 'PIDFD_REAP_BENCH_QEMU_VERSION', 'PIDFD_REAP_BENCH_ACCEL', 'PIDFD_REAP_BENCH_HOST', 'PIDFD_REAP_BENCH_GIT_COMMIT', 'PIDFD_REAP_BENCH_GIT_DIRTY', 'PIDFD_REAP_BENCH_KERNEL'])

/** MiB the shared file needs: the largest private-file part of any victim. */
export function fileMiB(config: BenchConfig): number {
  const { anon, thp, file } = config.memory.shares
  const share = file / (anon + thp + file)
  return Math.ceil(Math.max(config.latency.parentMiB, config.bounds.bigMiB / 4, ...config.memory.sizesMiB.map((s) => s * share)))
}
