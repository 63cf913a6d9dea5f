// The one place where pidfd-reap builds error objects. System errors look like
// Node's own fs errors (code, negative errno, syscall, uv-style message);
// argument errors carry Node's ERR_* codes.
import { constants as osConstants } from 'node:os'
import { getSystemErrorMap, inspect } from 'node:util'

export interface SystemError extends Error {
  /** Negative errno, as in Node (-16 for EBUSY). */
  errno: number
  /** 'EBUSY', 'EPERM', ... or one of pidfd-reap's ERR_* codes. */
  code: string
  syscall: string
  /**
   * The process the call concerned, when the call was given a pid or a Pidfd
   * (as fs errors carry `path`; calls given only an fd carry neither).
   */
  pid?: number
}

export type ArgumentError = (TypeError | RangeError) & { code: string }

export const ERR_PIDFD_CLOSED = 'ERR_PIDFD_CLOSED'
export const ERR_PIDFD_REAP_UNAVAILABLE = 'ERR_PIDFD_REAP_UNAVAILABLE'
export const ERR_PIDFD_REAP_UNSUPPORTED_PLATFORM = 'ERR_PIDFD_REAP_UNSUPPORTED_PLATFORM'

// Node's own errno table (positive values; libuv uses them negated on Linux).
export const errno = osConstants.errno

const systemErrors = getSystemErrorMap()

function withCode<E extends Error, F extends object>(error: E, fields: F): E & F {
  return Object.assign(error, fields)
}

/** Node's name and wording for a negative errno: ['EBUSY', 'resource busy or locked']. */
export function describeErrno(negativeErrno: number): [code: string, description: string] {
  return systemErrors.get(negativeErrno) ?? [`E${-negativeErrno}`, `unknown system error ${-negativeErrno}`]
}

/** Error for a failed syscall; `negativeErrno` is what the binding returned. */
export function systemError(negativeErrno: number, syscall: string, pid?: number): SystemError {
  const [code, description] = describeErrno(negativeErrno)
  const subject = pid === undefined ? syscall : `${syscall} (pid ${pid})`
  return withPid(withCode(new Error(`${code}: ${description}, ${subject}`), { errno: negativeErrno, code, syscall }), pid)
}

/** A SystemError about a file, as Node's fs makes them (with `path`). */
export function pathError(negativeErrno: number, syscall: string, path: string): SystemError & { path: string } {
  const [code, description] = describeErrno(negativeErrno)
  return withCode(new Error(`${code}: ${description}, ${syscall} '${path}'`), { errno: negativeErrno, code, syscall, path })
}

/** try_reap_dying_process was not confirmed by the kernel, so it is never called. */
export function reapUnavailableError(reason: string, pid?: number): SystemError {
  return withPid(
    withCode(new Error(`try_reap_dying_process is not available: ${reason}`), {
      errno: -errno.ENOSYS,
      code: ERR_PIDFD_REAP_UNAVAILABLE,
      syscall: 'try_reap_dying_process',
    }),
    pid,
  )
}

// Only set when known, so that the property is absent (not undefined) otherwise, as in Node.
function withPid<E extends SystemError>(error: E, pid: number | undefined): E {
  if (pid !== undefined) error.pid = pid
  return error
}

export function closedError(): Error & { code: string } {
  return withCode(new Error('The pidfd is closed'), { code: ERR_PIDFD_CLOSED })
}

export function unsupportedPlatformError(platform: string): Error & { code: string } {
  return withCode(
    new Error(`pidfd-reap needs Linux (pidfds are a Linux feature); this platform is ${platform}`),
    { code: ERR_PIDFD_REAP_UNSUPPORTED_PLATFORM },
  )
}

// Mirrors the "Received ..." suffix of Node's own argument errors.
function describeReceived(value: unknown): string {
  if (value === null || value === undefined) return `Received ${String(value)}`
  if (typeof value === 'function') return `Received function ${value.name || '<anonymous>'}`
  if (typeof value === 'object') {
    const name = (value as object).constructor?.name
    return name ? `Received an instance of ${name}` : `Received ${inspect(value, { depth: -1 })}`
  }
  let shown = inspect(value, { colors: false })
  if (shown.length > 28) shown = `${shown.slice(0, 25)}...`
  return `Received type ${typeof value} (${shown})`
}

export function invalidArgType(name: string, expected: string, value: unknown): ArgumentError {
  return withCode(
    new TypeError(`The "${name}" argument must be ${expected}. ${describeReceived(value)}`),
    { code: 'ERR_INVALID_ARG_TYPE' },
  )
}

export function outOfRange(name: string, range: string, value: unknown): ArgumentError {
  const shown = typeof value === 'bigint' ? `${value}n` : String(value)
  return withCode(
    new RangeError(`The value of "${name}" is out of range. It must be ${range}. Received ${shown}`),
    { code: 'ERR_OUT_OF_RANGE' },
  )
}

export function invalidArgValue(name: string, value: unknown, reason = 'is invalid'): ArgumentError {
  return withCode(
    new TypeError(`The argument '${name}' ${reason}. Received ${inspect(value)}`),
    { code: 'ERR_INVALID_ARG_VALUE' },
  )
}
