// Entry point of the compiled benchmark (bench/out/bench/main.js):
//   main.js bench [HOST_JSON]   the benchmark, in the patched guest
//   main.js host-calls OUT      the host half of the JS-vs-C call cost
//   main.js demo                the live demo, in the patched guest
//   main.js report              regenerate results.md and the SVGs from results.json
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { callCosts, hostMachine, runBench } from './bench'
import { runDemo } from './demo'
import { ROOT } from './measure'
import { regenerate } from './report'

async function main(argv: string[]): Promise<number> {
  const [command, arg] = argv
  switch (command) {
    case 'bench':
      await runBench(arg)
      return 0
    case 'host-calls': {
      const calls = await callCosts()
      writeFileSync(arg, `${JSON.stringify({ machine: hostMachine(), calls }, null, 1)}\n`)
      process.stderr.write(`bench: host call cost: C ${JSON.stringify((calls.c as { median: number }).median)} ns, JS ${(calls.js as { median: number }).median} ns\n`)
      return 0
    }
    case 'demo':
      return runDemo()
    case 'report':
      regenerate(join(ROOT, 'bench'))
      return 0
    default:
      process.stderr.write('usage: main.js bench [HOST_JSON] | host-calls OUT | demo | report\n')
      return 2
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (error) => {
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`)
    process.exitCode = 1
  },
)
