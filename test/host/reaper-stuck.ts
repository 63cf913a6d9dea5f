// process_mrelease blocked for real: victims whose mmap_lock stays held after
// SIGKILL (test/fixtures/mmap-lock.c). The deadline and aborts must still
// settle killAndReap on time, the blocked calls must not take the libuv pool
// from fs, dns or crypto, and they must finish cleanly in the background,
// even after the worker that started them is gone.
import t from 'tap'
import { pbkdf2 } from 'node:crypto'
import { readdirSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import { killAndReap, Pidfd, Reaper } from '../../src/index'
import { kernelFeatures } from '../fixtures/kernel-features'
import { MmapLockStall, inMrelease, mmapLockUnavailable, threadsInMrelease } from '../fixtures/stuck-victims'

const kernel = kernelFeatures()
const skip =
  kernel.tryReapNr || !kernel.processMrelease
    ? 'killAndReap does not use process_mrelease on this kernel'
    : mmapLockUnavailable()

const openFds = (): number => readdirSync('/proc/self/fd').length
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function settlesWithin<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Waits until this process's fd count is back to `baseline` (the jobs' dups closed). */
async function fdsBackTo(baseline: number): Promise<number> {
  for (let i = 0; i < 200 && openFds() > baseline; i++) await sleep(25)
  return openFds()
}

t.test('the deadline and aborts settle while process_mrelease is blocked', { skip }, async (t) => {
  const stall = await MmapLockStall.start(2)
  t.teardown(() => stall.release())
  const baseline = openFds()
  const first = await stall.victim(32)
  const report = await killAndReap(first.pid, { deadlineMs: 300 })
  t.match(report, { mechanism: 'process_mrelease', stopReason: 'deadline', calls: 1, bytesReaped: 0, exited: false })
  t.ok(report.elapsedMs >= 300 && report.elapsedMs < 2000, `settled after ${report.elapsedMs.toFixed(0)} ms`)
  using pidfd = Pidfd.open(first.pid)
  t.equal(pidfd.hasExited(), false, 'the victim is still stuck')

  const second = await stall.victim(32)
  const controller = new AbortController()
  // Abort once the call is in the kernel, seen there, not guessed by a timer.
  const inside = threadsInMrelease()
  const abortedPromise = new Reaper({}).killAndReap(second.pid, { signal: controller.signal })
  await inMrelease(inside + 1)
  controller.abort()
  const aborted = await abortedPromise
  t.match(aborted, { stopReason: 'aborted', calls: 1, exited: false })

  await stall.release()
  t.ok((await fdsBackTo(baseline)) <= baseline, 'the blocked calls finished and closed their fds')
})

t.test('eight stuck kills leave fs and crypto on the thread pool free', { skip }, async (t) => {
  const stall = await MmapLockStall.start(8)
  t.teardown(() => stall.release())
  const baseline = openFds()
  const victims = []
  for (let i = 0; i < 8; i++) victims.push(await stall.victim(16))
  const controllers = victims.map(() => new AbortController())
  const reaper = new Reaper({})
  const inside = threadsInMrelease()
  const kills = victims.map((victim, i) => reaper.killAndReap(victim.pid, { signal: controllers[i].signal }))
  await inMrelease(inside + 8) // every job is inside process_mrelease now

  const latencies: number[] = []
  for (let i = 0; i < 20; i++) {
    const started = performance.now()
    await settlesWithin(readFile(__filename), 2000, 'fs.readFile')
    latencies.push(performance.now() - started)
  }
  // Four at once: the whole default pool.
  await settlesWithin(
    Promise.all([1, 2, 3, 4].map(() => new Promise((resolve, reject) => pbkdf2('x', 'y', 1000, 32, 'sha256', (e, k) => (e ? reject(e) : resolve(k)))))),
    5000,
    'crypto.pbkdf2',
  )
  latencies.sort((a, b) => a - b)
  t.comment(`fs.readFile with 8 kills stuck: median ${latencies[10].toFixed(2)} ms, max ${latencies[19].toFixed(2)} ms`)
  t.pass('fs.readFile and crypto.pbkdf2 completed while eight process_mrelease calls were blocked')

  for (const victim of victims) {
    using pidfd = Pidfd.open(victim.pid)
    t.equal(pidfd.hasExited(), false, 'still stuck')
  }
  controllers.forEach((controller) => controller.abort())
  const reports = await settlesWithin(Promise.all(kills), 2000, 'the aborted kills')
  t.same(new Set(reports.map((r) => `${r.mechanism} ${r.stopReason} ${r.calls}`)), new Set(['process_mrelease aborted 1']))

  await stall.release()
  t.ok((await fdsBackTo(baseline)) <= baseline, 'all eight calls finished in the background and closed their fds')
})

t.test('a worker that exits while its job is blocked leaves nothing behind', { skip }, async (t) => {
  const stall = await MmapLockStall.start(1)
  t.teardown(() => stall.release())
  const victim = await stall.victim(16)
  const baseline = openFds()
  const worker = new Worker(join(__dirname, '..', 'fixtures', 'worker.cjs'), {
    workerData: { mode: 'reap-pending', pid: victim.pid },
    execArgv: [],
  })
  const inside = threadsInMrelease()
  t.equal(await new Promise((resolve) => worker.once('message', resolve)), 'pending')
  await inMrelease(inside + 1) // the worker's job is in the kernel
  t.equal(await worker.terminate(), 1, 'terminated while process_mrelease was blocked')
  // The job's thread outlives the worker; let the call return now.
  await stall.release()
  // A worker's first start may leave a couple of libuv's own fds open for good.
  t.ok((await fdsBackTo(baseline + 2)) <= baseline + 2, 'its fds were closed once the call returned')
  t.equal(victim.child.signalCode, 'SIGKILL')
})

t.test('a progress listener that throws on every event cannot leave the call pending', { skip }, async (t) => {
  const stall = await MmapLockStall.start(2)
  t.teardown(() => stall.release())
  const uncaught: unknown[] = []
  const onUncaught = (error: unknown): void => {
    uncaught.push(error)
  }
  process.on('uncaughtException', onUncaught)
  t.teardown(() => process.off('uncaughtException', onUncaught))
  const thrown = new Error('listener failed')
  const throwing = (): never => {
    throw thrown
  }

  // The deadline's timer settles the blocked call, with the final counts for listeners.
  const first = await stall.victim(16)
  const byDeadline = new Reaper({ deadlineMs: 200, onProgress: throwing }).killAndReap(first.pid)
  await t.rejects(settlesWithin(byDeadline, 5000, 'killAndReap at the deadline'), thrown, 'the deadline path rejects with the listener\'s error')

  // So does an abort listener.
  const second = await stall.victim(16)
  const controller = new AbortController()
  const reaper = new Reaper({ signal: controller.signal })
  reaper.on('progress', throwing)
  const inside = threadsInMrelease()
  const byAbort = reaper.killAndReap(second.pid)
  await inMrelease(inside + 1)
  controller.abort()
  await t.rejects(settlesWithin(byAbort, 5000, 'killAndReap after the abort'), thrown, 'the abort path rejects with the listener\'s error')
  t.same(uncaught, [], 'no uncaught exception')
})
