// Time from memory pressure to memory back (issue 8: "record the time from
// pressure to memory back in the benchmark"), the pressure daemon's path:
// a PSI trigger fires, the victim is killed, and its memory comes back.
//
// A round runs each method once, in a random order, each on a fresh setup in
// a cgroup v2 group of its own making, with two leaves, victim/ and filler/:
//   1. a victim (victims/hog.c) allocates victimMiB in victim/;
//   2. the group's memory.high is set to what it uses plus headroomMiB, and
//      a watcher arms "some <stallUs> <windowUs>" on its memory.pressure;
//   3. a filler allocates fillerMiB in filler/: beyond memory.high it is
//      throttled, which is a memory stall, and the trigger fires;
//   4. at the event (t0, when it reaches JS) the victim is killed:
//        killAndReap  killAndReap(pid) (TRY_REAP_KILL, or pidfd_send_signal +
//                     try_reap / process_mrelease on other kernels);
//        sigkill      pidfd_send_signal(SIGKILL) alone: memory comes back
//                     when the victim's exit frees it;
//   5. memory back (t1): victim/'s memory.current is down by 90 % of the
//      victim's touched bytes (read every millisecond from the kill on, the
//      same way for both methods; the filler, no longer throttled,
//      allocates in its own leaf meanwhile).
// pressure_to_memory_back_ms = t1 - t0. The ratio is the median of the
// rounds' killAndReap ÷ sigkill, with a bootstrap interval.
//
// Standalone, as root in the patched guest (prints one JSON object):
//   npx tsc -p bench/tsconfig.json && scripts/vm -- node bench/out/bench/pressure.js
// Knobs: PIDFD_REAP_BENCH_PRESSURE_ROUNDS (8), PIDFD_REAP_BENCH_PRESSURE_VICTIM_MIB
// (256), PIDFD_REAP_BENCH_PRESSURE_FILLER_MIB (64), PIDFD_REAP_BENCH_PRESSURE_HEADROOM_MIB
// (16), PIDFD_REAP_BENCH_SEED, PIDFD_REAP_BENCH_RESAMPLES (2000).
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { release } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { Pidfd, features, killAndReap, watchPressure, type PressureEvent, type ReapReport } from 'pidfd-reap'
import { fixtures, hogArgs, pinProcess, removeCgroupDir } from '../victims'
import { pairedRatio, random, round, shuffled, spread, type Estimate } from './stats'
import { envInt } from './env'

const MiB = 1024 * 1024
const CGROUP2 = '/sys/fs/cgroup'
const PSI = '/proc/pressure/memory'
export const PRESSURE_METHODS = ['killAndReap', 'sigkill'] as const
export type PressureMethod = (typeof PRESSURE_METHODS)[number]

export interface PressureConfig {
  rounds: number
  victimMiB: number
  fillerMiB: number
  headroomMiB: number
  /** The trigger: this much stall within the window, in microseconds. */
  stallUs: number
  windowUs: number
  /** Memory back once memory.current is down by this fraction of the victim's bytes. */
  backFraction: number
  /** Give up on a step after this long. */
  timeoutMs: number
  seed: number
  resamples: number
}

export function pressureConfig(env = process.env): PressureConfig {
  return {
    rounds: envInt(env, 'PIDFD_REAP_BENCH_PRESSURE_ROUNDS', 8),
    victimMiB: envInt(env, 'PIDFD_REAP_BENCH_PRESSURE_VICTIM_MIB', 256),
    fillerMiB: envInt(env, 'PIDFD_REAP_BENCH_PRESSURE_FILLER_MIB', 64),
    headroomMiB: envInt(env, 'PIDFD_REAP_BENCH_PRESSURE_HEADROOM_MIB', 16),
    stallUs: 50_000,
    windowUs: 500_000,
    backFraction: 0.9,
    timeoutMs: 30_000,
    seed: envInt(env, 'PIDFD_REAP_BENCH_SEED', Date.now() % 2 ** 31),
    resamples: envInt(env, 'PIDFD_REAP_BENCH_RESAMPLES', 2000),
  }
}

/** Why this part cannot run here, or null. */
export function pressureUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'needs root'
  if (!existsSync(PSI)) return `${PSI} is missing: the kernel has no PSI (CONFIG_PSI)`
  if (!existsSync(join(CGROUP2, 'cgroup.subtree_control'))) return `no cgroup v2 at ${CGROUP2}`
  if (!readFileSync(join(CGROUP2, 'cgroup.controllers'), 'utf8').split(/\s+/).includes('memory')) return 'no memory controller in cgroup v2'
  return null
}

export interface PressureRun {
  round: number
  method: PressureMethod
  /** Why the run failed (it is left out of the numbers, with its pair). */
  error?: string
  /** The victim's touched bytes (hog's ready line). */
  victimBytes?: number
  /** From the filler's start to the event in JS. */
  fillerToEventMs?: number
  /** From the event reaching JS to victim/'s memory.current down by backFraction of the victim's bytes. */
  pressureToMemoryBackMs?: number
  /** victim/'s memory.current at the kill and when it was back. */
  currentAtKill?: number
  currentBack?: number
  report?: Pick<ReapReport, 'mechanism' | 'bytesReaped' | 'calls' | 'elapsedMs' | 'exited' | 'stopReason'> & { killPath?: string }
}

export interface PressureResult {
  part: 'pressure'
  kernel: string
  features: ReturnType<typeof features>
  config: PressureConfig
  runs: PressureRun[]
  pressure_to_memory_back_ms: Record<PressureMethod, { min: number | null; median: number | null; max: number | null }>
  ratios: { pressure_to_memory_back_reap_vs_kill: Estimate }
}

function log(text: string): void {
  process.stderr.write(`bench pressure: ${text}\n`)
}

const readNumber = (path: string): number => Number(readFileSync(path, 'utf8').trim())

interface Started {
  child: ChildProcess
  pid: number
  bytes: number
  gone: Promise<void>
}

/** Starts hog inside `group` (its memory is charged there); resolves when it is ready. */
function startInGroup(group: string, mib: number): Promise<Started> {
  const child = spawn('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', group, fixtures().hog, ...hogArgs({ memory: mib })], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code, signal) => reject(new Error(`hog exited early: ${code ?? signal}`)))
    createInterface({ input: child.stdout! }).once('line', (line) => {
      const ready = /^ready (\d+) (\d+)$/.exec(line)
      if (ready) resolve({ child, pid: Number(ready[1]), bytes: Number(ready[2]), gone })
      else reject(new Error(`unexpected hog output: ${line}`))
    })
  })
}

/** Resolves with the first event, or rejects after `ms`. */
function firstEvent(watcher: ReturnType<typeof watchPressure>, ms: number): Promise<PressureEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no pressure event in ${ms} ms`)), ms)
    watcher.once('pressure', (event) => {
      clearTimeout(timer)
      resolve(event)
    })
    watcher.once('error', reject)
  })
}

async function run(config: PressureConfig, group: string, round: number, method: PressureMethod): Promise<PressureRun> {
  const victimCurrent = join(group, 'victim', 'memory.current')
  const victim = await startInGroup(join(group, 'victim'), config.victimMiB)
  // The victim on the other CPU than this process (CPU 0): its exit does not
  // wait for killAndReap's CPU, so killAndReap, not the exit, must win the reaping.
  pinProcess(1, victim.pid)
  let filler: Started | undefined
  const watcher = watchPressure({ cgroup: group, stallUs: config.stallUs, windowUs: config.windowUs })
  try {
    const high = readNumber(join(group, 'memory.current')) + config.headroomMiB * MiB
    writeFileSync(join(group, 'memory.high'), String(high))
    const event = firstEvent(watcher, config.timeoutMs)
    const fillerStart = performance.now()
    // The filler is throttled while it allocates: it is ready only after the kill.
    const fillerReady = startInGroup(join(group, 'filler'), config.fillerMiB).then((started) => (filler = started))
    await event
    const t0 = performance.now()
    const currentAtKill = readNumber(victimCurrent)
    const target = currentAtKill - config.backFraction * victim.bytes
    let reaping: Promise<ReapReport> | undefined
    if (method === 'killAndReap') {
      reaping = killAndReap(victim.pid)
    } else {
      using pidfd = Pidfd.open(victim.pid)
      pidfd.sendSignal('SIGKILL')
    }
    let current = currentAtKill
    while ((current = readNumber(victimCurrent)) > target) {
      if (performance.now() - t0 > config.timeoutMs) throw new Error(`${method}: memory not back in ${config.timeoutMs} ms`)
      await sleep(1) // not a busy loop: the victim's exit and the reaping need the CPUs
    }
    const t1 = performance.now()
    const report = reaping ? await reaping : undefined
    await fillerReady
    return {
      round,
      method,
      victimBytes: victim.bytes,
      fillerToEventMs: round3(t0 - fillerStart),
      pressureToMemoryBackMs: round3(t1 - t0),
      currentAtKill,
      currentBack: current,
      ...(report && {
        report: {
          mechanism: report.mechanism,
          bytesReaped: report.bytesReaped,
          calls: report.calls,
          elapsedMs: round3(report.elapsedMs),
          exited: report.exited,
          stopReason: report.stopReason,
          killPath: (report as ReapReport & { killPath?: string }).killPath,
        },
      }),
    }
  } finally {
    watcher.close()
    writeFileSync(join(group, 'memory.high'), 'max')
    victim.child.kill('SIGKILL')
    filler?.child.kill('SIGKILL')
    await victim.gone
    await filler?.gone
  }
}

const round3 = (value: number): number => round(value, 3)

/** Runs the part; throws if it cannot run here (see pressureUnavailable). */
export async function runPressure(config: PressureConfig = pressureConfig()): Promise<PressureResult> {
  const why = pressureUnavailable()
  if (why) throw new Error(`the pressure part cannot run: ${why}`)
  const control = join(CGROUP2, 'cgroup.subtree_control')
  if (!readFileSync(control, 'utf8').split(/\s+/).includes('memory')) writeFileSync(control, '+memory')
  const group = join(CGROUP2, `pidfd-reap-bench-pressure-${process.pid}`)
  mkdirSync(group)
  const rand = random(config.seed)
  const runs: PressureRun[] = []
  try {
    writeFileSync(join(group, 'cgroup.subtree_control'), '+memory')
    for (const leaf of ['victim', 'filler']) mkdirSync(join(group, leaf))
    for (let r = 0; r < config.rounds; r++) {
      for (const method of shuffled(PRESSURE_METHODS, rand)) {
        try {
          const result = await run(config, group, r, method)
          log(`round ${r} ${method}: memory back ${result.pressureToMemoryBackMs!.toFixed(1)} ms after the event (filler to event ${result.fillerToEventMs!.toFixed(0)} ms)`)
          runs.push(result)
        } catch (error) {
          // Recorded, and left out of the numbers (with its pair).
          log(`round ${r} ${method}: ${(error as Error).message}`)
          runs.push({ round: r, method, error: (error as Error).message })
        }
      }
    }
  } finally {
    for (const leaf of ['victim', 'filler']) await removeCgroupDir(join(group, leaf))
    await removeCgroupDir(group)
  }
  const back = (method: PressureMethod): (number | null)[] =>
    Array.from({ length: config.rounds }, (_, r) => runs.find((run) => run.round === r && run.method === method)?.pressureToMemoryBackMs ?? null)
  const reap = back('killAndReap')
  const kill = back('sigkill')
  return {
    part: 'pressure',
    kernel: release(),
    features: features(),
    config,
    runs,
    pressure_to_memory_back_ms: { killAndReap: spread(reap), sigkill: spread(kill) },
    ratios: {
      pressure_to_memory_back_reap_vs_kill: pairedRatio(
        reap.map((ms, i) => (ms !== null && kill[i] ? ms / kill[i]! : NaN)),
        config.resamples,
        rand,
      ),
    },
  }
}

if (require.main === module) {
  runPressure().then(
    (result) => process.stdout.write(`${JSON.stringify(result, null, 2)}\n`),
    (error) => {
      process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`)
      process.exitCode = 1
    },
  )
}
