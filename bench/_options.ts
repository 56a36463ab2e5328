/**
 * Command-line options of `deno task bench` and of the tables it prints: how many runs each measurement
 * takes, and which tables run.
 *
 * @module
 */

/** The tables of `deno task bench`, in the order they are printed. */
export const TABLES = ["calls", "cold", "verify", "system", "files"] as const;

/** One of {@linkcode TABLES}. */
export type TableName = typeof TABLES[number];

/** How much a table measures. */
export interface BenchOptions {
  /** `--quick`: a smoke run of everything, few runs. */
  quick: boolean;
  /** The base number of runs (`--runs N`; 200 by default, 20 with `--quick`). */
  runs: number;
  /**
   * The number of runs for a measurement that takes `full` runs in a default run, scaled by
   * `runs / 200`, and never fewer than 3.
   */
  count(full: number): number;
}

/** Progress lines go to stderr, so that stdout holds the report alone. */
export function log(line: string): void {
  console.error(`bench: ${line}`);
}

/** The default base number of runs; each table's counts are written for it. */
const FULL_RUNS = 200;

/** Options for `runs` base runs. */
export function benchOptions(runs: number, quick = false): BenchOptions {
  if (!Number.isInteger(runs) || runs < 1) throw new RangeError(`bench: --runs must be a positive integer`);
  return { quick, runs, count: (full) => Math.max(3, Math.round((full * runs) / FULL_RUNS)) };
}

/**
 * Parses `[--quick] [--runs N] [--calls] [--only TABLE[,TABLE…]]…` (`--calls` is `--only calls`).
 * Returns the options and the tables to run, in report order.
 */
export function parseArgs(args: readonly string[]): { options: BenchOptions; tables: TableName[] } {
  let quick = false, runs: number | undefined;
  const only = new Set<string>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const value = () => {
      if (i + 1 >= args.length) throw new Error(`bench: ${a} needs a value`);
      return args[++i];
    };
    if (a === "--quick") quick = true;
    else if (a === "--calls") only.add("calls");
    else if (a === "--runs") runs = Number(value());
    else if (a === "--only") { for (const t of value().split(",")) only.add(t.trim()); }
    else throw new Error(`bench: unknown argument ${a} (use --quick, --runs N, --calls, --only TABLE)`);
  }
  for (const t of only) {
    if (!(TABLES as readonly string[]).includes(t)) {
      throw new Error(`bench: unknown table "${t}" (tables: ${TABLES.join(", ")})`);
    }
  }
  const tables = TABLES.filter((t) => only.size === 0 || only.has(t));
  return { options: benchOptions(runs ?? (quick ? 20 : FULL_RUNS), quick), tables };
}
