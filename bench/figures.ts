// Figures of one memory-back run (bench/measure.ts): when the memory was
// back, whether the starved victim stayed stuck, what the kernel counted,
// what the sampler cost; and the thinned curve kept in results.json.
import type { Run, RanState, Sample } from './measure'
import { round } from './stats'

const MiB = 1024 * 1024

export interface Figures {
  method: string
  /** What the victim held (hog's count: its anonymous, THP and private file copies: all reapable). */
  heldBytes: number
  /**
   * "Memory back" is the system's view: MemFree's rise since just before the
   * kill. (The victim's RSS reads 0 as soon as an exiting task detaches its
   * mm, before exit_mmap() has freed the pages.) t50/t90/t100: ms from the
   * SIGKILL until it rose by 50/90/97 % of heldBytes (97: a few MiB stay in
   * per-CPU lists that MemFree does not show yet).
   */
  t50: number | null
  t90: number | null
  t100: number | null
  /** MemFree rise at the end of sampling. */
  freedBytes: number
  exitMs: number | null
  releasedMs: number | null
  /**
   * Until when the victim is known to have been stuck (ms since the kill): the
   * last look at it before it was released (the end of the reaping, or the
   * release of the busy loop); null for a victim that was never starved.
   */
  stuckUntilMs: number | null
  /** The victim ran between the kill and stuckUntilMs (its CPU time or context switches changed): the run is invalid. */
  victimRan: boolean | null
  /** MemFree's rise by stuckUntilMs, ÷ heldBytes. */
  freedWhileStuckFraction: number | null
  /** The kernel's count (reap_dying_pages in /proc/vmstat) over the run, bytes. */
  kernelReapedBytes: number
  /** MemFree rise ÷ the kernel's count, at the end of the reaping (reapers only). */
  memFreeVsKernelCount: number | null
  /** The last call's result (0: nothing left; -errno), null without calls. */
  lastResult: number | null
  /** Reaping calls that took memory (results > 0), their in-syscall time and latencies (null for killAndReap: its calls are not timed one by one). */
  reapCalls: number | null
  /** Every reaping call, whatever it answered (killAndReap: the report's count). */
  allCalls: number
  /** killAndReap runs that monitored the event loop: its delay's p99, ms (measure.ts, EventLoopDelay). */
  eventLoopP99Ms: number | null
  /** The same over 300 ms of doing nothing just before the kill (the guest's and host's floor). */
  eventLoopIdleP99Ms: number | null
  callMs: number
  callP50Us: number | null
  callMaxUs: number | null
  /** Share of its CPU the sampler used, and its time per sample. */
  samplerCpuShare: number
  samplerUsPerSample: number
}

function baseline(run: Run): Sample {
  return [...run.samples].reverse().find((s) => s.t < 0) ?? run.samples[0]
}

function timeTo(run: Run, bytes: number, freed: (s: Sample) => number): number | null {
  for (const s of run.samples) if (s.t >= 0 && freed(s) >= bytes) return s.t
  return null
}

const sameRan = (a: RanState, b: RanState): boolean =>
  a.utime === b.utime && a.stime === b.stime && a.nvcsw === b.nvcsw && a.nivcsw === b.nivcsw && a.sumExecNs === b.sumExecNs

export function figures(run: Run, starved: boolean): Figures {
  const held = run.heldBytes
  const before = baseline(run)
  const last = run.samples[run.samples.length - 1]
  const freed = (s: Sample): number => s.free - before.free
  const kernel = (s: Sample): number => (s.reapedPages - before.reapedPages) * run.pageSize
  // The last look before the victim could run: the release, if it came before the end.
  const lastLook = !starved ? null : run.atRelease && (!run.atEnd || run.atRelease.t <= run.atEnd.t) ? run.atRelease : run.atEnd
  const stuckUntil = lastLook?.t ?? null
  const reaping = run.calls.filter((c) => c.ret > 0 || (run.method === 'process_mrelease' && c.ret === 0))
  const latencies = reaping.map((c) => (c.end - c.start) * 1000).sort((a, b) => a - b)
  const reapEnd = run.atEnd?.t ?? null
  const atReapEnd = reapEnd === null ? undefined : run.samples.find((s) => s.t >= reapEnd)
  const isReaper = run.method !== 'exit'
  return {
    method: run.method,
    heldBytes: held,
    t50: timeTo(run, 0.5 * held, freed),
    t90: timeTo(run, 0.9 * held, freed),
    t100: timeTo(run, 0.97 * held, freed),
    freedBytes: freed(last),
    exitMs: run.exitMs,
    releasedMs: run.releasedMs,
    stuckUntilMs: stuckUntil,
    victimRan: !starved ? null : !run.atKill || !lastLook ? true : !sameRan(run.atKill.ran, lastLook.ran),
    freedWhileStuckFraction:
      stuckUntil === null ? null : Math.max(0, ...run.samples.filter((s) => s.t >= 0 && s.t <= stuckUntil).map(freed)) / held,
    kernelReapedBytes: kernel(last),
    memFreeVsKernelCount: isReaper && atReapEnd && kernel(atReapEnd) > 0 ? freed(atReapEnd) / kernel(atReapEnd) : null,
    lastResult: run.calls.length ? run.calls[run.calls.length - 1].ret : null,
    reapCalls: run.report ? null : reaping.length,
    allCalls: run.report ? run.report.calls : run.calls.length,
    eventLoopP99Ms: run.eventLoop?.p99 ?? null,
    eventLoopIdleP99Ms: run.eventLoopIdle?.p99 ?? null,
    callMs: reaping.reduce((sum, c) => sum + (c.end - c.start), 0),
    callP50Us: latencies.length ? latencies[Math.ceil(0.5 * latencies.length) - 1] : null,
    callMaxUs: latencies.length ? latencies[latencies.length - 1] : null,
    samplerCpuShare: run.sampler.spanNs > 0 ? run.sampler.busyNs / run.sampler.spanNs : 0,
    samplerUsPerSample: run.sampler.count ? run.sampler.busyNs / run.sampler.count / 1000 : 0,
  }
}

/** The curve kept for the charts: [ms since SIGKILL, MiB back (MemFree), MiB reaped (kernel count)], at most `points` of them. */
export function curve(run: Run, points = 150): [number, number, number][] {
  const before = baseline(run)
  const after = run.samples.filter((s) => s.t >= -2)
  const step = Math.max(1, Math.ceil(after.length / points))
  const pick = after.filter((_, i) => i % step === 0 || i === after.length - 1)
  return pick.map((s) => [
    round(s.t, 1),
    round(Math.max(0, (s.free - before.free) / MiB), 1),
    round(Math.max(0, ((s.reapedPages - before.reapedPages) * run.pageSize) / MiB), 1),
  ])
}
