/**
 * `deno task bench` prints one report: every table, every row, each with its baseline and a ratio. Runs the
 * benchmark as a smoke run (`--quick --runs 3`) and checks the report's structure, never its numbers.
 */
import assert from "node:assert/strict";
import { parseArgs } from "../../bench/_options.ts";
import { vmTest } from "../_hypervisor.ts";

const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname);

const HEADERS = [
  "## 1. Calls",
  "## 2. Cold start",
  "## 3. Verified load vs b3sum",
  "## 4. System area at load",
  "## 5a. Files: sparse toFile",
  "## 5b. Files: a delta vs the complete file",
  "## 5c. Files: cold start with the file evicted from the page cache",
];

const ROWS: string[][] = [
  [
    "evolve + first Echo",
    "Echo call",
    "Echo callAsync (run thread)",
    "hot Echo call (mailbox, no exit)",
    "hot Echo callAsync",
    "hot Echo call vs exit-based",
    "close (teardown)",
  ],
  [
    ...["128k", "8m", "64m", "256m"].flatMap((heap) => [
      `${heap} (c) fromFileUnchecked`,
      `${heap} (d) fromFileCached, warm`,
      `${heap} (b) fromFile, verified`,
      `${heap} (a) evolve, no snapshot`,
      `${heap} toFile`,
    ]),
    ...["8m", "64m", "256m"].flatMap((heap) => [
      `${heap} restore after 1 dirty page (5 rounds)`,
      `${heap} restore after 1000 dirty pages (5 rounds)`,
    ]),
  ],
  [
    "fromFile's hash step (map the blob, BLAKE3; the loader's code)",
    "fromFile − fromFileUnchecked (load only, difference of medians)",
    "fromFile, load only",
  ],
  ["128k", "256m"].flatMap((heap) => [
    `${heap} systemAreaFor, first load in the process (rebuild + seal)`,
    `${heap} of which buildSystemArea (tables, stubs)`,
    `${heap} of which sealing it (Blob.fromBytes)`,
    `${heap} systemAreaFor, later loads (image PTEs read + checked)`,
    `${heap} cold start, system area not cached`,
  ]),
  ["1 MiB touched", "whole heap touched"].flatMap((what) => [
    `${what}: toFile (sparse)`,
    `${what}: on disk (du)`,
    `${what}: first toFile (hashes the blob)`,
  ]),
  [
    "delta: toFile (compares with the base)",
    "delta: file size",
    "delta: on disk (du)",
    "delta: cold start, fromFileUnchecked",
    "delta: cold start, fromFile (hashes 256 MiB)",
  ],
  [
    "evicted, working set read ahead",
    "evicted, no working set",
    "evicted, working set vs none",
    "warm, working set vs none",
    "warm, no working set",
  ],
];

async function bench(...args: string[]): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "bench/bench.ts", ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.ok(out.success, `bench ${args.join(" ")} failed (exit ${out.code}):\n${stderr}`);
  return new TextDecoder().decode(out.stdout);
}

async function found(command: string): Promise<boolean> {
  try {
    return (await new Deno.Command(command, { args: ["--version"], stdout: "null", stderr: "null" }).output())
      .success;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** The tables of a report: heading and rows split into cells (without the header and separator lines). */
function tables(report: string): Map<string, string[][]> {
  const result = new Map<string, string[][]>();
  let rows: string[][] | undefined;
  for (const line of report.split("\n")) {
    if (line.startsWith("## ")) result.set(line, rows = []);
    else if (line.startsWith("| ") && rows && !line.startsWith("| what |")) {
      rows.push(line.slice(1, -1).split(" | ").map((c) => c.trim()));
    }
  }
  return result;
}

vmTest("deno task bench --quick prints every table and row, each with its baseline and a ratio", async () => {
  const report = await bench("--quick", "--runs", "3");
  const parsed = tables(report);
  const headings = [...parsed.keys()];
  assert.equal(headings.length, HEADERS.length, `headings: ${headings.join("; ")}`);
  // Without gcc the floor is unavailable, without b3sum its baseline: those rows have no ratio.
  const complete = await found("gcc") && await found("b3sum");
  HEADERS.forEach((header, i) => {
    assert.ok(headings[i].startsWith(header), `table ${i + 1}: "${headings[i]}", expected "${header}…"`);
    const rows = parsed.get(headings[i])!;
    assert.deepEqual(rows.map((r) => r[0]), ROWS[i], `rows of ${header}`);
    for (const row of rows) {
      assert.equal(row.length, 6, `cells of "${row[0]}"`);
      assert.notEqual(row[2], "", `baseline of "${row[0]}"`);
      if (complete) assert.match(row[4], /^\d+\.\d\dx$/, `ratio of "${row[0]}"`);
      if (row[5] !== "") assert.match(row[5], /^≤ \d\.\d\dx: (met|NOT met)$/, `target of "${row[0]}"`);
    }
  });
  assert.match(report, /^# snapvm bench \(quick/);
  assert.match(report, /deno task bench:oci/);
  assert.match(report, (await found("b3sum")) ? /b3sum of an empty file/ : /b3sum not found/);
});

vmTest("deno task bench --only prints only the tables asked for", async () => {
  const parsed = tables(await bench("--only", "system", "--runs", "3"));
  assert.deepEqual([...parsed.keys()].map((h) => h.slice(0, 6)), ["## 4. "]);
});

Deno.test("bench options: --calls, --only, --runs", () => {
  assert.deepEqual(parseArgs([]).tables, ["calls", "cold", "verify", "system", "files"]);
  assert.equal(parseArgs([]).options.runs, 200);
  assert.equal(parseArgs(["--quick"]).options.runs, 20);
  assert.deepEqual(parseArgs(["--calls"]).tables, ["calls"]);
  assert.deepEqual(parseArgs(["--only", "files,cold", "--only", "verify"]).tables, [
    "cold",
    "verify",
    "files",
  ]);
  const { options } = parseArgs(["--runs", "3"]);
  assert.equal(options.count(200), 3);
  assert.equal(parseArgs([]).options.count(40), 40);
  assert.throws(() => parseArgs(["--only", "hash"]), /unknown table "hash"/);
  assert.throws(() => parseArgs(["--runs", "0"]), RangeError);
  assert.throws(() => parseArgs(["--fast"]), /unknown argument --fast/);
});
