// Artifacts from results.json: results.md (tables for the README) and two
// hand-written SVG charts. No dependencies.
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

/* eslint-disable @typescript-eslint/no-explicit-any */
type Results = any

const COLORS: Record<string, string> = {
  'exit (starved)': '#d62728',
  'exit (plain)': '#999999',
  process_mrelease: '#ff7f0e',
  'try_reap uncapped': '#1f77b4',
  'try_reap 1 MiB': '#9467bd',
  'try_reap 16 MiB': '#2ca02c',
  'try_reap 64 MiB': '#17becf',
  'killAndReap 16 MiB': '#000000',
}

const esc = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

function niceStep(range: number, ticks = 5): number {
  const raw = range / ticks
  const magnitude = 10 ** Math.floor(Math.log10(raw))
  const residual = raw / magnitude
  return (residual > 5 ? 10 : residual > 2 ? 5 : residual > 1 ? 2 : 1) * magnitude
}

interface Series {
  name: string
  points: [number, number][]
  dashed?: boolean
}

/** One panel: axes, grid, polylines. Returns SVG markup placed at (x0, y0). */
function panel(
  x0: number,
  y0: number,
  width: number,
  height: number,
  series: Series[],
  xMax: number,
  yMax: number,
  title: string,
  xLabel: string,
  yLabel: string,
  marks: { x: number; label: string }[] = [],
): string {
  const sx = (x: number): number => x0 + (Math.min(x, xMax) / xMax) * width
  const sy = (y: number): number => y0 + height - (Math.max(0, y) / yMax) * height
  const out: string[] = [`<text x="${x0 + width / 2}" y="${y0 - 12}" text-anchor="middle" font-weight="bold">${esc(title)}</text>`]
  const xStep = niceStep(xMax)
  for (let x = 0; x <= xMax + 1e-9; x += xStep) {
    out.push(`<line x1="${sx(x)}" y1="${y0}" x2="${sx(x)}" y2="${y0 + height}" stroke="#eee"/>`)
    out.push(`<text x="${sx(x)}" y="${y0 + height + 16}" text-anchor="middle">${+x.toFixed(3)}</text>`)
  }
  const yStep = niceStep(yMax)
  for (let y = 0; y <= yMax + 1e-9; y += yStep) {
    out.push(`<line x1="${x0}" y1="${sy(y)}" x2="${x0 + width}" y2="${sy(y)}" stroke="#eee"/>`)
    out.push(`<text x="${x0 - 6}" y="${sy(y) + 4}" text-anchor="end">${+y.toFixed(3)}</text>`)
  }
  out.push(`<rect x="${x0}" y="${y0}" width="${width}" height="${height}" fill="none" stroke="#333"/>`)
  out.push(`<text x="${x0 + width / 2}" y="${y0 + height + 34}" text-anchor="middle">${esc(xLabel)}</text>`)
  out.push(
    `<text transform="translate(${x0 - 46},${y0 + height / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`,
  )
  for (const mark of marks.filter((m) => m.x <= xMax)) {
    out.push(`<line x1="${sx(mark.x)}" y1="${y0}" x2="${sx(mark.x)}" y2="${y0 + height}" stroke="#d62728" stroke-dasharray="2,3"/>`)
    out.push(`<text x="${sx(mark.x) - 4}" y="${y0 + 14}" text-anchor="end" fill="#d62728">${esc(mark.label)}</text>`)
  }
  for (const s of series) {
    // Step-free polyline; points beyond xMax are clipped to the edge.
    const pts = s.points.filter(([x]) => x >= 0)
    const clipped = pts.filter(([x]) => x <= xMax)
    const next = pts.find(([x]) => x > xMax)
    if (next) clipped.push([xMax, next[1]])
    const d = clipped.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ')
    out.push(
      `<polyline points="${d}" fill="none" stroke="${COLORS[s.name] ?? '#444'}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6,4"' : ''}/>`,
    )
  }
  return out.join('\n')
}

function legend(x: number, y: number, names: string[]): string {
  return names
    .map(
      (name, i) =>
        `<line x1="${x}" y1="${y + i * 18}" x2="${x + 24}" y2="${y + i * 18}" stroke="${COLORS[name] ?? '#444'}" stroke-width="3"/>` +
        `<text x="${x + 30}" y="${y + i * 18 + 4}">${esc(name)}</text>`,
    )
    .join('\n')
}

function svg(width: number, height: number, body: string): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
    `font-family="sans-serif" font-size="12">\n<rect width="100%" height="100%" fill="white"/>\n${body}\n</svg>\n`
  )
}

/** The run whose t90 is the median among the method's measured rounds. */
function medianRun(results: Results, size: number, name: string): any {
  const runs = results.raw
    .filter((r: any) => !r.warmup && r.sizeMiB === size && r.name === name)
    .sort((a: any, b: any) => (a.figures.t90 ?? Infinity) - (b.figures.t90 ?? Infinity))
  return runs[(runs.length - 1) >> 1]
}

export function memoryFreedSvg(results: Results): string {
  const size = results.config.referenceSizeMiB
  const names = Object.keys(results.summary[size] ?? {})
  const runs = names.map((name) => medianRun(results, size, name)).filter(Boolean)
  const series: Series[] = runs.map((r: any) => ({
    name: r.name,
    points: r.curve.map(([t, mib]: [number, number]) => [t / 1000, mib]),
    dashed: r.name.startsWith('exit'),
  }))
  const yMax = Math.ceil((size * 1.05) / 64) * 64
  const longest = Math.max(...runs.map((r: any) => r.figures.t100 ?? r.curve[r.curve.length - 1][0])) / 1000
  const reapers = runs.filter((r: any) => !r.name.startsWith('exit'))
  const zoom = Math.max(...reapers.map((r: any) => r.figures.t100 ?? r.curve[r.curve.length - 1][0])) * 1.15
  const starve = results.config.starveMs / 1000
  const k = results.kernel
  const body = [
    `<text x="20" y="24" font-size="15" font-weight="bold">Memory back after SIGKILL: a starved ${size} MiB victim (${esc(k.release)}, QEMU ${esc(results.accelerator)})</text>`,
    panel(80, 70, 470, 330, series, Math.max(longest * 1.05, starve * 1.1), yMax, 'whole run', 'seconds since SIGKILL', 'MiB freed (victim RSS drop)', [
      { x: starve, label: 'busy loop ends' },
    ]),
    panel(
      640,
      70,
      470,
      330,
      series.map((s) => ({ ...s, points: s.points.map(([t, m]) => [t * 1000, m] as [number, number]) })),
      zoom,
      yMax,
      `first ${zoom.toFixed(0)} ms`,
      'milliseconds since SIGKILL',
      'MiB freed',
    ),
    legend(1130, 80, series.map((s) => s.name)),
    `<text x="20" y="${460}" fill="#555">Median round of ${results.config.rounds}; the exit line is flat until the busy loop starving the victim ends ${results.config.starveMs} ms after the kill.</text>`,
  ].join('\n')
  return svg(1330, 480, body)
}

export function latencySvg(results: Results): string {
  const caps = ['try_reap 1 MiB', 'try_reap 16 MiB', 'try_reap 64 MiB', 'try_reap uncapped']
  const sizes = Object.keys(results.summary).map(Number)
  const x0 = 90
  const y0 = 60
  const width = 560
  const height = 340
  const values: number[] = []
  for (const size of sizes) {
    for (const cap of caps) {
      const s = results.summary[size][cap]
      if (s) values.push(s.latencyP50Us.median, s.latencyMaxUs.median)
    }
  }
  const known = values.filter((v) => typeof v === 'number' && v > 0)
  const lo = 10 ** Math.floor(Math.log10(Math.min(...known)))
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...known)))
  const sy = (v: number): number => y0 + height - ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * height
  const sx = (i: number): number => x0 + ((i + 0.5) / caps.length) * width
  const out: string[] = [
    `<text x="20" y="24" font-size="15" font-weight="bold">try_reap_dying_process: per-call latency against the cap (${esc(results.kernel.release)}, QEMU ${esc(results.accelerator)})</text>`,
    `<rect x="${x0}" y="${y0}" width="${width}" height="${height}" fill="none" stroke="#333"/>`,
  ]
  for (let v = lo; v <= hi * 1.0001; v *= 10) {
    out.push(`<line x1="${x0}" y1="${sy(v)}" x2="${x0 + width}" y2="${sy(v)}" stroke="#eee"/>`)
    out.push(`<text x="${x0 - 6}" y="${sy(v) + 4}" text-anchor="end">${v >= 1000 ? `${v / 1000} ms` : `${v} µs`}</text>`)
  }
  caps.forEach((cap, i) => out.push(`<text x="${sx(i)}" y="${y0 + height + 18}" text-anchor="middle">${cap.replace('try_reap ', '')}</text>`))
  out.push(`<text x="${x0 + width / 2}" y="${y0 + height + 38}" text-anchor="middle">max_bytes per call</text>`)
  const palette = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd']
  sizes.forEach((size, k) => {
    const color = palette[k % palette.length]
    const dx = (k - (sizes.length - 1) / 2) * 10
    const p50: string[] = []
    caps.forEach((cap, i) => {
      const s = results.summary[size][cap]
      if (!s || !s.latencyP50Us.median) return
      const x = sx(i) + dx
      p50.push(`${x},${sy(s.latencyP50Us.median)}`)
      if (s.latencyMaxUs.median) {
        out.push(`<line x1="${x}" y1="${sy(s.latencyP50Us.median)}" x2="${x}" y2="${sy(s.latencyMaxUs.median)}" stroke="${color}"/>`)
        out.push(`<line x1="${x - 4}" y1="${sy(s.latencyMaxUs.median)}" x2="${x + 4}" y2="${sy(s.latencyMaxUs.median)}" stroke="${color}"/>`)
      }
      if (s.latencyP99Us.median) out.push(`<rect x="${x - 3}" y="${sy(s.latencyP99Us.median) - 3}" width="6" height="6" fill="${color}"/>`)
      out.push(`<circle cx="${x}" cy="${sy(s.latencyP50Us.median)}" r="4" fill="white" stroke="${color}" stroke-width="2"/>`)
    })
    out.push(`<polyline points="${p50.join(' ')}" fill="none" stroke="${color}" stroke-width="1.5"/>`)
    out.push(`<line x1="${x0 + width + 20}" y1="${y0 + 10 + k * 18}" x2="${x0 + width + 44}" y2="${y0 + 10 + k * 18}" stroke="${color}" stroke-width="3"/>`)
    out.push(`<text x="${x0 + width + 50}" y="${y0 + 14 + k * 18}">${size >= 1024 ? `${size / 1024} GiB` : `${size} MiB`} victim</text>`)
  })
  const ly = y0 + 30 + sizes.length * 18
  out.push(`<circle cx="${x0 + width + 32}" cy="${ly}" r="4" fill="white" stroke="#333" stroke-width="2"/><text x="${x0 + width + 50}" y="${ly + 4}">p50</text>`)
  out.push(`<rect x="${x0 + width + 29}" y="${ly + 15}" width="6" height="6" fill="#333"/><text x="${x0 + width + 50}" y="${ly + 22}">p99</text>`)
  out.push(`<line x1="${x0 + width + 28}" y1="${ly + 36}" x2="${x0 + width + 36}" y2="${ly + 36}" stroke="#333"/><text x="${x0 + width + 50}" y="${ly + 40}">max</text>`)
  out.push(`<text x="20" y="${y0 + height + 64}" fill="#555">Calls that freed memory, medians over ${results.config.rounds} rounds; starved victims, reaper on CPU 0.</text>`)
  return svg(820, y0 + height + 80, out.join('\n'))
}

// ---------------------------------------------------------------------------

const fmtMs = (v: number | null | undefined): string => (v === null || v === undefined ? '–' : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(v < 10 ? 2 : 1)} ms`)
const fmtUs = (v: number | null | undefined): string => (v === null || v === undefined ? '–' : v >= 1000 ? `${(v / 1000).toFixed(2)} ms` : `${v.toFixed(0)} µs`)
const fmtRate = (v: number | null | undefined): string => (v === null || v === undefined ? '–' : `${(v / 2 ** 30).toFixed(2)} GiB/s`)
const fmtSize = (size: number): string => (size >= 1024 ? `${size / 1024} GiB` : `${size} MiB`)

function spreadText(s: any, fmt: (v: number) => string): string {
  if (!s || s.median === null) return '–'
  return s.min === s.max ? fmt(s.median) : `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`
}

const RATIO_TEXT: Record<string, string> = {
  try_reap_vs_mrelease_throughput: 'try_reap (uncapped) throughput / process_mrelease throughput',
  capped_1MiB_total_vs_uncapped: 'total time of 1 MiB calls / one uncapped call',
  p99_1MiB_vs_64MiB: 'p99 latency, 1 MiB call / 64 MiB call',
  starved_wait_vs_killAndReap_90pct: 'starved victim, time to 90 % freed: waiting for exit / killAndReap',
  js_vs_c_call: 'one binding call from JS / the same syscall from C (guest)',
}

const fmtRatio = (v: number): string => `${v.toFixed(v < 10 ? 3 : 1)}×`

/** The `bounds` section (bench/bounds.ts): the v2 ABI's bounds, with the settings they were measured with. */
export function boundsMarkdown(b: Results): string {
  const s = b.settings
  const k = b.kernel
  const lines: string[] = []
  const changed = k.patchesChangedSince?.length ? `; the work tree has changed ${k.patchesChangedSince.join(', ')} since` : ''
  const build = k.buildKey ? `, build ${String(k.buildKey).slice(0, 12)} of the series in kernel-patch/${changed}` : ''
  lines.push('### Bounds of a call (v2 ABI)')
  lines.push('')
  lines.push(
    `Measured ${b.generatedAt.slice(0, 10)} in a QEMU ${b.accelerator} guest (${b.machine.cpus} vCPUs, ${(b.machine.memoryBytes / 2 ** 30).toFixed(1)} GiB) ` +
      `running Linux ${k.release} (${k.version}${build}, syscall ${k.tryReapSyscallNr}); ${(b.durationMs / 60000).toFixed(1)} min. ` +
      `${s.roundsMeasured} measured rounds (asked: ${s.rounds}) after ${s.warmup} warm-up round${s.warmup === 1 ? '' : 's'}; ` +
      `${b.invalidRounds.length} round${b.invalidRounds.length === 1 ? '' : 's'} repeated because a victim ran or a run failed. ` +
      `Each round runs the ${Object.keys(b.arms).length} victims below once, ${s.order.replace(/^the 11 runs of a round /, '')} (seed ${s.seed}). ` +
      `Victims: ${s.victims}. Check: ${s.victimCheck}. Placement: ${s.placement}. Calls: ${s.calls}. Timing: ${s.timing}. ` +
      `p99: ${s.p99}. Ratios of totals and throughputs: median of the per-round ratios. Intervals: ${s.interval}.` +
      (s.hostLoadAverage ? ` Host load average when the guest started: ${s.hostLoadAverage}.` : ''),
  )
  lines.push('')
  lines.push('| ratio | value | 95 % interval | goal | verdict |')
  lines.push('|---|---:|---:|---:|---|')
  for (const [key, value] of Object.entries<number>(b.ratios)) {
    const [lo, hi] = b.ratiosCi95[key]
    const goal = Number(String(b.goals[key]).split(' ')[1])
    const verdict = `${b.pass[key] ? 'pass' : '**fail**'}${lo <= goal && goal <= hi ? ' (the interval contains the goal)' : ''}`
    lines.push(`| \`${key}\`: ${b.ratiosNotes[key] ?? ''} | ${fmtRatio(value)} | ${fmtRatio(lo)}–${fmtRatio(hi)} | ${b.goals[key]} | ${verdict} |`)
  }
  const quiet = Object.entries<any>(b.details).filter(([, d]) => d.uncontendedRounds)
  if (quiet.length) {
    lines.push('')
    lines.push(
      'The same per-round ratios from only the rounds where neither run saw its vCPU slowed (see "Host contention" below; not the estimator of the verdicts): ' +
        quiet.map(([key, d]) => `\`${key}\` ${d.uncontendedRounds.median === null ? '–' : fmtRatio(d.uncontendedRounds.median)} (${d.uncontendedRounds.rounds} rounds)`).join(', ') +
        '.',
    )
  }
  const few = Object.entries<any>(b.details).filter(([, d]) => d.atLeast1000Calls === false)
  if (few.length) lines.push(`\nFewer than 1000 pooled calls on a side of ${few.map(([key]) => `\`${key}\``).join(', ')}: that p99 is close to a maximum.`)
  lines.push('')
  lines.push('| victim (run) | cap | calls / round | pooled calls | call p50 / p99 / max | EAGAIN share | in-syscall total (median) | reaped (median) | THP | VMAs | setup |')
  lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
  for (const [id, a] of Object.entries<any>(b.arms)) {
    const cap = a.method === 'mrelease' ? 'process_mrelease' : a.capBytes ? (a.capBytes >= 2 ** 20 ? `${a.capBytes / 2 ** 20} MiB` : `${a.capBytes / 1024} KiB`) : 'none'
    const latency = a.capBytes ? `${fmtUs(a.p50Us)} / ${fmtUs(a.p99Us)} / ${fmtUs(a.maxUs)}` : `max ${fmtUs(a.maxUs)}`
    lines.push(
      `| \`${id}\`: ${a.what} | ${cap} | ${a.callsPerRound} | ${a.pooledCalls} | ${latency} | ` +
        `${(a.eagainShare * 100).toFixed(1)} % | ${fmtMs(a.totalMsMedian)} | ${a.reapedMiBMedian.toFixed(1)} MiB | ${a.thpMiBMedian} MiB | ${a.vmas} | ${fmtMs(a.setupMsMedian)} |`,
    )
  }
  lines.push('')
  if (b.anomalies.length) {
    lines.push('Kernel answers outside the v2 ABI (all runs, warm-up and repeated rounds included):')
    lines.push('')
    for (const a of b.anomalies) lines.push(`- \`${a.arm}\` (${a.runs} runs): ${a.what}`)
  } else {
    lines.push('No kernel answer outside the v2 ABI in any run (results within the cap or one THP, 0 stays 0, pages_reaped and the RSS drop equal to the results).')
  }
  const hc = b.hostContention
  if (hc) {
    lines.push('')
    lines.push(
      `Host contention: a fixed user-space loop timed just before each kill and after each last call ran at a median ${hc.median.toFixed(2)}× its best time ` +
        `(max ${hc.max.toFixed(2)}×); ${(hc.shareAbove1_25 * 100).toFixed(0)} % of the runs saw it above 1.25×, ${(hc.shareAbove1_5 * 100).toFixed(0)} % above 1.5× ` +
        '(under TCG the vCPU thread then shared a host core with other work: in-syscall times of that run are inflated by up to that factor; ' +
        'relative to the fastest loop of the same run, so contention that lasted the whole run would not show).',
    )
  }
  if (b.oddities?.length) {
    lines.push('')
    lines.push(
      `${b.oddities.length} run${b.oddities.length === 1 ? '' : 's'} needed a streak of 1000 or more EAGAIN calls in a row ` +
        `(${b.oddities.map((o: any) => `\`${o.arm}\` round ${o.round}: ${o.eagain} EAGAIN of ${o.calls} calls`).join('; ')}); details in results.json, bounds.oddities.`,
    )
  }
  for (const bad of b.invalidRounds) lines.push(`\nRepeated round (attempt ${bad.attempt}): ${bad.reasons.join('; ')}`)
  return `${lines.join('\n')}\n`
}

export function resultsMarkdown(results: Results): string {
  if (!results.summary) return `<!-- generated by bench/report.ts from bench/results.json; do not edit -->\n${results.bounds ? boundsMarkdown(results.bounds) : ''}`
  const k = results.kernel
  const g = results.machine.guest
  const h = results.machine.host
  const lines: string[] = []
  lines.push(`<!-- generated by bench/report.ts from bench/results.json; do not edit -->`)
  lines.push(
    `Measured ${results.generatedAt.slice(0, 10)} in a QEMU ${results.accelerator} guest (${g.cpus} vCPUs, ${(g.memoryBytes / 2 ** 30).toFixed(1)} GiB) ` +
      `running Linux ${k.release} with the try_reap_dying_process series (sha256 ${k.seriesSha256.slice(0, 12)}, syscall ${k.tryReapSyscallNr})` +
      (h ? ` on a ${h.cpus}-core ${h.model} host` : '') +
      `. Victims hold a mix of 4 KiB anonymous, THP and dirtied private file pages (${JSON.stringify(results.config.shares)}); ` +
      `"starved" victims (SCHED_FIFO 1) share CPU 1 with a SCHED_FIFO 50 busy loop (RT throttling off), the reaper runs on CPU 0. ` +
      `"Back" = MemFree risen by 50/90/97 % of what the victim held (its RSS reads 0 as soon as an exiting task drops its mm, before the pages are freed), sampled every 1 ms from CPU 1. ` +
      `"exit (starved)": the busy loop is ended ${results.config.starveMs} ms after the kill, so its times are that delay + the exit. ` +
      `Full run: ${(results.durationMs / 60000).toFixed(1)} min. Emulated (TCG): absolute times are several times a real machine's; the ratios are the point.`,
  )
  lines.push('')
  lines.push(`| ratio (${fmtSize(results.config.referenceSizeMiB)} victim) | value |`)
  lines.push('|---|---:|')
  for (const [name, value] of Object.entries(results.ratios)) {
    lines.push(`| \`${name}\`: ${RATIO_TEXT[name] ?? ''} | ${value === null ? '–' : `${value}×`} |`)
  }
  if (results.ratios_host?.js_vs_c_call !== null && results.ratios_host?.js_vs_c_call !== undefined) {
    lines.push(`| \`js_vs_c_call\` on the host (process_mrelease on a live process, EINVAL) | ${results.ratios_host.js_vs_c_call}× |`)
  }
  for (const size of Object.keys(results.summary).map(Number)) {
    lines.push('')
    lines.push(`**${fmtSize(size)} victim** — median (min–max) over the measured rounds; times from SIGKILL`)
    lines.push('')
    lines.push('| method | 50 % back | 90 % back | 100 % back | 90 % (victim RSS) | victim exited | throughput | in-syscall rate | calls | largest call | call p50 / p99 / max |')
    lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    for (const [name, s] of Object.entries<any>(results.summary[size])) {
      const latency = s.latencyP50Us.median === null ? '–' : `${fmtUs(s.latencyP50Us.median)} / ${fmtUs(s.latencyP99Us.median)} / ${fmtUs(s.latencyMaxUs.median)}`
      lines.push(
        `| ${name} | ${spreadText(s.t50, fmtMs)} | ${spreadText(s.t90, fmtMs)} | ${spreadText(s.t100, fmtMs)} | ${fmtMs(s.t90Rss?.median)} | ` +
          `${s.exitMs.median === null ? 'not yet' : fmtMs(s.exitMs.median)} | ${fmtRate(s.bytesPerSec.median)} | ${fmtRate(s.syscallBytesPerSec.median)} | ` +
          `${s.reapCalls.median ?? '–'} | ${s.maxCallBytes?.median ? `${(s.maxCallBytes.median / 2 ** 20).toFixed(1)} MiB` : '–'} | ${latency} |`,
      )
    }
  }
  const busy = results.ebusy
  if (busy?.attempts) {
    const best = [...busy.attempts].sort((a: any, b: any) => b.busyCalls - a.busyCalls)[0]
    lines.push('')
    if (best && best.busyCalls > 0) {
      lines.push(
        `EBUSY (victim's thread holds its mmap_lock for write, starved): ${best.busyCalls} of ${best.calls} calls in ${busy.durationMs} ms returned EBUSY; ` +
          `latency p50 ${fmtUs(best.ebusyLatencyUs.p50)}, p99 ${fmtUs(best.ebusyLatencyUs.p99)}, max ${fmtUs(best.ebusyLatencyUs.max)}.`,
      )
    } else {
      lines.push(`EBUSY: not provoked in ${busy.attempts.length} attempts.`)
    }
    const blocked = busy.mreleaseBlocked
    if (blocked?.callMs !== null && blocked?.callMs !== undefined) {
      lines.push(`process_mrelease on such a victim blocked ${fmtMs(blocked.callMs)} (the lock holder was starved for ${blocked.releaseAfterMs} ms).`)
    }
  }
  const cc = results.callCost
  if (cc?.guest?.c) {
    lines.push('')
    lines.push(
      `One syscall on the error fast path: guest C ${cc.guest.c.median.toFixed(0)} ns, JS (raw binding) ${cc.guest.js.median.toFixed(0)} ns` +
        (cc.host?.c ? `; host C ${cc.host.c.median.toFixed(0)} ns, JS ${cc.host.js.median.toFixed(0)} ns (process_mrelease, EINVAL)` : '') +
        '.',
    )
  }
  if (results.bounds) {
    lines.push('')
    lines.push(boundsMarkdown(results.bounds).trimEnd())
  }
  lines.push('')
  lines.push('![memory freed after SIGKILL](bench/memory-freed.svg)')
  lines.push('![per-call latency against the cap](bench/latency-vs-cap.svg)')
  return `${lines.join('\n')}\n`
}

/** results.json's text: indented, but the `bounds` section compact (one line per key). */
export function resultsJson(results: Results): string {
  const { bounds, ...rest } = results
  let text = JSON.stringify(rest, null, 1)
  if (bounds !== undefined) {
    const body = Object.entries(bounds)
      .map(([key, value]) => `\n  ${JSON.stringify(key)}: ${JSON.stringify(value)}`)
      .join(',')
    text = `${text.replace(/\n}$/, '')},\n "bounds": {${body}\n }\n}`
  }
  return `${text}\n`
}

export function writeArtifacts(results: Results, dir: string): void {
  writeFileSync(join(dir, 'results.json'), resultsJson(results))
  regenerate(dir)
}

/** Puts a new `bounds` section into results.json (keeping everything else), then rewrites the rest. */
export function mergeBounds(bounds: Results, dir: string): void {
  const file = join(dir, 'results.json')
  const results = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {}
  writeArtifacts({ ...results, bounds }, dir)
}

/** Rewrites results.md and the charts from results.json. */
export function regenerate(dir: string): void {
  const results = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8'))
  writeFileSync(join(dir, 'results.md'), resultsMarkdown(results))
  if (!results.raw) return // only the bounds part has run
  writeFileSync(join(dir, 'memory-freed.svg'), memoryFreedSvg(results))
  writeFileSync(join(dir, 'latency-vs-cap.svg'), latencySvg(results))
}
