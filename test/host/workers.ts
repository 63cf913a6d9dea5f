// worker_threads: the addon is context-aware, and a worker that exits or is
// terminated mid-operation leaves no uv handle, fd or crash behind.
import t from 'tap'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import { Pidfd, type ReapReport } from '../../src/index'
import { killQuietly, startHog, startSleeper } from '../../victims'
import { frozenUnavailable, frozenVictim } from '../fixtures/stuck-victims'
import { kernelFeatures } from '../fixtures/kernel-features'

const kernel = kernelFeatures()
const WORKER = join(__dirname, '..', 'fixtures', 'worker.cjs')
const openFds = (): number => readdirSync('/proc/self/fd').length

function startWorker(workerData: object): { worker: Worker; firstMessage: Promise<unknown>; exit: Promise<number> } {
  // No execArgv: the fixture is plain JS loading dist/.
  const worker = new Worker(WORKER, { workerData, execArgv: [] })
  const firstMessage = new Promise((resolve, reject) => {
    worker.once('message', resolve)
    worker.once('error', reject)
  })
  const exit = new Promise<number>((resolve) => worker.once('exit', resolve))
  return { worker, firstMessage, exit }
}

t.test('several workers kill and reap at the same time', async (t) => {
  const hogs = await Promise.all([1, 2, 3, 4].map(() => startHog(64)))
  const workers = hogs.map((hog) => startWorker({ mode: 'reap', pid: hog.pid }))
  const reports = (await Promise.all(workers.map((w) => w.firstMessage))) as ReapReport[]
  reports.forEach((report, i) => {
    t.equal(report.pid, hogs[i].pid)
    t.equal(report.mechanism, kernel.tryReapNr ? 'try_reap' : kernel.processMrelease ? 'process_mrelease' : 'none')
    t.ok(report.bytesReaped > 0 || report.exited)
  })
  t.same(await Promise.all(workers.map((w) => w.exit)), [0, 0, 0, 0])
  await Promise.all(hogs.map((hog) => hog.gone))
})

t.test('50 workers terminated mid-operation leak nothing', async (t) => {
  const sleeper = startSleeper()
  t.teardown(() => killQuietly(sleeper))
  // Warm up: the first worker loads the addon and opens libuv's own fds.
  const warm = startWorker({ mode: 'busy', pid: sleeper.pid })
  await warm.firstMessage
  await warm.worker.terminate()
  const baseline = openFds()
  for (let i = 0; i < 50; i++) {
    const { worker, firstMessage, exit } = startWorker({ mode: 'busy', pid: sleeper.pid })
    await firstMessage
    await worker.terminate()
    t.equal(await exit, 1, `worker ${i} terminated`)
  }
  t.ok(openFds() <= baseline + 2, `fds: ${openFds()} now, ${baseline} before`)
  // This thread still works, and the victim was never harmed.
  using pidfd = Pidfd.open(sleeper.pid)
  t.equal(pidfd.hasExited(), false)
  t.equal(sleeper.child.exitCode, null)
})

t.test('workers terminated while their reaping job runs leak nothing', { skip: frozenUnavailable() }, async (t) => {
  // A frozen victim survives every kill; the jobs loop on scripted results
  // (one calling, one backing off) until their worker goes away.
  const frozen = await frozenVictim(0)
  t.teardown(() => frozen.cleanup())
  const scripts = [
    { results: [4096], delayMs: 1, processMrelease: false },
    { results: [-16], processMrelease: false },
  ]
  const baseline = openFds()
  for (let i = 0; i < 20; i++) {
    const { worker, firstMessage, exit } = startWorker({ mode: 'reap-pending', pid: frozen.victim.pid, script: scripts[i % 2] })
    t.equal(await firstMessage, 'pending')
    await new Promise((resolve) => setTimeout(resolve, 20))
    await worker.terminate()
    t.equal(await exit, 1, `worker ${i} terminated`)
  }
  // Each job's thread stops once its worker's teardown finalizes the job's
  // thread-safe function, and closes its pidfd dup and eventfd.
  for (let i = 0; i < 200 && openFds() > baseline + 2; i++) await new Promise((resolve) => setTimeout(resolve, 25))
  t.ok(openFds() <= baseline + 2, `fds: ${openFds()} now, ${baseline} before`)
})
