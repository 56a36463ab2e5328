/**
 * Bringing a snapshot's manifest, config and layers into the content-addressed cache from a source (a
 * registry or an image-layout directory), verifying every byte on the way. Internal: shared by
 * `pullSnapshotFile` and `importOciLayout`.
 *
 * @module
 */

import { parseSnapshotConfig, type SnapshotConfig } from "./config.ts";
import { BLOB_HASH_ANNOTATION, OCI_MANIFEST_MEDIA_TYPE } from "./constants.ts";
import { sha256Digest } from "./digest.ts";
import { DigestMismatchError, OciContentError } from "./errors.ts";
import { type OciDescriptor, type OciManifest, parseSnapshotManifest } from "./manifest.ts";
import type { PulledLayer, PulledSnapshot, PullProgress } from "./pull.ts";
import { blobPath, findBlob, stageBlob, type StagedBlob, storeBytes } from "./_store.ts";
import { checkDistinctNames } from "./_chain.ts";
import { readSnapshotFileInfo, type SnapshotFileInfo } from "./_snapshot_file.ts";

/** Where multi-layer snapshots are linked side by side, under the cache directory. */
export const CHAINS_DIR = "chains/sha256";
import { readFileLimited, readStreamLimited } from "./_read.ts";

/** Where blobs come from. */
export interface BlobSource {
  /** Opens a blob's bytes (unverified: the caller verifies). */
  open(descriptor: OciDescriptor, what: string): Promise<ReadableStream<Uint8Array>>;
  /** Maps an error thrown while reading an opened blob to a typed one. */
  readError?(descriptor: OciDescriptor, error: unknown): unknown;
}

/** Reads a small cached blob and re-verifies it; `null` when absent or not intact (it is then fetched again). */
export async function readCachedSmallBlob(
  cacheDir: string,
  digest: string,
  limit: number,
): Promise<Uint8Array | null> {
  try {
    const bytes = await readFileLimited(blobPath(cacheDir, digest), limit, "cached blob");
    return sha256Digest(bytes) === digest ? bytes : null;
  } catch {
    return null;
  }
}

/** A manifest and its config, verified but not yet kept in the cache. */
export interface FetchedConfig {
  /** The parsed manifest. */
  manifest: OciManifest;
  /** The parsed config. */
  config: SnapshotConfig;
  /** Bytes read from the source for the config (0 when it came from the cache). */
  received: number;
  /** Stores the manifest and the config in the cache; call once everything else was verified. */
  keep(): Promise<void>;
}

/**
 * Parses a verified manifest (bytes and digest) and fetches and checks its config. Nothing is stored until
 * `keep()` is called, so a snapshot that fails a later check leaves no trace in the cache.
 */
export async function fetchConfig(
  source: BlobSource,
  cacheDir: string,
  manifestBytes: Uint8Array,
  digest: string,
): Promise<FetchedConfig> {
  const manifest = parseSnapshotManifest(manifestBytes);
  const manifestDescriptor = { mediaType: OCI_MANIFEST_MEDIA_TYPE, digest, size: manifestBytes.byteLength };
  const keepManifest = async () => {
    if (await findBlob(cacheDir, manifestDescriptor) === null) {
      await storeBytes(cacheDir, manifestDescriptor, manifestBytes, "manifest");
    }
  };
  const d = manifest.config;
  const cached = await readCachedSmallBlob(cacheDir, d.digest, d.size);
  if (cached !== null) {
    return { manifest, config: parseSnapshotConfig(cached), received: 0, keep: keepManifest };
  }

  const what = `config ${d.digest}`;
  const stream = await source.open(d, "config");
  let bytes: Uint8Array;
  try {
    bytes = await readStreamLimited(stream, d.size, what);
  } catch (error) {
    if (!(error instanceof OciContentError)) throw source.readError?.(d, error) ?? error;
    throw new OciContentError(
      "SizeMismatch",
      what,
      "",
      error.found,
      `${d.size} bytes (its descriptor's size)`,
    );
  }
  if (bytes.byteLength !== d.size) {
    throw new OciContentError(
      "SizeMismatch",
      what,
      "",
      `${bytes.byteLength} bytes`,
      `${d.size} bytes (its descriptor's size)`,
    );
  }
  const found = sha256Digest(bytes);
  if (found !== d.digest) throw new DigestMismatchError("config", d.digest, found);
  const config = parseSnapshotConfig(bytes);
  const keep = async () => {
    await storeBytes(cacheDir, d, bytes, "config");
    await keepManifest();
  };
  return { manifest, config, received: bytes.byteLength, keep };
}

/**
 * Given a verified manifest (bytes and digest), brings its layers, its config and itself into the cache, in
 * that order. Layers the cache lacks are staged (downloaded and verified into temporary files) and become
 * visible only once every layer passed its checks, so a snapshot that fails any check adds no blob to the
 * cache. A multi-layer snapshot (a delta and its bases) is also linked into a directory of its own, each
 * base under the file name its delta records, where the loader finds it.
 *
 * @returns Everything but `reference`; `bytesReceived` counts config and layer bytes.
 */
export async function materialize(
  source: BlobSource,
  cacheDir: string,
  manifestBytes: Uint8Array,
  digest: string,
  options: { signal?: AbortSignal; onProgress?: (progress: PullProgress) => void },
): Promise<Omit<PulledSnapshot, "reference">> {
  const { manifest, config, received: configBytes, keep } = await fetchConfig(
    source,
    cacheDir,
    manifestBytes,
    digest,
  );
  let received = configBytes;
  const layers: PulledLayer[] = [];
  const files: SnapshotFileInfo[] = [];
  const staged: (StagedBlob | undefined)[] = [];
  try {
    for (const [index, descriptor] of manifest.layers.entries()) {
      const top = index === manifest.layers.length - 1;
      const validate = async (path: string) => {
        files[index] = await checkLayer(path, index, descriptor, files[index - 1], top ? config : undefined);
      };
      const cached = await findBlob(cacheDir, descriptor);
      if (cached !== null) {
        await validate(cached);
        layers.push({ descriptor, path: cached, transferred: false });
        staged.push(undefined);
        continue;
      }
      const stream = await source.open(descriptor, "layer");
      let done = 0;
      const blob = await stageBlob(cacheDir, descriptor, stream, "layer", {
        validate,
        signal: options.signal,
        readError: source.readError === undefined
          ? undefined
          : (error) => source.readError!(descriptor, error),
        onBytes: (bytes) => {
          received += bytes;
          done += bytes;
          options.onProgress?.({ digest: descriptor.digest, bytes: done, total: descriptor.size });
        },
      });
      staged.push(blob);
      layers.push({ descriptor, path: blob.path, transferred: true });
    }
    checkDistinctNames(chainNames(layers, files), `manifest ${digest}`);
    for (const [index, blob] of staged.entries()) {
      if (blob !== undefined) layers[index].path = await blob.commit();
    }
  } catch (error) {
    for (const blob of staged) await blob?.discard();
    throw error;
  }
  const path = layers.length === 1 ? layers[0].path : await linkChain(cacheDir, digest, layers, files);
  // Last, so a manifest in the cache means its whole snapshot is there (what an offline pull by digest needs).
  await keep();
  return { path, digest, manifest, config, layers, bytesReceived: received };
}

/**
 * The file names of a chain's layers side by side, bottom first: each base under the name the layer above
 * records, the top under its layer digest's hex (a name no delta can record by accident).
 */
function chainNames(layers: readonly PulledLayer[], files: readonly SnapshotFileInfo[]): string[] {
  const names = files.slice(1).map((f) => f.info.base!.fileName);
  names.push(`${layers[layers.length - 1].descriptor.digest.slice("sha256:".length)}.hls`);
  return names;
}

/**
 * Links a chain's cached layers into `CACHE/chains/sha256/<manifest hex>/` under {@linkcode chainNames}
 * (hard links: the same files, so `fromFileCached` recognises them; a copy where links are impossible), and
 * returns the top's path there. The directory is built under a temporary name and renamed into place, so it
 * is complete whenever it exists; one left incomplete by hand is rebuilt.
 */
async function linkChain(
  cacheDir: string,
  manifestDigest: string,
  layers: readonly PulledLayer[],
  files: readonly SnapshotFileInfo[],
): Promise<string> {
  const names = chainNames(layers, files);
  const parent = `${cacheDir}/${CHAINS_DIR}`;
  const final = `${parent}/${manifestDigest.slice("sha256:".length)}`;
  const top = `${final}/${names[names.length - 1]}`;
  const complete = async (dir: string) => {
    for (const [i, name] of names.entries()) {
      try {
        const info = await Deno.stat(`${dir}/${name}`);
        if (!info.isFile || info.size !== layers[i].descriptor.size) return false;
      } catch {
        return false;
      }
    }
    return true;
  };
  if (await complete(final)) return top;
  await Deno.mkdir(parent, { recursive: true });
  const temp = `${parent}/.${manifestDigest.slice(7, 23)}.${crypto.randomUUID().slice(0, 8)}.partial`;
  await Deno.mkdir(temp);
  try {
    for (const [i, name] of names.entries()) {
      try {
        await Deno.link(layers[i].path, `${temp}/${name}`);
      } catch {
        await Deno.copyFile(layers[i].path, `${temp}/${name}`);
      }
    }
    await Deno.remove(final, { recursive: true }).catch(() => {});
    try {
      await Deno.rename(temp, final);
    } catch (error) {
      // Another process put a complete directory in place meanwhile: use it.
      if (!(await complete(final))) throw error;
    }
  } finally {
    await Deno.remove(temp, { recursive: true }).catch(() => {});
  }
  return top;
}

/**
 * Checks one layer's file from its prefix (every `.hls` check runs): its blob-hash annotation, when present,
 * is its `blob_hash`; layer 0 is a complete snapshot; layer i > 0 is a delta of chain depth i over the layer
 * below (recorded base `blob_hash`, same memory size); the top layer is the snapshot the config describes
 * (same length, header hash and blob hash). So a layer that is not a valid snapshot, or a chain that would
 * not load, is never cached.
 */
async function checkLayer(
  path: string,
  index: number,
  descriptor: OciDescriptor,
  below: SnapshotFileInfo | undefined,
  config: SnapshotConfig | undefined,
): Promise<SnapshotFileInfo> {
  const file = await readSnapshotFileInfo(path);
  const what = `layer ${descriptor.digest}`;
  const bad = (field: string, found: unknown, expected: string): never => {
    throw new OciContentError("InvalidField", what, field, found, expected);
  };
  const annotated = descriptor.annotations?.[BLOB_HASH_ANNOTATION];
  if (annotated !== undefined && annotated !== file.info.blobHash) {
    bad(`annotations["${BLOB_HASH_ANNOTATION}"]`, annotated, `${file.info.blobHash}, the layer's blob_hash`);
  }
  const base = file.info.base;
  if (below === undefined) {
    if (base !== null) bad("base", base.blobHash, "none: layer 0 must be a complete snapshot, not a delta");
  } else if (base === null) {
    bad("base", null, `the blob_hash of layer ${index - 1} (${below.info.blobHash}): a delta over it`);
  } else {
    if (base.blobHash !== below.info.blobHash) {
      bad("base.blob_hash", base.blobHash, `${below.info.blobHash}, the blob_hash of layer ${index - 1}`);
    }
    if (base.chainDepth !== index) bad("base.chain_depth", base.chainDepth, `${index}, the layer's index`);
    if (file.config.header.memory_size !== below.config.header.memory_size) {
      bad(
        "memory_size",
        file.config.header.memory_size,
        `${below.config.header.memory_size}, layer ${index - 1}'s`,
      );
    }
  }
  if (config !== undefined) {
    for (const field of ["fileSize", "headerHash", "blobHash"] as const) {
      if (file.config[field] !== config[field]) {
        throw new OciContentError(
          "InvalidField",
          "config",
          field,
          config[field],
          `${file.config[field]}, the value of layer ${descriptor.digest}`,
        );
      }
    }
  }
  return file;
}
