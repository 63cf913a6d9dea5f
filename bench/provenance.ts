// Where and on what a benchmark run was measured: the project's git commit,
// the kernel series (the patches the booted kernel was built from, and
// whether the work tree still has them), the kernel, the guest and host
// machines, the accelerator. bench/run passes what only the host knows
// (git, the host CPU and load) in PIDFD_REAP_BENCH_* variables.
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { basename, join } from 'node:path'
import { projectRoot } from '../victims'

function read(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim()
  } catch {
    return null
  }
}

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex')

/** The series in the work tree: sha256 over its patches' names and contents, in order. */
export function seriesHash(dir = join(projectRoot(), 'kernel-patch', 'linux-6.12')): string {
  const hash = createHash('sha256')
  for (const name of readdirSync(dir).filter((n) => n.endsWith('.patch')).sort()) hash.update(name).update(readFileSync(join(dir, name)))
  return hash.digest('hex')
}

export function kernelInfo(): Record<string, unknown> {
  const out = process.env.PIDFD_REAP_KERNEL_OUT
  const inputs = out ? read(join(out, 'inputs')) : null
  // scripts/kernel-build records each patch it applied: "patch: NAME SHA256".
  const built: Record<string, string> = {}
  for (const match of (inputs ?? '').matchAll(/^patch: (\S+) ([0-9a-f]{64})$/gm)) built[match[1]] = match[2]
  const dir = join(projectRoot(), 'kernel-patch', 'linux-6.12')
  const changed = Object.keys(built).filter((name) => {
    const file = join(dir, name)
    return !existsSync(file) || sha256(readFileSync(file)) !== built[name]
  })
  const builtSeries = createHash('sha256')
  for (const name of Object.keys(built).sort()) builtSeries.update(name).update(built[name])
  return {
    release: read('/proc/sys/kernel/osrelease'),
    version: read('/proc/sys/kernel/version'),
    tryReapSyscallNr: Number(read('/sys/kernel/mm/reap_dying/syscall_nr') ?? NaN),
    buildKey: out ? basename(out) : null,
    /** The kernel tree's commit after `git am` of the series (scripts/kernel-build's record). */
    seriesCommit: /^commit: ([0-9a-f]+)$/m.exec(inputs ?? '')?.[1] ?? null,
    /** sha256 over the built patches' names and sha256s (null: the kernel's build record is not available). */
    seriesBuilt: inputs ? builtSeries.digest('hex') : null,
    patchesBuilt: inputs ? built : null,
    /** Patches whose work-tree copy differs from what the kernel was built from. */
    patchesChangedSince: inputs ? changed : null,
    seriesWorkTree: seriesHash(dir),
  }
}

/** The first line a tool prints for --version, or null. */
function versionOf(tool: string): string | null {
  try {
    return execFileSync(tool, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n')[0].trim()
  } catch {
    return null
  }
}

/** The bracketed choice of a sysfs setting like "always [madvise] never". */
const chosen = (text: string | null): string | null => (text === null ? null : (/\[([^\]]+)\]/.exec(text)?.[1] ?? text))

export function provenance(): Record<string, unknown> {
  const env = process.env
  return {
    /** How the guest ran: QEMU (version from the host, command line from scripts/vm), clock, THP, toolchain. */
    run: {
      qemuVersion: env.PIDFD_REAP_BENCH_QEMU_VERSION || null,
      qemuCommandLine: env.PIDFD_REAP_VM_QEMU || null,
      clock: env.PIDFD_REAP_BENCH_CLOCK || 'wall',
      guestClocksource: read('/sys/devices/system/clocksource/clocksource0/current_clocksource'),
      thp: { enabled: chosen(read('/sys/kernel/mm/transparent_hugepage/enabled')), defrag: chosen(read('/sys/kernel/mm/transparent_hugepage/defrag')) },
      node: process.version,
      gcc: versionOf('gcc'),
    },
    project: {
      gitCommit: env.PIDFD_REAP_BENCH_GIT_COMMIT || null,
      /** Files the work tree had changed against that commit when the run started (git status --porcelain). */
      gitDirty: env.PIDFD_REAP_BENCH_GIT_DIRTY ? env.PIDFD_REAP_BENCH_GIT_DIRTY.split(',').filter(Boolean) : null,
    },
    kernel: kernelInfo(),
    accelerator: env.PIDFD_REAP_BENCH_ACCEL ?? (env.PIDFD_REAP_VM ? 'tcg' : 'none'),
    machine: {
      guest: { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', memoryBytes: totalmem() },
      host: env.PIDFD_REAP_BENCH_HOST ? JSON.parse(env.PIDFD_REAP_BENCH_HOST) : null,
    },
  }
}
