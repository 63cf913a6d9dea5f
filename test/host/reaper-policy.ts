// The reaping policy on the try_reap path. The host kernel has no
// try_reap_dying_process, so its results (byte counts, EBUSY, EPERM...) are
// scripted through killAndReap's internal backend parameter; the victim is a
// real sleeping child (never actually killed by the fake) and the real
// try_reap path is covered by the guest suite.
import t, { type Test } from 'tap'
import { Reaper, type ReapProgress } from '../../src/index'
import type { ReapBackend } from '../../src/reaper'
import { MiB, killQuietly, startSleeper } from '../fixtures/victims'

const EPERM = -1, ESRCH = -3, EINTR = -4, EBADF = -9, EAGAIN = -11, EBUSY = -16, EINVAL = -22, ENOSYS = -38, ENOMEM = -12

interface Script {
  mechanism?: 'try_reap' | 'process_mrelease' | 'none'
  results?: number[] // reaping syscall results in order; the last one repeats
  kill?: number
  exitAfterCalls?: number // pidfd becomes readable after this many calls
  poll?: number
  rss?: (number | null)[]
  delayMs?: number
}

function fakeBackend(script: Script) {
  const calls: { maxBytes?: bigint; at: number }[] = []
  const results = [...(script.results ?? [0])]
  const rss = [...(script.rss ?? [])]
  const next = async (maxBytes?: bigint): Promise<number> => {
    calls.push({ maxBytes, at: performance.now() })
    if (script.delayMs) await new Promise((resolve) => setTimeout(resolve, script.delayMs))
    else await new Promise((resolve) => setImmediate(resolve))
    return results.length > 1 ? results.shift()! : results[0]
  }
  const mechanism = script.mechanism ?? 'try_reap'
  const backend: ReapBackend = {
    features: () => ({
      tryReap: mechanism === 'try_reap' ? { syscallNr: 463 } : null,
      processMrelease: mechanism === 'process_mrelease',
    }),
    sendSignal: () => script.kill ?? 0,
    tryReapAsync: (_fd, maxBytes) => next(maxBytes),
    mreleaseAsync: () => next(),
    pollReadable: () => script.poll ?? (script.exitAfterCalls !== undefined && calls.length >= script.exitAfterCalls ? 1 : 0),
    readRssBytes: () => (rss.length > 0 ? rss.shift()! : null),
  }
  return { backend, calls }
}

async function victim(t: Test): Promise<number> {
  const sleeper = startSleeper()
  t.teardown(() => killQuietly(sleeper))
  return sleeper.pid
}

t.test('chunks add up until the kernel reports nothing left', async (t) => {
  const { backend, calls } = fakeBackend({ results: [16 * MiB, 16 * MiB + 4096, 5 * MiB, 0] })
  const progress: ReapProgress[] = []
  const reaper = new Reaper({ onProgress: (p) => progress.push(p) }, backend)
  const report = await reaper.killAndReap(await victim(t))
  t.match(report, { mechanism: 'try_reap', bytesReaped: 37 * MiB + 4096, calls: 4, busyRetries: 0, stopReason: 'done', exited: false })
  t.same(calls.map((c) => c.maxBytes), Array(4).fill(BigInt(16 * MiB)), 'default chunk 16 MiB')
  t.same(progress.map((p) => p.bytesReaped), [16 * MiB, 32 * MiB + 4096, 37 * MiB + 4096, 37 * MiB + 4096])
})

t.test('the budget caps the last chunk and stops', async (t) => {
  const { backend, calls } = fakeBackend({ results: [8 * MiB] })
  const report = await new Reaper({ chunkBytes: 8 * MiB, budgetBytes: 20 * MiB }, backend).killAndReap(await victim(t))
  t.same(calls.map((c) => Number(c.maxBytes) / MiB), [8, 8, 4])
  t.match(report, { stopReason: 'budget', calls: 3, bytesReaped: 24 * MiB })
  const unlimited = fakeBackend({ results: [MiB, MiB, 0] })
  const all = await new Reaper({ chunkBytes: MiB, budgetBytes: Infinity, deadlineMs: Infinity }, unlimited.backend).killAndReap(await victim(t))
  t.match(all, { stopReason: 'done', calls: 3, bytesReaped: 2 * MiB })
})

t.test('EBUSY backs off exponentially, capped, and resets after progress', async (t) => {
  const { backend, calls } = fakeBackend({ results: [EBUSY, EBUSY, EBUSY, EBUSY, EBUSY, EBUSY, EBUSY, EBUSY, EINTR, MiB, EBUSY, 0] })
  const report = await new Reaper({}, backend).killAndReap(await victim(t))
  t.match(report, { stopReason: 'done', busyRetries: 10, calls: 12, bytesReaped: MiB })
  const gaps = calls.slice(1).map((c, i) => c.at - calls[i].at)
  // 1, 2, 4, 8, 16, 32, 50, 50, 50 ms (timers may fire late, never early).
  const expected = [1, 2, 4, 8, 16, 32, 50, 50, 50]
  expected.forEach((ms, i) => t.ok(gaps[i] >= ms - 1, `gap ${i}: ${gaps[i].toFixed(1)} >= ${ms}`))
  t.ok(gaps[10] < 40, 'backoff restarts at 1 ms after progress')
})

t.test('EAGAIN from try_reap is called again at once, not backed off', async (t) => {
  const { backend, calls } = fakeBackend({ results: [EAGAIN, EAGAIN, EAGAIN, MiB, EAGAIN, 0] })
  const report = await new Reaper({}, backend).killAndReap(await victim(t))
  t.match(report, { stopReason: 'done', busyRetries: 0, calls: 6, bytesReaped: MiB })
  const gaps = calls.slice(1).map((c, i) => c.at - calls[i].at)
  t.ok(
    gaps.every((ms) => ms < 40),
    `no backoff sleeps: ${gaps.map((ms) => ms.toFixed(1)).join(', ')} ms`,
  )
})

t.test('the deadline stops a victim that stays busy', async (t) => {
  const { backend } = fakeBackend({ results: [EBUSY] })
  const report = await new Reaper({ deadlineMs: 80 }, backend).killAndReap(await victim(t))
  t.equal(report.stopReason, 'deadline')
  t.ok(report.busyRetries >= 4, `${report.busyRetries} busy retries`)
  t.ok(report.elapsedMs >= 80 && report.elapsedMs < 1000, `${report.elapsedMs} ms`)
  t.equal(report.bytesReaped, 0)
  t.equal(report.mechanism, 'try_reap')
})

t.test('EPERM right after the kill is retried briefly', async (t) => {
  const { backend } = fakeBackend({ results: [EPERM, EPERM, 2 * MiB, 0] })
  const report = await new Reaper({}, backend).killAndReap(await victim(t))
  t.match(report, { stopReason: 'done', bytesReaped: 2 * MiB, calls: 4 })
})

t.test('persistent EPERM is a refusal: mechanism none', async (t) => {
  const { backend } = fakeBackend({ results: [EPERM] })
  const report = await new Reaper({}, backend).killAndReap(await victim(t))
  t.match(report, {
    mechanism: 'none',
    stopReason: 'refused',
    refusal: { code: 'EPERM', errno: -1, message: 'EPERM: operation not permitted, try_reap_dying_process' },
  })
  t.ok(report.elapsedMs >= 250, 'after the grace period')
})

t.test('a refusal after some progress keeps the mechanism', async (t) => {
  const { backend } = fakeBackend({ results: [MiB, EINVAL] })
  const report = await new Reaper({}, backend).killAndReap(await victim(t))
  t.match(report, { mechanism: 'try_reap', stopReason: 'refused', bytesReaped: MiB, refusal: { code: 'EINVAL' } })
  const other = fakeBackend({ results: [ENOMEM] })
  const odd = await new Reaper({}, other.backend).killAndReap(await victim(t))
  t.match(odd, { stopReason: 'refused', refusal: { code: 'ENOMEM' } })
})

t.test('ESRCH and exit stop the loop', async (t) => {
  const gone = await new Reaper({}, fakeBackend({ results: [MiB, ESRCH] }).backend).killAndReap(await victim(t))
  t.match(gone, { stopReason: 'exited', exited: true, bytesReaped: MiB, calls: 2 })
  const exiting = await new Reaper({}, fakeBackend({ results: [MiB], exitAfterCalls: 3 }).backend).killAndReap(await victim(t))
  t.match(exiting, { stopReason: 'exited', exited: true, calls: 3, bytesReaped: 3 * MiB })
  const dead = await new Reaper({}, fakeBackend({ kill: ESRCH }).backend).killAndReap(await victim(t))
  t.match(dead, { stopReason: 'exited', exited: true, calls: 0 })
})

t.test('errors that mean a bug or a broken setup are thrown', async (t) => {
  await t.rejects(new Reaper({}, fakeBackend({ kill: EPERM }).backend).killAndReap(await victim(t)), {
    code: 'EPERM',
    syscall: 'pidfd_send_signal',
  })
  await t.rejects(new Reaper({}, fakeBackend({ results: [EBADF] }).backend).killAndReap(await victim(t)), {
    code: 'EBADF',
    syscall: 'try_reap_dying_process',
  })
  await t.rejects(new Reaper({}, fakeBackend({ results: [ENOSYS] }).backend).killAndReap(await victim(t)), {
    code: 'ERR_PIDFD_REAP_UNAVAILABLE',
  })
  await t.rejects(
    new Reaper({}, fakeBackend({ mechanism: 'process_mrelease', results: [ENOSYS] }).backend).killAndReap(await victim(t)),
    { code: 'ENOSYS', syscall: 'process_mrelease' },
  )
  await t.rejects(new Reaper({}, fakeBackend({ poll: EBADF }).backend).killAndReap(await victim(t)), {
    code: 'EBADF',
    syscall: 'poll',
  })
})

t.test('no reaping syscall at all', async (t) => {
  const report = await new Reaper({}, fakeBackend({ mechanism: 'none' }).backend).killAndReap(await victim(t))
  t.match(report, { mechanism: 'none', stopReason: 'unsupported', calls: 0, bytesReaped: 0 })
})

t.test('abort after the kill stops between calls', async (t) => {
  const controller = new AbortController()
  const { backend } = fakeBackend({ results: [MiB] })
  const reaper = new Reaper({ signal: controller.signal }, backend)
  reaper.on('progress', (p) => p.calls === 3 && controller.abort())
  const report = await reaper.killAndReap(await victim(t))
  t.match(report, { stopReason: 'aborted', calls: 3, bytesReaped: 3 * MiB })
})

t.test('process_mrelease: RSS drop, EAGAIN retry, unreadable statm', async (t) => {
  const measured = fakeBackend({ mechanism: 'process_mrelease', results: [EAGAIN, 0], rss: [300 * MiB, 10 * MiB] })
  const report = await new Reaper({}, measured.backend).killAndReap(await victim(t))
  t.match(report, { mechanism: 'process_mrelease', stopReason: 'done', calls: 2, busyRetries: 1, bytesReaped: 290 * MiB })
  // statm unreadable afterwards: the process is gone with all of its RSS.
  const vanished = fakeBackend({ mechanism: 'process_mrelease', results: [0], rss: [300 * MiB, null] })
  t.equal((await new Reaper({}, vanished.backend).killAndReap(await victim(t))).bytesReaped, 300 * MiB)
  // Exited right after the call: everything it had is gone.
  const exited = fakeBackend({ mechanism: 'process_mrelease', results: [0], rss: [64 * MiB, 64 * MiB], exitAfterCalls: 1 })
  t.match(await new Reaper({}, exited.backend).killAndReap(await victim(t)), { bytesReaped: 64 * MiB, exited: true })
  // statm unreadable before: nothing can be attributed.
  const unknown = fakeBackend({ mechanism: 'process_mrelease', results: [0], rss: [null] })
  t.equal((await new Reaper({}, unknown.backend).killAndReap(await victim(t))).bytesReaped, 0)
  // Not dying yet right after the kill (EINVAL), then reaped.
  const early = fakeBackend({ mechanism: 'process_mrelease', results: [EINVAL, 0], rss: [MiB, 0] })
  t.match(await new Reaper({}, early.backend).killAndReap(await victim(t)), { stopReason: 'done', calls: 2, bytesReaped: MiB })
  // A shared mm (EPERM) is refused at once.
  const shared = fakeBackend({ mechanism: 'process_mrelease', results: [EPERM], rss: [MiB] })
  t.match(await new Reaper({}, shared.backend).killAndReap(await victim(t)), { stopReason: 'refused', mechanism: 'none' })
})

t.test('the event loop stays responsive during a long reap', async (t) => {
  // Counted in event-loop turns, not timer ticks per millisecond, so that a
  // loaded machine cannot fail it: a reaper that held the loop between its
  // calls would let (almost) no turn run.
  const { backend } = fakeBackend({ results: [...Array(300).fill(64 * 1024), 0], delayMs: 1 })
  let turns = 0
  let running = true
  const turn = (): void => {
    turns++
    if (running) setImmediate(turn)
  }
  setImmediate(turn)
  const report = await new Reaper({}, backend).killAndReap(await victim(t))
  running = false
  t.equal(report.calls, 301)
  t.ok(turns >= report.calls, `${turns} event-loop turns during ${report.calls} calls`)
})
