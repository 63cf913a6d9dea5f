// killAndReap for real on the host kernel: SIGKILL, then process_mrelease
// (the fallback on kernels without try_reap_dying_process) on children
// holding real memory. Expectations come from what the running kernel offers.
import t, { type Test } from 'tap'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { constants, killAndReap, Pidfd, Reaper, readRssBytes, type ReapProgress, type ReapReport } from '../../src/index'
import { MiB, killQuietly, procView, startHog, startSleeper } from '../../victims'
import { kernelFeatures } from '../fixtures/kernel-features'
import { frozenUnavailable, frozenVictim } from '../fixtures/stuck-victims'

const kernel = kernelFeatures()
const mechanism = kernel.tryReapNr ? 'try_reap' : kernel.processMrelease ? 'process_mrelease' : 'none'
const mreleaseSkip =
  mechanism === 'process_mrelease' ? false : `killAndReap uses ${mechanism} on this kernel (try_reap is tested in the guest)`
const HOG_MIB = 300

// The victim may exit by itself before process_mrelease runs (it usually does
// on an idle host): accept either outcome, but demand a coherent report.
function checkCoherent(t: Test, report: ReapReport, rssBefore: number): void {
  t.equal(report.mechanism, 'process_mrelease')
  t.ok(['done', 'exited'].includes(report.stopReason), `stopReason ${report.stopReason}`)
  t.ok(report.calls <= 1, 'process_mrelease is called at most once')
  t.equal(report.busyRetries, 0)
  t.ok(report.elapsedMs >= 0 && report.elapsedMs < 10_000)
  t.ok(report.bytesReaped <= rssBefore + MiB, 'never more than the victim had')
  if (report.stopReason === 'done') t.equal(report.calls, 1)
  else t.equal(report.exited, true, 'exited only with a readable pidfd')
}

t.test('kill and reap hogs through process_mrelease', { skip: mreleaseSkip }, async (t) => {
  const outcomes: string[] = []
  for (let round = 0; round < 4; round++) {
    const hog = await startHog(HOG_MIB)
    const rssBefore = readRssBytes(hog.pid)!
    t.ok(rssBefore >= HOG_MIB * MiB, 'the hog holds its memory')
    const progress: ReapProgress[] = []
    const report = await killAndReap(hog.pid, { onProgress: (p) => progress.push(p) })
    checkCoherent(t, report, rssBefore)
    t.equal(progress.length, report.calls, 'one progress report for the one call')
    if (report.calls === 1) t.same(progress[0].bytesReaped, report.bytesReaped)
    await hog.gone
    t.equal(hog.child.signalCode, 'SIGKILL')
    outcomes.push(`${report.stopReason}:${Math.round(report.bytesReaped / MiB)}MiB`)
  }
  t.comment(`outcomes: ${outcomes.join(', ')}`)
})

t.test('a victim that cannot exit: process_mrelease reaps it and its RSS drop is the report', { skip: mreleaseSkip || frozenUnavailable() }, async (t) => {
  // Frozen in a v1 freezer, the killed victim keeps its mm until thawed.
  const frozen = await frozenVictim(256)
  t.teardown(() => frozen.cleanup())
  const { pid } = frozen.victim
  const rssBefore = readRssBytes(pid)!
  // Calibration, in this run: the event loop's delays over 300 ms of idling
  // are the host's own jitter right now.
  const idle = monitorEventLoopDelay({ resolution: 1 })
  idle.enable()
  await new Promise((resolve) => setTimeout(resolve, 300))
  idle.disable()
  const delay = monitorEventLoopDelay({ resolution: 1 })
  delay.enable()
  const report = await killAndReap(pid)
  delay.disable()
  const after = procView(pid)
  t.match(report, { mechanism: 'process_mrelease', stopReason: 'done', calls: 1, exited: false })
  t.ok(after.exists && after.hasMm, 'still there, with its mm')
  t.ok(report.bytesReaped >= 250 * MiB, `reported ${report.bytesReaped / MiB} MiB`)
  t.ok(Math.abs(rssBefore - after.rssBytes - report.bytesReaped) <= MiB, `RSS ${rssBefore / MiB} -> ${after.rssBytes / MiB} MiB`)
  const ms = (nanoseconds: number): string => (nanoseconds / 1e6).toFixed(2)
  t.comment(`event-loop delay while reaping 256 MiB in ${report.elapsedMs.toFixed(1)} ms: p99 ${ms(delay.percentile(99))} ms, max ${ms(delay.max)} ms; idle: p99 ${ms(idle.percentile(99))} ms, max ${ms(idle.max)} ms`)
  // The call runs on the job's thread. Run on the event loop, it would
  // delay it once by the whole call: the longest delay would be the call's
  // time on top of the host's own jitter. Against the jitter measured just
  // before, not a fixed number of ms, so a loaded host cannot fail it.
  const bound = 2 * (idle.max / 1e6) + report.elapsedMs / 2
  t.ok(delay.max / 1e6 < bound, `longest event-loop delay ${ms(delay.max)} ms < ${bound.toFixed(2)} ms (twice the idle maximum, plus half the call)`)
  frozen.thaw()
  await frozen.victim.gone
  t.equal(frozen.victim.child.signalCode, 'SIGKILL', 'thawed, it exits')
})

t.test('a given Pidfd is used and left open; progress events fire', async (t) => {
  const hog = await startHog(100)
  const pidfd = Pidfd.open(hog.pid)
  t.teardown(() => pidfd.close())
  const reaper = new Reaper({ chunkBytes: 4 * MiB })
  const events: ReapProgress[] = []
  reaper.on('progress', (p) => events.push(p))
  const report = await reaper.killAndReap(pidfd)
  t.equal(pidfd.closed, false)
  t.ok(events.length <= report.calls, 'at most one event per call')
  if (report.calls > 0) t.match(events.at(-1), { calls: report.calls, bytesReaped: report.bytesReaped }, 'the last event has the final counts')
  await pidfd.exited()
  t.equal(pidfd.hasExited(), true)
  t.equal(report.pid, hog.pid)
  t.equal(report.mechanism, mechanism)
})

t.test('a process that is already gone', async (t) => {
  const sleeper = startSleeper()
  const pidfd = Pidfd.open(sleeper.pid)
  t.teardown(() => pidfd.close())
  await killQuietly(sleeper) // exited and waited for: the kernel says ESRCH
  const report = await killAndReap(pidfd)
  t.match(report, { mechanism, stopReason: 'exited', exited: true, calls: 0, bytesReaped: 0 })
  await t.rejects(killAndReap(sleeper.pid), { code: 'ESRCH', syscall: 'pidfd_open' })
})

t.test('aborted before the kill: nothing is killed', async (t) => {
  const sleeper = startSleeper()
  t.teardown(() => killQuietly(sleeper))
  const controller = new AbortController()
  controller.abort()
  await t.rejects(killAndReap(sleeper.pid, { signal: controller.signal }), { name: 'AbortError' })
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(sleeper.child.exitCode, null)
  t.equal(sleeper.child.signalCode, null)
})

t.test('budget 0 and a past deadline stop before reaping', async (t) => {
  for (const options of [{ budgetBytes: 0 }, { deadlineMs: 0 }]) {
    const sleeper = startSleeper()
    const report = await killAndReap(sleeper.pid, options)
    t.ok(['budget', 'deadline', 'exited'].includes(report.stopReason), report.stopReason)
    t.equal(report.calls, 0)
    await sleeper.gone
  }
})

t.test('killAndReap(child): a child_process child, through a pidfd opened race-free', async (t) => {
  const sleeper = startSleeper()
  await new Promise((resolve) => sleeper.child.once('spawn', resolve))
  const report = await killAndReap(sleeper.child)
  t.equal(report.pid, sleeper.pid)
  t.match(report.stopReason, /^(done|exited|unsupported)$/)
  await sleeper.gone
  t.equal(sleeper.child.signalCode, 'SIGKILL')
  // Once Node has reaped it, its pid may name another process: nothing is signalled.
  await t.rejects(killAndReap(sleeper.child), { code: 'ESRCH', syscall: 'pidfd_open', pid: sleeper.pid })
})

const threadPidfds = kernel.threadPidfd || 'PIDFD_THREAD needs Linux >= 6.9'
t.test('a PIDFD_THREAD pidfd is refused before anything is killed', { skip: threadPidfds !== true && threadPidfds }, async (t) => {
  const sleeper = startSleeper()
  t.teardown(() => killQuietly(sleeper))
  using pidfd = Pidfd.open(sleeper.pid, constants.PIDFD_THREAD)
  t.equal(pidfd.thread, true)
  await t.rejects(killAndReap(pidfd), { code: 'ERR_INVALID_ARG_VALUE', message: /must be a process pidfd, not a PIDFD_THREAD one/ })
  t.equal(pidfd.hasExited(), false, 'the process lives')
})

t.test('the report has the RSS before the kill, its fall, and when the kill and the exit happened', async (t) => {
  // A victim that cannot exit: every field has a value to check against /proc.
  const frozen = frozenUnavailable() ? undefined : await frozenVictim(64)
  if (frozen) {
    t.teardown(() => frozen.cleanup())
    const { pid } = frozen.victim
    const rssBefore = readRssBytes(pid)!
    const report = await killAndReap(pid, { deadlineMs: 5000 })
    const rssAfter = readRssBytes(pid)!
    t.ok(Math.abs(report.rssBeforeBytes! - rssBefore) <= MiB, `rssBeforeBytes ${report.rssBeforeBytes} (statm just before: ${rssBefore})`)
    t.equal(report.exited, false)
    t.equal(report.exitedAtMs, null, 'no exit yet')
    t.ok(Math.abs(report.rssDropBytes! - (report.rssBeforeBytes! - rssAfter)) <= MiB, `rssDropBytes ${report.rssDropBytes}: the fall to ${rssAfter}`)
    if (mechanism === 'process_mrelease') t.ok(report.rssDropBytes! >= 60 * MiB, 'reaped: most of its 64 MiB')
    t.ok(report.killedAtMs! >= 0 && report.killedAtMs! <= report.elapsedMs, `killedAtMs ${report.killedAtMs!.toFixed(2)} within elapsedMs ${report.elapsedMs.toFixed(2)}`)
    frozen.thaw()
    await frozen.victim.gone
  }
  // A sleeper exits at once: its exit comes after the kill, and takes all its RSS.
  const sleeper = startSleeper()
  await new Promise((resolve) => sleeper.child.once('spawn', resolve))
  const report = await killAndReap(sleeper.child)
  await sleeper.gone
  if (report.exited) {
    t.ok(report.exitedAtMs! >= report.killedAtMs!, `exitedAtMs ${report.exitedAtMs!.toFixed(2)} after killedAtMs ${report.killedAtMs!.toFixed(2)}`)
    t.ok(report.exitedAtMs! <= report.elapsedMs)
    t.equal(report.rssDropBytes, report.rssBeforeBytes, 'all of it fell')
  } else {
    t.equal(report.exitedAtMs, null)
  }
  t.ok(report.rssBeforeBytes! > 0, 'sleep had some RSS')
})
