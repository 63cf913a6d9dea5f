// The example memory-pressure daemon, for real, inside the QEMU guest
// (scripts/vm -- npm run test:guest): a workload in a cgroup asks for half
// as much memory again as the guest has available (several children, each
// allocating a little at a time) and would drive the guest into the kernel's
// OOM killer. With `pidfd-reap daemon` watching /proc/pressure/memory and
// checking MemAvailable, the daemon kills in the cgroup first: the OOM
// killer never runs (vmstat oom_kill does not move, dmesg has no "invoked
// oom-killer"), the daemon's JSON lines show its kills, and nothing outside
// the cgroup is touched. (In the guest the check wakes it: the workload
// only allocates, and reaches the line before tasks stall on memory.)
// Twice: `npx pidfd-reap daemon`, then the example on the public API,
// `node examples/pressure-daemon.mjs`.
//
// A third test proves a PSI-sourced wakeup: the daemon watches a cgroup's
// memory.pressure with its MemAvailable check off (--no-poll), the group's
// memory.high is far below what its workload touches (no swap: the kernel
// can only throttle it, which is a memory stall), and the only way it can
// kill is a PSI event.
//
// Runs only in the guest (PIDFD_REAP_VM=1): anywhere else it would exhaust
// the memory of a machine others use. The guest config has PSI and the
// guest mounts cgroup v2: without either it fails, it does not skip.
import t, { type Test } from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { MiB, killQuietly, meminfo, projectRoot, removeCgroupDir, startBystander, startGrower, startVictim, type Victim } from '../../victims'

const PSI = '/proc/pressure/memory'
const CGROUP2 = '/sys/fs/cgroup'
const BIN = join(projectRoot(), 'bin', 'pidfd-reap')
const EXAMPLE = join(projectRoot(), 'examples', 'pressure-daemon.mjs')

const skip = process.env.PIDFD_REAP_VM === '1' ? false : 'runs only in the QEMU guest (PIDFD_REAP_VM=1): it exhausts the memory of the machine it runs on'

const vmstat = (name: string): number => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(readFileSync('/proc/vmstat', 'utf8'))?.[1] ?? NaN)
const oomReports = (): number => execFileSync('dmesg', { encoding: 'utf8' }).split('\n').filter((line) => line.includes('invoked oom-killer')).length

/**
 * The workload against a daemon started with `daemonArgv` (its JSON lines on
 * stdout): the OOM killer must not run, the daemon must kill in the cgroup.
 */
async function overcommit(t: Test, name: string, daemonArgv: (group: string, minAvailableMiB: number) => string[]): Promise<void> {
  t.ok(existsSync(PSI), `${PSI} exists (CONFIG_PSI)`)
  t.ok(existsSync(join(CGROUP2, 'cgroup.procs')), `cgroup v2 is mounted at ${CGROUP2}`)
  const group = join(CGROUP2, `pidfd-reap-daemon-${process.pid}-${name}`)
  mkdirSync(group)
  t.teardown(() => removeCgroupDir(group, 1000))
  const bystander = startBystander()
  t.teardown(() => killQuietly(bystander))

  const total = meminfo('MemTotal')
  const available = meminfo('MemAvailable')
  const growers = 4
  // Half as much again as is available, spread over the growers: two of
  // them must go for the other two to fit.
  const eachMiB = Math.ceil((1.5 * available) / MiB / growers)
  const minAvailableMiB = Math.round((0.15 * total) / MiB)
  t.comment(`MemTotal ${Math.round(total / MiB)} MiB, MemAvailable ${Math.round(available / MiB)} MiB: ${growers} growers of ${eachMiB} MiB; the daemon keeps ${minAvailableMiB} MiB available`)
  const oomKillsBefore = vmstat('oom_kill')
  const oomReportsBefore = oomReports()

  const { daemon, daemonExit, lines } = await startDaemon(t, daemonArgv(group, minAvailableMiB))

  const workload = await Promise.all(Array.from({ length: growers }, () => startGrower({ cgroup: group, stepMiB: 16, intervalMs: 20, maxMiB: eachMiB })))
  t.teardown(() => Promise.all(workload.map(async (g) => (g.child.kill('SIGKILL'), await g.gone))))
  const pids = workload.map((g) => g.pid)
  // Each grower ends killed or holding its share; then the guest is calm.
  const startedAt = Date.now()
  await Promise.all(workload.map((g) => Promise.race([g.held, g.gone])))
  t.comment(`the workload settled in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`)
  daemon.kill('SIGTERM')
  t.equal(await daemonExit, 0, 'the daemon stops cleanly on SIGTERM')
  // Root in the guest: its code is locked, so the pressure cannot page it out.
  t.match(lines.find((line) => line.event === 'start'), { memoryLocked: true, lockedBytes: Number })

  t.equal(vmstat('oom_kill'), oomKillsBefore, 'vmstat oom_kill did not move')
  t.equal(oomReports(), oomReportsBefore, 'dmesg has no new "invoked oom-killer"')
  const kills = lines.filter((line) => line.event === 'kill') as unknown as {
    victim: { pid: number; oomScore: number; rssBytes: number }
    report: { mechanism: string; bytesReaped: number; stopReason: string; elapsedMs: number; killPath?: string }
    bytesReaped: number
    decision: string
  }[]
  t.ok(kills.length >= 2, `the daemon killed ${kills.length} times (two must go for the rest to fit)`)
  // Which source woke it, for the record: here the check comes first.
  t.comment(`wakeups: ${lines.filter((line) => line.source === 'psi').length} by a PSI event, ${lines.filter((line) => line.source === 'check').length} by the check`)
  for (const kill of kills) {
    t.ok(pids.includes(kill.victim.pid), `victim ${kill.victim.pid} was one of the workload's`)
    t.equal(kill.report.mechanism, 'try_reap', `victim ${kill.victim.pid} was reaped through try_reap_dying_process`)
    t.comment(
      `killed ${kill.victim.pid} (oom_score ${kill.victim.oomScore}, RSS ${Math.round(kill.victim.rssBytes / MiB)} MiB): ` +
        `${kill.report.mechanism}${kill.report.killPath ? ` via ${kill.report.killPath}` : ''}, ${Math.round(kill.bytesReaped / MiB)} MiB reaped ` +
        `in ${kill.report.elapsedMs.toFixed(0)} ms, ${kill.report.stopReason}; ${kill.decision}`,
    )
  }
  const reaped = kills.reduce((sum, kill) => sum + kill.bytesReaped, 0)
  t.ok(reaped > 0, `${Math.round(reaped / MiB)} MiB reaped in all`)
  const killed = workload.filter((g) => g.child.signalCode === 'SIGKILL')
  t.equal(killed.length, new Set(kills.map((k) => k.victim.pid)).size, 'the growers that died are the ones the daemon killed')
  t.equal(bystander.child.exitCode ?? bystander.child.signalCode, null, 'the bystander outside the cgroup lives')
  t.match(lines.at(-1), { event: 'stop', reason: 'SIGTERM' })
}

// Each overcommits the whole guest: minutes under TCG.
t.setTimeout(15 * 60_000)


/**
 * Starts node ARGV and resolves once it printed its first (start) line;
 * every JSON line lands in `lines`, logged, and goes to `onLine`.
 */
async function startDaemon(t: Test, argv: string[], onLine: (line: Record<string, unknown>) => void = () => {}) {
  const daemon = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'inherit'] })
  const daemonExit = new Promise<number | null>((resolve) => daemon.once('exit', (code) => resolve(code)))
  t.teardown(() => daemon.kill('SIGKILL'))
  const lines: Record<string, unknown>[] = []
  await new Promise<void>((resolve, reject) => {
    daemon.once('exit', (code) => reject(new Error(`the daemon exited at once: ${code}`)))
    createInterface({ input: daemon.stdout! }).on('line', (line) => {
      t.comment(`daemon: ${line}`)
      lines.push(JSON.parse(line))
      if (lines.length === 1) resolve()
      onLine(lines.at(-1)!)
    })
  })
  return { daemon, daemonExit, lines }
}
t.test('npx pidfd-reap daemon keeps the guest out of the OOM killer', { skip }, (t) =>
  overcommit(t, 'cli', (group, min) => [BIN, 'daemon', '--cgroup', group, '--stall', '100ms', '--window', '1s', '--min-available', `${min}M`, '--max-kills', '2', '--deadline', '5s']),
)

t.test('node examples/pressure-daemon.mjs does the same', { skip }, (t) =>
  overcommit(t, 'example', (group, min) => [EXAMPLE, '--cgroup', group, '--stall', '100ms', '--window', '1s', '--min-available', `${min}M`, '--max-kills', '2']),
)

t.test('a PSI event wakes the daemon: a cgroup held at its memory.high, --cgroup-pressure --no-poll', { skip }, async (t) => {
  const pressure = (group: string): string => join(group, 'memory.pressure')
  const controllers = join(CGROUP2, 'cgroup.subtree_control')
  if (!readFileSync(controllers, 'utf8').split(/\s+/).includes('memory')) writeFileSync(controllers, '+memory')
  const group = join(CGROUP2, `pidfd-reap-daemon-${process.pid}-psi`)
  mkdirSync(group)
  t.teardown(() => removeCgroupDir(group, 1000))
  t.ok(existsSync(pressure(group)), `${pressure(group)} exists (CONFIG_PSI, cgroup v2)`)
  // The workload touches 4 times memory.high; memory.max is only the safety
  // net (a memcg OOM kill would show in vmstat oom_kill, checked below).
  const highMiB = 32
  writeFileSync(join(group, 'memory.high'), `${highMiB * MiB}`)
  writeFileSync(join(group, 'memory.max'), `${8 * highMiB * MiB}`)
  const oomKillsBefore = vmstat('oom_kill')

  let sawKill!: () => void
  const killed = new Promise<void>((resolve) => (sawKill = resolve))
  const { daemon, daemonExit, lines } = await startDaemon(
    t,
    [BIN, 'daemon', '--cgroup', group, '--cgroup-pressure', '--no-poll', '--stall', '100ms', '--window', '1s', '--max-kills', '1', '--deadline', '5s'],
    (line) => line.event === 'kill' && sawKill(),
  )
  t.match(lines[0], { event: 'start', path: pressure(group), poll: false }, 'it watches the group\'s memory.pressure, and nothing else')

  const grower = await startGrower({ cgroup: group, stepMiB: 4, intervalMs: 20, maxMiB: 4 * highMiB })
  t.teardown(async () => (grower.child.kill('SIGKILL'), await grower.gone))
  // Throttled at memory.high it still ends holding its 128 MiB if nothing
  // kills it: then the daemon was never woken, and the test fails below.
  const outcome = await Promise.race([grower.held.then((mib) => `held ${mib} MiB`), killed.then(() => 'killed')])
  t.equal(outcome, 'killed', 'the daemon killed the workload before it got all it asked for')
  await grower.gone
  daemon.kill('SIGTERM')
  t.equal(await daemonExit, 0, 'the daemon stops cleanly on SIGTERM')

  const kill = lines.find((line) => line.event === 'kill') as { source: string; victim: { pid: number }; report: { mechanism: string; killPath: string; bytesReaped: number } }
  t.match(kill, { source: 'psi', victim: { pid: grower.pid }, report: { mechanism: 'try_reap' } }, 'the kill followed a PSI event and reaped through try_reap_dying_process')
  t.comment(`killed ${kill.victim.pid} via ${kill.report.killPath}, ${(kill.report.bytesReaped / MiB).toFixed(1)} MiB reaped`)
  t.equal(grower.child.signalCode, 'SIGKILL', 'the workload died of that SIGKILL')
  t.same(lines.filter((line) => line.source === 'check'), [], 'no line came from the MemAvailable check')
  t.match(lines.at(-1), { event: 'stop', reason: 'SIGTERM', checks: 0, kills: 1 })
  t.ok((lines.at(-1)!.events as number) >= 1, `${lines.at(-1)!.events as number} PSI event(s)`)
  t.equal(vmstat('oom_kill'), oomKillsBefore, 'no memcg OOM kill: memory.max was never reached')
})

// --kill-cgroup on a real unit: a parent group with two leaves, its memory.max
// set just above what they hold, so that its headroom is under the line at
// once. The daemon must kill the leaf with the most memory whole (cgroup.kill)
// and reap its members in parallel: every member dead, the unit's memory back
// (memory.current), no member reaped of more than it had, the other leaf
// untouched. (These members can run their exit, and free their memory in it
// at the same time as the reaping: what the reaping gets, from nothing (ESRCH)
// to all, depends on who comes first.)
t.test('--kill-cgroup kills the unit with the most memory and reaps every member at once', { skip }, async (t) => {
  const parent = join(CGROUP2, `pidfd-reap-daemon-${process.pid}-unit`)
  const control = join(CGROUP2, 'cgroup.subtree_control')
  if (!readFileSync(control, 'utf8').split(/\s+/).includes('memory')) writeFileSync(control, '+memory')
  mkdirSync(parent)
  writeFileSync(join(parent, 'cgroup.subtree_control'), '+memory')
  const unit = join(parent, 'batch.service')
  const other = join(parent, 'web.service')
  mkdirSync(unit)
  mkdirSync(other)
  const victims: Victim[] = []
  t.teardown(async () => {
    await Promise.all(victims.map(killQuietly))
    for (const dir of [unit, other, parent]) await removeCgroupDir(dir, 1000)
  })
  for (let i = 0; i < 4; i++) victims.push(await startVictim({ memory: 64, cgroup: unit }))
  const web = await startVictim({ memory: 16, cgroup: other })
  victims.push(web)
  const members = victims.slice(0, 4)
  const held = members.reduce((sum, v) => sum + v.heldBytes, 0)
  // 24 MiB of headroom against a line of 20 % of the limit (about 60 MiB).
  writeFileSync(join(parent, 'memory.max'), String(Number(readFileSync(join(parent, 'memory.current'), 'utf8')) + 24 * MiB))

  const daemon = spawn(process.execPath, [BIN, 'daemon', '--cgroup', parent, '--kill-cgroup', '--min-available', '20%', '--deadline', '5s'], { stdio: ['ignore', 'pipe', 'inherit'] })
  const daemonExit = new Promise<number | null>((resolve) => daemon.once('exit', (code) => resolve(code)))
  t.teardown(() => daemon.kill('SIGKILL'))
  const lines: Record<string, unknown>[] = []
  const kill = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no kill line within 120 s')), 120_000)
    daemon.once('exit', (code) => reject(new Error(`the daemon exited: ${code}`)))
    createInterface({ input: daemon.stdout! }).on('line', (line) => {
      t.comment(`daemon: ${line}`)
      lines.push(JSON.parse(line))
      if (lines.at(-1)!.event === 'kill') {
        clearTimeout(timer)
        resolve(lines.at(-1)!)
      }
    })
  })
  t.match(lines[0], { event: 'start', killCgroup: 'memory' })
  const killed = kill as unknown as {
    scope: string
    bytesReaped: number
    unit: { cgroup: string; killedBy: string; memoryAtKill: number; memoryBackMs: number | null; reapedMs: number; members: { pid: number; rssBytes: number; bytesReaped: number; report?: { mechanism: string }; error?: { code: string } }[] }
  }
  t.equal(killed.scope, 'cgroup', "the cgroup's own line")
  t.equal(killed.unit.cgroup, unit, 'the leaf with the most memory')
  t.equal(killed.unit.killedBy, 'cgroup.kill')
  t.same(killed.unit.members.map((m) => m.pid).sort(), members.map((v) => v.pid).sort(), 'every member, and only them')
  await Promise.all(members.map((v) => v.gone))
  t.ok(members.every((v) => v.child.signalCode === 'SIGKILL'), 'every member died of SIGKILL')
  t.equal(web.child.exitCode ?? web.child.signalCode, null, 'the other unit lives')
  let sum = 0
  for (const member of killed.unit.members) {
    t.ok(member.report !== undefined || member.error?.code === 'ESRCH', `member ${member.pid}: reaped, or gone before its reaping started`)
    t.ok(member.bytesReaped <= member.rssBytes, `member ${member.pid}: ${Math.round(member.bytesReaped / MiB)} MiB reaped of its ${Math.round(member.rssBytes / MiB)} MiB`)
    sum += member.bytesReaped
  }
  t.equal(killed.bytesReaped, sum, 'the line adds up its members')
  t.ok(killed.unit.memoryAtKill >= held * 0.9, `memory.current was ${Math.round(killed.unit.memoryAtKill / MiB)} MiB at the kill`)
  t.type(killed.unit.memoryBackMs, 'number', `the unit's memory was back ${killed.unit.memoryBackMs} ms after the kill (all reaped after ${Math.round(killed.unit.reapedMs)} ms)`)
  t.ok(Number(readFileSync(join(unit, 'memory.current'), 'utf8')) <= held / 10, "the unit's memory.current is down")
  daemon.kill('SIGTERM')
  t.equal(await daemonExit, 0)
})
