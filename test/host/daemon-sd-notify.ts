// sd_notify(3) from the addon (native/sd_notify.cc, src/sd-notify.ts),
// received by a unix datagram socket the test listens on (a python3 helper:
// Node cannot bind one), as systemd's notify socket would.
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { native } from '../../src/binding'
import { sdNotify, watchdogIntervalMs } from '../../src/sd-notify'
import { listen, noPython } from '../fixtures/notify'

t.test('sdNotify sends one datagram to $NOTIFY_SOCKET: a path, or an abstract name', { skip: noPython }, async (t) => {
  const onPath = await listen(t)
  t.equal(sdNotify('READY=1', { NOTIFY_SOCKET: onPath.socket }), true)
  t.equal(sdNotify('WATCHDOG=1\nSTATUS=armed', { NOTIFY_SOCKET: onPath.socket }), true)
  await onPath.until((got) => got.length === 2)
  t.same(onPath.received, ['READY=1', 'WATCHDOG=1\nSTATUS=armed'], 'each state as it was sent')
  const abstract = await listen(t, `@pidfd-reap-test-${process.pid}`)
  t.equal(sdNotify('STOPPING=1', { NOTIFY_SOCKET: abstract.socket }), true)
  await abstract.until((got) => got.length === 1)
  t.same(abstract.received, ['STOPPING=1'])
})

t.test('sdNotify: false without a notify socket; errors shaped like Node ones', async (t) => {
  t.equal(sdNotify('READY=1', {}), false, 'not run by systemd')
  t.equal(sdNotify('READY=1', { NOTIFY_SOCKET: '' }), false)
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-reap-notify-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const nobody = join(dir, 'nobody')
  t.throws(() => sdNotify('READY=1', { NOTIFY_SOCKET: nobody }), { code: 'ENOENT', errno: -2, syscall: 'sendto', path: nobody, message: `ENOENT: no such file or directory, sendto '${nobody}'` })
  t.throws(() => sdNotify('READY=1', { NOTIFY_SOCKET: 'vsock:2:999' }), { code: 'EAFNOSUPPORT', syscall: 'sendto' }, 'a vsock address')
  t.throws(() => sdNotify('READY=1', { NOTIFY_SOCKET: `/${'x'.repeat(200)}` }), { code: 'ENAMETOOLONG' })
  t.throws(() => sdNotify('READY=1', { NOTIFY_SOCKET: '/a\0b' }), { code: 'EINVAL' })
  t.throws(() => sdNotify(1 as unknown as string, {}), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => sdNotify('', {}), { code: 'ERR_INVALID_ARG_VALUE' })
  t.throws(() => sdNotify('READY=1\0', {}), { code: 'ERR_INVALID_ARG_VALUE' })
  const raw = native as unknown as { sdNotify: (...args: unknown[]) => number }
  t.throws(() => raw.sdNotify(1, 'READY=1'), { name: 'TypeError', message: 'pidfd-reap: expected a string' }, 'the native backstop')
  t.throws(() => raw.sdNotify('/x'), { name: 'TypeError' })
})

t.test('watchdogIntervalMs: half of WATCHDOG_USEC, for this process only', async (t) => {
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '20000000' }), 10_000)
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '1' }), 1, 'at least 1 ms')
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '4000', WATCHDOG_PID: '42' }, 42), 2)
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '4000', WATCHDOG_PID: '41' }, 42), null, "another process's watchdog")
  t.equal(watchdogIntervalMs({}), null)
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: 'soon' }), null)
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '0' }), null)
  t.ok(watchdogIntervalMs() === null || typeof watchdogIntervalMs() === 'number', 'process.env by default')
})
