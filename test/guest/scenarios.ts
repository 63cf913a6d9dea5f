// The seed's scenario, for real, inside the QEMU guest with the patched kernel
// (scripts/vm -- npm run test:guest): a killed victim that cannot exit gets
// its memory back through killAndReap's try_reap path while it is still
// there. Asserts behaviour, not timings. The series is applied in the guest,
// so a missing syscall fails here; elsewhere the tests skip.
//
// - starved: the victim and a SCHED_FIFO busy loop share CPU 1 (RT
//   throttling off); this process reaps from CPU 0.
// - frozen:  the victim is frozen in a cgroup v1 freezer; SIGKILL does not
//   thaw it (checked), it is reaped while frozen, then thawed.
// - plain:   the baseline; it exits by itself as soon as it can.
import t, { type Test } from 'tap'
import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import * as api from '../../src/index'
import {
  MiB,
  meminfo,
  mixOf,
  pinProcess,
  procView,
  startScenario,
  unthrottleRt,
  type Scenario,
  type ScenarioKind,
} from '../../victims'
import { guestOnly as skip } from '../fixtures/kernel-features'

// Each kind of memory: 4 KiB anonymous, THP, dirtied MAP_PRIVATE of a tmpfs file.
const MIX = mixOf(256, { anon: 2, thp: 1, file: 1 })

if (!skip) {
  pinProcess(0)
  t.teardown(unthrottleRt())
}

/**
 * How long an ordinary victim of the same mix takes from SIGKILL to exit,
 * measured before the tests (nothing starves CPU 1 yet): a stuck victim
 * must outlast several of these, which a fixed wait cannot promise under
 * TCG on a busy host.
 */
let plainExitMs = 0
if (!skip) {
  t.before(async () => {
    const s = await startScenario('plain', { memory: MIX, victimCpu: 1 })
    try {
      using pidfd = api.Pidfd.open(s.victim.pid)
      const started = performance.now()
      pidfd.sendSignal('SIGKILL')
      await pidfd.exited()
      plainExitMs = performance.now() - started
    } finally {
      await s.cleanup()
    }
  })
}

/** Waits 5 times what an ordinary victim needed to exit (at least 200 ms), and says how long. */
async function outlastPlainExit(): Promise<string> {
  const wait = Math.max(200, 5 * plainExitMs)
  await sleep(wait)
  return `${wait.toFixed(0)} ms later (5 times the ${plainExitMs.toFixed(0)} ms an ordinary victim took to exit)`
}

async function scenario(t: Test, kind: ScenarioKind): Promise<Scenario> {
  const s = await startScenario(kind, { memory: MIX, victimCpu: 1 })
  t.teardown(() => s.cleanup())
  return s
}

function anonHugeBytes(pid: number): number {
  const match = /^AnonHugePages:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))
  return match ? Number(match[1]) * 1024 : 0
}

/** Reaps a victim that cannot exit and checks the memory is back while it is still there. */
async function reapWhileStuck(t: Test, s: Scenario, pidfd: api.Pidfd): Promise<void> {
  const { pid, heldBytes } = s.victim
  const rssBefore = procView(pid).rssBytes
  const availableBefore = meminfo('MemAvailable')
  t.ok(rssBefore >= heldBytes, `the victim holds ${rssBefore / MiB} MiB (${heldBytes / MiB} MiB touched)`)
  t.comment(`AnonHugePages: ${anonHugeBytes(pid) / MiB} MiB`)

  const report = await api.killAndReap(pidfd, { chunkBytes: 16 * MiB })
  const view = procView(pid)
  const availableAfter = meminfo('MemAvailable')

  t.match(report, { mechanism: 'try_reap', stopReason: 'done', exited: false }, 'reaped through try_reap')
  const dropped = rssBefore - view.rssBytes
  t.ok(dropped >= 0.9 * heldBytes, `RSS dropped by ${dropped / MiB} MiB (>= 90 % of ${heldBytes / MiB} MiB)`)
  t.ok(report.bytesReaped >= 0.9 * heldBytes, `killAndReap reports ${report.bytesReaped / MiB} MiB`)
  const rose = availableAfter - availableBefore
  t.ok(rose >= 0.5 * heldBytes, `MemAvailable rose by ${(rose / MiB).toFixed(1)} MiB`)

  // ... and the victim is still there: not exited, not a zombie, mm not released.
  t.equal(view.exists, true, '/proc/<pid>/stat still exists')
  t.not(view.state, 'Z', `state ${view.state}, not a zombie`)
  t.equal(view.hasMm, true, 'the mm is not released (statm size > 0)')
  t.equal(pidfd.hasExited(), false, 'the pidfd is not readable')
  t.equal(s.victim.child.exitCode ?? s.victim.child.signalCode, null, 'Node has not seen it exit')
}

t.test('starved: memory comes back while the victim cannot run its exit', { skip }, async (t) => {
  const s = await scenario(t, 'starved')
  using pidfd = api.Pidfd.open(s.victim.pid)
  await reapWhileStuck(t, s, pidfd)
  // Still stuck a while later: it is the starvation, not slowness.
  const waited = await outlastPlainExit()
  t.equal(pidfd.hasExited(), false, `still there ${waited}`)
  await s.release()
  await pidfd.exited()
  await s.victim.gone
  t.equal(s.victim.child.signalCode, 'SIGKILL', 'it exits once the busy loop stops')
})

t.test('frozen: SIGKILL does not thaw a v1-frozen victim; it is reaped while frozen', { skip }, async (t) => {
  const s = await scenario(t, 'frozen')
  using pidfd = api.Pidfd.open(s.victim.pid)
  t.equal(s.freezer!.state(), 'FROZEN')
  pidfd.sendSignal('SIGKILL')
  const waited = await outlastPlainExit()
  t.equal(pidfd.hasExited(), false, `killed, yet not exited ${waited}`)
  t.equal(s.freezer!.state(), 'FROZEN', 'SIGKILL left the group frozen')
  t.comment(`state of the killed, frozen victim: ${procView(s.victim.pid).state}`)
  // killAndReap signals again (harmless) and reaps.
  await reapWhileStuck(t, s, pidfd)
  t.equal(s.freezer!.state(), 'FROZEN', 'still frozen after reaping')
  s.freezer!.thaw()
  await pidfd.exited()
  await s.victim.gone
  t.equal(s.victim.child.signalCode, 'SIGKILL', 'thawed, it exits')
})

t.test('plain: an ordinary victim is killed and its memory comes back', { skip }, async (t) => {
  const s = await scenario(t, 'plain')
  const report = await api.killAndReap(s.victim.pid, { chunkBytes: 16 * MiB })
  t.equal(report.mechanism, 'try_reap')
  t.ok(['done', 'exited'].includes(report.stopReason), `stopped: ${report.stopReason}`)
  await s.victim.gone
  t.equal(procView(s.victim.pid).exists, false, 'gone')
})
