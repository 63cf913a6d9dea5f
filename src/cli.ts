// The pidfd-reap command line; bin/pidfd-reap only calls main().
import { parseArgs } from 'node:util'
import { Reaper, DEFAULT_CHUNK_BYTES, type ReapProgress, type ReapReport } from './reaper'
import { features } from './syscalls'
import { formatBytes, formatDuration, parseDuration, parseSize } from './units'
import { validatePid } from './validate'

export const USAGE = `Usage:
  pidfd-reap kill <pid> [--chunk SIZE] [--budget SIZE] [--deadline DURATION] [--json]
  pidfd-reap features [--json]
  pidfd-reap --help

kill      send SIGKILL to <pid> through a pidfd, then free its memory right away
          (try_reap_dying_process on patched kernels, else process_mrelease)
features  show which reaping syscalls this kernel has

Options:
  --chunk SIZE         bytes per reaping call (default ${formatBytes(DEFAULT_CHUNK_BYTES)})
  --budget SIZE        stop after reaping this much
  --deadline DURATION  stop after this long, counted from the start
  --json               print a JSON report instead of progress lines
  -h, --help           show this help

SIZE: 4096, 512K, 16M, 1.5G (K/M/G/T and KiB/MiB/GiB/TiB are powers of 1024)
DURATION: 500ms, 2s, 250 (milliseconds)

Exit status: 0 done, 1 the kill or the reaping failed, 2 usage error.
`

export interface CliIo {
  stdout: { write(text: string): unknown; isTTY?: boolean }
  stderr: { write(text: string): unknown }
}

class UsageError extends Error {}

interface KillCommand {
  command: 'kill'
  pid: number
  chunkBytes?: number
  budgetBytes?: number
  deadlineMs?: number
  json: boolean
}

type Command = KillCommand | { command: 'features'; json: boolean } | { command: 'help' }

/** Parses argv (without node and the script); throws UsageError. */
export function parseCommand(argv: string[]): Command {
  let parsed
  try {
    parsed = parseArgs({
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
    })
  } catch (error) {
    throw new UsageError((error as Error).message)
  }
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
    pid: usage(() => validatePid(/^\d+$/.test(rest[0]) ? Number(rest[0]) : NaN, 'pid')),
    chunkBytes: option(values.chunk, (text) => parseSize(text, '--chunk')),
    budgetBytes: option(values.budget, (text) => parseSize(text, '--budget')),
    deadlineMs: option(values.deadline, (text) => parseDuration(text, '--deadline')),
    json,
  }
}

function usage<T>(parse: () => T): T {
  try {
    return parse()
  } catch (error) {
    throw new UsageError((error as Error).message)
  }
}

function option<T>(text: string | boolean | undefined, parse: (text: string) => T): T | undefined {
  return text === undefined ? undefined : usage(() => parse(text as string))
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

async function kill(command: KillCommand, io: CliIo): Promise<number> {
  const { pid, json, ...options } = command
  const reaper = new Reaper(options)
  const live = !json && io.stdout.isTTY === true
  if (!json) reaper.on('progress', (progress) => writeProgress(io, live, progress))
  let report: ReapReport
  try {
    report = await reaper.killAndReap(pid)
  } catch (error) {
    if (live) io.stdout.write('\n')
    io.stderr.write(`pidfd-reap: ${describeError(error as Error, pid)}\n`)
    return 1
  }
  if (json) io.stdout.write(`${JSON.stringify(report, null, 2)}\n`)
  else io.stdout.write(`${live ? '\r\x1b[K' : ''}${summary(report)}\n`)
  return 0
}

/** Runs the CLI; resolves with the exit status. */
export async function main(argv: string[], io: CliIo = process): Promise<number> {
  let command: Command
  try {
    command = parseCommand(argv)
  } catch (error) {
    io.stderr.write(`pidfd-reap: ${(error as Error).message}\n\n${USAGE}`)
    return 2
  }
  if (command.command === 'help') {
    io.stdout.write(USAGE)
    return 0
  }
  if (command.command === 'features') {
    const available = features()
    io.stdout.write(
      command.json
        ? `${JSON.stringify(available)}\n`
        : `try_reap_dying_process: ${available.tryReap ? `syscall ${available.tryReap.syscallNr}` : 'not available'}\n` +
            `process_mrelease: ${available.processMrelease ? 'available' : 'not available'}\n`,
    )
    return 0
  }
  return kill(command, io)
}
