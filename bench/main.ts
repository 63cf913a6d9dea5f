// Entry point of the compiled benchmark (bench/out/bench/main.js):
//   main.js bench     the benchmark, in the patched guest (bench/run bench)
//   main.js demo      the live demo, in the patched guest (bench/run demo)
//   main.js report    regenerate results.md and the charts from results.json
//   main.js combine BOOT.json[,LOAD.txt]...   results.json, results.md and the charts
//                     from the boots bench/run ran (each with the host load
//                     bench/run sampled while it ran: lines "SECONDS LOAD1")
import { readFileSync } from 'node:fs'
import { outDir, runBench } from './bench'
import { combine, type Boot, type HostLoad } from './combine'
import { runDemo } from './demo'
import { ConfigError } from './env'
import { regenerate, writeArtifacts } from './report'
import { median, round } from './stats'

async function main(argv: string[]): Promise<number> {
  switch (argv[0]) {
    case 'bench':
      await runBench()
      return 0
    case 'demo':
      return runDemo()
    case 'report':
      regenerate(outDir())
      return 0
    case 'combine': {
      if (argv.length < 2) throw new ConfigError('usage: main.js combine BOOT.json[,LOAD.txt]...')
      const boots = argv.slice(1).map((arg) => {
        const [json, load] = arg.split(',')
        const boot = JSON.parse(readFileSync(json, 'utf8')) as Boot
        if (load) boot.hostLoad = hostLoad(readFileSync(load, 'utf8'))
        return boot
      })
      const combined = combine(boots)
      // A note on how this run was made, when it was not one plain `npm run bench` (shown first in results.md).
      if (process.env.PIDFD_REAP_BENCH_NOTE) combined.note = process.env.PIDFD_REAP_BENCH_NOTE
      writeArtifacts(combined, outDir())
      return 0
    }
    default:
      process.stderr.write('usage: main.js bench | demo | report | combine BOOT.json[,LOAD.txt]...\n')
      return 2
  }
}

/** The host's 1-minute load average as bench/run sampled it during a boot. */
function hostLoad(text: string): HostLoad {
  const loads = text
    .split('\n')
    .map((line) => Number(line.trim().split(/\s+/)[1]))
    .filter(Number.isFinite)
  return {
    what: "the host's 1-minute load average (/proc/loadavg), sampled every 10 s by bench/run while the guest ran",
    samples: loads.length,
    min: loads.length ? Math.min(...loads) : NaN,
    median: round(median(loads), 2),
    max: loads.length ? Math.max(...loads) : NaN,
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (error) => {
    process.stderr.write(`${error instanceof ConfigError ? error.message : error instanceof Error ? error.stack : String(error)}\n`)
    process.exitCode = 1
  },
)
