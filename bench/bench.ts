/**
 * `deno task bench`: one report, every snapvm figure next to its baseline measured in the same run (the
 * physical floor of bench/floor.c, `b3sum`, the writer without holes, or snapvm's own other path), with the
 * ratio and, where one is set, the target. Medians and p90 in µs or ms; progress goes to stderr, the report
 * (Markdown) to stdout.
 *
 * 1. Calls: evolve, `call`, `callAsync`, hot calls, teardown (vs floor create, call, mailbox, teardown).
 * 2. Cold start at 128 KiB, 8, 64 and 256 MiB heaps; `toFile`; restore after 1 and 1000 dirty pages.
 * 3. Verified load: `fromFile`'s BLAKE3 of a 256 MiB blob vs `b3sum --num-threads 2`.
 * 4. The system area rebuilt at load, at 128 KiB and 256 MiB, as a share of the cold start.
 * 5. Files (bench/files.ts): sparse `toFile`, deltas, cold start with the page cache evicted.
 *
 * Usage: `deno task bench [--quick] [--runs N] [--calls] [--only TABLE[,TABLE…]]`. `--quick`: a smoke run
 * of everything with few runs; `--runs N`: the base number of runs (default 200; each measurement scales
 * its count by N / 200, at least 3); `--only`: `calls`, `cold`, `verify`, `system`, `files`; `--calls`:
 * `--only calls`.
 *
 * @module
 */
import { blake3Backend } from "../mod.ts";
import { callsTable } from "./_calls.ts";
import { coldTable } from "./_cold.ts";
import { log, parseArgs, type TableName } from "./_options.ts";
import { formatTable, type Table } from "./_report.ts";
import { systemAreaTable } from "./_system_area.ts";
import { verifyTable } from "./_verify.ts";
import { filesTables } from "./files.ts";
import type { BenchOptions } from "./_options.ts";

const TABLES: Record<TableName, (o: BenchOptions) => Promise<Table | Table[]>> = {
  calls: callsTable,
  cold: coldTable,
  verify: verifyTable,
  system: systemAreaTable,
  files: filesTables,
};

const { options, tables } = parseArgs(Deno.args);
const started = performance.now();
const report: Table[] = [];
for (const name of tables) {
  log(`table ${name}`);
  report.push(...[await TABLES[name](options)].flat());
}
const seconds = (performance.now() - started) / 1000;

const load = Deno.loadavg().map((l) => l.toFixed(2)).join(" ");
const lines = [
  `# snapvm bench${options.quick ? " (quick: a smoke run, few runs)" : ""}`,
  "",
  `Base runs ${options.runs}; ${navigator.hardwareConcurrency} CPUs, load average ${load} at the end; ` +
  `BLAKE3 backend ${blake3Backend()}; Deno ${Deno.version.deno}. Every row: snapvm's median / p90 next to ` +
  "its baseline from this run; the ratio is of the medians (below 1: snapvm is faster or smaller).",
];
for (const t of report) lines.push("", ...formatTable(t));
lines.push(
  "",
  "---",
  "",
  `${tables.length} of 5 tables in ${seconds.toFixed(0)} s. Not in this report: \`deno task bench:oci\` ` +
    "(push and pull through a local OCI registry; needs docker-registry) and `deno run -A bench/hash.ts` " +
    "(every BLAKE3 backend vs b3sum).",
);
console.log(lines.join("\n"));
