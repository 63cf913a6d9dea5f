// Entry point of the compiled benchmark (bench/out/bench/main.js):
//   main.js bench     the benchmark, in the patched guest (bench/run bench)
//   main.js demo      the live demo, in the patched guest (bench/run demo)
//   main.js report    regenerate results.md and the charts from results.json
import { outDir, runBench } from './bench'
import { runDemo } from './demo'
import { ConfigError } from './env'
import { regenerate } from './report'

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
    default:
      process.stderr.write('usage: main.js bench | demo | report\n')
      return 2
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
