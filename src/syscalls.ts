// The functional API: validated wrappers around the binding that turn -errno
// results into Node-style errors, plus feature detection and /proc reading.
import { readFileSync } from 'node:fs'
import { native } from './binding'
import { describeErrno, errno, invalidArgType, reapUnavailableError, systemError } from './errors'
import { validateFd, validateFlags, validateMaxBytes, validateOptions, validatePid, validateSignal } from './validate'

export const constants = {
  /** pidfd_open flag: the pidfd is non-blocking (O_NONBLOCK). */
  PIDFD_NONBLOCK: 0o4000,
  /** pidfd_open flag: pid is a thread id and the pidfd refers to that thread (Linux >= 6.9). */
  PIDFD_THREAD: 0o200,
  /** try_reap_dying_process flag (series v3): kill the process (and every process sharing its mm), then reap, in one call. */
  TRY_REAP_KILL: 0x1,
} as const

export interface ReapDyingFeature {
  /** The syscall number the kernel published in /sys/kernel/mm/reap_dying/syscall_nr. */
  syscallNr: number
}

export interface ShrinkerFeature {
  /** /sys/kernel/mm/reap_dying/shrinker_enabled is 1 (root can write 0 or 1; default 0). */
  enabled: boolean
}

export interface Features {
  /** try_reap_dying_process, when a patched kernel confirmed its number. */
  tryReap: ReapDyingFeature | null
  /**
   * try_reap_dying_process takes TRY_REAP_KILL (series v3): one call kills and
   * reaps, and killAndReap uses it.
   */
  tryReapKill: boolean
  /** The reap_dying shrinker of doomed processes (series v3), or null without it. */
  shrinker: ShrinkerFeature | null
  /** process_mrelease(2) (Linux >= 5.15). */
  processMrelease: boolean
}

export const REAP_DYING_SYSFS = '/sys/kernel/mm/reap_dying'
export const SHRINKER_ENABLED = `${REAP_DYING_SYSFS}/shrinker_enabled`
export const VMSTAT = '/proc/vmstat'

/**
 * Throws the error for a negative binding result, or returns the value. `pid`
 * is the process the call concerned, when the caller knows it.
 */
export function check(result: number, syscall: string, pid?: number): number {
  if (result >= 0) return result
  if (result === -errno.ENOSYS && syscall === 'try_reap_dying_process') {
    // With a confirmed number the call was made, and the kernel (or a seccomp
    // filter) answered ENOSYS: that is reported as it is, below.
    const { syscallNr } = native.features()
    if (syscallNr < 0) throw reapUnavailableError(unavailableReason(syscallNr), pid)
  }
  throw systemError(result, syscall, pid)
}

/** Why the binding has no confirmed number: its negative errno from reading the sysfs file. */
function unavailableReason(syscallNr: number): string {
  const path = native.syscallNrPath
  if (syscallNr === -errno.ENOENT) return `${path} missing (kernel without the reap_dying patch)`
  if (syscallNr === -errno.EINVAL) return `${path} does not hold a valid syscall number`
  // EMFILE, ENOMEM, ...: a passing failure, so the next call reads the file again.
  const [code, description] = describeErrno(syscallNr)
  return `${path} could not be read (${code}: ${description})`
}

export function features(): Features {
  const raw = native.features()
  const tryReap = raw.syscallNr > 0 ? { syscallNr: raw.syscallNr } : null
  return {
    tryReap,
    tryReapKill: tryReap !== null && raw.tryReapKill,
    shrinker: shrinkerFeature(),
    processMrelease: raw.processMrelease,
  }
}

/** null without the file, and when it cannot be read (EMFILE...): features() never throws for it. */
function shrinkerFeature(): ShrinkerFeature | null {
  try {
    return { enabled: readFileSync(SHRINKER_ENABLED, 'utf8').trim() === '1' }
  } catch {
    return null
  }
}

export function reapDyingFeature(): ReapDyingFeature | null {
  return features().tryReap
}

/** The kernel's counts of try_reap_dying_process and its shrinker (series v3: vm events). */
export interface ReapDyingStats {
  /** Calls of the system call (reap_dying_calls). */
  calls: number
  /** Pages unmapped by the system call (reap_dying_pages). */
  pagesReaped: number
  /** Pages unmapped by the shrinker (reap_dying_shrinker_pages). */
  shrinkerPagesReaped: number
  /** EBUSY answers (reap_dying_busy). */
  busy: number
  /** Ranges left for later: an mmu notifier would block, a huge entry not split, a swap or migration entry (reap_dying_deferred). */
  deferred: number
}

const VMSTAT_FIELDS = {
  calls: 'reap_dying_calls',
  pagesReaped: 'reap_dying_pages',
  shrinkerPagesReaped: 'reap_dying_shrinker_pages',
  busy: 'reap_dying_busy',
  deferred: 'reap_dying_deferred',
} as const

/**
 * The reap_dying_* lines of /proc/vmstat, or null on a kernel without them
 * (no series, or one before v3). Throws for a kernel that has only some of them.
 */
export function stats(vmstat = VMSTAT): ReapDyingStats | null {
  const lines = new Map<string, number>()
  for (const line of readFileSync(vmstat, 'utf8').split('\n')) {
    const [name, value] = line.split(' ')
    if (name.startsWith('reap_dying_')) lines.set(name, Number(value))
  }
  if (lines.size === 0) return null
  const out = {} as ReapDyingStats
  for (const [field, name] of Object.entries(VMSTAT_FIELDS) as [keyof ReapDyingStats, string][]) {
    const value = lines.get(name)
    if (value === undefined) throw new Error(`${vmstat} has reap_dying_* lines but no ${name}`)
    out[field] = value
  }
  return out
}

/** pidfd_open(2); the pidfd is close-on-exec. Close it with fs.closeSync or use Pidfd. */
export function pidfdOpen(pid: number, flags?: number): number {
  const validPid = validatePid(pid)
  return check(native.pidfdOpen(validPid, validateFlags(flags)), 'pidfd_open', validPid)
}

export function pidfdSendSignal(pidfd: number, signal: string | number): void {
  check(native.pidfdSendSignal(validateFd(pidfd), validateSignal(signal)), 'pidfd_send_signal')
}

/**
 * Returns the bytes this call unmapped: at most maxBytes rounded up to a page,
 * or one whole 2 MiB THP in a call that unmapped nothing else. 0 means a whole
 * pass found nothing left; an `EAGAIN` error means this call unmapped nothing
 * but the walk is not over (call again at once). See the man page.
 */
export function tryReapDyingProcess(pidfd: number, maxBytes: number | bigint, flags?: number): number {
  const args = [validateFd(pidfd), validateMaxBytes(maxBytes), validateFlags(flags)] as const
  return check(native.tryReap(...args), 'try_reap_dying_process')
}

/** Like tryReapDyingProcess, on the libuv thread pool. */
export async function tryReapDyingProcessAsync(
  pidfd: number,
  maxBytes: number | bigint,
  flags?: number,
): Promise<number> {
  const args = [validateFd(pidfd), validateMaxBytes(maxBytes), validateFlags(flags)] as const
  return check(await native.tryReapAsync(...args), 'try_reap_dying_process')
}

export function processMrelease(pidfd: number): void {
  check(native.processMrelease(validateFd(pidfd)), 'process_mrelease')
}

export interface LockMemoryOptions {
  /**
   * Lock only what is resident now and what is faulted in later
   * (mlock2(MLOCK_ONFAULT), as earlyoom's mlockall(MCL_ONFAULT)), not every
   * page of node's code; the addon's own file is still locked whole
   * (default false).
   */
  onFault?: boolean
}

/**
 * Locks the code this process runs into RAM: mlock() of every mapping of
 * the files it has an executable mapping of (node, its shared libraries,
 * the addon). A memory killer needs it: under the very pressure it acts on,
 * reclaim evicts file pages first, and a killer whose code is paged out
 * stalls when it is needed most (lmkd and earlyoom lock themselves too).
 * Anonymous memory stays unlocked: mlockall() would make V8's
 * madvise(MADV_DONTNEED) of its heap fail, which V8 treats as fatal.
 * Returns the bytes of the mappings locked (what VmLck counts; with onFault
 * only their resident part is in RAM). Needs CAP_IPC_LOCK or a large enough
 * RLIMIT_MEMLOCK; throws the system error (EPERM, ENOMEM) otherwise, and
 * then nothing stays locked (what it had locked is unlocked again).
 */
export function lockMemory(options?: LockMemoryOptions): number {
  const { onFault } = validateOptions<LockMemoryOptions>(options)
  if (onFault !== undefined && typeof onFault !== 'boolean') throw invalidArgType('options.onFault', 'of type boolean', onFault)
  return check(native.lockMappedCode(onFault === true), onFault ? 'mlock2' : 'mlock')
}

/** Like processMrelease, on a thread of its own, not the libuv pool: it may wait seconds for the victim's mmap_lock. */
export async function processMreleaseAsync(pidfd: number): Promise<void> {
  const fd = validateFd(pidfd)
  check(await native.processMreleaseAsync(fd), 'process_mrelease')
}

/**
 * Resident set size of pid from /proc/<pid>/statm, or null when it cannot be
 * read (the process is gone). A zombie reads as 0.
 */
export function readRssBytes(pid: number): number | null {
  const path = `/proc/${validatePid(pid)}/statm`
  let statm: string
  try {
    statm = readFileSync(path, 'utf8')
  } catch {
    return null
  }
  return Number(statm.split(' ')[1]) * native.pageSize
}
