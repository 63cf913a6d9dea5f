#!/usr/bin/env node
// An example memory-pressure daemon on pidfd-reap's public API: the core of
// `npx pidfd-reap daemon` in one page (docs/daemon.md).
//
//   node examples/pressure-daemon.mjs --cgroup /sys/fs/cgroup/workload \
//       [--stall 150ms] [--window 1s] [--min-available 256M] [--max-kills 3]
//
// It wakes on a PSI trigger on /proc/pressure/memory, through the event loop,
// and on a check of MemAvailable that comes again before memory could fill
// down to the line (100 ms to 1 s apart, as earlyoom does: with no swap,
// anonymous memory can reach the OOM killer before tasks stall for long).
// While MemAvailable is below --min-available, it kills the process with the
// highest oom_score in the cgroup (never one outside it), takes its memory
// back with killAndReap, and decides from the bytes reaped whether to kill
// another or wait. One JSON line per decision. SIGINT or SIGTERM stop it.
//
// In a project that depends on pidfd-reap, copy it and run it the same way.
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import process from 'node:process'
import { clearTimeout, setTimeout } from 'node:timers'
import { parseArgs } from 'node:util'
import { killAndReap, lockMemory, nextCheckMs, parseDuration, parseSize, pickVictim, watchPressure } from 'pidfd-reap'

const usage = 'usage: node examples/pressure-daemon.mjs --cgroup PATH [--stall 150ms] [--window 1s] [--min-available 256M] [--max-kills 3]'
let settings
try {
  const { values } = parseArgs({
    options: {
      cgroup: { type: 'string' },
      stall: { type: 'string', default: '150ms' },
      window: { type: 'string', default: '1s' },
      'min-available': { type: 'string', default: '256M' },
      'max-kills': { type: 'string', default: '3' },
    },
  })
  if (!values.cgroup) throw new Error('--cgroup is required')
  if (!existsSync(join(values.cgroup, 'cgroup.procs'))) throw new Error(`--cgroup must be a cgroup directory; got '${values.cgroup}'`)
  settings = {
    cgroup: values.cgroup,
    stallUs: Math.round(parseDuration(values.stall, '--stall') * 1000),
    windowUs: Math.round(parseDuration(values.window, '--window') * 1000),
    minAvailable: parseSize(values['min-available'], '--min-available'),
    maxKills: Number(values['max-kills']),
  }
  if (!(Number.isInteger(settings.maxKills) && settings.maxKills >= 1)) throw new Error('--max-kills must be a whole number >= 1')
} catch (error) {
  process.stderr.write(`${error.message}\n${usage}\n`)
  process.exit(2)
}
const { cgroup, stallUs, windowUs, minAvailable, maxKills } = settings

const log = (line) => process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...line })}\n`)
// How fast memory is assumed to fill at worst (earlyoom's figure for RAM).
const FILL_RATE = 6000 * 2 ** 20 // bytes per second
const memAvailable = () => Number(/^MemAvailable:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'))[1]) * 1024

// First keep our own code in memory: reclaim evicts file pages first, and a
// killer paged out by the pressure it is there for stalls when it is needed.
let locked
try {
  locked = { memoryLocked: true, lockedBytes: lockMemory() }
} catch (error) {
  locked = { memoryLocked: false, lockError: error.message } // runs on, unlocked
}

let watcher
try {
  watcher = watchPressure({ resource: 'memory', kind: 'some', stallUs, windowUs })
} catch (error) {
  // ENOENT: no PSI in this kernel; EINVAL: a trigger the kernel refuses
  // (without CAP_SYS_RESOURCE, only windows of whole 2 s).
  process.stderr.write(`cannot arm the trigger: ${error.message}\n`)
  process.exit(1)
}
log({ event: 'start', path: watcher.path, trigger: `some ${stallUs} ${windowUs}`, cgroup, minAvailable, maxKills, ...locked })

// One wakeup at a time: one that comes during a kill is dropped, since the
// next check reads MemAvailable again anyway.
let current = null // the wakeup being handled
let saidNoVictim = false // below the line with nobody to kill: say it once
let stopping = false
let timer

function wake(source, pressure, available) {
  if (current || stopping) return
  current = handle(source, pressure, available)
    .catch(fail) // the cgroup or /proc/meminfo can no longer be read
    .finally(() => (current = null))
}

// `available`: MemAvailable as the check just read it; a PSI wakeup reads it here.
async function handle(source, pressure, available = memAvailable()) {
  if (available >= minAvailable) {
    log({ event: 'pressure', source, pressure, memAvailable: available, decision: 'wait', reason: 'enough memory available' })
    return
  }
  for (let kills = 1; ; kills++) {
    const needed = minAvailable - available
    // The best victim, with a pidfd open on it and checked to be in the cgroup.
    const picked = pickVictim(cgroup)
    if (!picked) {
      if (source === 'psi' || !saidNoVictim) log({ event: 'pressure', source, pressure, memAvailable: available, decision: 'wait', reason: 'no victim in the cgroup' })
      saidNoVictim = true
      return
    }
    saidNoVictim = false
    const { victim, pidfd } = picked
    // Checked after the kill: a stop meanwhile means no more kills.
    const more = () => kills < maxKills && !stopping
    let report
    try {
      report = await killAndReap(pidfd, { deadlineMs: 1000 })
    } catch (error) {
      // It exited before the kill (ESRCH), for example: try the next one.
      log({ event: 'kill-failed', source, victim, error: { code: error.code, message: error.message }, decision: more() ? 'kill-another' : 'wait' })
      if (more()) continue
      return
    } finally {
      pidfd.close()
    }
    available = memAvailable()
    // The decision the system call gives userspace: the bytes reaped say at
    // once whether this kill covered what was needed.
    const again = report.bytesReaped < needed && available < minAvailable && more()
    log({ event: 'kill', source, pressure, neededBytes: needed, victim, report, bytesReaped: report.bytesReaped, memAvailableAfter: available, decision: again ? 'kill-another' : 'wait' })
    if (!again) return
  }
}

// The check: wakes the handler while MemAvailable is below the line, and
// comes again before memory filling at FILL_RATE could get there.
function check() {
  let available
  try {
    available = memAvailable()
  } catch (error) {
    return fail(error)
  }
  if (available < minAvailable) wake('check', null, available)
  else saidNoVictim = false
  if (!stopping) timer = setTimeout(check, nextCheckMs(available, minAvailable, FILL_RATE))
}

// SIGINT, SIGTERM or an error: nothing new starts; a kill in progress settles first.
async function stop(reason) {
  if (stopping) return
  stopping = true
  clearTimeout(timer)
  watcher.close()
  await current
  log({ event: 'stop', reason })
  if (reason === 'error') process.exitCode = 1
}
function fail(error) {
  log({ event: 'error', error: { code: error.code, message: error.message } })
  stop('error')
}

watcher.on('pressure', (event) => wake('psi', event.pressure))
watcher.on('error', fail) // the watch failed: the pressure file went away
for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => stop(signal))
check()
