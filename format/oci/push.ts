/**
 * Pushing a snapshot file to an OCI registry (OCI Distribution API).
 *
 * Order: every layer, then the config, then the manifest (a registry refuses a manifest whose blobs it does
 * not hold). For each blob a `HEAD` first: a blob the repository already has is not sent again; with
 * `mountFrom`, a blob another repository of the registry has is mounted instead of uploaded. Layers are
 * uploaded in chunks (`POST`, `PATCH` × n, `PUT ?digest=`), holding one chunk in memory; when a connection
 * breaks, the upload asks the registry how much it has and resumes there, or starts a fresh upload session
 * when the registry cannot resume (the CNCF registry 2.8 refuses a session whose last `PATCH` broke off
 * after part of its body arrived).
 *
 * @module
 */

import { DEFAULT_CHUNK_SIZE, MAX_UPLOAD_RETRIES, OCI_MANIFEST_MEDIA_TYPE } from "./constants.ts";
import type { SnapshotConfig } from "./config.ts";
import { DigestMismatchError, OciContentError, RegistryConnectionError, RegistryError } from "./errors.ts";
import {
  type ArtifactOptions,
  buildSnapshotArtifact,
  type OciDescriptor,
  type OciManifest,
  type SnapshotArtifact,
} from "./manifest.ts";
import type { RegistryOptions } from "./options.ts";
import { type OciReference, parseReference } from "./reference.ts";
import { RegistryClient } from "./_client.ts";

/** Smallest and largest upload chunk accepted in {@linkcode PushOptions.chunkSize}. */
const MIN_CHUNK_SIZE = 4096;
const MAX_CHUNK_SIZE = 256 * 1024 * 1024;
/** How long a best-effort cancellation of an abandoned upload may take. */
const CANCEL_TIMEOUT_MS = 5000;

/**
 * Progress of one blob's upload.
 *
 * @example
 * ```ts
 * import type { PushProgress } from "./push.ts";
 *
 * const show = (p: PushProgress) => console.log(`${p.digest}: ${p.bytes}/${p.total}`);
 * console.log(typeof show);
 * ```
 */
export interface PushProgress {
  /** The blob's digest. */
  digest: string;
  /** Bytes the registry has confirmed so far. */
  bytes: number;
  /** The blob's size. */
  total: number;
}

/**
 * Options of {@linkcode pushSnapshotFile}.
 *
 * @example
 * ```ts
 * import type { PushOptions } from "./push.ts";
 *
 * const options: PushOptions = { chunkSize: 16 << 20, mountFrom: "team/base" };
 * console.log(options.chunkSize);
 * ```
 */
export interface PushOptions extends RegistryOptions, ArtifactOptions {
  /** Bytes per upload request, 4 KiB to 256 MiB. Default `DEFAULT_CHUNK_SIZE` (8 MiB). */
  chunkSize?: number;
  /** Another repository of the same registry to mount blobs from when it has them (cross-repository mount). */
  mountFrom?: string;
  /** Called after each confirmed chunk. */
  onProgress?: (progress: PushProgress) => void;
}

/**
 * What happened to one blob: `uploaded`, `exists` (the repository had it; nothing sent) or `mounted` (taken
 * from {@linkcode PushOptions.mountFrom}; nothing sent).
 *
 * @example
 * ```ts
 * import type { PushedBlob } from "./push.ts";
 *
 * const sent = (blobs: PushedBlob[]) => blobs.filter((b) => b.outcome === "uploaded").length;
 * console.log(typeof sent);
 * ```
 */
export interface PushedBlob {
  /** The blob's media type. */
  mediaType: string;
  /** The blob's digest. */
  digest: string;
  /** The blob's size. */
  size: number;
  /** What push did with it. */
  outcome: "uploaded" | "exists" | "mounted";
}

/**
 * The result of {@linkcode pushSnapshotFile}.
 *
 * @example
 * ```ts
 * import type { PushResult } from "./push.ts";
 *
 * const line = (r: PushResult) => `pushed ${r.reference} (${r.bytesSent} bytes sent)`;
 * console.log(typeof line);
 * ```
 */
export interface PushResult {
  /** The pushed snapshot by digest, `registry/repository@sha256:…`: pull this to get exactly these bytes. */
  reference: string;
  /** The manifest digest. */
  digest: string;
  /** The tag the manifest was pushed to, when the reference has one (or `latest` by default). */
  tag?: string;
  /** The manifest pushed. */
  manifest: OciManifest;
  /** The config pushed. */
  config: SnapshotConfig;
  /** Every blob (layers, then config) and what happened to it. */
  blobs: PushedBlob[];
  /** Request-body bytes sent (chunks, config, manifest), including resent chunks. */
  bytesSent: number;
  /** How many times an upload was resumed or restarted after a broken connection. */
  uploadRetries: number;
}

/**
 * Pushes a snapshot file: checks it is a valid snapshot (prefix only; the blob's BLAKE3 is verified by
 * whoever loads it), builds its manifest and config, uploads what the registry lacks, and tags it.
 * Pushing the same file twice sends only the manifest the second time, and yields the same digest.
 *
 * A delta file is pushed with its chain of bases (found next to it, or by `options.resolveBase`), the
 * complete file as layer 0 and each delta stacked on it: a base the repository already has (or that
 * `mountFrom` has) is not sent again, so pushing a delta over a pushed base sends only the delta's bytes.
 *
 * @param path The `.hls` file.
 * @param reference Where to push: `host[:port]/repository[:tag]` (tag `latest` when absent). A reference with
 *   a digest must match the snapshot's manifest digest.
 * @param options Credentials, transport, chunk size, mount source, progress and cancellation.
 * @returns The digest reference and what was sent.
 * @throws {SnapshotFormatError} When the file is not a valid snapshot, or a delta's base is missing or wrong.
 * @throws {OciReferenceError} For a malformed reference.
 * @throws {RegistryError} / {@linkcode RegistryAuthError} / {@linkcode RegistryConnectionError} /
 *   {@linkcode InsecureRegistryError} From the registry exchange.
 * @throws {DigestMismatchError} When the registry reports another digest than the content has.
 *
 * @example
 * ```ts ignore
 * import { pushSnapshotFile } from "./push.ts";
 *
 * const pushed = await pushSnapshotFile("guest.hls", "127.0.0.1:5000/team/guest:v1");
 * console.log(pushed.reference); // 127.0.0.1:5000/team/guest@sha256:…
 * ```
 */
export async function pushSnapshotFile(
  path: string | URL,
  reference: string | OciReference,
  options: PushOptions = {},
): Promise<PushResult> {
  const ref = typeof reference === "string" ? parseReference(reference) : reference;
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  if (!Number.isSafeInteger(chunkSize) || chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE) {
    throw new RangeError(
      `chunkSize is ${chunkSize}, expected an integer in ${MIN_CHUNK_SIZE}..${MAX_CHUNK_SIZE}`,
    );
  }
  const artifact = await buildSnapshotArtifact(path, options);
  if (ref.digest !== undefined && ref.digest !== artifact.manifestDigest) {
    throw new DigestMismatchError(`manifest of ${path}`, ref.digest, artifact.manifestDigest);
  }
  return await pushArtifact(artifact, ref, { ...options, chunkSize });
}

/** Pushes a built artifact: its layers bottom first, then the config and the manifest. */
async function pushArtifact(
  artifact: SnapshotArtifact,
  ref: OciReference,
  options: PushOptions & { chunkSize: number },
): Promise<PushResult> {
  const client = new RegistryClient(ref, "pull,push", options);
  if (options.mountFrom !== undefined) {
    client.extraScopes.push(
      `repository:${parseReference(`${ref.registry}/${options.mountFrom}`).repository}:pull`,
    );
  }
  const stats = { uploadRetries: 0 };
  const blobs: PushedBlob[] = [];
  for (const layer of artifact.layers) {
    const d = layer.descriptor;
    blobs.push({ ...pick(d), outcome: await pushBlob(client, d, { path: layer.path }, options, stats) });
  }
  const config = artifact.manifest.config;
  blobs.push({
    ...pick(config),
    outcome: await pushBlob(client, config, { bytes: artifact.configBytes }, options, stats),
  });

  const target = ref.tag ?? ref.digest ?? "latest";
  const response = await client.send({
    method: "PUT",
    url: client.url(`manifests/${target}`),
    headers: { "Content-Type": OCI_MANIFEST_MEDIA_TYPE },
    body: artifact.manifestBytes,
    expect: [201],
  });
  await response.body?.cancel();
  checkReportedDigest(response, "manifest", artifact.manifestDigest);
  const result: PushResult = {
    reference: `${ref.registry}/${ref.repository}@${artifact.manifestDigest}`,
    digest: artifact.manifestDigest,
    manifest: artifact.manifest,
    config: artifact.config,
    blobs,
    bytesSent: client.bytesSent,
    uploadRetries: stats.uploadRetries,
  };
  if (ref.tag !== undefined || ref.digest === undefined) result.tag = target;
  return result;
}

function pick(d: OciDescriptor): Pick<PushedBlob, "mediaType" | "digest" | "size"> {
  return { mediaType: d.mediaType, digest: d.digest, size: d.size };
}

/** A registry's `Docker-Content-Digest` is a claim about what it stored: it must be ours. */
function checkReportedDigest(response: Response, what: string, expected: string): void {
  const reported = response.headers.get("docker-content-digest");
  if (reported !== null && reported !== expected) {
    throw new DigestMismatchError(`${what} (as stored by the registry)`, expected, reported);
  }
}

type BlobSource = { path: string } | { bytes: Uint8Array };

async function pushBlob(
  client: RegistryClient,
  d: OciDescriptor,
  source: BlobSource,
  options: PushOptions & { chunkSize: number },
  stats: { uploadRetries: number },
): Promise<PushedBlob["outcome"]> {
  const head = await client.send({
    method: "HEAD",
    url: client.url(`blobs/${d.digest}`),
    expect: [200, 404],
  });
  await head.body?.cancel();
  if (head.status === 200) return "exists";

  const mount = options.mountFrom === undefined ? undefined : { from: options.mountFrom, digest: d.digest };
  const started = await startUpload(client, mount);
  if (started === "mounted") return "mounted";
  const session = { location: started };
  try {
    if ("bytes" in source) {
      await finishUpload(client, session.location, d, source.bytes);
    } else {
      await uploadFileChunks(client, session, d, source.path, options, stats);
      await finishUpload(client, session.location, d, new Uint8Array(0));
    }
    return "uploaded";
  } catch (error) {
    await cancelUpload(client, session.location);
    throw error;
  }
}

/** Opens an upload session; returns its URL, or `"mounted"` when the registry mounted the blob instead. */
async function startUpload(
  client: RegistryClient,
  mount?: { from: string; digest: string },
): Promise<string | "mounted"> {
  const url = new URL(client.url("blobs/uploads/"));
  if (mount !== undefined) {
    url.searchParams.set("mount", mount.digest);
    url.searchParams.set("from", mount.from);
  }
  const response = await client.send({
    method: "POST",
    url: url.href,
    expect: mount === undefined ? [202] : [201, 202],
  });
  await response.body?.cancel();
  if (response.status === 201) {
    checkReportedDigest(response, "mounted blob", mount!.digest);
    return "mounted";
  }
  return client.resolve(response.headers.get("location"), url.href, "an upload location");
}

/** Sends the file in chunks, keeping `session.location` at the URL to continue (or finish) the upload at. */
async function uploadFileChunks(
  client: RegistryClient,
  session: { location: string },
  d: OciDescriptor,
  path: string,
  options: PushOptions & { chunkSize: number },
  stats: { uploadRetries: number },
): Promise<void> {
  using file = await Deno.open(path, { read: true });
  const buffer = new Uint8Array(Math.max(1, Math.min(options.chunkSize, d.size)));
  let offset = 0;
  let retries = 0;
  while (offset < d.size) {
    const chunk = await readChunk(
      file,
      path,
      offset,
      buffer.subarray(0, Math.min(buffer.byteLength, d.size - offset)),
    );
    try {
      const response = await client.send({
        method: "PATCH",
        url: session.location,
        headers: {
          "Content-Type": "application/octet-stream",
          "Content-Range": `${offset}-${offset + chunk.byteLength - 1}`,
        },
        body: chunk,
        expect: [202],
      });
      await response.body?.cancel();
      session.location = client.resolve(
        response.headers.get("location"),
        session.location,
        "an upload location",
      );
      const confirmed = rangeEnd(response.headers.get("range"));
      offset = confirmed ?? offset + chunk.byteLength;
      if (offset > d.size) {
        throw new OciContentError(
          "InvalidField",
          "registry response",
          "Range header",
          response.headers.get("range") ?? "",
          `at most ${d.size} bytes of ${d.digest}`,
        );
      }
      options.onProgress?.({ digest: d.digest, bytes: offset, total: d.size });
    } catch (error) {
      const broken = error instanceof RegistryConnectionError;
      const discarded = error instanceof RegistryError &&
        (error.hasCode("BLOB_UPLOAD_INVALID") || error.hasCode("BLOB_UPLOAD_UNKNOWN") ||
          error.status === 416);
      if (!(broken || discarded) || retries >= MAX_UPLOAD_RETRIES) throw error;
      retries++;
      stats.uploadRetries++;
      const resumed = broken ? await uploadStatus(client, session.location, d.size) : null;
      if (resumed !== null) {
        session.location = resumed.location;
        offset = resumed.offset;
      } else {
        await cancelUpload(client, session.location);
        session.location = await startUpload(client) as string;
        offset = 0;
      }
    }
  }
}

/**
 * Asks where an interrupted upload stands (`GET` on the session). `null` when the registry no longer has
 * the session, reports a state it cannot resume from, or is unreachable: the caller starts over.
 */
async function uploadStatus(
  client: RegistryClient,
  location: string,
  size: number,
): Promise<{ location: string; offset: number } | null> {
  try {
    const response = await client.send({ method: "GET", url: location, expect: [204] });
    await response.body?.cancel();
    const header = response.headers.get("range");
    const offset = rangeEnd(header);
    // "0-0" cannot tell zero bytes from one: start over rather than guess.
    if (offset === null || header === "0-0" || offset > size) return null;
    return {
      location: client.resolve(response.headers.get("location"), location, "an upload location"),
      offset,
    };
  } catch (error) {
    if (error instanceof RegistryError || error instanceof RegistryConnectionError) return null;
    throw error;
  }
}

/** `Range: 0-<last>` → `last + 1` (bytes held), or `null` when absent or malformed. */
function rangeEnd(header: string | null): number | null {
  const match = header === null ? null : /^(?:bytes=)?0-([0-9]{1,15})$/.exec(header.trim());
  return match === null ? null : Number(match[1]) + 1;
}

async function finishUpload(
  client: RegistryClient,
  location: string,
  d: OciDescriptor,
  body: Uint8Array,
): Promise<void> {
  const url = new URL(location);
  url.searchParams.set("digest", d.digest);
  const response = await client.send({
    method: "PUT",
    url: url.href,
    headers: { "Content-Type": "application/octet-stream" },
    body,
    expect: [201],
  });
  await response.body?.cancel();
  checkReportedDigest(response, "blob", d.digest);
}

/** Best effort: frees the registry's upload session; errors are ignored (the registry purges old ones). */
async function cancelUpload(client: RegistryClient, location: string): Promise<void> {
  try {
    const response = await client.send({
      method: "DELETE",
      url: location,
      expect: [204, 404],
      signal: AbortSignal.timeout(CANCEL_TIMEOUT_MS),
    });
    await response.body?.cancel();
  } catch {
    // ignored: the session expires on its own
  }
}

/** Reads `into.byteLength` bytes at `offset`; a short read means the file shrank while being pushed. */
async function readChunk(
  file: Deno.FsFile,
  path: string,
  offset: number,
  into: Uint8Array,
): Promise<Uint8Array> {
  await file.seek(offset, Deno.SeekMode.Start);
  let filled = 0;
  while (filled < into.byteLength) {
    const n = await file.read(into.subarray(filled));
    if (n === null) {
      throw new OciContentError(
        "SizeMismatch",
        `snapshot file ${path}`,
        "",
        `${offset + filled} bytes`,
        `at least ${offset + into.byteLength} bytes (the file changed while it was pushed)`,
      );
    }
    filled += n;
  }
  return into;
}
