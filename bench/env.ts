// Reading the benchmark's PIDFD_REAP_* knobs from the environment.

/** A knob or a setting the benchmark cannot run with: main.js prints its message alone, without a stack. */
export class ConfigError extends Error {}

/** A whole number >= 0, or `fallback` when unset or empty. */
export function envInt(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const text = env[name]
  if (text === undefined || text === '') return fallback
  if (!/^\d+$/.test(text)) throw new ConfigError(`${name}=${text}: not a whole number`)
  return Number(text)
}

/** A number >= 0, or `fallback` when unset or empty. */
export function envNumber(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const text = env[name]
  if (text === undefined || text === '') return fallback
  const value = Number(text)
  if (!Number.isFinite(value) || value < 0) throw new ConfigError(`${name}=${text}: not a number >= 0`)
  return value
}

/** Comma-separated numbers >= 0, or `fallback` when unset or empty. */
export function envList(env: NodeJS.ProcessEnv, name: string, fallback: number[]): number[] {
  const text = env[name]
  if (!text) return fallback
  return text.split(',').map((part) => {
    const value = Number(part.trim())
    if (!Number.isFinite(value) || value < 0) throw new ConfigError(`${name}=${text}: '${part}' is not a number`)
    return value
  })
}

/**
 * Which clock a boot measures with (bench/run sets PIDFD_REAP_BENCH_CLOCK):
 * icount = one vCPU under \`scripts/vm --icount\`, guest time counts
 * instructions; wall = two vCPUs under ordinary TCG, for what needs two
 * CPUs at once.
 */
export type Clock = 'icount' | 'wall'

export function envClock(env: NodeJS.ProcessEnv): Clock {
  const text = env.PIDFD_REAP_BENCH_CLOCK || 'wall'
  if (text !== 'icount' && text !== 'wall') throw new ConfigError(`PIDFD_REAP_BENCH_CLOCK=${text}: icount or wall`)
  return text
}
