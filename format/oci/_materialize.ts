/**
 * Bringing a snapshot's manifest, config and layers into the content-addressed cache from a source (a
 * registry or an image-layout directory), verifying every byte on the way. Internal: shared by
 * `pullSnapshotFile` and `importOciLayout`.
 *
 * @module
 */

import { parseSnapshotConfig, readSnapshotConfig, type SnapshotConfig } from "./config.ts";
import { OCI_MANIFEST_MEDIA_TYPE } from "./constants.ts";
import { sha256Digest } from "./digest.ts";
import { DigestMismatchError, OciContentError } from "./errors.ts";
import { type OciDescriptor, type OciManifest, parseSnapshotManifest } from "./manifest.ts";
import type { PulledLayer, PulledSnapshot, PullProgress } from "./pull.ts";
import { blobPath, findBlob, storeBlob, storeBytes } from "./_store.ts";
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
 * that order.
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
  for (const [index, descriptor] of manifest.layers.entries()) {
    // Only single-layer snapshots exist today (parseSnapshotManifest refuses delta layers), so layer 0 is
    // the whole snapshot the config describes. Delta layers will be checked against their base instead.
    const validate = index === 0
      ? (path: string) => checkLayerMatchesConfig(path, descriptor, config)
      : undefined;
    const cached = await findBlob(cacheDir, descriptor);
    if (cached !== null) {
      await validate?.(cached);
      layers.push({ descriptor, path: cached, transferred: false });
      continue;
    }
    const stream = await source.open(descriptor, "layer");
    let done = 0;
    const path = await storeBlob(cacheDir, descriptor, stream, "layer", {
      validate,
      signal: options.signal,
      readError: source.readError === undefined ? undefined : (error) => source.readError!(descriptor, error),
      onBytes: (bytes) => {
        received += bytes;
        done += bytes;
        options.onProgress?.({ digest: descriptor.digest, bytes: done, total: descriptor.size });
      },
    });
    layers.push({ descriptor, path, transferred: true });
  }
  // Last, so a manifest in the cache means its whole snapshot is there (what an offline pull by digest needs).
  await keep();
  return { path: layers[layers.length - 1].path, digest, manifest, config, layers, bytesReceived: received };
}

/**
 * The layer must be the snapshot the config describes: same length, header hash and blob hash. This reads
 * only the layer's prefix, and runs every format check on it, so a layer that is not a valid snapshot is
 * never cached.
 */
async function checkLayerMatchesConfig(
  path: string,
  descriptor: OciDescriptor,
  config: SnapshotConfig,
): Promise<void> {
  const actual = await readSnapshotConfig(path);
  for (const field of ["fileSize", "headerHash", "blobHash"] as const) {
    if (actual[field] !== config[field]) {
      throw new OciContentError(
        "InvalidField",
        "config",
        field,
        config[field],
        `${actual[field]}, the value of layer ${descriptor.digest}`,
      );
    }
  }
}
