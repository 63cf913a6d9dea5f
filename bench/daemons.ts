// `pidfd-reap daemon` side by side with earlyoom (issue 18), in the guest.
// One boot per daemon per workload (bench/run daemons boots them: each run is
// `node bench/out/bench/daemons.js run DAEMON WORKLOAD` as root in a fresh
// 2 GiB guest with 2 vCPUs). Both daemons get the same line, MemAvailable
// 300 MiB, and kill with SIGKILL at it (earlyoom: -M 307200,307200; its
// default SIGTERM first would be a different policy); both get
// oom_score_adj -1000, as a service unit would give them. Scope:
// pidfd-reap gets the workload's cgroup (--cgroup W); earlyoom, which only
// knows names, --prefer the workload's command names and --avoid the
// bystander's. Every workload has a bystander outside W holding 200 MiB.
//
// Workloads (guest memory T = MemTotal):
//   growers      4 growers in W, each up to 0.45 T (1.8 T in all)
//   outside-hog  2 members of W hold 0.15 T each; then a hog outside W
//                ("outsider") grows without a limit: the memory is taken
//                outside the cgroup
//   starved      in W, a victim holding 0.5 T pinned to CPU 1 as SCHED_FIFO 1
//                under a SCHED_FIFO 50 busy loop there (RT throttling off): once
//                killed it cannot run its exit until the loop ends; 2 growers
//                in W (CPU 0) up to 0.4 T each. The loop runs until the growers
//                settle, then 2 s more; the victim's CPU time (schedstat) over
//                that span shows it stayed starved
//   unit         the whole-unit case: W/batch.service has 6 growers, each up to
//                0.3 T (1.8 T in all), W/web.service one 100 MiB process;
//                pidfd-reap runs with --kill-cgroup
// Recorded for each: kernel OOM kills (vmstat oom_kill), whether the
// bystander lives, the daemon's kills, the lowest MemAvailable, the time
// below 5 % of MemTotal, each spell below the line (from crossing it to
// memory back above it), and the daemon's peak RSS (VmHWM), locked memory
// (VmLck) and CPU time from ready to the end. MemAvailable is sampled every
// 20 ms from this (Node) process.
//
//   main: daemons.js run DAEMON WORKLOAD   prints "RESULT <json>" (in the guest)
//         daemons.js collect DIR OUT.json  gathers the runs' outputs, writes OUT.json, prints the table
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { release } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  MiB,
  meminfo,
  pinProcess,
  projectRoot,
  removeCgroupDir,
  starveCpu,
  startGrower,
  startVictim,
  unthrottleRt,
  type Grower,
  type Starver,
  type Victim,
} from '../victims'

/**
 * pidfd-reap-machine: pidfd-reap with earlyoom's scope, the whole machine
 * (--cgroup /sys/fs/cgroup) and the same --prefer/--avoid (bench/run runs it
 * on outside-hog only).
 */
export const DAEMONS = ['pidfd-reap', 'earlyoom', 'pidfd-reap-machine'] as const
export type DaemonName = (typeof DAEMONS)[number]
export const WORKLOADS = ['growers', 'outside-hog', 'starved', 'unit'] as const
export type WorkloadName = (typeof WORKLOADS)[number]

const LINE_MIB = 300
const CGROUP2 = '/sys/fs/cgroup'
const BIN = join(projectRoot(), 'bin', 'pidfd-reap')
const SAMPLE_MS = 20
const TIMEOUT_MS = 240_000
/** Command names of the workload's processes (earlyoom's --prefer) and of the bystander (--avoid). */
const PREFER = '^(grow|victim|worker|web)$'
const AVOID = '^bystander$'

export interface Spell {
  /** ms from the start of the workload to crossing below the line */
  atMs: number
  /** ms from crossing below the line to MemAvailable back above it (null: still below at the end) */
  backMs: number | null
  /** lowest MemAvailable in the spell, MiB */
  lowestMiB: number
}

export interface DaemonRun {
  /** Which round of bench/run daemons (from the output's file name). */
  round?: number
  daemon: DaemonName
  workload: WorkloadName
  kernel: string
  memTotalMiB: number
  lineMiB: number
  daemonArgv: string[]
  /** vmstat oom_kill after minus before */
  oomKills: number
  bystanderAlive: boolean
  /** the daemon's kill decisions */
  kills: number
  /** distinct processes those kills ended (a --kill-cgroup kill ends a whole unit; a process killed twice counts once) */
  processesKilled: number
  lowestAvailableMiB: number
  msBelow5Percent: number
  spells: Spell[]
  /** longest spell below the line, ms (null: none ended) */
  longestBackMs: number | null
  daemonPeakRssMiB: number
  /** VmLck: the locked mappings, whole */
  daemonLockedMiB: number
  /** smaps_rollup Locked: what of them is in RAM */
  daemonLockedResidentMiB?: number
  /** CPU seconds of the daemon from ready to the end of the workload */
  daemonCpuSeconds: number
  workloadSeconds: number
  /** the daemon's exit status after SIGTERM (null: killed by a signal) */
  daemonExit: number | null
  /** starved: the victim's CPU time while starved (ns, /proc/<pid>/schedstat) and whether it stayed under 5 ms */
  starved?: { victimRunNs: number; stayedStarved: boolean; killedWhileStarved: boolean }
  /** what the daemon said about its kills (its JSON lines, or earlyoom's stderr lines) */
  killLines: string[]
  /** timed out waiting for the workload to settle */
  timedOut: boolean
}

const vmstat = (name: string): number => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(readFileSync('/proc/vmstat', 'utf8'))?.[1] ?? NaN)

function procStatus(pid: number, field: string, file = 'status'): number {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/${file}`, 'utf8'))
    return match ? Number(match[1]) * 1024 : NaN
  } catch {
    return NaN
  }
}

/** utime + stime in seconds (USER_HZ 100). */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return NaN
  }
}

function runNs(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0])
  } catch {
    return NaN
  }
}

interface RunningDaemon {
  child: ChildProcess
  argv: string[]
  killLines: string[]
  kills(): number
  processesKilled(): number
  exit: Promise<number | null>
}

/** Starts the daemon on `group`; resolves once it watches. */
async function startDaemon(daemon: DaemonName, group: string, workload: WorkloadName): Promise<RunningDaemon> {
  const lineKiB = LINE_MIB * 1024
  const argv =
    daemon === 'pidfd-reap'
      ? [BIN, 'daemon', '--cgroup', group, '--min-available', `${LINE_MIB}M`, ...(workload === 'unit' ? ['--kill-cgroup'] : [])]
      : daemon === 'pidfd-reap-machine'
        ? [BIN, 'daemon', '--cgroup', CGROUP2, '--min-available', `${LINE_MIB}M`, '--prefer', PREFER, '--avoid', AVOID]
        : ['-M', `${lineKiB},${lineKiB}`, '-r', '0', '--prefer', PREFER, '--avoid', AVOID]
  const ours = daemon !== 'earlyoom'
  const child = ours ? spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] }) : spawn('earlyoom', argv, { stdio: ['ignore', 'pipe', 'pipe'] })
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const killLines: string[] = []
  let processes = 0
  const ready = new Promise<void>((resolve, reject) => {
    setTimeout(() => reject(new Error(`${daemon} did not say it was ready within 120 s`)), 120_000).unref()
    child.once('error', reject)
    child.once('exit', (code) => reject(new Error(`${daemon} exited at once: ${code}`)))
    if (ours) {
      createInterface({ input: child.stdout! }).on('line', (text) => {
        const line = JSON.parse(text) as { event: string; members?: unknown[] }
        if (line.event === 'start') resolve()
        if (line.event === 'kill' || line.event === 'kill-failed' || line.event === 'error') killLines.push(text)
        if (line.event === 'kill') processes += line.members?.length ?? 1
      })
      child.stderr!.on('data', (data: Buffer) => process.stderr.write(`pidfd-reap: ${data}`))
    } else {
      child.stdout!.resume()
      createInterface({ input: child.stderr! }).on('line', (text) => {
        // The last line of its settings: "        SIGKILL when mem <= ...".
        if (/^\s*SIGKILL when mem/.test(text)) resolve()
        if (/^sending SIG|^kill failed|^escalating/.test(text)) killLines.push(text)
        if (/^sending SIG\w+ to process/.test(text)) processes++
      })
    }
  })
  try {
    await ready
  } catch (error) {
    child.kill('SIGKILL')
    throw error
  }
  writeFileSync(`/proc/${child.pid}/oom_score_adj`, '-1000')
  await sleep(500)
  return {
    child,
    argv: ours ? argv.slice(1) : argv,
    killLines,
    kills: () => killLines.filter((text) => (ours ? JSON.parse(text).event === 'kill' : /^sending SIG\w+ to process/.test(text))).length,
    processesKilled: () => processes,
    exit,
  }
}

/** Samples MemAvailable every SAMPLE_MS: the lowest, time below 5 %, spells below the line. */
class Sampler {
  readonly spells: Spell[] = []
  lowest = Infinity
  msBelow5 = 0
  #timer: NodeJS.Timeout
  #last = performance.now()
  #spell: Spell | undefined
  #spellStart = 0
  readonly #start = performance.now()

  constructor(
    readonly total: number,
    readonly line: number,
    readonly onSample: () => void = () => {},
  ) {
    this.#timer = setInterval(() => this.sample(), SAMPLE_MS)
  }

  sample(): void {
    const at = performance.now()
    const available = meminfo('MemAvailable')
    if (available < 0.05 * this.total) this.msBelow5 += at - this.#last
    this.#last = at
    this.lowest = Math.min(this.lowest, available)
    if (available < this.line) {
      if (!this.#spell) {
        this.#spell = { atMs: Math.round(at - this.#start), backMs: null, lowestMiB: Math.round(available / MiB) }
        this.#spellStart = at
        this.spells.push(this.#spell)
      }
      this.#spell.lowestMiB = Math.min(this.#spell.lowestMiB, Math.round(available / MiB))
    } else if (this.#spell) {
      this.#spell.backMs = Math.round(at - this.#spellStart)
      this.#spell = undefined
    }
    this.onSample()
  }

  stop(): void {
    clearInterval(this.#timer)
    this.sample()
  }
}

async function settle(promises: Promise<unknown>[], timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const timedOut = await Promise.race([
    Promise.all(promises).then(() => false),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs))),
  ])
  clearTimeout(timer)
  return timedOut
}

export async function runOne(daemon: DaemonName, workload: WorkloadName): Promise<DaemonRun> {
  if (process.getuid?.() !== 0) throw new Error('needs root (in the guest)')
  const total = meminfo('MemTotal')
  const group = join(CGROUP2, `bench-daemons-${process.pid}`)
  mkdirSync(group)
  const cleanups: (() => Promise<void> | void)[] = [() => removeCgroupDir(group, 1000)]
  const processes: { child: ChildProcess; gone: Promise<void> }[] = []
  const track = <T extends { child: ChildProcess; gone: Promise<void> }>(p: T): T => (processes.push(p), p)
  try {
    const bystander = track(await startVictim({ memory: 200, name: 'bystander' }))
    const oomBefore = vmstat('oom_kill')
    let starver: Starver | undefined
    let victim: Victim | undefined
    if (workload === 'starved') {
      pinProcess(0) // this process and all it starts from now on (the daemon too) stay off the starved CPU
      cleanups.unshift(unthrottleRt())
    }
    const leaf = (name: string): string => {
      const dir = join(group, name)
      mkdirSync(dir)
      cleanups.unshift(() => removeCgroupDir(dir, 1000))
      return dir
    }
    if (workload === 'unit') {
      // Each leaf its own memory.current (what --kill-cgroup ranks by): the controller down to them.
      for (const dir of [CGROUP2, group]) {
        const control = join(dir, 'cgroup.subtree_control')
        if (!readFileSync(control, 'utf8').split(/\s+/).includes('memory')) writeFileSync(control, '+memory')
      }
    }
    const members = workload === 'unit' ? leaf('batch.service') : group
    const running = await startDaemon(daemon, group, workload)
    cleanups.unshift(() => void running.child.kill('SIGKILL'))
    const cpuAtReady = cpuSeconds(running.child.pid!)
    let starvedFrom = NaN
    let victimRun = NaN
    let victimKilledStarved: boolean
    const sampler = new Sampler(total, LINE_MIB * MiB, () => {
      if (victim && starver && !Number.isNaN(starvedFrom)) {
        const now = runNs(victim.pid)
        if (!Number.isNaN(now)) victimRun = now - starvedFrom
      }
    })
    const started = performance.now()
    const growers: Grower[] = []
    const T = total / MiB
    if (workload === 'growers') {
      for (let i = 0; i < 4; i++) growers.push(track(await startGrower({ cgroup: members, stepMiB: 16, intervalMs: 20, maxMiB: Math.round(0.45 * T) })))
    } else if (workload === 'outside-hog') {
      for (let i = 0; i < 2; i++) track(await startVictim({ memory: Math.round(0.15 * T), cgroup: members, name: 'grow' }))
      growers.push(track(await startGrower({ stepMiB: 16, intervalMs: 20, maxMiB: 0, name: 'outsider' })))
    } else if (workload === 'starved') {
      victim = track(await startVictim({ memory: Math.round(0.5 * T), cgroup: members, name: 'victim', cpu: 1, fifo: 1 }))
      starver = await starveCpu(1, 600)
      cleanups.unshift(() => starver!.stop())
      starvedFrom = runNs(victim.pid)
      victimRun = 0
      for (let i = 0; i < 2; i++) growers.push(track(await startGrower({ cgroup: members, stepMiB: 16, intervalMs: 20, maxMiB: Math.round(0.4 * T) })))
    } else {
      track(await startVictim({ memory: 100, cgroup: leaf('web.service'), name: 'web' }))
      for (let i = 0; i < 6; i++) growers.push(track(await startGrower({ cgroup: members, stepMiB: 8, intervalMs: 20, maxMiB: Math.round(0.3 * T) })))
    }
    // Each grower ends holding its share or gone (killed); the outsider only gone.
    const timedOut = await settle(
      growers.map((g) => (workload === 'outside-hog' ? g.gone : Promise.race([g.held, g.gone]))),
      TIMEOUT_MS,
    )
    await sleep(2000)
    let starved: DaemonRun['starved']
    if (starver && victim) {
      victimKilledStarved = isKilled(victim.pid)
      const ran = victimRun
      await starver.stop()
      starved = { victimRunNs: ran, stayedStarved: ran < 5e6, killedWhileStarved: victimKilledStarved }
    }
    const workloadSeconds = (performance.now() - started) / 1000
    sampler.stop()
    const pid = running.child.pid!
    const peak = procStatus(pid, 'VmHWM')
    const locked = procStatus(pid, 'VmLck')
    const lockedResident = procStatus(pid, 'Locked', 'smaps_rollup')
    const cpu = cpuSeconds(pid) - cpuAtReady
    running.child.kill('SIGTERM')
    const daemonExit = await running.exit
    const result: DaemonRun = {
      daemon,
      workload,
      kernel: release(),
      memTotalMiB: Math.round(T),
      lineMiB: LINE_MIB,
      daemonArgv: running.argv,
      oomKills: vmstat('oom_kill') - oomBefore,
      bystanderAlive: bystander.child.exitCode === null && bystander.child.signalCode === null,
      kills: running.kills(),
      processesKilled: running.processesKilled(),
      lowestAvailableMiB: Math.round(sampler.lowest / MiB),
      msBelow5Percent: Math.round(sampler.msBelow5),
      spells: sampler.spells,
      longestBackMs: sampler.spells.some((s) => s.backMs !== null) ? Math.max(...sampler.spells.map((s) => s.backMs ?? 0)) : null,
      daemonPeakRssMiB: Math.round((peak / MiB) * 10) / 10,
      daemonLockedMiB: Math.round((locked / MiB) * 10) / 10,
      daemonLockedResidentMiB: Math.round((lockedResident / MiB) * 10) / 10,
      daemonCpuSeconds: Math.round(cpu * 100) / 100,
      workloadSeconds: Math.round(workloadSeconds * 10) / 10,
      daemonExit,
      ...(starved && { starved }),
      killLines: running.killLines,
      timedOut,
    }
    return result
  } finally {
    for (const p of processes) p.child.kill('SIGKILL')
    await Promise.all(processes.map((p) => p.gone))
    for (const cleanup of cleanups) await cleanup()
  }
}

/** A task with a SIGKILL pending (/proc/<pid>/status SigPnd or ShdPnd bit 9) or already exiting. */
function isKilled(pid: number): boolean {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const pending = ['SigPnd', 'ShdPnd'].map((field) => BigInt(`0x${new RegExp(`^${field}:\\s+([0-9a-f]+)$`, 'm').exec(status)?.[1] ?? '0'}`))
    return pending.some((mask) => (mask & (1n << 8n)) !== 0n) || /^State:\s+[XZ]/m.test(status)
  } catch {
    return false
  }
}

// ---------------------------------------------------------------------------
// The table

const yes = (value: boolean): string => (value ? 'yes' : '**no**')

export function table(runs: DaemonRun[]): string {
  const rows = [
    '| workload | daemon | round | kernel OOM kills | bystander alive | kills (processes) | lowest MemAvailable | time below 5 % | spells below the line: back after | peak RSS | locked in RAM (VmLck) | CPU |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ]
  for (const run of runs) {
    const spells = run.spells.length === 0 ? 'none' : run.spells.map((s) => (s.backMs === null ? 'not back' : `${s.backMs} ms`)).join(', ')
    rows.push(
      `| ${run.workload} | ${run.daemon} | ${run.round ?? 1} | ${run.oomKills} | ${yes(run.bystanderAlive)} | ${run.kills} (${run.processesKilled}) | ${run.lowestAvailableMiB} MiB | ${run.msBelow5Percent} ms | ${spells} | ${run.daemonPeakRssMiB} MiB | ${run.daemonLockedResidentMiB ?? '?'} MiB (${run.daemonLockedMiB}) | ${run.daemonCpuSeconds} s |`,
    )
  }
  return rows.join('\n')
}

/** A daemon's runs of one workload pooled, each figure at its worst over the rounds. */
function worst(runs: DaemonRun[]) {
  const back = (r: DaemonRun): number => (r.spells.length === 0 ? 0 : r.spells.some((s) => s.backMs === null) ? Infinity : Math.max(...r.spells.map((s) => s.backMs!)))
  return {
    oomKills: Math.max(...runs.map((r) => r.oomKills)),
    bystanderAlive: runs.every((r) => r.bystanderAlive),
    lowestAvailableMiB: Math.min(...runs.map((r) => r.lowestAvailableMiB)),
    kills: Math.max(...runs.map((r) => r.kills)),
    processesKilled: Math.max(...runs.map((r) => r.processesKilled)),
    longestBackMs: Math.max(...runs.map(back)),
    peakRssMiB: Math.max(...runs.map((r) => r.daemonPeakRssMiB)),
  }
}

/**
 * Per workload, the goals of issue 18, pidfd-reap against earlyoom, each
 * daemon's figures at their worst over the rounds. memoryBackSooner is null
 * when neither went below the line.
 */
export function goals(runs: DaemonRun[]): Record<string, Record<string, boolean | null>> {
  const out: Record<string, Record<string, boolean | null>> = {}
  for (const workload of WORKLOADS) {
    for (const variant of ['pidfd-reap', 'pidfd-reap-machine'] as const) {
      const of = (daemon: DaemonName): DaemonRun[] => runs.filter((r) => r.workload === workload && r.daemon === daemon)
      if (of(variant).length === 0 || of('earlyoom').length === 0) continue
      const ours = worst(of(variant))
      const theirs = worst(of('earlyoom'))
      out[variant === 'pidfd-reap' ? workload : `${workload} (pidfd-reap machine-wide)`] = {
        noKernelOomKill: ours.oomKills === 0,
        bystanderAlive: ours.bystanderAlive,
        floorAtLeastEarlyoom: ours.lowestAvailableMiB >= theirs.lowestAvailableMiB,
        noMoreKillsThanEarlyoom: ours.kills <= theirs.kills,
        noMoreProcessesKilledThanEarlyoom: ours.processesKilled <= theirs.processesKilled,
        memoryBackSooner: ours.longestBackMs === 0 && theirs.longestBackMs === 0 ? null : ours.longestBackMs < theirs.longestBackMs,
        peakRssAtMost60MiB: ours.peakRssMiB <= 60,
      }
    }
  }
  return out
}

/**
 * The processes a run's kills ended, each once: a daemon that kills a dying
 * process again (earlyoom after its wait timed out; pidfd-reap picking the
 * same starved victim again to reap more of it) ends no more processes.
 */
export function distinctKilled(run: DaemonRun): number {
  const pids = new Set<number>()
  for (const text of run.killLines) {
    if (run.daemon === 'earlyoom') {
      const match = /^sending SIG\w+ to process (\d+)/.exec(text)
      if (match) pids.add(Number(match[1]))
      continue
    }
    const line = JSON.parse(text) as { event: string; victim?: { pid: number }; unit?: { members: { pid: number }[] } }
    if (line.event !== 'kill') continue
    for (const pid of line.unit ? line.unit.members.map((m) => m.pid) : [line.victim!.pid]) pids.add(pid)
  }
  return pids.size
}

function collect(dir: string, outFile: string): void {
  const runs: DaemonRun[] = []
  const failed: { file: string; error: string }[] = []
  for (const file of readdirSync(dir).sort()) {
    if (!file.endsWith('.out')) continue
    const line = readFileSync(join(dir, file), 'utf8').split('\n').find((l) => l.startsWith('RESULT '))
    const round = Number(/-(\d+)\.out$/.exec(file)?.[1] ?? 1)
    if (line) runs.push({ round, ...(JSON.parse(line.slice(7)) as DaemonRun) })
    else failed.push({ file, error: 'no RESULT line (see the .err file beside it)' })
  }
  for (const run of runs) run.processesKilled = distinctKilled(run)
  runs.sort((a, b) => WORKLOADS.indexOf(a.workload) - WORKLOADS.indexOf(b.workload) || DAEMONS.indexOf(a.daemon) - DAEMONS.indexOf(b.daemon) || a.round! - b.round!)
  const data = {
    part: 'daemons',
    measured: new Date().toISOString(),
    accel: process.env.PIDFD_REAP_BENCH_ACCEL ?? 'tcg',
    guest: { memory: '2G', cpus: 2 },
    // The bzImage the guests booted (bench/run passes it).
    kernelBuild: process.env.PIDFD_REAP_BENCH_KERNEL ?? null,
    // earlyoom -v prints its version on stderr.
    earlyoom: (({ stdout, stderr }) => `${stdout}${stderr}`.trim())(spawnSync('earlyoom', ['-v'], { encoding: 'utf8' })),
    gitCommit: process.env.PIDFD_REAP_BENCH_GIT_COMMIT ?? null,
    runs,
    failed,
    goals: goals(runs),
  }
  writeFileSync(outFile, `${JSON.stringify(data, null, 2)}\n`)
  process.stdout.write(`${table(runs)}\n\n${JSON.stringify(data.goals, null, 2)}\n`)
}

async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'run' && DAEMONS.includes(argv[1] as DaemonName) && WORKLOADS.includes(argv[2] as WorkloadName)) {
    const run = await runOne(argv[1] as DaemonName, argv[2] as WorkloadName)
    process.stdout.write(`RESULT ${JSON.stringify(run)}\n`)
    return 0
  }
  if (argv[0] === 'collect' && argv.length === 3 && existsSync(argv[1])) {
    collect(argv[1], argv[2])
    return 0
  }
  process.stderr.write(`usage: daemons.js run ${DAEMONS.join('|')} ${WORKLOADS.join('|')} | collect DIR OUT.json\n`)
  return 2
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (error) => {
      process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`)
      process.exitCode = 1
    },
  )
}
