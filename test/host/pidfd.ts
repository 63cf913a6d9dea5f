// The Pidfd class on real processes, expecting what the running kernel offers.
import t from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { closeSync, constants as fsConstants, existsSync, openSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { Pidfd, ERR_PIDFD_CLOSED, constants } from '../../src/index'
import { native } from '../../src/binding'
import { killQuietly, startSleeper } from '../../victims'
import { diesOf } from '../fixtures/dies-of'
import { kernelFeatures, mreleaseCode } from '../fixtures/kernel-features'
import { newFds, openFds, withFdTableFull } from '../fixtures/fds'

const kernel = kernelFeatures()

const CLOSED = { code: ERR_PIDFD_CLOSED, message: 'The pidfd is closed' }
const fdIsOpen = (fd: number): boolean => existsSync(`/proc/self/fd/${fd}`)
/** The open file's status flags (O_NONBLOCK, ...), as the kernel reports them. */
const fileFlags = (fd: number): number => parseInt(/^flags:\s+(\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1], 8)
const nonblocking = (fd: number): boolean => (fileFlags(fd) & fsConstants.O_NONBLOCK) !== 0
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

t.test('open, signal, wait for exit', async (t) => {
  // cat answers each line: proof that it ran, and that the event loop
  // polled, while the wait was armed.
  const cat = spawn('cat', [], { stdio: ['pipe', 'pipe', 'inherit'] })
  const gone = new Promise<void>((resolve) => cat.once('exit', () => resolve()))
  await new Promise((resolve, reject) => cat.once('spawn', resolve).once('error', reject))
  const pidfd = Pidfd.open(cat.pid!)
  t.teardown(() => pidfd.close())
  t.equal(pidfd.pid, cat.pid)
  t.ok(fdIsOpen(pidfd.fd))
  t.equal(pidfd.closed, false)
  t.equal(pidfd.hasExited(), false)
  const exited = pidfd.exited()
  t.equal(pidfd.exited(), exited, 'one shared wait')
  let settled = false
  void exited.then(() => (settled = true))
  const lines = createInterface({ input: cat.stdout! })[Symbol.asyncIterator]()
  for (let i = 0; i < 3; i++) {
    cat.stdin!.write(`ping ${i}\n`)
    t.same(await lines.next(), { value: `ping ${i}`, done: false })
    t.equal(settled, false, `not settled while it runs (answer ${i})`)
  }
  pidfd.sendSignal('SIGKILL')
  await exited
  t.equal(pidfd.hasExited(), true)
  await pidfd.exited() // already exited: resolves at once
  await gone
  t.equal(cat.signalCode, 'SIGKILL')
})

t.test('numbers work as signals and the reaping calls reach the kernel', async (t) => {
  const sleeper = startSleeper()
  t.teardown(() => killQuietly(sleeper))
  using pidfd = Pidfd.open(sleeper.pid)
  pidfd.sendSignal(0)
  // Errors name the process, as fs errors name the path.
  const pid = sleeper.pid
  const notDying = { code: mreleaseCode(kernel, 'EINVAL'), syscall: 'process_mrelease', pid }
  t.throws(() => pidfd.mrelease(), { ...notDying, message: new RegExp(`, process_mrelease \\(pid ${pid}\\)$`) }, 'not dying')
  await t.rejects(pidfd.mreleaseAsync(), notDying)
  // Without the patch the call is never made; with it, a live process is not dying.
  const tryReapCode = kernel.tryReapNr === null ? 'ERR_PIDFD_REAP_UNAVAILABLE' : 'EPERM'
  t.throws(() => pidfd.tryReap(4096), { code: tryReapCode, syscall: 'try_reap_dying_process', pid })
  await t.rejects(pidfd.tryReapAsync(4096n, 0), { code: tryReapCode, pid })
  t.throws(() => pidfd.tryReap(-1), { code: 'ERR_OUT_OF_RANGE' })
  await t.rejects(pidfd.tryReapAsync(4096, -1), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => pidfd.sendSignal('SIGNOPE'), { code: 'ERR_INVALID_ARG_VALUE' })
  pidfd.sendSignal(9)
  await pidfd.exited()
  // Killed and gone: the mm is released, process_mrelease says so.
  await sleeper.gone
  t.throws(() => pidfd.mrelease(), { code: mreleaseCode(kernel, 'ESRCH'), pid })
  t.throws(() => pidfd.sendSignal(9), { code: 'ESRCH', syscall: 'pidfd_send_signal', pid })
})

t.test('close: idempotent, dispose closes, use after close is a clear error', async (t) => {
  const sleeper = startSleeper()
  t.teardown(() => killQuietly(sleeper))
  let fd: number
  {
    using pidfd = Pidfd.open(sleeper.pid)
    fd = pidfd.fd
    t.ok(fdIsOpen(fd))
  }
  t.notOk(fdIsOpen(fd), 'closed on dispose')

  const pidfd = Pidfd.open(sleeper.pid)
  pidfd.close()
  pidfd.close()
  pidfd[Symbol.dispose]()
  t.equal(pidfd.closed, true)
  t.throws(() => pidfd.fd, CLOSED)
  t.throws(() => pidfd.sendSignal('SIGKILL'), CLOSED)
  t.throws(() => pidfd.tryReap(1), CLOSED)
  t.throws(() => pidfd.mrelease(), CLOSED)
  t.throws(() => pidfd.hasExited(), CLOSED)
  await t.rejects(pidfd.tryReapAsync(1), CLOSED)
  await t.rejects(pidfd.mreleaseAsync(), CLOSED)
  await t.rejects(pidfd.exited(), CLOSED)
  await t.rejects(pidfd.withFd(async () => 1), CLOSED)
  t.equal(await diesOf(sleeper), 'SIGTERM', 'nothing was signalled')
})

t.test('close while waiting rejects the wait and stops polling first', async (t) => {
  const sleeper = startSleeper()
  t.teardown(() => killQuietly(sleeper))
  const pidfd = Pidfd.open(sleeper.pid)
  const fd = pidfd.fd
  const before = openFds()
  const exited = pidfd.exited()
  const [watchFd] = newFds(before)
  pidfd.close()
  await t.rejects(exited, CLOSED)
  t.notOk(fdIsOpen(fd))
  t.notOk(fdIsOpen(watchFd), "the wait's own pidfd is closed too")
})

t.test("exited() never sets O_NONBLOCK on the user's fd", async (t) => {
  const sleeper = startSleeper()
  t.teardown(() => killQuietly(sleeper))
  using pidfd = Pidfd.open(sleeper.pid)
  t.equal(nonblocking(pidfd.fd), false, 'opened blocking')
  const before = openFds()
  const exited = pidfd.exited()
  const opened = newFds(before)
  t.equal(opened.length, 1, 'the wait polls a pidfd of its own')
  // libuv makes the fd it polls non-blocking: that is why it is not the user's.
  t.equal(nonblocking(opened[0]), true, "libuv set O_NONBLOCK on the wait's pidfd")
  t.equal(nonblocking(pidfd.fd), false, 'while waiting')
  pidfd.sendSignal('SIGKILL')
  await exited
  t.equal(nonblocking(pidfd.fd), false, 'after the wait')
  await nextTurn()
  t.notOk(fdIsOpen(opened[0]), "the wait's pidfd is closed once it is over")
  await sleeper.gone
})

const threadPidfds = kernel.threadPidfd || 'PIDFD_THREAD needs Linux >= 6.9'
t.test('a thread pidfd waits through a thread pidfd of its own', { skip: threadPidfds !== true && threadPidfds }, async (t) => {
  const sleeper = startSleeper()
  t.teardown(() => killQuietly(sleeper))
  using pidfd = Pidfd.open(sleeper.pid, constants.PIDFD_THREAD) // the main thread's tid is the pid
  t.equal(fileFlags(pidfd.fd) & constants.PIDFD_THREAD, constants.PIDFD_THREAD, 'PIDFD_THREAD is kept as O_EXCL')
  const before = openFds()
  const exited = pidfd.exited()
  const [watchFd] = newFds(before)
  t.equal(fileFlags(watchFd) & constants.PIDFD_THREAD, constants.PIDFD_THREAD, 'the wait opened a thread pidfd too')
  pidfd.sendSignal('SIGKILL')
  await exited
})

// A shell child that runs `sleep` in the background and reaps it as soon as it
// dies: a process of ours whose pid is released without Node's help.
async function startGrandchild(): Promise<{ pid: number; stop: () => Promise<void> }> {
  const shell = spawn('sh', ['-c', 'sleep 1000 & echo $!; wait'], { stdio: ['ignore', 'pipe', 'inherit'] })
  const shellGone = new Promise((resolve) => shell.once('exit', resolve))
  const { value: line } = await createInterface({ input: shell.stdout! })[Symbol.asyncIterator]().next()
  const pid = Number(line)
  // Signalled only through this pidfd: never a later process that reuses the pid.
  const pidfd = native.pidfdOpen(pid, 0)
  const stop = async (): Promise<void> => {
    native.pidfdSendSignal(pidfd, 9)
    native.closeFd(pidfd)
    await shellGone
  }
  return { pid, stop }
}

const sleepMs = (ms: number): void => void Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
function waitUntil(condition: () => boolean, what: string): void {
  for (let i = 0; i < 5000 && !condition(); i++) sleepMs(2)
  if (!condition()) throw new Error(`timed out waiting until ${what}`)
}

t.test('exited() resolves when the process exits while the wait is being set up', async (t) => {
  // The kernel outcomes are real; only their timing is arranged, by running
  // the exit inside the wait's own pidfd_open.
  let beforeOpen: (() => void) | undefined
  let afterOpen: (() => void) | undefined
  const { Pidfd: ArrangedPidfd } = t.mockRequire<typeof import('../../src/pidfd')>('../../src/pidfd', {
    '../../src/binding': {
      native: Object.create(native, {
        pidfdOpen: {
          value: (pid: number, flags: number) => {
            beforeOpen?.()
            const fd = native.pidfdOpen(pid, flags)
            afterOpen?.()
            beforeOpen = afterOpen = undefined
            return fd
          },
        },
      }),
    },
  })

  // Exited and reaped before the open: pidfd_open fails (ESRCH), and that is an exit.
  const grandchild = await startGrandchild()
  t.teardown(grandchild.stop)
  const reapedPid = grandchild.pid
  using reaped = ArrangedPidfd.open(reapedPid)
  beforeOpen = () => {
    reaped.sendSignal('SIGKILL')
    waitUntil(() => !existsSync(`/proc/${reapedPid}`), 'the shell reaped its child')
  }
  let before = openFds()
  await reaped.exited()
  t.same(newFds(before), [], 'no fd left behind')

  // Exited just after the open: the new pidfd is closed again.
  const sleeper = startSleeper()
  t.teardown(() => killQuietly(sleeper))
  using late = ArrangedPidfd.open(sleeper.pid)
  afterOpen = () => {
    late.sendSignal('SIGKILL')
    waitUntil(() => native.pollReadable(late.fd) === 1, 'the process exited')
  }
  before = openFds()
  await late.exited()
  t.same(newFds(before), [], 'no fd left behind')
  t.equal(beforeOpen, undefined, 'the arrangement ran')
})

t.test('exited() rejects when the wait cannot get a pidfd of its own', async (t) => {
  const sleeper = startSleeper()
  t.teardown(() => killQuietly(sleeper))
  using pidfd = Pidfd.open(sleeper.pid)
  const exited = withFdTableFull(() => pidfd.exited())
  await t.rejects(exited, { code: 'EMFILE', syscall: 'pidfd_open', pid: sleeper.pid })
  t.equal(await diesOf(sleeper), 'SIGTERM', 'nothing happened to the process')
})

t.test('exited() rejects, and closes its pidfd, when libuv refuses to poll', async (t) => {
  const sleeper = startSleeper()
  t.teardown(() => killQuietly(sleeper))
  using pidfd = Pidfd.open(sleeper.pid)
  // libuv refuses a second poll handle for an fd number it still watches
  // (EEXIST): leave a handle on a number that is then closed under it. The
  // next fd opened, the wait's own pidfd, gets that lowest free number.
  const stale = native.pidfdOpen(sleeper.pid, 0)
  const id = native.watchReadable(stale, () => {})
  t.ok(id > 0)
  // Closed behind the binding's back: its own closeFd would remove the handle.
  closeSync(stale)
  const before = openFds()
  const exited = pidfd.exited()
  // The failed wait's closeFd of that number also closed the stale handle,
  // before the event loop could run again (libuv aborts on a handle whose fd is gone).
  t.equal(native.unwatch(id), false, 'already gone')
  await t.rejects(exited, { code: 'EEXIST', syscall: 'uv_poll_init', pid: sleeper.pid })
  t.same(newFds(before), [], "the wait's pidfd was closed")
  t.equal(native.watchReadable(99999, () => {}), -9, 'bad fd')
  // A later wait works.
  pidfd.sendSignal('SIGKILL')
  await pidfd.exited()
})

t.test('a deferred close keeps the call\'s own result and error', async (t) => {
  const sleeper = startSleeper()
  t.teardown(() => killQuietly(sleeper))
  const warnings: Error[] = []
  const onWarning = (warning: Error): void => void warnings.push(warning)
  process.on('warning', onWarning)
  t.teardown(() => void process.off('warning', onWarning))
  // The fd is closed behind the object's back, so the deferred close fails (EBADF).
  const first = Pidfd.open(sleeper.pid)
  const value = await first.withFd(async (fd) => {
    first.close()
    closeSync(fd)
    return 42
  })
  t.equal(value, 42, 'the result, not the close error')
  const second = Pidfd.open(sleeper.pid)
  const failing = second.withFd(async (fd) => {
    second.close()
    closeSync(fd)
    throw new Error('the call failed')
  })
  await t.rejects(failing, { message: 'the call failed' }, 'the error, not the close error')
  await nextTurn() // warnings are emitted on the next tick
  const closeFailed = { code: 'EBADF', syscall: 'close', pid: sleeper.pid }
  t.match(warnings, [closeFailed, closeFailed], 'the close failures are warnings')
  // An immediate close has its caller to tell.
  const third = Pidfd.open(sleeper.pid)
  closeSync(third.fd)
  t.throws(() => third.close(), closeFailed)
  t.equal(third.closed, true)
})

t.test('close during an async call is deferred until the call settles', async (t) => {
  const sleeper = startSleeper()
  t.teardown(() => killQuietly(sleeper))
  const pidfd = Pidfd.open(sleeper.pid)
  const fd = pidfd.fd
  const pending = pidfd.mreleaseAsync()
  pidfd.close()
  t.ok(fdIsOpen(fd), 'still open while the thread pool uses it')
  await t.rejects(pending, { code: mreleaseCode(kernel, 'EINVAL') })
  t.notOk(fdIsOpen(fd), 'closed once the call settled')

  const second = Pidfd.open(sleeper.pid)
  const secondFd = second.fd
  const value = await second.withFd(async (inner) => {
    second.close()
    t.equal(inner, secondFd)
    t.ok(fdIsOpen(inner))
    return 42
  })
  t.equal(value, 42)
  t.notOk(fdIsOpen(secondFd))
  using third = Pidfd.open(sleeper.pid)
  await t.rejects(third.withFd(5 as never), { code: 'ERR_INVALID_ARG_TYPE' })
})

t.test('exited() rejects when polling fails', async (t) => {
  // libuv reports poll errors (EPOLLERR) that a pidfd never produces; this one
  // outcome is substituted.
  const { Pidfd: MockedPidfd } = t.mockRequire<typeof import('../../src/pidfd')>('../../src/pidfd', {
    '../../src/binding': {
      native: Object.create(native, {
        watchReadable: { value: (_fd: number, callback: (status: number) => void) => (setImmediate(() => callback(-9)), 1) },
      }),
    },
  })
  const sleeper = startSleeper()
  t.teardown(() => killQuietly(sleeper))
  using pidfd = MockedPidfd.open(sleeper.pid)
  await t.rejects(pidfd.exited(), { code: 'EBADF', syscall: 'uv_poll', pid: sleeper.pid })
})

t.test('an exception in a watcher callback reaches uncaughtException', async (t) => {
  const script = `
    const { native } = require(${JSON.stringify(join(__dirname, '..', '..', 'dist', 'binding.js'))})
    const { spawn } = require('node:child_process')
    const child = spawn('sleep', ['1000'])
    const fd = native.pidfdOpen(child.pid, 0)
    process.on('uncaughtException', (error) => { console.log('caught ' + error.message); process.exit(0) })
    native.watchReadable(fd, () => { throw new Error('boom') })
    native.pidfdSendSignal(fd, 9)
  `
  t.equal(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }), 'caught boom\n')
})

t.test('Pidfd.fromChildProcess: race-free while Node has not reaped the child', async (t) => {
  const sleeper = startSleeper()
  await new Promise((resolve) => sleeper.child.once('spawn', resolve))
  const pidfd = Pidfd.fromChildProcess(sleeper.child)
  t.teardown(() => pidfd.close())
  t.equal(pidfd.pid, sleeper.pid)
  t.equal(pidfd.thread, false)
  pidfd.sendSignal('SIGKILL')
  await pidfd.exited()
  await sleeper.gone
  // Node has reaped it: its pid may name another process by now.
  t.throws(() => Pidfd.fromChildProcess(sleeper.child), { code: 'ESRCH', errno: -3, syscall: 'pidfd_open', pid: sleeper.pid })
  const unspawned = spawn('/nonexistent/program', { stdio: 'ignore' })
  unspawned.on('error', () => {})
  t.throws(() => Pidfd.fromChildProcess(unspawned), { code: 'ERR_INVALID_ARG_VALUE', message: /has no pid/ })
  t.throws(() => Pidfd.fromChildProcess({ pid: 1 } as never), { code: 'ERR_INVALID_ARG_TYPE', message: /an instance of ChildProcess/ })
})

t.test('Pidfd.fromFd takes over a pidfd opened elsewhere', async (t) => {
  const sleeper = startSleeper()
  t.teardown(() => killQuietly(sleeper))
  const raw = native.pidfdOpen(sleeper.pid, 0)
  const pidfd = Pidfd.fromFd(raw)
  t.equal(pidfd.pid, sleeper.pid, 'the pid from its fdinfo')
  t.equal(pidfd.fd, raw, 'the same fd, now owned')
  t.equal(pidfd.thread, false)
  t.equal(pidfd.hasExited(), false)
  pidfd.close()
  t.notOk(fdIsOpen(raw), 'close() closes it')

  t.throws(() => Pidfd.fromFd(raw), { code: 'ERR_INVALID_ARG_VALUE', message: /is not an open pidfd/ }, 'a closed fd')
  const notPidfd = openSync(__filename, 'r')
  t.teardown(() => closeSync(notPidfd))
  t.throws(() => Pidfd.fromFd(notPidfd), { code: 'ERR_INVALID_ARG_VALUE', message: /is not an open pidfd/ }, 'a file')
  t.throws(() => Pidfd.fromFd(-1), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => Pidfd.fromFd('3' as never), { code: 'ERR_INVALID_ARG_TYPE' })

  // The pidfd of a process that was waited for has no pid any more.
  const done = startSleeper()
  const late = native.pidfdOpen(done.pid, 0)
  t.teardown(() => native.closeFd(late))
  await killQuietly(done)
  t.throws(() => Pidfd.fromFd(late), { code: 'ERR_INVALID_ARG_VALUE', message: /gone/ })
})

t.test('Pidfd.fromFd keeps PIDFD_THREAD', { skip: threadPidfds !== true && threadPidfds }, async (t) => {
  const sleeper = startSleeper()
  t.teardown(() => killQuietly(sleeper))
  using pidfd = Pidfd.fromFd(native.pidfdOpen(sleeper.pid, constants.PIDFD_THREAD))
  t.equal(pidfd.thread, true)
  using opened = Pidfd.open(sleeper.pid, constants.PIDFD_THREAD)
  t.equal(opened.thread, true)
})

t.test('unref(): a pending exited() no longer keeps the event loop alive; ref() again does', async (t) => {
  const script = (calls: string): string => `
    const { Pidfd } = require(${JSON.stringify(join(__dirname, '..', '..', 'dist', 'index.js'))})
    const { spawn } = require('node:child_process')
    const child = spawn('sleep', ['1000'], { stdio: 'ignore' })
    child.unref()
    child.once('spawn', () => {
      const pidfd = Pidfd.open(child.pid)
      pidfd.exited().then(() => console.log('exited'))
      ${calls}
      process.on('exit', () => {
        console.log('loop ended')
        try { process.kill(child.pid, 'SIGKILL') } catch {} // already gone when the wait was refed
      })
      // Holds nothing alive: only a refed wait lets it fire and end the child.
      setTimeout(() => process.kill(child.pid, 'SIGKILL'), 1000).unref()
    })`
  const run = (calls: string): string =>
    execFileSync(process.execPath, ['-e', script(calls)], { encoding: 'utf8', timeout: 60_000, env: { PATH: process.env.PATH } })
  t.equal(run('pidfd.unref()'), 'loop ended\n', 'unref: the loop ends with the wait pending')
  t.equal(run('pidfd.unref(); pidfd.ref()'), 'exited\nloop ended\n', 'ref: the wait keeps it alive until the exit')
  t.equal(run('pidfd.unref().ref().unref()'), 'loop ended\n', 'chained')
})

t.test('unref() before exited() applies to the wait it starts; the wait still resolves', async (t) => {
  const sleeper = startSleeper()
  using pidfd = Pidfd.open(sleeper.pid)
  t.equal(pidfd.unref(), pidfd, 'returns the Pidfd')
  const exited = pidfd.exited()
  t.equal(pidfd.ref(), pidfd)
  pidfd.sendSignal('SIGKILL')
  await exited
  await sleeper.gone
})
