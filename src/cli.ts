// The pidfd-reap command line; bin/pidfd-reap only calls main().
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { asUsage, optional, UsageError } from './cli-usage'
// Only the types: the addon is loaded by the commands that make system calls
// (see kill and showFeatures), so --help, usage errors and vm work where it
// cannot load (another OS, no prebuild for this Node), and a load failure is
// one line instead of a stack trace.
import type { ReapProgress, ReapReport } from './reaper'
import { formatBytes, formatDuration, parseDuration, parseSize } from './units'
import { validatePid } from './validate'
import { parseVmArgs, runVm, VM_USAGE, type VmCommand } from './vm'

// DEFAULT_CHUNK_BYTES of reaper.ts (test/host/cli.ts checks that they agree).
const DEFAULT_CHUNK = '16 MiB'

export const USAGE = `Usage:
  pidfd-reap kill <pid> [--chunk SIZE] [--budget SIZE] [--deadline DURATION] [--json]
  pidfd-reap features [--json]
${VM_USAGE}
  pidfd-reap --help

kill      send SIGKILL to <pid> through a pidfd, then free its memory right away
          (try_reap_dying_process on patched kernels, else process_mrelease)
features  show which reaping syscalls this kernel has
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

type Command = KillCommand | VmCommand | { command: 'features'; json: boolean } | { command: 'help' }

/** Parses argv (without node and the script); throws UsageError. */
export function parseCommand(argv: string[]): Command {
  // vm has options of its own, and everything after its '--' is the guest's.
  if (argv[0] === 'vm') return parseVmArgs(argv.slice(1))
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
        help: { type: 'boolean', short: 'h', default: false },
      },
    }),
  )
  const { values, positionals } = parsed
  if (values.help) return { command: 'help' }
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
  if (command.command === 'vm') return runVm(command, io.stderr)
  if (command.command === 'features') return showFeatures(command.json, io)
  return kill(command, io)
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
  io.stdout.write(
    json
      ? `${JSON.stringify(available)}\n`
      : `try_reap_dying_process: ${available.tryReap ? `syscall ${available.tryReap.syscallNr}` : 'not available'}\n` +
          `process_mrelease: ${available.processMrelease ? 'available' : 'not available'}\n`,
  )
  return 0
}
