// `pidfd-reap daemon`: its arguments (usage errors exit 2 and kill nothing),
// its failures (one line, exit 1), its stop on SIGINT/SIGTERM (exit 0), in
// process and through the real bin shim; and, where the host can make real
// memory pressure in a cgroup of the test, the daemon killing in that cgroup
// and nowhere else.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { describeDaemonError, main, packageVersion, parseCommand, parseDaemonArgs, parseUser, readDaemonConfig, USAGE, type DaemonCommand } from '../../src/cli'
import { UsageError } from '../../src/cli-usage'
import { pathError } from '../../src/psi'
import { killQuietly, startBystander, startSleeper } from '../../victims'
import { cgroupUnavailable, makeCgroup, pressureUnavailable, startThrasher } from '../fixtures/pressure'

const BIN = join(__dirname, '..', '..', 'bin', 'pidfd-reap')
const noPsi = existsSync('/proc/pressure/memory') ? false : '/proc/pressure/memory is missing: the kernel has no PSI'

function fakeIo() {
  const io = { out: '', err: '', stdout: { isTTY: false, write: (s: string) => (io.out += s) }, stderr: { write: (s: string) => (io.err += s) } }
  return io
}

/** A directory that passes for a cgroup (it has cgroup.procs), with nobody in it. */
function emptyGroup(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-reap-cli-cgroup-'))
  writeFileSync(join(dir, 'cgroup.procs'), '')
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

const DEFAULTS = {
  command: 'daemon',
  cgroupPressure: false,
  kind: 'some',
  stallUs: 150_000,
  windowUs: 1_000_000,
  maxKills: 3,
  coolDownMs: 1000,
  maxUnhelpfulKills: 3,
  prefer: undefined,
  avoid: undefined,
  protectUids: [],
  protectUnits: [],
  chunkBytes: undefined,
  deadlineMs: 1000,
  dryRun: false,
  lockMemory: true,
  lockAllCode: false,
  poll: true,
  fillRateBytesPerSec: undefined,
  killCgroup: false,
}

t.test('parseDaemonArgs: defaults, every option, and usage errors', async (t) => {
  const cgroup = emptyGroup(t)
  t.same(parseCommand(['daemon', '--cgroup', cgroup]), { ...DEFAULTS, cgroup })
  t.same(
    parseDaemonArgs([
      '--cgroup', cgroup, '--cgroup-pressure', '--kind', 'full', '--stall', '0.5ms', '--window', '10s',
      '--min-available', '256M', '--max-kills', '1000', '--chunk', '4M', '--deadline', '250ms', '--dry-run', '--no-lock-memory',
      '--no-poll', '--fill-rate', '1G', '--lock-all-code',
    ]),
    {
      ...DEFAULTS, cgroup, cgroupPressure: true, kind: 'full', stallUs: 500, windowUs: 10_000_000,
      minAvailableBytes: 256 * 2 ** 20, maxKills: 1000, chunkBytes: 4 * 2 ** 20, deadlineMs: 250, dryRun: true, lockMemory: false,
      poll: false, fillRateBytesPerSec: 2 ** 30, lockAllCode: true,
    },
  )
  t.same(parseDaemonArgs(['--cgroup', cgroup, '--min-available', '12.5%']), { ...DEFAULTS, cgroup, minAvailablePercent: 12.5 })
  t.same(
    parseDaemonArgs([
      '--cgroup', cgroup, '--min-swap-free', '5%', '--cool-down', '5s', '--max-unhelpful-kills', '7', '--prefer', '^(chrome|firefox)$',
      '--avoid', 'postgres|sshd', '--protect-user', 'root', '--protect-user', '1000', '--protect-unit', 'sshd.service', '--protect-unit', 'init.scope',
    ]),
    {
      ...DEFAULTS, cgroup, minSwapFreePercent: 5, coolDownMs: 5000, maxUnhelpfulKills: 7, prefer: /^(chrome|firefox)$/, avoid: /postgres|sshd/,
      protectUids: [0, 1000], protectUnits: ['sshd.service', 'init.scope'],
    },
  )
  t.same(parseDaemonArgs(['--cgroup', cgroup, '--kill-cgroup']), { ...DEFAULTS, cgroup, killCgroup: true })
  t.same(parseDaemonArgs(['--cgroup', cgroup, '--kill-cgroup', '--kill-cgroup-by', 'pressure']), { ...DEFAULTS, cgroup, killCgroup: true, killCgroupBy: 'pressure' })
  t.same(parseDaemonArgs(['--cgroup', cgroup, '--min-swap-free', '256M']), { ...DEFAULTS, cgroup, minSwapFreeBytes: 256 * 2 ** 20 })
  t.same(parseDaemonArgs(['--cgroup', cgroup, '--window', '500ms', '--stall', '500ms']), { ...DEFAULTS, cgroup, windowUs: 500_000, stallUs: 500_000 })
  t.same(parseCommand(['daemon', '--help']), { command: 'help' })
  const usage: [string[], RegExp][] = [
    [[], /^daemon needs --cgroup PATH$/],
    [['--cgroup', ''], /^--cgroup must be a cgroup directory .*; got ''$/],
    [['--cgroup', '/nonexistent'], /^--cgroup must be a cgroup directory \(one with a cgroup\.procs file\); got '\/nonexistent'$/],
    [['--cgroup', cgroup, 'extra'], /^unexpected argument 'extra'$/],
    [['--cgroup', cgroup, '--kind', 'most'], /^--kind must be 'some' or 'full'; got 'most'$/],
    [['--cgroup', cgroup, '--window', '499ms'], /^--window must be from 500ms to 10s; got '499ms'$/],
    [['--cgroup', cgroup, '--window', '11s'], /^--window must be from 500ms to 10s/],
    [['--cgroup', cgroup, '--window', 'soon'], /--window' must be like/],
    [['--cgroup', cgroup, '--stall', '0'], /^--stall must be more than 0 and at most the window \(1s\); got '0'$/],
    [['--cgroup', cgroup, '--stall', '0.0001ms'], /^--stall must be more than 0/],
    [['--cgroup', cgroup, '--stall', '2s'], /^--stall must be more than 0 and at most the window/],
    [['--cgroup', cgroup, '--stall', 'lots'], /--stall' must be like/],
    [['--cgroup', cgroup, '--min-available', 'lots'], /--min-available' must be like/],
    [['--cgroup', cgroup, '--min-available', '101%'], /^--min-available must be at most 100%; got '101%'$/],
    [['--cgroup', cgroup, '--min-available', '-5%'], /Option '--min-available' argument is ambiguous|must be like/],
    [['--cgroup', cgroup, '--max-kills', '0'], /^--max-kills must be a whole number from 1 to 1000; got '0'$/],
    [['--cgroup', cgroup, '--max-kills', '1001'], /^--max-kills must be/],
    [['--cgroup', cgroup, '--max-kills', '2.5'], /^--max-kills must be/],
    [['--cgroup', cgroup, '--chunk', '0'], /^--chunk must be at least 1 byte/],
    [['--cgroup', cgroup, '--fill-rate', '0'], /^--fill-rate must be at least 1 byte/],
    [['--cgroup', cgroup, '--fill-rate', 'fast'], /--fill-rate' must be like/],
    [['--cgroup', cgroup, '--deadline', 'never'], /--deadline' must be like/],
    [['--cgroup', cgroup, '--json'], /Unknown option '--json'/],
    [['--cgroup', cgroup, '--min-swap-free', '200%'], /^--min-swap-free must be at most 100%; got '200%'$/],
    [['--cgroup', cgroup, '--min-swap-free', 'some'], /--min-swap-free' must be like/],
    [['--cgroup', cgroup, '--cool-down', 'later'], /--cool-down' must be like/],
    [['--cgroup', cgroup, '--max-unhelpful-kills', '0'], /^--max-unhelpful-kills must be a whole number from 1 to 1000; got '0'$/],
    [['--cgroup', cgroup, '--prefer', '(chrome'], /^--prefer must be a regular expression: Invalid regular expression/],
    [['--cgroup', cgroup, '--avoid', '[a-'], /^--avoid must be a regular expression: /],
    [['--cgroup', cgroup, '--protect-user', 'no-such-user-here'], /^--protect-user must be a user name in \/etc\/passwd or a UID; got 'no-such-user-here'$/],
    [['--cgroup', cgroup, '--protect-user', '99999999999'], /^--protect-user must be/],
    [['--cgroup', cgroup, '--protect-unit', 'system.slice/sshd.service'], /^--protect-unit must be a cgroup's name, without '\/'; got 'system.slice\/sshd.service'$/],
    [['--cgroup', cgroup, '--protect-unit', ''], /^--protect-unit must be a cgroup's name/],
    [['--cgroup'], /argument missing/],
    [['--cgroup', cgroup, '--kill-cgroup', '--kill-cgroup-by', 'size'], /^--kill-cgroup-by must be 'memory' or 'pressure'; got 'size'$/],
    [['--cgroup', cgroup, '--kill-cgroup-by', 'memory'], /^--kill-cgroup-by needs --kill-cgroup$/],
  ]
  for (const [argv, message] of usage) t.throws(() => parseDaemonArgs(argv), { constructor: UsageError, message }, argv.join(' '))
})

t.test('parseUser: a UID, or a name from the passwd file', async (t) => {
  const passwd = join(emptyGroup(t), 'passwd')
  writeFileSync(passwd, 'root:x:0:0:root:/root:/bin/bash\nbroken\nalice:x:1001:1001::/home/alice:/bin/sh\n')
  t.equal(parseUser('alice', passwd), 1001)
  t.equal(parseUser('root', passwd), 0)
  t.equal(parseUser('4294967295', passwd), 4294967295)
  t.throws(() => parseUser('broken', passwd), { constructor: UsageError, message: /got 'broken'$/ }, 'a line without a UID')
  t.throws(() => parseUser('alice', join(passwd, 'nope')), { constructor: UsageError, message: /a user name in .*nope or a UID; got 'alice'/ }, 'no passwd file: UIDs only')
})

t.test('usage errors: one line on stderr, exit 2, nothing armed, nobody killed', async (t) => {
  const victim = startSleeper()
  t.teardown(() => killQuietly(victim))
  const cgroup = emptyGroup(t)
  writeFileSync(join(cgroup, 'cgroup.procs'), `${victim.pid}\n`)
  for (const argv of [
    ['daemon'],
    ['daemon', '--cgroup', cgroup, '--window', '1ms'],
    ['daemon', '--cgroup', cgroup, '--max-kills', 'all'],
    ['daemon', '--cgroup', join(cgroup, 'nope')],
  ]) {
    const io = fakeIo()
    t.equal(await main(argv, io), 2, argv.join(' '))
    t.match(io.err, /^pidfd-reap: [^\n]+ \(see pidfd-reap --help\)\n$/)
    t.equal(io.out, '')
  }
  t.equal(victim.child.exitCode ?? victim.child.signalCode, null)
})

t.test('--help documents the daemon and its exit statuses', async (t) => {
  t.match(USAGE, /pidfd-reap daemon \[--config FILE\] --cgroup PATH/)
  t.match(USAGE, /Options of daemon:\n {2}--config FILE/)
  t.match(USAGE, /--stall DURATION .*\(default 150ms\)/)
  t.match(USAGE, /--window DURATION .*\(default 1s;/)
  t.match(USAGE, /--max-kills N .*\(default 3\)/)
  t.match(USAGE, /--deadline DURATION .*\(default 1s\)/)
  t.match(USAGE, /\n {2}daemon {4}0 stopped by SIGINT or SIGTERM; 1 /)
})

t.test('describeDaemonError: one sentence per way the trigger fails', async (t) => {
  const command = { ...DEFAULTS, cgroup: '/sys/fs/cgroup/x', windowUs: 1_000_000 } as DaemonCommand
  const pressure = '/proc/pressure/memory'
  t.equal(
    describeDaemonError(pathError(-2, 'open', pressure), command),
    'no pressure file /proc/pressure/memory: the kernel has no PSI (CONFIG_PSI, or boot with psi=1)',
  )
  t.match(
    describeDaemonError(pathError(-2, 'open', '/sys/fs/cgroup/x/memory.pressure'), { ...command, cgroupPressure: true }),
    /, or the cgroup is not a cgroup v2 group$/,
  )
  t.equal(
    describeDaemonError(pathError(-22, 'write', pressure), command),
    "the kernel refused the trigger 'some 150000 1000000' on /proc/pressure/memory (EINVAL); without CAP_SYS_RESOURCE the window must be a multiple of 2s",
  )
  t.equal(describeDaemonError(pathError(-22, 'write', pressure), { ...command, windowUs: 2_000_000 }), "the kernel refused the trigger 'some 150000 2000000' on /proc/pressure/memory (EINVAL)")
  t.match(describeDaemonError(pathError(-1, 'write', pressure), command), /^not permitted to arm a trigger on \/proc\/pressure\/memory \(EPERM; before Linux 6\.5/)
  t.match(describeDaemonError(pathError(-13, 'open', pressure), command), /^not permitted .*\(EACCES;/)
  t.equal(describeDaemonError(pathError(-19, 'poll', '/g/memory.pressure'), command), 'the pressure file /g/memory.pressure went away: the cgroup was removed')
  t.equal(describeDaemonError(pathError(-2, 'open', '/g/cgroup.procs'), command), "ENOENT: no such file or directory, open '/g/cgroup.procs'")
  t.equal(describeDaemonError(new Error('other'), command), 'other')
  t.equal(describeDaemonError(Object.assign(new Error('no path'), { code: 'ENOENT', syscall: 'open' }), command), 'no path')
})

t.test('runs until SIGTERM or SIGINT, then exits 0', { skip: noPsi }, async (t) => {
  const cgroup = emptyGroup(t)
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    const io = fakeIo()
    const listeners = process.listenerCount(signal)
    // A 2 s window: what any caller may use.
    // --no-lock-memory: not the test runner's own memory (the bin test below locks its daemon's).
    const status = main(['daemon', '--cgroup', cgroup, '--window', '2s', '--min-available', '1%', '--no-lock-memory'], io)
    while (!io.out.includes('"start"')) await new Promise((resolve) => setTimeout(resolve, 5))
    t.equal(process.listenerCount(signal), listeners + 1, `a ${signal} listener while it runs`)
    process.emit(signal, signal)
    t.equal(await status, 0)
    t.equal(process.listenerCount(signal), listeners, 'and none after')
    const lines = io.out.trim().split('\n').map((line) => JSON.parse(line))
    t.match(lines, [
      { event: 'start', cgroup, path: '/proc/pressure/memory', trigger: 'some 150000 2000000', minAvailable: Number, dryRun: false, memoryLocked: false },
      { event: 'stop', reason: signal, events: Number, kills: 0 },
    ])
    t.equal(io.err, '')
  }
})

t.test('a trigger that cannot be armed: one line, exit 1', { skip: noPsi }, async (t) => {
  // A directory that is not a cgroup v2 group has no memory.pressure.
  const cgroup = emptyGroup(t)
  const io = fakeIo()
  t.equal(await main(['daemon', '--cgroup', cgroup, '--cgroup-pressure', '--window', '2s', '--no-lock-memory'], io), 1)
  t.equal(io.err, `pidfd-reap: no pressure file ${cgroup}/memory.pressure: the kernel has no PSI (CONFIG_PSI, or boot with psi=1), or the cgroup is not a cgroup v2 group\n`)
  t.equal(io.out, '', 'nothing logged: it never started')
})

t.test('a watch that fails stops the daemon: exit 1', { skip: cgroupUnavailable() }, async (t) => {
  const group = makeCgroup()
  t.teardown(() => group.cleanup())
  const io = fakeIo()
  const status = main(['daemon', '--cgroup', group.dir, '--cgroup-pressure', '--window', '2s', '--no-lock-memory'], io)
  while (!io.out.includes('"start"')) await new Promise((resolve) => setTimeout(resolve, 5))
  await group.cleanup()
  t.equal(await status, 1)
  t.equal(io.err, `pidfd-reap: daemon stopped: the pressure file ${group.dir}/memory.pressure went away: the cgroup was removed\n`)
  t.match(io.out.trim().split('\n').map((line) => JSON.parse(line)), [{ event: 'start' }, { event: 'error', error: { code: 'ENODEV' } }, { event: 'stop', reason: 'error' }])
})

/** Starts the real bin; resolves with its JSON lines so far and a way to stop it. */
function startBin(args: string[]) {
  const child = spawn(process.execPath, [BIN, 'daemon', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  const lines: Record<string, unknown>[] = []
  let stderr = ''
  child.stderr!.on('data', (chunk) => (stderr += chunk))
  const waiters: { test: () => boolean; resolve: () => void }[] = []
  createInterface({ input: child.stdout! }).on('line', (line) => {
    lines.push(JSON.parse(line))
    for (const waiter of waiters.splice(0)) {
      if (waiter.test()) waiter.resolve()
      else waiters.push(waiter)
    }
  })
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  return {
    child,
    lines,
    stderr: () => stderr,
    exit,
    until: (test: () => boolean) => new Promise<void>((resolve) => (test() ? resolve() : waiters.push({ test, resolve }))),
  }
}

const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((path) => existsSync(path))
const noSetpriv = process.getuid!() !== 0 ? 'dropping a capability for the test needs root' : setpriv ? false : 'no setpriv (util-linux)'

t.test('without CAP_SYS_RESOURCE the default trigger falls back to a 2 s window, and says so', { skip: noPsi || noSetpriv }, async (t) => {
  // The bin under setpriv, as in a capability-bounded unit: CAP_SYS_RESOURCE
  // is neither inherited nor in the bounding set, so root's exec does not get it.
  const child = spawn(setpriv!, ['--inh-caps=-sys_resource', '--bounding-set=-sys_resource', process.execPath, BIN, 'daemon', '--cgroup', emptyGroup(t), '--dry-run', '--no-lock-memory'], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => child.kill('SIGKILL'))
  let stderr = ''
  child.stderr!.on('data', (chunk) => (stderr += chunk))
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const [first] = await Promise.race([once(createInterface({ input: child.stdout! }), 'line'), exit.then(() => [undefined])])
  t.ok(first, `a start line (stderr: ${stderr.trim()})`)
  t.match(JSON.parse(first as string), {
    event: 'start',
    trigger: 'some 300000 2000000',
    triggerFallback: { requested: 'some 150000 1000000', reason: /without CAP_SYS_RESOURCE/ },
    dryRun: true,
  })
  child.kill('SIGTERM')
  t.equal(await exit, 0)
  t.equal(stderr, '')
})

t.test('the bin shim: a daemon that stops cleanly on SIGINT', { skip: noPsi }, async (t) => {
  const daemon = startBin(['--cgroup', emptyGroup(t), '--window', '2s'])
  t.teardown(() => daemon.child.kill('SIGKILL'))
  await daemon.until(() => daemon.lines.length > 0)
  daemon.child.kill('SIGINT')
  t.same(await daemon.exit, { code: 0, signal: null })
  t.match(daemon.lines, [{ event: 'start', pid: daemon.child.pid }, { event: 'stop', reason: 'SIGINT' }])
  // By default it locks itself in memory: as root (CAP_IPC_LOCK) that works.
  if (process.getuid!() === 0) t.match(daemon.lines[0], { memoryLocked: true }, 'its code locked as root')
  else t.match(daemon.lines[0], { memoryLocked: Boolean }, 'locked, or why not (lockError)')
  t.equal(daemon.stderr(), '')
})

t.test('real pressure: the daemon kills in its cgroup, and nowhere else', { skip: pressureUnavailable() }, async (t) => {
  const thrasher = await startThrasher()
  t.teardown(() => thrasher.cleanup())
  const bystander = startBystander()
  t.teardown(() => killQuietly(bystander))
  const members = readFileSync(join(thrasher.group.dir, 'cgroup.procs'), 'utf8')
  t.comment(`the group: ${members.trim().split('\n').join(' ')}`)
  // 1 ms of stall in 2 s; MemAvailable can never reach 100 %, so one kill per
  // event. PSI alone (--no-poll): a check would find it below the line at once.
  const daemon = startBin(['--cgroup', thrasher.group.dir, '--cgroup-pressure', '--stall', '1ms', '--window', '2s', '--min-available', '100%', '--max-kills', '1', '--no-poll'])
  t.teardown(() => daemon.child.kill('SIGKILL'))
  const kill = () => daemon.lines.find((line) => line.event === 'kill' || line.event === 'kill-failed')
  const timer = setTimeout(() => daemon.child.kill('SIGTERM'), 60_000)
  await daemon.until(() => kill() !== undefined || daemon.child.exitCode !== null)
  clearTimeout(timer)
  daemon.child.kill('SIGTERM')
  t.same(await daemon.exit, { code: 0, signal: null })
  const line = kill() as { event: string; victim: { pid: number; cgroup: string; oomScore: number }; report?: { pid: number; stopReason: string }; decision: string; pressure: unknown }
  t.ok(line, 'a pressure event led to a kill')
  t.equal(line.event, 'kill', JSON.stringify(line))
  t.equal(line.victim.cgroup, thrasher.group.dir, `victim ${line.victim.pid} (oom_score ${line.victim.oomScore}) was in the group`)
  t.equal(line.report?.pid, line.victim.pid)
  t.equal(line.decision, 'wait', 'maxKills 1')
  t.match(line.pressure, { some: { total: Number } })
  t.equal((line as { source?: string }).source, 'psi', 'woken by the PSI trigger')
  t.match(daemon.lines[0], { poll: false })
  t.equal(bystander.child.exitCode ?? bystander.child.signalCode, null, 'the bystander outside the cgroup is alive')
  t.match(daemon.lines.at(-1), { event: 'stop', reason: 'SIGTERM' })
})

t.test('--config FILE: one option a line, the command line wins', async (t) => {
  const cgroup = emptyGroup(t)
  const config = join(cgroup, 'daemon.conf')
  writeFileSync(
    config,
    [
      '# the workload',
      `cgroup ${cgroup}`,
      '',
      '  max-kills 5  ',
      'min-available 12%',
      'protect-unit sshd.service',
      'on-kill logger -t pidfd-reap "killed $PIDFD_REAP_PID"',
      'dry-run',
    ].join('\n'),
  )
  t.same(readDaemonConfig(config), [`--cgroup=${cgroup}`, '--max-kills=5', '--min-available=12%', '--protect-unit=sshd.service', '--on-kill=logger -t pidfd-reap "killed $PIDFD_REAP_PID"', '--dry-run'])
  t.same(parseDaemonArgs(['--config', config]), {
    ...DEFAULTS, cgroup, maxKills: 5, minAvailablePercent: 12, protectUnits: ['sshd.service'], dryRun: true, onKill: 'logger -t pidfd-reap "killed $PIDFD_REAP_PID"',
  })
  t.match(
    parseDaemonArgs(['--config', config, '--max-kills', '2', '--protect-unit', 'init.scope']),
    { maxKills: 2, protectUnits: ['sshd.service', 'init.scope'] },
    'a flag wins over the file; repeatable options add up',
  )
  const bad: [string, RegExp][] = [
    ['bogus 1', /daemon\.conf:1: unknown option 'bogus'$/],
    ['config other.conf', /daemon\.conf:1: unknown option 'config'$/],
    ['help', /unknown option 'help'$/],
    ['# fine\ndry-run yes', /daemon\.conf:2: 'dry-run' takes no value$/],
    ['cgroup', /daemon\.conf:1: 'cgroup' needs a value$/],
    ['toString', /unknown option 'toString'$/],
    [`cgroup ${cgroup}\nmax-kills many`, /^--max-kills must be a whole number/],
  ]
  for (const [text, message] of bad) {
    writeFileSync(config, text)
    t.throws(() => parseDaemonArgs(['--config', config]), { constructor: UsageError, message }, text)
  }
  t.throws(() => parseDaemonArgs(['--config', join(cgroup, 'nope.conf')]), { constructor: UsageError, message: /^--config: cannot read '.*nope\.conf' \(ENOENT\)$/ })
  const io = fakeIo()
  t.equal(await main(['daemon', '--config', join(cgroup, 'nope.conf')], io), 2, 'a usage error: exit 2')
})

t.test('--version, of the command and of the daemon', async (t) => {
  const { version } = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8'))
  t.equal(packageVersion(), version)
  for (const argv of [['--version'], ['daemon', '--version']]) {
    const io = fakeIo()
    t.equal(await main(argv, io), 0)
    t.equal(io.out, `pidfd-reap ${version}\n`, argv.join(' '))
  }
  t.match(USAGE, /pidfd-reap daemon --version/)
  t.match(USAGE, /--config FILE {8}options from FILE/)
})

t.test('SIGHUP reloads the config file: the new options, or why not and the old ones', { skip: noPsi }, async (t) => {
  const cgroup = emptyGroup(t)
  const config = join(cgroup, 'daemon.conf')
  writeFileSync(config, 'min-available 1%\nmax-kills 1\n')
  const io = fakeIo()
  const lines = () => io.out.trim().split('\n').map((line) => JSON.parse(line))
  const hup = process.listenerCount('SIGHUP')
  const status = main(['daemon', '--config', config, '--cgroup', cgroup, '--window', '2s', '--no-lock-memory'], io)
  const until = async (test: () => boolean) => {
    while (!test()) await new Promise((resolve) => setTimeout(resolve, 5))
  }
  await until(() => io.out.includes('"start"'))
  t.equal(process.listenerCount('SIGHUP'), hup + 1, 'a SIGHUP listener while it runs')
  writeFileSync(config, 'min-available 2%\nmax-kills 4\n')
  process.emit('SIGHUP', 'SIGHUP')
  await until(() => lines().length === 3)
  t.match(lines(), [{ event: 'start', maxKills: 1 }, { event: 'stop', reason: 'SIGHUP' }, { event: 'start', maxKills: 4 }])
  t.ok(lines()[2].minAvailable > lines()[0].minAvailable, 'the new line')
  writeFileSync(config, 'max-kills none\n')
  process.emit('SIGHUP', 'SIGHUP')
  t.equal(io.err, "pidfd-reap: reload: --max-kills must be a whole number from 1 to 1000; got 'none'; running on as before\n")
  t.equal(lines().length, 3, 'the daemon runs on')
  // A reload to options that cannot be armed ends the daemon: exit 1.
  writeFileSync(config, 'cgroup-pressure\n')
  process.emit('SIGHUP', 'SIGHUP')
  t.equal(await status, 1)
  t.match(io.err, /\npidfd-reap: no pressure file .*memory\.pressure: .*\n$/)
  t.equal(process.listenerCount('SIGHUP'), hup, 'and none after')
})
