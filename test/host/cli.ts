// The CLI: argument parsing, output and exit statuses, in-process (covered)
// and once through the real bin shim.
import t from 'tap'
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { describeError, exitStatus, main, parseCommand, summary, throttle, writeProgress, PROGRESS_INTERVAL_MS, USAGE } from '../../src/cli'
import { UsageError } from '../../src/cli-usage'
import { systemError, reapUnavailableError } from '../../src/errors'
import { DEFAULT_CHUNK_BYTES, type ReapReport } from '../../src/reaper'
import { parseSize } from '../../src/units'
import * as syscalls from '../../src/syscalls'
import { MiB, startHog, startSleeper, killQuietly } from '../../victims'
import { kernelFeatures } from '../fixtures/kernel-features'
import { publicCopyOfPackage } from '../fixtures/public-copy'

const BIN = join(__dirname, '..', '..', 'bin', 'pidfd-reap')
// What this kernel offers, asked directly (not through features(), whose
// output the CLI prints), so that the suite holds on a patched kernel, an
// old one or under seccomp alike.
const KERNEL = kernelFeatures()
const MECHANISM = KERNEL.tryReapNr !== null ? 'try_reap' : KERNEL.processMrelease ? 'process_mrelease' : undefined
const NO_MECHANISM = MECHANISM === undefined && 'this kernel has neither try_reap_dying_process nor process_mrelease'

function fakeIo(isTTY = false) {
  const io = { out: '', err: '', stdout: { isTTY, write: (s: string) => (io.out += s) }, stderr: { write: (s: string) => (io.err += s) } }
  return io
}

t.test('parseCommand', async (t) => {
  t.same(parseCommand(['kill', '123']), { command: 'kill', pid: 123, chunkBytes: undefined, budgetBytes: undefined, deadlineMs: undefined, json: false })
  t.same(parseCommand(['kill', '9', '--chunk', '4M', '--budget', '1G', '--deadline', '500ms', '--json']), {
    command: 'kill', pid: 9, chunkBytes: 4 * MiB, budgetBytes: 1024 * MiB, deadlineMs: 500, json: true,
  })
  t.same(parseCommand(['--help']), { command: 'help' })
  t.same(parseCommand(['kill', '-h']), { command: 'help' })
  t.same(parseCommand(['features', '--json']), { command: 'features', json: true })
  const usage: [string[], RegExp][] = [
    [[], /missing command/],
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['kill'], /exactly one <pid>/],
    [['kill', '1', '2'], /exactly one <pid>/],
    [['kill', 'abc'], /^<pid> must be a process ID from 1 to 2147483647; got 'abc'$/],
    [['kill', '-5'], /Unknown option '-5'|exactly one/],
    [['kill', '0'], /^<pid> must be .*; got '0'$/],
    [['kill', '1.5'], /^<pid> must be .*; got '1.5'$/],
    [['kill', 'NaN'], /^<pid> must be .*; got 'NaN'$/],
    [['kill', '2147483648'], /^<pid> must be .*; got '2147483648'$/],
    [['kill', '1', '--chunk', 'lots'], /--chunk' must be like/],
    [['kill', '1', '--chunk', 'NaN'], /--chunk' must be like/],
    [['kill', '1', '--chunk', '0'], /^--chunk must be at least 1 byte; got '0'$/],
    [['kill', '1', '--chunk', '0.0001K'], /^--chunk must be at least 1 byte; got '0.0001K'$/],
    [['kill', '1', '--chunk', '1.5'], /--chunk' must be a whole number of bytes/],
    [['kill', '1', '--budget', '0.5'], /--budget' must be a whole number of bytes/],
    [['kill', '1', '--budget', '0'], /^--budget must be at least 1 byte; got '0'$/],
    [['kill', '1', '--budget=-1'], /--budget' must be like/],
    [['kill', '1', '--deadline', 'soon'], /--deadline' must be like/],
    [['kill', '1', '--deadline=-5ms'], /--deadline' must be like/],
    [['kill', '1', '--nope'], /Unknown option '--nope'/],
    [['kill', '1', '--chunk'], /argument missing/],
    // parseArgs says this on three lines; a usage error is one.
    [['kill', '1', '--chunk', '-1'], /^Option '--chunk' argument is ambiguous\. Did you forget .* use '--chunk=-XYZ'\.$/],
    [['features', 'extra'], /unexpected argument 'extra'/],
  ]
  for (const [argv, message] of usage) t.throws(() => parseCommand(argv), { constructor: UsageError, message }, argv.join(' '))
  // A deadline of 0 is allowed: kill, then stop at once (exit 1 unless it exited).
  t.match(parseCommand(['kill', '1', '--deadline', '0']), { deadlineMs: 0 })
})

t.test('usage errors: one line on stderr, exit 2, and nobody is killed', async (t) => {
  const victim = startSleeper()
  t.teardown(() => killQuietly(victim))
  const pid = String(victim.pid)
  for (const argv of [
    ['kill', pid, '--chunk', '0'],
    ['kill', pid, '--chunk', '1.5'],
    ['kill', pid, '--budget', '0.5'],
    ['kill', pid, '--budget', '-1'],
    ['kill', pid, '--deadline', 'NaN'],
    ['kill', pid, '--bogus'],
    ['kill', pid, '--chunk'],
    ['kill', pid, pid],
  ]) {
    const io = fakeIo()
    t.equal(await main(argv, io), 2, argv.join(' '))
    t.match(io.err, /^pidfd-reap: [^\n]+ \(see pidfd-reap --help\)\n$/, 'one line')
    t.equal(io.out, '')
  }
  // Still there, and not a zombie (Z) or dead (X).
  t.match(readFileSync(`/proc/${victim.pid}/stat`, 'utf8'), new RegExp(`^${victim.pid} \\(.*\\) [^ZX] `))
})

t.test('exit status follows the outcome', async (t) => {
  const report = { pid: 7, mechanism: 'try_reap' as const, killPath: 'pidfd_send_signal' as const, calls: 1, busyRetries: 0, elapsedMs: 1, exited: false, rssBeforeBytes: null, rssDropBytes: null, killedAtMs: 0, exitedAtMs: null }
  const cases: [ReapReport['stopReason'], number, number][] = [
    ['exited', 0, 0],
    ['done', 0, 0],
    ['done', MiB, 0],
    ['budget', MiB, 0],
    ['deadline', MiB, 0],
    ['deadline', 0, 1],
    ['aborted', MiB, 0],
    ['aborted', 0, 1],
    ['refused', 0, 1],
    ['refused', MiB, 1],
    ['unsupported', 0, 1],
  ]
  for (const [stopReason, bytesReaped, status] of cases) {
    t.equal(exitStatus({ ...report, stopReason, bytesReaped }), status, `${stopReason} after ${bytesReaped} bytes`)
  }
})

t.test('progress lines are throttled', async (t) => {
  let now = 0
  const written: number[] = []
  const write = throttle((n: number) => written.push(n), PROGRESS_INTERVAL_MS, () => now)
  for (let i = 0; i < 50; i++, now += 10) write(i) // 50 calls in 500 ms
  t.same(written, [0, 10, 20, 30, 40], 'one per 100 ms')
  t.equal(PROGRESS_INTERVAL_MS, 100, 'at most 10 lines a second')
  // The default clock is real time: a burst writes once.
  const burst: number[] = []
  const realWrite = throttle((n: number) => burst.push(n), 60_000)
  for (let i = 0; i < 5; i++) realWrite(i)
  t.same(burst, [0])
})

t.test('describeError: one clear sentence per errno', async (t) => {
  const cases: [string, RegExp][] = [
    ['EPERM', /^not permitted: process 42 is not dying or you may not signal it$/],
    ['ESRCH', /^no such process: 42$/],
    ['EINVAL', /^invalid argument: process 42 cannot be reaped/],
    ['EBUSY', /^busy: /],
    ['EAGAIN', /^busy: /],
    ['EBADF', /^bad file descriptor/],
    ['ENOSYS', /^not supported: .*process_mrelease/],
  ]
  const errnos: Record<string, number> = { EPERM: -1, ESRCH: -3, EINVAL: -22, EBUSY: -16, EAGAIN: -11, EBADF: -9, ENOSYS: -38 }
  for (const [code, message] of cases) t.match(describeError(systemError(errnos[code], 'x'), 42), message, code)
  t.match(describeError(reapUnavailableError('missing'), 42), /^not supported/)
  t.equal(describeError(new Error('something else'), 42), 'something else')
})

t.test('help, usage errors and features', async (t) => {
  let io = fakeIo()
  t.equal(await main(['--help'], io), 0)
  t.equal(io.out, USAGE)
  t.match(USAGE, /Exit status:\n {2}kill {6}0 the memory came back/, '--help documents the exit statuses')
  io = fakeIo()
  t.equal(await main(['kill'], io), 2)
  t.equal(io.err, 'pidfd-reap: kill takes exactly one <pid> (see pidfd-reap --help)\n')
  io = fakeIo()
  t.equal(await main(['features'], io), 0)
  t.equal(
    io.out,
    `try_reap_dying_process: ${KERNEL.tryReapNr !== null ? `syscall ${KERNEL.tryReapNr}` : 'not available'}\n` +
      `TRY_REAP_KILL: ${KERNEL.tryReapKill ? 'available' : 'not available'}\n` +
      `reap_dying shrinker: ${KERNEL.shrinkerEnabled === null ? 'not available' : KERNEL.shrinkerEnabled ? 'enabled' : 'disabled'}\n` +
      `process_mrelease: ${KERNEL.processMrelease ? 'available' : 'not available'}\n`,
  )
  io = fakeIo()
  t.equal(await main(['features', '--json'], io), 0)
  t.same(JSON.parse(io.out), {
    tryReap: KERNEL.tryReapNr === null ? null : { syscallNr: KERNEL.tryReapNr },
    tryReapKill: KERNEL.tryReapKill,
    shrinker: KERNEL.shrinkerEnabled === null ? null : { enabled: KERNEL.shrinkerEnabled },
    processMrelease: KERNEL.processMrelease,
  })
})

t.test('--help shows the real default chunk', async (t) => {
  const shown = /--chunk SIZE .*\(default ([^)]+)\)/.exec(USAGE)?.[1]
  t.equal(shown, '16 MiB')
  t.equal(parseSize(shown!), DEFAULT_CHUNK_BYTES)
})

t.test('features: a failure is one line and exit 1', async (t) => {
  const cli = t.mockRequire<typeof import('../../src/cli')>('../../src/cli', {
    '../../src/syscalls': { ...syscalls, features: () => { throw new Error('cannot read /sys/kernel/mm/reap_dying/syscall_nr: EMFILE') } },
  })
  const io = fakeIo()
  t.equal(await cli.main(['features'], io), 1)
  t.equal(io.err, 'pidfd-reap: cannot read /sys/kernel/mm/reap_dying/syscall_nr: EMFILE\n')
  t.equal(io.out, '')
})

t.test('features on a patched kernel without process_mrelease', async (t) => {
  // Whatever this kernel is; the guest suite checks the real output.
  const cli = t.mockRequire<typeof import('../../src/cli')>('../../src/cli', {
    '../../src/syscalls': { ...syscalls, features: () => ({ tryReap: { syscallNr: 463 }, tryReapKill: false, shrinker: null, processMrelease: false }) },
  })
  const io = fakeIo()
  t.equal(await cli.main(['features'], io), 0)
  t.equal(io.out, 'try_reap_dying_process: syscall 463\nTRY_REAP_KILL: not available\nreap_dying shrinker: not available\nprocess_mrelease: not available\n')
})

t.test('features on a v3 kernel: the kill flag and the shrinker', async (t) => {
  for (const enabled of [true, false]) {
    const cli = t.mockRequire<typeof import('../../src/cli')>('../../src/cli', {
      '../../src/syscalls': { ...syscalls, features: () => ({ tryReap: { syscallNr: 470 }, tryReapKill: true, shrinker: { enabled }, processMrelease: true }) },
    })
    const io = fakeIo()
    t.equal(await cli.main(['features'], io), 0)
    t.equal(
      io.out,
      `try_reap_dying_process: syscall 470\nTRY_REAP_KILL: available\nreap_dying shrinker: ${enabled ? 'enabled' : 'disabled'}\nprocess_mrelease: available\n`,
    )
  }
})

t.test('kill: plain lines, live TTY line and JSON', { skip: NO_MECHANISM }, async (t) => {
  for (const mode of ['plain', 'tty', 'json'] as const) {
    const hog = await startHog(64)
    const io = fakeIo(mode === 'tty')
    const status = await main(['kill', String(hog.pid), ...(mode === 'json' ? ['--json'] : [])], io)
    t.equal(status, 0, mode)
    t.equal(io.err, '')
    if (mode === 'json') {
      const report = JSON.parse(io.out)
      t.match(report, { pid: hog.pid, mechanism: MECHANISM })
      t.ok(['done', 'exited'].includes(report.stopReason))
    } else {
      t.match(io.out, new RegExp(`killed ${hog.pid}: reaped .* using ${MECHANISM}; (nothing left to reap|the process exited)\\n$`))
      if (mode === 'tty') t.match(io.out, /^\r\x1b\[K/, 'rewrites the line in place')
      else t.notMatch(io.out, /\r/)
    }
    await hog.gone
  }
})

t.test('kill: errors exit 1 with a clear message', async (t) => {
  const sleeper = startSleeper()
  await killQuietly(sleeper)
  let io = fakeIo(true)
  t.equal(await main(['kill', String(sleeper.pid)], io), 1)
  t.equal(io.err, `pidfd-reap: no such process: ${sleeper.pid}\n`)
  io = fakeIo(false)
  t.equal(await main(['kill', String(sleeper.pid)], io), 1)
  t.equal(io.out, '')
})

t.test('progress lines: rewritten in place on a terminal, appended elsewhere', async (t) => {
  // Deterministic: whether a real kill emits progress depends on how fast the victim exits.
  const progress = { pid: 7, mechanism: 'try_reap' as const, bytesReaped: 3 * MiB, calls: 2, busyRetries: 1, elapsedMs: 12 }
  const tty = fakeIo(true)
  writeProgress(tty, true, progress)
  t.equal(tty.out, '\r\x1b[Kreaped 3.0 MiB from 7 in 2 calls, 1 busy, 12 ms')
  const plain = fakeIo(false)
  writeProgress(plain, false, progress)
  t.equal(plain.out, 'reaped 3.0 MiB from 7 in 2 calls, 1 busy, 12 ms\n')
})

t.test('summary wording', async (t) => {
  const base = { pid: 7, mechanism: 'try_reap' as const, killPath: 'pidfd_send_signal' as const, bytesReaped: 3 * MiB, calls: 2, busyRetries: 1, elapsedMs: 12, exited: false, rssBeforeBytes: null, rssDropBytes: null, killedAtMs: 0, exitedAtMs: null }
  t.equal(summary({ ...base, stopReason: 'budget' }), 'killed 7: reaped 3.0 MiB from 7 in 2 calls, 1 busy, 12 ms using try_reap; budget reached')
  t.match(summary({ ...base, mechanism: 'none', stopReason: 'refused', refusal: { code: 'EPERM', errno: -1, syscall: 'try_reap_dying_process', message: 'EPERM: operation not permitted, try_reap_dying_process' } }), /the kernel refused to reap \(EPERM: operation not permitted/)
})

t.test('the bin shim, for real, including EPERM as an unprivileged user', async (t) => {
  const run = promisify(execFile)
  const help = await run(BIN, ['--help'])
  t.equal(help.stdout, USAGE)
  // A usage error through the real shim: one line, no stack trace.
  const usage = await run(BIN, ['kill', 'nope', '--chunk', '0']).catch((e) => e)
  t.equal(usage.code, 2)
  t.equal(usage.stderr, "pidfd-reap: <pid> must be a process ID from 1 to 2147483647; got 'nope' (see pidfd-reap --help)\n")
  // Where the addon cannot load (here: another OS), --help still works and
  // the commands that need it say why in one line.
  const elsewhere = { env: { ...process.env, FAKE_PLATFORM: 'darwin' } }
  const preload = ['-r', join(__dirname, '..', 'fixtures', 'fake-platform.cjs'), BIN]
  t.equal((await run(process.execPath, [...preload, '--help'], elsewhere)).stdout, USAGE)
  for (const argv of [['features'], ['kill', '1']]) {
    const failed = await run(process.execPath, [...preload, ...argv], elsewhere).catch((e) => e)
    t.equal(failed.code, 1, argv.join(' '))
    t.equal(failed.stderr, 'pidfd-reap: pidfd-reap needs Linux (pidfds are a Linux feature); this platform is darwin\n')
  }
  const sleeper = startSleeper()
  t.teardown(() => killQuietly(sleeper))
  // As nobody, from a world-readable copy of what the shim loads: the
  // checkout may be private (a clone under a mode-0700 home). env -i: without
  // tap's coverage hooks, which would write to .tap/ as nobody.
  const shared = publicCopyOfPackage()
  t.teardown(shared.remove)
  const denied = await run('env', ['-i', process.execPath, join(shared.dir, 'bin', 'pidfd-reap'), 'kill', String(sleeper.pid)], {
    uid: 65534,
    gid: 65534,
    cwd: shared.dir,
  }).catch((e) => e)
  t.equal(denied.code, 1)
  t.equal(denied.stderr, `pidfd-reap: not permitted: process ${sleeper.pid} is not dying or you may not signal it\n`)
  const hog = await startHog(32)
  const killed = await run(BIN, ['kill', String(hog.pid), '--json', '--chunk', '1M', '--deadline', '2s']).catch((e) => e)
  // Without a reaping syscall the kill still happens, but nothing is reaped: 1.
  t.equal(killed.code ?? 0, MECHANISM ? 0 : 1)
  t.match(JSON.parse(killed.stdout), { pid: hog.pid, mechanism: MECHANISM ?? 'none' })
  await hog.gone
})
