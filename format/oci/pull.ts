/**
 * Pulling a snapshot from an OCI registry into the local content-addressed cache.
 *
 * The manifest is fetched (by tag, or by digest, in which case a cached manifest means no network at all),
 * checked (an OCI image manifest with the snapvm config type, sizes within limits), then the config and each
 * layer the cache lacks are streamed in, their length and SHA-256 verified before anything is kept. A layer
 * already in the cache is never downloaded again. The result's `path` is an `.hls` file in the cache (for a
 * delta, with its bases beside it): load it with `Snapshot.fromFileCached(path)`, or pull and load in one
 * step with `Snapshot.pull`.
 *
 * @module
 */

import type { SnapshotConfig } from "./config.ts";
import { MAX_MANIFEST_SIZE, OCI_INDEX_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE } from "./constants.ts";
import { sha256Digest } from "./digest.ts";
import { DigestMismatchError, OciContentError } from "./errors.ts";
import type { OciDescriptor, OciManifest } from "./manifest.ts";
import { defaultCacheDir } from "./cache.ts";
import type { RegistryOptions } from "./options.ts";
import { type OciReference, parseReference } from "./reference.ts";
import { RegistryClient } from "./_client.ts";
import { type BlobSource, fetchConfig, materialize, readCachedSmallBlob } from "./_materialize.ts";
import { readStreamLimited } from "./_read.ts";

/**
 * A layer of a pulled or imported snapshot.
 *
 * @example
 * ```ts
 * import type { PulledLayer } from "./pull.ts";
 *
 * const fresh = (layers: PulledLayer[]) => layers.filter((l) => l.transferred).length;
 * console.log(typeof fresh);
 * ```
 */
export interface PulledLayer {
  /** The layer's descriptor from the manifest. */
  descriptor: OciDescriptor;
  /** Its file in the cache. */
  path: string;
  /** `false` when the cache already had it (nothing was transferred). */
  transferred: boolean;
}

/**
 * A snapshot in the local cache, ready to load: `Snapshot.fromFileCached(pulled.path)`.
 *
 * @example
 * ```ts
 * import type { PulledSnapshot } from "./pull.ts";
 *
 * const describe = (p: PulledSnapshot) => `${p.reference} -> ${p.path} (${p.config.arch}/${p.config.hypervisor})`;
 * console.log(typeof describe);
 * ```
 */
export interface PulledSnapshot {
  /**
   * The `.hls` file to load, inside the cache. Read-only; never modified in place. For a complete snapshot
   * this is its layer blob; for a delta, its link in the snapshot's chain directory, next to links of its
   * bases under the names it records, so a plain `Snapshot.fromFile(path)` finds them.
   */
  path: string;
  /** The snapshot by digest: `registry/repository@sha256:…` (or `dir@sha256:…` for an image layout). */
  reference: string;
  /** The manifest digest. */
  digest: string;
  /** The manifest. */
  manifest: OciManifest;
  /** The config: header fields, hashes and host functions. */
  config: SnapshotConfig;
  /** The layers, bottom first, with their cache paths. */
  layers: PulledLayer[];
  /** Bytes read from the registry or layout directory (0 when everything came from the cache). */
  bytesReceived: number;
}

/**
 * Progress of one layer's download (or copy, for an import).
 *
 * @example
 * ```ts
 * import type { PullProgress } from "./pull.ts";
 *
 * const show = (p: PullProgress) => console.log(`${p.digest}: ${p.bytes}/${p.total}`);
 * console.log(typeof show);
 * ```
 */
export interface PullProgress {
  /** The layer's digest. */
  digest: string;
  /** Bytes received so far. */
  bytes: number;
  /** The layer's size. */
  total: number;
}

/**
 * Options of {@linkcode pullSnapshotFile} and {@linkcode inspectRemoteSnapshot}.
 *
 * @example
 * ```ts
 * import type { PullOptions } from "./pull.ts";
 *
 * const options: PullOptions = { cacheDir: "/var/cache/snapvm" };
 * console.log(options.cacheDir);
 * ```
 */
export interface PullOptions extends RegistryOptions {
  /** The cache directory. Default: {@linkcode defaultCacheDir} (under Deno's cache directory). */
  cacheDir?: string;
  /** Called as layer bytes arrive. */
  onProgress?: (progress: PullProgress) => void;
}

/**
 * A snapshot's manifest and config, read without its layers.
 *
 * @example
 * ```ts
 * import type { RemoteSnapshot } from "./pull.ts";
 *
 * const size = (r: RemoteSnapshot) => r.manifest.layers.reduce((sum, layer) => sum + layer.size, 0);
 * console.log(typeof size);
 * ```
 */
export interface RemoteSnapshot {
  /** The snapshot by digest: `registry/repository@sha256:…`. */
  reference: string;
  /** The manifest digest. */
  digest: string;
  /** The manifest. */
  manifest: OciManifest;
  /** The config. */
  config: SnapshotConfig;
}

/**
 * Pulls a snapshot into the cache and returns the path of its `.hls` file there.
 *
 * @param reference `host[:port]/repository[:tag]` (tag `latest` when absent) or `…@sha256:…`.
 * @param options Cache directory, credentials, transport, progress and cancellation.
 * @returns The cached file and what was transferred.
 * @throws {OciReferenceError} For a malformed reference.
 * @throws {RegistryError} For an unexpected status (a missing tag is HTTP 404 with `MANIFEST_UNKNOWN`), and
 *   {@linkcode RegistryAuthError}, {@linkcode RegistryConnectionError}, {@linkcode InsecureRegistryError}.
 * @throws {DigestMismatchError} When a manifest or blob is not the content its digest names; nothing is cached.
 * @throws {OciContentError} When the manifest or config is malformed, not a snapvm snapshot, over a limit,
 *   or when a blob's length differs from its descriptor; nothing is cached.
 * @throws {SnapshotFormatError} When the layer is not a valid snapshot file; nothing is cached.
 *
 * @example
 * ```ts ignore
 * import { pullSnapshotFile } from "./pull.ts";
 *
 * const pulled = await pullSnapshotFile("127.0.0.1:5000/team/guest:v1");
 * const snap = Snapshot.fromFileCached(pulled.path);
 * ```
 */
export async function pullSnapshotFile(
  reference: string | OciReference,
  options: PullOptions = {},
): Promise<PulledSnapshot> {
  const ref = typeof reference === "string" ? parseReference(reference) : reference;
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const client = new RegistryClient(ref, "pull", options);
  const { bytes, digest, received } = await resolveManifest(client, ref, cacheDir);
  const result = await materialize(registrySource(client), cacheDir, bytes, digest, options);
  return {
    ...result,
    reference: `${ref.registry}/${ref.repository}@${digest}`,
    bytesReceived: result.bytesReceived + received,
  };
}

/**
 * Reads a snapshot's manifest and config from a registry, without downloading its layers: enough to see
 * its arch, hypervisor, ABI version, memory size and host functions. Both are verified and cached.
 *
 * @param reference As for {@linkcode pullSnapshotFile}.
 * @param options As for {@linkcode pullSnapshotFile}.
 * @returns Manifest, config and digest.
 * @throws As {@linkcode pullSnapshotFile}, except that no layer is read.
 *
 * @example
 * ```ts ignore
 * import { inspectRemoteSnapshot } from "./pull.ts";
 *
 * const { config } = await inspectRemoteSnapshot("127.0.0.1:5000/team/guest:v1");
 * console.log(config.arch, config.abiVersion, config.header.memory_size);
 * ```
 */
export async function inspectRemoteSnapshot(
  reference: string | OciReference,
  options: PullOptions = {},
): Promise<RemoteSnapshot> {
  const ref = typeof reference === "string" ? parseReference(reference) : reference;
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const client = new RegistryClient(ref, "pull", options);
  const { bytes, digest } = await resolveManifest(client, ref, cacheDir);
  const { manifest, config, keep } = await fetchConfig(registrySource(client), cacheDir, bytes, digest);
  await keep();
  return { reference: `${ref.registry}/${ref.repository}@${digest}`, digest, manifest, config };
}

const DOCKER_MANIFEST_MEDIA_TYPES = [
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
];

/**
 * Gets the manifest: from the cache when the reference has a digest and the cache has it, else the registry.
 * `received` is the bytes read from the network.
 */
async function resolveManifest(
  client: RegistryClient,
  ref: OciReference,
  cacheDir: string,
): Promise<{ bytes: Uint8Array; digest: string; received: number }> {
  if (ref.digest !== undefined) {
    const cached = await readCachedSmallBlob(cacheDir, ref.digest, MAX_MANIFEST_SIZE);
    if (cached !== null) return { bytes: cached, digest: ref.digest, received: 0 };
  }
  const target = ref.digest ?? ref.tag ?? "latest";
  const url = client.url(`manifests/${target}`);
  const response = await client.send({
    method: "GET",
    url,
    // Other manifest kinds are accepted only to refuse them with a clear error: the CNCF registry answers a
    // Docker manifest requested without its type with an opaque MANIFEST_INVALID.
    headers: {
      Accept: [OCI_MANIFEST_MEDIA_TYPE, OCI_INDEX_MEDIA_TYPE, ...DOCKER_MANIFEST_MEDIA_TYPES].join(", "),
    },
    expect: [200],
  });
  const type = (response.headers.get("content-type") ?? "").split(";")[0].trim().toLowerCase();
  if (type !== OCI_MANIFEST_MEDIA_TYPE) {
    await response.body?.cancel();
    throw new OciContentError(
      "UnsupportedMediaType",
      `manifest ${client.repository}:${target}`,
      "Content-Type",
      type === "" ? "missing" : type,
      `${OCI_MANIFEST_MEDIA_TYPE}${
        type === OCI_INDEX_MEDIA_TYPE ? " (an image index is not a snapvm snapshot)" : ""
      }`,
    );
  }
  const bytes = await readStreamLimited(response.body, MAX_MANIFEST_SIZE, "manifest").catch((error) => {
    throw error instanceof OciContentError ? error : client.readError("GET", url, error);
  });
  const digest = sha256Digest(bytes);
  if (ref.digest !== undefined && digest !== ref.digest) {
    throw new DigestMismatchError("manifest", ref.digest, digest);
  }
  const reported = response.headers.get("docker-content-digest");
  if (reported !== null && reported !== digest) {
    throw new DigestMismatchError("manifest (Docker-Content-Digest header)", reported, digest);
  }
  return { bytes, digest, received: bytes.byteLength };
}

/** Blobs from the registry: `GET /v2/<repository>/blobs/<digest>`, redirects followed. */
function registrySource(client: RegistryClient): BlobSource {
  return {
    async open(descriptor: OciDescriptor): Promise<ReadableStream<Uint8Array>> {
      const response = await client.send({
        method: "GET",
        url: client.url(`blobs/${descriptor.digest}`),
        expect: [200],
      });
      return response.body ?? new Blob([]).stream();
    },
    readError(descriptor: OciDescriptor, error: unknown): unknown {
      return client.readError("GET", client.url(`blobs/${descriptor.digest}`), error);
    },
  };
}
