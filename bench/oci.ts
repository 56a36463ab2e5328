/**
 * Push and pull of a 64 MiB snapshot through a local CNCF distribution registry (Debian's
 * `docker-registry`, started on 127.0.0.1 for the run and stopped after it). Prints medians (and p90) in ms,
 * throughput, and the request-body bytes sent and the bytes received.
 *
 * Usage: `deno run -A bench/oci.ts [--runs N]` (default 5). Needs /dev/kvm (the snapshot is made with the
 * test guest) and /usr/bin/docker-registry.
 *
 * @module
 */
import { UninitializedSandbox } from "../mod.ts";
import { digestFile, pullSnapshotFile, pushSnapshotFile } from "../format/oci/mod.ts";
import { startRegistry } from "../tests/format/oci/_registry.ts";
import { type Stat, stat } from "./_stats.ts";

const arg = Deno.args.indexOf("--runs");
const RUNS = arg >= 0 ? Number(Deno.args[arg + 1]) : 5;
const MiB = 1024 * 1024;
const guest = new URL("../guest/bin/testguest", import.meta.url).pathname;
const log = (s: string) => console.error(`bench/oci: ${s}`);

const dir = await Deno.makeTempDir({ prefix: "snapvm-bench-oci-" });
try {
  // The image ends just past 2 MiB; a 62 MiB heap makes the memory blob (and the file) about 64 MiB.
  const path = `${dir}/guest.hls`;
  {
    using sbx = new UninitializedSandbox(guest, { heapSize: 62 * MiB }).evolve();
    using snap = sbx.snapshot();
    await snap.toFile(path);
  }
  const size = (await Deno.stat(path)).size;
  log(`snapshot: ${size} bytes`);

  await using registry = await startRegistry();
  const rows: { what: string; stat: Stat; bytes: string }[] = [];
  const time = async <T>(fn: () => Promise<T>): Promise<[number, T]> => {
    const t0 = performance.now();
    const result = await fn();
    return [performance.now() - t0, result];
  };
  const mbps = (s: Stat) => (size / MiB / (s.median / 1e6)).toFixed(0);

  log("sha256");
  const hashing: number[] = [];
  for (let i = 0; i < RUNS; i++) hashing.push((await time(() => digestFile(path)))[0]);
  rows.push({ what: "sha256 of the file (digestFile)", stat: stat(hashing), bytes: "" });

  for (const chunkSize of [8 * MiB, 32 * MiB]) {
    log(`push, ${chunkSize / MiB} MiB chunks`);
    const samples: number[] = [];
    let sent = 0;
    for (let i = -1; i < RUNS; i++) {
      // A new repository each time: the registry has no link to the blobs there, so everything is sent.
      const [ms, result] = await time(() =>
        pushSnapshotFile(path, `${registry.host}/bench/c${chunkSize}-r${i + 1}:v1`, { chunkSize })
      );
      if (i >= 0) samples.push(ms);
      sent = result.bytesSent;
    }
    const s = stat(samples);
    rows.push({
      what: `push, ${chunkSize / MiB} MiB chunks (${mbps(s)} MiB/s)`,
      stat: s,
      bytes: `${sent} sent`,
    });
  }

  log("push again (blobs present)");
  const again: number[] = [];
  let sentAgain = 0;
  for (let i = 0; i < RUNS; i++) {
    const [ms, result] = await time(() => pushSnapshotFile(path, `${registry.host}/bench/c${8 * MiB}-r0:v1`));
    again.push(ms);
    sentAgain = result.bytesSent;
  }
  rows.push({ what: "push again (HEAD finds every blob)", stat: stat(again), bytes: `${sentAgain} sent` });

  log("pull");
  const reference = `${registry.host}/bench/c${8 * MiB}-r0:v1`;
  const pulls: number[] = [];
  const cached: number[] = [];
  let received = 0;
  let receivedCached = 0;
  for (let i = -1; i < RUNS; i++) {
    const cacheDir = `${dir}/cache-${i + 1}`;
    const [ms, result] = await time(() => pullSnapshotFile(reference, { cacheDir }));
    const [msCached, again] = await time(() => pullSnapshotFile(reference, { cacheDir }));
    if (i >= 0) {
      pulls.push(ms);
      cached.push(msCached);
    }
    received = result.bytesReceived;
    receivedCached = again.bytesReceived;
    await Deno.remove(cacheDir, { recursive: true });
  }
  const p = stat(pulls);
  rows.push({ what: `pull into an empty cache (${mbps(p)} MiB/s)`, stat: p, bytes: `${received} received` });
  rows.push({ what: "pull again by tag (cached)", stat: stat(cached), bytes: `${receivedCached} received` });

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
