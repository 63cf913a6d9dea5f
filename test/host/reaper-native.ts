// Below killAndReap: the public processMreleaseAsync also blocks on a thread
// of its own, never on the libuv pool.
import t from 'tap'
import { readdirSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { processMreleaseAsync, Pidfd } from '../../src/index'
import { kernelFeatures } from '../fixtures/kernel-features'
import { MmapLockStall, mmapLockUnavailable } from '../fixtures/stuck-victims'

const kernel = kernelFeatures()
const openFds = (): number => readdirSync('/proc/self/fd').length
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

t.test('eight blocked processMreleaseAsync calls leave the thread pool to fs', { skip: kernel.processMrelease ? mmapLockUnavailable() : 'no process_mrelease' }, async (t) => {
  const stall = await MmapLockStall.start(8)
  t.teardown(() => stall.release())
  const pidfds: Pidfd[] = []
  for (let i = 0; i < 8; i++) {
    const pidfd = Pidfd.open((await stall.victim(8)).pid)
    t.teardown(() => pidfd.close())
    pidfd.sendSignal('SIGKILL')
    pidfds.push(pidfd)
  }
  const baseline = openFds()
  let settled = 0
  const calls = pidfds.map((pidfd) => processMreleaseAsync(pidfd.fd).finally(() => settled++))
  await sleep(200)
  const started = performance.now()
  const read = await Promise.race([readFile(__filename).then(() => 'read'), sleep(2000).then(() => 'stalled')])
  t.equal(read, 'read', `fs.readFile ${read} after ${(performance.now() - started).toFixed(1)} ms`)
  t.equal(settled, 0, 'all eight calls are still blocked')
  await stall.release()
  await Promise.all(calls)
  t.equal(settled, 8, 'each resolved once its victim let go of the lock')
  for (let i = 0; i < 100 && openFds() > baseline; i++) await sleep(20)
  t.ok(openFds() <= baseline, 'their fd dups are closed')
})
