// The pressure daemon's parts on this machine: the victim picker (a fake
// /proc and fake cgroup trees, then real processes in a cgroup the test
// makes), and the daemon's decisions with pressure events on demand. The
// kills are real where they can be (processes this test started, in its own
// cgroup) and scripted where an outcome is needed that a real kill cannot be
// made to give. Nothing outside the test's own processes is ever signalled.
import t, { type Test } from 'tap'
import { EventEmitter } from 'node:events'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  CHECK_INTERVAL_MS,
  cgroupProcesses,
  nextCheckMs,
  listCandidates,
  pickVictim,
  readCandidate,
  readCgroupMemory,
  readMeminfo,
  runPressureDaemon,
  unprivilegedTrigger,
  ERR_PIDFD_REAP_KILLS_NOT_HELPING,
  type DaemonHooks,
  type DaemonLogLine,
  type DaemonOptions,
  type DaemonWatcher,
  type PickedVictim,
} from '../../src/daemon'
import { closeUnit, killUnit, leafCgroups, listUnits, pickUnitFrom, type UnitCandidate } from '../../src/daemon-unit'
import { systemError } from '../../src/errors'
import { pathError, type PressureEvent, type WatchPressureOptions } from '../../src/psi'
import type { KillAndReapOptions, ReapReport } from '../../src/reaper'
import * as api from '../../src/index'
import { MiB, killQuietly, startHog, startSleeper, type Victim } from '../../victims'
import { cgroupUnavailable, makeCgroup } from '../fixtures/pressure'

const PAGE = 4096

/** A fake /proc: meminfo, and per-pid files written or linked to the real ones. */
function fakeProc(t: Test, memTotal = 1024 * MiB, memAvailable = 512 * MiB) {
  const root = mkdtempSync(join(tmpdir(), 'pidfd-reap-proc-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  const proc = {
    root,
    /** MemAvailable, and the swap lines when `swap` is given. */
    setAvailable(bytes: number, swap?: { total: number; free: number }) {
      const swapLines = swap ? `SwapTotal:      ${swap.total / 1024} kB\nSwapFree:       ${swap.free / 1024} kB\n` : ''
      writeFileSync(join(root, 'meminfo'), `MemTotal:       ${memTotal / 1024} kB\nMemFree:        1 kB\nMemAvailable:   ${bytes / 1024} kB\n${swapLines}`)
    },
    /** A made-up process. */
    add(pid: number, fields: { comm?: string; cmdline?: string[]; score?: number; adj?: number; pages?: number; flags?: number; start?: number }) {
      const dir = join(root, String(pid))
      mkdirSync(dir, { recursive: true })
      const { comm = 'victim', cmdline = [comm], score = 100, adj = 0, pages = 256, flags = 0x400000, start = 1000 + pid } = fields
      writeFileSync(join(dir, 'cmdline'), cmdline.map((arg) => `${arg}\0`).join(''))
      // Fields 3..22: state ppid pgrp session tty tpgid flags ... starttime (22).
      const rest = ['S', '1', pid, pid, '0', '-1', flags, ...Array(12).fill('0'), start, '0']
      writeFileSync(join(dir, 'stat'), `${pid} (${comm}) ${rest.join(' ')}\n`)
      writeFileSync(join(dir, 'statm'), `${pages * 2} ${pages} 10 1 0 ${pages} 0\n`)
      writeFileSync(join(dir, 'oom_score'), `${score}\n`)
      writeFileSync(join(dir, 'oom_score_adj'), `${adj}\n`)
    },
    /** A real process, seen through this fake root. */
    link(pid: number) {
      symlinkSync(`/proc/${pid}`, join(root, String(pid)))
    },
  }
  proc.setAvailable(memAvailable)
  return proc
}

/** A fake cgroup tree: directories with cgroup.procs files. */
function fakeCgroup(t: Test, pids: number[], children: Record<string, number[]> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-reap-cgroup-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'cgroup.procs'), pids.map((pid) => `${pid}\n`).join(''))
  writeFileSync(join(dir, 'memory.current'), '0\n') // a file that is no group
  for (const [name, childPids] of Object.entries(children)) {
    mkdirSync(join(dir, name))
    writeFileSync(join(dir, name, 'cgroup.procs'), childPids.map((pid) => `${pid}\n`).join(''))
  }
  return dir
}

function sleepers(t: Test, count: number): Victim[] {
  const started = Array.from({ length: count }, () => startSleeper())
  t.teardown(() => Promise.all(started.map(killQuietly)))
  return started
}

/**
 * Sleepers of the test, one per oom_score given (best victim first), seen
 * through a fake /proc with that much MemAvailable of 1000 MiB, all in a
 * fake cgroup.
 */
function rankedSleepers(t: Test, memAvailable: number, scores: number[], pages?: number) {
  const victims = sleepers(t, scores.length)
  const proc = fakeProc(t, 1000 * MiB, memAvailable)
  victims.forEach((victim, i) => proc.add(victim.pid, { score: scores[i], pages }))
  return { victims, proc, cgroup: fakeCgroup(t, victims.map((victim) => victim.pid)) }
}

t.test('exported from the package', async (t) => {
  t.equal(api.runPressureDaemon, runPressureDaemon)
  t.equal(api.pickVictim, pickVictim)
  t.equal(api.nextCheckMs, nextCheckMs)
  t.equal(api.listCandidates, listCandidates)
})

t.test('candidates: ranked by oom_score, then RSS; the ones that may not or need not die left out', async (t) => {
  const proc = fakeProc(t)
  proc.add(101, { score: 500, pages: 10 })
  proc.add(102, { score: 800, pages: 10, comm: 'a (b) c' })
  proc.add(103, { score: 1900, flags: 0x00200000 }) // a kernel thread
  proc.add(104, { score: 1900, adj: -1000 }) // the kernel's "never kill"
  proc.add(105, { score: 1900, pages: 0 }) // nothing resident
  proc.add(107, { score: 800, pages: 20, start: 77 })
  proc.add(109, { score: 100, pages: 10 }) // ties with 108: the lower pid first
  proc.add(108, { score: 100, pages: 10 })
  proc.add(1, { score: 1900 })
  proc.add(process.pid, { score: 1900 })
  // 106 is listed but gone (no /proc entry); 107 is in a group below.
  const cgroup = fakeCgroup(t, [1, process.pid, 101, 102, 103, 104, 105, 106, 109, 108], { sub: [107] })
  t.same(cgroupProcesses(cgroup).map((p) => p.pid), [1, process.pid, 101, 102, 103, 104, 105, 106, 109, 108, 107])
  const ranked = listCandidates(cgroup, { procRoot: proc.root })
  t.same(ranked.map((c) => c.pid), [107, 102, 101, 108, 109], 'PID 1, this process, kthreads, -1000, no RSS and gone ones are left out')
  t.same(ranked[0], { pid: 107, comm: 'victim', cmdline: 'victim', uid: process.getuid!(), preference: 'none', oomScore: 800, oomScoreAdj: 0, rssBytes: 20 * PAGE, cgroup: join(cgroup, 'sub'), startTime: 77 })
  t.equal(ranked[1].comm, 'a (b) c', 'a command name with parentheses and spaces')
  t.same(
    listCandidates(cgroup, { procRoot: proc.root, exclude: [107] }).map((c) => c.pid),
    [process.pid, 102, 101, 108, 109],
    'the pids excluded instead of this process; PID 1 never',
  )
  t.equal(readCandidate(106, cgroup, proc.root), null)
  t.throws(() => cgroupProcesses(join(cgroup, 'nope')), { code: 'ENOENT' }, 'the given cgroup must be there')
  mkdirSync(join(cgroup, 'removed')) // a group removed while the tree is read: no cgroup.procs
  t.same(cgroupProcesses(cgroup).length, 11, 'a group that went away is skipped')
  mkdirSync(join(cgroup, 'broken', 'cgroup.procs'), { recursive: true })
  t.throws(() => cgroupProcesses(cgroup), { code: 'EISDIR' }, 'other errors are not')
  t.same(listCandidates(fakeCgroup(t, [])), [], 'an empty group')
})

t.test('MemAvailable and friends from meminfo', async (t) => {
  const proc = fakeProc(t, 2048 * MiB, 300 * MiB)
  t.equal(readMeminfo('MemAvailable', proc.root), 300 * MiB)
  t.equal(readMeminfo('MemTotal', proc.root), 2048 * MiB)
  t.throws(() => readMeminfo('Nope', proc.root), { code: 'ERR_INVALID_ARG_VALUE' })
  t.ok(readMeminfo('MemTotal') > 0, 'the real one')
})

t.test('pickVictim: real processes in a cgroup of the test, the best one with its pidfd', { skip: cgroupUnavailable() }, async (t) => {
  const group = makeCgroup()
  t.teardown(() => group.cleanup())
  const [low, high, middle, outside] = sleepers(t, 4)
  for (const [victim, adj] of [[low, 100], [high, 500], [middle, 300], [outside, 1000]] as const) {
    writeFileSync(`/proc/${victim.pid}/oom_score_adj`, String(adj))
  }
  for (const victim of [low, high, middle]) group.add(victim.pid)
  t.same(listCandidates(group.dir).map((c) => c.pid), [high.pid, middle.pid, low.pid])
  const picked = pickVictim(group.dir)!
  t.teardown(() => picked.pidfd.close())
  t.equal(picked.victim.pid, high.pid, 'the highest oom_score in the group, not the higher one outside')
  t.equal(picked.pidfd.pid, high.pid)
  t.equal(picked.victim.cgroup, group.dir)
  t.ok(picked.victim.oomScore >= 500, `oom_score ${picked.victim.oomScore}`)
  t.equal(outside.child.exitCode, null)
  t.equal(pickVictim(makeCgroupFor(t)), null, 'an empty group has no victim')
})

function makeCgroupFor(t: Test): string {
  const group = makeCgroup()
  t.teardown(() => group.cleanup())
  return group.dir
}

t.test('pickVictim re-checks after opening the pidfd: gone, reused pid, moved out', async (t) => {
  const proc = fakeProc(t)
  for (const pid of [200, 201, 202, 203, 204]) proc.add(pid, { score: 1000 - pid })
  const cgroup = fakeCgroup(t, [201, 202, 203, 204], { sub: [200] })
  const closed: number[] = []
  // Pidfd.open stands in for the moment between ranking and opening.
  const { pickVictim: pick } = t.mockRequire<typeof import('../../src/daemon')>('../../src/daemon', {
    '../../src/pidfd': {
      Pidfd: {
        open(pid: number) {
          if (pid === 200) rmSync(join(cgroup, 'sub'), { recursive: true }) // its group was removed
          if (pid === 201) throw systemError(-3, 'pidfd_open', pid) // exited
          if (pid === 202) proc.add(202, { score: 1, start: 5 }) // exited, pid reused by another process
          if (pid === 203) writeFileSync(join(cgroup, 'cgroup.procs'), '201\n202\n204\n') // moved out
          return { pid, close: () => closed.push(pid) }
        },
      },
    },
  })
  const picked = pick(cgroup, { procRoot: proc.root })!
  t.equal(picked.victim.pid, 204)
  t.same(closed, [200, 202, 203], 'the pidfds of the ones that failed the check are closed')
  rmSync(join(cgroup, 'cgroup.procs'))
  t.throws(() => pick(cgroup, { procRoot: proc.root }), { code: 'ENOENT' }, 'a cgroup that went away throws')
})

/** A watcher whose events the test fires. */
class FakeWatcher extends EventEmitter {
  path = '/proc/pressure/memory'
  closes = 0
  options: WatchPressureOptions | undefined
  close(): void {
    this.closes++
  }
  fire(pressure: PressureEvent['pressure'] = { some: { avg10: 50, avg60: 10, avg300: 2, total: 123 }, full: null }): void {
    this.emit('pressure', { time: Date.now(), path: this.path, resource: 'memory', kind: 'some', stallUs: 150_000, windowUs: 1_000_000, pressure })
  }
}

/** A log line with every field of every kind readable, for t.match. */
type AnyLine = DaemonLogLine & Record<string, unknown>

interface Run {
  lines: AnyLine[]
  watcher: FakeWatcher
  controller: AbortController
  done: ReturnType<typeof runPressureDaemon>
  /** Resolves once `count` lines have been logged. */
  lineCount(count: number): Promise<void>
}

function run(options: Omit<DaemonOptions, 'log' | 'signal'>, hooks: Partial<DaemonHooks>): Run {
  const lines: AnyLine[] = []
  const waiters: { count: number; resolve: () => void }[] = []
  const watcher = new FakeWatcher()
  const controller = new AbortController()
  const done = runPressureDaemon(
    {
      // Events on demand only; the MemAvailable check has its own tests.
      poll: false,
      // Wakeups kill as soon as they come; the cool-down has its own test.
      coolDownMs: 0,
      ...options,
      signal: controller.signal,
      log: (line) => {
        lines.push(line as AnyLine)
        for (const waiter of waiters.filter((w) => lines.length >= w.count)) waiter.resolve()
      },
    },
    {
      watch: (trigger) => {
        watcher.options = trigger
        return watcher as unknown as DaemonWatcher
      },
      // Not the test runner's own memory (test/host/syscalls.ts locks a child's).
      lockMemory: () => 0,
      ...hooks,
    },
  )
  return {
    lines,
    watcher,
    controller,
    done,
    lineCount: (count) => new Promise<void>((resolve) => (lines.length >= count ? resolve() : waiters.push({ count, resolve }))),
  }
}

const report = (pid: number, bytesReaped: number, extra: Partial<ReapReport> = {}): ReapReport =>
  ({ pid, mechanism: 'try_reap', bytesReaped, calls: 1, busyRetries: 0, elapsedMs: 1, exited: false, stopReason: 'done', ...extra }) as ReapReport

t.test('the decision: wait while enough is available, kill until the reaped bytes cover the need', async (t) => {
  const { victims: [a, b], proc, cgroup } = rankedSleepers(t, 500 * MiB, [900, 800], 1000)
  const killed: number[] = []
  const reaped = [10 * MiB, 64 * MiB]
  const r = run(
    { cgroup, minAvailableBytes: 100 * MiB, chunkBytes: MiB, deadlineMs: 200 },
    {
      procRoot: proc.root,
      killAndReap: async (pidfd, options: KillAndReapOptions) => {
        t.match(options, { chunkBytes: MiB, deadlineMs: 200 })
        killed.push(pidfd.pid)
        // The scripted kill: the victim leaves the (fake) cgroup.
        const left = readFileSync(join(cgroup, 'cgroup.procs'), 'utf8').split('\n').filter((line) => line !== String(pidfd.pid))
        writeFileSync(join(cgroup, 'cgroup.procs'), left.join('\n'))
        return report(pidfd.pid, reaped[killed.length - 1])
      },
    },
  )
  await r.lineCount(1)
  t.match(r.lines[0], {
    event: 'start',
    cgroup,
    path: '/proc/pressure/memory',
    trigger: 'some 150000 1000000',
    memTotal: 1000 * MiB,
    memAvailable: 500 * MiB,
    minAvailable: 100 * MiB,
    maxKills: 3,
    dryRun: false,
    memoryLocked: true,
  })
  t.notOk('lockError' in r.lines[0])
  t.same(r.watcher.options, { kind: 'some', stallUs: 150_000, windowUs: 1_000_000, cgroup: undefined })
  r.watcher.fire()
  await r.lineCount(2)
  t.match(r.lines[1], { event: 'pressure', memAvailable: 500 * MiB, decision: 'wait', reason: 'enough memory available', pressure: { some: { avg10: 50 } } })
  proc.setAvailable(60 * MiB) // 40 MiB short
  r.watcher.fire()
  await r.lineCount(4)
  t.match(r.lines[2], {
    event: 'kill',
    memAvailable: 60 * MiB,
    minAvailable: 100 * MiB,
    neededBytes: 40 * MiB,
    victim: { pid: a.pid, oomScore: 900, rssBytes: 1000 * PAGE },
    report: { pid: a.pid, bytesReaped: 10 * MiB },
    bytesReaped: 10 * MiB,
    memAvailableAfter: 60 * MiB,
    sinceEventMs: Number,
    decision: 'kill-another',
    reason: 'not enough memory back',
  })
  t.match(r.lines[3], { event: 'kill', victim: { pid: b.pid }, bytesReaped: 64 * MiB, decision: 'wait', reason: 'enough memory back' })
  t.same(killed, [a.pid, b.pid])
  r.watcher.fire()
  await r.lineCount(5)
  t.match(r.lines[4], { event: 'pressure', decision: 'wait', reason: 'no victim in the cgroup', neededBytes: 40 * MiB })
  r.controller.abort('SIGTERM')
  t.match(await r.done, { reason: 'SIGTERM', events: 3, kills: 2 })
  t.match(r.lines.at(-1), { event: 'stop', reason: 'SIGTERM', events: 3, kills: 2 })
  t.equal(r.watcher.closes, 1, 'the watcher is closed')
})

t.test('MemAvailable back above the line stops the killing even with little reaped', async (t) => {
  const { proc, cgroup } = rankedSleepers(t, 50 * MiB, [900, 800])
  const r = run(
    { cgroup, minAvailablePercent: 10 },
    {
      procRoot: proc.root,
      killAndReap: async (pidfd) => {
        proc.setAvailable(200 * MiB) // the exit freed it
        return report(pidfd.pid, 0, { stopReason: 'exited', exited: true })
      },
    },
  )
  await r.lineCount(1)
  t.match(r.lines[0], { minAvailable: 100 * MiB }, '10 % of MemTotal')
  r.watcher.fire(null)
  await r.lineCount(2)
  t.match(r.lines[1], { event: 'kill', pressure: null, bytesReaped: 0, memAvailableAfter: 200 * MiB, decision: 'wait', reason: 'enough memory back' })
  r.controller.abort()
  t.match(await r.done, { reason: 'This operation was aborted', kills: 1 })
})

t.test('a victim picked again while it is still dying is said to be killed again', async (t) => {
  const { victims: [a], proc, cgroup } = rankedSleepers(t, 60 * MiB, [900])
  // The scripted kill leaves the victim in the cgroup with its memory: as a
  // starved victim whose reaping reached the deadline.
  const r = run({ cgroup, minAvailableBytes: 100 * MiB, maxKills: 1 }, { procRoot: proc.root, killAndReap: async (pidfd) => report(pidfd.pid, MiB) })
  await r.lineCount(1)
  r.watcher.fire()
  await r.lineCount(2)
  r.watcher.fire()
  await r.lineCount(3)
  t.match(r.lines.slice(1), [{ event: 'kill', victim: { pid: a.pid } }, { event: 'kill', victim: { pid: a.pid }, again: true }])
  t.notOk('again' in r.lines[1], 'the first kill is no kill again')
  r.controller.abort('SIGTERM')
  t.match(await r.done, { kills: 2 })
})

t.test('maxKills, failed kills and dry runs', async (t) => {
  const { victims, proc, cgroup } = rankedSleepers(t, 10 * MiB, [900, 899, 898])
  let calls = 0
  const r = run(
    { cgroup, minAvailableBytes: 100 * MiB, maxKills: 2 },
    {
      procRoot: proc.root,
      killAndReap: async (pidfd) => {
        calls++
        if (calls === 1) throw systemError(-3, 'pidfd_send_signal', pidfd.pid) // exited before the kill
        if (calls === 2) throw new Error('no thread') // an error without a code
        return report(pidfd.pid, MiB)
      },
    },
  )
  r.watcher.fire()
  await r.lineCount(3)
  t.match(r.lines[1], { event: 'kill-failed', victim: { pid: victims[0].pid }, error: { code: 'ESRCH', message: /ESRCH/ }, decision: 'kill-another' })
  t.match(r.lines[2], { event: 'kill-failed', error: { message: 'no thread' }, decision: 'wait' }, 'the second failure reaches maxKills')
  t.notOk('code' in (r.lines[2].error as object))
  r.watcher.fire()
  await r.lineCount(5)
  t.match(r.lines[3], { event: 'kill', bytesReaped: MiB, decision: 'kill-another' })
  t.match(r.lines[4], { event: 'kill', decision: 'wait', reason: 'maxKills reached for this event' })
  r.controller.abort('SIGINT')
  t.match(await r.done, { reason: 'SIGINT', kills: 2, events: 2 })

  let dryKills = 0
  const dry = run(
    { cgroup, minAvailableBytes: 100 * MiB, dryRun: true },
    {
      procRoot: proc.root,
      killAndReap: async () => {
        dryKills++
        return report(0, 0)
      },
    },
  )
  dry.watcher.fire()
  await dry.lineCount(2)
  t.match(dry.lines[0], { dryRun: true })
  t.match(dry.lines[1], { event: 'would-kill', victim: { pid: victims[0].pid }, decision: 'wait', reason: 'dry run: nothing killed' })
  t.equal(dryKills, 0, 'nothing killed')
  dry.controller.abort('SIGTERM')
  await dry.done
  for (const victim of victims) t.equal(victim.child.exitCode ?? victim.child.signalCode, null, 'the sleepers are untouched')
})

t.test('events that come while one is handled coalesce into one more', async (t) => {
  const { proc, cgroup } = rankedSleepers(t, 10 * MiB, [900])
  let release!: () => void
  let kills = 0
  const r = run(
    { cgroup, minAvailableBytes: 100 * MiB },
    {
      procRoot: proc.root,
      killAndReap: async (pidfd) => {
        kills++
        if (kills === 1) await new Promise<void>((resolve) => (release = resolve))
        return report(pidfd.pid, 200 * MiB)
      },
    },
  )
  r.watcher.fire()
  await new Promise((resolve) => setImmediate(resolve))
  r.watcher.fire()
  r.watcher.fire()
  r.watcher.fire()
  release()
  await r.lineCount(3)
  t.equal(kills, 2, 'the first event, then one for the three that came meanwhile')
  r.controller.abort('SIGTERM')
  t.match(await r.done, { events: 4, checks: 0, kills: 2 }, 'four PSI events, handled in two passes')
})

t.test('stopping during a kill: it settles first, then nothing new starts', async (t) => {
  const { proc, cgroup } = rankedSleepers(t, 10 * MiB, [900])
  let entered!: () => void
  const inKill = new Promise<void>((resolve) => (entered = resolve))
  const r = run(
    { cgroup, minAvailableBytes: 100 * MiB },
    {
      procRoot: proc.root,
      killAndReap: (pidfd, options) =>
        new Promise((resolve) => {
          entered()
          options.signal!.addEventListener('abort', () => resolve(report(pidfd.pid, MiB, { stopReason: 'aborted' })))
        }),
    },
  )
  r.watcher.fire()
  await inKill
  r.controller.abort('SIGTERM')
  r.watcher.fire() // after the stop: ignored
  const summary = await r.done
  t.match(summary, { reason: 'SIGTERM', events: 1, kills: 1 })
  t.match(r.lines.map((l) => [l.event, l.decision, l.reason]), [['start'], ['kill', 'wait', 'stopping'], ['stop', undefined, 'SIGTERM']])

  // A kill that had not started when the stop came is refused by killAndReap.
  const r2 = run(
    { cgroup, minAvailableBytes: 100 * MiB },
    {
      procRoot: proc.root,
      killAndReap: async (_pidfd, options) => {
        r2.controller.abort('SIGTERM')
        options.signal!.throwIfAborted()
        return report(0, 0)
      },
    },
  )
  r2.watcher.fire()
  await r2.done
  t.match(r2.lines[1], { event: 'kill-failed', error: { message: 'SIGTERM' }, decision: 'wait' })
  t.notOk('code' in (r2.lines[1].error as object))

  // An error after the stop (meminfo unreadable) is logged; the reason stays.
  const r3 = run(
    { cgroup, minAvailableBytes: 100 * MiB },
    {
      procRoot: proc.root,
      killAndReap: async (pidfd) => {
        r3.controller.abort('SIGTERM')
        rmSync(join(proc.root, 'meminfo'))
        return report(pidfd.pid, MiB)
      },
    },
  )
  r3.watcher.fire()
  t.match(await r3.done, { reason: 'SIGTERM' })
  t.match(r3.lines.map((l) => l.event), ['start', 'error', 'stop'])
})

t.test('errors stop the daemon: the watch fails, the cgroup goes away', async (t) => {
  const { victims: [a], proc, cgroup } = rankedSleepers(t, 10 * MiB, [900])
  const r = run({ cgroup, cgroupPressure: true }, { procRoot: proc.root })
  await r.lineCount(1)
  t.equal(r.watcher.options!.cgroup, cgroup, "--cgroup-pressure watches the cgroup's own file")
  r.watcher.emit('error', Object.assign(new Error('ENODEV: no such device'), { code: 'ENODEV' }))
  const summary = await r.done
  t.match(summary, { reason: 'error', error: { code: 'ENODEV' } })
  t.match(r.lines.slice(1), [{ event: 'error', error: { code: 'ENODEV' } }, { event: 'stop', reason: 'error' }])
  r.controller.abort() // after the stop: nothing
  r.watcher.emit('error', new Error('late')) // nor this
  t.equal(r.lines.length, 3)

  const r2 = run({ cgroup }, { procRoot: proc.root })
  await r2.lineCount(1)
  rmSync(join(cgroup, 'cgroup.procs'))
  r2.watcher.fire()
  t.match(await r2.done, { reason: 'error', error: { code: 'ENOENT' } })
  t.match(r2.lines[1], { event: 'error', error: { code: 'ENOENT', message: /cgroup\.procs/ } })
  t.equal(a.child.exitCode ?? a.child.signalCode, null)
})

t.test('arguments and setup failures throw before anything is logged', async (t) => {
  const cgroup = fakeCgroup(t, [])
  const bad: [unknown, { code: string; message?: RegExp } | { message: string }][] = [
    [undefined, { code: 'ERR_INVALID_ARG_TYPE' }],
    [{}, { code: 'ERR_INVALID_ARG_TYPE', message: /options\.cgroup/ }],
    [{ cgroup: '' }, { code: 'ERR_INVALID_ARG_TYPE' }],
    [{ cgroup, maxKills: 0 }, { code: 'ERR_OUT_OF_RANGE', message: /options\.maxKills/ }],
    [{ cgroup, maxKills: 1.5 }, { code: 'ERR_OUT_OF_RANGE' }],
    [{ cgroup, maxKills: '3' }, { code: 'ERR_INVALID_ARG_TYPE' }],
    [{ cgroup, minAvailablePercent: 101 }, { code: 'ERR_OUT_OF_RANGE' }],
    [{ cgroup, minAvailablePercent: NaN }, { code: 'ERR_OUT_OF_RANGE' }],
    [{ cgroup, minAvailablePercent: '5' }, { code: 'ERR_INVALID_ARG_TYPE' }],
    [{ cgroup, minAvailableBytes: -1 }, { code: 'ERR_OUT_OF_RANGE' }],
    [{ cgroup, chunkBytes: 0 }, { code: 'ERR_OUT_OF_RANGE' }],
    [{ cgroup, deadlineMs: -1 }, { code: 'ERR_OUT_OF_RANGE' }],
    [{ cgroup, dryRun: 'yes' }, { code: 'ERR_INVALID_ARG_TYPE', message: /options\.dryRun/ }],
    [{ cgroup, poll: 1 }, { code: 'ERR_INVALID_ARG_TYPE', message: /options\.poll/ }],
    [{ cgroup, fillRateBytesPerSec: 0 }, { code: 'ERR_OUT_OF_RANGE', message: /options\.fillRateBytesPerSec/ }],
    [{ cgroup, fillRateBytesPerSec: '1G' }, { code: 'ERR_INVALID_ARG_TYPE' }],
    [{ cgroup, cgroupPressure: 1 }, { code: 'ERR_INVALID_ARG_TYPE' }],
    [{ cgroup, log: 'stdout' }, { code: 'ERR_INVALID_ARG_TYPE', message: /options\.log/ }],
    [{ cgroup, signal: 'stop' }, { code: 'ERR_INVALID_ARG_TYPE' }],
    [{ cgroup, signal: AbortSignal.abort(new Error('stopped')) }, { message: 'stopped' }],
    [{ cgroup: join(cgroup, 'nope'), log: () => {} }, { code: 'ENOENT' }],
  ]
  for (const [options, error] of bad) {
    const watch = (): DaemonWatcher => {
      throw new Error('must not be armed')
    }
    await t.rejects(runPressureDaemon(options as DaemonOptions, { watch, lockMemory: () => 0 }), error, JSON.stringify(options))
  }
  // The real watcher's own checks: a stall longer than the window.
  await t.rejects(runPressureDaemon({ cgroup, stallUs: 2_000_000, windowUs: 1_000_000, log: () => {} }, { lockMemory: () => 0 }), { code: 'ERR_OUT_OF_RANGE', message: /options\.stallUs/ })
})

t.test('by default each line is JSON on stdout', async (t) => {
  const cgroup = fakeCgroup(t, [])
  const written: string[] = []
  const write = process.stdout.write
  process.stdout.write = ((text: string) => (written.push(text), true)) as typeof process.stdout.write
  const controller = new AbortController()
  let done
  try {
    const watcher = new FakeWatcher()
    done = runPressureDaemon({ cgroup, signal: controller.signal }, { watch: () => watcher as unknown as DaemonWatcher, lockMemory: () => 0 })
    controller.abort('SIGTERM')
    await done
  } finally {
    process.stdout.write = write
  }
  t.equal(written.length, 2)
  t.match(JSON.parse(written[0]), { event: 'start', trigger: 'some 150000 1000000' })
  t.match(JSON.parse(written[1]), { event: 'stop', reason: 'SIGTERM' })
})

t.test('real kills: the daemon kills the best victims of its cgroup, and only those', { skip: cgroupUnavailable() }, async (t) => {
  const group = makeCgroup()
  t.teardown(() => group.cleanup())
  const hogs = await Promise.all([300, 200, 100].map(async (adj) => {
    const hog = await startHog(16)
    t.teardown(() => killQuietly(hog))
    writeFileSync(`/proc/${hog.pid}/oom_score_adj`, String(adj))
    group.add(hog.pid)
    return hog
  }))
  const [outside] = sleepers(t, 1)
  writeFileSync(`/proc/${outside.pid}/oom_score_adj`, '1000')
  // The real /proc but for meminfo: MemAvailable stays 100 MiB short.
  const proc = fakeProc(t, 1024 * MiB, 28 * MiB)
  for (const pid of [...hogs.map((h) => h.pid), outside.pid]) proc.link(pid)
  // The fake MemAvailable never comes back: more kills than maxKills may not help before the test sees maxKills.
  const r = run({ cgroup: group.dir, minAvailableBytes: 128 * MiB, deadlineMs: 2000, maxUnhelpfulKills: 10 }, { procRoot: proc.root })
  r.watcher.fire()
  await r.lineCount(4)
  const kills = r.lines.slice(1, 4)
  t.same(kills.map((l) => (l.victim as { pid: number }).pid), hogs.map((h) => h.pid), 'in oom_score order')
  t.same(kills.map((l) => l.decision), ['kill-another', 'kill-another', 'wait'])
  t.match(kills[2], { reason: 'maxKills reached for this event' })
  for (const line of kills) {
    const { report: got } = line as unknown as { report: ReapReport }
    t.ok(['done', 'exited'].includes(got.stopReason), `${got.pid}: ${got.mechanism}, ${got.bytesReaped} bytes, ${got.stopReason}`)
  }
  await Promise.all(hogs.map((h) => h.gone))
  t.same(hogs.map((h) => h.child.signalCode), ['SIGKILL', 'SIGKILL', 'SIGKILL'])
  t.equal(outside.child.exitCode ?? outside.child.signalCode, null, 'the process outside the cgroup is untouched')
  t.equal(readFileSync(`/proc/${outside.pid}/oom_score_adj`, 'utf8').trim(), '1000')
  r.controller.abort('SIGTERM')
  t.match(await r.done, { kills: 3 })
})

t.test('it locks its memory first; a failure is logged and it runs on; lockMemory: false skips it', async (t) => {
  const proc = fakeProc(t, 1000 * MiB, 500 * MiB)
  const cgroup = fakeCgroup(t, [])
  const cases: [Partial<DaemonOptions>, () => number, Record<string, unknown>, number][] = [
    [{}, () => 64 * MiB, { memoryLocked: true, lockMode: 'onfault', lockedBytes: 64 * MiB }, 1],
    [{ lockAllCode: true }, () => 90 * MiB, { memoryLocked: true, lockMode: 'all', lockedBytes: 90 * MiB }, 1],
    [{ lockMemory: true }, () => { throw Object.assign(new Error('EPERM: operation not permitted, mlock'), { code: 'EPERM' }) }, { memoryLocked: false, lockError: 'EPERM: operation not permitted, mlock' }, 1],
    [{ lockMemory: false }, () => 0, { memoryLocked: false }, 0],
  ]
  for (const [options, lock, expected, calls] of cases) {
    let called = 0
    const r = run({ cgroup, ...options }, {
      procRoot: proc.root,
      lockMemory: (how) => {
        t.same(how, { onFault: !options.lockAllCode })
        called++
        return lock()
      },
    })
    await r.lineCount(1)
    t.match(r.lines[0], { event: 'start', ...expected }, JSON.stringify(options))
    t.notOk('lockedResidentBytes' in r.lines[0], 'no smaps_rollup in the fake /proc: not said')
    if (!('lockError' in expected)) t.notOk('lockError' in r.lines[0])
    t.equal(called, calls, `lockMemory called ${calls} time(s)`)
    r.controller.abort('SIGTERM')
    t.match(await r.done, { reason: 'SIGTERM' })
  }
  await t.rejects(runPressureDaemon({ cgroup, lockMemory: 'yes' as unknown as boolean }), { code: 'ERR_INVALID_ARG_TYPE' })
  await t.rejects(runPressureDaemon({ cgroup, lockAllCode: 1 as unknown as boolean }), { code: 'ERR_INVALID_ARG_TYPE', message: /options\.lockAllCode/ })
  mkdirSync(join(proc.root, 'self'))
  writeFileSync(join(proc.root, 'self', 'smaps_rollup'), 'Rss:    40960 kB\nLocked:    20480 kB\n')
  const r = run({ cgroup }, { procRoot: proc.root, lockMemory: () => 64 * MiB })
  await r.lineCount(1)
  t.match(r.lines[0], { lockMode: 'onfault', lockedBytes: 64 * MiB, lockedResidentBytes: 20 * MiB }, 'what is locked and in RAM, from smaps_rollup')
  r.controller.abort('SIGTERM')
  await r.done
})

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Counts the daemon's memory checks as they run: each one ends by arming
 * the next (setTimeout(check, ...), looked up on the global object), so a
 * test can wait for N more checks instead of sleeping for what N take on an
 * idle machine. `after(n)` resolves once n more checks have run.
 */
function countChecks(t: Test): { count: () => number; after: (n: number) => Promise<void> } {
  const real = globalThis.setTimeout
  let checks = 0
  globalThis.setTimeout = ((fn: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    if (fn.name === 'check') checks++
    return real(fn, ms, ...args)
  }) as typeof setTimeout
  t.teardown(() => void (globalThis.setTimeout = real))
  return {
    count: () => checks,
    after: async (n) => {
      const target = checks + n
      while (checks < target) await new Promise((resolve) => real(resolve, 10))
    },
  }
}

t.test('nextCheckMs: before memory filling at the assumed rate could reach the line, within 100 ms to 1 s', async (t) => {
  t.same(CHECK_INTERVAL_MS, { min: 100, max: 1000 })
  const rate = 6000 * MiB
  t.equal(nextCheckMs(100 * MiB + 3000 * MiB, 100 * MiB, rate), 500, '3000 MiB of headroom at 6000 MiB/s')
  t.equal(nextCheckMs(100 * MiB + 60_000 * MiB, 100 * MiB, rate), 1000, 'at most a second apart')
  t.equal(nextCheckMs(110 * MiB, 100 * MiB, rate), 100, 'at least 100 ms apart')
  t.equal(nextCheckMs(50 * MiB, 100 * MiB, rate), 100, 'below the line')
  t.equal(nextCheckMs(100 * MiB + 250 * MiB, 100 * MiB, 1000 * MiB), 250, 'a slower assumed rate checks less often')
})

t.test('the MemAvailable check kills between PSI events, and only while below the line', async (t) => {
  const { victims: [a], proc, cgroup } = rankedSleepers(t, 500 * MiB, [900, 800])
  const killed: number[] = []
  const checks = countChecks(t)
  const r = run(
    { cgroup, minAvailableBytes: 100 * MiB, poll: true },
    {
      procRoot: proc.root,
      killAndReap: async (pidfd) => {
        killed.push(pidfd.pid)
        proc.setAvailable(500 * MiB) // the kill brought it back
        return report(pidfd.pid, 40 * MiB)
      },
    },
  )
  await r.lineCount(1)
  t.match(r.lines[0], { event: 'start', poll: true, fillRateBytesPerSec: 6000 * MiB })
  await checks.after(3)
  t.equal(r.lines.length, 1, 'three checks above the line logged nothing')
  proc.setAvailable(60 * MiB)
  await r.lineCount(2)
  t.match(r.lines[1], { event: 'kill', source: 'check', memAvailable: 60 * MiB, neededBytes: 40 * MiB, victim: { pid: a.pid }, decision: 'wait', reason: 'enough memory back' })
  t.ok('pressure' in r.lines[1], 'with the pressure file read at the check (null where it cannot be read)')
  await checks.after(3)
  t.same(killed, [a.pid], 'back above the line: three more checks, no more kills')
  r.watcher.fire()
  await r.lineCount(3)
  t.match(r.lines[2], { event: 'pressure', source: 'psi', decision: 'wait', reason: 'enough memory available' })
  r.controller.abort('SIGTERM')
  t.match(await r.done, { events: 1, checks: 1, kills: 1 })
  t.match(r.lines.at(-1), { event: 'stop', events: 1, checks: 1, kills: 1 })
})

t.test('the check: no victim is said once while below the line; a check during a kill waits for it', async (t) => {
  const [a] = sleepers(t, 1)
  const proc = fakeProc(t, 1000 * MiB, 60 * MiB)
  const cgroup = fakeCgroup(t, [])
  let release: (() => void) | undefined
  let kills = 0
  const checks = countChecks(t)
  const r = run(
    { cgroup, minAvailableBytes: 100 * MiB, poll: true },
    {
      procRoot: proc.root,
      killAndReap: async (pidfd) => {
        kills++
        await new Promise<void>((resolve) => (release = resolve))
        proc.setAvailable(500 * MiB)
        return report(pidfd.pid, 40 * MiB)
      },
    },
  )
  await r.lineCount(2)
  t.match(r.lines[1], { event: 'pressure', source: 'check', reason: 'no victim in the cgroup', neededBytes: 40 * MiB })
  await checks.after(4)
  t.equal(r.lines.length, 2, 'four more checks below the line: said once')
  // A check must see the memory above the line: wait for one, not for the
  // 250 ms it takes on an idle machine.
  proc.setAvailable(500 * MiB)
  await checks.after(1)
  proc.setAvailable(60 * MiB)
  await r.lineCount(3)
  t.match(r.lines[2], { event: 'pressure', source: 'check', reason: 'no victim in the cgroup' }, 'said again after a time above the line')
  // A victim joins: the next check kills it, and the checks during the kill start nothing.
  proc.add(a.pid, { score: 900 })
  writeFileSync(join(cgroup, 'cgroup.procs'), `${a.pid}\n`)
  while (!release) await sleep(20)
  await checks.after(3)
  t.equal(kills, 1, 'one kill at a time: three checks during the kill started none')
  r.controller.abort('SIGTERM')
  release!()
  const summary = await r.done
  t.ok(summary.checks >= 3, `${summary.checks} checks woke the handler: with no victim, then for the kill`)
  t.equal(summary.kills, 1)
  t.match(r.lines.at(-2), { event: 'kill', source: 'check', victim: { pid: a.pid } })
})

t.test('a dry run under the check logs its pick once while below the line, and again for another pick', async (t) => {
  const { victims: [a, b], proc, cgroup } = rankedSleepers(t, 60 * MiB, [900, 800])
  let kills = 0
  const checks = countChecks(t)
  const r = run(
    { cgroup, minAvailableBytes: 100 * MiB, poll: true, dryRun: true },
    {
      procRoot: proc.root,
      killAndReap: async () => {
        kills++
        return report(0, 0)
      },
    },
  )
  await r.lineCount(2)
  t.match(r.lines[1], { event: 'would-kill', source: 'check', victim: { pid: a.pid }, decision: 'wait', reason: 'dry run: nothing killed' })
  await checks.after(3)
  t.equal(r.lines.length, 2, 'three more checks: said once')
  proc.add(b.pid, { score: 950 }) // now b ranks first
  await r.lineCount(3)
  t.match(r.lines[2], { event: 'would-kill', source: 'check', victim: { pid: b.pid } }, 'another pick is said')
  r.watcher.fire()
  await r.lineCount(4)
  t.match(r.lines[3], { event: 'would-kill', source: 'psi', victim: { pid: b.pid } }, 'a PSI event is always answered')
  r.controller.abort('SIGTERM')
  t.match(await r.done, { kills: 0 })
  t.equal(kills, 0, 'nothing killed')
  for (const victim of [a, b]) t.equal(victim.child.exitCode ?? victim.child.signalCode, null)
})

t.test('the check stops the daemon when /proc/meminfo cannot be read', async (t) => {
  const proc = fakeProc(t, 1000 * MiB, 500 * MiB)
  const r = run({ cgroup: fakeCgroup(t, []), poll: true }, { procRoot: proc.root })
  await r.lineCount(1)
  rmSync(join(proc.root, 'meminfo'))
  t.match(await r.done, { reason: 'error', error: { code: 'ENOENT' } })
  t.match(r.lines.slice(1), [{ event: 'error', error: { code: 'ENOENT', message: /meminfo/ } }, { event: 'stop', reason: 'error' }])
})

t.test('a window the kernel refuses (no CAP_SYS_RESOURCE): the next multiple of 2 s, said in the start line', async (t) => {
  t.same(unprivilegedTrigger({ stallUs: 150_000, windowUs: 1_000_000 }), { stallUs: 300_000, windowUs: 2_000_000 }, 'the same share of the window')
  t.same(unprivilegedTrigger({ stallUs: 500_000, windowUs: 2_500_000 }), { stallUs: 800_000, windowUs: 4_000_000 })
  t.equal(unprivilegedTrigger({ stallUs: 1, windowUs: 4_000_000 }), null, 'a multiple of 2 s already')
  const proc = fakeProc(t)
  const cgroup = fakeCgroup(t, [])
  /** A watch that refuses what `accept` does not take, as the kernel's write() does. */
  const kernel = (accept: (trigger: WatchPressureOptions) => boolean, error = pathError(-22, 'write', '/proc/pressure/memory')) => {
    const tried: string[] = []
    const watch = (trigger: WatchPressureOptions): DaemonWatcher => {
      tried.push(`${trigger.kind} ${trigger.stallUs} ${trigger.windowUs}`)
      if (!accept(trigger)) throw error
      return new FakeWatcher() as unknown as DaemonWatcher
    }
    return { tried, watch }
  }
  const unprivileged = kernel((trigger) => trigger.windowUs % 2_000_000 === 0)
  const r = run({ cgroup }, { procRoot: proc.root, watch: unprivileged.watch })
  await r.lineCount(1)
  t.same(unprivileged.tried, ['some 150000 1000000', 'some 300000 2000000'])
  t.match(r.lines[0], {
    event: 'start',
    trigger: 'some 300000 2000000',
    triggerFallback: { requested: 'some 150000 1000000', reason: /refused a 1000 ms window \(EINVAL\): without CAP_SYS_RESOURCE it takes only multiples of 2 s/ },
  })
  r.controller.abort('SIGTERM')
  await r.done

  const privileged = kernel(() => true)
  const r2 = run({ cgroup }, { procRoot: proc.root, watch: privileged.watch })
  await r2.lineCount(1)
  t.same(privileged.tried, ['some 150000 1000000'])
  t.match(r2.lines[0], { trigger: 'some 150000 1000000' })
  t.notOk('triggerFallback' in r2.lines[0], 'no fallback when the trigger asked for is armed')
  r2.controller.abort('SIGTERM')
  await r2.done

  const noLog = { cgroup, log: () => {} }
  const refuseAll = kernel(() => false)
  await t.rejects(runPressureDaemon(noLog, { procRoot: proc.root, watch: refuseAll.watch, lockMemory: () => 0 }), { code: 'EINVAL', syscall: 'write' })
  t.same(refuseAll.tried, ['some 150000 1000000', 'some 300000 2000000'], 'refused again: the error of the trigger asked for')
  const twoSeconds = kernel(() => false)
  await t.rejects(runPressureDaemon({ ...noLog, stallUs: 1000, windowUs: 2_000_000 }, { procRoot: proc.root, watch: twoSeconds.watch, lockMemory: () => 0 }), { code: 'EINVAL' })
  t.same(twoSeconds.tried, ['some 1000 2000000'], 'a 2 s window refused: nothing else to try')
  const noPsi = kernel(() => false, pathError(-2, 'open', '/proc/pressure/memory'))
  await t.rejects(runPressureDaemon(noLog, { procRoot: proc.root, watch: noPsi.watch, lockMemory: () => 0 }), { code: 'ENOENT' })
  t.same(noPsi.tried, ['some 150000 1000000'], 'only EINVAL on the write is a refused window')
})

/** A fake cgroup v2 group's memory files. */
function setCgroupMemory(cgroup: string, files: { max?: string; high?: string; current?: number; stat?: string; events?: string }): void {
  for (const [name, value] of Object.entries(files)) writeFileSync(join(cgroup, `memory.${name}`), `${value}\n`)
}

t.test('readCgroupMemory: headroom under the lower of memory.max and memory.high, plus the page cache', async (t) => {
  const cgroup = fakeCgroup(t, [])
  t.equal(readCgroupMemory(cgroup), null, 'no limit files (cgroup v1, or no memory controller)')
  setCgroupMemory(cgroup, { max: 'max', high: 'max', current: 100 * MiB })
  t.equal(readCgroupMemory(cgroup), null, 'no limit set')
  setCgroupMemory(cgroup, { max: String(400 * MiB), high: String(300 * MiB), current: 280 * MiB, stat: 'anon 1\nactive_file 8388608\ninactive_file 4194304', events: 'low 0\nhigh 5\nmax 2\noom 1\noom_kill 1' })
  t.same(readCgroupMemory(cgroup), {
    limit: 300 * MiB,
    current: 280 * MiB,
    reclaimable: 12 * MiB,
    headroom: 32 * MiB,
    events: { low: 0, high: 5, max: 2, oom: 1, oom_kill: 1 },
  })
  setCgroupMemory(cgroup, { high: 'max', current: 500 * MiB })
  rmSync(join(cgroup, 'memory.stat'))
  rmSync(join(cgroup, 'memory.events'))
  t.same(readCgroupMemory(cgroup), { limit: 400 * MiB, current: 500 * MiB, reclaimable: 0, headroom: 0, events: null }, 'over its limit: no headroom')
  rmSync(join(cgroup, 'memory.current'))
  t.equal(readCgroupMemory(cgroup), null, 'no memory.current')
})

t.test('a cgroup with a limit: decisions on its own headroom, whatever the machine has', async (t) => {
  const { victims: [a], proc, cgroup } = rankedSleepers(t, 900 * MiB, [900])
  setCgroupMemory(cgroup, { max: String(200 * MiB), high: 'max', current: 195 * MiB, stat: 'active_file 0\ninactive_file 0', events: 'max 7\noom_kill 0' })
  const r = run(
    { cgroup, minAvailablePercent: 10 },
    {
      procRoot: proc.root,
      killAndReap: async (pidfd) => {
        setCgroupMemory(cgroup, { current: 100 * MiB })
        return report(pidfd.pid, 95 * MiB)
      },
    },
  )
  await r.lineCount(1)
  t.match(r.lines[0], { event: 'start', minAvailable: 100 * MiB, cgroupMemory: { limit: 200 * MiB, headroom: 5 * MiB }, cgroupMinAvailable: 20 * MiB })
  r.watcher.fire()
  await r.lineCount(2)
  t.match(r.lines[1], {
    event: 'kill',
    memAvailable: 900 * MiB,
    scope: 'cgroup',
    neededBytes: 15 * MiB,
    cgroupMemory: { current: 195 * MiB, events: { max: 7 } },
    victim: { pid: a.pid },
    neededBytesAfter: 0,
    decision: 'wait',
    reason: 'enough memory back',
  })
  r.watcher.fire()
  await r.lineCount(3)
  t.match(r.lines[2], { event: 'pressure', reason: 'enough memory available', cgroupMemory: { headroom: 100 * MiB } })
  r.controller.abort('SIGTERM')
  t.match(await r.done, { kills: 1 })
})

t.test('swap: it kills only when free swap is at its line too, as earlyoom', async (t) => {
  const { victims: [a], proc, cgroup } = rankedSleepers(t, 50 * MiB, [900])
  proc.setAvailable(50 * MiB, { total: 1000 * MiB, free: 500 * MiB })
  let kills = 0
  const r = run(
    { cgroup, minAvailableBytes: 100 * MiB, poll: true },
    {
      procRoot: proc.root,
      killAndReap: async (pidfd) => {
        kills++
        proc.setAvailable(500 * MiB, { total: 1000 * MiB, free: 50 * MiB })
        return report(pidfd.pid, 450 * MiB)
      },
    },
  )
  await r.lineCount(1)
  t.match(r.lines[0], { swapTotal: 1000 * MiB, swapFree: 500 * MiB, minSwapFree: 100 * MiB }, '10 % of SwapTotal by default')
  r.watcher.fire()
  await r.lineCount(2)
  t.match(r.lines[1], { event: 'pressure', source: 'psi', swapFree: 500 * MiB, neededBytes: 50 * MiB, decision: 'wait', reason: 'swap above its line' })
  t.equal(kills, 0, 'memory below its line, swap above: no kill (nor a check wakeup)')
  proc.setAvailable(50 * MiB, { total: 1000 * MiB, free: 100 * MiB })
  await r.lineCount(3)
  t.match(r.lines[2], { event: 'kill', source: 'check', swapFree: 100 * MiB, victim: { pid: a.pid } }, 'both at their lines: the check kills')
  r.controller.abort('SIGTERM')
  t.match(await r.done, { kills: 1 })
  // Given in bytes, and no swap at all: SwapFree 0 is always at the line.
  const r2 = run({ cgroup, minAvailableBytes: 100 * MiB, minSwapFreeBytes: 200 * MiB }, { procRoot: proc.root })
  await r2.lineCount(1)
  t.match(r2.lines[0], { minSwapFree: 200 * MiB })
  r2.controller.abort('SIGTERM')
  await r2.done
})

t.test('a cool-down after a kill: the checks below the line wait for it, then kill again', async (t) => {
  const { victims: [a, b], proc, cgroup } = rankedSleepers(t, 60 * MiB, [900, 800])
  const killed: number[] = []
  const killAndReap = async (pidfd: { pid: number }): Promise<ReapReport> => {
    killed.push(pidfd.pid)
    writeFileSync(join(cgroup, 'cgroup.procs'), [a, b].filter((v) => !killed.includes(v.pid)).map((v) => `${v.pid}\n`).join(''))
    // Memory comes back a little each time: the kills help, but not enough.
    proc.setAvailable((60 + 10 * killed.length) * MiB)
    return report(pidfd.pid, 10 * MiB)
  }
  const r = run({ cgroup, minAvailableBytes: 100 * MiB, poll: true, coolDownMs: 400, maxKills: 2 }, { procRoot: proc.root, killAndReap })
  await r.lineCount(2)
  t.match(r.lines[1], { event: 'kill', source: 'check', victim: { pid: a.pid }, decision: 'kill-another' })
  await r.lineCount(4)
  t.match(r.lines[2], { event: 'kill', victim: { pid: b.pid }, reason: 'maxKills reached for this event' }, 'within one wakeup, the next kill comes at once')
  t.match(r.lines[3], { event: 'pressure', source: 'check', decision: 'wait', reason: 'cooling down after a kill' })
  r.watcher.fire()
  await r.lineCount(5)
  t.match(r.lines[4], { event: 'pressure', source: 'psi', reason: 'cooling down after a kill' }, 'a PSI event in the cool-down is answered, with a wait')
  writeFileSync(join(cgroup, 'cgroup.procs'), `${a.pid}\n`)
  proc.add(a.pid, { score: 900, start: 7 }) // a new process under an old pid
  await r.lineCount(6)
  t.match(r.lines[5], { event: 'kill', source: 'check', victim: { pid: a.pid, startTime: 7 } }, 'after the cool-down the check kills again')
  t.equal(r.lines.filter((line) => line.reason === 'cooling down after a kill' && line.source === 'check').length, 1, 'the checks in the cool-down say it once')
  r.controller.abort('SIGTERM')
  t.match(await r.done, { kills: 3 })

  // Memory falling below where the last kill left it ends the cool-down at once.
  writeFileSync(join(cgroup, 'cgroup.procs'), `${a.pid}\n${b.pid}\n`)
  killed.length = 0
  proc.setAvailable(60 * MiB)
  const r2 = run({ cgroup, minAvailableBytes: 100 * MiB, maxKills: 1, coolDownMs: 3_600_000 }, { procRoot: proc.root, killAndReap })
  r2.watcher.fire()
  await r2.lineCount(2)
  t.match(r2.lines[1], { event: 'kill', victim: { pid: a.pid }, neededBytes: 40 * MiB, neededBytesAfter: 30 * MiB })
  r2.watcher.fire()
  await r2.lineCount(3)
  t.match(r2.lines[2], { event: 'pressure', reason: 'cooling down after a kill' }, 'memory where the kill left it: an hour of cool-down')
  proc.setAvailable(65 * MiB)
  r2.watcher.fire()
  await r2.lineCount(4)
  t.match(r2.lines[3], { event: 'kill', victim: { pid: b.pid }, neededBytes: 35 * MiB }, 'memory lower than the kill left it: it kills at once')
  r2.controller.abort('SIGTERM')
  t.match(await r2.done, { kills: 2 })
})

t.test('kills that do not bring memory back: it stops and says why', async (t) => {
  const { victims, proc, cgroup } = rankedSleepers(t, 60 * MiB, [900, 899, 898, 897, 896])
  let kills = 0
  const r = run(
    { cgroup, minAvailableBytes: 100 * MiB, maxKills: 1, maxUnhelpfulKills: 2 },
    {
      procRoot: proc.root,
      killAndReap: async (pidfd) => {
        kills++
        writeFileSync(join(cgroup, 'cgroup.procs'), victims.slice(kills).map((victim) => `${victim.pid}\n`).join(''))
        // The first kill helps; then something outside the cgroup takes what each kill gives back, and more.
        proc.setAvailable(kills === 1 ? 80 * MiB : (80 - kills) * MiB)
        return report(pidfd.pid, 64 * MiB)
      },
    },
  )
  for (let fired = 1; fired <= 3; fired++) {
    r.watcher.fire()
    await r.lineCount(1 + fired)
  }
  t.match(r.lines.slice(1, 4), [
    { event: 'kill', neededBytes: 40 * MiB, neededBytesAfter: 20 * MiB, reason: 'enough memory back' },
    { event: 'kill', neededBytesAfter: 22 * MiB, reason: 'enough memory back' },
    { event: 'kill', neededBytesAfter: 23 * MiB, decision: 'wait', reason: 'kills are not helping' },
  ])
  const summary = await r.done
  t.match(summary, { reason: 'error', kills: 3, error: { code: ERR_PIDFD_REAP_KILLS_NOT_HELPING } })
  t.equal(summary.error!.message, `kills are not helping: 2 kills in a row reaped ${128 * MiB} bytes, but the memory did not come back (it is being taken outside the cgroup)`)
  t.match(r.lines.slice(4), [{ event: 'error', error: { code: ERR_PIDFD_REAP_KILLS_NOT_HELPING } }, { event: 'stop', reason: 'error' }])
  t.equal(kills, 3)
  for (const victim of victims.slice(3)) t.equal(victim.child.exitCode ?? victim.child.signalCode, null, 'the rest of the cgroup is spared')
})

t.test('whom to kill: --prefer and --avoid on comm and cmdline, protected users and units', async (t) => {
  const proc = fakeProc(t)
  proc.add(301, { score: 900, comm: 'postgres', cmdline: ['postgres', '-D', '/data'] })
  proc.add(302, { score: 500, comm: 'node', cmdline: ['node', 'build-cache.js'] })
  proc.add(303, { score: 700, comm: 'chrome', cmdline: ['/opt/chrome', '--type=renderer'] })
  proc.add(304, { score: 800, comm: 'sshd' })
  proc.add(305, { score: 1000, comm: 'worker' })
  const cgroup = fakeCgroup(t, [301, 302, 303], { 'sshd.service': [304], 'user.slice': [] })
  mkdirSync(join(cgroup, 'sshd.service', 'inner'))
  writeFileSync(join(cgroup, 'sshd.service', 'inner', 'cgroup.procs'), '305\n')
  const order = (options: Parameters<typeof listCandidates>[1]) => listCandidates(cgroup, { procRoot: proc.root, ...options }).map((c) => [c.pid, c.preference])
  t.same(order({}), [[305, 'none'], [301, 'none'], [304, 'none'], [303, 'none'], [302, 'none']], 'by oom_score')
  t.same(
    order({ prefer: /renderer|cache/, avoid: /^postgres$/ }),
    [[303, 'prefer'], [302, 'prefer'], [305, 'none'], [304, 'none'], [301, 'avoid']],
    'the preferred first (cmdline matched), then by oom_score; the avoided last (comm matched)',
  )
  t.same(order({ prefer: /postgres/, avoid: /postgres/ }).slice(0, 1), [[301, 'prefer']], 'prefer wins over avoid')
  t.same(order({ protectUnits: ['sshd.service'] }).map(([pid]) => pid), [301, 303, 302], 'a unit, and the groups below it')
  t.same(order({ protectUids: [process.getuid!()] }), [], "this user's processes (the fake /proc is its own)")
  t.same(order({ protectUids: [65534] }).length, 5, 'another user: nobody protected')
})

t.test('the new options are checked before anything is armed', async (t) => {
  const cgroup = fakeCgroup(t, [])
  const bad: [Partial<DaemonOptions>, RegExp][] = [
    [{ coolDownMs: -1 }, /options\.coolDownMs/],
    [{ maxUnhelpfulKills: 0 }, /options\.maxUnhelpfulKills/],
    [{ minSwapFreePercent: 150 }, /options\.minSwapFreePercent/],
    [{ minSwapFreeBytes: -5 }, /options\.minSwapFreeBytes/],
    [{ prefer: 'chrome' as unknown as RegExp }, /options\.prefer/],
    [{ avoid: 1 as unknown as RegExp }, /options\.avoid/],
    [{ protectUids: 0 as unknown as number[] }, /options\.protectUids/],
    [{ protectUids: [0, -1] }, /options\.protectUids\[1\]/],
    [{ protectUnits: ['a/b'] }, /options\.protectUnits\[0\]/],
    [{ protectUnits: [''] }, /options\.protectUnits\[0\]/],
    [{ onWakeup: 'count' as unknown as () => void }, /options\.onWakeup/],
  ]
  for (const [options, message] of bad) {
    const watch = (): DaemonWatcher => {
      throw new Error('must not be armed')
    }
    await t.rejects(runPressureDaemon({ cgroup, ...options }, { watch, lockMemory: () => 0 }), { message }, JSON.stringify(options))
  }
})

t.test('below the line, the ranking of the cgroup is reused for a while, not rescanned at every check', async (t) => {
  const { victims: [a], proc, cgroup } = rankedSleepers(t, 60 * MiB, [900, 800])
  const fs = await import('node:fs')
  let scans = 0
  // The scan lists the cgroup's directory once (cgroupProcesses); nothing else does.
  const daemon = t.mockRequire<typeof import('../../src/daemon')>('../../src/daemon', {
    'node:fs': {
      ...fs,
      readdirSync: ((path: string, options: never) => {
        if (path === cgroup) scans++
        return fs.readdirSync(path, options)
      }) as typeof fs.readdirSync,
    },
  })
  t.equal(daemon.CANDIDATE_CACHE_MS, 1000)
  const controller = new AbortController()
  let wakeups = 0
  let started = 0
  let reached!: () => void
  const eight = new Promise<void>((resolve) => (reached = resolve))
  const lines: AnyLine[] = []
  const done = daemon.runPressureDaemon(
    {
      cgroup,
      minAvailableBytes: 100 * MiB,
      dryRun: true,
      signal: controller.signal,
      log: (line) => lines.push(line as AnyLine),
      onWakeup: () => {
        if (++wakeups === 1) started = performance.now()
        if (wakeups === 8) reached()
      },
    },
    { procRoot: proc.root, watch: () => new FakeWatcher() as unknown as DaemonWatcher, lockMemory: () => 0 },
  )
  await eight
  const elapsed = performance.now() - started
  const scansNow = scans - 1 // the start's check that the cgroup is readable
  controller.abort('SIGTERM')
  await done
  t.match(lines[1], { event: 'would-kill', source: 'check', victim: { pid: a.pid } })
  t.ok(scansNow <= Math.floor(elapsed / daemon.CANDIDATE_CACHE_MS) + 1, `${scansNow} scans for 8 checks below the line in ${Math.round(elapsed)} ms`)
})

// ---------------------------------------------------------------------------
// --kill-cgroup: a whole unit back at once

interface FakeLeaf {
  pids: number[]
  /** memory.current in bytes, or its text (absent: no such file). */
  current?: number | string
  /** memory.pressure's some avg10 (absent: no such file). */
  pressure?: number
  /** Has a cgroup.kill file. */
  kill?: boolean
  /** No cgroup.procs file (a group removed meanwhile). */
  noProcs?: boolean
}

/** A fake cgroup tree whose leaves are given by their paths under it. */
function fakeUnits(t: Test, leaves: Record<string, FakeLeaf>): string {
  const root = mkdtempSync(join(tmpdir(), 'pidfd-reap-units-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  writeFileSync(join(root, 'cgroup.procs'), '')
  for (const [name, leaf] of Object.entries(leaves)) {
    const dir = join(root, name)
    mkdirSync(dir, { recursive: true })
    if (!leaf.noProcs) writeFileSync(join(dir, 'cgroup.procs'), leaf.pids.map((pid) => `${pid}\n`).join(''))
    if (leaf.current !== undefined) writeFileSync(join(dir, 'memory.current'), `${leaf.current}\n`)
    if (leaf.pressure !== undefined) {
      writeFileSync(join(dir, 'memory.pressure'), `some avg10=${leaf.pressure.toFixed(2)} avg60=0.00 avg300=0.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n`)
    }
    if (leaf.kill) writeFileSync(join(dir, 'cgroup.kill'), '')
  }
  return root
}

t.test('units: the leaves that may be killed whole, the one with the most memory (or pressure) first', async (t) => {
  const proc = fakeProc(t)
  for (const pid of [101, 102, 103, 104, 105, 106, 107, 109, 110]) proc.add(pid, { pages: pid === 102 ? 512 : 256 })
  proc.add(105, { adj: -1000 })
  proc.add(1, {})
  proc.add(process.pid, {})
  const cgroup = fakeUnits(t, {
    'a.slice/web.service': { pids: [101, 102], current: 300 * MiB, pressure: 1.5 },
    'a.slice/batch.service': { pids: [103], current: 500 * MiB, pressure: 0 },
    'db.service': { pids: [104] }, // no memory.current: its members' RSS
    'empty.service': { pids: [] },
    'init.scope': { pids: [1] },
    'self.service': { pids: [process.pid, 109] },
    'never.service': { pids: [105, 110] }, // one member the kernel must never kill: not the unit
    'sshd.service': { pids: [106] },
    'gone.service': { pids: [108] }, // its only process exited meanwhile
    'removed.service': { pids: [], noProcs: true },
    'odd.service': { pids: [104], current: 'lots' }, // unreadable memory.current: its members' RSS
    'tie-b.service': { pids: [107], current: 200 * MiB },
    'tie-a.service': { pids: [109], current: 200 * MiB },
  })
  t.same(leafCgroups(join(cgroup, 'db.service')), [join(cgroup, 'db.service')], 'a group with none below is its own leaf')
  t.equal(leafCgroups(cgroup).length, 13)
  const names = (units: UnitCandidate[]): string[] => units.map((unit) => unit.cgroup.slice(cgroup.length + 1))
  const byMemory = listUnits(cgroup, { procRoot: proc.root, protectUnits: ['sshd.service'] })
  t.same(names(byMemory), ['a.slice/batch.service', 'a.slice/web.service', 'tie-a.service', 'tie-b.service', 'db.service', 'odd.service'], 'ties in path order')
  t.match(byMemory[1], { memoryBytes: 300 * MiB, pressure: 1.5, members: [{ pid: 102, rssBytes: 512 * PAGE }, { pid: 101 }] }, 'members: largest first')
  t.match(byMemory[4], { memoryBytes: 256 * PAGE, pressure: null })
  const byPressure = listUnits(cgroup, { procRoot: proc.root, protectUnits: ['sshd.service'], ranking: 'pressure' })
  t.same(names(byPressure), ['a.slice/web.service', 'a.slice/batch.service', 'tie-a.service', 'tie-b.service', 'db.service', 'odd.service'])
  t.same(listUnits(fakeUnits(t, { 'e.service': { pids: [] } })), [], 'the real /proc by default')
  t.ok(names(listUnits(cgroup, { procRoot: proc.root })).includes('sshd.service'), 'sshd.service is a unit like any other unless protected')
  t.same(listUnits(cgroup, { procRoot: proc.root, protectUids: [statSync(proc.root).uid] }), [], 'a protected user: no unit with one of its processes')
  t.same(names(listUnits(cgroup, { procRoot: proc.root, exclude: [] })).includes('self.service'), true, 'exclude replaces the daemon itself')
  t.throws(() => leafCgroups(join(cgroup, 'nope')), { code: 'ENOENT' }, 'the given cgroup must be there')
})

t.test('units: a group removed while the tree is walked is skipped; other errors are thrown', async (t) => {
  const cgroup = fakeUnits(t, { 'a.service': { pids: [] }, 'b.service': { pids: [] } })
  const fs = await import('node:fs')
  let failure = 'ENOENT'
  const { leafCgroups: leaves } = t.mockRequire<typeof import('../../src/daemon-unit')>('../../src/daemon-unit', {
    'node:fs': {
      ...fs,
      readdirSync: ((path: string, options: never) => {
        if (path === join(cgroup, 'a.service')) throw Object.assign(new Error(failure), { code: failure })
        return fs.readdirSync(path, options)
      }) as typeof fs.readdirSync,
    },
  })
  t.same(leaves(cgroup), [join(cgroup, 'b.service')])
  failure = 'EACCES'
  t.throws(() => leaves(cgroup), { code: 'EACCES' })
})

t.test('units: the pick opens a pidfd on each member still there, or takes the next unit', async (t) => {
  const [a, b, c] = sleepers(t, 3)
  const proc = fakeProc(t)
  for (const victim of [a, b, c]) proc.add(victim.pid, {})
  proc.add(2 ** 22 + 7, {}) // no such process: its pidfd cannot be opened
  const cgroup = fakeUnits(t, {
    'first.service': { pids: [2 ** 22 + 7], current: 900 * MiB },
    'second.service': { pids: [a.pid, b.pid, 2 ** 22 + 7], current: 500 * MiB },
    'third.service': { pids: [c.pid], current: 100 * MiB },
  })
  const units = listUnits(cgroup, { procRoot: proc.root })
  t.equal(units.length, 3)
  const picked = pickUnitFrom(units, proc.root)!
  t.equal(picked.unit.cgroup, join(cgroup, 'second.service'), 'a unit with no member left is passed over')
  t.same(picked.members.map((m) => m.pidfd.pid).sort(), [a.pid, b.pid].sort(), 'the members still there, each with its pidfd')
  closeUnit(picked)
  t.ok(picked.members.every((m) => m.pidfd.closed), 'closeUnit closes them')
  t.equal(pickUnitFrom(units.slice(0, 1), proc.root), null, 'none left: null')
})

const fakeMember = (pid: number, closed: number[], signalled: number[] = []) =>
  ({
    victim: { pid, comm: `m${pid}`, rssBytes: pid * PAGE },
    pidfd: {
      pid,
      close: () => closed.push(pid),
      sendSignal: (signal: string) => {
        if (pid === 22) throw systemError(-3, 'pidfd_send_signal', pid) // gone already
        if (signal === 'SIGKILL') signalled.push(pid)
      },
    },
  }) as unknown as PickedVictim

t.test('killUnit: cgroup.kill, then every member reaped at once; bytes per member, the time until the memory is back', async (t) => {
  const cgroup = fakeUnits(t, { 'u.service': { pids: [11, 12, 13], current: 100 * MiB, kill: true } })
  const leaf = join(cgroup, 'u.service')
  const unit: UnitCandidate = { cgroup: leaf, memoryBytes: 100 * MiB, pressure: null, members: [] }
  const closed: number[] = []
  let running = 0
  let most = 0
  const result = await killUnit(
    { unit, members: [11, 12, 13].map((pid) => fakeMember(pid, closed)) },
    'memory',
    async (pidfd, options) => {
      t.match(options, { chunkBytes: MiB, deadlineMs: 1000 })
      t.equal(readFileSync(join(leaf, 'cgroup.kill'), 'utf8'), '1', 'cgroup.kill came first')
      most = Math.max(most, ++running)
      await new Promise((resolve) => setTimeout(resolve, 20))
      running--
      if (pidfd.pid === 12) throw systemError(-3, 'pidfd_send_signal', 12)
      if (pidfd.pid === 13) writeFileSync(join(leaf, 'memory.current'), `${2 * MiB}\n`)
      return report(pidfd.pid, pidfd.pid * MiB)
    },
    { chunkBytes: MiB, deadlineMs: 1000 },
  )
  t.equal(most, 3, 'the members are reaped in parallel')
  t.match(result, {
    cgroup: leaf,
    ranking: 'memory',
    killedBy: 'cgroup.kill',
    memoryAtKill: 100 * MiB,
    memoryBackMs: Number,
    reapedMs: Number,
    members: [
      { pid: 11, comm: 'm11', rssBytes: 11 * PAGE, bytesReaped: 11 * MiB, report: { pid: 11 } },
      { pid: 12, bytesReaped: 0, error: { code: 'ESRCH' } },
      { pid: 13, bytesReaped: 13 * MiB },
    ],
    bytesReaped: 24 * MiB,
  })
  t.notOk('report' in result.members[1])
  t.same(closed.sort(), [11, 12, 13], 'every pidfd closed')
})

t.test('killUnit: no cgroup.kill (each member by its pidfd), no memory.current, memory not back in time', async (t) => {
  const cgroup = fakeUnits(t, { 'plain.service': { pids: [21] }, 'slow.service': { pids: [22], current: 50 * MiB }, 'gone.service': { pids: [23], current: 50 * MiB } })
  const unit = (name: string): UnitCandidate => ({ cgroup: join(cgroup, name), memoryBytes: 0, pressure: null, members: [] })
  const closed: number[] = []
  const signalled: number[] = []
  const plain = await killUnit({ unit: unit('plain.service'), members: [fakeMember(21, closed, signalled), fakeMember(22, closed, signalled)] }, 'pressure', async () => {
    throw new Error('no code')
  }, { deadlineMs: 50 })
  t.same(signalled, [21], 'no cgroup.kill: SIGKILL through each pidfd, a member gone already passed over')
  t.match(plain, { killedBy: 'pidfd', ranking: 'pressure', memoryAtKill: null, memoryBackMs: null, members: [{ pid: 21, bytesReaped: 0, error: { message: 'no code' } }] })
  t.notOk('code' in plain.members[0].error!)
  const stopping = await killUnit({ unit: unit('plain.service'), members: [fakeMember(21, closed)] }, 'memory', () => Promise.reject('SIGTERM'), { deadlineMs: 50 })
  t.same(stopping.members[0].error, { message: 'SIGTERM' }, 'an abort reason that is no Error: said as it is')
  t.notOk(existsSync(join(cgroup, 'plain.service', 'cgroup.kill')), 'no cgroup.kill file is made where there is none')
  const slow = await killUnit({ unit: unit('slow.service'), members: [fakeMember(22, closed)] }, 'memory', async (pidfd) => report(pidfd.pid, MiB), { deadlineMs: 30 })
  t.match(slow, { memoryAtKill: 50 * MiB, memoryBackMs: null, bytesReaped: MiB }, 'memory.current did not fall by the deadline')
  const late = await killUnit({ unit: unit('slow.service'), members: [fakeMember(22, closed)] }, 'memory', async (pidfd) => {
    await new Promise((resolve) => setTimeout(resolve, 60))
    return report(pidfd.pid, MiB)
  }, { deadlineMs: 10 })
  t.ok(late.reapedMs >= 50 && late.memoryBackMs === null, 'past the deadline, the look at the memory waits for the reaping to settle')
  const gone = await killUnit({ unit: unit('gone.service'), members: [fakeMember(23, closed)] }, 'memory', async (pidfd) => {
    rmSync(join(cgroup, 'gone.service', 'memory.current'))
    return report(pidfd.pid, MiB)
  }, { deadlineMs: 5000 })
  t.match(gone, { memoryAtKill: 50 * MiB, memoryBackMs: null }, 'the group went away: no time')
})

t.test('the daemon with killCgroup: kills the unit that matters most, says what each member gave back', async (t) => {
  const [a, b, c] = sleepers(t, 3)
  const proc = fakeProc(t, 1000 * MiB, 60 * MiB)
  proc.add(a.pid, { pages: 1000 })
  proc.add(b.pid, { pages: 2000 })
  proc.add(c.pid, { pages: 100 })
  const cgroup = fakeUnits(t, {
    'big.service': { pids: [a.pid, b.pid], current: 500 * MiB, pressure: 0 },
    'small.service': { pids: [c.pid], current: 10 * MiB, pressure: 80 },
  })
  const killed: number[] = []
  const r = run(
    { cgroup, minAvailableBytes: 100 * MiB, killCgroup: true },
    {
      procRoot: proc.root,
      killAndReap: async (pidfd) => {
        killed.push(pidfd.pid)
        return report(pidfd.pid, 30 * MiB)
      },
    },
  )
  await r.lineCount(1)
  t.match(r.lines[0], { event: 'start', killCgroup: 'memory' })
  r.watcher.fire()
  await r.lineCount(2)
  t.match(r.lines[1], {
    event: 'kill',
    neededBytes: 40 * MiB,
    victim: { pid: b.pid },
    unit: { cgroup: join(cgroup, 'big.service'), ranking: 'memory', killedBy: 'pidfd', memoryBytes: 500 * MiB, members: [{ pid: b.pid, bytesReaped: 30 * MiB }, { pid: a.pid, bytesReaped: 30 * MiB }] },
    bytesReaped: 60 * MiB,
    decision: 'wait',
    reason: 'enough memory back',
  })
  t.notOk('report' in r.lines[1])
  t.same(killed.sort(), [a.pid, b.pid].sort(), 'both members of the unit, nobody else')
  r.controller.abort('SIGTERM')
  t.match(await r.done, { kills: 1 })

  const dry = run({ cgroup, minAvailableBytes: 100 * MiB, killCgroup: true, killCgroupBy: 'pressure', dryRun: true }, { procRoot: proc.root })
  await dry.lineCount(1)
  dry.watcher.fire()
  await dry.lineCount(2)
  t.match(dry.lines[1], { event: 'would-kill', victim: { pid: c.pid }, unit: { cgroup: join(cgroup, 'small.service'), ranking: 'pressure', pressure: 80, members: 1 }, reason: 'dry run: nothing killed' })
  // The ranking is reused for a while (CANDIDATE_CACHE_MS), then made again: the pick stays.
  dry.watcher.fire()
  await sleep(1100)
  dry.watcher.fire()
  await dry.lineCount(4)
  t.match(dry.lines.slice(2), [{ event: 'would-kill', unit: { cgroup: join(cgroup, 'small.service') } }, { event: 'would-kill', unit: { cgroup: join(cgroup, 'small.service') } }])
  dry.controller.abort('SIGTERM')
  await dry.done

  const none = run({ cgroup, minAvailableBytes: 100 * MiB, killCgroup: true, protectUnits: ['big.service', 'small.service'] }, { procRoot: proc.root })
  await none.lineCount(1)
  none.watcher.fire()
  await none.lineCount(2)
  t.match(none.lines[1], { event: 'pressure', reason: 'no victim in the cgroup' })
  none.controller.abort('SIGTERM')
  await none.done

  const plain = run({ cgroup, minAvailableBytes: 100 * MiB }, { procRoot: proc.root })
  await plain.lineCount(1)
  t.notOk('killCgroup' in plain.lines[0], 'without killCgroup the start line does not say it')
  plain.controller.abort('SIGTERM')
  await plain.done
  await t.rejects(
    runPressureDaemon({ cgroup, killCgroup: true, killCgroupBy: 'size' as 'memory' }, { watch: () => new FakeWatcher() as unknown as DaemonWatcher, lockMemory: () => 0 }),
    { code: 'ERR_INVALID_ARG_VALUE', message: /options\.killCgroupBy/ },
  )
  await t.rejects(
    runPressureDaemon({ cgroup, killCgroup: 'yes' as unknown as boolean }, { watch: () => new FakeWatcher() as unknown as DaemonWatcher, lockMemory: () => 0 }),
    { code: 'ERR_INVALID_ARG_TYPE', message: /options\.killCgroup/ },
  )
})
