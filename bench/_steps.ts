/**
 * Steps of the library reached through its internal modules, so that a benchmark can time one step of a
 * load or a write alone: the loader's first steps (a snapshot file's memory blob, as `Snapshot.fromFile`
 * builds it), and the writer without holes (the baseline of the sparse `toFile`).
 *
 * @module
 */
import { parseSnapshotHeader } from "../format/mod.ts";
import type { Layout } from "../vm/machine/layout.ts";
import { Blob } from "../vm/memory/blob.ts";
import { hostIdentity, live, type Snapshot } from "../vm/snapshot.ts";
import { layoutOf } from "../vm/snapshot/checks.ts";
import { openSnapshotFile, readPrefix, writeSnapshotFile } from "../vm/snapshot/file.ts";

/** A complete snapshot file's memory blob, opened as the loader opens it, and what its header says. */
export interface OpenedBlob {
  /** The blob over the file's memory (no view mapped until `blob.ref` is used). */
  blob: Blob;
  /** The layout the header describes. */
  layout: Layout;
  /** The BLAKE3 of the blob the header records. */
  blobHash: Uint8Array;
}

/**
 * The loader's steps before it hashes the blob (`Snapshot.fromFile` of a complete file): open, parse and
 * check the header, the layout, a blob over the file's memory. The caller closes `blob`.
 */
export function openBlob(path: string): OpenedBlob {
  const file = openSnapshotFile(path);
  try {
    const parsed = parseSnapshotHeader(readPrefix(file), file.size, hostIdentity());
    if (parsed.base !== null) throw new Error(`${path} is a delta; openBlob takes a complete file`);
    const layout = layoutOf(parsed);
    const blob = new Blob(file.toBacking(parsed.header.memoryOffset, parsed.header.memorySize));
    return { blob, layout, blobHash: parsed.blobHash };
  } finally {
    file.close(); // harmless once the blob holds the file
  }
}

/**
 * The writer without holes (every byte written, as `toFile` wrote before sparse files): the baseline of the
 * sparse `toFile`. Writes the same sections as the file `like` (written by `toFile` from `snap`) and the
 * whole blob, atomically as `toFile` does.
 */
export function denseWriter(snap: Snapshot, like: string): (to: string) => Promise<void> {
  const blob = live(snap).blob;
  const fileSize = Deno.statSync(like).size;
  const head = new Uint8Array(Math.min(1 << 20, fileSize)); // holds the header and every section
  {
    using f = Deno.openSync(like);
    for (let at = 0; at < head.length;) at += f.readSync(head.subarray(at)) ?? head.length;
  }
  const parsed = parseSnapshotHeader(head, fileSize, hostIdentity());
  return (to) =>
    writeSnapshotFile(to, {
      header: { ...parsed.header },
      sregs: parsed.sregs,
      hostFunctions: parsed.hostFunctions,
      blobHash: parsed.blobHash,
      binary: parsed.binary ?? undefined,
      workingSet: parsed.workingSet ?? undefined,
    }, { view: blob.ref, stored: [{ first: 0, count: blob.size / 4096 }], data: [], sparse: false });
}
