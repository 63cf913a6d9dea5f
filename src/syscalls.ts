// The functional API: validated wrappers around the binding that turn -errno
// results into Node-style errors, plus feature detection and /proc reading.
import { readFileSync } from 'node:fs'
import { native } from './binding'
import { describeErrno, errno, reapUnavailableError, systemError } from './errors'
import { validateFd, validateFlags, validateMaxBytes, validatePid, validateSignal } from './validate'

export const constants = {
  /** pidfd_open flag: the pidfd is non-blocking (O_NONBLOCK). */
  PIDFD_NONBLOCK: 0o4000,
  /** pidfd_open flag: pid is a thread id and the pidfd refers to that thread (Linux >= 6.9). */
  PIDFD_THREAD: 0o200,
} as const

export interface ReapDyingFeature {
  /** The syscall number the kernel published in /sys/kernel/mm/reap_dying/syscall_nr. */
  syscallNr: number
}

export interface Features {
  /** try_reap_dying_process, when a patched kernel confirmed its number. */
  tryReap: ReapDyingFeature | null
  /** process_mrelease(2) (Linux >= 5.15). */
  processMrelease: boolean
}

export const REAP_DYING_SYSFS = '/sys/kernel/mm/reap_dying'

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
  return {
    tryReap: raw.syscallNr > 0 ? { syscallNr: raw.syscallNr } : null,
    processMrelease: raw.processMrelease,
  }
}

export function reapDyingFeature(): ReapDyingFeature | null {
  return features().tryReap
}

export interface ReapDyingStats {
  calls: number
  pagesReaped: number
  busy: number
}

/** The patched kernel's counters, or null on kernels without the patch. */
export function reapDyingStats(directory = REAP_DYING_SYSFS): ReapDyingStats | null {
  const read = (name: string): number => Number(readFileSync(`${directory}/${name}`, 'utf8').trim())
  try {
    return { calls: read('calls'), pagesReaped: read('pages_reaped'), busy: read('busy') }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw error
  }
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

/** Like processMrelease, on the libuv thread pool (it may wait for the victim's mmap_lock). */
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
