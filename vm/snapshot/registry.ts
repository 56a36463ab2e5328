/**
 * Snapshots through OCI registries: what `Snapshot.pull` and `snapshot.push` do, on top of `format/oci/`.
 *
 * Pull brings the snapshot (and, for a delta, its bases) into the content-addressed cache, verifying the
 * SHA-256 of every layer, then loads it with `Snapshot.fromFileCached`: a pulled snapshot cold-starts from
 * the cache, is never downloaded twice, and is verified (BLAKE3 of the whole memory) once per process.
 *
 * Push sends the file a snapshot was loaded from when it is still the same file (for a delta, with the bases
 * it was loaded with). A snapshot made in memory is first written to a temporary file with `toFile` rather
 * than streamed: the format's encoding (prefix, sparse pages, delta runs) has one writer, the layer's
 * SHA-256 must be known before the upload starts (the registry is asked whether it already has the blob,
 * and the manifest names it), and an interrupted upload resumes by re-reading a chunk at an offset. The
 * temporary file is sparse, so it costs only the snapshot's data pages on disk, and it is removed afterwards.
 *
 * @module
 */
import {
  type PulledSnapshot,
  type PullOptions,
  pullSnapshotFile,
  type PushOptions,
  type PushResult,
  pushSnapshotFile,
} from "../../format/oci/mod.ts";
import { BLOB_HASH_ANNOTATION } from "../../format/oci/constants.ts";
import { parseReference } from "../../format/oci/reference.ts";
import type { Snapshot, SnapshotLoadOptions, SnapshotToFileOptions } from "../snapshot.ts";
import { openSnapshotFile, pathString } from "./file.ts";

/**
 * Options of `Snapshot.pull`: the cache directory (default `snapvm/oci` under Deno's cache directory),
 * credentials, transport, progress and cancellation.
 *
 * @example
 * ```ts ignore
 * import { Snapshot, type SnapshotPullOptions } from "@snapvm/snapvm";
 *
 * const options: SnapshotPullOptions = {
 *   cacheDir: "/var/cache/snapvm",
 *   credentials: { username: "ci", password: Deno.env.get("REGISTRY_PASSWORD")! },
 *   signal: AbortSignal.timeout(60_000),
 * };
 * using snap = await Snapshot.pull("registry.example.com/team/guest:v1", options);
 * ```
 */
export interface SnapshotPullOptions extends PullOptions {}

/**
 * Options of `snapshot.push`: credentials, transport, chunk size, cross-repository mount, progress and
 * cancellation, and, for a snapshot that is written to a temporary file first (one made in memory, or whose
 * file changed since it was loaded), how it is written.
 *
 * @example
 * ```ts ignore
 * import type { SnapshotPushOptions } from "@snapvm/snapvm";
 *
 * // Push as a delta over a base the registry already holds: only the changed pages are sent.
 * const options: SnapshotPushOptions = { base: "guest-base.hls", mountFrom: "team/base" };
 * const pushed = await snap.push("127.0.0.1:5000/team/guest:v2", options);
 * console.log(pushed.reference, pushed.bytesSent);
 * ```
 */
export interface SnapshotPushOptions extends Omit<PushOptions, "resolveBase"> {
  /**
   * Push a delta over this snapshot file (as `toFile` with `base`): the snapshot is written as a delta to a
   * temporary file and pushed with the base's chain, so a registry that holds the base receives only the
   * pages that differ. The base must be a file, next to its own bases if it is a delta.
   */
  base?: string | URL;
  /** As for `toFile`, when the snapshot is written to a temporary file: include the working set (default true). */
  workingSet?: boolean;
  /**
   * As for `toFile`, when the snapshot is written to a temporary file: include the guest binary's local
   * path. Default false, since a pushed snapshot leaves this machine.
   */
  binary?: boolean;
}

/**
 * The result of `snapshot.push`: the reference by digest (`registry/repository@sha256:…`, what to pull to
 * get exactly these bytes), the tag, the manifest and config, and what was sent.
 *
 * @example
 * ```ts ignore
 * import type { SnapshotPushResult } from "@snapvm/snapvm";
 *
 * const pushed: SnapshotPushResult = await snap.push("127.0.0.1:5000/team/guest:v1");
 * console.log(pushed.reference, pushed.blobs.map((b) => b.outcome));
 * ```
 */
export type SnapshotPushResult = PushResult;

/** The file a snapshot was loaded from, recorded at load. */
export interface SnapshotFileSource {
  /** The path as given to the loader. */
  readonly path: string;
  /** Its identity then (device, inode, mtime): the same file only if it still has it. */
  readonly identity: string;
  /** For a delta: where each base of its chain was found, by `blob_hash` (hex). */
  readonly bases: ReadonlyMap<string, string>;
}

/**
 * Pulls a snapshot into the cache and loads it with `load` (`Snapshot.fromFileCached`), pointing a delta's
 * bases at the layers just pulled (by blob hash; the loader checks each against the delta's record).
 */
export async function pullSnapshot(
  reference: string,
  options: SnapshotPullOptions,
  load: (path: string, options: SnapshotLoadOptions) => Snapshot,
): Promise<Snapshot> {
  const pulled = await pullSnapshotFile(reference, options);
  return load(pulled.path, { resolveBase: baseResolver(pulled) });
}

/** `resolveBase` for a pulled snapshot: each base is the pulled layer with that blob hash. */
export function baseResolver(pulled: PulledSnapshot): NonNullable<SnapshotLoadOptions["resolveBase"]> {
  const byHash = new Map<string, string>();
  for (const layer of pulled.layers) {
    const hash = layer.descriptor.annotations?.[BLOB_HASH_ANNOTATION];
    if (hash !== undefined) byHash.set(hash, layer.path);
  }
  return (base) => byHash.get(base.blobHash);
}

/** Whether the file at `source.path` is still the one the snapshot was loaded from. */
function unchanged(source: SnapshotFileSource): boolean {
  try {
    const file = openSnapshotFile(source.path);
    try {
      return file.identity === source.identity;
    } finally {
      file.close();
    }
  } catch {
    return false;
  }
}

/**
 * Pushes `snap`: its source file when it has one that is unchanged and no `base` is asked for, else a
 * temporary file written by `toFile`.
 */
export async function pushSnapshot(
  snap: Snapshot,
  source: SnapshotFileSource | undefined,
  reference: string,
  options: SnapshotPushOptions,
): Promise<SnapshotPushResult> {
  // A malformed reference is reported before anything is written.
  const ref = parseReference(reference);
  const { base, workingSet, binary, ...push } = options;
  if (base === undefined && source !== undefined && unchanged(source)) {
    return await pushSnapshotFile(source.path, ref, {
      ...push,
      resolveBase: (b) => source.bases.get(b.blobHash),
    });
  }
  const dir = await Deno.makeTempDir({ prefix: "snapvm-push-" });
  try {
    const path = `${dir}/snapshot.hls`;
    const toFile: SnapshotToFileOptions = { base, workingSet, binary: binary ?? false };
    await snap.toFile(path, toFile);
    const basePath = base === undefined ? undefined : pathString(base);
    return await pushSnapshotFile(path, ref, {
      ...push,
      // The delta was written here, its base is where the caller said; deeper bases are next to that one.
      resolveBase: (b) => (b.delta === path ? basePath : undefined),
    });
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
