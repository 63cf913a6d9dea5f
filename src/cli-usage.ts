// Usage errors of the command line: caught by main(), printed as one line,
// exit status 2. Shared by cli.ts and vm.ts.

export class UsageError extends Error {}

/** Runs `parse`; any error it throws becomes a one-line UsageError. */
export function asUsage<T>(parse: () => T): T {
  try {
    return parse()
  } catch (error) {
    // parseArgs' messages can span lines ("... is ambiguous.\nDid you forget ...").
    throw new UsageError((error as Error).message.replace(/\s*\n\s*/g, ' '))
  }
}

/** An optional option's value, parsed as a usage error on failure. */
export function optional<T>(text: string | boolean | undefined, parse: (text: string) => T): T | undefined {
  return text === undefined ? undefined : asUsage(() => parse(text as string))
}
