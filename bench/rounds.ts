// The round loop that the bounds and shrinker parts share: warm-up rounds,
// then measured ones; a round with an unusable run is logged and repeated,
// up to a limit; anomalies (worth a note, not a repeat) are tallied.

export interface RoundConfig {
  warmup: number
  rounds: number
  /** Invalid rounds (warm-up included) after which the part gives up. */
  maxInvalid: number
}

/** One round as the part ran it: its runs, their order, and why any run is unusable. */
export interface RoundResult<Run, Order> {
  runs: Run[]
  order: Order
  reasons: string[]
}

export interface Rounds<Run, Order> {
  /** The measured rounds (warm-up and invalid ones left out), in order. */
  measured: Run[][]
  orders: Order[]
  invalid: { attempt: number; reasons: string[] }[]
}

/**
 * Runs `round(index, warmup)` until `config.warmup + config.rounds` rounds
 * were valid, or gives up after `config.maxInvalid` invalid ones (the
 * caller decides whether what was measured is enough).
 */
export async function runRounds<Run, Order>(
  config: RoundConfig,
  log: (text: string) => void,
  round: (index: number, warmup: boolean) => Promise<RoundResult<Run, Order>>,
): Promise<Rounds<Run, Order>> {
  const started = Date.now()
  const result: Rounds<Run, Order> = { measured: [], orders: [], invalid: [] }
  for (let attempt = 0, done = 0; done < config.warmup + config.rounds; attempt++) {
    const warmup = done < config.warmup
    const t0 = Date.now()
    const { runs, order, reasons } = await round(done - config.warmup, warmup)
    const label = warmup ? 'warm-up' : `round ${done - config.warmup + 1}/${config.rounds}`
    if (reasons.length) {
      result.invalid.push({ attempt, reasons })
      log(`${label} invalid, repeated: ${reasons.join('; ')}`)
      if (result.invalid.length >= config.maxInvalid) {
        log(`giving up after ${result.invalid.length} invalid rounds`)
        break
      }
      continue
    }
    if (!warmup) {
      result.measured.push(runs)
      result.orders.push(order)
    }
    done++
    log(`${label} in ${((Date.now() - t0) / 1000).toFixed(1)} s (${((Date.now() - started) / 60000).toFixed(1)} min so far)`)
  }
  return result
}

/** Anomalies of all runs, one entry per kind (numbers in the text ignored), with how many runs showed it. */
export class AnomalyTally<Group extends string> {
  readonly #found = new Map<string, { group: Group; what: string; runs: number }>()

  add(group: Group, text: string): void {
    const key = `${group}: ${text.replace(/-?\d+/g, 'N')}`
    const entry = this.#found.get(key) ?? { group, what: text, runs: 0 }
    entry.runs++
    this.#found.set(key, entry)
  }

  /** The entries, each named by `groupKey` (as results.json has them: `arm`, `mode`). */
  list<K extends string>(groupKey: K): ({ [key in K]: Group } & { what: string; runs: number })[] {
    return [...this.#found.values()].map(({ group, what, runs }) => ({ [groupKey]: group, what, runs }) as { [key in K]: Group } & { what: string; runs: number })
  }
}
