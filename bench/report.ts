// results.json → results.md (the tables the README links to) and the SVG
// charts (charts.ts). `bench/run report` regenerates them from results.json.
/* eslint-disable @typescript-eslint/no-explicit-any */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { latencySvg, memoryBackSvg, sweepSvg } from './charts'
import { definition } from './ratios'
import { shrinkerMarkdown } from './shrinker'

type Results = any

export const CHARTS = { memory: 'memory-back.svg', sweep: 'starvation-sweep.svg', latency: 'latency-vs-cap.svg' }

const fmtMs = (v: number | null | undefined): string => (v === null || v === undefined ? '–' : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(v < 10 ? 2 : 0)} ms`)
const fmtUs = (v: number | null | undefined): string => (v === null || v === undefined ? '–' : v >= 1000 ? `${(v / 1000).toFixed(2)} ms` : `${v.toFixed(v < 10 ? 1 : 0)} µs`)
const fmtRatio = (v: number): string => (Math.abs(v) < 0.1 ? v.toPrecision(2) : v.toFixed(v < 10 ? 3 : 1))
const pct = (v: number | null | undefined): string => (v === null || v === undefined ? '–' : `${(100 * v).toFixed(1)} %`)
const spreadText = (s: any, fmt: (v: number) => string): string =>
  !s || s.median === null ? '–' : s.min === s.max ? fmt(s.median) : `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`

/** A run with knobs set (fewer rounds, smaller victims...) says so first, plainly. */
function reducedNotice(r: Results): string[] {
  const overrides = Object.entries<string>(r.settings?.overrides ?? {})
  if (!overrides.length) return []
  return [
    `**Not the default benchmark: this run set ${overrides.length} knob${overrides.length === 1 ? '' : 's'}** (${overrides.map(([k, v]) => `\`${k}=${v}\``).join(', ')}), ` +
      'for example fewer rounds or smaller victims than `npm run bench` uses, so its intervals are wider than a full run\'s and some ratios rest on fewer calls.',
    '',
  ]
}

function header(r: Results): string[] {
  const k = r.kernel
  const g = r.machine.guest
  const h = r.machine.host
  const changed = k.patchesChangedSince?.length ? ` (the work tree has changed ${k.patchesChangedSince.join(', ')} since)` : ''
  const dirty = r.project.gitDirty?.length ? ` plus uncommitted changes to ${r.project.gitDirty.length} files` : ''
  const parts = Object.entries<number>(r.partMs).map(([p, ms]) => `${p} ${(ms / 60000).toFixed(1)} min`).join(', ')
  return [
    `Measured ${r.generatedAt.slice(0, 16).replace('T', ' ')} UTC in ${r.boots ? `${r.boots.length} QEMU ${r.accelerator} boot${r.boots.length === 1 ? '' : 's'} (${r.boots.map((b: any) => `${b.clock}${b.role === 'repeat' ? ' repeat' : ''}`).join(', ')}; the first: ${g.cpus} vCPU${g.cpus === 1 ? '' : 's'}` : `a QEMU ${r.accelerator} guest (${g.cpus} vCPUs`}, ${(g.memoryBytes / 2 ** 30).toFixed(1)} GiB)` +
      (h ? ` on a ${h.cpus}-CPU ${h.model} host (load average ${h.loadAverage} when the guest started)` : '') +
      `, Linux ${k.release} built from the series at kernel commit ${k.seriesCommit?.slice(0, 12) ?? '?'} (series sha256 ${k.seriesBuilt?.slice(0, 12) ?? '?'}${changed}; try_reap_dying_process is syscall ${k.tryReapSyscallNr}), ` +
      `project commit ${r.project.gitCommit?.slice(0, 12) ?? 'unknown'}${dirty}. ` +
      `One run of \`npm run bench\`: ${(r.durationMs / 60000).toFixed(1)} guest minutes (${parts}; an icount guest's clock jumps ahead while it waits for the host's I/O, so its minutes are not the host's). ` +
      'Emulated (TCG): absolute times are several times a real machine\'s; compare within the run (the ratios). ' +
      'icount: one vCPU under `scripts/vm --icount` (guest time counts instructions, so the host\'s load does not move it); wall: two vCPUs under ordinary TCG, for what needs two CPUs at once.',
  ]
}

/** The ratios with what each divides, the clock, intervals (and how), rounds, goals and verdicts. */
function ratiosTable(r: Results): string[] {
  const lines = [
    '| ratio | what it divides | clock | value | 95 % interval | interval | rounds (without a number) | goal | verdict |',
    '|---|---|---|---:|---:|---|---:|---:|---|',
  ]
  const verdicts = r.verdicts ?? {}
  const show = (v: string | undefined): string => (v === undefined ? '–' : v === 'pass' ? 'pass' : v === 'fail' ? '**fail**' : '*inconclusive*')
  const rounds = (key: string): string => (r.rounds?.[key] ? `${r.rounds[key].n} (${r.rounds[key].noNumber})` : '–')
  for (const [key, value] of Object.entries<number>(r.ratios)) {
    const [lo, hi] = r.ratiosCi95[key]
    const ci = Number.isFinite(lo) && Number.isFinite(hi) ? `${fmtRatio(lo)}–${fmtRatio(hi)}` : 'none'
    lines.push(
      `| \`${key}\` | ${definition(key).what} | ${r.clocks?.[key] ?? '–'} | ${fmtRatio(value)} | ${ci} | ${r.intervalMethods?.[key] ?? '–'} | ${rounds(key)} | ${r.goals[key] ?? '–'} | ${show(verdicts[key])} |`,
    )
  }
  for (const [key, v] of Object.entries<any>(r.noValue ?? {})) {
    lines.push(`| \`${key}\` | ${definition(key).what} | ${r.clocks?.[key] ?? '–'} | none | none | – | 0 (${v.noNumber}) | ${r.goals[key] ?? '–'} | ${show(verdicts[key])} |`)
  }
  const count = (v: string): number => Object.values(verdicts).filter((x) => x === v).length
  lines.push(
    '',
    `Verdicts: ${count('pass')} pass, ${count('fail')} fail, ${count('inconclusive')} inconclusive. A verdict is pass only when the whole 95 % interval meets the goal, fail when the whole interval misses it, inconclusive otherwise. ` +
      'With fewer than 10 rounds a ratio is the geometric mean of the per-round ratios with a t interval on their logarithms (a percentile bootstrap under-covers there); from 10 rounds on, the median with a percentile bootstrap interval; pooled p99s: bootstrap over rounds or clones. ' +
      'Rounds without a number (a failed run, a negative stall, a wall-clock round slowed beyond the rule) are counted in the rounds column, not dropped.',
  )
  return lines
}

/** Parts that failed in a boot (their ratios are missing above). */
function failedText(r: Results): string[] {
  const failed = { ...(r.failedParts ?? {}), ...Object.fromEntries(Object.entries<string>(r.failedPartsWall ?? {}).map(([k, v]) => [`${k} (wall)`, v])) }
  const entries = Object.entries<string>(failed)
  if (!entries.length) return []
  return ['**Parts that failed** (no numbers from them):', '', ...entries.map(([part, why]) => `- ${part}: ${why.split('\n')[0]}`), '']
}

/** --repeat-check: the icount ratios of two whole boots side by side. */
function repeatText(r: Results): string[] {
  const c = r.repeatCheck
  if (!c) return []
  const lines = [
    '### Repeat check (two icount boots of the same commit)',
    '',
    `${c.what}. Largest spread ${c.maxSpread === null ? 'not computable' : `${(100 * c.maxSpread).toFixed(2)} %`}: **${c.pass ? 'pass' : 'fail'}**.` +
      (c.notRepeated?.length ? ` Not compared (only one run has them): ${c.notRepeated.map((k: string) => `\`${k}\``).join(', ')}.` : ''),
    '',
    '| ratio | boot 1 | boot 2 | spread |',
    '|---|---:|---:|---:|',
  ]
  for (const [key, v] of Object.entries<any>(c.ratios)) {
    lines.push(`| \`${key}\` | ${fmtRatio(v.values[0])} | ${fmtRatio(v.values[1])} | ${v.spread === null ? '–' : `${(100 * v.spread).toFixed(2)} %`}${v.within ? '' : ' (over)'} |`)
  }
  return lines
}

/** How each boot ran: QEMU, clock, clocksource, THP, toolchain, host load while it ran. */
function bootsText(r: Results): string[] {
  if (!r.boots) return []
  const lines = ['| boot | clock | QEMU | guest clocksource | THP | Node | gcc | host load during the boot (1-min average: median, min–max, samples) | minutes |', '|---|---|---|---|---|---|---|---|---:|']
  for (const b of r.boots) {
    const run = b.provenance?.run ?? {}
    const load = b.hostLoad ? `${b.hostLoad.median} (${b.hostLoad.min}–${b.hostLoad.max}, ${b.hostLoad.samples})` : '–'
    const g = b.provenance?.machine?.guest
    lines.push(
      `| ${b.role} | ${b.clock}${g ? `, ${g.cpus} vCPU${g.cpus === 1 ? '' : 's'}` : ''} | ${run.qemuVersion ?? '–'} | ${run.guestClocksource ?? '–'} | ${run.thp?.enabled ?? '–'} (defrag ${run.thp?.defrag ?? '–'}) | ${run.node ?? '–'} | ${run.gcc ?? '–'} | ${load} | ${(b.durationMs / 60000).toFixed(1)} |`,
    )
  }
  lines.push('', 'QEMU command lines (scripts/vm):', '')
  for (const b of r.boots) lines.push(`- ${b.role}, ${b.clock}: \`${b.provenance?.run?.qemuCommandLine ?? 'unknown'}\``)
  return lines
}

function settingsText(r: Results): string[] {
  const s = r.settings
  const m = s.memory
  const overrides = Object.entries<string>(s.overrides)
  return [
    `Settings: ${m.rounds} measured rounds after ${m.warmup} warm-up round${m.warmup === 1 ? '' : 's'} in the memory-back, bounds and call-cost parts, the runs of a round in a random order (seed ${s.seed}); ` +
      `every ratio is the median of the per-round paired ratios (the p99 ratios: the pooled p99s), with a percentile bootstrap 95 % interval over ${s.resamples} resamples of the rounds. ` +
      `Memory-back victims: ${m.sizesMiB.join(', ')} MiB (shares ${JSON.stringify(m.shares)} of 4 KiB anonymous, THP, written private file pages), sampled every ${m.sampleUs} µs; ` +
      `killAndReap and the C loop use ${m.chunkMiB} MiB calls; starvation sweep ${m.sweepMs.map((v: number) => `${v / 1000} s`).join(', ')}. ` +
      `Latency part: a ${s.latency.parentMiB} MiB victim per kind, caps ${s.latency.caps.map((c: any) => `${c.bytes / 2 ** 20} MiB (>= ${c.minCalls} calls)`).join(', ')}. ` +
      `Bounds part: big victims of ${s.bounds.bigMiB} MiB. Call-cost part: batches of ${s.calls.batch} sync and ${s.calls.asyncBatch} async calls.`,
    '',
    `System settings: ${s.system}.`,
    '',
    overrides.length ? `Overrides (environment): ${overrides.map(([k, v]) => `\`${k}=${v}\``).join(', ')}.` : 'Overrides: none (all defaults).',
  ]
}

function memoryText(r: Results): string[] {
  const m = r.memory
  if (!m) return []
  const size = m.referenceSizeMiB
  const arms = m.summary[size] ?? {}
  const lines = [
    `### Memory back after SIGKILL (${size} MiB victims)`,
    '',
    'Victims (victims/hog.c) hold only memory that reaping can return: 4 KiB anonymous pages, THP and the written copies of a private tmpfs file mapping. ' +
      'The file is the benchmark\'s own and stays for the whole run, so its page cache is not the victim\'s (with a fresh file per victim, the exit would also free the file\'s page cache, as large again as that part, which reaping never can). ' +
      '"Starved" victims are SCHED_FIFO 1 on CPU 1 beside a SCHED_FIFO 50 busy loop (RT throttling off); reapers run on CPU 0. ' +
      '"Back" = MemFree (sysinfo) risen since just before the kill by 50/90/97 % of what the victim held; "stuck" = until the last look at the victim before it could run (end of the reaping, or the end of the busy loop), ' +
      'and a run whose victim\'s CPU time or context switches changed by then is invalid and repeated.',
    '',
    '| method | runs | 50 % back | 90 % back | 97 % back | victim exited | back while stuck | MemFree ÷ kernel count | calls | of which reaped | event loop p99 (idle) | sampler CPU |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  const count = (v: number): string => v.toFixed(0)
  for (const [arm, a] of Object.entries<any>(arms)) {
    lines.push(
      `| ${arm} | ${a.runs} | ${spreadText(a.t50, fmtMs)} | ${spreadText(a.t90, fmtMs)} | ${spreadText(a.t100, fmtMs)} | ${spreadText(a.exitMs, fmtMs)} | ${spreadText(a.freedWhileStuckFraction, pct)} | ` +
        `${spreadText(a.memFreeVsKernelCount, (v) => v.toFixed(3))} | ${spreadText(a.allCalls ?? a.reapCalls, count)} | ${spreadText(a.allCalls ? a.reapCalls : undefined, count)} | ${spreadText(a.eventLoopP99Ms, fmtMs)}${a.eventLoopIdleP99Ms?.median != null ? ` (${spreadText(a.eventLoopIdleP99Ms, fmtMs)})` : ''} | ${spreadText(a.samplerCpuShare, pct)} |`,
    )
  }
  const sampler = Object.values<any>(arms).map((a) => a.samplerUsPerSample?.median).filter((v) => typeof v === 'number')
  lines.push(
    '',
    'Median (min–max) over the valid measured rounds; times from SIGKILL. "calls": every reaping call, whatever it answered (bytes, 0, EAGAIN, EBUSY...); "of which reaped": those that returned bytes (not known one by one for killAndReap: –). ' +
      '"event loop p99": perf_hooks.monitorEventLoopDelay({ resolution: 1 }) in the arms that monitor it, while killAndReap ran (in parentheses: over 300 ms of doing nothing just before the kill, what the guest and the host alone cost the loop) or while the C loop reaped from another process on the same CPU. "MemFree ÷ kernel count": MemFree\'s rise at the end of the reaping over what `reap_dying_pages` in `/proc/vmstat` counted ' +
      '(process_mrelease is not counted there: –). ' +
      `The sampler (MemFree by sysinfo, RSS and the counter by pread) costs ${sampler.length ? fmtUs(Math.max(...sampler)) : '–'} per sample at most; "sampler CPU" is its share of CPU 1, which the exit of an unstarved victim shares.`,
  )
  if (m.invalidRuns.length) lines.push('', `Invalid runs (repeated): ${m.invalidRuns.map((v: any) => `${v.arm} round ${v.round} (attempt ${v.attempt})`).join('; ')}.`)
  lines.push('', `![memory back after SIGKILL](${CHARTS.memory})`, '', '#### Starvation sweep', '')
  lines.push('| starved for | wait for the exit: 90 % back | killAndReap: 90 % back (run) | ratio (95 % interval) |', '|---:|---:|---:|---:|')
  for (const p of m.sweep.points) {
    const key = `exit_vs_killAndReap_90pct_starved_${p.starvedMs}ms`
    const ratio = r.ratios[key] === undefined ? '–' : `${fmtRatio(r.ratios[key])} (${r.ratiosCi95[key].map(fmtRatio).join('–')})`
    lines.push(`| ${p.starvedMs / 1000} s | ${spreadText(p.exitT90, fmtMs)} | ${spreadText(p.killAndReapT90, fmtMs)} (${p.killAndReapRun}) | ${ratio} |`)
  }
  lines.push('', `Break-even: ${m.sweep.breakEven.text}. From ${r.settings.memory.sweepOwnRunBelowMs / 1000} s on, killAndReap's point is the round's unreleased killAndReap run, used only where its memory was 90 % back before that release would have come.`)
  lines.push('', `![time to 90 % back against the starvation length](${CHARTS.sweep})`)
  return lines
}

function latencyText(r: Results): string[] {
  const l = r.latency
  if (!l) return []
  const lines = [
    '### One call against its cap, per memory kind',
    '',
    `${l.method}. Worst kind for \`p99_1MiB_vs_64MiB\`: ${l.worstKind}.`,
    '',
    '| kind | cap | unmapped per call (median) | clones | calls (of which EAGAIN) | p50 | p99 | max |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  ]
  const size = (b: number | null | undefined): string => (b === null || b === undefined ? '–' : b >= 2 ** 20 ? `${+(b / 2 ** 20).toFixed(2)} MiB` : `${+(b / 1024).toFixed(1)} KiB`)
  for (const [kind, k] of Object.entries<any>(l.kinds)) {
    for (const [cap, c] of Object.entries<any>(k.caps)) {
      lines.push(`| ${kind} | ${size(Number(cap))} | ${size(c.unmappedPerCallMedianBytes)} | ${c.clones} | ${c.calls} (${c.eagainCalls ?? '–'}) | ${fmtUs(c.p50Us)} | ${fmtUs(c.p99Us)} | ${fmtUs(c.maxUs)} |`)
    }
  }
  lines.push('', `![call latency against the cap](${CHARTS.latency})`)
  return lines
}

function callsText(r: Results): string[] {
  const c = r.calls
  if (!c) return []
  const ns = c.nsPerCall
  const row = (name: string, key: string): string => `| ${name} | ${spreadText(ns[key], (v) => `${v.toFixed(0)} ns`)} |`
  return [
    '### One call from C and from JavaScript (same process)',
    '',
    `${c.what.c}; ${c.what.raw}; ${c.what.public}; ${c.what.async}. Dying target: ${c.what.dying}; EPERM target: ${c.what.eperm}.`,
    '',
    '| way | ns per call, median (min–max) over rounds |',
    '|---|---:|',
    row('C, probe on a dying process', 'c'),
    row('raw binding, probe', 'raw'),
    row('public sync (Pidfd#tryReap), probe', 'public'),
    row('async product path (Pidfd#tryReapAsync), probe', 'async'),
    row('C, EPERM', 'cEperm'),
    row('public sync, EPERM (thrown)', 'publicEperm'),
    ...(c.oneMiBCall ? ['', `The product path's added time is set against a 1 MiB call of ${fmtUs(c.oneMiBCall.us)}: ${c.oneMiBCall.from}.`] : []),
  ]
}

function boundsText(r: Results, name: 'bounds' | 'boundsWall'): string[] {
  const b = r[name]
  if (!b) return []
  const s = b.settings
  const lines = [
    name === 'bounds'
      ? `### Bounds of a call, total time of capped loops, throughput (frozen victims${s.clock ? `, ${s.clock} clock` : ''})`
      : '### One reaper against two at once (frozen victims, wall clock, ABBA)',
    '',
    `${s.roundsMeasured} measured rounds after ${s.warmup} warm-up; ${b.invalidRounds.length} round(s) repeated because a victim ran or a run failed. Victims: ${s.victims}. Check: ${s.victimCheck}. ` +
      `Placement: ${s.placement}. Calls: ${s.calls}. Timing: ${s.timing}. p99: ${s.p99}. Intervals: ${s.interval}.`,
    '',
    '| victim (run) | cap | calls / round | pooled calls | call p50 / p99 / max | EAGAIN share | in-syscall total (median) | reaped (median) | THP | VMAs | setup |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for (const [id, a] of Object.entries<any>(b.arms)) {
    const cap = a.method === 'mrelease' ? 'process_mrelease' : a.capBytes ? (a.capBytes >= 2 ** 20 ? `${a.capBytes / 2 ** 20} MiB` : `${a.capBytes / 1024} KiB`) : 'none'
    const latency = a.capBytes ? `${fmtUs(a.p50Us)} / ${fmtUs(a.p99Us)} / ${fmtUs(a.maxUs)}` : `max ${fmtUs(a.maxUs)}`
    lines.push(
      `| \`${id}\`: ${a.what} | ${cap} | ${a.callsPerRound} | ${a.pooledCalls} | ${latency} | ${(a.eagainShare * 100).toFixed(1)} % | ${fmtMs(a.totalMsMedian)} | ${a.reapedMiBMedian.toFixed(1)} MiB | ${a.thpMiBMedian} MiB | ${a.vmas} | ${fmtMs(a.setupMsMedian)} |`,
    )
  }
  lines.push('')
  if (b.anomalies.length) {
    lines.push('Kernel answers outside the v2 ABI (all runs, warm-up and repeated rounds included):', '')
    for (const a of b.anomalies) lines.push(`- \`${a.arm}\` (${a.runs} runs): ${a.what}`)
  } else {
    lines.push('No kernel answer outside the v2 ABI in any run (results within the cap or one THP, 0 stays 0, reap_dying_pages and the RSS drop equal to the results).')
  }
  const hc = b.hostContention
  if (hc) {
    lines.push(
      '',
      `Host contention: a fixed user-space loop timed just before each kill and after each last call ran at a median ${hc.median.toFixed(2)}× its best time (max ${hc.max.toFixed(2)}×); ` +
        `${(hc.shareAbove1_25 * 100).toFixed(0)} % of the runs saw it above 1.25× (the vCPU then shared a host core with other work).`,
    )
  }
  return lines
}

function pressureText(r: Results): string[] {
  const p = r.pressure
  if (!p) return []
  const c = p.config
  const lines = [
    '### From memory pressure to memory back (bench/pressure.ts)',
    '',
    `${c.rounds} rounds, the methods of a round in a random order, each on a fresh ${c.victimMiB} MiB victim in its own leaf of a cgroup v2 group: the group's memory.high = its use + ${c.headroomMiB} MiB, ` +
      `a PSI trigger "some ${c.stallUs} µs per ${c.windowUs} µs" on the group's memory.pressure, a ${c.fillerMiB} MiB filler in the other leaf throttled there; at the event (in JS) the victim is killed. ` +
      `Memory back = the victim's leaf's memory.current down by ${100 * c.backFraction} % of its bytes, read every millisecond from the kill on. A failed run is left out with its pair.`,
    '',
    '| method | runs (failed) | pressure event → memory back |',
    '|---|---:|---:|',
  ]
  for (const [method, s] of Object.entries<any>(p.pressure_to_memory_back_ms)) {
    const runs = p.runs.filter((run: any) => run.method === method)
    lines.push(`| ${method} | ${runs.length} (${runs.filter((run: any) => run.error).length}) | ${spreadText(s, fmtMs)} |`)
  }
  const paths = [...new Set(p.runs.map((run: any) => run.report?.killPath).filter(Boolean))]
  if (paths.length) lines.push('', `killAndReap's kill path: ${paths.join(', ')}.`)
  return lines
}

export function resultsMarkdown(r: Results): string {
  return [
    '<!-- generated by bench/report.ts from bench/results.json; do not edit -->',
    ...(r.note ? [`**Note on this run:** ${r.note}`, ''] : []),
    ...reducedNotice(r),
    ...header(r),
    '',
    ...ratiosTable(r),
    '',
    ...failedText(r),
    ...repeatText(r),
    '',
    ...bootsText(r),
    '',
    ...settingsText(r),
    '',
    ...memoryText(r),
    '',
    ...latencyText(r),
    '',
    ...callsText(r),
    '',
    ...boundsText(r, 'bounds'),
    '',
    ...boundsText(r, 'boundsWall'),
    '',
    ...pressureText(r),
    '',
    ...shrinkerMarkdown(r),
    '',
  ].join('\n')
}

/** results.json: one top-level key per line, each compact (a few hundred kB, not tens of thousands of lines). */
export function resultsJson(r: Results): string {
  return `{\n${Object.entries(r)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`)
    .join(',\n')}\n}\n`
}

export function writeArtifacts(r: Results, dir: string): void {
  writeFileSync(join(dir, 'results.json'), resultsJson(r))
  writeFileSync(join(dir, 'results.md'), resultsMarkdown(r))
  if (r.memory) {
    writeFileSync(join(dir, CHARTS.memory), memoryBackSvg(r))
    writeFileSync(join(dir, CHARTS.sweep), sweepSvg(r))
  }
  if (r.latency) writeFileSync(join(dir, CHARTS.latency), latencySvg(r))
}

export function regenerate(dir: string): void {
  writeArtifacts(JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')), dir)
}
