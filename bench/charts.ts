// The charts of results.md, hand-written SVG from results.json (no
// dependencies): memory back over time (one panel per method, median and
// min–max band over rounds), the starvation-length sweep, and the call
// latency against the cap per memory kind.
/* eslint-disable @typescript-eslint/no-explicit-any */
type Results = any

const esc = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
const f1 = (v: number): string => v.toFixed(1)

export function niceStep(range: number, ticks = 5): number {
  const raw = range / ticks
  const magnitude = 10 ** Math.floor(Math.log10(raw))
  const residual = raw / magnitude
  return (residual > 5 ? 10 : residual > 2 ? 5 : residual > 1 ? 2 : 1) * magnitude
}

/** A nice upper end at or above `max`. */
const niceMax = (max: number): number => Math.ceil(max / niceStep(max)) * niceStep(max)

function svg(width: number, height: number, body: string[]): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">\n` +
    `<rect width="100%" height="100%" fill="white"/>\n${body.join('\n')}\n</svg>\n`
  )
}

interface Frame {
  x0: number
  y0: number
  w: number
  h: number
  xMax: number
  yMax: number
}

const sx = (f: Frame, x: number): number => f.x0 + (Math.max(0, Math.min(x, f.xMax)) / f.xMax) * f.w
const sy = (f: Frame, y: number): number => f.y0 + f.h - (Math.max(0, Math.min(y, f.yMax)) / f.yMax) * f.h

/** Axes with ticks and labels. */
function axes(f: Frame, xLabel: string, yLabel: string | null, xTick = (x: number) => `${+x.toFixed(3)}`): string[] {
  const out: string[] = []
  const xs = niceStep(f.xMax)
  for (let x = 0; x <= f.xMax + 1e-9; x += xs) {
    out.push(`<line x1="${f1(sx(f, x))}" y1="${f.y0}" x2="${f1(sx(f, x))}" y2="${f.y0 + f.h}" stroke="#eee"/>`)
    out.push(`<text x="${f1(sx(f, x))}" y="${f.y0 + f.h + 15}" text-anchor="middle">${xTick(x)}</text>`)
  }
  const ys = niceStep(f.yMax)
  for (let y = 0; y <= f.yMax + 1e-9; y += ys) {
    out.push(`<line x1="${f.x0}" y1="${f1(sy(f, y))}" x2="${f.x0 + f.w}" y2="${f1(sy(f, y))}" stroke="#eee"/>`)
    out.push(`<text x="${f.x0 - 5}" y="${f1(sy(f, y) + 4)}" text-anchor="end">${+y.toFixed(3)}</text>`)
  }
  out.push(`<rect x="${f.x0}" y="${f.y0}" width="${f.w}" height="${f.h}" fill="none" stroke="#333"/>`)
  out.push(`<text x="${f.x0 + f.w / 2}" y="${f.y0 + f.h + 32}" text-anchor="middle">${esc(xLabel)}</text>`)
  if (yLabel) out.push(`<text transform="translate(${f.x0 - 44},${f.y0 + f.h / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`)
  return out
}

/** The value of a cumulative curve at time t: its last point at or before t (0 before it starts, its last value after it ends). */
function valueAt(curve: number[][], t: number, column: number): number {
  let v = 0
  for (const p of curve) {
    if (p[0] > t) break
    v = p[column]
  }
  return v
}

function quantiles(values: number[]): { min: number; median: number; max: number } {
  const s = [...values].sort((a, b) => a - b)
  const mid = s.length >> 1
  return { min: s[0], median: s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2, max: s[s.length - 1] }
}

/** Runs (figures + curve) of one arm at one size, valid and measured. */
function armRuns(results: Results, size: number, arm: string): { figures: any; curve: number[][] }[] {
  const cols: string[] = results.memory.runs.columns
  const at = (name: string): number => cols.indexOf(name)
  return results.memory.runs.rows
    .filter((r: unknown[]) => r[at('sizeMiB')] === size && r[at('arm')] === arm && !r[at('warmup')] && r[at('valid')])
    .map((r: unknown[]) => ({ figures: r[at('figures')], curve: r[at('curve')] }))
}

const PANELS = ['exit (plain)', 'exit, starved 1 s', 'process_mrelease', 'C loop', 'killAndReap']

export function memoryBackSvg(results: Results): string {
  const size = results.memory.referenceSizeMiB
  const panels = PANELS.map((arm) => ({ arm, runs: armRuns(results, size, arm) })).filter((p) => p.runs.length)
  const allCurves = panels.flatMap((p) => p.runs.map((r) => r.curve))
  const xMaxMs = Math.max(...allCurves.map((c) => c[c.length - 1][0]))
  const yMaxData = Math.max(...allCurves.flatMap((c) => c.map((p) => Math.max(p[1], p[2]))))
  const xMax = niceMax(xMaxMs / 1000)
  const yMax = niceMax(Math.max(yMaxData, size))
  const w = 250
  const h = 200
  const body: string[] = [
    `<text x="20" y="24" font-size="15" font-weight="bold">Memory back after SIGKILL: ${size} MiB victims, median and min–max over ${results.settings.memory.rounds} rounds (${esc(results.kernel.release)}, QEMU ${esc(results.accelerator)})</text>`,
  ]
  panels.forEach((p, i) => {
    const f: Frame = { x0: 70 + i * (w + 30), y0: 60, w, h, xMax, yMax }
    const starved = p.arm !== 'exit (plain)'
    // Stuck period: until the median last look at the victim before it could run.
    if (starved) {
      const until = quantiles(p.runs.map((r) => r.figures.stuckUntilMs ?? 0)).median / 1000
      const reaper = !p.arm.startsWith('exit')
      const end = reaper ? xMax : until
      body.push(`<rect x="${f.x0}" y="${f.y0}" width="${f1(sx(f, end) - f.x0)}" height="${h}" fill="#fde2e2"/>`)
      const frac = quantiles(p.runs.map((r) => r.figures.freedWhileStuckFraction ?? 0)).median
      // Where the curves are not: bottom right for reapers (done early), bottom left for a starved exit.
      const [lx, anchor] = reaper ? [f.x0 + w - 6, 'end'] : [f.x0 + 6, 'start']
      body.push(
        `<text x="${lx}" y="${f.y0 + h - 22}" fill="#a33" font-size="11" text-anchor="${anchor}">${reaper ? 'victim stuck throughout' : `victim stuck ${until.toFixed(2)} s`}:</text>`,
        `<text x="${lx}" y="${f.y0 + h - 8}" fill="#a33" font-size="11" text-anchor="${anchor}">${(100 * frac).toFixed(0)} % back while stuck (median)</text>`,
      )
    }
    body.push(...axes(f, 'seconds since SIGKILL', i === 0 ? 'MiB back (MemFree rise)' : null))
    body.push(`<text x="${f.x0 + w / 2}" y="${f.y0 - 8}" text-anchor="middle" font-weight="bold">${esc(p.arm)}</text>`)
    const grid = Array.from({ length: 161 }, (_, k) => (k / 160) * xMax * 1000)
    const lastT = Math.max(...p.runs.map((r) => r.curve[r.curve.length - 1][0]))
    const pts = grid.filter((t) => t <= lastT)
    const at = (col: number) => pts.map((t) => quantiles(p.runs.map((r) => valueAt(r.curve, t, col))))
    const memFree = at(1)
    const band = [...pts.map((t, k) => `${f1(sx(f, t / 1000))},${f1(sy(f, memFree[k].max))}`), ...pts.map((t, k) => `${f1(sx(f, t / 1000))},${f1(sy(f, memFree[k].min))}`).reverse()]
    body.push(`<polygon points="${band.join(' ')}" fill="#9ecae1" fill-opacity="0.6" stroke="none"/>`)
    body.push(`<polyline points="${pts.map((t, k) => `${f1(sx(f, t / 1000))},${f1(sy(f, memFree[k].median))}`).join(' ')}" fill="none" stroke="#08519c" stroke-width="2"/>`)
    // The kernel's count: try_reap only (process_mrelease and exits are not counted there).
    if (!p.arm.startsWith('exit') && p.arm !== 'process_mrelease') {
      const kernel = at(2)
      body.push(`<polyline points="${pts.map((t, k) => `${f1(sx(f, t / 1000))},${f1(sy(f, kernel[k].median))}`).join(' ')}" fill="none" stroke="#e6550d" stroke-width="1.5" stroke-dasharray="5,3"/>`)
    }
    body.push(`<line x1="${f.x0}" y1="${f1(sy(f, size))}" x2="${f.x0 + w}" y2="${f1(sy(f, size))}" stroke="#555" stroke-dasharray="2,3"/>`)
  })
  const ly = 60 + h + 58
  body.push(`<rect x="70" y="${ly - 9}" width="20" height="10" fill="#9ecae1"/><text x="96" y="${ly}">min–max over rounds</text>`)
  body.push(`<line x1="240" y1="${ly - 4}" x2="262" y2="${ly - 4}" stroke="#08519c" stroke-width="2"/><text x="268" y="${ly}">median: MemFree rise since the kill</text>`)
  body.push(`<line x1="500" y1="${ly - 4}" x2="522" y2="${ly - 4}" stroke="#e6550d" stroke-dasharray="5,3"/><text x="528" y="${ly}">median: the kernel's count (reap_dying_pages, /proc/vmstat)</text>`)
  body.push(`<rect x="930" y="${ly - 9}" width="20" height="10" fill="#fde2e2"/><text x="956" y="${ly}">victim stuck (starved; checked that it did not run)</text>`)
  body.push(`<text x="70" y="${ly + 20}" fill="#555">Dotted line: what the victim held (${size} MiB). Curves hold their last value after a run's sampling ended.</text>`)
  return svg(70 + panels.length * (w + 30), ly + 34, body)
}

export function sweepSvg(results: Results): string {
  const sweep = results.memory.sweep
  const plain = results.memory.summary[results.memory.referenceSizeMiB]['exit (plain)']?.t90
  const exitPts: [number, any][] = [...(plain ? [[0, plain] as [number, any]] : []), ...sweep.points.map((p: any) => [p.starvedMs / 1000, p.exitT90] as [number, any])]
  const reapPts: [number, any][] = sweep.points.map((p: any) => [p.starvedMs / 1000, p.killAndReapT90])
  const all = [...exitPts, ...reapPts].flatMap(([, s]) => [s.max]).filter((v) => v !== null)
  const f: Frame = { x0: 80, y0: 50, w: 560, h: 320, xMax: niceMax(Math.max(...exitPts.map(([x]) => x))), yMax: niceMax(Math.max(...all) / 1000) }
  const body: string[] = [
    `<text x="20" y="24" font-size="15" font-weight="bold">Time to 90 % back against how long the killed victim stays starved (${results.memory.referenceSizeMiB} MiB victims)</text>`,
    ...axes(f, 'seconds the victim is starved after SIGKILL (0: not starved)', 'seconds to 90 % back'),
  ]
  const series = (pts: [number, any][], color: string, name: string, k: number): void => {
    const known = pts.filter(([, s]) => s.median !== null)
    for (const [x, s] of known) {
      body.push(`<line x1="${f1(sx(f, x))}" y1="${f1(sy(f, s.min / 1000))}" x2="${f1(sx(f, x))}" y2="${f1(sy(f, s.max / 1000))}" stroke="${color}"/>`)
      body.push(`<circle cx="${f1(sx(f, x))}" cy="${f1(sy(f, s.median / 1000))}" r="3.5" fill="${color}"/>`)
    }
    body.push(`<polyline points="${known.map(([x, s]) => `${f1(sx(f, x))},${f1(sy(f, s.median / 1000))}`).join(' ')}" fill="none" stroke="${color}" stroke-width="2"/>`)
    body.push(`<line x1="${f.x0 + f.w + 20}" y1="${f.y0 + 10 + k * 20}" x2="${f.x0 + f.w + 44}" y2="${f.y0 + 10 + k * 20}" stroke="${color}" stroke-width="3"/><text x="${f.x0 + f.w + 50}" y="${f.y0 + 14 + k * 20}">${esc(name)}</text>`)
  }
  series(exitPts, '#d62728', 'wait for the exit', 0)
  series(reapPts, '#1f77b4', 'killAndReap (16 MiB chunks)', 1)
  const be = sweep.breakEven
  if (typeof be.ms === 'number' && be.ms > 0) {
    body.push(`<line x1="${f1(sx(f, be.ms / 1000))}" y1="${f.y0}" x2="${f1(sx(f, be.ms / 1000))}" y2="${f.y0 + f.h}" stroke="#555" stroke-dasharray="3,3"/>`)
  }
  body.push(`<text x="${f.x0 + f.w + 20}" y="${f.y0 + 64}" fill="#555">median, min–max over rounds</text>`)
  body.push(`<text x="${f.x0}" y="${f.y0 + f.h + 54}">Break-even: ${esc(be.text)}.</text>`)
  return svg(f.x0 + f.w + 260, f.y0 + f.h + 70, body)
}

export function latencySvg(results: Results): string {
  const kinds = Object.keys(results.latency.kinds)
  const caps = Object.keys(results.latency.kinds[kinds[0]].caps).map(Number).sort((a, b) => a - b)
  const values = kinds.flatMap((k) => caps.flatMap((c) => [results.latency.kinds[k].caps[c].p50Us, results.latency.kinds[k].caps[c].maxUs])).filter((v) => v > 0)
  const lo = 10 ** Math.floor(Math.log10(Math.min(...values)))
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...values)))
  const w = 240
  const h = 260
  const body: string[] = [`<text x="20" y="24" font-size="15" font-weight="bold">One try_reap_dying_process call against its cap, per memory kind (${esc(results.kernel.release)}, QEMU ${esc(results.accelerator)})</text>`]
  const names: Record<string, string> = { anon: '4 KiB anonymous pages', thp: 'transparent huge pages', file: 'written private file pages' }
  kinds.forEach((kind, i) => {
    const x0 = 90 + i * (w + 60)
    const y0 = 60
    const yOf = (v: number): number => y0 + h - ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * h
    const xOf = (k: number): number => x0 + ((k + 0.5) / caps.length) * w
    body.push(`<text x="${x0 + w / 2}" y="${y0 - 8}" text-anchor="middle" font-weight="bold">${esc(names[kind] ?? kind)}</text>`)
    for (let v = lo; v <= hi * 1.0001; v *= 10) {
      body.push(`<line x1="${x0}" y1="${f1(yOf(v))}" x2="${x0 + w}" y2="${f1(yOf(v))}" stroke="#eee"/>`)
      body.push(`<text x="${x0 - 5}" y="${f1(yOf(v) + 4)}" text-anchor="end">${v >= 1000 ? `${v / 1000} ms` : `${v} µs`}</text>`)
    }
    body.push(`<rect x="${x0}" y="${y0}" width="${w}" height="${h}" fill="none" stroke="#333"/>`)
    const line: string[] = []
    caps.forEach((cap, k) => {
      const c = results.latency.kinds[kind].caps[cap]
      const x = xOf(k)
      body.push(`<text x="${f1(x)}" y="${y0 + h + 15}" text-anchor="middle">${cap / 2 ** 20} MiB</text>`)
      body.push(`<text x="${f1(x)}" y="${y0 + h + 29}" text-anchor="middle" fill="#777" font-size="10">${c.calls} calls</text>`)
      body.push(`<line x1="${f1(x)}" y1="${f1(yOf(c.p50Us))}" x2="${f1(x)}" y2="${f1(yOf(c.maxUs))}" stroke="#1f77b4"/>`)
      body.push(`<line x1="${f1(x - 5)}" y1="${f1(yOf(c.maxUs))}" x2="${f1(x + 5)}" y2="${f1(yOf(c.maxUs))}" stroke="#1f77b4"/>`)
      body.push(`<rect x="${f1(x - 4)}" y="${f1(yOf(c.p99Us) - 4)}" width="8" height="8" fill="#d62728"/>`)
      body.push(`<circle cx="${f1(x)}" cy="${f1(yOf(c.p50Us))}" r="4" fill="white" stroke="#1f77b4" stroke-width="2"/>`)
      line.push(`${f1(x)},${f1(yOf(c.p99Us))}`)
    })
    body.push(`<polyline points="${line.join(' ')}" fill="none" stroke="#d62728" stroke-width="1.5"/>`)
    body.push(`<text x="${x0 + w / 2}" y="${y0 + h + 46}" text-anchor="middle">max_bytes (cap) per call</text>`)
  })
  const ly = 60 + h + 70
  body.push(`<circle cx="96" cy="${ly - 4}" r="4" fill="white" stroke="#1f77b4" stroke-width="2"/><text x="106" y="${ly}">p50</text>`)
  body.push(`<rect x="150" y="${ly - 8}" width="8" height="8" fill="#d62728"/><text x="164" y="${ly}">p99 (nearest rank)</text>`)
  body.push(`<line x1="290" y1="${ly - 4}" x2="300" y2="${ly - 4}" stroke="#1f77b4"/><text x="306" y="${ly}">max</text>`)
  body.push(
    `<text x="90" y="${ly + 20}" fill="#555">Calls that unmapped something and EAGAIN calls, pooled over fork()ed clones of one ${results.latency.settings.parentMiB} MiB victim per kind;</text>`,
    `<text x="90" y="${ly + 36}" fill="#555">each clone populated fresh pages of its own first, so these calls free what they unmap (a THP call unmaps 2 MiB whatever the cap).</text>`,
  )
  return svg(90 + kinds.length * (w + 60), ly + 50, body)
}
