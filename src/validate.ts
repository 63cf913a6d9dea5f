// The one argument validator module: every public entry point checks its
// arguments here, before any syscall, and fails with Node-style errors.
import { constants } from 'node:os'
import { invalidArgType, invalidArgValue, outOfRange } from './errors'
import type { PressureResource } from './psi'

const RESOURCES: readonly PressureResource[] = ['memory', 'cpu', 'io']

const INT32_MAX = 2 ** 31 - 1
const UINT32_MAX = 2 ** 32 - 1
export const UINT64_MAX = 2n ** 64n - 1n
// Linux has signals 1..64 (SIGRTMAX); 0 only checks that signalling is allowed.
const SIGNAL_MAX = 64

/** An integer from min to max. */
export function validateInteger(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value)
  if (!Number.isInteger(value)) throw outOfRange(name, 'an integer', value)
  if (value < min || value > max) throw outOfRange(name, `>= ${min} && <= ${max}`, value)
  return value
}

export function validateFd(value: unknown, name = 'pidfd'): number {
  return validateInteger(value, name, 0, INT32_MAX)
}

export function validatePid(value: unknown, name = 'pid'): number {
  return validateInteger(value, name, 1, INT32_MAX)
}

/** Syscall flags: an unsigned 32-bit integer, 0 when omitted. */
export function validateFlags(value: unknown, name = 'flags'): number {
  return value === undefined ? 0 : validateInteger(value, name, 0, UINT32_MAX)
}

/**
 * A byte count for the kernel: a non-negative safe integer, Infinity (no cap),
 * or a bigint up to 2^64-1. Returned as the bigint the binding takes.
 */
export function validateMaxBytes(value: unknown, name = 'maxBytes'): bigint {
  if (typeof value === 'bigint') {
    if (value < 0n || value > UINT64_MAX) throw outOfRange(name, `>= 0n && <= ${UINT64_MAX}n`, value)
    return value
  }
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number or bigint', value)
  if (value === Infinity) return UINT64_MAX
  if (!Number.isSafeInteger(value) || value < 0) {
    throw outOfRange(name, `a safe integer >= 0 or Infinity`, value)
  }
  return BigInt(value)
}

/** A byte amount for the reaping policy: a number > min (or >= 0), safe integer or Infinity. */
export function validateByteAmount(value: unknown, name: string, min: number, allowInfinity: boolean): number {
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value)
  if (allowInfinity && value === Infinity) return value
  if (!Number.isSafeInteger(value) || value < min) {
    throw outOfRange(name, `a safe integer >= ${min}${allowInfinity ? ' or Infinity' : ''}`, value)
  }
  return value
}

/** Milliseconds: a non-negative number, Infinity allowed. */
export function validateMilliseconds(value: unknown, name: string): number {
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value)
  if (Number.isNaN(value) || value < 0) throw outOfRange(name, '>= 0', value)
  return value
}

/** A signal name as in os.constants.signals ('SIGKILL'), or a number 0..64. */
export function validateSignal(value: unknown, name = 'signal'): number {
  if (typeof value === 'string') {
    if (!Object.hasOwn(constants.signals, value)) {
      throw invalidArgValue(name, value, 'must be a signal name such as \'SIGKILL\'')
    }
    return (constants.signals as Record<string, number>)[value]
  }
  if (typeof value === 'number') return validateInteger(value, name, 0, SIGNAL_MAX)
  throw invalidArgType(name, 'of type string or number', value)
}

export function validateOptions<T extends object>(value: unknown, name = 'options'): Partial<T> {
  if (value === undefined) return {}
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalidArgType(name, 'of type object', value)
  }
  return value as Partial<T>
}

export function validateFunction(value: unknown, name: string): (...args: never[]) => unknown {
  if (typeof value !== 'function') throw invalidArgType(name, 'of type function', value)
  return value as (...args: never[]) => unknown
}

export function validateAbortSignal(value: unknown, name = 'options.signal'): AbortSignal {
  if (!(value instanceof AbortSignal)) throw invalidArgType(name, 'an instance of AbortSignal', value)
  return value
}

/** A PSI resource: 'memory', 'cpu' or 'io'. */
export function validateResource(value: unknown, name = 'resource'): PressureResource {
  if (!RESOURCES.includes(value as PressureResource)) throw invalidArgValue(name, value, "must be 'memory', 'cpu' or 'io'")
  return value as PressureResource
}

/** A cgroup v2 directory path. */
export function validateCgroup(value: unknown, name = 'cgroup'): string {
  if (typeof value !== 'string') throw invalidArgType(name, 'of type string', value)
  if (value === '' || value.includes('\0')) throw invalidArgValue(name, value, 'must be a directory path')
  return value
}
