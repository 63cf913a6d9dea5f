// The ratios the project tracks (issue 7, "Definitions"): their goals and one
// line each on what they divide, in one place for every part of the
// benchmark; and how an estimate (paired per-round ratios, or a pooled p99
// ratio, with its 95 % interval) becomes the results.json fields
// ratios.<key>, ratiosCi95.<key>, verdicts.<key> (issue 16: pass only when
// the whole interval meets the goal, fail when the whole interval misses it,
// inconclusive otherwise), intervalMethods.<key>, rounds.<key>.
import { round, verdict, type Estimate, type Goal, type Verdict } from './stats'

export type { Goal } from './stats'

export interface RatioDefinition {
  what: string
  goal?: Goal
}

const lt = (value: number): Goal => ({ op: '<', value })
const le = (value: number): Goal => ({ op: '<=', value })
const ge = (value: number): Goal => ({ op: '>=', value })

export const DEFINITIONS: Record<string, RatioDefinition> = {
  try_reap_vs_mrelease_throughput: {
    what: 'in-syscall throughput (victim RSS drop / time in the calls of the pass): one uncapped try_reap call ÷ process_mrelease, same frozen mixed victim',
    goal: ge(0.95),
  },
  capped_1MiB_total_vs_uncapped: {
    what: 'in-syscall time of the whole 1 MiB-capped loop (until the 0) ÷ the uncapped call and its closing 0: the worse of the mixed and the spread victim',
    goal: le(1.25),
  },
  capped_1MiB_total_vs_uncapped_mixed: { what: 'the same on the mixed victim (4 KiB anon 1/2, THP 1/4, private file copies 1/4)', goal: le(1.25) },
  capped_1MiB_total_vs_uncapped_spread: { what: 'the same on 4 KiB pages spread over thousands of VMAs', goal: le(1.25) },
  p99_1MiB_vs_64MiB: {
    what: 'nearest-rank p99 of the call latency over >= 1000 pooled calls per cap, 1 MiB ÷ 64 MiB, per memory kind: the worst kind',
    goal: le(1 / 16),
  },
  p99_1MiB_vs_64MiB_anon: { what: 'the same, 4 KiB anonymous pages', goal: le(1 / 16) },
  p99_1MiB_vs_64MiB_thp: { what: 'the same, transparent huge pages', goal: le(1 / 16) },
  p99_1MiB_vs_64MiB_file: { what: 'the same, written private file pages', goal: le(1 / 16) },
  freed_while_stuck_fraction: {
    what: "killAndReap on a starved victim: MemFree risen by the end of the reaping, while the victim had not run, ÷ the victim's memory",
    goal: ge(0.95),
  },
  starved_reap_vs_plain_exit_90pct: {
    what: "time to 90 % back: killAndReap on a starved victim ÷ an unstarved victim's own exit",
    goal: le(0.8),
  },
  killAndReap_vs_c_loop_90pct: {
    what: "time to 90 % back on a starved victim: killAndReap (16 MiB chunks) ÷ a C loop of 16 MiB try_reap calls with the same first call (try_reap_dying_process(pidfd, TRY_REAP_KILL, 16 MiB) kills and reaps)",
    goal: le(1.1),
  },
  killAndReap_vs_mrelease_90pct: { what: 'time to 90 % back on a starved victim: killAndReap ÷ process_mrelease', goal: le(1.1) },
  killAndReap_event_loop_p99_ms: {
    what: "not a ratio: the event loop's delay while killAndReap reaps a starved victim, in ms: p99 of perf_hooks.monitorEventLoopDelay({ resolution: 1 }) over each run (the time between the ticks of a 1 ms timer), median over the rounds; its own arm, as its timer wakes the event loop",
    goal: lt(10),
  },
  c_loop_event_loop_p99_ms: {
    what: "not a ratio: the event loop's delay (as killAndReap_event_loop_p99_ms) while the C loop reaps the same starved victim from another process on the same CPU, from the kill to its last call, in ms: what sharing the CPU with any reaper costs the loop",
  },
  idle_event_loop_p99_ms: {
    what: 'not a ratio: the same over 300 ms of doing nothing just before the kill in the same runs, in ms: what the guest and the host alone cost the event loop',
  },
  js_vs_c_call: {
    what: 'one try_reap probe (max_bytes 0) on a dying process: the public sync call (Pidfd#tryReap) ÷ the same syscall from C, same process',
    goal: le(1.5),
  },
  js_vs_c_call_raw: { what: 'the same through the raw binding (no validation)' },
  js_vs_c_call_async: { what: 'the same through the async product path (Pidfd#tryReapAsync, one call awaited at a time)' },
  js_vs_c_call_eperm: { what: 'the public sync call on a live process (EPERM, thrown as an Error) ÷ the same from C' },
  product_path_added_vs_1MiB_call: {
    what: "time the async product path adds to a call (async probe − C probe) ÷ a 1 MiB-capped reaping call's median time",
  },
  two_reapers_speedup: {
    what: 'wall time from the kill to the 0 with 1 MiB calls: one reaper ÷ two reapers at once (one per CPU), same frozen mixed victim',
    goal: ge(1.6),
  },
  shrinker_stall_ratio: {
    what: "an allocation's stall with a killed, frozen victim holding most of the memory, from ratios of allocation times only: (on ÷ the free run just before it − 1) ÷ (off ÷ its free run − 1), shrinker_enabled = 1 vs 0 (the OOM path); a negative stall is an error (a round without a number)",
    goal: le(0.1),
  },
  shrinker_alloc_on_vs_off: { what: 'the same allocation against the killed frozen victim: its time with shrinker_enabled = 1 ÷ with 0 (the OOM path)' },
  shrinker_alloc_on_vs_free: { what: 'the same: its time with shrinker_enabled = 1 ÷ the same allocation with memory free, run right before it' },
  pressure_to_memory_back_ms: {
    what: "not a ratio: the pressure daemon's path, in ms: from a PSI memory trigger on a cgroup v2 group (a filler throttled at its memory.high) reaching JS to 90 % of the victim's memory back (its leaf's memory.current), killAndReap; median over the rounds",
  },
  pressure_to_memory_back_reap_vs_kill: {
    what: 'the same time: killAndReap ÷ pidfd_send_signal(SIGKILL) alone (memory back through the exit), per-round ratio',
  },
  p99_4KiB_reserved_vs_dense: { what: 'p99 of a 4 KiB-capped call: a victim with an empty 1 TiB PROT_NONE reservation ÷ the dense victim', goal: le(2) },
  p99_4KiB_vmas_vs_dense: { what: 'p99 of a 4 KiB-capped call: 10000 one-page VMAs ÷ the dense victim', goal: le(2) },
}

/** Ratios of the starvation sweep: waiting for the exit ÷ killAndReap, time to 90 % back, starved for `ms`. */
export const sweepKey = (ms: number): string => `exit_vs_killAndReap_90pct_starved_${ms}ms`

export function definition(key: string): RatioDefinition {
  const known = DEFINITIONS[key]
  if (known) return known
  const sweep = /^exit_vs_killAndReap_90pct_starved_(\d+)ms$/.exec(key)
  if (sweep) return { what: `time to 90 % back, victim starved for ${Number(sweep[1]) / 1000} s: waiting for its exit ÷ killAndReap` }
  throw new Error(`no definition of the ratio ${key}`)
}

export interface RatioFields {
  ratios: Record<string, number>
  ratiosCi95: Record<string, [number, number]>
  goals: Record<string, string>
  /** pass: the whole interval meets the goal; fail: the whole interval misses it; inconclusive: otherwise. */
  verdicts: Record<string, Verdict>
  /** How each value and interval were computed. */
  intervalMethods: Record<string, string>
  /** Rounds that gave a number, and rounds that did not (never dropped silently). */
  rounds: Record<string, { n: number; noNumber: number }>
  /** Ratios that could not be computed at all (no round gave a number), with how many rounds were tried. */
  noValue: Record<string, { noNumber: number }>
}

export function ratioFields(estimates: Record<string, Estimate>): RatioFields {
  const out: RatioFields = { ratios: {}, ratiosCi95: {}, goals: {}, verdicts: {}, intervalMethods: {}, rounds: {}, noValue: {} }
  // In the order of DEFINITIONS (headline ratios before their parts), then the sweep.
  const order = Object.keys(DEFINITIONS)
  const rank = (key: string): number => (order.includes(key) ? order.indexOf(key) : order.length)
  const keys = Object.keys(estimates).sort((a, b) => rank(a) - rank(b) || a.localeCompare(b, 'en', { numeric: true }))
  for (const key of keys) {
    const e = estimates[key]
    const goal = definition(key).goal
    if (!Number.isFinite(e.value)) {
      out.noValue[key] = { noNumber: e.noNumber ?? 0 }
      if (goal) {
        out.goals[key] = `${goal.op} ${round(goal.value, 4)}`
        out.verdicts[key] = 'inconclusive'
      }
      continue
    }
    out.ratios[key] = round(e.value, 4)
    out.ratiosCi95[key] = [round(e.ci95[0], 4), round(e.ci95[1], 4)]
    out.intervalMethods[key] = e.method ?? 'percentile bootstrap'
    if (e.n !== undefined) out.rounds[key] = { n: e.n, noNumber: e.noNumber ?? 0 }
    if (goal) {
      out.goals[key] = `${goal.op} ${round(goal.value, 4)}`
      out.verdicts[key] = verdict(e.ci95, goal)
    }
  }
  return out
}
