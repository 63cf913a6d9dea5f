// `pidfd-reap daemon --metrics HOST:PORT`: the Prometheus text it serves
// (counters from the log lines and wakeups, gauges read at the scrape), on
// loopback only, and the option on the command line.
import t, { type Test } from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { main, parseDaemonArgs, parseListenAddress } from '../../src/cli'
import { UsageError } from '../../src/cli-usage'
import type { DaemonLogLine } from '../../src/daemon'
import { DaemonMetrics, REAP_SECONDS_BUCKETS, serveMetrics } from '../../src/daemon-metrics'
import type { ReapDyingStats } from '../../src/syscalls'

const MiB = 2 ** 20
const noPsi = existsSync('/proc/pressure/memory') ? false : '/proc/pressure/memory is missing: the kernel has no PSI'

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-reap-metrics-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A fake /proc with meminfo and self/status. */
function fakeProc(t: Test): string {
  const root = tempDir(t)
  mkdirSync(join(root, 'self'))
  writeFileSync(join(root, 'meminfo'), 'MemTotal:  1048576 kB\nMemAvailable:  204800 kB\n')
  writeFileSync(join(root, 'self', 'status'), 'Name:\tnode\nVmLck:\t    2048 kB\nVmRSS:\t   51200 kB\n')
  return root
}

const time = '2026-12-08T00:00:00.000Z'
const wakeup = { source: 'psi', pressure: null, minAvailable: 1, memAvailable: 1, swapFree: 0, cgroupMemory: null, neededBytes: 1, scope: 'machine' } as const
const killLine = (elapsedMs: number, bytesReaped: number, reason = 'enough memory back') =>
  ({ time, event: 'kill', ...wakeup, victim: {}, report: { elapsedMs }, bytesReaped, reason }) as unknown as DaemonLogLine

t.test('the text: counters from the lines and wakeups, gauges read at the scrape', async (t) => {
  let vm: ReapDyingStats | null = { calls: 12, pagesReaped: 3000, shrinkerPagesReaped: 5, busy: 1, deferred: 0 }
  const procRoot = fakeProc(t)
  const metrics = new DaemonMetrics({ procRoot, vmstat: () => vm })
  metrics.observe(killLine(30, 64 * MiB, 'not enough memory back'))
  metrics.observe(killLine(700, 100 * MiB))
  metrics.observe(killLine(20_000, 0))
  // A --kill-cgroup kill: the unit's time, until its last member settled.
  metrics.observe({ time, event: 'kill', ...wakeup, victim: {}, unit: { reapedMs: 40 }, bytesReaped: 36 * MiB, reason: 'enough memory back' } as unknown as DaemonLogLine)
  metrics.observe({ time, event: 'kill-failed', ...wakeup, error: { message: 'gone' }, decision: 'wait' } as unknown as DaemonLogLine)
  metrics.observe({ time, event: 'pressure', ...wakeup, decision: 'wait', reason: 'no victim in the "cgroup"' } as unknown as DaemonLogLine)
  metrics.observe({ time, event: 'pressure', ...wakeup, decision: 'wait', reason: 'enough memory available' } as DaemonLogLine)
  metrics.observe({ time, event: 'stop', reason: 'SIGTERM', events: 0, checks: 0, kills: 3 })
  metrics.wakeup('psi')
  metrics.wakeup('check')
  metrics.wakeup('check')
  const text = metrics.render()
  const value = (sample: string): number | undefined => {
    const line = text.split('\n').find((l) => l.startsWith(`${sample} `))
    return line === undefined ? undefined : Number(line.slice(sample.length + 1))
  }
  t.equal(value('pidfd_reap_kills_total'), 4)
  t.equal(value('pidfd_reap_kill_failures_total'), 1)
  t.equal(value('pidfd_reap_bytes_reaped_total'), 200 * MiB)
  t.same(REAP_SECONDS_BUCKETS.map((le) => value(`pidfd_reap_reap_seconds_bucket{le="${le}"}`)), [0, 0, 0, 2, 2, 2, 2, 3, 3, 3, 3], 'cumulative buckets: 30 ms, 40 ms, 700 ms; 20 s only in +Inf')
  t.equal(value('pidfd_reap_reap_seconds_bucket{le="+Inf"}'), 4)
  t.equal(value('pidfd_reap_reap_seconds_count'), 4)
  t.equal(value('pidfd_reap_reap_seconds_sum'), 20.77)
  t.equal(value('pidfd_reap_wakeups_total{source="psi"}'), 1)
  t.equal(value('pidfd_reap_wakeups_total{source="check"}'), 2)
  t.equal(value('pidfd_reap_decisions_total{reason="not enough memory back"}'), 1)
  t.equal(value('pidfd_reap_decisions_total{reason="enough memory back"}'), 3)
  t.equal(value('pidfd_reap_decisions_total{reason="no victim in the \\"cgroup\\""}'), 1, 'label values escaped')
  t.equal(value('pidfd_reap_mem_available_bytes'), 200 * MiB)
  t.equal(value('pidfd_reap_daemon_resident_bytes'), 50 * MiB)
  t.equal(value('pidfd_reap_daemon_locked_bytes'), 2 * MiB)
  t.equal(value('pidfd_reap_daemon_locked_resident_bytes'), undefined, 'no smaps_rollup: no such gauge')
  writeFileSync(join(procRoot, 'self', 'smaps_rollup'), 'Rss:  51200 kB\nLocked:   1024 kB\n')
  t.match(metrics.render(), /^pidfd_reap_daemon_locked_resident_bytes 1048576$/m, 'smaps_rollup Locked: what is locked and in RAM')
  t.equal(value('pidfd_reap_vm_reap_dying_total{event="pagesReaped"}'), 3000)
  t.match(text, /^# HELP pidfd_reap_kills_total .+\n# TYPE pidfd_reap_kills_total counter\n/)
  t.match(text, /# TYPE pidfd_reap_reap_seconds histogram\n/)
  t.ok(text.endsWith('\n'))
  vm = null
  t.notMatch(metrics.render(), /reap_dying/, 'a kernel without the series: no vm events')
  const noLock = fakeProc(t)
  writeFileSync(join(noLock, 'self', 'status'), 'Name:\tnode\nVmRSS:\t   51200 kB\n')
  t.match(new DaemonMetrics({ procRoot: noLock, vmstat: () => null }).render(), /\npidfd_reap_daemon_locked_bytes 0\n/, 'no VmLck line: 0')
})

t.test('served on loopback: GET /metrics, 404 elsewhere, 500 when it cannot be read', async (t) => {
  const proc = fakeProc(t)
  const { server, url } = await serveMetrics(new DaemonMetrics({ procRoot: proc, vmstat: () => null }), '127.0.0.1', 0)
  t.teardown(() => server.close())
  t.match(url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/)
  const ok = await fetch(url)
  t.equal(ok.status, 200)
  t.equal(ok.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8')
  t.match(await ok.text(), /\npidfd_reap_kills_total 0\n/)
  t.equal((await fetch(`${url}?x=1`)).status, 200, 'a query string is fine')
  t.equal((await fetch(url.replace('/metrics', '/'))).status, 404)
  t.equal((await fetch(url, { method: 'POST' })).status, 404)
  rmSync(join(proc, 'meminfo'))
  const failed = await fetch(url)
  t.equal(failed.status, 500)
  t.match(await failed.text(), /ENOENT/)
  const v6 = await serveMetrics(new DaemonMetrics({ procRoot: proc, vmstat: () => null }), '::1', 0).catch(() => undefined)
  if (v6) {
    t.teardown(() => v6.server.close())
    t.match(v6.url, /^http:\/\/\[::1\]:\d+\/metrics$/, 'IPv6 in brackets')
  }
  const taken = (server.address() as AddressInfo).port
  await t.rejects(serveMetrics(new DaemonMetrics({ procRoot: proc, vmstat: () => null }), '127.0.0.1', taken), { code: 'EADDRINUSE' })
})

t.test('--metrics HOST:PORT on the command line', async (t) => {
  const group = tempDir(t)
  writeFileSync(join(group, 'cgroup.procs'), '')
  t.same(parseListenAddress('127.0.0.1:9101'), { host: '127.0.0.1', port: 9101 })
  t.same(parseListenAddress('[::1]:0'), { host: '::1', port: 0 })
  t.same(parseListenAddress('localhost:65535'), { host: 'localhost', port: 65535 })
  for (const bad of ['9101', ':9101', '127.0.0.1:', '127.0.0.1:65536', '::1:9101', 'host:port', '[::1]9101']) {
    t.throws(() => parseListenAddress(bad), { constructor: UsageError, message: `--metrics must be HOST:PORT (127.0.0.1:9101, [::1]:9101); got '${bad}'` }, bad)
  }
  t.match(parseDaemonArgs(['--cgroup', group, '--metrics', '127.0.0.1:9101']), { metrics: { host: '127.0.0.1', port: 9101 } })
  t.notOk('metrics' in parseDaemonArgs(['--cgroup', group]))
})

t.test('the daemon serves its metrics: the start line says where; a taken port is exit 1', { skip: noPsi }, async (t) => {
  const group = tempDir(t)
  writeFileSync(join(group, 'cgroup.procs'), '')
  const io = fakeIo()
  // Always below the line, a dry run: the check wakes it every 100 ms and kills nobody.
  const status = main(['daemon', '--cgroup', group, '--window', '2s', '--no-lock-memory', '--dry-run', '--min-available', '100%', '--metrics', '127.0.0.1:0'], io)
  while (!io.out.includes('"start"')) await new Promise((resolve) => setTimeout(resolve, 5))
  const start = JSON.parse(io.out.split('\n')[0])
  t.match(start, { event: 'start', metrics: /^http:\/\/127\.0\.0\.1:\d+\/metrics$/ })
  let text = ''
  // The checks below the line are counted as they come.
  while (!/\npidfd_reap_wakeups_total\{source="check"\} [1-9]/.test(text)) text = await (await fetch(start.metrics)).text()
  t.match(text, /\npidfd_reap_kills_total 0\n/)
  t.match(text, /\npidfd_reap_decisions_total\{reason="no victim in the cgroup"\} [1-9]\d*\n/, 'the decisions logged')
  t.ok(Number(/\npidfd_reap_mem_available_bytes (\d+)\n/.exec(text)?.[1]) > 0, 'the real MemAvailable')
  t.ok(Number(/\npidfd_reap_daemon_resident_bytes (\d+)\n/.exec(text)?.[1]) > 0, 'its own RSS')
  process.emit('SIGTERM', 'SIGTERM')
  t.equal(await status, 0)
  await t.rejects(fetch(start.metrics), 'the server is closed with the daemon')

  const busy = createServer()
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => busy.close())
  const taken = fakeIo()
  t.equal(await main(['daemon', '--cgroup', group, '--metrics', `127.0.0.1:${(busy.address() as AddressInfo).port}`], taken), 1)
  t.match(taken.err, /^pidfd-reap: cannot serve metrics on 127\.0\.0\.1:\d+: listen EADDRINUSE/)
  t.equal(taken.out, '', 'nothing started')
})

function fakeIo() {
  const io = { out: '', err: '', stdout: { write: (s: string) => (io.out += s) }, stderr: { write: (s: string) => (io.err += s) } }
  return io
}
