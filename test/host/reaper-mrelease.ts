// killAndReap for real on the host kernel: SIGKILL + process_mrelease on
// children holding hundreds of MiB.
import t, { type Test } from 'tap'
import { killAndReap, Pidfd, Reaper, readRssBytes, type ReapProgress, type ReapReport } from '../../src/index'
import { MiB, killQuietly, startHog, startSleeper } from '../fixtures/victims'

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
  if (report.stopReason === 'done') {
    t.equal(report.calls, 1)
    t.ok(report.bytesReaped >= (HOG_MIB - 20) * MiB, `reaped ${report.bytesReaped / MiB} MiB`)
  } else {
    t.equal(report.exited, true)
  }
  t.ok(report.bytesReaped > 0 || report.exited, 'bytes were reaped or the process had exited')
}

t.test('kill and reap hogs through process_mrelease', async (t) => {
  const outcomes: string[] = []
  for (let round = 0; round < 4; round++) {
    const hog = await startHog(HOG_MIB)
    const rssBefore = readRssBytes(hog.pid)!
    t.ok(rssBefore >= HOG_MIB * MiB, 'the hog holds its memory')
    const progress: ReapProgress[] = []
    const report = await killAndReap(hog.pid, { onProgress: (p) => progress.push(p) })
    checkCoherent(t, report, rssBefore)
    t.equal(progress.length, report.calls, 'one progress report per call')
    if (report.calls === 1) t.same(progress[0].bytesReaped, report.bytesReaped)
    await hog.gone
    t.equal(hog.child.signalCode, 'SIGKILL')
    outcomes.push(`${report.stopReason}:${Math.round(report.bytesReaped / MiB)}MiB`)
  }
  t.comment(`outcomes: ${outcomes.join(', ')}`)
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
  t.equal(events.length, report.calls)
  await pidfd.exited()
  t.equal(pidfd.hasExited(), true)
  t.equal(report.pid, hog.pid)
})

t.test('a process that is already gone', async (t) => {
  const sleeper = startSleeper()
  const pidfd = Pidfd.open(sleeper.pid)
  t.teardown(() => pidfd.close())
  await killQuietly(sleeper) // exited and waited for: the kernel says ESRCH
  const report = await killAndReap(pidfd)
  t.match(report, { mechanism: 'process_mrelease', stopReason: 'exited', exited: true, calls: 0, bytesReaped: 0 })
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
