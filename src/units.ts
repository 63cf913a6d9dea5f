// The one parser/formatter for sizes and durations (CLI flags, reports).
import { invalidArgType, invalidArgValue } from './errors'

// K, M, G, T are binary multiples, as in free(1) and most memory tools.
const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 2 ** 10,
  kb: 2 ** 10,
  kib: 2 ** 10,
  m: 2 ** 20,
  mb: 2 ** 20,
  mib: 2 ** 20,
  g: 2 ** 30,
  gb: 2 ** 30,
  gib: 2 ** 30,
  t: 2 ** 40,
  tb: 2 ** 40,
  tib: 2 ** 40,
}

const DURATION_UNITS: Record<string, number> = { '': 1, ms: 1, s: 1000, m: 60_000, min: 60_000 }

/** The number and its unit's multiplier, or an error that shows an example. */
function parseQuantity(text: unknown, name: string, units: Record<string, number>, example: string) {
  if (typeof text !== 'string') throw invalidArgType(name, 'of type string', text)
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text)
  const unit = match?.[2].toLowerCase() ?? ''
  const number = match && Object.hasOwn(units, unit) ? Number(match[1]) : NaN
  const value = number * units[unit]
  if (!Number.isFinite(value) || value > Number.MAX_SAFE_INTEGER) {
    throw invalidArgValue(name, text, `must be like ${example}`)
  }
  return { number, multiplier: units[unit], value }
}

/**
 * '16M', '1.5GiB', '4096' -> bytes. With a unit the result is rounded down to
 * whole bytes; a plain byte count must be whole ('1.5' is an error).
 */
export function parseSize(text: string, name = 'size'): number {
  const { number, multiplier, value } = parseQuantity(text, name, SIZE_UNITS, "'16M', '512KiB', '1G' or a number of bytes")
  if (multiplier === 1 && !Number.isInteger(number)) {
    throw invalidArgValue(name, text, 'must be a whole number of bytes')
  }
  return Math.floor(value)
}

/** '500ms', '2s', '250' (milliseconds) -> milliseconds. */
export function parseDuration(text: string, name = 'duration'): number {
  return parseQuantity(text, name, DURATION_UNITS, "'500ms', '2s' or a number of milliseconds").value
}

const BYTE_UNITS = ['KiB', 'MiB', 'GiB', 'TiB'] as const

/** 1536 -> '1.5 KiB'; below 1 KiB, plain bytes. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`
  let value = bytes / 1024
  let unit = 0
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024
    unit++
  }
  return `${value.toFixed(1)} ${BYTE_UNITS[unit]}`
}

/** 12.3 -> '12 ms', 1500 -> '1.50 s'. */
export function formatDuration(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`
}
