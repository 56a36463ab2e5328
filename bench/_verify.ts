/**
 * Table 3 of `deno task bench`: what verifying a 256 MiB snapshot costs at load (`Snapshot.fromFile` hashes
 * the memory blob with BLAKE3), next to the `b3sum` CLI hashing the same file with two threads. The rows
 * are measured round by round, interleaved, with the file in the page cache.
 *
 * @module
 */
import { Snapshot } from "../mod.ts";
import { verifyBlobHash } from "../format/mod.ts";
import { b3sum, hasB3sum } from "./_b3sum.ts";
import { writeGuestSnapshot } from "./_guest.ts";
import { type BenchOptions, log } from "./_options.ts";
import { figure, median, type Row, type Table } from "./_report.ts";
import { openBlob } from "./_steps.ts";
import { interleaved, timeMs, timeSync } from "./_stats.ts";

const HEAP = 256 << 20;
/** The target: fromFile's hashing at most this many times `b3sum --num-threads 2`. */
const TARGET = 1.1;

/** Measures table 3. */
export async function verifyTable(o: BenchOptions): Promise<Table> {
  const dir = await Deno.makeTempDir({ prefix: "snapvm-bench-verify-" });
  try {
    const file = `${dir}/256m.hls`, empty = `${dir}/empty`;
    log("verify: a 256 MiB snapshot file");
    await writeGuestSnapshot(file, HEAP);
    await Deno.writeFile(empty, new Uint8Array());
    const withB3sum = await hasB3sum();
    Snapshot.fromFile(file).close(); // brings the file into the page cache
    let blobSize = 0;
    const cases: (() => number | Promise<number>)[] = [
      () => {
        // The loader's steps up to the hash, untimed; then its hash step: map the blob, BLAKE3, compare.
        const { blob, blobHash } = openBlob(file);
        try {
          blobSize = blob.size;
          return timeSync(() => verifyBlobHash(blob.ref.bytes, blobHash));
        } finally {
          blob.close();
        }
      },
      () => load(() => Snapshot.fromFile(file)),
      () => load(() => Snapshot.fromFileUnchecked(file)),
    ];
    if (withB3sum) {
      cases.push(
        () => timeMs(() => b3sum(["--num-threads", "2", file])),
        () => timeMs(() => b3sum([empty])),
      );
    }
    log(`verify: ${o.count(25)} rounds, interleaved`);
    const [hash, verified, unchecked, b3, b3empty] = await interleaved(o.count(25), 2, cases);
    const b3label = withB3sum ? "b3sum --num-threads 2 <file>" : "b3sum --num-threads 2: b3sum not installed";
    const rows: Row[] = [
      {
        what: "fromFile's hash step (map the blob, BLAKE3; the loader's code)",
        ours: hash,
        baseline: b3label,
        base: b3,
        target: TARGET,
      },
      {
        what: "fromFile − fromFileUnchecked (load only, difference of medians)",
        ours: median(verified.median - unchecked.median),
        baseline: b3label,
        base: b3,
        target: TARGET,
      },
      {
        what: "fromFile, load only",
        ours: verified,
        baseline: "fromFileUnchecked, load only",
        base: unchecked,
      },
    ];
    const fileSize = (await Deno.stat(file)).size;
    const notes = [
      `The loader hashes the blob (${mib(blobSize)}); b3sum reads the whole file (${mib(fileSize)}: ` +
      "header, sections, blob).",
    ];
    notes.push(
      withB3sum
        ? `b3sum's wall time includes starting the process: b3sum of an empty file ${figure(b3empty)}.`
        : "b3sum not found: the comparison with b3sum is skipped (apt-get install b3sum).",
    );
    return {
      title: "3. Verified load vs b3sum (256 MiB heap, the file in the page cache)",
      rows,
      notes,
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const mib = (bytes: number) => `${(bytes / (1 << 20)).toFixed(2)} MiB`;

/** Milliseconds a load takes; the snapshot is closed afterwards, untimed. */
function load(fn: () => Snapshot): number {
  let snap: Snapshot | undefined;
  const ms = timeSync(() => void (snap = fn()));
  snap!.close();
  return ms;
}
