// The latency-against-cap part: per memory kind (4 KiB anonymous pages,
// THP, written private file pages), the time of one try_reap call for each
// cap, over at least `minCalls` pooled calls per cap. bench/bounds.c
// `clones --own-pages 1` builds one victim per kind and reaps fork()ed
// clones of it, each of which first drops the pages it shares with the
// parent and populates fresh ones of its own: its reaping really frees them,
// as a victim's would. The pools hold every call but EBUSY and the closing
// 0: those that unmapped something and the EAGAIN ones. Clones and caps in
// a random order. A THP call unmaps whole huge pages, so a 1 MiB cap unmaps
// 2 MiB there: each cap is shown with the median bytes its calls unmapped.
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { Freezer } from '../victims'
import { boundsHelper, layoutArgs, type Layout } from './bounds-run'
import { PooledSamples, bootstrapGroups, round, type Estimate } from './stats'

const MiB = 1024 * 1024
export const KINDS = ['anon', 'thp', 'file'] as const
export type Kind = (typeof KINDS)[number]

export interface LatencyConfig {
  parentMiB: number
  /** Caps (bytes) and the pooled reaping calls each needs at least. */
  caps: { bytes: number; minCalls: number }[]
  cpu: number
  resamples: number
  filePath?: string
  /** Clones per cap and kind at least (the bootstrap resamples clones), and at most (a safety net). */
  minClones: number
  maxClones: number
}

interface CloneOutput {
  cap: number
  setupMs: number
  forkMs: number
  pageSize: number
  rssBefore: number
  rssAfter: number
  ended: string
  calls: number
  bytes: number
  victimRan: boolean
  ns: number[]
  results: [number, number][]
}

const EAGAIN = -11

/** A clone's calls' results, expanded from the run-length encoding. */
const retsOf = (out: CloneOutput): number[] => out.results.flatMap(([ret, n]) => Array<number>(n).fill(ret))

/** Reaping calls' times (ns) of a clone: the calls that unmapped something, and the EAGAIN ones. */
function reapingNs(out: CloneOutput): number[] {
  const rets = retsOf(out)
  return out.ns.filter((_, i) => rets[i] > 0 || rets[i] === EAGAIN)
}

function log(text: string): void {
  process.stderr.write(`bench latency: ${text}\n`)
}

function layoutOf(kind: Kind, config: LatencyConfig): Layout {
  if (kind === 'anon') return { anonMiB: config.parentMiB }
  if (kind === 'thp') return { thpMiB: config.parentMiB }
  return { fileMiB: config.parentMiB, filePath: config.filePath }
}

/** One kind: its clones' reaping-call times, per cap (one array per clone). */
async function runKind(kind: Kind, config: LatencyConfig, freezer: Freezer, rand: () => number) {
  const args = ['clones', '--own-pages', '1', '--freezer', freezer.group, '--build-cpu', String(config.cpu), '--cpu', String(config.cpu), ...layoutArgs(layoutOf(kind, config))]
  const child = spawn(boundsHelper(), args, { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]()
  const closed = new Promise<number | null>((resolve) => child.once('close', resolve))
  const perCap = new Map<number, number[][]>(config.caps.map((c) => [c.bytes, []]))
  // What each call that unmapped something returned, and how many calls said EAGAIN, per cap.
  const unmapped = new Map<number, number[]>(config.caps.map((c) => [c.bytes, []]))
  const eagain = new Map<number, number>(config.caps.map((c) => [c.bytes, 0]))
  const invalid: Record<string, unknown>[] = []
  let setupMs = 0
  const forkMs: number[] = []
  try {
    for (;;) {
      const pending = config.caps.filter((c) => {
        const clones = perCap.get(c.bytes)!
        const calls = clones.reduce((n, a) => n + a.length, 0)
        return (calls < c.minCalls || clones.length < config.minClones) && clones.length < config.maxClones
      })
      if (pending.length === 0) break
      const cap = pending[Math.floor(rand() * pending.length)]
      child.stdin!.write(`reap ${cap.bytes}\n`)
      const next = await lines.next()
      if (next.done) throw new Error(`bench/bounds.c clones (${kind}) ended early (${await closed})`)
      const out = JSON.parse(next.value) as CloneOutput
      if (out.setupMs) setupMs = out.setupMs
      else forkMs.push(out.forkMs)
      if (out.victimRan || out.ended !== 'zero') {
        invalid.push({ cap: cap.bytes, victimRan: out.victimRan, ended: out.ended })
        if (invalid.length > 20) throw new Error(`bench latency: ${kind}: too many invalid clones`)
        continue
      }
      perCap.get(cap.bytes)!.push(reapingNs(out))
      const rets = retsOf(out)
      unmapped.get(cap.bytes)!.push(...rets.filter((r) => r > 0))
      eagain.set(cap.bytes, eagain.get(cap.bytes)! + rets.filter((r) => r === EAGAIN).length)
    }
  } finally {
    child.stdin!.end()
    await closed
  }
  const clones = Object.fromEntries([...perCap].map(([cap, a]) => [cap, a.length]))
  log(`${kind}: clones per cap ${JSON.stringify(clones)}, parent built in ${(setupMs / 1000).toFixed(1)} s`)
  return { perCap, unmapped, eagain, invalid, setupMs, forkMsMedian: forkMs.sort((a, b) => a - b)[forkMs.length >> 1] ?? null }
}

export async function runLatency(config: LatencyConfig, rand: () => number) {
  const started = Date.now()
  const freezer = Freezer.create(`pidfd-reap-latency-${process.pid}`)
  const kinds: Partial<Record<Kind, Awaited<ReturnType<typeof runKind>>>> = {}
  try {
    for (const kind of KINDS) kinds[kind] = await runKind(kind, config, freezer, rand)
  } finally {
    await freezer.destroy()
  }
  // p99 ratio 1 MiB ÷ 64 MiB per kind, and the worst kind; clones resampled per cap and kind.
  const small = MiB
  const large = 64 * MiB
  const pools = KINDS.flatMap((k) => [new PooledSamples(kinds[k]!.perCap.get(small)!), new PooledSamples(kinds[k]!.perCap.get(large)!)])
  const sizes = KINDS.flatMap((k) => [kinds[k]!.perCap.get(small)!.length, kinds[k]!.perCap.get(large)!.length])
  const ratioOf = (i: number, picks: number[][]): number => pools[2 * i].percentile(picks[2 * i], 99) / pools[2 * i + 1].percentile(picks[2 * i + 1], 99)
  const estimates: Record<string, Estimate> = {}
  KINDS.forEach((kind, i) => {
    estimates[`p99_1MiB_vs_64MiB_${kind}`] = bootstrapGroups(sizes, (picks) => ratioOf(i, picks), config.resamples, rand)
  })
  estimates.p99_1MiB_vs_64MiB = bootstrapGroups(sizes, (picks) => Math.max(...KINDS.map((_, i) => ratioOf(i, picks))), config.resamples, rand)
  const summary: Record<string, unknown> = {}
  for (const kind of KINDS) {
    const k = kinds[kind]!
    const caps: Record<string, unknown> = {}
    for (const [cap, clones] of k.perCap) {
      const pool = new PooledSamples(clones)
      const all = clones.map((_, i) => i)
      const us = (p: number): number => round(pool.percentile(all, p) / 1e3, 1)
      const bytes = k.unmapped.get(Number(cap))!.sort((a, b) => a - b)
      caps[cap] = {
        clones: clones.length,
        calls: pool.count(all),
        eagainCalls: k.eagain.get(Number(cap)),
        unmappedPerCallMedianBytes: bytes.length ? bytes[bytes.length >> 1] : null,
        p50Us: round(pool.percentile(all, 50) / 1e3, 1), p99Us: us(99), maxUs: us(100) }
    }
    summary[kind] = { caps, parentSetupMs: k.setupMs, forkMsMedian: k.forkMsMedian, invalidClones: k.invalid }
  }
  const worst = KINDS.reduce((w, k) => (estimates[`p99_1MiB_vs_64MiB_${k}`].value > estimates[`p99_1MiB_vs_64MiB_${w}`].value ? k : w))
  return {
    estimates,
    section: {
      durationMs: Date.now() - started,
      settings: { ...config, filePath: undefined },
      method:
        'One victim per kind (bench/bounds.c clones --own-pages 1), fork()ed once per measured clone; each clone drops the pages it shares with the parent and populates fresh ones of its own (so its reaping frees them), is frozen (cgroup v1 freezer), SIGKILLed and reaped with one cap until the 0, on CPU ' +
        `${config.cpu}; the calls that unmapped something and the EAGAIN calls are pooled per cap (EBUSY and the closing 0 are not); nearest-rank p99; interval: percentile bootstrap resampling each cap's clones`,
      worstKind: worst,
      kinds: summary,
    },
  }
}
