/**
 * Table 5 of `deno task bench`: snapshot files at the physical limit, each figure next to its baseline in
 * the same run. Runs alone too: `deno run -A bench/files.ts [--quick] [--runs N]` (options as bench.ts).
 *
 * - 5a. Sparse `toFile` at a 256 MiB heap: the guest touched 1 MiB, and the whole heap; the same snapshots
 *   written densely (every byte, the writer before sparse files) as the baseline; time and `du` size.
 * - 5b. Deltas: a 256 MiB snapshot with 1% of its pages changed, written complete and as a delta over its
 *   base; sizes, and cold start (load + `fromSnapshot` + first `Echo`) from each.
 * - 5c. Cold start with the file evicted from the page cache (`posix_fadvise DONTNEED`, as on a host the file
 *   was just copied to), with and without a recorded working set, next to `bench/floor.c evicted` (a C
 *   program mapping the file `MAP_PRIVATE` + `MADV_RANDOM` and touching as many pages as snapvm reads).
 *
 * @module
 */
import { MultiUseSandbox, Snapshot } from "../mod.ts";
import { live } from "../vm/snapshot.ts";
import { evictFromPageCache } from "../vm/snapshot/_pages.ts";
import { runFloorEvicted } from "./_floor.ts";
import { coldStart, guestSandbox, hostFunctions } from "./_guest.ts";
import { type BenchOptions, log, parseArgs } from "./_options.ts";
import { type Figure, formatTable, median, type Row, size, type Table } from "./_report.ts";
import { denseWriter } from "./_steps.ts";
import { interleaved, stat, timeMs } from "./_stats.ts";

const HEAP = 256 << 20;

/** Bytes a file takes on disk (`du`). */
const onDisk = (p: string): Figure => ({ median: Deno.statSync(p).blocks! * 512, bytes: true });
const apparent = (p: string) => Deno.statSync(p).size;
const fileSize = (p: string): Figure => ({ median: apparent(p), bytes: true });

/** A 256 MiB-heap snapshot: init writes the whole heap when `dense`; then `touch` pages and a static. */
function makeSnapshot(dense: boolean, touch: number): Snapshot {
  using sbx = guestSandbox(HEAP, dense).evolve();
  if (touch > 0) sbx.call("TouchPages", touch);
  sbx.call("AddToStatic", 1);
  return sbx.snapshot();
}

/** Measures table 5 (three parts). */
export async function filesTables(o: BenchOptions): Promise<Table[]> {
  const dir = await Deno.makeTempDir({ prefix: "snapvm-bench-files-" });
  try {
    return [await sparse(o, dir), await deltas(o, dir), await evicted(o, dir)];
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function sparse(o: BenchOptions, dir: string): Promise<Table> {
  const rows: Row[] = [], notes: string[] = [];
  for (
    const [label, dense, touch] of [["1 MiB touched", false, 256], ["whole heap touched", true, 0]] as const
  ) {
    log(`files: sparse toFile, ${label}`);
    const tSnap = performance.now();
    using snap = makeSnapshot(dense, touch);
    const snapMs = performance.now() - tSnap;
    const sparsePath = `${dir}/sparse.hls`, densePath = `${dir}/dense.hls`;
    const first = await timeMs(() => snap.toFile(sparsePath));
    const writeDense = denseWriter(snap, sparsePath);
    const [s, d] = await interleaved(o.count(dense ? 10 : 40), 2, [
      () => timeMs(() => snap.toFile(sparsePath)),
      () => timeMs(() => writeDense(densePath)),
    ]);
    assertSameBytes(sparsePath, densePath);
    rows.push(
      { what: `${label}: toFile (sparse)`, ours: s, baseline: "dense writer (every byte written)", base: d },
      {
        what: `${label}: on disk (du)`,
        ours: onDisk(sparsePath),
        baseline: "dense file on disk",
        base: onDisk(densePath),
      },
      {
        what: `${label}: first toFile (hashes the blob)`,
        ours: median(first * 1000),
        baseline: "toFile again",
        base: s,
      },
    );
    const blob = live(snap).blob.size;
    notes.push(
      `${label}: snapshot() ${snapMs.toFixed(0)} ms; both files ${size(apparent(sparsePath))} apparent; ` +
        `${(blob / (s.median / 1e6) / 1e6).toFixed(0)} MB/s of blob sparse, ${
          (blob / (d.median / 1e6) / 1e6).toFixed(0)
        } MB/s dense.`,
    );
    await Deno.remove(sparsePath);
    await Deno.remove(densePath);
  }
  return { title: "5a. Files: sparse toFile (256 MiB heap)", rows, notes };
}

async function deltas(o: BenchOptions, dir: string): Promise<Table> {
  log("files: delta");
  const base = `${dir}/base.hls`, full = `${dir}/full.hls`, delta = `${dir}/delta.hls`;
  {
    using snap = makeSnapshot(true, 0);
    await snap.toFile(base);
  }
  const changedPages = Math.round(HEAP / 4096 / 100);
  let deltaMs = 0, fullMs = 0;
  {
    using baseSnap = Snapshot.fromFile(base);
    using sbx = MultiUseSandbox.fromSnapshot(baseSnap, hostFunctions());
    sbx.call("TouchPages", changedPages);
    sbx.call("AddToStatic", 1);
    using snap = sbx.snapshot();
    fullMs = await timeMs(() => snap.toFile(full)); // hashes the blob once
    deltaMs = await timeMs(() => snap.toFile(delta, { base }));
  }
  const info = Snapshot.inspectFile(delta);
  log("files: delta cold starts");
  Snapshot.fromFile(delta).close(); // brings all three files into the page cache
  Snapshot.fromFile(full).close();
  // 300 pairs: the delta's extra cost (~60 µs: a second file's header, its mappings) is a tenth of a cold
  // start, and 80 pairs moved the ratio between 1.04x and 1.24x from run to run.
  const [uFull, uDelta] = await interleaved(o.count(300), 20, [
    () => coldStart(() => Snapshot.fromFileUnchecked(full)),
    () => coldStart(() => Snapshot.fromFileUnchecked(delta)),
  ]);
  const [cFull, cDelta] = await interleaved(o.count(5), 1, [
    () => coldStart(() => Snapshot.fromFile(full)),
    () => coldStart(() => Snapshot.fromFile(delta)),
  ]);
  const rows: Row[] = [
    {
      what: "delta: toFile (compares with the base)",
      ours: median(deltaMs * 1000),
      baseline: "complete: toFile (hashes the blob)",
      base: median(fullMs * 1000),
    },
    { what: "delta: file size", ours: fileSize(delta), baseline: "complete file size", base: fileSize(full) },
    {
      what: "delta: on disk (du)",
      ours: onDisk(delta),
      baseline: "complete file on disk",
      base: onDisk(full),
    },
    {
      what: "delta: cold start, fromFileUnchecked",
      ours: uDelta,
      baseline: "complete: cold start, fromFileUnchecked",
      base: uFull,
      target: 1.2,
    },
    {
      what: "delta: cold start, fromFile (hashes 256 MiB)",
      ours: cDelta,
      baseline: "complete: cold start, fromFile",
      base: cFull,
      target: 1.2,
    },
  ];
  const notes = [
    `256 MiB heap written by init, then ${changedPages} pages (1%) changed; the delta stores ${
      info.base!.pages
    } pages in ${info.base!.runs} runs. ` +
    "Cold start: load + fromSnapshot + first Echo, page cache warm.",
  ];
  for (const f of [base, full, delta]) await Deno.remove(f);
  return { title: "5b. Files: a delta vs the complete file", rows, notes };
}

async function evicted(o: BenchOptions, dir: string): Promise<Table> {
  log("files: evicted page cache");
  const runs = o.count(40);
  const plainPath = `${dir}/plain.hls`, wsPath = `${dir}/ws.hls`;
  let wsPages = 0;
  {
    using snap = makeSnapshot(true, 0);
    await snap.toFile(plainPath);
    wsPages = snap.recordWorkingSet((sbx) => void sbx.call("Echo", "x"), hostFunctions()).pages;
    await snap.toFile(wsPath);
  }
  // How many file pages a cold start without working set reads from disk: the floor touches as many.
  evictFromPageCache(plainPath);
  coldStart(() => Snapshot.fromFileUnchecked(plainPath));
  const readPages = residentPages(plainPath);
  log(`files: evicted (${readPages} pages read without working set, ${wsPages} in the working set)`);
  const phases = { plain: [[], [], []] as number[][], ws: [[], [], []] as number[][] };
  const [ePlain, eWs] = await interleaved(runs, 5, [
    () => {
      evictFromPageCache(plainPath);
      return coldStart(() => Snapshot.fromFileUnchecked(plainPath), { phases: phases.plain });
    },
    () => {
      evictFromPageCache(wsPath);
      return coldStart(() => Snapshot.fromFileUnchecked(wsPath), { phases: phases.ws });
    },
  ]);
  const [wPlain, wWs] = await interleaved(runs * 2, 10, [
    () => coldStart(() => Snapshot.fromFileUnchecked(plainPath)),
    () => coldStart(() => Snapshot.fromFileUnchecked(wsPath)),
  ]);
  log("files: floor evicted");
  const floor = await runFloorEvicted(runs, HEAP >> 20, readPages);
  const fEvicted = floor.get(`evicted_${HEAP >> 20}m_p${readPages}`);
  const fCached = floor.get(`cached_${HEAP >> 20}m_p${readPages}`);
  const floorLabel = `floor evicted (${readPages} pages, MADV_RANDOM)`;
  const phase = (list: number[][]) =>
    list.map((samples) => (stat(samples.slice(-runs)).median / 1000).toFixed(2)).join(" + ");
  const rows: Row[] = [
    { what: "evicted, working set read ahead", ours: eWs, baseline: floorLabel, base: fEvicted, target: 1.5 },
    { what: "evicted, no working set", ours: ePlain, baseline: floorLabel, base: fEvicted },
    { what: "evicted, working set vs none", ours: eWs, baseline: "evicted, no working set", base: ePlain },
    { what: "warm, working set vs none", ours: wWs, baseline: "warm, no working set", base: wPlain },
    {
      what: "warm, no working set",
      ours: wPlain,
      baseline: `floor cached (${readPages} pages)`,
      base: fCached,
    },
  ];
  const notes = [
    `Cold start (fromFileUnchecked + fromSnapshot + first Echo) of a 256 MiB heap written by init; snapvm reads ` +
    `${readPages} file pages without a working set, the working set has ${wsPages}.`,
    `Evicted, load + fromSnapshot + Echo medians in ms: no working set ${phase(phases.plain)}; working set ${
      phase(phases.ws)
    }.`,
  ];
  await Deno.remove(plainPath);
  await Deno.remove(wsPath);
  return { title: "5c. Files: cold start with the file evicted from the page cache", rows, notes };
}

/** The sparse and the dense file must read the same. */
function assertSameBytes(a: string, b: string): void {
  const x = Deno.readFileSync(a), y = Deno.readFileSync(b);
  if (x.length !== y.length || x.some((v, i) => v !== y[i])) throw new Error(`${a} and ${b} differ`);
}

/** File pages in the page cache (mincore over a read-only shared mapping). */
function residentPages(file: string): number {
  const lib = Deno.dlopen("libc.so.6", {
    open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
    close: { parameters: ["i32"], result: "i32" },
    mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
    munmap: { parameters: ["pointer", "usize"], result: "i32" },
    mincore: { parameters: ["pointer", "usize", "buffer"], result: "i32" },
  });
  try {
    const length = apparent(file);
    const fd = lib.symbols.open(new TextEncoder().encode(`${file}\0`), 0, 0);
    const p = lib.symbols.mmap(null, BigInt(length), 1, 1, fd, 0n)!;
    const pages = new Uint8Array(Math.ceil(length / 4096));
    lib.symbols.mincore(p, BigInt(length), pages);
    lib.symbols.munmap(p, BigInt(length));
    lib.symbols.close(fd);
    return pages.reduce((n, v) => n + (v & 1), 0);
  } finally {
    lib.close();
  }
}

if (import.meta.main) {
  const { options } = parseArgs(Deno.args);
  const tables = await filesTables(options);
  console.log(tables.flatMap((t) => ["", ...formatTable(t)]).join("\n"));
}
