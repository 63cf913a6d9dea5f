// Victims: sacrificial processes holding real memory, and the situations that
// keep a killed one from exiting. The one place for this logic, used by the
// host and guest tests, the benchmark (bench/) and the demo: a module of its
// own (with its C programs hog.c and spin.c beside it) so that none of them
// reaches into another's directory.
//
// - plain:   an ordinary victim; once killed it exits as soon as it can.
// - starved: the victim is pinned to a CPU next to a SCHED_FIFO busy loop
//            (RT throttling off), so after SIGKILL it cannot run its exit.
//            By default the victim itself is SCHED_FIFO at priority 1, below
//            the loop's 50: Linux 6.12's deferred fair server (50 ms every
//            second for SCHED_OTHER tasks, not switchable without debugfs)
//            would otherwise let a SCHED_OTHER victim run ~1 s after the kill,
//            and sooner when other tasks wake up on that CPU.
// - frozen:  the victim is frozen in a cgroup v1 freezer; a task frozen there
//            stays frozen after SIGKILL (as Android's cached apps do).
//
// Imports nothing from src/: the benchmark runs this compiled, next to the
// built package.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'

export const MiB = 1024 * 1024

/** The project root: the nearest directory up from here with pidfd-reap's package.json. */
export function projectRoot(from: string = __dirname): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json')
    if (existsSync(manifest) && JSON.parse(readFileSync(manifest, 'utf8')).name === 'pidfd-reap') return dir
    if (dirname(dir) === dir) throw new Error(`no pidfd-reap package.json above ${from}`)
  }
}

/** Where the C sources of the victims are (found from the compiled benchmark too). */
export const VICTIMS_DIR = join(projectRoot(), 'victims')

let buildDir: string | undefined
const compiled = new Map<string, string>()

/**
 * gcc -O2 a C file into this process's temp dir, once (the guest's root is
 * read-only; /tmp is not). Returns the executable's path.
 */
export function compileC(source: string, extra: string[] = []): string {
  const known = compiled.get(source)
  if (known) return known
  buildDir ??= mkdtempSync(join(tmpdir(), 'pidfd-reap-fixtures-'))
  const out = join(buildDir, source.replace(/^.*\//, '').replace(/\.c$/, ''))
  execFileSync('gcc', ['-O2', '-Wall', '-o', out, source, ...extra])
  compiled.set(source, out)
  return out
}

/** The victim and busy-loop executables. */
export function fixtures(): { hog: string; spin: string } {
  return {
    hog: compileC(join(VICTIMS_DIR, 'hog.c'), ['-pthread']),
    spin: compileC(join(VICTIMS_DIR, 'spin.c')),
  }
}

export interface Victim {
  child: ChildProcess
  pid: number
  /** Bytes of memory the victim touched (0 for a sleeper). */
  heldBytes: number
  /** Resolves once the child is gone (and reaped by Node). */
  gone: Promise<void>
}

/** What a victim holds, in MiB of each kind. */
export interface MemoryMix {
  /** Private anonymous memory in 4 KiB pages. */
  anonMiB: number
  /** Private anonymous memory in transparent huge pages (MADV_HUGEPAGE, 2 MiB aligned). */
  thpMiB: number
  /** A MAP_PRIVATE mapping of a tmpfs file, every page written (copy-on-write anonymous). */
  fileMiB: number
}

/** Fractions of each kind; they need not add up to 1 (they are normalised). */
export interface MixShares {
  anon: number
  thp: number
  file: number
}

export const DEFAULT_SHARES: MixShares = { anon: 0.5, thp: 0.25, file: 0.25 }

/**
 * Splits `totalMiB` by shares; THP amounts are rounded to 2 MiB and the anon
 * kind takes the rounding rest, so the parts add up to totalMiB.
 */
export function mixOf(totalMiB: number, shares: MixShares = DEFAULT_SHARES): MemoryMix {
  const sum = shares.anon + shares.thp + shares.file
  if (!(sum > 0) || [shares.anon, shares.thp, shares.file].some((s) => s < 0)) {
    throw new RangeError(`bad memory mix shares ${JSON.stringify(shares)}`)
  }
  const thpMiB = Math.floor((totalMiB * shares.thp) / sum / 2) * 2
  const fileMiB = Math.floor((totalMiB * shares.file) / sum)
  return { anonMiB: totalMiB - thpMiB - fileMiB, thpMiB, fileMiB }
}

/** Parses "anon=2,thp=1,file=1" (any subset; missing kinds are 0). */
export function parseShares(text: string): MixShares {
  const shares: MixShares = { anon: 0, thp: 0, file: 0 }
  for (const part of text.split(',')) {
    const [kind, value] = part.split('=')
    if (!(kind in shares) || !/^\d+(\.\d+)?$/.test(value ?? '')) throw new RangeError(`bad memory mix '${text}'`)
    shares[kind as keyof MixShares] = Number(value)
  }
  return shares
}

export interface HogOptions {
  /** The memory to hold; a number is that many MiB of private anonymous memory. */
  memory: number | Partial<MemoryMix>
  /** Pin the victim to this CPU. */
  cpu?: number
  /** A second thread keeps taking the mmap_lock for write (provokes EBUSY). */
  mprotect?: boolean
  /** Once ready, run as SCHED_FIFO at this priority (0 or absent: SCHED_OTHER). */
  fifo?: number
  /** tmpfs directory for the file-backed kind (default /dev/shm); its page cache goes with the victim's exit. */
  fileDir?: string
  /**
   * An existing file (at least fileMiB) to map privately instead: its page
   * cache outlives the victim, so the victim holds only memory that reaping
   * can return (the benchmark's victims).
   */
  filePath?: string
  uid?: number
  /** Start it in this cgroup (v2 directory): it joins before it allocates anything. */
  cgroup?: string
  /** Run it under this command name (/proc/<pid>/comm, what earlyoom's --prefer/--avoid match): through a symlink so named. */
  name?: string
}

/** The hog command line for these options. */
export function hogArgs(options: HogOptions): string[] {
  const mix: Partial<MemoryMix> = typeof options.memory === 'number' ? { anonMiB: options.memory } : options.memory
  const args = [String(mix.anonMiB ?? 0)]
  if (mix.thpMiB) args.push('--thp', String(mix.thpMiB))
  if (mix.fileMiB) args.push('--file', String(mix.fileMiB))
  if (options.fileDir) args.push('--file-dir', options.fileDir)
  if (options.filePath) args.push('--file-path', options.filePath)
  if (options.cpu !== undefined) args.push('--cpu', String(options.cpu))
  if (options.fifo) args.push('--fifo', String(options.fifo))
  if (options.mprotect) args.push('--mprotect')
  return args
}

/** `exe` under the command name `name` (a symlink beside it), or `exe` itself. */
function named(exe: string, name: string | undefined): string {
  if (name === undefined || name === exe.replace(/^.*\//, '')) return exe
  if (!/^[\w.-]{1,15}$/.test(name)) throw new RangeError(`bad command name '${name}'`)
  const link = join(dirname(exe), name)
  if (!existsSync(link)) symlinkSync(exe, link)
  return link
}

/**
 * Spawns `exe args` (stdout piped), first moved into `cgroup` if given: a
 * shell joins the cgroup, then becomes the program, which so allocates
 * nothing outside it.
 */
function spawnIn(exe: string, args: string[], cgroup: string | undefined, extra: { uid?: number } = {}): ChildProcess {
  const options = { stdio: ['ignore', 'pipe', 'inherit'] as ['ignore', 'pipe', 'inherit'], ...extra }
  if (cgroup === undefined) return spawn(exe, args, options)
  return spawn('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, exe, ...args], options)
}

/** Starts a victim holding touched memory; resolves once it is ready. */
export function startVictim(options: HogOptions): Promise<Victim> {
  const spawnOptions = options.uid === undefined ? {} : { uid: options.uid }
  const child = spawnIn(named(fixtures().hog, options.name), hogArgs(options), options.cgroup, spawnOptions)
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code, signal) => reject(new Error(`hog exited early: ${code ?? signal}`)))
    const lines = createInterface({ input: child.stdout! })
    lines.once('line', (line) => {
      const ready = /^ready (\d+) (\d+)$/.exec(line)
      if (ready) resolve({ child, pid: child.pid!, heldBytes: Number(ready[2]), gone })
      else reject(new Error(`unexpected hog output: ${line}`))
    })
  })
}

/** Starts a process holding `mib` MiB of touched anonymous memory (hog's historical form). */
export function startHog(mib: number, args: string[] = [], options: { uid?: number } = {}): Promise<Victim> {
  const cpuAt = args.indexOf('--cpu')
  return startVictim({
    memory: mib,
    cpu: cpuAt >= 0 ? Number(args[cpuAt + 1]) : undefined,
    mprotect: args.includes('--mprotect'),
    ...options,
  })
}

/** A process that grows (test/fixtures/grow.c), started by startGrower. */
export interface Grower {
  child: ChildProcess
  pid: number
  /** Resolves with the MiB held once it stopped growing (never, if killed first). */
  held: Promise<number>
  gone: Promise<void>
}

export interface GrowerOptions {
  /** MiB allocated (and touched) at each step... */
  stepMiB: number
  /** ...every this many milliseconds... */
  intervalMs: number
  /** ...up to this many MiB (0: no limit). */
  maxMiB: number
  /** Start it in this cgroup (it joins before it allocates anything). */
  cgroup?: string
  /** Its command name (default 'grow'). */
  name?: string
}

/** Starts a child that allocates `stepMiB` every `intervalMs` up to `maxMiB`; resolves once it runs. */
export async function startGrower(options: GrowerOptions): Promise<Grower> {
  const exe = named(compileC(join(projectRoot(), 'test', 'fixtures', 'grow.c')), options.name)
  const child = spawnIn(exe, [String(options.stepMiB), String(options.intervalMs), String(options.maxMiB)], options.cgroup)
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const lines = createInterface({ input: child.stdout! })
  const ready = new Promise<number>((resolve, reject) => {
    child.once('exit', (code, signal) => reject(new Error(`grow exited early: ${code ?? signal}`)))
    lines.once('line', (line) => resolve(Number(/^ready (\d+)$/.exec(line)?.[1])))
  })
  const held = new Promise<number>((resolve) => lines.on('line', (line) => line.startsWith('held ') && resolve(Number(line.slice(5)))))
  const pid = await ready
  return { child, pid, held, gone }
}

/** A plain `sleep` child: a live process we own that holds no special memory. */
export function startSleeper(options: { uid?: number } = {}): Victim {
  const child = spawn('sleep', ['1000'], { stdio: 'ignore', ...options })
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return { child, pid: child.pid!, heldBytes: 0, gone }
}

/**
 * A sleeper the kernel's OOM killer would pick first (oom_score_adj 1000):
 * tests start it outside the cgroup a memory killer is given, and check
 * that it lives.
 */
export function startBystander(): Victim {
  const bystander = startSleeper()
  writeFileSync(`/proc/${bystander.pid}/oom_score_adj`, '1000')
  return bystander
}

export function killQuietly(victim: Victim): Promise<void> {
  victim.child.kill('SIGKILL')
  return victim.gone
}

// ---------------------------------------------------------------------------
// /proc views of a victim

export interface ProcView {
  /** /proc/<pid>/stat exists (the task has not been reaped by its parent). */
  exists: boolean
  /** The state letter (R, S, D, T, Z, ...), '' when gone. */
  state: string
  /** Resident bytes from /proc/<pid>/statm (0 for a zombie or a released mm). */
  rssBytes: number
  /** The mm is still there: statm shows a non-zero size (VmSize). */
  hasMm: boolean
}

const PAGE_SIZE = 4096

export function procView(pid: number): ProcView {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]
    const [size, resident] = readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ').map(Number)
    return { exists: true, state, rssBytes: resident * PAGE_SIZE, hasMm: size > 0 }
  } catch {
    return { exists: false, state: '', rssBytes: 0, hasMm: false }
  }
}

/** A field of /proc/meminfo, in bytes. */
export function meminfo(field = 'MemAvailable'): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/meminfo', 'utf8'))
  if (!match) throw new Error(`no ${field} in /proc/meminfo`)
  return Number(match[1]) * 1024
}

// ---------------------------------------------------------------------------
// Situations

/**
 * Writes `value` to the kernel setting at `path` (a sysctl or debugfs file);
 * returns the function that writes the old value back, once.
 */
export function overrideSetting(path: string, value: string): () => void {
  const saved = readFileSync(path, 'utf8').trim()
  writeFileSync(path, value)
  let restored = false
  return () => {
    if (restored) return
    restored = true
    writeFileSync(path, saved)
  }
}

export const RT_RUNTIME = '/proc/sys/kernel/sched_rt_runtime_us'

/**
 * Lets a SCHED_FIFO loop own its CPU: disables RT throttling
 * (sched_rt_runtime_us = -1); returns the function that restores it.
 * Starved victims are SCHED_FIFO themselves (below the loop), so 6.12's fair
 * deadline server, which still runs starved SCHED_OTHER tasks, cannot run them.
 */
export function unthrottleRt(): () => void {
  return overrideSetting(RT_RUNTIME, '-1')
}

/**
 * Turns off 6.12's fair deadline server on `cpu`, which otherwise runs starved
 * SCHED_OTHER tasks there for 50 ms a second; returns the function that turns
 * it back on. For short starvation only: with it off, that CPU's kworkers
 * cannot run either (the benchmark, which starves for long, uses SCHED_FIFO
 * victims instead). A no-op before 6.12, or without debugfs.
 */
export function disableFairServer(cpu: number): () => void {
  const debugfs = '/sys/kernel/debug'
  if (!existsSync(`${debugfs}/sched`)) spawnSync('mount', ['-t', 'debugfs', 'debugfs', debugfs], { stdio: 'ignore' })
  const file = `${debugfs}/sched/fair_server/cpu${cpu}/runtime`
  if (!existsSync(file)) return () => {}
  return overrideSetting(file, '0')
}

/** Pins every thread of this process (the libuv pool included) to `cpu`. */
export function pinProcess(cpu: number, pid: number = process.pid): void {
  execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' })
}

export interface Starver {
  pid: number
  /** Ends the busy loop (SIGKILL) and resolves once it is gone. Idempotent. */
  stop(): Promise<void>
}

/** Starts a SCHED_FIFO busy loop on `cpu` (at most `maxSeconds`, a safety net). */
export async function starveCpu(cpu: number, maxSeconds = 60): Promise<Starver> {
  const spinner = spawn(fixtures().spin, [String(cpu), String(maxSeconds)], { stdio: ['ignore', 'pipe', 'inherit'] })
  let exited = false
  const gone = new Promise<void>((resolve) =>
    spinner.once('exit', () => {
      exited = true
      resolve()
    }),
  )
  await new Promise<void>((resolve, reject) => {
    spinner.once('error', reject)
    spinner.once('exit', (code) => reject(new Error(`spin exited early: ${code}`)))
    createInterface({ input: spinner.stdout! }).once('line', () => resolve())
  })
  return {
    pid: spinner.pid!,
    stop: async () => {
      if (!exited) spinner.kill('SIGKILL')
      await gone
    },
  }
}

/** A cgroup v1 freezer hierarchy with one child group for victims. */
export class Freezer {
  readonly group: string
  readonly #mountedHere: string | undefined

  private constructor(group: string, mountedHere: string | undefined) {
    this.group = group
    this.#mountedHere = mountedHere
  }

  /**
   * Uses a v1 freezer hierarchy that is already mounted, else mounts one
   * (`mount -t cgroup -o freezer`) on a fresh directory under /run or /tmp.
   */
  static create(name = `pidfd-reap-${process.pid}`): Freezer {
    let root = Freezer.#mounted()
    let mountedHere: string | undefined
    if (!root) {
      const base = existsSync('/run') ? '/run' : tmpdir()
      root = mkdtempSync(join(base, 'pidfd-reap-freezer-'))
      execFileSync('mount', ['-t', 'cgroup', '-o', 'freezer', 'freezer', root], { stdio: 'pipe' })
      mountedHere = root
    }
    const group = join(root, name)
    mkdirSync(group, { recursive: true })
    return new Freezer(group, mountedHere)
  }

  static #mounted(): string | undefined {
    for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
      const [, where, type, options] = line.split(' ')
      if (type === 'cgroup' && options.split(',').includes('freezer')) return where
    }
    return undefined
  }

  add(pid: number): void {
    writeFileSync(join(this.group, 'cgroup.procs'), String(pid))
  }

  state(): string {
    return readFileSync(join(this.group, 'freezer.state'), 'utf8').trim()
  }

  /** Freezes the group and waits until every task in it is frozen. */
  async freeze(timeoutMs = 10_000): Promise<void> {
    writeFileSync(join(this.group, 'freezer.state'), 'FROZEN')
    const deadline = Date.now() + timeoutMs
    while (this.state() !== 'FROZEN') {
      if (Date.now() > deadline) throw new Error(`freezer stuck in ${this.state()}`)
      await sleep(5)
    }
  }

  thaw(): void {
    writeFileSync(join(this.group, 'freezer.state'), 'THAWED')
  }

  /** Thaws, moves any remaining task out, removes the group and unmounts what it mounted. */
  async destroy(): Promise<void> {
    this.thaw()
    const parent = dirname(this.group)
    const deadline = Date.now() + 10_000
    for (;;) {
      const left = readFileSync(join(this.group, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)
      for (const pid of left) {
        try {
          writeFileSync(join(parent, 'cgroup.procs'), pid)
        } catch {
          // exited meanwhile
        }
      }
      try {
        rmdirSync(this.group)
        break
      } catch (error) {
        if (Date.now() > deadline) throw error
        await sleep(10)
      }
    }
    if (this.#mountedHere) {
      execFileSync('umount', [this.#mountedHere], { stdio: 'pipe' })
      rmdirSync(this.#mountedHere)
    }
  }
}

/**
 * Removes a cgroup directory once its last process is gone (rmdir fails
 * with EBUSY until then): tries every 10 ms, and throws rmdir's error after
 * `tries` more attempts.
 */
export async function removeCgroupDir(dir: string, tries = 500): Promise<void> {
  for (let attempt = 0; existsSync(dir); attempt++) {
    try {
      rmdirSync(dir)
    } catch (error) {
      if (attempt > tries) throw error
      await sleep(10)
    }
  }
}

export type ScenarioKind = 'plain' | 'starved' | 'frozen'

export interface Scenario {
  kind: ScenarioKind
  victim: Victim
  /** The starved CPU's busy loop (starved scenario). */
  starver?: Starver
  /** The freezer holding the victim (frozen scenario). */
  freezer?: Freezer
  /**
   * Lets the victim run again: ends the busy loop, or thaws the freezer.
   * Resolves at once; a killed victim then exits.
   */
  release(): Promise<void>
  /** Kills the victim if still there, releases it, waits for it to be gone, undoes the setup. */
  cleanup(): Promise<void>
}

export interface ScenarioOptions extends Omit<HogOptions, 'cpu' | 'fifo'> {
  /**
   * 'fifo' (default for 'starved'): the victim is SCHED_FIFO priority 1, under
   * the busy loop's 50, so it never runs. 'other': a SCHED_OTHER victim, which
   * Linux >= 6.12's fair server lets run 50 ms a second after ~1 s starved.
   */
  victimPolicy?: 'fifo' | 'other'
  /** The CPU the victim (and for 'starved', the busy loop) runs on; default 1. */
  victimCpu?: number
  /** Safety net on the busy loop's life (default 120 s). */
  maxStarveSeconds?: number
}

/**
 * Sets up a victim in one of the situations. For 'starved' the caller must
 * have disabled RT throttling (unthrottleRt) and should run on another CPU
 * (pinProcess(0)). The victim is ready and, for 'starved' and 'frozen', not
 * able to run once this resolves.
 */
export async function startScenario(kind: ScenarioKind, options: ScenarioOptions): Promise<Scenario> {
  const cpu = options.victimCpu ?? 1
  const fifo = kind === 'starved' && (options.victimPolicy ?? 'fifo') === 'fifo' ? 1 : undefined
  const victim = await startVictim({ ...options, cpu, fifo })
  let starver: Starver | undefined
  let freezer: Freezer | undefined
  try {
    if (kind === 'starved') starver = await starveCpu(cpu, options.maxStarveSeconds ?? 120)
    if (kind === 'frozen') {
      freezer = Freezer.create()
      freezer.add(victim.pid)
      await freezer.freeze()
    }
  } catch (error) {
    await killQuietly(victim)
    await starver?.stop()
    await freezer?.destroy()
    throw error
  }
  const release = async (): Promise<void> => {
    await starver?.stop()
    freezer?.thaw()
  }
  let cleaned: Promise<void> | undefined
  const cleanup = (): Promise<void> =>
    (cleaned ??= (async () => {
      victim.child.kill('SIGKILL')
      await release()
      await victim.gone
      await freezer?.destroy()
    })())
  return { kind, victim, starver, freezer, release, cleanup }
}

