// `pidfd-reap vm -- <command>`: runs a command of the caller's project inside
// a QEMU guest booted on the patched kernel, virtme-ng style. The work is
// done by the scripts shipped in the package (scripts/vm, which runs
// scripts/kernel-build); this module checks the host, finds the project and
// passes the exit status on. Build outputs go to the kernel cache
// ($PIDFD_REAP_CACHE, default /var/cache/pidfd-reap), never into the package,
// which may be read-only under node_modules.
import { spawn, type StdioOptions } from 'node:child_process'
import { accessSync, constants as fsConstants, existsSync } from 'node:fs'
import { constants as osConstants } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import { parseArgs } from 'node:util'
import { asUsage, optional, UsageError } from './cli-usage'
import { parseDuration, parseSize } from './units'

/** The kernel base the package's series applies to (PIDFD_REAP_DEFAULT_BASE in scripts/lib/common.sh). */
export const KERNEL_BASE = '6.12'
export const KERNEL_SOURCE_PACKAGE = `linux-source-${KERNEL_BASE}`
export const QEMU = 'qemu-system-x86_64'
const QEMU_PACKAGE = 'qemu-system-x86'
const MIN_MEM_MIB = 256
const MAX_CPUS = 8 // the guest kernel's NR_CPUS
const MiB = 2 ** 20
// Forwarded to scripts/vm, which stops the guest; we wait for its status.
const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const

export const VM_USAGE = `  pidfd-reap vm [--debug] [--mem SIZE] [--cpus N] [--timeout DURATION] [--env NAME[=VALUE]]... -- <command> [<arg>...]`

export interface VmCommand {
  command: 'vm'
  debug: boolean
  memMiB?: number
  cpus?: number
  timeoutSeconds?: number
  /** NAME (the host's value) or NAME=VALUE, for the guest's environment. */
  env: string[]
  argv: string[]
}

/** Parses what follows `vm`: options, then `--` and the command. Throws UsageError. */
export function parseVmArgs(args: string[]): VmCommand | { command: 'help' } {
  const separator = args.indexOf('--')
  const { values } = asUsage(() =>
    parseArgs({
      args: separator === -1 ? args : args.slice(0, separator),
      strict: true,
      allowPositionals: false,
      options: {
        debug: { type: 'boolean', default: false },
        mem: { type: 'string' },
        cpus: { type: 'string' },
        timeout: { type: 'string' },
        env: { type: 'string', multiple: true, default: [] },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }),
  )
  if (values.help) return { command: 'help' }
  if (separator === -1) throw new UsageError("vm needs '--' before the command, as in: pidfd-reap vm -- node --test")
  const argv = args.slice(separator + 1)
  if (argv.length === 0) throw new UsageError("vm needs a command after '--'")
  return {
    command: 'vm',
    debug: values.debug as boolean,
    memMiB: optional(values.mem, parseMem),
    cpus: optional(values.cpus, parseCpus),
    timeoutSeconds: optional(values.timeout, parseTimeout),
    env: (values.env as string[]).map(checkEnv),
    argv,
  }
}

function parseMem(text: string): number {
  const bytes = parseSize(text, '--mem')
  if (bytes % MiB !== 0 || bytes < MIN_MEM_MIB * MiB) {
    throw new UsageError(`--mem must be a whole number of MiB, at least ${MIN_MEM_MIB}M; got '${text}'`)
  }
  return bytes / MiB
}

function parseCpus(text: string): number {
  const cpus = /^\d+$/.test(text) ? Number(text) : NaN
  if (!(cpus >= 1 && cpus <= MAX_CPUS)) {
    throw new UsageError(`--cpus must be a whole number from 1 to ${MAX_CPUS} (the guest kernel's limit); got '${text}'`)
  }
  return cpus
}

function checkEnv(text: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*(=|$)/.test(text)) {
    throw new UsageError(`--env takes NAME or NAME=VALUE, NAME made of letters, digits and _; got '${text}'`)
  }
  return text
}

function parseTimeout(text: string): number {
  const ms = parseDuration(text, '--timeout')
  if (ms <= 0) throw new UsageError(`--timeout must be more than 0; got '${text}'`)
  return Math.ceil(ms / 1000)
}

/** What runVm needs of the host; tests substitute parts of it. */
export interface VmHost {
  /** The installed package: scripts/ and kernel-patch/ are read from here. */
  packageRoot: string
  cwd: string
  euid: number
  env: NodeJS.ProcessEnv
  kernelSourceTarball: string
  /** Where SIGINT, SIGTERM and SIGHUP arrive (the process). */
  signals: Pick<NodeJS.EventEmitter, 'on' | 'off'>
  stdio: StdioOptions
}

export function realVmHost(): VmHost {
  return {
    packageRoot: join(__dirname, '..'),
    cwd: process.cwd(),
    euid: process.geteuid!(),
    env: process.env,
    kernelSourceTarball: `/usr/src/${KERNEL_SOURCE_PACKAGE}.tar.xz`,
    signals: process,
    stdio: 'inherit',
  }
}

/** The nearest directory at or above `cwd` with a package.json, else `cwd`. */
export function findProject(cwd: string): string {
  let dir = cwd
  while (!existsSync(join(dir, 'package.json'))) {
    if (dirname(dir) === dir) return cwd
    dir = dirname(dir)
  }
  return dir
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK)
    return true
  } catch {
    return false
  }
}

function onPath(name: string, path = ''): boolean {
  return path.split(delimiter).some((dir) => dir !== '' && isExecutable(join(dir, name)))
}

/** Why the guest cannot run on this host, or undefined. */
export function vmHostProblem(host: VmHost): string | undefined {
  if (host.euid !== 0) {
    return 'must run as root: QEMU shares your project and the host\'s / with the guest, and the kernel is cached in /var/cache/pidfd-reap (try sudo)'
  }
  if (!onPath(QEMU, host.env.PATH)) return `${QEMU} not found: install the Debian package ${QEMU_PACKAGE}`
  if (!existsSync(host.kernelSourceTarball)) {
    return `${host.kernelSourceTarball} not found: install the Debian package ${KERNEL_SOURCE_PACKAGE} (the guest kernel is built from it)`
  }
  const project = findProject(host.cwd)
  if (project === '/') return 'will not share / with the guest: run it inside your project directory'
  return undefined
}

/** The scripts/vm command line for `command`. */
export function vmScriptArgs(command: VmCommand, project: string): string[] {
  return [
    '--project',
    project,
    ...(command.debug ? ['--debug'] : []),
    ...(command.memMiB === undefined ? [] : ['--mem', `${command.memMiB}M`]),
    ...(command.cpus === undefined ? [] : ['--cpus', String(command.cpus)]),
    ...(command.timeoutSeconds === undefined ? [] : ['--timeout', String(command.timeoutSeconds)]),
    ...command.env.flatMap((variable) => ['--env', variable]),
    '--',
    ...command.argv,
  ]
}

/** Runs the command in the guest; resolves with its exit status (1 if the guest could not be set up). */
export function runVm(command: VmCommand, stderr: { write(text: string): unknown }, host: VmHost = realVmHost()): Promise<number> {
  const problem = vmHostProblem(host)
  if (problem !== undefined) {
    stderr.write(`pidfd-reap vm: ${problem}\n`)
    return Promise.resolve(1)
  }
  const script = join(host.packageRoot, 'scripts', 'vm')
  return new Promise((resolve) => {
    const child = spawn(script, vmScriptArgs(command, findProject(host.cwd)), {
      cwd: host.cwd,
      // The package never installs Debian packages behind the caller's back:
      // the scripts name the missing ones instead.
      env: { ...host.env, PIDFD_REAP_NO_INSTALL: '1' },
      stdio: host.stdio,
    })
    const forward = (signal: NodeJS.Signals) => child.kill(signal)
    for (const signal of FORWARDED_SIGNALS) host.signals.on(signal, forward)
    const settle = (status: number) => {
      for (const signal of FORWARDED_SIGNALS) host.signals.off(signal, forward)
      resolve(status)
    }
    child.on('error', (error) => {
      stderr.write(`pidfd-reap vm: cannot run ${script}: ${error.message}\n`)
      settle(1)
    })
    child.on('exit', (code, signal) => settle(code ?? 128 + osConstants.signals[signal!]))
  })
}
