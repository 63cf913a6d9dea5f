// From the boots of one `npm run bench` to results.json (on the host, by
// `main.js combine`, or in the guest for a single boot): each boot measured
// the parts of its clock (config.ts CLOCK_PARTS); the first icount boot and
// the wall boot give the ratios, a second icount boot (--repeat-check) only
// the spread of the icount ratios between two whole runs.
import type { Clock } from './env'
import { ratioFields } from './ratios'
import { round, type Estimate } from './stats'

/** What one boot writes (bench.ts). */
export interface Boot {
  clock: Clock
  generatedAt: string
  durationMs: number
  partMs: Record<string, number>
  provenance: Record<string, unknown>
  settings: Record<string, unknown>
  estimates: Record<string, Estimate>
  sections: Record<string, unknown>
  /** The host's load average, sampled by bench/run while this boot ran. */
  hostLoad?: HostLoad
}

export interface HostLoad {
  what: string
  samples: number
  min: number
  median: number
  max: number
}

/** --repeat-check's goal: every icount ratio of two whole runs within 2 % of each other. */
export const REPEAT_LIMIT = 0.02

/** How far apart two runs' values are: the larger ÷ the smaller, less 1 (Infinity when either is not a positive number). */
export function relativeSpread(a: number, b: number): number {
  if (!(a > 0 && b > 0) || !Number.isFinite(a) || !Number.isFinite(b)) return Infinity
  return Math.max(a, b) / Math.min(a, b) - 1
}

export interface RepeatCheck {
  what: string
  limit: number
  ratios: Record<string, { values: [number, number]; spread: number | null; within: boolean }>
  /** Ratios only one of the runs has (its part not run, or failed, in the other): not compared, listed. */
  notRepeated: string[]
  maxSpread: number | null
  /** Every ratio both runs have within the limit (one without a value counts as outside), and at least one compared. */
  pass: boolean
}

/** The spread of every ratio two runs of the same clock gave. */
export function repeatCheck(first: Record<string, Estimate>, second: Record<string, Estimate>, limit = REPEAT_LIMIT): RepeatCheck {
  const keys = Object.keys(first).filter((key) => key in second).sort()
  const notRepeated = [...new Set([...Object.keys(first), ...Object.keys(second)])].filter((key) => !(key in first && key in second)).sort()
  const ratios: RepeatCheck['ratios'] = {}
  let max = 0
  for (const key of keys) {
    const a = first[key].value
    const b = second[key].value
    const spread = relativeSpread(a, b)
    max = Math.max(max, spread)
    ratios[key] = { values: [round(a, 4), round(b, 4)], spread: Number.isFinite(spread) ? round(spread, 4) : null, within: spread <= limit }
  }
  return {
    what: `two whole icount boots of the same commit: every ratio's larger value ÷ its smaller, less 1; the goal is at most ${limit}`,
    limit,
    ratios,
    notRepeated,
    maxSpread: keys.length && Number.isFinite(max) ? round(max, 4) : null,
    pass: keys.length > 0 && Object.values(ratios).every((r) => r.within),
  }
}

/** Where a section of a wall boot goes when an icount boot has one of the same name. */
const wallName = (name: string): string => `${name}Wall`

export function combine(boots: Boot[]): Record<string, unknown> {
  if (boots.length === 0) throw new Error('combine: no boot to combine')
  const icount = boots.filter((b) => b.clock === 'icount')
  const wall = boots.filter((b) => b.clock === 'wall')
  if (icount.length > 2 || wall.length > 1) throw new Error(`combine: ${icount.length} icount and ${wall.length} wall boots (at most 2 and 1)`)
  const primary = [icount[0], wall[0]].filter((b): b is Boot => b !== undefined)
  const estimates: Record<string, Estimate> = {}
  const clocks: Record<string, Clock> = {}
  const sections: Record<string, unknown> = {}
  for (const boot of primary) {
    for (const [key, e] of Object.entries(boot.estimates)) {
      estimates[key] = e
      clocks[key] = boot.clock
    }
    for (const [name, section] of Object.entries(boot.sections)) sections[name in sections ? wallName(name) : name] = section
  }
  const main = primary[0]
  const partMs: Record<string, number> = {}
  for (const boot of boots) for (const [part, ms] of Object.entries(boot.partMs)) partMs[`${part} (${boot.clock})`] = (partMs[`${part} (${boot.clock})`] ?? 0) + ms
  const fields = ratioFields(estimates)
  return {
    schema: 3,
    generatedAt: boots.map((b) => b.generatedAt).sort()[boots.length - 1],
    durationMs: boots.reduce((ms, b) => ms + b.durationMs, 0),
    partMs,
    ...main.provenance,
    boots: boots.map((b) => ({ clock: b.clock, generatedAt: b.generatedAt, durationMs: b.durationMs, partMs: b.partMs, provenance: b.provenance, hostLoad: b.hostLoad ?? null, role: b === icount[1] ? 'repeat' : 'measured' })),
    settings: main.settings,
    ...fields,
    clocks: Object.fromEntries(Object.keys(fields.ratios).concat(Object.keys(fields.noValue)).map((key) => [key, clocks[key]])),
    ...(icount.length === 2 ? { repeatCheck: repeatCheck(icount[0].estimates, icount[1].estimates) } : {}),
    ...sections,
  }
}
