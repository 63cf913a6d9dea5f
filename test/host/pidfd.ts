// The Pidfd class on real processes, expecting what the running kernel offers.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { Pidfd, ERR_PIDFD_CLOSED } from '../../src/index'
import { native } from '../../src/binding'
import { killQuietly, startSleeper } from '../fixtures/victims'
import { kernelFeatures, mreleaseCode } from '../fixtures/kernel-features'

const kernel = kernelFeatures()

const CLOSED = { code: ERR_PIDFD_CLOSED, message: 'The pidfd is closed' }
const fdIsOpen = (fd: number): boolean => existsSync(`/proc/self/fd/${fd}`)

t.test('open, signal, wait for exit', async (t) => {
  const sleeper = startSleeper()
  const pidfd = Pidfd.open(sleeper.pid)
  t.teardown(() => pidfd.close())
  t.equal(pidfd.pid, sleeper.pid)
  t.ok(fdIsOpen(pidfd.fd))
  t.equal(pidfd.closed, false)
  t.equal(pidfd.hasExited(), false)
  const exited = pidfd.exited()
  t.equal(pidfd.exited(), exited, 'one shared wait')
  let settled = false
  void exited.then(() => (settled = true))
  await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(settled, false, 'still running')
  pidfd.sendSignal('SIGKILL')
  await exited
  t.equal(pidfd.hasExited(), true)
  await pidfd.exited() // already exited: resolves at once
  await sleeper.gone
  t.equal(sleeper.child.signalCode, 'SIGKILL')
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
  t.equal(sleeper.child.exitCode, null, 'nothing was signalled')
})

t.test('close while waiting rejects the wait and stops polling first', async (t) => {
  const sleeper = startSleeper()
  t.teardown(() => killQuietly(sleeper))
  const pidfd = Pidfd.open(sleeper.pid)
  const fd = pidfd.fd
  const exited = pidfd.exited()
  pidfd.close()
  await t.rejects(exited, CLOSED)
  t.notOk(fdIsOpen(fd))
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

t.test('exited() reports a watcher that libuv refuses', async (t) => {
  const sleeper = startSleeper()
  t.teardown(() => killQuietly(sleeper))
  using pidfd = Pidfd.open(sleeper.pid)
  // A second poll handle on the same fd is a real libuv error (EEXIST).
  const id = native.watchReadable(pidfd.fd, () => {})
  t.ok(id > 0)
  t.throws(() => pidfd.exited(), { code: 'EEXIST', syscall: 'uv_poll_init' })
  t.equal(native.unwatch(id), true)
  t.equal(native.unwatch(id), false, 'already gone')
  t.equal(native.watchReadable(99999, () => {}), -9, 'bad fd')
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
