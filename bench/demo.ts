// npm run demo: inside the patched guest, a starved victim of a few hundred
// MiB is killed three ways, with the memory coming back shown live, then a
// comparison table. Uses the victims module and the benchmark's measurement.
import { readFileSync } from 'node:fs'
import { features } from 'pidfd-reap'
import { MiB, mixOf, pinProcess, procView, startScenario, unthrottleRt } from '../victims'
import { figures, type Figures } from './figures'
import { measure, smallFreeLists, type Method } from './measure'

interface DemoMethod {
  label: string
  method: Method
  /** Ends the busy loop this long after the kill. */
  releaseAfterMs?: number
}

const BAR = 30

function bar(fraction: number): string {
  const filled = Math.max(0, Math.min(BAR, Math.round(fraction * BAR)))
  return `[${'#'.repeat(filled)}${'.'.repeat(BAR - filled)}]`
}

const secs = (ms: number | null): string => (ms === null ? '—' : ms < 1000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(2)} s`)

export async function runDemo(env = process.env): Promise<number> {
  const out = (text: string): boolean => process.stdout.write(text)
  const tryReap = features().tryReap
  if (!tryReap) {
    out('demo: this kernel has no try_reap_dying_process (/sys/kernel/mm/reap_dying/syscall_nr missing).\n')
    out('demo: run it through `npm run demo`, which boots the patched kernel under QEMU.\n')
    return 1
  }
  const sizeMiB = Number(env.PIDFD_REAP_DEMO_MIB || 384)
  const starveMs = Number(env.PIDFD_REAP_DEMO_STARVE_MS || 3000)
  const live = env.PIDFD_REAP_DEMO_TTY ? env.PIDFD_REAP_DEMO_TTY === '1' : process.stdout.isTTY === true
  const kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()
  const methods: DemoMethod[] = [
    { label: 'wait for exit', method: { kind: 'wait' }, releaseAfterMs: starveMs },
    { label: 'process_mrelease', method: { kind: 'mrelease' } },
    { label: 'try_reap, 16 MiB chunks', method: { kind: 'killAndReap', chunkBytes: 16 * MiB } },
  ]

  out(`\nLinux ${kernel}: try_reap_dying_process is syscall ${tryReap.syscallNr}.\n`)
  out(
    `Each victim holds ${sizeMiB} MiB (4 KiB pages, huge pages and dirtied private file pages) and is pinned to\n` +
      `CPU 1, where a SCHED_FIFO busy loop leaves it no CPU time: once killed it cannot run its exit.\n` +
      `The reaper runs on CPU 0. For "wait for exit" the busy loop is stopped ${starveMs / 1000} s after the kill.\n\n`,
  )

  pinProcess(0)
  const restoreRt = unthrottleRt()
  const restoreFreeLists = smallFreeLists() // so that MemFree shows what an exit frees when it frees it
  const rows: { label: string; f: Figures }[] = []
  try {
    for (const { label, method, releaseAfterMs } of methods) {
      const s = await startScenario('starved', { memory: mixOf(sizeMiB), victimCpu: 1, maxStarveSeconds: 120 })
      try {
        const { pid, heldBytes } = s.victim
        const rssBefore = procView(pid).rssBytes
        let startedAt = performance.now()
        let killed = false
        let lastDecile = -1
        const show = (final = false): void => {
          const view = procView(pid)
          const freed = Math.max(0, rssBefore - view.rssBytes)
          const fraction = Math.min(1, freed / heldBytes)
          const state = !view.exists || !view.hasMm ? 'exited' : 'killed, cannot exit'
          const clock = killed ? secs(performance.now() - startedAt).padStart(8) : 'starting'
          const text = `${label.padEnd(24)} ${bar(fraction)} ${String(Math.round(freed / MiB)).padStart(5)} / ${Math.round(heldBytes / MiB)} MiB back  ${clock}  victim: ${killed ? state : 'alive'}`
          if (live) out(`\r\x1b[K${text}${final ? '\n' : ''}`)
          else {
            const decile = Math.floor(fraction * 10)
            if (final || decile !== lastDecile) out(`${text}\n`)
            lastDecile = decile
          }
        }
        show()
        const timer = setInterval(show, 100)
        let f: Figures
        try {
          const onKill = (): void => {
            startedAt = performance.now()
            killed = true
          }
          f = figures(await measure(s.victim, method, { starverPid: s.starver!.pid, releaseAfterMs, settleMs: 50, onKill }), true)
        } finally {
          clearInterval(timer)
        }
        show(true)
        rows.push({ label, f })
      } finally {
        await s.cleanup()
      }
    }
  } finally {
    restoreFreeLists()
    restoreRt()
  }

  out(`\nTime from SIGKILL until the victim's memory was back (MemFree, sampled every 1 ms):\n\n`)
  const header = ['method', '50 % back', '90 % back', '100 % back', 'victim exited', 'back while stuck']
  const table = rows.map(({ label, f }) => {
    return [
      label,
      secs(f.t50),
      secs(f.t90),
      secs(f.t100),
      f.exitMs === null ? 'not yet (starved)' : secs(f.exitMs),
      `${Math.round((Math.min(f.freedWhileStuckFraction ?? 0, 1) * f.heldBytes) / MiB)} MiB`,
    ]
  })
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i].length)))
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('   ')
  out(`${line(header)}\n${widths.map((w) => '-'.repeat(w)).join('   ')}\n${table.map(line).join('\n')}\n`)
  const wait = rows[0].f
  const reap = rows[rows.length - 1].f
  if (wait.t90 !== null && reap.t90 !== null) {
    out(`\ntry_reap had 90 % of the memory back ${(wait.t90 / reap.t90).toFixed(0)}× sooner than waiting for the exit, while the victim was still stuck.\n`)
  }
  out('(QEMU TCG emulation: absolute times are several times slower than on real hardware.)\n\n')
  return 0
}
