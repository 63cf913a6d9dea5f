// The guest's preflight (scripts/guest-suite runs it before the suites): the
// kernel booted by scripts/vm has the whole series applied, so every feature
// it adds must be there. One failing test per missing feature, so that a
// series that lost one fails CI by name instead of turning tests into skips.
import t from 'tap'
import { readFileSync } from 'node:fs'
import {
  SERIES_TRACEPOINTS,
  SERIES_VM_EVENTS,
  SHRINKER_ENABLED_FILE,
  SYSCALL_NR_FILE,
  guestOnly,
  kernelFeatures,
  missingTracepoints,
  missingVmEvents,
  realCalls,
} from '../fixtures/kernel-features'

const kernel = guestOnly ? undefined : kernelFeatures()

t.test('try_reap_dying_process: its number in sysfs and a real call', { skip: guestOnly }, async (t) => {
  t.ok(kernel!.tryReapNr !== null && kernel!.tryReapNr > 0, `${SYSCALL_NR_FILE}: ${kernel!.tryReapNr}`)
  const calls = await realCalls()
  t.equal(calls.plain, 'EPERM', 'a live process is refused: it is not dying')
})

t.test('TRY_REAP_KILL kills a live process in the call', { skip: guestOnly }, async (t) => {
  t.equal(kernel!.tryReapKill, true, 'try_reap_dying_process(-1, TRY_REAP_KILL, 0) answers EBADF')
  const calls = await realCalls()
  t.equal(calls.kill, 'OK', 'with a cap of 0 it answers 0')
  t.equal(calls.endedBy, 'SIGKILL', 'the process ended by that kill (a SIGTERM follows it)')
})

t.test('the shrinker knob', { skip: guestOnly }, async (t) => {
  t.not(kernel!.shrinkerEnabled, null, `${SHRINKER_ENABLED_FILE} exists`)
  if (kernel!.shrinkerEnabled !== null) t.match(readFileSync(SHRINKER_ENABLED_FILE, 'utf8'), /^[01]\n$/, 'and reads 0 or 1')
})

t.test(`the tracepoints ${SERIES_TRACEPOINTS.join(', ')}`, { skip: guestOnly }, async (t) => {
  t.same(missingTracepoints(), [], 'tracefs lists each of them')
})

t.test(`the vm events ${SERIES_VM_EVENTS.join(', ')}`, { skip: guestOnly }, async (t) => {
  t.same(missingVmEvents(), [], '/proc/vmstat has each of them')
})
