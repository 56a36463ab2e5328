/**
 * The OCI image manifest of a snapvm snapshot, shared by registry push/pull and image-layout export/import.
 *
 * ```
 * {
 *   "schemaVersion": 2,
 *   "mediaType": "application/vnd.oci.image.manifest.v1+json",
 *   "config": { "mediaType": "application/vnd.snapvm.snapshot.config.v1+json", "digest": "sha256:…", "size": … },
 *   "layers": [
 *     { "mediaType": "application/vnd.snapvm.snapshot.v1.hls", "digest": "sha256:…", "size": …,
 *       "annotations": { "vnd.snapvm.snapshot.blob-hash": "<BLAKE3 blob_hash>" } }
 *   ]
 * }
 * ```
 *
 * Layer 0 is always a complete `.hls` file. A delta file (an incremental snapshot) is pushed with its chain:
 * the complete base first, then each delta (`SNAPSHOT_DELTA_LAYER_MEDIA_TYPE`) in order, each naming the
 * layer below it by blob hash, so a base pushed once is stored once and shared by every delta on top of it.
 * The config describes the top (resulting) snapshot.
 *
 * @module
 */

import { OciContentError } from "./errors.ts";
import {
  BLOB_HASH_ANNOTATION,
  MAX_CONFIG_SIZE,
  MAX_LAYERS,
  MAX_MANIFEST_SIZE,
  MAX_SNAPSHOT_LAYER_SIZE,
  OCI_INDEX_MEDIA_TYPE,
  OCI_MANIFEST_MEDIA_TYPE,
  SNAPSHOT_CONFIG_MEDIA_TYPE,
  SNAPSHOT_DELTA_LAYER_MEDIA_TYPE,
  SNAPSHOT_LAYER_MEDIA_TYPE,
} from "./constants.ts";
import type { SnapshotBaseReference } from "../sections.ts";
import { encodeSnapshotConfig, type SnapshotConfig } from "./config.ts";
import { digestFile, sha256Digest } from "./digest.ts";
import { parseAnnotations, parseDescriptor } from "./_descriptor.ts";
import { parseJsonObject } from "./_json.ts";
import { resolveChain } from "./_chain.ts";

/**
 * An OCI content descriptor: what a manifest or index says about a blob.
 *
 * @example
 * ```ts
 * import type { OciDescriptor } from "./manifest.ts";
 *
 * const d: OciDescriptor = { mediaType: "application/vnd.snapvm.snapshot.v1.hls", digest: "sha256:" + "0".repeat(64), size: 8192 };
 * console.log(d.size);
 * ```
 */
export interface OciDescriptor {
  /** The blob's media type. */
  mediaType: string;
  /** `sha256:<hex>` of the blob. */
  digest: string;
  /** The blob's length in bytes. */
  size: number;
  /** String annotations. */
  annotations?: Record<string, string>;
}

/**
 * An OCI image manifest as snapvm writes and reads it.
 *
 * @example
 * ```ts
 * import type { OciManifest } from "./manifest.ts";
 *
 * function layerCount(manifest: OciManifest): number {
 *   return manifest.layers.length;
 * }
 * console.log(typeof layerCount);
 * ```
 */
export interface OciManifest {
  /** Always 2. */
  schemaVersion: 2;
  /** `application/vnd.oci.image.manifest.v1+json`. */
  mediaType: typeof OCI_MANIFEST_MEDIA_TYPE;
  /** The snapvm config blob. */
  config: OciDescriptor;
  /** Layer 0: a complete `.hls` file; later layers: deltas stacked on it in order. */
  layers: OciDescriptor[];
  /** Manifest annotations, when any. */
  annotations?: Record<string, string>;
}

/**
 * A layer and the local file that holds it.
 *
 * @example
 * ```ts
 * import type { SnapshotLayer } from "./manifest.ts";
 *
 * function describe(layer: SnapshotLayer): string {
 *   return `${layer.path}: ${layer.descriptor.digest}`;
 * }
 * console.log(typeof describe);
 * ```
 */
export interface SnapshotLayer {
  /** The layer's descriptor, as in the manifest. */
  descriptor: OciDescriptor;
  /** The file with the layer's bytes. */
  path: string;
}

/**
 * Everything that is pushed or exported for one snapshot: the manifest and config as bytes, with their
 * digests, and the layers as files.
 *
 * @example
 * ```ts
 * import type { SnapshotArtifact } from "./manifest.ts";
 *
 * function totalBytes(artifact: SnapshotArtifact): number {
 *   return artifact.manifestBytes.byteLength + artifact.configBytes.byteLength +
 *     artifact.layers.reduce((sum, layer) => sum + layer.descriptor.size, 0);
 * }
 * console.log(typeof totalBytes);
 * ```
 */
export interface SnapshotArtifact {
  /** The manifest. */
  manifest: OciManifest;
  /** The manifest exactly as pushed (its digest is the snapshot's identity in the registry). */
  manifestBytes: Uint8Array;
  /** `sha256:` digest of {@linkcode SnapshotArtifact.manifestBytes}. */
  manifestDigest: string;
  /** The config. */
  config: SnapshotConfig;
  /** The config blob exactly as pushed. */
  configBytes: Uint8Array;
  /** The layers, bottom first. */
  layers: SnapshotLayer[];
}

/**
 * Encodes a manifest as compact JSON in a fixed key order, so equal content gives an equal digest.
 *
 * @param manifest The manifest.
 * @returns UTF-8 JSON bytes.
 *
 * @example
 * ```ts
 * import { encodeManifest } from "./manifest.ts";
 *
 * const digest = "sha256:" + "0".repeat(64);
 * const bytes = encodeManifest({
 *   schemaVersion: 2,
 *   mediaType: "application/vnd.oci.image.manifest.v1+json",
 *   config: { mediaType: "application/vnd.snapvm.snapshot.config.v1+json", digest, size: 2 },
 *   layers: [{ mediaType: "application/vnd.snapvm.snapshot.v1.hls", digest, size: 8192 }],
 * });
 * console.log(new TextDecoder().decode(bytes).startsWith('{"schemaVersion":2,')); // true
 * ```
 */
export function encodeManifest(manifest: OciManifest): Uint8Array {
  const descriptor = (d: OciDescriptor): OciDescriptor => {
    const out: OciDescriptor = { mediaType: d.mediaType, digest: d.digest, size: d.size };
    if (d.annotations !== undefined) out.annotations = d.annotations;
    return out;
  };
  const ordered: OciManifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST_MEDIA_TYPE,
    config: descriptor(manifest.config),
    layers: manifest.layers.map(descriptor),
  };
  if (manifest.annotations !== undefined) ordered.annotations = manifest.annotations;
  return new TextEncoder().encode(JSON.stringify(ordered));
}

/**
 * Options of {@linkcode buildSnapshotArtifact}, and of pushing or exporting a file.
 *
 * @example
 * ```ts
 * import type { ArtifactOptions } from "./manifest.ts";
 *
 * const options: ArtifactOptions = { resolveBase: (base) => `/srv/snapshots/${base.fileName}` };
 * console.log(typeof options.resolveBase);
 * ```
 */
export interface ArtifactOptions {
  /**
   * Where a delta's base is, as for loading: a path (or `file:` URL), or `undefined` for the default, the
   * base's recorded file name next to the delta. The file found must have the recorded `blob_hash`.
   */
  resolveBase?: (base: SnapshotBaseReference) => string | URL | undefined;
}

/**
 * Reads a snapshot file and builds its artifact: config from the file's prefix (every format check runs),
 * SHA-256 of the whole file streamed in 1 MiB chunks, and the manifest over both. For a delta, its chain of
 * bases is found as the loader finds it (next to the delta, or by `options.resolveBase`), each base checked
 * against the `blob_hash` and chain depth its delta records, and every file of the chain becomes a layer,
 * the complete file first.
 *
 * @param path The `.hls` file.
 * @param options Where a delta's bases are.
 * @returns The artifact: one layer for a complete file, 1 + chain depth layers for a delta.
 * @throws {SnapshotFormatError} When a file is not a valid snapshot, or a delta's base is missing
 *   (`BaseNotFound`) or not the recorded one (`BaseMismatch`).
 * @throws {OciContentError} `SizeMismatch` when a file changed length while it was read; `InvalidField` when
 *   two deltas of the chain record the same base file name.
 *
 * @example
 * ```ts ignore
 * import { buildSnapshotArtifact } from "./manifest.ts";
 *
 * const artifact = await buildSnapshotArtifact("guest.hls");
 * console.log(artifact.manifestDigest);
 * ```
 */
export async function buildSnapshotArtifact(
  path: string | URL,
  options: ArtifactOptions = {},
): Promise<SnapshotArtifact> {
  const chain = await resolveChain(path, options.resolveBase);
  const layers: SnapshotLayer[] = [];
  for (const [index, file] of chain.entries()) {
    const { digest, size } = await digestFile(file.path);
    if (size !== file.config.fileSize) {
      throw new OciContentError(
        "SizeMismatch",
        `snapshot file ${file.path}`,
        "",
        `${size} bytes`,
        `${file.config.fileSize} bytes (the file changed while it was read)`,
      );
    }
    const descriptor: OciDescriptor = {
      mediaType: index === 0 ? SNAPSHOT_LAYER_MEDIA_TYPE : SNAPSHOT_DELTA_LAYER_MEDIA_TYPE,
      digest,
      size,
      annotations: { [BLOB_HASH_ANNOTATION]: file.config.blobHash },
    };
    layers.push({ descriptor, path: file.path });
  }
  const config = chain[chain.length - 1].config;
  const configBytes = encodeSnapshotConfig(config);
  const manifest: OciManifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST_MEDIA_TYPE,
    config: {
      mediaType: SNAPSHOT_CONFIG_MEDIA_TYPE,
      digest: sha256Digest(configBytes),
      size: configBytes.byteLength,
    },
    layers: layers.map((l) => l.descriptor),
  };
  const manifestBytes = encodeManifest(manifest);
  return {
    manifest,
    manifestBytes,
    manifestDigest: sha256Digest(manifestBytes),
    config,
    configBytes,
    layers,
  };
}

/**
 * Parses and validates a manifest received from a registry or a layout: an OCI image manifest (not an
 * index), schema version 2, the snapvm config media type with a size within `MAX_CONFIG_SIZE`, and 1 to
 * `MAX_LAYERS` layers within `MAX_SNAPSHOT_LAYER_SIZE` each, of which the first is a complete snapshot and
 * every later one a delta. Unknown layer types are refused.
 *
 * @param bytes The manifest (at most `MAX_MANIFEST_SIZE` bytes).
 * @returns The manifest, holding only the known fields.
 * @throws {OciContentError} Naming the field at fault.
 *
 * @example
 * ```ts
 * import { OciContentError, parseSnapshotManifest } from "./mod.ts";
 *
 * const index = new TextEncoder().encode(
 *   '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}',
 * );
 * try {
 *   parseSnapshotManifest(index);
 * } catch (error) {
 *   console.log(error instanceof OciContentError && error.kind); // UnsupportedMediaType
 * }
 * ```
 */
export function parseSnapshotManifest(bytes: Uint8Array): OciManifest {
  const what = "manifest";
  if (bytes.byteLength > MAX_MANIFEST_SIZE) {
    throw new OciContentError(
      "TooLarge",
      what,
      "",
      `${bytes.byteLength} bytes`,
      `at most ${MAX_MANIFEST_SIZE}`,
    );
  }
  const json = parseJsonObject(bytes, what);
  if (json.mediaType !== undefined && json.mediaType !== OCI_MANIFEST_MEDIA_TYPE) {
    const index = json.mediaType === OCI_INDEX_MEDIA_TYPE;
    throw new OciContentError(
      "UnsupportedMediaType",
      what,
      "mediaType",
      json.mediaType,
      `${OCI_MANIFEST_MEDIA_TYPE}${index ? " (an image index is not a snapvm snapshot)" : ""}`,
    );
  }
  if (json.schemaVersion !== 2) {
    throw new OciContentError("InvalidField", what, "schemaVersion", json.schemaVersion ?? null, "2");
  }
  const config = parseDescriptor(json.config, what, "config", MAX_CONFIG_SIZE);
  if (config.mediaType !== SNAPSHOT_CONFIG_MEDIA_TYPE) {
    throw new OciContentError(
      "UnsupportedMediaType",
      what,
      "config.mediaType",
      config.mediaType,
      `${SNAPSHOT_CONFIG_MEDIA_TYPE} (this manifest is not a snapvm snapshot)`,
    );
  }
  if (!Array.isArray(json.layers) || json.layers.length < 1 || json.layers.length > MAX_LAYERS) {
    throw new OciContentError(
      "InvalidField",
      what,
      "layers",
      Array.isArray(json.layers) ? `${json.layers.length} layers` : json.layers ?? null,
      `1 to ${MAX_LAYERS} layers`,
    );
  }
  const layers = json.layers.map((value, i) => {
    const layer = parseDescriptor(value, what, `layers[${i}]`, MAX_SNAPSHOT_LAYER_SIZE);
    checkLayerType(layer.mediaType, i);
    const blobHash = layer.annotations?.[BLOB_HASH_ANNOTATION];
    if (blobHash !== undefined && !/^[0-9a-f]{64}$/.test(blobHash)) {
      throw new OciContentError(
        "InvalidField",
        what,
        `layers[${i}].annotations["${BLOB_HASH_ANNOTATION}"]`,
        blobHash,
        "64 lower-case hex digits",
      );
    }
    return layer;
  });
  const manifest: OciManifest = { schemaVersion: 2, mediaType: OCI_MANIFEST_MEDIA_TYPE, config, layers };
  if (json.annotations !== undefined) {
    manifest.annotations = parseAnnotations(json.annotations, what, "annotations");
  }
  return manifest;
}

/** Layer 0 must be a complete snapshot, every later layer a delta over the one below. */
function checkLayerType(mediaType: string, index: number): void {
  const wanted = index === 0 ? SNAPSHOT_LAYER_MEDIA_TYPE : SNAPSHOT_DELTA_LAYER_MEDIA_TYPE;
  if (mediaType === wanted) return;
  const expected = index === 0
    ? `${SNAPSHOT_LAYER_MEDIA_TYPE} (the base snapshot)`
    : `${SNAPSHOT_DELTA_LAYER_MEDIA_TYPE} (a delta over layer ${index - 1})`;
  throw new OciContentError(
    "UnsupportedMediaType",
    "manifest",
    `layers[${index}].mediaType`,
    mediaType,
    expected,
  );
}
