// `pidfd-reap daemon` as a service: the syslog priority of each line for
// journald, sd_notify (READY=1 once armed, WATCHDOG=1, STATUS=, STOPPING=1)
// received on a socket the test listens on, and the --on-kill hook.
import t, { type Test } from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { closeSync, existsSync, fstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseDaemonArgs } from '../../src/cli'
import { UsageError } from '../../src/cli-usage'
import type { DaemonLogLine } from '../../src/daemon'
import { daemonService, ERROR_PRIORITY, isJournalStream, LINE_PRIORITY } from '../../src/daemon-service'
import { listen, noPython } from '../fixtures/notify'

const BIN = join(__dirname, '..', '..', 'bin', 'pidfd-reap')
const noPsi = existsSync('/proc/pressure/memory') ? false : '/proc/pressure/memory is missing: the kernel has no PSI'

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-reap-service-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

function fakeIo() {
  const io = { out: '', err: '', stdout: { write: (s: string) => (io.out += s) }, stderr: { write: (s: string) => (io.err += s) } }
  return io
}

const time = '2026-12-08T00:00:00.000Z'
const victim = { pid: 4242, comm: 'grow', cmdline: 'grow 16', uid: 0, preference: 'none', oomScore: 900, oomScoreAdj: 0, rssBytes: 1, cgroup: '/g', startTime: 1 } as const
const memory = { source: 'check', pressure: null, minAvailable: 10, memAvailable: 5, swapFree: 0, cgroupMemory: null, neededBytes: 5, scope: 'machine' } as const
const start = { time, event: 'start', pid: 1, cgroup: '/g', path: '/proc/pressure/memory', trigger: 'some 300000 2000000' } as unknown as DaemonLogLine
const kill = { time, event: 'kill', ...memory, victim, report: {}, bytesReaped: 123, memAvailableAfter: 200, neededBytesAfter: 0, sinceEventMs: 1, decision: 'wait', reason: 'enough memory back' } as unknown as DaemonLogLine
const stop: DaemonLogLine = { time, event: 'stop', reason: 'SIGTERM', events: 0, checks: 1, kills: 1 }

t.test('journald: each line and each error with its syslog priority; none without journald', async (t) => {
  t.same(LINE_PRIORITY, { start: 6, pressure: 6, 'would-kill': 6, stop: 6, kill: 5, 'kill-failed': 4, error: 3 })
  const journal = fakeIo()
  const service = daemonService(journal, { env: {}, journal: true })
  const failed = { time, event: 'kill-failed', ...memory, victim, error: { code: 'ESRCH', message: 'gone' }, decision: 'wait' } as DaemonLogLine
  const error: DaemonLogLine = { time, event: 'error', error: { message: 'cgroup removed' } }
  for (const line of [start, kill, failed, error, stop]) service.log(line)
  service.error('daemon stopped: cgroup removed')
  t.same(journal.out.split('\n').slice(0, -1).map((line) => line.slice(0, 3)), ['<6>', '<5>', '<4>', '<3>', '<6>'], 'kills as notices, failed kills as warnings, errors as errors')
  t.same(JSON.parse(journal.out.split('\n')[1].slice(3)), kill, 'the JSON follows the prefix')
  t.equal(journal.err, `<${ERROR_PRIORITY}>pidfd-reap: daemon stopped: cgroup removed\n`)
  const plain = fakeIo()
  const quiet = daemonService(plain, { env: {}, journal: false })
  quiet.log(kill)
  quiet.error('bad')
  t.equal(plain.out, `${JSON.stringify(kill)}\n`)
  t.equal(plain.err, 'pidfd-reap: bad\n')
})

t.test('isJournalStream: JOURNAL_STREAM names this very descriptor', async (t) => {
  const fd = openSync(join(tempDir(t), 'out'), 'w')
  t.teardown(() => closeSync(fd))
  const { dev, ino } = fstatSync(fd)
  t.equal(isJournalStream({ JOURNAL_STREAM: `${dev}:${ino}` }, fd), true)
  t.equal(isJournalStream({ JOURNAL_STREAM: `${dev}:${ino + 1}` }, fd), false, 'inherited by a redirected child: another file')
  t.equal(isJournalStream({ JOURNAL_STREAM: `${dev + 1}:${ino}` }, fd), false)
  t.equal(isJournalStream({ JOURNAL_STREAM: 'journal' }, fd), false)
  t.equal(isJournalStream({}, fd), false)
  t.equal(isJournalStream({ JOURNAL_STREAM: `${dev}:${ino}` }, 987_654), false, 'not an open descriptor')
})

t.test('sd_notify: a socket that fails is said once, and the daemon runs on', async (t) => {
  const io = fakeIo()
  const service = daemonService(io, { env: { NOTIFY_SOCKET: join(tempDir(t), 'nobody') }, journal: false })
  service.log(start)
  service.log(kill)
  service.log(stop)
  t.match(io.err, /^pidfd-reap: sd_notify: ENOENT: no such file or directory, sendto '[^']+nobody'\n$/)
  t.equal(io.out.split('\n').length, 4, 'the three lines were written')
})

t.test('a stop for SIGHUP is a reload: RELOADING=1, not STOPPING=1', { skip: noPython }, async (t) => {
  const notify = await listen(t)
  const service = daemonService(fakeIo(), { env: { NOTIFY_SOCKET: notify.socket }, journal: false })
  service.log({ ...stop, reason: 'SIGHUP' } as DaemonLogLine)
  await notify.until((got) => got.length === 1)
  t.same(notify.received, ['RELOADING=1\nSTATUS=reloading'])
})

t.test('WATCHDOG=1 every half WATCHDOG_USEC from the start line until the stop line', { skip: noPython }, async (t) => {
  const notify = await listen(t)
  const service = daemonService(fakeIo(), { env: { NOTIFY_SOCKET: notify.socket, WATCHDOG_USEC: '40000' }, journal: false })
  service.log(start)
  await notify.until((got) => got.filter((state) => state === 'WATCHDOG=1').length >= 3)
  t.match(notify.received[0], /^READY=1\n/)
  service.log(stop)
  await notify.until((got) => got.some((state) => state.startsWith('STOPPING=1')))
  const stopped = notify.received.length
  // After the stop, no tick: another datagram would follow the stop's.
  service.log({ ...stop, reason: 'again' })
  await notify.until((got) => got.length > stopped)
  t.match(notify.received.slice(stopped), ['STOPPING=1\nSTATUS=stopped: again'], 'nothing between the two stops')
})

t.test('the bin under a notify socket: READY=1 once armed, WATCHDOG=1, STOPPING=1; journald prefixes', { skip: noPsi || noPython }, async (t) => {
  const notify = await listen(t)
  const dir = tempDir(t)
  const group = join(dir, 'group')
  mkdirSync(group)
  writeFileSync(join(group, 'cgroup.procs'), '')
  // stdout to a file, named by JOURNAL_STREAM as journald's stream would be.
  const outPath = join(dir, 'out')
  const out = openSync(outPath, 'w')
  const { dev, ino } = fstatSync(out)
  const env = { ...process.env, NOTIFY_SOCKET: notify.socket, WATCHDOG_USEC: '100000', JOURNAL_STREAM: `${dev}:${ino}` }
  const child = spawn(process.execPath, [BIN, 'daemon', '--cgroup', group, '--window', '2s', '--no-lock-memory'], { env, stdio: ['ignore', out, 'pipe'] })
  closeSync(out)
  t.teardown(() => child.kill('SIGKILL'))
  let stderr = ''
  child.stderr!.on('data', (chunk) => (stderr += chunk))
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  await Promise.race([notify.until((got) => got.filter((state) => state === 'WATCHDOG=1').length >= 2), exit])
  t.equal(child.exitCode, null, `running (stderr: ${stderr})`)
  const ready = notify.received[0]
  t.match(ready, /^READY=1\nSTATUS=watching \/proc\/pressure\/memory \(some 150000 2000000\), MemAvailable line \d+ bytes\nMAINPID=\d+$/, 'READY=1 first')
  t.ok(readFileSync(outPath, 'utf8').startsWith('<6>{"time":'), 'the start line was written before READY=1, with its priority')
  child.kill('SIGTERM')
  t.equal(await exit, 0)
  await notify.until((got) => got.includes('STOPPING=1\nSTATUS=stopped: SIGTERM'))
  t.pass('STOPPING=1 on the way out')
  const lines = readFileSync(outPath, 'utf8').trim().split('\n')
  t.same(lines.map((line) => line.slice(0, 3)), ['<6>', '<6>'])
  t.match(JSON.parse(lines[1].slice(3)), { event: 'stop', reason: 'SIGTERM' })
  t.equal(stderr, '')
})

t.test('--on-kill: the command runs after a kill and a would-kill, with the victim in its environment', async (t) => {
  const dir = tempDir(t)
  const record = join(dir, 'record')
  const io = fakeIo()
  const service = daemonService(io, { env: { PATH: process.env.PATH }, journal: false, onKill: `echo "$PIDFD_REAP_EVENT $PIDFD_REAP_PID $PIDFD_REAP_COMM $PIDFD_REAP_CGROUP $PIDFD_REAP_BYTES_REAPED" >> ${record}; echo "$PIDFD_REAP_LINE" > ${record}.json` })
  service.log(kill)
  const waitFor = async (lines: number): Promise<string> => {
    for (let tries = 0; tries < 500; tries++) {
      const text = existsSync(record) ? readFileSync(record, 'utf8') : ''
      if (text.split('\n').length > lines) return text
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    return ''
  }
  t.equal(await waitFor(1), 'kill 4242 grow /g 123\n')
  t.same(JSON.parse(readFileSync(`${record}.json`, 'utf8')), kill)
  service.log({ ...kill, event: 'would-kill', decision: 'wait', reason: 'dry run: nothing killed' } as DaemonLogLine)
  t.equal(await waitFor(2), 'kill 4242 grow /g 123\nwould-kill 4242 grow /g 0\n')
  service.log(stop)
  service.log(kill)
  t.equal(await waitFor(3), 'kill 4242 grow /g 123\nwould-kill 4242 grow /g 0\nkill 4242 grow /g 123\n', 'nothing for the stop line')

  const broken = fakeIo()
  const failing = daemonService(broken, { env: {}, journal: false, onKill: 'true', shell: join(dir, 'no-shell') })
  failing.log(kill)
  for (let tries = 0; tries < 500 && broken.err === ''; tries++) await new Promise((resolve) => setTimeout(resolve, 10))
  t.match(broken.err, /^pidfd-reap: --on-kill: spawn .*no-shell ENOENT\n$/, 'a hook that cannot start is said, the daemon runs on')
})

t.test('--on-kill on the command line', async (t) => {
  const group = tempDir(t)
  writeFileSync(join(group, 'cgroup.procs'), '')
  t.match(parseDaemonArgs(['--cgroup', group, '--on-kill', 'logger killed']), { onKill: 'logger killed' })
  t.notOk('onKill' in parseDaemonArgs(['--cgroup', group]))
  t.throws(() => parseDaemonArgs(['--cgroup', group, '--on-kill', ' ']), { constructor: UsageError, message: '--on-kill must be a command' })
})

const UNIT = join(__dirname, '..', '..', 'examples', 'systemd', 'pidfd-reap.service')
const noAnalyze = spawnSync('systemd-analyze', ['--version'], { stdio: 'ignore' }).status === 0 ? false : 'no systemd-analyze'

t.test('the systemd unit: Type=notify with a watchdog, ambient capabilities, and arguments the daemon takes', async (t) => {
  const unit = readFileSync(UNIT, 'utf8')
  const setting = (name: string): string | undefined => new RegExp(`^${name}=(.*)$`, 'm').exec(unit)?.[1]
  t.equal(setting('Type'), 'notify')
  t.match(setting('WatchdogSec'), /^\d+s$/)
  t.equal(setting('ExecReload'), '/bin/kill -HUP $MAINPID')
  t.same(setting('AmbientCapabilities')?.split(' ').sort(), ['CAP_IPC_LOCK', 'CAP_KILL', 'CAP_SYS_RESOURCE'])
  t.equal(setting('CapabilityBoundingSet'), setting('AmbientCapabilities'))
  t.equal(setting('SystemCallFilter'), undefined, 'no allow-list that would kill it at its first reaping call')
  const [binPath, command, ...args] = setting('ExecStart')!.split(' ')
  t.equal(binPath, '/usr/local/bin/pidfd-reap')
  t.equal(command, 'daemon')
  const group = tempDir(t)
  writeFileSync(join(group, 'cgroup.procs'), '')
  args[args.indexOf('--cgroup') + 1] = group
  t.match(parseDaemonArgs(args), { command: 'daemon', cgroup: group, protectUnits: ['sshd.service'] })
})

t.test('systemd-analyze verify takes the unit', { skip: noAnalyze }, async (t) => {
  // With ExecStart pointing at this checkout's bin: verify checks that it exists.
  const copy = join(tempDir(t), 'pidfd-reap.service')
  writeFileSync(copy, readFileSync(UNIT, 'utf8').replaceAll('/usr/local/bin/pidfd-reap', BIN))
  const verify = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8' })
  t.equal(verify.status, 0, verify.stderr)
  t.equal(verify.stderr, '', 'no warnings')
})
