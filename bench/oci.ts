/**
 * Shipping a 64 MiB snapshot through a local CNCF distribution registry (Debian's `docker-registry`, started
 * on 127.0.0.1 for the run and stopped after it): push; pull into an empty cache, then cold start and first
 * call; pull again; and a delta over a base the registry holds (1% of the pages changed): what a push sends
 * and what a pull receives. Request bytes are counted by a proxy in front of the registry, independently of
 * the client. Prints medians (and p90) in ms.
 *
 * Usage: `deno task bench:oci [--runs N]` (default 5). Needs /dev/kvm (the snapshots are made with the test
 * guest) and /usr/bin/docker-registry.
 *
 * @module
 */
import { MultiUseSandbox, Snapshot, UninitializedSandbox } from "../mod.ts";
import { digestFile, pullSnapshotFile, pushSnapshotFile } from "../format/oci/mod.ts";
import { startRegistry } from "../tests/format/oci/_registry.ts";
import { startCuttingProxy } from "../tests/format/oci/_proxy.ts";
import { type Stat, stat } from "./_stats.ts";

const arg = Deno.args.indexOf("--runs");
const RUNS = arg >= 0 ? Number(Deno.args[arg + 1]) : 5;
const MiB = 1024 * 1024;
const guest = new URL("../guest/bin/testguest", import.meta.url).pathname;
const log = (s: string) => console.error(`bench/oci: ${s}`);

const dir = await Deno.makeTempDir({ prefix: "snapvm-bench-oci-" });
try {
  // The image ends just past 2 MiB; a 62 MiB heap makes the memory blob (and the file) about 64 MiB. Init
  // argument 1 writes every heap page, so the file holds data, not holes (zero pages are holes on disk).
  const path = `${dir}/guest.hls`;
  {
    using sbx = new UninitializedSandbox(guest, { heapSize: 62 * MiB, guestInitArg: 1n }).evolve();
    using snap = sbx.snapshot();
    await snap.toFile(path);
  }
  const info = await Deno.stat(path);
  const size = info.size;
  log(`snapshot: ${size} bytes, ${(info.blocks! * 512 / MiB).toFixed(1)} MiB of data on disk`);

  // 1% of the pages changed, written as a delta over the file.
  const deltaPath = `${dir}/guest-delta.hls`;
  const changed = Math.round(size / 4096 / 100);
  {
    using base = Snapshot.fromFileUnchecked(path);
    using sbx = MultiUseSandbox.fromSnapshot(base);
    sbx.call("TouchPages", changed);
    using snap = sbx.snapshot();
    await snap.toFile(deltaPath, { base: path });
  }
  const deltaSize = (await Deno.stat(deltaPath)).size;
  log(`delta: ${changed} pages touched, ${deltaSize} bytes`);

  await using registry = await startRegistry();
  await using proxy = startCuttingProxy(registry.host, {});
  const host = proxy.host;
  const rows: { what: string; stat: Stat; bytes: string }[] = [];
  const time = async <T>(fn: () => Promise<T> | T): Promise<[number, T]> => {
    const t0 = performance.now();
    const result = await fn();
    return [performance.now() - t0, result];
  };
  const mbps = (s: Stat) => (size / MiB / (s.median / 1e6)).toFixed(0);
  const sent = async <T>(fn: () => Promise<T>): Promise<[number, number, T]> => {
    const before = proxy.bytes;
    const [ms, result] = await time(fn);
    return [ms, proxy.bytes - before, result];
  };

  log("sha256");
  const hashing: number[] = [];
  for (let i = 0; i < RUNS; i++) hashing.push((await time(() => digestFile(path)))[0]);
  rows.push({ what: "sha256 of the file (digestFile)", stat: stat(hashing), bytes: "" });

  log("push");
  const pushes: number[] = [];
  let pushBytes = 0;
  for (let i = -1; i < RUNS; i++) {
    // A new repository each time: the registry has no link to the blobs there, so everything is sent.
    const [ms, bytes] = await sent(() => pushSnapshotFile(path, `${host}/bench/full-${i + 1}:v1`));
    if (i >= 0) pushes.push(ms);
    pushBytes = bytes;
  }
  const p = stat(pushes);
  rows.push({ what: `push (${mbps(p)} MiB/s)`, stat: p, bytes: `${pushBytes} sent` });

  log("push again");
  const again: number[] = [];
  let againBytes = 0;
  for (let i = 0; i < RUNS; i++) {
    const [ms, bytes] = await sent(() => pushSnapshotFile(path, `${host}/bench/full-0:v1`));
    again.push(ms);
    againBytes = bytes;
  }
  rows.push({ what: "push again (HEAD finds every blob)", stat: stat(again), bytes: `${againBytes} sent` });

  log("pull, cold start, first call");
  const reference = `${host}/bench/full-0:v1`;
  const pulls: number[] = [], loads: number[] = [], starts: number[] = [], totals: number[] = [];
  const cachedPulls: number[] = [];
  let received = 0;
  let receivedAgain = 0;
  for (let i = -1; i < RUNS; i++) {
    const cacheDir = `${dir}/cache-${i + 1}`;
    const [msPull, pulled] = await time(() => pullSnapshotFile(reference, { cacheDir }));
    // Verified load (BLAKE3 of the whole memory), as Snapshot.pull does; then a sandbox and its first call.
    const [msLoad, snap] = await time(() => Snapshot.fromFileCached(pulled.path));
    const [msStart] = await time(() => {
      using sbx = MultiUseSandbox.fromSnapshot(snap);
      return sbx.call("GetStatic");
    });
    snap.close();
    const [msAgain, repeat] = await time(() => pullSnapshotFile(reference, { cacheDir }));
    if (i >= 0) {
      pulls.push(msPull);
      loads.push(msLoad);
      starts.push(msStart);
      totals.push(msPull + msLoad + msStart);
      cachedPulls.push(msAgain);
    }
    received = pulled.bytesReceived;
    receivedAgain = repeat.bytesReceived;
    await Deno.remove(cacheDir, { recursive: true });
  }
  const pl = stat(pulls);
  rows.push({
    what: `pull into an empty cache (${mbps(pl)} MiB/s)`,
    stat: pl,
    bytes: `${received} received`,
  });
  rows.push({ what: "load, verified (Snapshot.fromFileCached)", stat: stat(loads), bytes: "" });
  rows.push({ what: "fromSnapshot + first call", stat: stat(starts), bytes: "" });
  rows.push({ what: "pull + cold start + first call", stat: stat(totals), bytes: "" });
  rows.push({
    what: "pull again by tag (cached)",
    stat: stat(cachedPulls),
    bytes: `${receivedAgain} received`,
  });

  log("delta push over a base the registry holds");
  const deltaPushes: number[] = [];
  let deltaBytes = 0;
  for (let i = -1; i < RUNS; i++) {
    const repo = `${host}/bench/delta-${i + 1}`;
    await pushSnapshotFile(path, `${repo}:base`);
    const [ms, bytes] = await sent(() => pushSnapshotFile(deltaPath, `${repo}:v2`));
    if (i >= 0) deltaPushes.push(ms);
    deltaBytes = bytes;
  }
  rows.push({
    what: `delta push, 1% of pages changed (${deltaSize}-byte delta file)`,
    stat: stat(deltaPushes),
    bytes: `${deltaBytes} sent`,
  });

  log("delta pull into a cache holding the base");
  const deltaPulls: number[] = [];
  let deltaReceived = 0;
  for (let i = -1; i < RUNS; i++) {
    const cacheDir = `${dir}/delta-cache-${i + 1}`;
    await pullSnapshotFile(`${host}/bench/delta-0:base`, { cacheDir });
    const [ms, pulled] = await time(() => pullSnapshotFile(`${host}/bench/delta-0:v2`, { cacheDir }));
    if (i >= 0) deltaPulls.push(ms);
    deltaReceived = pulled.bytesReceived;
    await Deno.remove(cacheDir, { recursive: true });
  }
  rows.push({
    what: "delta pull, base already cached",
    stat: stat(deltaPulls),
    bytes: `${deltaReceived} received`,
  });

  console.log(
    `\nOCI push/pull of a ${
      (size / MiB).toFixed(1)
    } MiB snapshot (${size} bytes), ${RUNS} runs, local registry\n`,
  );
  console.log("| what | median ms | p90 ms | bytes |");
  console.log("| --- | ---: | ---: | --- |");
  for (const row of rows) {
    console.log(
      `| ${row.what} | ${(row.stat.median / 1000).toFixed(1)} | ${
        (row.stat.p90 / 1000).toFixed(1)
      } | ${row.bytes} |`,
    );
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
