// The PSI trigger watcher on this machine's kernel: arguments, errors shaped
// like Node's, the fd and the trigger's life, real events from a group the
// test puts under memory pressure (skipped with the reason where that cannot
// be made), the async iterator, a removed cgroup, and workers.
import t from 'tap'
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import * as api from '../../src/index'
import { parsePressure, pathError, pressurePath, readPressure, watchPressure, watchWith, type PressureEvent } from '../../src/psi'
import { cgroupUnavailable, makeCgroup, pressureUnavailable, startThrasher } from '../fixtures/pressure'

const SYSTEM = '/proc/pressure/memory'
const noPsi = existsSync(SYSTEM) ? false : `${SYSTEM} is missing: the kernel has no PSI (CONFIG_PSI, psi=1)`
// Without CAP_SYS_RESOURCE (bit 24 of CapEff) the kernel takes only windows of whole 2 s.
const privileged = (BigInt(`0x${/^CapEff:\s+([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]}`) >> 24n) & 1n
const WINDOW = 2_000_000
/**
 * Waits (up to 2 s) until at most `left` fds of this process are open on
 * path, and returns how many are: a watcher's fd goes in its handle's close
 * callback, on its thread's next loop turn.
 */
async function fdsClosed(path: string, left = 0): Promise<number> {
  for (let i = 0; i < 100 && openFdsTo(path) > left; i++) await new Promise((resolve) => setTimeout(resolve, 20))
  return openFdsTo(path)
}
const openFdsTo = (path: string): number =>
  readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === path
    } catch {
      return false
    }
  }).length

t.test('exported from the package', async (t) => {
  t.equal(api.watchPressure, watchPressure)
  t.equal(typeof api.PressureWatcher, 'function')
  t.equal(api.readPressure, readPressure)
  t.equal(api.pressurePath, pressurePath)
})

t.test('arguments are checked before anything is opened', async (t) => {
  const ok = { stallUs: 1000, windowUs: WINDOW }
  const cases: [unknown, { code: string; message?: RegExp } | { message: string }][] = [
    [undefined, { code: 'ERR_INVALID_ARG_TYPE', message: /"options"/ }],
    [null, { code: 'ERR_INVALID_ARG_TYPE' }],
    [{ ...ok, resource: 'disk' }, { code: 'ERR_INVALID_ARG_VALUE', message: /options\.resource/ }],
    [{ ...ok, kind: 'most' }, { code: 'ERR_INVALID_ARG_VALUE', message: /options\.kind/ }],
    [{ stallUs: 1000 }, { code: 'ERR_INVALID_ARG_TYPE', message: /options\.windowUs/ }],
    [{ ...ok, windowUs: 499_999 }, { code: 'ERR_OUT_OF_RANGE', message: /options\.windowUs.*>= 500000 && <= 10000000/ }],
    [{ ...ok, windowUs: 10_000_001 }, { code: 'ERR_OUT_OF_RANGE' }],
    [{ ...ok, windowUs: 1e6 + 0.5 }, { code: 'ERR_OUT_OF_RANGE', message: /an integer/ }],
    [{ ...ok, stallUs: 0 }, { code: 'ERR_OUT_OF_RANGE', message: /options\.stallUs/ }],
    [{ ...ok, stallUs: WINDOW + 1 }, { code: 'ERR_OUT_OF_RANGE', message: /<= 2000000/ }],
    [{ ...ok, stallUs: '1ms' }, { code: 'ERR_INVALID_ARG_TYPE' }],
    [{ ...ok, cgroup: 7 }, { code: 'ERR_INVALID_ARG_TYPE', message: /options\.cgroup/ }],
    [{ ...ok, cgroup: '' }, { code: 'ERR_INVALID_ARG_VALUE' }],
    [{ ...ok, cgroup: 'a\0b' }, { code: 'ERR_INVALID_ARG_VALUE' }],
    [{ ...ok, signal: {} }, { code: 'ERR_INVALID_ARG_TYPE', message: /options\.signal/ }],
  ]
  for (const [options, error] of cases) t.throws(() => watchPressure(options as never), error, JSON.stringify(options))
  t.throws(() => watchPressure(ok, 'nope' as never), { code: 'ERR_INVALID_ARG_TYPE', message: /"listener"/ })
  t.throws(() => watchPressure({ ...ok, signal: AbortSignal.abort(new Error('stop')) }), { message: 'stop' }, 'an aborted signal')
  t.equal(openFdsTo(SYSTEM), 0, 'nothing was opened')
})

t.test('pressure files: their paths and their text', async (t) => {
  t.equal(pressurePath(), SYSTEM)
  t.equal(pressurePath('io'), '/proc/pressure/io')
  t.equal(pressurePath('cpu', '/sys/fs/cgroup/x'), '/sys/fs/cgroup/x/cpu.pressure')
  t.throws(() => pressurePath('gpu' as never), { code: 'ERR_INVALID_ARG_VALUE' })
  const text = 'some avg10=1.50 avg60=0.25 avg300=0.00 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n'
  t.same(parsePressure(text), {
    some: { avg10: 1.5, avg60: 0.25, avg300: 0, total: 12345 },
    full: { avg10: 0, avg60: 0, avg300: 0, total: 7 },
  })
  t.same(parsePressure(text.split('\n')[0]).full, null, 'old kernels have no full line for cpu')
  t.throws(() => parsePressure('nonsense'), { code: 'ERR_INVALID_ARG_VALUE' })
  t.same(pathError(-2, 'open', '/x'), Object.assign(new Error("ENOENT: no such file or directory, open '/x'"), { errno: -2, code: 'ENOENT', syscall: 'open', path: '/x' }))
})

t.test('the system file: armed on an fd of its own, closed once', { skip: noPsi }, async (t) => {
  t.match(readPressure(), { some: { total: Number }, full: { total: Number } })
  const watcher = watchPressure({ stallUs: 150_000, windowUs: WINDOW })
  t.match(watcher, { path: SYSTEM, resource: 'memory', kind: 'some', stallUs: 150_000, windowUs: WINDOW, closed: false })
  t.equal(openFdsTo(SYSTEM), 1, 'one fd on the pressure file')
  t.equal(watcher.unref(), watcher)
  t.equal(watcher.ref(), watcher)
  let closes = 0
  watcher.on('close', () => closes++)
  watcher.close()
  watcher.close()
  t.equal(closes, 1, "'close' once")
  t.equal(watcher.closed, true)
  t.equal(watcher.unref(), watcher, 'unref after close is harmless')
  t.equal(watcher.ref(), watcher)
  t.equal(await fdsClosed(SYSTEM), 0, 'its fd is closed')
  {
    using disposable = watchPressure({ kind: 'full', stallUs: 500_000, windowUs: WINDOW })
    t.equal(disposable.kind, 'full')
  }
  t.equal(await fdsClosed(SYSTEM), 0, 'a disposed watcher is closed')
})

t.test('errors carry code, negative errno, syscall and path', { skip: noPsi }, async (t) => {
  t.throws(() => watchPressure({ stallUs: 1000, windowUs: WINDOW, cgroup: '/nonexistent' }), {
    code: 'ENOENT',
    errno: -2,
    syscall: 'open',
    path: '/nonexistent/memory.pressure',
    message: "ENOENT: no such file or directory, open '/nonexistent/memory.pressure'",
  })
  // A window the kernel refuses without CAP_SYS_RESOURCE (only whole 2 s then).
  const odd = { stallUs: 100_000, windowUs: 1_500_000 }
  if (privileged) {
    watchPressure(odd).close()
    t.pass('a 1.5 s window is taken with CAP_SYS_RESOURCE')
  } else {
    t.throws(() => watchPressure(odd), { code: 'EINVAL', errno: -22, syscall: 'write', path: SYSTEM })
  }
  // (with CAP_SYS_RESOURCE the watcher above was closed: its fd goes on the next loop turn)
  t.equal(await fdsClosed(SYSTEM), 0, 'nothing stays open after a failure')
})

t.test('an abort signal closes the watcher', { skip: noPsi }, async (t) => {
  const controller = new AbortController()
  const watcher = watchPressure({ stallUs: 150_000, windowUs: WINDOW, signal: controller.signal })
  const closed = new Promise<void>((resolve) => watcher.once('close', () => resolve()))
  controller.abort()
  await closed
  t.equal(watcher.closed, true)
  // Closing first removes the abort listener: a later abort does nothing.
  const other = new AbortController()
  const second = watchPressure({ stallUs: 150_000, windowUs: WINDOW, signal: other.signal })
  second.close()
  other.abort()
  t.equal(second.listenerCount('close'), 0)
})

/** A stand-in for the native half: events on demand. */
function fakeNative() {
  const calls: string[] = []
  let callback: ((status: number) => void) | undefined
  const psi = {
    psiWatch: (path: string, trigger: string, cb: (status: number) => void) => {
      calls.push(`watch ${path} ${trigger}`)
      callback = cb
      return 7
    },
    psiClose: (id: number) => (calls.push(`close ${id}`), true),
    psiRef: (id: number, ref: boolean) => (calls.push(`ref ${id} ${ref}`), true),
  }
  return { psi, calls, fire: (status = 0) => callback!(status) }
}

t.test('events: one per kernel report, read from the file right after', async (t) => {
  const fake = fakeNative()
  const events: PressureEvent[] = []
  const watcher = watchWith(fake.psi, { resource: 'io', kind: 'full', stallUs: 5, windowUs: 500_000, cgroup: '/nonexistent' }, (e) => events.push(e))
  t.same(fake.calls, ['watch /nonexistent/io.pressure full 5 500000'], 'the trigger text')
  fake.fire()
  t.match(events, [{ path: '/nonexistent/io.pressure', resource: 'io', kind: 'full', stallUs: 5, windowUs: 500_000, pressure: null, time: Number }])
  watcher.unref().ref()
  watcher.close()
  t.same(fake.calls.slice(1), ['ref 7 false', 'ref 7 true', 'close 7'])
  // A native result that is not an id: the error names the call that failed.
  const failing = { ...fake.psi, psiWatch: () => ({ errno: -1, syscall: 'uv_poll_init' }) }
  t.throws(() => watchWith(failing, { stallUs: 1, windowUs: 500_000 }), { code: 'EPERM', syscall: 'uv_poll_init', path: SYSTEM })
})

t.test('a failed watch emits error, then close; the native watch is gone', async (t) => {
  const fake = fakeNative()
  const watcher = watchWith(fake.psi, { stallUs: 1, windowUs: 500_000 })
  const seen: string[] = []
  watcher.on('error', (error) => seen.push(`error ${(error as Error & { code: string }).code} ${(error as Error & { syscall: string }).syscall}`))
  watcher.on('close', () => seen.push('close'))
  fake.fire(-19)
  t.same(seen, ['error ENODEV poll', 'close'])
  t.equal(watcher.closed, true)
  watcher.close()
  t.notOk(fake.calls.includes('close 7'), 'not closed again: the native side ended it')
})

t.test('async iteration: queued events, errors, close and break', async (t) => {
  const fake = fakeNative()
  const watcher = watchWith(fake.psi, { stallUs: 1, windowUs: 500_000 })
  const iterator = watcher[Symbol.asyncIterator]()
  t.equal(iterator[Symbol.asyncIterator](), iterator)
  fake.fire()
  fake.fire()
  t.match(await iterator.next(), { done: false, value: { kind: 'some' } }, 'queued before next()')
  t.match(await iterator.next(), { done: false })
  const waiting = iterator.next()
  fake.fire()
  t.match(await waiting, { done: false }, 'delivered to a waiting next()')
  const failing = iterator.next()
  fake.fire(-19)
  await t.rejects(failing, { code: 'ENODEV' }, 'a waiting next() gets the error')
  t.same(await iterator.next(), { value: undefined, done: true }, 'then it is over')

  // An error while nobody waits is thrown by the next next(), then it ends.
  const second = fakeNative()
  const other = watchWith(second.psi, { stallUs: 1, windowUs: 500_000 })
  const it2 = other[Symbol.asyncIterator]()
  second.fire(-19)
  await t.rejects(it2.next(), { code: 'ENODEV' })
  t.same(await it2.next(), { value: undefined, done: true })
  t.same(await other[Symbol.asyncIterator]().next(), { value: undefined, done: true }, 'a closed watcher iterates nothing')

  // close() ends a waiting next(); break (return) closes the watcher.
  const third = fakeNative()
  const closing = watchWith(third.psi, { stallUs: 1, windowUs: 500_000 })
  const it3 = closing[Symbol.asyncIterator]()
  const pending = it3.next()
  closing.close()
  t.same(await pending, { value: undefined, done: true })
  const fourth = fakeNative()
  const broken = watchWith(fourth.psi, { stallUs: 1, windowUs: 500_000 })
  let seen = 0
  setImmediate(() => fourth.fire())
  for await (const event of broken) {
    t.equal(event.stallUs, 1)
    seen++
    break
  }
  t.equal(seen, 1)
  t.equal(broken.closed, true, 'leaving the loop closed it')
  t.same(await broken[Symbol.asyncIterator]().return!(), { value: undefined, done: true })
})

t.test('real memory pressure in a cgroup of the test fires the trigger', { skip: pressureUnavailable() }, async (t) => {
  const thrasher = await startThrasher()
  t.teardown(() => thrasher.cleanup())
  const started = Date.now()
  // 1 ms of stall in 2 s: a window any caller may use.
  const watcher = watchPressure({ cgroup: thrasher.group.dir, stallUs: 1000, windowUs: WINDOW })
  t.teardown(() => watcher.close())
  const system = watchPressure({ stallUs: 1000, windowUs: WINDOW })
  t.teardown(() => system.close())
  const systemEvent = new Promise<PressureEvent>((resolve) => system.once('pressure', resolve))
  const timeout = setTimeout(() => watcher.close(), 60_000)
  const events: PressureEvent[] = []
  for await (const event of watcher) {
    events.push(event)
    if (events.length === 2) break
  }
  clearTimeout(timeout)
  t.equal(events.length, 2, `two events in ${Date.now() - started} ms`)
  t.match(events[0], { path: join(thrasher.group.dir, 'memory.pressure'), kind: 'some', pressure: { some: { total: Number } } })
  t.ok(events[0].pressure!.some.total > 0, `the group stalled ${events[0].pressure!.some.total} µs`)
  t.ok(events[1].time - events[0].time >= 1000, 'at most one event per window (less 1 s of timer slack)')
  t.match(await systemEvent, { path: SYSTEM }, 'the system file sees it too')
})

t.test('a removed cgroup ends the watch with an error', { skip: cgroupUnavailable() }, async (t) => {
  const group = makeCgroup()
  t.teardown(() => group.cleanup())
  const watcher = watchPressure({ cgroup: group.dir, stallUs: 1000, windowUs: WINDOW })
  const iterator = watcher[Symbol.asyncIterator]()
  const next = iterator.next()
  const closed = new Promise<void>((resolve) => watcher.once('close', () => resolve()))
  await group.cleanup()
  await t.rejects(next, { code: 'ENODEV', errno: -19, syscall: 'poll', path: join(group.dir, 'memory.pressure') })
  await closed
  t.equal(watcher.closed, true)
  t.equal(await fdsClosed(join(group.dir, 'memory.pressure')), 0, 'its fd is closed')
})

t.test('workers: each has its own watchers, and a worker that ends leaks none', { skip: noPsi }, async (t) => {
  // Each worker arms 3 watchers and says so, then on 'go' closes them (or
  // not) and says 'ready'; it is then terminated.
  const code = `
    const { parentPort, workerData } = require('node:worker_threads')
    const { watchPressure } = require(${JSON.stringify(join(__dirname, '..', '..', 'dist', 'psi.js'))})
    const watchers = []
    for (let i = 0; i < 3; i++) watchers.push(watchPressure({ stallUs: 150000 + i, windowUs: 2000000 }))
    parentPort.postMessage('armed')
    parentPort.once('message', () => {
      if (workerData.close) watchers.forEach((w) => w.close())
      parentPort.postMessage('ready')
    })
  `
  const before = openFdsTo(SYSTEM)
  for (let i = 0; i < 10; i++) {
    const worker = new Worker(code, { eval: true, workerData: { close: i % 3 === 0 }, execArgv: [] })
    const message = (): Promise<unknown> => new Promise((resolve, reject) => worker.once('message', resolve).once('error', reject))
    t.equal(await message(), 'armed')
    t.equal(openFdsTo(SYSTEM), before + 3, `worker ${i} armed its 3 watchers, each on an fd of its own`)
    worker.postMessage('go')
    t.equal(await message(), 'ready')
    const exit = new Promise((resolve) => worker.once('exit', resolve))
    await worker.terminate()
    await exit
    t.equal(await fdsClosed(SYSTEM, before), before, `worker ${i} left none of its fds open as it ended`)
  }
})

t.test('an uncaught error: no error listener, no iterator', async (t) => {
  const fake = fakeNative()
  watchWith(fake.psi, { stallUs: 1, windowUs: 500_000 })
  t.throws(() => fake.fire(-19), { code: 'ENODEV' }, "thrown as EventEmitter throws an unhandled 'error'")
  // An unref'd watcher does not hold the process: this file ends with it open.
  if (!noPsi) watchPressure({ stallUs: 150_000, windowUs: WINDOW }).unref()
})
