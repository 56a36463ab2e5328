/**
 * `deno run -A bench/files.ts`: snapshot files at the physical limit, each measurement next to its baseline
 * in the same run (medians / p90; the machine is shared, so compare within a run, not across runs).
 *
 * 1. Sparse `toFile` at a 256 MiB heap: the guest touched 1 MiB, and the whole heap; the same snapshots
 *    written densely (every byte, the writer before sparse files) as the baseline; time and `du` size.
 * 2. Deltas: a 256 MiB snapshot with 1% of its pages changed, written complete and as a delta over its
 *    base; sizes, and cold start (load + `fromSnapshot` + first `Echo`) from each.
 * 3. Cold start with the file evicted from the page cache (`posix_fadvise DONTNEED`, as on a host the file
 *    was just copied to), with and without a recorded working set, next to `bench/floor.c evicted` (a C
 *    program mapping the file `MAP_PRIVATE` + `MADV_RANDOM` and touching as many pages as snapvm reads).
 *
 * Usage: `deno run -A bench/files.ts [--runs N] [--quick]`.
 *
 * @module
 */
import { blake3Backend, HostFunctions, MultiUseSandbox, Snapshot, UninitializedSandbox } from "../mod.ts";
import { hostIdentity, live } from "../vm/snapshot.ts";
import { writeSnapshotFile } from "../vm/snapshot/file.ts";
import { evictFromPageCache } from "../vm/snapshot/_pages.ts";
import { parseFloorOutput } from "./_floor.ts";
import { type Stat, stat, us } from "./_stats.ts";
import { parseSnapshotHeader } from "../format/mod.ts";

const arg = (name: string) => Deno.args.indexOf(name);
const QUICK = arg("--quick") >= 0;
const RUNS = arg("--runs") >= 0 ? Number(Deno.args[arg("--runs") + 1]) : QUICK ? 8 : 40;
const MIB = 1024 * 1024;
const HEAP = 256 * MIB;
const ROOT = new URL("../", import.meta.url);
const path = (url: URL) => decodeURIComponent(url.pathname);
const guest = path(new URL("guest/bin/testguest", ROOT));
const fns = () =>
  new HostFunctions().register(
    "Add",
    { params: ["i32", "i32"], returns: "i32" },
    (a: number, b: number) => a + b,
  );
const log = (s: string) => console.error(`files: ${s}`);
const dir = Deno.makeTempDirSync({ prefix: "snapvm-files-bench-" });
const out: string[] = [];
const print = (line = "") => out.push(line);
const cell = (s?: Stat) => (s ? `${us(s.median)} / ${us(s.p90)}` : "n/a");
const ratio = (a?: Stat, b?: Stat) => (a && b ? `${(a.median / b.median).toFixed(2)}x` : "-");
const mib = (bytes: number) => `${(bytes / MIB).toFixed(bytes < 10 * MIB ? 2 : 0)} MiB`;
const size = (p: string) => Deno.statSync(p).size;
const onDisk = (p: string) => Deno.statSync(p).blocks! * 512;

/** Times each of `fns` `runs` times, interleaved (a, b, a, b, …) so that noise hits them alike. */
function interleaved(runs: number, warmup: number, cases: (() => number)[]): Stat[] {
  const samples: number[][] = cases.map(() => []);
  for (let i = -warmup; i < runs; i++) {
    cases.forEach((c, k) => {
      const ms = c();
      if (i >= 0) samples[k].push(ms);
    });
  }
  return samples.map(stat);
}

/** Milliseconds until the promise of `fn` settles (toFile does its work synchronously). */
async function timeAsync(fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/** Cold start: load, a sandbox, its first Echo; everything closed afterwards (untimed). */
function coldStart(load: () => Snapshot, phases?: number[][]): number {
  const t0 = performance.now();
  const snap = load();
  const t1 = performance.now();
  const sbx = MultiUseSandbox.fromSnapshot(snap, fns());
  const t2 = performance.now();
  sbx.call("Echo", "x");
  const t3 = performance.now();
  sbx.close();
  snap.close();
  phases?.forEach((list, i) => list.push([t1 - t0, t2 - t1, t3 - t2][i]));
  return t3 - t0;
}

/** A 256 MiB-heap snapshot: init touches the whole heap when `dense`; then `touch` pages and a static. */
function makeSnapshot(dense: boolean, touch: number): Snapshot {
  using sbx = new UninitializedSandbox(guest, { heapSize: HEAP, guestInitArg: dense ? 1n : 0n }, fns())
    .evolve();
  if (touch > 0) sbx.call("TouchPages", touch);
  sbx.call("AddToStatic", 1);
  return sbx.snapshot();
}

/**
 * The writer without holes (every byte written, as toFile wrote before sparse files): the baseline. Writes
 * the same prefix as the file `like` (written by toFile) and the whole blob.
 */
function denseWriter(snap: Snapshot, like: string): (to: string) => Promise<void> {
  const blob = live(snap).blob;
  const head = Deno.readFileSync(like).subarray(0, 1 << 20);
  const parsed = parseSnapshotHeader(head, size(like), hostIdentity());
  return (to) =>
    writeSnapshotFile(to, {
      header: { ...parsed.header },
      sregs: parsed.sregs,
      hostFunctions: parsed.hostFunctions,
      blobHash: parsed.blobHash,
      // The same sections (the guest binary's path: sandboxes of a guest file record it).
      binary: parsed.binary ?? undefined,
      workingSet: parsed.workingSet ?? undefined,
    }, { view: blob.ref, stored: [{ first: 0, count: blob.size / 4096 }], data: [], sparse: false });
}

try {
  // ---- 1. Sparse toFile ----------------------------------------------------------------------------------------
  print(`## snapvm files (median / p90; BLAKE3: ${blake3Backend()}; runs ${RUNS})`);
  print();
  print("### 1. Sparse toFile, 256 MiB heap");
  print();
  print(
    "| snapshot | writer | toFile | first toFile (hashes the blob) | apparent size | on disk (du) | MB/s of blob |",
  );
  print("|---|---|---|---|---|---|---|");
  for (
    const [label, dense, touch] of [["1 MiB touched", false, 256], ["whole heap touched", true, 0]] as const
  ) {
    log(`sparse: ${label}: snapshot`);
    const tSnap = performance.now();
    using snap = makeSnapshot(dense, touch);
    const snapMs = performance.now() - tSnap;
    const sparsePath = `${dir}/sparse.hls`, densePath = `${dir}/dense.hls`;
    const first = await timeAsync(() => snap.toFile(sparsePath));
    const writeDense = denseWriter(snap, sparsePath);
    const sparse: number[] = [], plain: number[] = [];
    for (let i = -2; i < (dense ? Math.max(3, RUNS / 4) : RUNS); i++) {
      const a = await timeAsync(() => snap.toFile(sparsePath));
      const b = await timeAsync(() => writeDense(densePath));
      if (i >= 0) sparse.push(a), plain.push(b);
    }
    assertSameBytes(sparsePath, densePath);
    const blob = live(snap).blob.size;
    const mbs = (s: Stat) => `${(blob / (s.median / 1e6) / 1e6).toFixed(0)}`;
    const s = stat(sparse), p = stat(plain);
    print(
      `| ${label} (snapshot() ${snapMs.toFixed(0)} ms) | sparse (toFile) | ${cell(s)} | ${
        first.toFixed(1)
      } ms | ` +
        `${mib(size(sparsePath))} | ${mib(onDisk(sparsePath))} | ${mbs(s)} |`,
    );
    print(
      `| | dense (baseline: every byte written) | ${cell(p)} | | ${mib(size(densePath))} | ${
        mib(onDisk(densePath))
      } | ${mbs(p)} |`,
    );
    Deno.removeSync(sparsePath);
    Deno.removeSync(densePath);
  }

  // ---- 2. Deltas -----------------------------------------------------------------------------------------------
  log("delta: base");
  const base = `${dir}/base.hls`, full = `${dir}/full.hls`, delta = `${dir}/delta.hls`;
  {
    using snap = makeSnapshot(true, 0);
    await snap.toFile(base);
  }
  const changedPages = Math.round(HEAP / 4096 / 100);
  let deltaMs = 0, fullMs = 0;
  {
    using baseSnap = Snapshot.fromFile(base);
    using sbx = MultiUseSandbox.fromSnapshot(baseSnap, fns());
    sbx.call("TouchPages", changedPages);
    sbx.call("AddToStatic", 1);
    using snap = sbx.snapshot();
    fullMs = await timeAsync(() => snap.toFile(full)); // hashes the blob once
    deltaMs = await timeAsync(() => snap.toFile(delta, { base }));
  }
  const info = Snapshot.inspectFile(delta);
  print();
  print(`### 2. Deltas: 256 MiB heap written by init, then ${changedPages} pages (1%) changed`);
  print();
  print("| file | apparent size | on disk (du) | toFile |");
  print("|---|---|---|---|");
  print(`| base (complete) | ${mib(size(base))} | ${mib(onDisk(base))} | |`);
  print(
    `| after the change, complete (baseline) | ${mib(size(full))} | ${mib(onDisk(full))} | ${
      fullMs.toFixed(1)
    } ms (hashes the blob) |`,
  );
  print(
    `| after the change, delta over base | ${mib(size(delta))} | ${mib(onDisk(delta))} | ${
      deltaMs.toFixed(1)
    } ms (compares with the base) |`,
  );
  print(`| delta stores | ${info.base!.pages} pages in ${info.base!.runs} runs | | |`);
  log("delta: cold starts");
  Snapshot.fromFile(delta).close(); // warms the page cache of all three files
  Snapshot.fromFile(full).close();
  const [uFull, uDelta] = interleaved(RUNS * 2, 10, [
    () => coldStart(() => Snapshot.fromFileUnchecked(full)),
    () => coldStart(() => Snapshot.fromFileUnchecked(delta)),
  ]);
  const [cFull, cDelta] = interleaved(Math.max(3, Math.round(RUNS / 8)), 1, [
    () => coldStart(() => Snapshot.fromFile(full)),
    () => coldStart(() => Snapshot.fromFile(delta)),
  ]);
  print();
  print(
    "| cold start (load + fromSnapshot + first Echo), page cache warm | complete file (baseline) | base + delta | delta / complete |",
  );
  print("|---|---|---|---|");
  print(`| fromFileUnchecked | ${cell(uFull)} | ${cell(uDelta)} | ${ratio(uDelta, uFull)} |`);
  print(`| fromFile (hashes 256 MiB) | ${cell(cFull)} | ${cell(cDelta)} | ${ratio(cDelta, cFull)} |`);
  for (const f of [base, full, delta]) Deno.removeSync(f);

  // ---- 3. Evicted page cache -----------------------------------------------------------------------------------
  log("evicted: files");
  const plainPath = `${dir}/plain.hls`, wsPath = `${dir}/ws.hls`;
  let wsPages = 0;
  {
    using snap = makeSnapshot(true, 0);
    await snap.toFile(plainPath);
    wsPages = snap.recordWorkingSet((sbx) => void sbx.call("Echo", "x"), fns()).pages;
    await snap.toFile(wsPath);
  }
  // How many file pages a cold start without working set reads from disk: the floor touches as many.
  evictFromPageCache(plainPath);
  coldStart(() => Snapshot.fromFileUnchecked(plainPath));
  const readPages = residentPages(plainPath);
  log(`evicted: snapvm (${readPages} pages read without working set, ${wsPages} in the working set)`);
  const phases = { plain: [[], [], []] as number[][], ws: [[], [], []] as number[][] };
  const [ePlain, eWs] = interleaved(RUNS, 5, [
    () => {
      evictFromPageCache(plainPath);
      return coldStart(() => Snapshot.fromFileUnchecked(plainPath), phases.plain);
    },
    () => {
      evictFromPageCache(wsPath);
      return coldStart(() => Snapshot.fromFileUnchecked(wsPath), phases.ws);
    },
  ]);
  const [wPlain, wWs] = interleaved(RUNS * 2, 10, [
    () => coldStart(() => Snapshot.fromFileUnchecked(plainPath)),
    () => coldStart(() => Snapshot.fromFileUnchecked(wsPath)),
  ]);
  log("evicted: floor");
  const floor = await runFloorEvicted(RUNS, HEAP / MIB, readPages);
  const fEvicted = floor.get(`evicted_${HEAP / MIB}m_p${readPages}`);
  const fCached = floor.get(`cached_${HEAP / MIB}m_p${readPages}`);
  const phase = (list: number[][]) =>
    list.map((samples) => us(stat(samples.slice(-RUNS)).median)).join(" + ");
  print();
  print(
    `### 3. Cold start with the file evicted from the page cache (256 MiB heap written by init; snapvm reads ${readPages} file pages without a working set, the working set has ${wsPages})`,
  );
  print();
  print(
    "| case | evicted | (load + fromSnapshot + Echo, medians) | page cache warm | evicted / floor evicted |",
  );
  print("|---|---|---|---|---|");
  print(
    `| fromFileUnchecked, no working set (baseline) | ${cell(ePlain)} | ${phase(phases.plain)} | ${
      cell(wPlain)
    } | ${ratio(ePlain, fEvicted)} |`,
  );
  print(
    `| fromFileUnchecked, working set read ahead | ${cell(eWs)} | ${phase(phases.ws)} | ${cell(wWs)} | ${
      ratio(eWs, fEvicted)
    } |`,
  );
  print(
    `| floor.c evicted, ${readPages} pages, MADV_RANDOM | ${cell(fEvicted)} | | ${cell(fCached)} | 1.00x |`,
  );
  print();
  print(`working set vs none: evicted ${ratio(eWs, ePlain)}, warm ${ratio(wWs, wPlain)}`);
} finally {
  Deno.removeSync(dir, { recursive: true });
}
console.log(out.join("\n"));

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
    const length = size(file);
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

/** Builds bench/floor.c (gcc -O2, into build/) if needed and runs its `evicted` mode. */
async function runFloorEvicted(runs: number, sizeMib: number, pages: number) {
  const source = path(new URL("bench/floor.c", ROOT)), binary = path(new URL("build/floor", ROOT));
  const mtime = (p: string) => {
    try {
      return Deno.statSync(p).mtime?.getTime() ?? 0;
    } catch {
      return -1;
    }
  };
  if (mtime(binary) < mtime(source)) {
    Deno.mkdirSync(path(new URL("build/", ROOT)), { recursive: true });
    const tmp = `${binary}.${Deno.pid}.tmp`;
    const built = await new Deno.Command("gcc", { args: ["-O2", "-Wall", "-o", tmp, source] }).output();
    if (!built.success) throw new Error(new TextDecoder().decode(built.stderr));
    Deno.renameSync(tmp, binary);
  }
  const result = await new Deno.Command(binary, {
    args: ["evicted", String(runs), dir, String(sizeMib), String(pages)],
  }).output();
  if (!result.success) throw new Error(`floor evicted failed: ${new TextDecoder().decode(result.stderr)}`);
  return parseFloorOutput(new TextDecoder().decode(result.stdout));
}
