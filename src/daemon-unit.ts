// The daemon's --kill-cgroup mode: a whole unit, back at once. It picks the
// leaf cgroup under the daemon's cgroup that matters most (the most memory,
// memory.current, or the most memory pressure, memory.pressure's some avg10,
// as systemd-oomd's two kinds of kill pick), kills it (cgroup.kill where the
// kernel has it, Linux 5.14+, else each member through its pidfd) and reaps
// every member in parallel, each in chunks of chunkBytes (killAndReap). The
// kill line says what each member gave back and when the unit's memory was.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Pidfd } from './pidfd'
import { readPressureQuietly } from './psi'
import type { KillAndReapOptions, ReapReport } from './reaper'
import { pickFrom, readCandidate, type PickedVictim, type VictimCandidate, type VictimOptions } from './daemon'

/** What makes a unit matter most: its memory, or its memory pressure (then its memory). */
export type UnitRanking = 'memory' | 'pressure'

/** A leaf cgroup the daemon may kill whole. */
export interface UnitCandidate {
  /** The leaf cgroup's directory. */
  cgroup: string
  /** memory.current, or the members' RSS added up where the group has no memory.current. */
  memoryBytes: number
  /** memory.pressure's some avg10 (percent), or null where it cannot be read. */
  pressure: number | null
  /** Its processes, best victim first. */
  members: VictimCandidate[]
}

/** The directories under `cgroup` (itself included) with no group below them, in path order. */
export function leafCgroups(cgroup: string): string[] {
  const leaves: string[] = []
  const walk = (dir: string): void => {
    let below: string[]
    try {
      below = readdirSync(dir, { withFileTypes: true })
        .filter((entry) => entry.isDirectory())
        .map((entry) => join(dir, entry.name))
    } catch (error) {
      // A group removed meanwhile is skipped; the given one must be there.
      if (dir !== cgroup && (error as NodeJS.ErrnoException).code === 'ENOENT') return
      throw error
    }
    if (below.length === 0) leaves.push(dir)
    else below.sort().forEach(walk)
  }
  walk(cgroup)
  return leaves
}

function readNumber(path: string): number | null {
  try {
    const text = readFileSync(path, 'utf8').trim()
    return /^\d+$/.test(text) ? Number(text) : null
  } catch {
    return null
  }
}

function pids(cgroup: string): number[] {
  try {
    return readFileSync(join(cgroup, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number)
  } catch {
    return [] // removed meanwhile
  }
}

/**
 * The leaf cgroups under `cgroup` that may be killed whole, the one that
 * matters most first: by `ranking` ('memory': memory.current, highest first;
 * 'pressure': memory.pressure's some avg10, then memory), then by path. A
 * leaf is left out when it has no process, or when any of its processes may
 * not be killed (listCandidates' rules: PID 1, an excluded pid such as the
 * daemon's own, oom_score_adj -1000, a protected user or unit): a unit is
 * killed whole or not at all.
 */
export function listUnits(cgroup: string, options: VictimOptions & { ranking?: UnitRanking } = {}): UnitCandidate[] {
  const procRoot = options.procRoot ?? '/proc'
  const exclude = new Set([1, ...(options.exclude ?? [process.pid])])
  const protectUids = new Set(options.protectUids ?? [])
  const protectUnits = options.protectUnits ?? []
  const units: UnitCandidate[] = []
  for (const leaf of leafCgroups(cgroup)) {
    if (protectUnits.length > 0 && leaf.split('/').some((name) => protectUnits.includes(name))) continue
    const members: VictimCandidate[] = []
    let killable = true
    for (const pid of pids(leaf)) {
      const member = readCandidate(pid, leaf, procRoot, options)
      if (member === null) continue // gone meanwhile
      if (exclude.has(pid) || member.oomScoreAdj === -1000 || protectUids.has(member.uid)) killable = false
      members.push(member)
    }
    if (!killable || members.length === 0) continue
    members.sort((a, b) => b.rssBytes - a.rssBytes || a.pid - b.pid)
    const memoryBytes = readNumber(join(leaf, 'memory.current')) ?? members.reduce((sum, m) => sum + m.rssBytes, 0)
    units.push({ cgroup: leaf, memoryBytes, pressure: readPressureQuietly(join(leaf, 'memory.pressure'))?.some.avg10 ?? null, members })
  }
  const byPressure = options.ranking === 'pressure'
  // A stable sort: ties stay in path order.
  return units.sort((a, b) => (byPressure ? (b.pressure ?? -1) - (a.pressure ?? -1) : 0) || b.memoryBytes - a.memoryBytes)
}

/** A unit with a pidfd open on each member still there. Close them (closeUnit). */
export interface PickedUnit {
  unit: UnitCandidate
  members: PickedVictim[]
}

/**
 * The first of `units` with at least one member that is still the process
 * that was ranked, in the unit, with a pidfd open on each such member (as
 * pickFrom checks one victim); or null.
 */
export function pickUnitFrom(units: readonly UnitCandidate[], procRoot?: string): PickedUnit | null {
  for (const unit of units) {
    const members = unit.members.map((member) => pickFrom([member], procRoot)).filter((picked): picked is PickedVictim => picked !== null)
    if (members.length > 0) return { unit, members }
  }
  return null
}

export function closeUnit(picked: PickedUnit): void {
  for (const { pidfd } of picked.members) pidfd.close()
}

/** What one member of a killed unit gave back. */
export interface MemberReap {
  pid: number
  comm: string
  /** Its RSS when ranked. */
  rssBytes: number
  bytesReaped: number
  /** The whole report; absent when killAndReap failed (error). */
  report?: ReapReport
  error?: { code?: string; message: string }
}

/** How a unit was killed and how its memory came back. */
export interface UnitKill {
  cgroup: string
  ranking: UnitRanking
  memoryBytes: number
  pressure: number | null
  /**
   * cgroup.kill (it also kills what joined the unit after the pick), or,
   * where there is none (before Linux 5.14, cgroup v1), SIGKILL through each
   * member's pidfd.
   */
  killedBy: 'cgroup.kill' | 'pidfd'
  /** The unit's memory.current right before the kill (null without one). */
  memoryAtKill: number | null
  /**
   * From the kill until memory.current was down to a tenth of memoryAtKill
   * (read every 5 ms), in ms; null when it was not by the deadline or the
   * group has no memory.current.
   */
  memoryBackMs: number | null
  /** From the kill until every member's reaping settled. */
  reapedMs: number
  members: MemberReap[]
  bytesReaped: number
}

/** SIGKILL to the whole unit: cgroup.kill, else through each member's pidfd. */
function killAll({ unit, members }: PickedUnit): UnitKill['killedBy'] {
  try {
    // r+: never create the file where the kernel has none.
    writeFileSync(join(unit.cgroup, 'cgroup.kill'), '1', { flag: 'r+' })
    return 'cgroup.kill'
  } catch {
    for (const { pidfd } of members) {
      try {
        pidfd.sendSignal('SIGKILL')
      } catch {
        // Gone already (ESRCH): its killAndReap says so.
      }
    }
    return 'pidfd'
  }
}

/** A member's failure as the line carries it: a system error's code and message, or an abort reason ('SIGTERM'). */
function failure(error: unknown): { code?: string; message: string } {
  if (!(error instanceof Error)) return { message: String(error) }
  const { code } = error as Error & { code?: string }
  return code === undefined ? { message: error.message } : { code, message: error.message }
}

/**
 * Kills the whole picked unit at once (cgroup.kill, else SIGKILL through
 * every member's pidfd, one after the other without waiting), then reaps
 * every member in parallel: `reap` (killAndReap) on each member's pidfd with
 * `options` (its chunkBytes bound each call). Members that can run their
 * exit free their memory themselves, all at the same time, and their reaping
 * finds little or nothing (ESRCH); a member that cannot run (starved,
 * frozen) gives its memory back through the reaping. Killing each member
 * with its own TRY_REAP_KILL instead was slower in the guest: the jobs start
 * one after the other, and the last members died seconds late. Closes the
 * pidfds.
 */
export async function killUnit(
  picked: PickedUnit,
  ranking: UnitRanking,
  reap: (target: Pidfd, options: KillAndReapOptions) => Promise<ReapReport>,
  options: KillAndReapOptions & { deadlineMs: number },
): Promise<UnitKill> {
  const { unit } = picked
  const current = join(unit.cgroup, 'memory.current')
  const memoryAtKill = readNumber(current)
  const started = performance.now()
  const killedBy = killAll(picked)
  let reapedMs = -1
  const reaps = Promise.all(
    picked.members.map(async ({ victim, pidfd }): Promise<MemberReap> => {
      const about = { pid: victim.pid, comm: victim.comm, rssBytes: victim.rssBytes }
      let member: MemberReap
      try {
        const report = await reap(pidfd, options)
        member = { ...about, bytesReaped: report.bytesReaped, report }
      } catch (error) {
        member = { ...about, bytesReaped: 0, error: failure(error) }
      }
      pidfd.close()
      return member
    }),
  ).then((members) => {
    reapedMs = performance.now() - started
    return members
  })

  let memoryBackMs: number | null = null
  if (memoryAtKill !== null) {
    for (;;) {
      const now = readNumber(current)
      const at = performance.now() - started
      if (now !== null && now <= memoryAtKill / 10) {
        memoryBackMs = at
        break
      }
      if (now === null || (at >= options.deadlineMs && reapedMs >= 0)) break
      await sleep(5)
    }
  }
  const members = await reaps
  return {
    cgroup: unit.cgroup,
    ranking,
    memoryBytes: unit.memoryBytes,
    pressure: unit.pressure,
    killedBy,
    memoryAtKill,
    memoryBackMs,
    reapedMs,
    members,
    bytesReaped: members.reduce((sum, member) => sum + member.bytesReaped, 0),
  }
}
