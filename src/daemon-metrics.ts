// `pidfd-reap daemon --metrics HOST:PORT`: the daemon's counters as
// Prometheus text (exposition format 0.0.4) on GET /metrics, which is how
// fleets watch node agents. Counters come from the daemon's log lines and
// wakeups; gauges (MemAvailable, the daemon's own RSS and locked bytes, the
// series' reap_dying_* vm events) are read when scraped.
import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { kibibyteField, type DaemonLogLine } from './daemon'
import type { ReapDyingStats } from './syscalls'

/** Upper bounds of the reaping-time histogram, in seconds. */
export const REAP_SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const

export interface MetricsSources {
  /** Where /proc is: meminfo and self/status are read from it. */
  procRoot: string
  /** The series' vm events, or null on a kernel without them. */
  vmstat: () => ReapDyingStats | null
}

type Labels = Record<string, string>

/** A label value as the exposition format escapes it. */
const escapeLabel = (value: string): string => value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
const labelText = (labels: Labels): string => {
  const pairs = Object.entries(labels).map(([name, value]) => `${name}="${escapeLabel(value)}"`)
  return pairs.length === 0 ? '' : `{${pairs.join(',')}}`
}

export class DaemonMetrics {
  #kills = 0
  #killFailures = 0
  #bytesReaped = 0
  readonly #reapBuckets: number[] = REAP_SECONDS_BUCKETS.map(() => 0)
  #reapCount = 0
  #reapSum = 0
  readonly #wakeups = new Map<string, number>([['psi', 0], ['check', 0]])
  readonly #decisions = new Map<string, number>()
  readonly #sources: MetricsSources

  constructor(sources: MetricsSources) {
    this.#sources = sources
  }

  /** A wakeup of the daemon (DaemonOptions.onWakeup). */
  wakeup(source: 'psi' | 'check'): void {
    this.#wakeups.set(source, this.#wakeups.get(source)! + 1)
  }

  /** Counts what a log line says: kills, bytes, reaping time, decisions. */
  observe(line: DaemonLogLine): void {
    if (line.event === 'kill') {
      this.#kills++
      this.#bytesReaped += line.bytesReaped
      // A unit's members are reaped in parallel: the time until the last one settled.
      const seconds = ('unit' in line ? line.unit.reapedMs : line.report.elapsedMs) / 1000
      this.#reapCount++
      this.#reapSum += seconds
      REAP_SECONDS_BUCKETS.forEach((bound, i) => {
        if (seconds <= bound) this.#reapBuckets[i]++
      })
    }
    if (line.event === 'kill-failed') this.#killFailures++
    if (line.event === 'pressure' || line.event === 'would-kill' || line.event === 'kill') {
      this.#decisions.set(line.reason, (this.#decisions.get(line.reason) ?? 0) + 1)
    }
  }

  /** The exposition text now. */
  render(): string {
    const out: string[] = []
    const metric = (name: string, type: string, help: string, samples: [Labels, number][], suffix = ''): void => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`)
      for (const [labels, value] of samples) out.push(`${name}${suffix}${labelText(labels)} ${value}`)
    }
    metric('pidfd_reap_kills_total', 'counter', 'Processes the daemon killed.', [[{}, this.#kills]])
    metric('pidfd_reap_kill_failures_total', 'counter', 'Kills that failed (the victim exited first, or the daemon was stopping).', [[{}, this.#killFailures]])
    metric('pidfd_reap_bytes_reaped_total', 'counter', 'Bytes the kills reaped.', [[{}, this.#bytesReaped]])
    out.push('# HELP pidfd_reap_reap_seconds Time to kill and reap one victim.', '# TYPE pidfd_reap_reap_seconds histogram')
    REAP_SECONDS_BUCKETS.forEach((bound, i) => out.push(`pidfd_reap_reap_seconds_bucket{le="${bound}"} ${this.#reapBuckets[i]}`))
    out.push(`pidfd_reap_reap_seconds_bucket{le="+Inf"} ${this.#reapCount}`, `pidfd_reap_reap_seconds_sum ${this.#reapSum}`, `pidfd_reap_reap_seconds_count ${this.#reapCount}`)
    metric('pidfd_reap_wakeups_total', 'counter', 'Wakeups of the daemon, by what woke it.', [...this.#wakeups].map(([source, n]) => [{ source }, n]))
    metric('pidfd_reap_decisions_total', 'counter', 'Decisions of the daemon, by reason.', [...this.#decisions].map(([reason, n]) => [{ reason }, n]))
    const meminfo = readFileSync(join(this.#sources.procRoot, 'meminfo'), 'utf8')
    metric('pidfd_reap_mem_available_bytes', 'gauge', 'MemAvailable of /proc/meminfo.', [[{}, kibibytes(meminfo, 'MemAvailable')]])
    const status = readFileSync(join(this.#sources.procRoot, 'self', 'status'), 'utf8')
    metric('pidfd_reap_daemon_resident_bytes', 'gauge', "The daemon's own resident memory (VmRSS).", [[{}, kibibytes(status, 'VmRSS')]])
    metric('pidfd_reap_daemon_locked_bytes', 'gauge', "The daemon's own locked memory (VmLck).", [[{}, kibibytes(status, 'VmLck')]])
    // With MLOCK_ONFAULT, VmLck counts whole mappings; smaps_rollup's Locked only what is in RAM.
    const rollup = readQuietly(join(this.#sources.procRoot, 'self', 'smaps_rollup'))
    if (rollup !== undefined) metric('pidfd_reap_daemon_locked_resident_bytes', 'gauge', "The daemon's own locked memory in RAM (smaps_rollup Locked).", [[{}, kibibytes(rollup, 'Locked')]])
    const vm = this.#sources.vmstat()
    if (vm) {
      metric('pidfd_reap_vm_reap_dying_total', 'counter', 'The series\' reap_dying_* events of /proc/vmstat.', Object.entries(vm).map(([event, n]) => [{ event }, n]))
    }
    return `${out.join('\n')}\n`
  }
}

/** A "Name:   N kB" field in bytes, 0 when absent. */
const kibibytes = (text: string, field: string): number => kibibyteField(text, field) ?? 0

function readQuietly(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return undefined // no smaps_rollup before Linux 4.14
  }
}

/** Serves `metrics` on GET /metrics at host:port; resolves once listening, with its URL. */
export async function serveMetrics(metrics: DaemonMetrics, host: string, port: number): Promise<{ server: Server; url: string }> {
  const server = createServer((request, response) => {
    if (request.method !== 'GET' || request.url!.split('?')[0] !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics\n')
      return
    }
    let body: string
    try {
      body = metrics.render()
    } catch (error) {
      response.writeHead(500, { 'content-type': 'text/plain' }).end(`${(error as Error).message}\n`)
      return
    }
    response.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(body)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address() as AddressInfo
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return { server, url: `http://${shown}:${address.port}/metrics` }
}
