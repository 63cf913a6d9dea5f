// Real syscalls on the running kernel: every error it can produce here,
// produced for real. What the kernel offers (try_reap, process_mrelease) is
// asked of the kernel itself, so the same file passes on this machine's
// kernel, the patched one, an old one and under a seccomp filter.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, realpathSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as api from '../../src/index'
import { native } from '../../src/binding'
import { killQuietly, startSleeper } from '../../victims'
import { publicCopyOfPackage } from '../fixtures/public-copy'
import { kernelFeatures, mreleaseCode, SYSCALL_NR_FILE } from '../fixtures/kernel-features'

const kernel = kernelFeatures()

function unusedPid(): number {
  for (let pid = 4_000_000; pid > 1000; pid--) if (!existsSync(`/proc/${pid}`)) return pid
  throw new Error('no free pid found')
}

t.test('features: what the running kernel offers', async (t) => {
  const tryReap = kernel.tryReapNr === null ? null : { syscallNr: kernel.tryReapNr }
  t.same(api.features(), {
    tryReap,
    tryReapKill: kernel.tryReapKill,
    shrinker: kernel.shrinkerEnabled === null ? null : { enabled: kernel.shrinkerEnabled },
    processMrelease: kernel.processMrelease,
  })
  t.same(api.reapDyingFeature(), tryReap)
  const stats = api.stats()
  if (kernel.vmEvents) {
    t.match(stats, { calls: Number, pagesReaped: Number, shrinkerPagesReaped: Number, busy: Number, deferred: Number }, 'the v3 kernel counts')
  } else {
    t.equal(stats, null, 'no reap_dying vm events on this kernel')
  }
  t.equal(native.syscallNrPath, SYSCALL_NR_FILE)
})

t.test('stats reads the reap_dying lines of /proc/vmstat', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'reap-dying-'))
  const vmstat = (name: string, lines: string[]): string => {
    const path = join(dir, name)
    writeFileSync(path, ['nr_free_pages 1000', ...lines, 'thp_split_pmd 3', ''].join('\n'))
    return path
  }
  const all = ['reap_dying_calls 12', 'reap_dying_pages 3456', 'reap_dying_shrinker_pages 78', 'reap_dying_busy 7', 'reap_dying_deferred 2']
  t.same(api.stats(vmstat('v3', all)), { calls: 12, pagesReaped: 3456, shrinkerPagesReaped: 78, busy: 7, deferred: 2 })
  t.equal(api.stats(vmstat('none', [])), null, 'a kernel without the series (or before v3)')
  t.throws(() => api.stats(vmstat('partial', all.slice(0, 3))), { message: /has reap_dying_\* lines but no reap_dying_busy/ })
  mkdirSync(join(dir, 'broken'))
  t.throws(() => api.stats(join(dir, 'broken')), { code: 'EISDIR' })
})

t.test('features: TRY_REAP_KILL and the shrinker, as a v3 kernel reports them', async (t) => {
  // The host kernel has neither: the binding and the sysfs file are substituted.
  const load = (raw: { syscallNr: number; tryReapKill: boolean }, shrinker: string | Error) =>
    t.mockRequire<typeof import('../../src/syscalls')>('../../src/syscalls', {
      '../../src/binding': { native: Object.create(native, { features: { value: () => ({ ...raw, processMrelease: true }) } }) },
      'node:fs': {
        readFileSync: (path: string, encoding: BufferEncoding) => {
          if (path !== '/sys/kernel/mm/reap_dying/shrinker_enabled') return readFileSync(path, encoding)
          if (shrinker instanceof Error) throw shrinker
          return shrinker
        },
      },
    })
  const enoent = Object.assign(new Error('ENOENT: no such file'), { code: 'ENOENT' })
  t.same(load({ syscallNr: 463, tryReapKill: true }, '1\n').features(), {
    tryReap: { syscallNr: 463 },
    tryReapKill: true,
    shrinker: { enabled: true },
    processMrelease: true,
  })
  t.match(load({ syscallNr: 463, tryReapKill: true }, '0\n').features(), { tryReapKill: true, shrinker: { enabled: false } })
  t.match(load({ syscallNr: 463, tryReapKill: false }, enoent).features(), { tryReapKill: false, shrinker: null }, 'series v2')
  // Without a confirmed number the probe's answer is not the flag's.
  t.match(load({ syscallNr: -2, tryReapKill: true }, enoent).features(), { tryReap: null, tryReapKill: false })
  // A file that cannot be read (EMFILE, EACCES) is no shrinker known: features() does not throw.
  const emfile = Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' })
  t.match(load({ syscallNr: 463, tryReapKill: true }, emfile).features(), { tryReapKill: true, shrinker: null })
})

t.test('the sysfs syscall number is parsed strictly', async (t) => {
  for (const [text, nr] of [['463\n', 463], ['463', 463], ['1\n', 1], ['1023\n', 1023]] as const) {
    t.equal(native.parseSyscallNr(text), nr, JSON.stringify(text))
  }
  const bad = ['', '\n', '0\n', '0463\n', '-1\n', '+4\n', ' 463\n', '463 \n', '46 3', '463\n\n', '1024\n', '99999\n', 'abc\n', '4e2\n', '0x1c\n', '\u0663\n']
  for (const text of bad) t.equal(native.parseSyscallNr(text), -22, JSON.stringify(text))
  t.throws(() => (native.parseSyscallNr as (x: unknown) => number)(463), TypeError)
})

t.test('try_reap_dying_process is never called without the sysfs file', async (t) => {
  const sleeper = startSleeper()
  t.teardown(() => killQuietly(sleeper))
  const fd = api.pidfdOpen(sleeper.pid)
  t.teardown(() => closeSync(fd))
  if (kernel.tryReapNr !== null) {
    // The patched kernel publishes the number, so the call is made: a live process is not dying.
    const notDying = { code: 'EPERM', errno: -1, syscall: 'try_reap_dying_process' }
    t.throws(() => api.tryReapDyingProcess(fd, 0), notDying)
    await t.rejects(api.tryReapDyingProcessAsync(fd, 4096), notDying)
    return
  }
  const unavailable = {
    code: 'ERR_PIDFD_REAP_UNAVAILABLE',
    errno: -38,
    syscall: 'try_reap_dying_process',
    message: 'try_reap_dying_process is not available: /sys/kernel/mm/reap_dying/syscall_nr missing (kernel without the reap_dying patch)',
  }
  t.throws(() => api.tryReapDyingProcess(fd, 0), unavailable)
  t.throws(() => api.tryReapDyingProcess(fd, Infinity), unavailable)
  await t.rejects(api.tryReapDyingProcessAsync(fd, 2n ** 64n - 1n), unavailable)
  await t.rejects(api.tryReapDyingProcessAsync(fd, 4096), unavailable)
})

t.test('a confirmed syscall number is reported', async (t) => {
  // Only the patched kernel (guest suite) publishes one; substituted here.
  const mocked = t.mockRequire<typeof import('../../src/syscalls')>('../../src/syscalls', {
    '../../src/binding': {
      native: Object.create(native, { features: { value: () => ({ syscallNr: 463, processMrelease: false }) } }),
    },
  })
  t.match(mocked.features(), { tryReap: { syscallNr: 463 }, processMrelease: false })
  t.same(mocked.reapDyingFeature(), { syscallNr: 463 })
  // The call was made, so ENOSYS is the kernel's (or a seccomp filter's) own answer.
  t.throws(() => mocked.check(-38, 'try_reap_dying_process', 42), {
    code: 'ENOSYS',
    errno: -38,
    syscall: 'try_reap_dying_process',
    pid: 42,
    message: 'ENOSYS: function not implemented, try_reap_dying_process (pid 42)',
  })
})

t.test('the raw binding passes kernel results through unchanged', async (t) => {
  const sleeper = startSleeper()
  t.teardown(() => killQuietly(sleeper))
  const fd = api.pidfdOpen(sleeper.pid)
  t.teardown(() => closeSync(fd))
  t.equal(await native.tryReapAsync(fd, 4096n, 0), kernel.tryReapNr === null ? -38 : -1, 'unconfirmed number: never called; else not dying')
  t.equal(await native.processMreleaseAsync(fd), kernel.processMrelease ? -22 : -38, 'live process')
  t.equal(native.pollReadable(fd), 0)
  t.equal(native.pidfdSendSignal(fd, 0), 0)
})

t.test('an unparsable sysfs file is reported as such', async (t) => {
  // The host kernel cannot publish a bad file, so this one result is substituted.
  const { check } = t.mockRequire<typeof import('../../src/syscalls')>('../../src/syscalls', {
    '../../src/binding': {
      native: Object.create(native, { features: { value: () => ({ syscallNr: -22, processMrelease: true }) } }),
    },
  })
  t.throws(() => check(-38, 'try_reap_dying_process'), {
    code: 'ERR_PIDFD_REAP_UNAVAILABLE',
    message: /syscall_nr does not hold a valid syscall number/,
  })
  t.throws(() => check(-38, 'process_mrelease'), { code: 'ENOSYS', message: 'ENOSYS: function not implemented, process_mrelease' })
})

t.test('pidfd_open', async (t) => {
  const pid = unusedPid()
  t.throws(() => api.pidfdOpen(pid), { code: 'ESRCH', errno: -3, syscall: 'pidfd_open', pid, message: `ESRCH: no such process, pidfd_open (pid ${pid})` })
  const sleeper = startSleeper()
  t.teardown(() => killQuietly(sleeper))
  t.throws(() => api.pidfdOpen(sleeper.pid, 1), { code: 'EINVAL', errno: -22, syscall: 'pidfd_open', pid: sleeper.pid })
  const nonblocking = api.pidfdOpen(sleeper.pid, api.constants.PIDFD_NONBLOCK)
  t.ok(nonblocking > 2)
  closeSync(nonblocking)
})

t.test('signals, mrelease and their errors on real processes', async (t) => {
  const sleeper = startSleeper()
  const fd = api.pidfdOpen(sleeper.pid)
  t.teardown(() => closeSync(fd))
  const mrelease = (code: string) => ({ code: mreleaseCode(kernel, code), syscall: 'process_mrelease' })

  api.pidfdSendSignal(fd, 0) // allowed and alive
  t.throws(() => api.processMrelease(fd), mrelease('EINVAL'), 'live process is not dying')
  await t.rejects(api.processMreleaseAsync(fd), mrelease('EINVAL'))

  const devNull = openSync('/dev/null', 'r')
  t.throws(() => api.processMrelease(devNull), mrelease('EBADF'), 'not a pidfd: the kernel says EBADF')
  t.throws(() => api.pidfdSendSignal(devNull, 0), { code: 'EBADF', syscall: 'pidfd_send_signal' })
  closeSync(devNull)
  // Closed just now, and nothing ran in between: a closed fd. Given only an
  // fd, the error names no pid (as fs errors for fds name no path).
  const closed = t.throws(() => api.pidfdSendSignal(devNull, 'SIGKILL'), {
    code: 'EBADF',
    errno: -9,
    message: 'EBADF: bad file descriptor, pidfd_send_signal',
  }) as Error
  t.notOk('pid' in closed, 'no pid property')
  t.throws(() => api.processMrelease(devNull), mrelease('EBADF'))
  await t.rejects(api.processMreleaseAsync(devNull), mrelease('EBADF'))

  api.pidfdSendSignal(fd, 'SIGTERM')
  await sleeper.gone // exited and waited for by Node: the pid is released
  t.equal(sleeper.child.signalCode, 'SIGTERM')
  t.throws(() => api.pidfdSendSignal(fd, 'SIGKILL'), { code: 'ESRCH', syscall: 'pidfd_send_signal' })
  t.throws(() => api.processMrelease(fd), mrelease('ESRCH'))
  await t.rejects(api.processMreleaseAsync(fd), mrelease('ESRCH'))
})

t.test('EPERM: an unprivileged user may not signal our process', async (t) => {
  const sleeper = startSleeper()
  t.teardown(() => killQuietly(sleeper))
  // As nobody, from a world-readable copy: the checkout may be private.
  const shared = publicCopyOfPackage()
  t.teardown(shared.remove)
  const script = `
    const api = require(${JSON.stringify(join(shared.dir, 'dist', 'index.js'))})
    const fd = api.pidfdOpen(${sleeper.pid})
    try { api.pidfdSendSignal(fd, 'SIGKILL') } catch (e) { console.log(JSON.stringify({ code: e.code, errno: e.errno, message: e.message })) }
  `
  // env -i: without tap's coverage hooks, which would write to .tap/ as nobody.
  const output = execFileSync('env', ['-i', process.execPath, '-e', script], { uid: 65534, gid: 65534, cwd: shared.dir, encoding: 'utf8' })
  t.same(JSON.parse(output), { code: 'EPERM', errno: -1, message: 'EPERM: operation not permitted, pidfd_send_signal' })
  t.equal(sleeper.child.exitCode, null, 'still alive')
  t.equal(sleeper.child.signalCode, null)
})

t.test('lockMemory: mlock() of the code in a child (not the test runner); EPERM without the right', async (t) => {
  const shared = publicCopyOfPackage()
  t.teardown(shared.remove)
  const script = `
    const api = require(${JSON.stringify(join(shared.dir, 'dist', 'index.js'))})
    const vmLck = () => Number(/^VmLck:\\s+(\\d+) kB$/m.exec(require('fs').readFileSync('/proc/self/status', 'utf8'))[1])
    const before = vmLck()
    try { const bytes = api.lockMemory(); console.log(JSON.stringify({ before, bytes, after: vmLck() })) }
    catch (e) { console.log(JSON.stringify({ code: e.code, errno: e.errno, syscall: e.syscall, message: e.message })) }
  `
  const asRoot = JSON.parse(execFileSync('env', ['-i', process.execPath, '-e', script], { encoding: 'utf8' }))
  t.equal(asRoot.before, 0, 'nothing locked before')
  // node itself is tens of MiB of code; VmLck counts the locked mappings.
  t.ok(asRoot.bytes > 8 * 1024 * 1024, `${asRoot.bytes} bytes of code locked (root: CAP_IPC_LOCK)`)
  t.equal(asRoot.after * 1024, asRoot.bytes, 'VmLck says the same')
  // onFault: the same mappings (VmLck counts them whole), but only what is
  // resident stays in RAM (smaps_rollup's Locked), far less than node's code.
  const onFaultScript = `
    const api = require(${JSON.stringify(join(shared.dir, 'dist', 'index.js'))})
    const kb = (file, field) => Number(require('fs').readFileSync(file, 'utf8').split(String.fromCharCode(10)).find((l) => l.startsWith(field + ':')).match(/[0-9]+/)[0])
    const bytes = api.lockMemory({ onFault: true })
    console.log(JSON.stringify({ bytes, vmLck: kb('/proc/self/status', 'VmLck'), locked: kb('/proc/self/smaps_rollup', 'Locked') }))
  `
  const onFault = JSON.parse(execFileSync('env', ['-i', process.execPath, '-e', onFaultScript], { encoding: 'utf8' }))
  t.equal(onFault.vmLck * 1024, onFault.bytes, 'onFault: VmLck counts the mappings locked')
  t.ok(onFault.locked * 1024 < onFault.bytes / 2, `onFault: ${onFault.locked} kB locked in RAM of ${onFault.bytes / 1024} kB of mappings`)
  t.ok(onFault.locked * 1024 < asRoot.bytes / 2, 'far less in RAM than locking all of the code')
  // As nobody with RLIMIT_MEMLOCK 0: no right to lock at all.
  const refused = execFileSync('prlimit', ['--memlock=0:0', 'env', '-i', process.execPath, '-e', script], { uid: 65534, gid: 65534, cwd: shared.dir, encoding: 'utf8' })
  t.same(JSON.parse(refused), { code: 'EPERM', errno: -1, syscall: 'mlock', message: 'EPERM: operation not permitted, mlock' })
})

t.test('lockMemory: a failure part way unlocks what it had locked', async (t) => {
  const shared = publicCopyOfPackage()
  t.teardown(shared.remove)
  // A limit that fits the first mapping of node's own file (the same node
  // runs the child), and not the next one: node's code is tens of MiB.
  const maps = readFileSync('/proc/self/maps', 'utf8').split('\n')
  const node = realpathSync(process.execPath)
  const first = maps.find((line) => line.endsWith(` ${node}`))
  t.ok(first, 'node\'s first mapping')
  const [start, end] = first!.split(' ')[0].split('-').map((hex) => parseInt(hex, 16))
  const limit = end - start + 4096
  const script = `
    const api = require(${JSON.stringify(join(shared.dir, 'dist', 'index.js'))})
    const vmLck = () => Number(/^VmLck:\\s+(\\d+) kB$/m.exec(require('fs').readFileSync('/proc/self/status', 'utf8'))[1])
    try { api.lockMemory(); console.log(JSON.stringify({ locked: true })) }
    catch (e) { console.log(JSON.stringify({ code: e.code, lockedKb: vmLck() })) }
  `
  const output = execFileSync('prlimit', [`--memlock=${limit}:${limit}`, 'env', '-i', process.execPath, '-e', script], {
    uid: 65534,
    gid: 65534,
    cwd: shared.dir,
    encoding: 'utf8',
  })
  t.same(JSON.parse(output), { code: 'ENOMEM', lockedKb: 0 }, `RLIMIT_MEMLOCK ${limit}: ENOMEM, and nothing stays locked`)
})

t.test('lockMemory: the binding\'s error becomes a system error', async (t) => {
  const { lockMemory } = t.mockRequire<typeof import('../../src/syscalls')>('../../src/syscalls', {
    '../../src/binding': { native: Object.create(native, { lockMappedCode: { value: () => -12 } }) },
  })
  t.throws(() => lockMemory(), { code: 'ENOMEM', errno: -12, syscall: 'mlock' })
  t.throws(() => lockMemory({ onFault: true }), { code: 'ENOMEM', errno: -12, syscall: 'mlock2' })
  t.throws(() => lockMemory({ onFault: 'yes' as unknown as boolean }), { code: 'ERR_INVALID_ARG_TYPE', message: /options\.onFault/ })
  t.throws(() => lockMemory(5 as unknown as object), { code: 'ERR_INVALID_ARG_TYPE' })
})

t.test('readRssBytes', async (t) => {
  t.ok(api.readRssBytes(process.pid)! > 10 * 1024 * 1024, 'node itself uses some memory')
  t.equal(api.readRssBytes(unusedPid()), null)
})
