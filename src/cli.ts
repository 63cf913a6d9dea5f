// The pidfd-reap command line; bin/pidfd-reap only calls main().
import { existsSync, readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { asUsage, optional, UsageError } from './cli-usage'
// Only the types: the addon is loaded by the commands that make system calls
// (see kill and showFeatures), so --help, usage errors and vm work where it
// cannot load (another OS, no prebuild for this Node), and a load failure is
// one line instead of a stack trace.
import type { DaemonOptions, DaemonSummary } from './daemon'
import type { UnitRanking } from './daemon-unit'
import type { ReapProgress, ReapReport } from './reaper'
import type { Features } from './syscalls'
import { formatBytes, formatDuration, parseDuration, parseSize } from './units'
import { validatePid } from './validate'
import { parseVmArgs, runVm, VM_USAGE, type VmCommand } from './vm'

// DEFAULT_CHUNK_BYTES of reaper.ts (test/host/cli.ts checks that they agree).
const DEFAULT_CHUNK = '16 MiB'

export const USAGE = `Usage:
  pidfd-reap kill <pid> [--chunk SIZE] [--budget SIZE] [--deadline DURATION] [--json]
  pidfd-reap features [--json]
  pidfd-reap daemon [--config FILE] --cgroup PATH [--cgroup-pressure]
                    [--kind some|full] [--stall DURATION] [--window DURATION]
                    [--min-available SIZE|PERCENT%]
                    [--min-swap-free SIZE|PERCENT%] [--max-kills N]
                    [--cool-down DURATION] [--max-unhelpful-kills N]
                    [--prefer REGEX] [--avoid REGEX] [--protect-user USER]...
                    [--protect-unit NAME]... [--chunk SIZE]
                    [--deadline DURATION] [--dry-run] [--no-lock-memory]
                    [--lock-all-code]
                    [--no-poll] [--fill-rate SIZE] [--kill-cgroup]
                    [--kill-cgroup-by memory|pressure] [--on-kill CMD]
                    [--metrics HOST:PORT]
  pidfd-reap daemon --version
${VM_USAGE}
  pidfd-reap --help
  pidfd-reap --version

kill      send SIGKILL to <pid> through a pidfd, then free its memory right away
          (try_reap_dying_process on patched kernels, else process_mrelease)
features  show which reaping syscalls this kernel has
daemon    an example memory-pressure daemon: on each PSI memory trigger
          (/proc/pressure/memory), and whenever its check of MemAvailable
          finds it below the line, kill the process with the highest
          oom_score in the cgroup PATH (or a group below it) and reap it,
          again while MemAvailable stays below the line; one JSON line per
          decision on stdout; stops on SIGINT or SIGTERM, reloads its
          --config FILE and its options on SIGHUP; under systemd it
          notifies (sd_notify) and its lines carry syslog priorities
          (examples/systemd/pidfd-reap.service)
vm        run <command> as root in a QEMU guest booted on the patched kernel
          (built once from Debian's linux-source-6.12, cached in
          /var/cache/pidfd-reap), with your project (the nearest directory
          with a package.json at or above this one) shared read-write at the
          same path; Debian x86-64 hosts, run as root

Options of kill:
  --chunk SIZE         bytes per reaping call, at least 1 (default ${DEFAULT_CHUNK})
  --budget SIZE        stop after reaping this much, at least 1 byte
  --deadline DURATION  stop after this long, counted from the start
  --json               print a JSON report instead of progress lines

Options of daemon:
  --config FILE        options from FILE, one a line: the name without --, then
                       the value unless it is a flag ("cgroup /sys/fs/cgroup/x",
                       "dry-run"; # comments); the command line wins
  --cgroup PATH        the cgroup directory whose processes may be killed (required;
                       nothing outside it is ever signalled)
  --cgroup-pressure    watch PATH/memory.pressure (cgroup v2) instead of the system's
  --kind some|full     the stall that counts: some task (default) or all of them
  --stall DURATION     trigger on this much stall... (default 150ms)
  --window DURATION    ...within this window, 500ms to 10s (default 1s; without
                       CAP_SYS_RESOURCE the kernel takes only multiples of 2s:
                       then the next one is armed, and the start line says so)
  --min-available SIZE|PERCENT%
                       kill while MemAvailable is below this (default 10%,
                       of MemTotal); a cgroup with a memory.max or memory.high
                       also has its own line, the percentage of its limit
  --min-swap-free SIZE|PERCENT%
                       ...and free swap is at most this (default 10%, of
                       SwapTotal), as earlyoom
  --max-kills N        at most N kills per wakeup, 1 to 1000 (default 3)
  --cool-down DURATION after a wakeup that killed, wait this long before the
                       next kill (default 1s)
  --max-unhelpful-kills N
                       stop (exit 1) after N kills in a row that did not bring
                       memory back, 1 to 1000 (default 3)
  --prefer REGEX       kill processes whose comm or cmdline matches first
  --avoid REGEX        ...and those that match this last
  --protect-user USER  never kill processes of this user, a name or a UID
                       (repeatable)
  --protect-unit NAME  never kill processes in a cgroup of this name (a unit:
                       sshd.service) or below it (repeatable)
  --chunk SIZE         bytes per reaping call (default ${DEFAULT_CHUNK})
  --deadline DURATION  stop reaping one victim after this long (default 1s)
  --dry-run            log the victim it would kill ("would-kill"), kill nothing
  --no-lock-memory     do not mlock() the daemon's code (by default it locks it
                       in memory, so that the pressure cannot page it out:
                       the pages it has run and will run, and the addon)
  --lock-all-code      lock every page of node's code, run or not (~90 MB)
  --no-poll            act on PSI events only; by default it also reads
                       MemAvailable every 100ms to 1s, as earlyoom does
  --fill-rate SIZE     the fastest memory is assumed to fill, per second: the
                       next check comes before it could reach the line
                       (default 6000M)
  --kill-cgroup        kill a whole unit instead of one process: the leaf cgroup
                       under --cgroup with the most memory, through cgroup.kill,
                       every member reaped at once
  --kill-cgroup-by memory|pressure
                       ...or the one with the most memory pressure (default
                       memory)
  --on-kill CMD        run CMD with /bin/sh after each kill (and each would-kill
                       of a dry run), not waited for; it gets PIDFD_REAP_EVENT,
                       _PID, _COMM, _CGROUP, _BYTES_REAPED and _LINE (the JSON)
  --metrics HOST:PORT  serve Prometheus text on http://HOST:PORT/metrics (kills,
                       bytes reaped, reaping time, wakeups, decisions,
                       MemAvailable, the daemon's RSS and locked bytes)

Options of vm:
  --debug              boot the debug kernel (lockdep, KASAN, ...; default --mem 5G)
  --mem SIZE           guest memory, whole MiB, at least 256M (default 4G)
  --cpus N             guest CPUs, 1 to 8 (default 2)
  --timeout DURATION   stop the guest after this long (default 15m)
  --env NAME[=VALUE]   pass a variable into the guest, the host's value without
                       =VALUE (repeatable; PATH, TERM, CI, LANG, NODE_OPTIONS...
                       and every PIDFD_REAP_* and TAP_* variable pass anyway)

  -h, --help           show this help

SIZE: 4096, 512K, 16M, 1.5G (K/M/G/T and KiB/MiB/GiB/TiB are powers of 1024)
DURATION: 500ms, 2s, 5m, 250 (milliseconds)

Exit status:
  kill      0 the memory came back (reaped, nothing left to reap, budget
            reached) or the process exited; 1 the kill failed, the kernel
            refused to reap, no reaping syscall (unsupported), or the deadline
            passed with nothing reaped
  features  0
  daemon    0 stopped by SIGINT or SIGTERM; 1 the trigger could not be
            armed, the cgroup could not be read, the watch failed, or kills
            stopped helping (also after a reload)
  vm        <command>'s (127: not found); 1 with a "pidfd-reap vm:" or "vm:"
            message if the guest could not be set up or went wrong (not root,
            no QEMU, no kernel source, kernel build failure, timeout, kernel
            warnings); 125 if the guest's init could not prepare <command>;
            130 if interrupted
  any       2 usage error (the message says what is wrong)
`

export interface CliIo {
  stdout: { write(text: string): unknown; isTTY?: boolean }
  stderr: { write(text: string): unknown }
}

interface KillCommand {
  command: 'kill'
  pid: number
  chunkBytes?: number
  budgetBytes?: number
  deadlineMs?: number
  json: boolean
}

export interface DaemonCommand
  extends Required<
    Pick<
      DaemonOptions,
      | 'cgroup' | 'cgroupPressure' | 'kind' | 'stallUs' | 'windowUs' | 'maxKills' | 'coolDownMs' | 'maxUnhelpfulKills'
      | 'protectUids' | 'protectUnits' | 'deadlineMs' | 'dryRun' | 'lockMemory' | 'lockAllCode' | 'poll' | 'killCgroup'
    >
  > {
  command: 'daemon'
  onKill?: string
  /** Where to serve Prometheus metrics (--metrics HOST:PORT). */
  metrics?: { host: string; port: number }
  minAvailableBytes?: number
  minAvailablePercent?: number
  minSwapFreeBytes?: number
  minSwapFreePercent?: number
  prefer?: RegExp
  avoid?: RegExp
  chunkBytes?: number
  fillRateBytesPerSec?: number
  killCgroupBy?: UnitRanking
}

type Command = KillCommand | DaemonCommand | VmCommand | { command: 'features'; json: boolean } | { command: 'help' } | { command: 'version' }

/** Parses argv (without node and the script); throws UsageError. */
export function parseCommand(argv: string[]): Command {
  // vm has options of its own, and everything after its '--' is the guest's.
  if (argv[0] === 'vm') return parseVmArgs(argv.slice(1))
  if (argv[0] === 'daemon') return parseDaemonArgs(argv.slice(1))
  const parsed = asUsage(() =>
    parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        chunk: { type: 'string' },
        budget: { type: 'string' },
        deadline: { type: 'string' },
        json: { type: 'boolean', default: false },
        version: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }),
  )
  const { values, positionals } = parsed
  if (values.help) return { command: 'help' }
  if (values.version) return { command: 'version' }
  const [command, ...rest] = positionals
  const json = values.json as boolean
  if (command === 'features') {
    if (rest.length > 0) throw new UsageError(`unexpected argument '${rest[0]}'`)
    return { command, json }
  }
  if (command !== 'kill') {
    throw new UsageError(command === undefined ? 'missing command' : `unknown command '${command}'`)
  }
  if (rest.length !== 1) throw new UsageError('kill takes exactly one <pid>')
  return {
    command,
    pid: parsePid(rest[0]),
    chunkBytes: optional(values.chunk, (text) => positiveSize(text, '--chunk')),
    budgetBytes: optional(values.budget, (text) => positiveSize(text, '--budget')),
    deadlineMs: optional(values.deadline, (text) => parseDuration(text, '--deadline')),
    json,
  }
}

function parsePid(text: string): number {
  try {
    return validatePid(/^\d+$/.test(text) ? Number(text) : NaN)
  } catch {
    throw new UsageError(`<pid> must be a process ID from 1 to 2147483647; got '${text}'`)
  }
}

// A chunk or a budget of 0 bytes would kill without reaping anything.
function positiveSize(text: string, name: string): number {
  const bytes = parseSize(text, name)
  if (bytes < 1) throw new UsageError(`${name} must be at least 1 byte; got '${text}'`)
  return bytes
}

const PSI_WINDOW_MS = { min: 500, max: 10_000 }

// The daemon's options: its command line, and the names a --config file may use.
const DAEMON_OPTIONS = {
  cgroup: { type: 'string' },
  'cgroup-pressure': { type: 'boolean', default: false },
  kind: { type: 'string', default: 'some' },
  stall: { type: 'string', default: '150ms' },
  window: { type: 'string', default: '1s' },
  'min-available': { type: 'string' },
  'min-swap-free': { type: 'string' },
  'max-kills': { type: 'string', default: '3' },
  'cool-down': { type: 'string', default: '1s' },
  'max-unhelpful-kills': { type: 'string', default: '3' },
  prefer: { type: 'string' },
  avoid: { type: 'string' },
  'protect-user': { type: 'string', multiple: true, default: [] },
  'protect-unit': { type: 'string', multiple: true, default: [] },
  chunk: { type: 'string' },
  deadline: { type: 'string', default: '1s' },
  'dry-run': { type: 'boolean', default: false },
  'no-lock-memory': { type: 'boolean', default: false },
  'lock-all-code': { type: 'boolean', default: false },
  'no-poll': { type: 'boolean', default: false },
  'fill-rate': { type: 'string' },
  'kill-cgroup': { type: 'boolean', default: false },
  'kill-cgroup-by': { type: 'string' },
  'on-kill': { type: 'string' },
  metrics: { type: 'string' },
  config: { type: 'string' },
  version: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const satisfies NonNullable<ParseArgsConfig['options']>
/** What a config file may not set: it is read once, from the command line. */
const COMMAND_LINE_ONLY = new Set(['config', 'version', 'help'])

/**
 * The options of a --config file as arguments: one option a line, its name
 * without "--", then its value (the rest of the line) unless it is a flag;
 * blank lines and lines starting with "#" are skipped. Throws UsageError
 * naming the file and the line.
 */
export function readDaemonConfig(path: string): string[] {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    throw new UsageError(`--config: cannot read '${path}' (${(error as NodeJS.ErrnoException).code})`)
  }
  const args: string[] = []
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) return
    const [, name, value] = /^(\S+)(?:\s+(.*))?$/.exec(line)!
    const where = `${path}:${index + 1}`
    const option = Object.hasOwn(DAEMON_OPTIONS, name) && !COMMAND_LINE_ONLY.has(name) ? DAEMON_OPTIONS[name as keyof typeof DAEMON_OPTIONS] : undefined
    if (option === undefined) throw new UsageError(`${where}: unknown option '${name}'`)
    if (option.type === 'boolean') {
      if (value !== undefined) throw new UsageError(`${where}: '${name}' takes no value`)
      args.push(`--${name}`)
    } else {
      if (value === undefined) throw new UsageError(`${where}: '${name}' needs a value`)
      args.push(`--${name}=${value}`)
    }
  })
  return args
}

/** Parses what follows `daemon`, after the options of --config FILE if given (the command line wins). Throws UsageError. */
export function parseDaemonArgs(args: string[]): DaemonCommand | { command: 'help' } | { command: 'version' } {
  const parse = (all: string[]) => asUsage(() => parseArgs({ args: all, strict: true, allowPositionals: true, options: DAEMON_OPTIONS }))
  let { values, positionals } = parse(args)
  if (values.help) return { command: 'help' }
  if (values.version) return { command: 'version' }
  if (values.config !== undefined) ({ values, positionals } = parse([...readDaemonConfig(values.config), ...args]))
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`)
  const onKill = values['on-kill'] as string | undefined
  if (onKill !== undefined && onKill.trim() === '') throw new UsageError('--on-kill must be a command')
  const cgroup = values.cgroup as string | undefined
  if (cgroup === undefined) throw new UsageError('daemon needs --cgroup PATH')
  if (cgroup === '' || !existsSync(`${cgroup}/cgroup.procs`)) {
    throw new UsageError(`--cgroup must be a cgroup directory (one with a cgroup.procs file); got '${cgroup}'`)
  }
  const kind = values.kind as string
  if (kind !== 'some' && kind !== 'full') throw new UsageError(`--kind must be 'some' or 'full'; got '${kind}'`)
  const windowMs = asUsage(() => parseDuration(values.window as string, '--window'))
  if (windowMs < PSI_WINDOW_MS.min || windowMs > PSI_WINDOW_MS.max) {
    throw new UsageError(`--window must be from 500ms to 10s; got '${values.window}'`)
  }
  const stallUs = Math.round(asUsage(() => parseDuration(values.stall as string, '--stall')) * 1000)
  if (stallUs < 1 || stallUs > windowMs * 1000) {
    throw new UsageError(`--stall must be more than 0 and at most the window (${values.window}); got '${values.stall}'`)
  }
  const protectUnits = values['protect-unit'] as string[]
  const killCgroupBy = values['kill-cgroup-by'] as string | undefined
  if (killCgroupBy !== undefined && killCgroupBy !== 'memory' && killCgroupBy !== 'pressure') {
    throw new UsageError(`--kill-cgroup-by must be 'memory' or 'pressure'; got '${killCgroupBy}'`)
  }
  if (killCgroupBy !== undefined && !values['kill-cgroup']) throw new UsageError('--kill-cgroup-by needs --kill-cgroup')
  const badUnit = protectUnits.find((name) => name === '' || name.includes('/'))
  if (badUnit !== undefined) throw new UsageError(`--protect-unit must be a cgroup's name, without '/'; got '${badUnit}'`)
  return {
    command: 'daemon',
    cgroup,
    cgroupPressure: values['cgroup-pressure'] as boolean,
    kind,
    stallUs,
    windowUs: Math.round(windowMs * 1000),
    ...optional(values['min-available'], (text) => {
      const line = parseBytesOrPercent(text, '--min-available')
      return 'bytes' in line ? { minAvailableBytes: line.bytes } : { minAvailablePercent: line.percent }
    }),
    ...optional(values['min-swap-free'], (text) => {
      const line = parseBytesOrPercent(text, '--min-swap-free')
      return 'bytes' in line ? { minSwapFreeBytes: line.bytes } : { minSwapFreePercent: line.percent }
    }),
    maxKills: parseCount(values['max-kills'] as string, '--max-kills'),
    coolDownMs: asUsage(() => parseDuration(values['cool-down'] as string, '--cool-down')),
    maxUnhelpfulKills: parseCount(values['max-unhelpful-kills'] as string, '--max-unhelpful-kills'),
    prefer: optional(values.prefer, (text) => parseRegExp(text, '--prefer')),
    avoid: optional(values.avoid, (text) => parseRegExp(text, '--avoid')),
    protectUids: (values['protect-user'] as string[]).map((text) => parseUser(text)),
    protectUnits,
    chunkBytes: optional(values.chunk, (text) => positiveSize(text, '--chunk')),
    deadlineMs: asUsage(() => parseDuration(values.deadline as string, '--deadline')),
    dryRun: values['dry-run'] as boolean,
    lockMemory: !(values['no-lock-memory'] as boolean),
    lockAllCode: values['lock-all-code'] as boolean,
    poll: !(values['no-poll'] as boolean),
    fillRateBytesPerSec: optional(values['fill-rate'], (text) => positiveSize(text, '--fill-rate')),
    killCgroup: values['kill-cgroup'] as boolean,
    ...(killCgroupBy !== undefined && { killCgroupBy }),
    ...(onKill !== undefined && { onKill }),
    ...optional(values.metrics, (text) => ({ metrics: parseListenAddress(text) })),
  }
}

/** HOST:PORT ([::1]:9101 for IPv6), or throws a UsageError saying what is wrong. */
export function parseListenAddress(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text)
  const port = Number(match?.[3])
  if (!match || port > 65535) throw new UsageError(`--metrics must be HOST:PORT (127.0.0.1:9101, [::1]:9101); got '${text}'`)
  return { host: match[1] ?? match[2], port }
}

/** SIZE or PERCENT%: a line in bytes, or a percentage of a total. */
function parseBytesOrPercent(text: string, name: string): { bytes: number } | { percent: number } {
  const percent = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(text)
  if (!percent) return { bytes: parseSize(text, name) }
  const value = Number(percent[1])
  if (value > 100) throw new UsageError(`${name} must be at most 100%; got '${text}'`)
  return { percent: value }
}

function parseCount(text: string, name: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 1000) throw new UsageError(`${name} must be a whole number from 1 to 1000; got '${text}'`)
  return Number(text)
}

function parseRegExp(text: string, name: string): RegExp {
  try {
    return new RegExp(text)
  } catch (error) {
    throw new UsageError(`${name} must be a regular expression: ${(error as Error).message}`)
  }
}

/** A UID, or a user name looked up in /etc/passwd. */
export function parseUser(text: string, passwd = '/etc/passwd'): number {
  if (/^\d+$/.test(text) && Number(text) <= 0xffffffff) return Number(text)
  let entries: string[] = []
  try {
    entries = readFileSync(passwd, 'utf8').split('\n')
  } catch {
    // No passwd file: only UIDs.
  }
  const entry = entries.map((line) => line.split(':')).find((fields) => fields[0] === text && /^\d+$/.test(fields[2] ?? ''))
  if (!entry) throw new UsageError(`--protect-user must be a user name in ${passwd} or a UID; got '${text}'`)
  return Number(entry[2])
}

/** One clear sentence for a daemon that could not start or had to stop. */
export function describeDaemonError(error: Error & { code?: string; syscall?: string; path?: string }, command: DaemonCommand): string {
  const { code, syscall, path } = error
  const trigger = `'${command.kind} ${command.stallUs} ${command.windowUs}'`
  if (syscall === 'open' && code === 'ENOENT' && /(^\/proc\/pressure\/|\.pressure$)/.test(path ?? '')) {
    return `no pressure file ${path}: the kernel has no PSI (CONFIG_PSI, or boot with psi=1)${command.cgroupPressure ? ', or the cgroup is not a cgroup v2 group' : ''}`
  }
  if (syscall === 'write' && code === 'EINVAL') {
    const hint = command.windowUs % 2_000_000 === 0 ? '' : '; without CAP_SYS_RESOURCE the window must be a multiple of 2s'
    return `the kernel refused the trigger ${trigger} on ${path} (EINVAL)${hint}`
  }
  if ((syscall === 'write' || syscall === 'open') && (code === 'EPERM' || code === 'EACCES')) {
    return `not permitted to arm a trigger on ${path} (${code}; before Linux 6.5 that takes CAP_SYS_RESOURCE)`
  }
  if (syscall === 'poll' && code === 'ENODEV') return `the pressure file ${path} went away: the cgroup was removed`
  return error.message
}

/** One clear sentence per errno, for the process the user named. */
export function describeError(error: Error & { code?: string }, pid: number): string {
  switch (error.code) {
    case 'EPERM':
      return `not permitted: process ${pid} is not dying or you may not signal it`
    case 'ESRCH':
      return `no such process: ${pid}`
    case 'EINVAL':
      return `invalid argument: process ${pid} cannot be reaped (a kernel thread?)`
    case 'EBUSY':
    case 'EAGAIN':
      return `busy: the memory map of process ${pid} is locked; try again`
    case 'EBADF':
      return `bad file descriptor: the pidfd for process ${pid} was closed`
    case 'ENOSYS':
    case 'ERR_PIDFD_REAP_UNAVAILABLE':
      return 'not supported: this kernel has neither try_reap_dying_process nor process_mrelease (Linux >= 5.15)'
    default:
      return error.message
  }
}

function progressLine(progress: ReapProgress): string {
  const busy = progress.busyRetries > 0 ? `, ${progress.busyRetries} busy` : ''
  return `reaped ${formatBytes(progress.bytesReaped)} from ${progress.pid} in ${progress.calls} calls${busy}, ${formatDuration(progress.elapsedMs)}`
}

const STOP_REASONS: Record<ReapReport['stopReason'], string> = {
  exited: 'the process exited',
  done: 'nothing left to reap',
  budget: 'budget reached',
  deadline: 'deadline passed',
  aborted: 'aborted',
  refused: 'the kernel refused to reap',
  unsupported: 'no reaping syscall on this kernel',
}

export function summary(report: ReapReport): string {
  const refusal = report.refusal ? ` (${report.refusal.message})` : ''
  return `killed ${report.pid}: ${progressLine(report)} using ${report.mechanism}; ${STOP_REASONS[report.stopReason]}${refusal}`
}

/** On a terminal one line is rewritten in place; elsewhere one line per call. */
export function writeProgress(io: CliIo, live: boolean, progress: ReapProgress): void {
  io.stdout.write(live ? `\r\x1b[K${progressLine(progress)}` : `${progressLine(progress)}\n`)
}

// At most 10 progress lines a second: a log file gets a readable trace, not
// one line per reaping call. The summary line always follows.
export const PROGRESS_INTERVAL_MS = 100

/** Calls `write` at most once per `intervalMs`; calls in between are dropped. */
export function throttle<T>(write: (value: T) => void, intervalMs: number, now: () => number = performance.now.bind(performance)) {
  let last = -Infinity
  return (value: T): void => {
    const time = now()
    if (time - last < intervalMs) return
    last = time
    write(value)
  }
}

/** 0 when memory came back or the process exited; 1 when nothing could be reaped. */
export function exitStatus(report: ReapReport): number {
  switch (report.stopReason) {
    case 'exited':
    case 'done':
      return 0
    case 'refused':
    case 'unsupported':
      return 1
    default: // budget, deadline, aborted: did anything come back before?
      return report.bytesReaped > 0 ? 0 : 1
  }
}

async function kill(command: KillCommand, io: CliIo): Promise<number> {
  const { pid, json, ...options } = command
  const live = !json && io.stdout.isTTY === true
  let report: ReapReport
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Reaper } = require('./reaper') as typeof import('./reaper')
    const reaper = new Reaper(options)
    if (!json) reaper.on('progress', throttle((progress: ReapProgress) => writeProgress(io, live, progress), PROGRESS_INTERVAL_MS))
    report = await reaper.killAndReap(pid)
  } catch (error) {
    if (live) io.stdout.write('\n')
    io.stderr.write(`pidfd-reap: ${describeError(error as Error, pid)}\n`)
    return 1
  }
  if (json) io.stdout.write(`${JSON.stringify(report, null, 2)}\n`)
  else io.stdout.write(`${live ? '\r\x1b[K' : ''}${summary(report)}\n`)
  return exitStatus(report)
}

/** The version in package.json: ../package.json from src/ (the tests) and from dist/ alike. */
export function packageVersion(): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('../package.json') as { version: string }).version
}

/** Runs the CLI; resolves with the exit status. */
export async function main(argv: string[], io: CliIo = process): Promise<number> {
  let command: Command
  try {
    command = parseCommand(argv)
  } catch (error) {
    // One line: the message says what is wrong; --help has the rest.
    io.stderr.write(`pidfd-reap: ${(error as Error).message} (see pidfd-reap --help)\n`)
    return 2
  }
  if (command.command === 'help') {
    io.stdout.write(USAGE)
    return 0
  }
  if (command.command === 'version') {
    io.stdout.write(`pidfd-reap ${packageVersion()}\n`)
    return 0
  }
  if (command.command === 'vm') return runVm(command, io.stderr)
  if (command.command === 'features') return showFeatures(command.json, io)
  if (command.command === 'daemon') return daemon(command, argv.slice(1), io)
  return kill(command, io)
}

/**
 * Runs the daemon until SIGINT or SIGTERM (0), or until it fails (1). On
 * SIGHUP it parses `args` again (with its --config file): if they are good,
 * the running daemon stops (a kill in progress settles) and one with the new
 * options starts; if not, it says why and runs on as it was.
 */
async function daemon(first: DaemonCommand, args: string[], io: CliIo): Promise<number> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { runPressureDaemon } = require('./daemon') as typeof import('./daemon')
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { daemonService, isJournalStream } = require('./daemon-service') as typeof import('./daemon-service')
  const journal = isJournalStream(process.env, 1)
  // The metrics outlive reloads: served where the first command said.
  let metrics: { server: import('node:http').Server; url: string; counts: import('./daemon-metrics').DaemonMetrics } | undefined
  if (first.metrics) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { DaemonMetrics, serveMetrics } = require('./daemon-metrics') as typeof import('./daemon-metrics')
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { stats } = require('./syscalls') as typeof import('./syscalls')
    const counts = new DaemonMetrics({ procRoot: '/proc', vmstat: () => stats() })
    try {
      metrics = { ...(await serveMetrics(counts, first.metrics.host, first.metrics.port)), counts }
    } catch (error) {
      io.stderr.write(`pidfd-reap: cannot serve metrics on ${first.metrics.host}:${first.metrics.port}: ${(error as Error).message}\n`)
      return 1
    }
  }
  let command = first
  let next: DaemonCommand | undefined
  let run = new AbortController()
  const serve = ({ onKill }: DaemonCommand) => daemonService(io, { env: process.env, journal, onKill })
  let service = serve(command)
  const onSigint = (): void => run.abort('SIGINT')
  const onSigterm = (): void => run.abort('SIGTERM')
  const onSighup = (): void => {
    try {
      // The same arguments parsed to a daemon command at the start: only the file can have changed.
      next = parseDaemonArgs(args) as DaemonCommand
      run.abort('SIGHUP')
    } catch (error) {
      service.error(`reload: ${(error as Error).message}; running on as before`)
    }
  }
  process.on('SIGINT', onSigint)
  process.on('SIGTERM', onSigterm)
  process.on('SIGHUP', onSighup)
  let summary: DaemonSummary
  try {
    for (;;) {
      const { log } = service
      summary = await runPressureDaemon({
        ...command,
        signal: run.signal,
        log: (line) => {
          metrics?.counts.observe(line)
          log(line.event === 'start' && metrics ? { ...line, metrics: metrics.url } : line)
        },
        ...(metrics && { onWakeup: (source: 'psi' | 'check') => metrics.counts.wakeup(source) }),
      })
      service.close()
      if (summary.reason !== 'SIGHUP' || next === undefined) break
      command = next
      next = undefined
      run = new AbortController()
      service = serve(command)
    }
  } catch (error) {
    service.error(describeDaemonError(error as Error, command))
    return 1
  } finally {
    service.close()
    metrics?.server.close()
    process.off('SIGINT', onSigint)
    process.off('SIGTERM', onSigterm)
    process.off('SIGHUP', onSighup)
  }
  if (!summary.error) return 0
  service.error(`daemon stopped: ${describeDaemonError(summary.error, command)}`)
  return 1
}

async function showFeatures(json: boolean, io: CliIo): Promise<number> {
  let available
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    available = (require('./syscalls') as typeof import('./syscalls')).features()
  } catch (error) {
    io.stderr.write(`pidfd-reap: ${(error as Error).message}\n`)
    return 1
  }
  io.stdout.write(json ? `${JSON.stringify(available)}\n` : featuresText(available))
  return 0
}

/** `pidfd-reap features` without --json: one line per mechanism. */
export function featuresText(available: Features): string {
  const has = (yes: boolean): string => (yes ? 'available' : 'not available')
  const shrinker = available.shrinker ? (available.shrinker.enabled ? 'enabled' : 'disabled') : 'not available'
  return (
    `try_reap_dying_process: ${available.tryReap ? `syscall ${available.tryReap.syscallNr}` : 'not available'}\n` +
    `TRY_REAP_KILL: ${has(available.tryReapKill)}\n` +
    `reap_dying shrinker: ${shrinker}\n` +
    `process_mrelease: ${has(available.processMrelease)}\n`
  )
}
