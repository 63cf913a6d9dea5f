// examples/pressure-daemon.mjs, as documented: run with node from the
// checkout, importing the package by its name. Its argument checks, its stop
// on SIGINT/SIGTERM, and, where the host can make real memory pressure, a
// kill in the cgroup it was given while a bystander outside survives.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { killQuietly, startBystander } from '../../victims'
import { pressureUnavailable, startThrasher } from '../fixtures/pressure'

const EXAMPLE = join(__dirname, '..', '..', 'examples', 'pressure-daemon.mjs')
const noPsi = existsSync('/proc/pressure/memory') ? false : '/proc/pressure/memory is missing: the kernel has no PSI'
const privileged = (BigInt(`0x${/^CapEff:\s+([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]}`) >> 24n) & 1n

function example(args: string[]) {
  const child = spawn(process.execPath, [EXAMPLE, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  const lines: Record<string, unknown>[] = []
  let stderr = ''
  child.stderr!.on('data', (chunk) => (stderr += chunk))
  const waiters: (() => void)[] = []
  createInterface({ input: child.stdout! }).on('line', (line) => {
    lines.push(JSON.parse(line))
    for (const wake of waiters.splice(0)) wake()
  })
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const until = async (test: () => boolean): Promise<void> => {
    while (!test() && child.exitCode === null) await new Promise<void>((resolve) => waiters.push(resolve))
  }
  return { child, lines, exit, until, stderr: () => stderr }
}

function fakeGroup(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-reap-example-'))
  writeFileSync(join(dir, 'cgroup.procs'), '')
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

t.test('bad arguments: the usage on stderr, exit 2', async (t) => {
  const group = fakeGroup(t)
  for (const args of [[], ['--cgroup', join(group, 'nope')], ['--cgroup', group, '--max-kills', '0'], ['--cgroup', group, '--stall', 'soon'], ['--cgroup', group, '--bogus']]) {
    const run = example(args)
    t.equal(await run.exit, 2, args.join(' ') || '(none)')
    t.match(run.stderr(), /\nusage: node examples\/pressure-daemon\.mjs --cgroup PATH/)
    t.same(run.lines, [])
  }
})

t.test('a trigger the kernel refuses: one line, exit 1', { skip: noPsi || (privileged ? 'with CAP_SYS_RESOURCE a 1 s window is taken' : false) }, async (t) => {
  const run = example(['--cgroup', fakeGroup(t), '--window', '1s'])
  t.equal(await run.exit, 1)
  t.equal(run.stderr(), "cannot arm the trigger: EINVAL: invalid argument, write '/proc/pressure/memory'\n")
})

t.test('runs until SIGTERM or SIGINT, then exits 0', { skip: noPsi }, async (t) => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    const group = fakeGroup(t)
    const run = example(['--cgroup', group, '--window', '2s'])
    await run.until(() => run.lines.length > 0)
    run.child.kill(signal)
    t.equal(await run.exit, 0)
    t.match(run.lines, [
      { event: 'start', path: '/proc/pressure/memory', trigger: 'some 150000 2000000', cgroup: group, minAvailable: 256 * 2 ** 20, maxKills: 3, memoryLocked: Boolean },
      { event: 'stop', reason: signal },
    ])
    t.equal(run.stderr(), '')
  }
})

t.test('below the line: the check wakes it; the cgroup going away ends it with an error line, exit 1', { skip: noPsi }, async (t) => {
  const group = fakeGroup(t)
  // No host has 1 PiB available: the first check finds MemAvailable below the line.
  const run = example(['--cgroup', group, '--window', '2s', '--min-available', '1048576G'])
  t.teardown(() => run.child.kill('SIGKILL'))
  await run.until(() => run.lines.length > 1)
  t.match(run.lines[1], { event: 'pressure', source: 'check', decision: 'wait', reason: 'no victim in the cgroup' })
  rmSync(group, { recursive: true, force: true })
  t.equal(await run.exit, 1)
  t.match(run.lines.slice(-2), [
    { event: 'error', error: { code: 'ENOENT', message: /cgroup\.procs/ } },
    { event: 'stop', reason: 'error' },
  ])
  t.equal(run.lines.filter((line) => line.reason === 'no victim in the cgroup').length, 1, 'said once, though checked every 100 ms')
  t.equal(run.stderr(), '')
})

t.test('real pressure: it kills in its cgroup, and nowhere else', { skip: pressureUnavailable() }, async (t) => {
  const thrasher = await startThrasher()
  t.teardown(() => thrasher.cleanup())
  const bystander = startBystander()
  t.teardown(() => killQuietly(bystander))
  // No host has 1 PiB available: the first check (or a PSI event: the
  // group's reclaim stalls count in /proc/pressure/memory too) kills, one
  // kill per wakeup. The calm one below hears only PSI events.
  const run = example(['--cgroup', thrasher.group.dir, '--stall', '1ms', '--window', '2s', '--min-available', '1048576G', '--max-kills', '1'])
  t.teardown(() => run.child.kill('SIGKILL'))
  // Beside it, one for an empty group and one that never needs memory.
  const empty = example(['--cgroup', fakeGroup(t), '--stall', '1ms', '--window', '2s', '--min-available', '1048576G'])
  const calm = example(['--cgroup', thrasher.group.dir, '--stall', '1ms', '--window', '2s', '--min-available', '1'])
  t.teardown(() => [empty, calm].forEach((other) => other.child.kill('SIGKILL')))
  const timer = setTimeout(() => run.child.kill('SIGTERM'), 60_000)
  await run.until(() => run.lines.some((line) => line.event === 'kill' || line.event === 'kill-failed'))
  clearTimeout(timer)
  run.child.kill('SIGTERM')
  t.equal(await run.exit, 0)
  const kill = run.lines.find((line) => line.event === 'kill') as { victim: { pid: number; cgroup: string }; report: { pid: number }; decision: string } | undefined
  t.ok(kill, JSON.stringify(run.lines.at(-2)))
  t.equal(kill?.victim.cgroup, thrasher.group.dir, 'the victim was in the group')
  t.equal(kill?.report.pid, kill?.victim.pid)
  t.equal(kill?.decision, 'wait', '--max-kills 1')
  t.equal(bystander.child.exitCode ?? bystander.child.signalCode, null, 'the bystander outside the cgroup is alive')
  t.match(run.lines.at(-1), { event: 'stop', reason: 'SIGTERM' })
  await Promise.all([empty, calm].map((other) => other.until(() => other.lines.length > 1)))
  for (const other of [empty, calm]) other.child.kill('SIGTERM')
  t.same(await Promise.all([empty.exit, calm.exit]), [0, 0])
  t.match(empty.lines[1], { event: 'pressure', decision: 'wait', reason: 'no victim in the cgroup' })
  t.match(calm.lines[1], { event: 'pressure', decision: 'wait', reason: 'enough memory available' })
  t.notOk(calm.lines.some((line) => line.event === 'kill'), 'the calm one killed nobody')
})
