/**
 * Table 2 of `deno task bench`: cold start (nothing to one completed `Echo`) at four heap sizes, from a
 * snapshot file and without one, and `toFile`, next to bench/floor.c (a file mapped `MAP_PRIVATE` to the
 * first `out`); then restore after 1 and 1000 dirty pages (`_restore.ts`).
 *
 * @module
 */
import { type MultiUseSandbox, Snapshot } from "../mod.ts";
import { runFloor } from "./_floor.ts";
import { restoreRows } from "./_restore.ts";
import { coldStart, guestSandbox } from "./_guest.ts";
import { type BenchOptions, log } from "./_options.ts";
import { type Figure, median, ratio, type Row, type Table } from "./_report.ts";
import { denseWriter } from "./_steps.ts";
import { interleaved, measure, type Stat, timeMs } from "./_stats.ts";

/** The heap sizes of the table, named as bench/floor.c names them. */
export const COLD_HEAPS: readonly (readonly [string, number])[] = [
  ["128k", 128 << 10],
  ["8m", 8 << 20],
  ["64m", 64 << 20],
  ["256m", 256 << 20],
];

/** Measures table 2. */
export async function coldTable(o: BenchOptions): Promise<Table> {
  const dir = await Deno.makeTempDir({ prefix: "snapvm-bench-cold-" });
  const measured = new Map<string, Record<string, Stat>>();
  let restore: Row[];
  try {
    for (const [name, heapSize] of COLD_HEAPS) measured.set(name, await measureHeap(o, dir, name, heapSize));
    restore = await restoreRows(o.count(1000), o.count(200));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  log("cold: floor (bench/floor.c cold)");
  const floor = await runFloor({ runs: o.count(200), only: ["cold"] });
  const rows: Row[] = [];
  for (const [name] of COLD_HEAPS) {
    const r = measured.get(name)!;
    const fc = floor.get(`cold_${name}`);
    const floorCold = `floor cold ${name} (map the file, first out)`;
    rows.push(
      { what: `${name} (c) fromFileUnchecked`, ours: r.c, baseline: floorCold, base: fc },
      { what: `${name} (d) fromFileCached, warm`, ours: r.d, baseline: floorCold, base: fc },
      { what: `${name} (b) fromFile, verified`, ours: r.b, baseline: "(c) fromFileUnchecked", base: r.c },
      { what: `${name} (a) evolve, no snapshot`, ours: r.a, baseline: "(c) fromFileUnchecked", base: r.c },
      { what: `${name} toFile`, ours: r.toFile, baseline: "dense writer (every byte)", base: r.dense },
    );
  }
  rows.push(...restore);
  const notes = [];
  const c128 = measured.get("128k")?.c, c256 = measured.get("256m")?.c;
  notes.push(`(c) at 256 MiB vs 128 KiB: ${ratio(c256, c128)}.`);
  const b256 = measured.get("256m")?.b;
  if (b256 && c256) {
    const hash: Figure = median(b256.median - c256.median);
    notes.push(
      `(b) − (c) at 256 MiB: ${(hash.median / 1000).toFixed(1)} ms, ${
        (256 / 1024 / (hash.median / 1e6)).toFixed(2)
      } GiB/s over 256 MiB (table 3 times the hash alone).`,
    );
  }
  return {
    title:
      "2. Cold start: nothing → one completed Echo (the guest's init writes its whole heap; page cache warm)",
    rows,
    notes,
  };
}

async function measureHeap(
  o: BenchOptions,
  dir: string,
  name: string,
  heapSize: number,
): Promise<Record<string, Stat>> {
  const big = heapSize >= 64 << 20;
  const slowRuns = o.count(big ? 20 : 50);
  const fastRuns = o.count(big ? 100 : 200);
  const u = guestSandbox(heapSize);
  const file = `${dir}/${name}.hls`, dense = `${dir}/${name}-dense.hls`;
  const r: Record<string, Stat> = {};
  log(`cold ${name}: (a) evolve`);
  r.a = measure<{ sbx?: MultiUseSandbox }>(
    slowRuns,
    (s) => {
      s.sbx = u.evolve();
      s.sbx.call("Echo", "x");
    },
    () => ({}),
    (s) => s.sbx?.close(),
    2,
  );
  {
    using src = u.evolve();
    using snap = src.snapshot();
    await snap.toFile(file); // hashes the blob once; the runs below write it
    log(`cold ${name}: toFile vs the dense writer`);
    const writeDense = denseWriter(snap, file);
    [r.toFile, r.dense] = await interleaved(big ? o.count(10) : slowRuns, 2, [
      () => timeMs(() => snap.toFile(file)),
      () => timeMs(() => writeDense(dense)),
    ]);
    await Deno.remove(dense);
  }
  log(`cold ${name}: (b) fromFile`);
  [r.b] = await interleaved(slowRuns, 3, [() => coldStart(() => Snapshot.fromFile(file))]);
  log(`cold ${name}: (c) fromFileUnchecked, (d) fromFileCached`);
  const cached = Snapshot.fromFileCached(file); // the first load hashes; (d) measures the later ones
  try {
    [r.c, r.d] = await interleaved(fastRuns, 3, [
      () => coldStart(() => Snapshot.fromFileUnchecked(file)),
      () => coldStart(() => Snapshot.fromFileCached(file), { keep: true }),
    ]);
  } finally {
    cached.close(); // also drops it from the cache, and its hold on the system area
  }
  await Deno.remove(file);
  return r;
}
