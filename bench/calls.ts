// The call-cost part (js_vs_c_call): the same try_reap_dying_process call
// from C and from JavaScript, in the same process, on the patched kernel:
// a probe (max_bytes 0) on a dying process (a killed victim held in a
// frozen cgroup: it stays dying, the probe answers 0), and the EPERM answer
// on a live process. Per round, one batch of each way in a random order;
// the first rounds are warm-up (JIT, caches).
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { Pidfd, tryReapDyingProcess } from 'pidfd-reap'
import { Freezer, compileC, killQuietly, projectRoot, startSleeper, startVictim } from '../victims'
import { round, shuffled, spread } from './stats'

export interface CallsConfig {
  rounds: number
  warmup: number
  /** Calls per batch: sync ways, and the async way (slower per call). */
  batch: number
  asyncBatch: number
}

interface CallCost {
  loop(fd: number, maxBytes: number, n: number): number
  call(fd: number, maxBytes: number): number
}

/** bench/callcost.c, compiled against Node's headers and loaded into this process. */
function callCostAddon(): CallCost {
  const headers = [join(dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node'].find((dir) => existsSync(join(dir, 'node_api.h')))
  if (!headers) throw new Error("bench calls: Node's headers (node_api.h) not found")
  const file = compileC(join(projectRoot(), 'bench', 'callcost.c'), ['-shared', '-fPIC', `-I${headers}`])
  const module = { exports: {} as CallCost }
  process.dlopen(module, file)
  return module.exports
}

interface RawBinding {
  tryReap(fd: number, maxBytes: bigint, flags: number): number
}
let raw: RawBinding | undefined

/** The raw addon (the same module instance the package uses), looked up once: node-gyp-build reads directories. */
function rawBinding(): RawBinding {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  raw ??= require('node-gyp-build')(projectRoot()) as RawBinding
  return raw
}

type Way = 'c' | 'raw' | 'public' | 'async'
const WAYS: Way[] = ['c', 'raw', 'public', 'async']

/** ns per call of one batch of `way` on `pidfd`. */
async function batch(way: Way, pidfd: Pidfd, c: CallCost, n: number): Promise<number> {
  const fd = pidfd.fd
  if (way === 'c') return c.loop(fd, 0, n)
  const binding = rawBinding()
  const start = process.hrtime.bigint()
  if (way === 'raw') {
    for (let i = 0; i < n; i++) binding.tryReap(fd, 0n, 0)
  } else if (way === 'public') {
    for (let i = 0; i < n; i++) {
      try {
        pidfd.tryReap(0)
      } catch {
        // EPERM on the live process: thrown, as the product does
      }
    }
  } else {
    for (let i = 0; i < n; i++) await pidfd.tryReapAsync(0)
  }
  return Number(process.hrtime.bigint() - start) / n
}

export async function runCalls(config: CallsConfig, rand: () => number) {
  const c = callCostAddon()
  const freezer = Freezer.create(`pidfd-reap-calls-${process.pid}`)
  const victim = await startVictim({ memory: 4 })
  const sleeper = startSleeper()
  try {
    freezer.add(victim.pid)
    await freezer.freeze()
    using dying = Pidfd.open(victim.pid)
    using live = Pidfd.open(sleeper.pid)
    dying.sendSignal('SIGKILL')
    const answers = { dying: c.call(dying.fd, 0), live: c.call(live.fd, 0), dyingPublic: tryReapDyingProcess(dying.fd, 0) }
    if (answers.dying !== 0 || answers.live !== -1) throw new Error(`bench calls: unexpected answers ${JSON.stringify(answers)} (want 0 and -EPERM)`)
    const perRound: Record<string, number[]> = { c: [], raw: [], public: [], async: [], cEperm: [], publicEperm: [] }
    for (let r = 0; r < config.warmup + config.rounds; r++) {
      const ns: Record<string, number> = {}
      for (const way of shuffled(WAYS, rand)) ns[way] = await batch(way, dying, c, way === 'async' ? config.asyncBatch : config.batch)
      for (const way of shuffled(['c', 'public'] as Way[], rand)) ns[`${way}Eperm`] = await batch(way, live, c, config.batch)
      if (r < config.warmup) continue
      for (const key of Object.keys(perRound)) perRound[key].push(ns[key])
    }
    const ratio = (a: string, b: string): number[] => perRound[a].map((v, i) => v / perRound[b][i])
    const perRoundRatios = {
      js_vs_c_call: ratio('public', 'c'),
      js_vs_c_call_raw: ratio('raw', 'c'),
      js_vs_c_call_async: ratio('async', 'c'),
      js_vs_c_call_eperm: ratio('publicEperm', 'cEperm'),
    }
    const addedNs = perRound.async.map((v, i) => v - perRound.c[i])
    return {
      perRoundRatios,
      addedNs,
      section: {
        settings: config,
        what: {
          c: 'bench/callcost.c: a C loop of try_reap_dying_process(pidfd, 0, 0) in this process (Node-API addon)',
          raw: "the package's addon called directly (no validation, -errno returned)",
          public: 'Pidfd#tryReap(0): validation, the addon, errors thrown as Node-style Errors',
          async: 'Pidfd#tryReapAsync(0) awaited one at a time: the thread pool and a promise per call, the path killAndReap takes',
          dying: 'a killed victim held in a frozen cgroup v1 freezer: try_reap answers the probe with 0',
          eperm: 'a live sleep process: EPERM',
        },
        nsPerCall: Object.fromEntries(Object.entries(perRound).map(([k, v]) => [k, { ...spread(v), rounds: v.map((x) => round(x, 1)) }])),
      },
    }
  } finally {
    await killQuietly(sleeper)
    victim.child.kill('SIGKILL')
    await freezer.destroy()
    await victim.gone
  }
}
