/**
 * OCI image-layout directories (OCI image spec, "image-layout"): the same manifest, config and layers as a
 * registry push, as files, for air-gapped transfer or tools that read layouts (`oras`, `skopeo`, `crane`).
 *
 * ```
 * DIR/oci-layout             {"imageLayoutVersion":"1.0.0"}
 * DIR/index.json             image index: one manifest descriptor per tag (annotation org.opencontainers.image.ref.name)
 * DIR/blobs/sha256/<hex>     manifests, configs and snapshot layers
 * ```
 *
 * @module
 */

import {
  MAX_INDEX_SIZE,
  MAX_MANIFEST_SIZE,
  OCI_INDEX_MEDIA_TYPE,
  OCI_MANIFEST_MEDIA_TYPE,
  REF_NAME_ANNOTATION,
} from "./constants.ts";
import type { SnapshotConfig } from "./config.ts";
import { defaultCacheDir } from "./cache.ts";
import { DigestMismatchError, OciContentError, OciLayoutError, OciReferenceError } from "./errors.ts";
import {
  type ArtifactOptions,
  buildSnapshotArtifact,
  type OciDescriptor,
  type OciManifest,
} from "./manifest.ts";
import type { PulledSnapshot, PullOptions } from "./pull.ts";
import { isSha256Digest, isValidTag } from "./reference.ts";
import { sha256Digest } from "./digest.ts";
import { parseDescriptor } from "./_descriptor.ts";
import { parseJsonObject } from "./_json.ts";
import { materialize } from "./_materialize.ts";
import { readFileLimited } from "./_read.ts";
import { blobPath, findBlob, storeBlob, storeBytes } from "./_store.ts";

const LAYOUT_FILE = "oci-layout";
const INDEX_FILE = "index.json";
const LAYOUT_VERSION = "1.0.0";
/** Most manifests an `index.json` may list. */
const MAX_INDEX_ENTRIES = 10_000;

/**
 * The result of {@linkcode exportOciLayout}.
 *
 * @example
 * ```ts
 * import type { ExportResult } from "./layout.ts";
 *
 * const line = (r: ExportResult) => `${r.dir}:${r.tag} = ${r.digest}`;
 * console.log(typeof line);
 * ```
 */
export interface ExportResult {
  /** The layout directory. */
  dir: string;
  /** The tag written to `index.json`. */
  tag: string;
  /** The manifest digest (the same a registry push of the file yields). */
  digest: string;
  /** The manifest. */
  manifest: OciManifest;
  /** The config. */
  config: SnapshotConfig;
}

/**
 * Options of {@linkcode importOciLayout}: the cache directory and progress callback of a pull.
 *
 * @example
 * ```ts
 * import type { ImportOptions } from "./layout.ts";
 *
 * const options: ImportOptions = { cacheDir: "/var/cache/snapvm" };
 * console.log(options.cacheDir);
 * ```
 */
export type ImportOptions = Pick<PullOptions, "cacheDir" | "onProgress" | "signal">;

/**
 * Writes a snapshot file into an OCI image-layout directory under a tag, creating the directory if needed.
 * Other tags already in the layout are kept; an existing entry with the same tag is replaced. Layers are
 * copied with their SHA-256 verified against the digest computed before (a file changed meanwhile fails);
 * a blob the layout already holds is not copied again. A delta is exported with its chain of bases, as
 * `pushSnapshotFile` pushes it.
 *
 * @param path The `.hls` file.
 * @param dir The layout directory.
 * @param tag The tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`).
 * @param options Where a delta's bases are.
 * @returns The manifest digest and contents.
 * @throws {OciReferenceError} For an invalid tag.
 * @throws {OciLayoutError} When `dir` holds a layout of another version.
 * @throws {SnapshotFormatError} When the file is not a valid snapshot, or a delta's base is missing or wrong.
 * @throws {OciContentError} When an existing `index.json` is malformed.
 *
 * @example
 * ```ts ignore
 * import { exportOciLayout } from "./layout.ts";
 *
 * const { digest } = await exportOciLayout("guest.hls", "./guest-layout", "v1");
 * ```
 */
export async function exportOciLayout(
  path: string | URL,
  dir: string,
  tag: string,
  options: ArtifactOptions = {},
): Promise<ExportResult> {
  if (!isValidTag(tag)) throw new OciReferenceError(tag, "the tag is not [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}");
  const artifact = await buildSnapshotArtifact(path, options);
  await Deno.mkdir(dir, { recursive: true });
  const existing = await readLayoutVersion(dir);
  if (existing === null) {
    await writeAtomically(dir, LAYOUT_FILE, JSON.stringify({ imageLayoutVersion: LAYOUT_VERSION }));
  }

  for (const layer of artifact.layers) {
    if (await findBlob(dir, layer.descriptor) !== null) continue;
    const file = await Deno.open(layer.path, { read: true });
    await storeBlob(dir, layer.descriptor, file.readable, `layer copied from ${layer.path}`);
  }
  if (await findBlob(dir, artifact.manifest.config) === null) {
    await storeBytes(dir, artifact.manifest.config, artifact.configBytes, "config");
  }
  const manifestDescriptor: OciDescriptor = {
    mediaType: OCI_MANIFEST_MEDIA_TYPE,
    digest: artifact.manifestDigest,
    size: artifact.manifestBytes.byteLength,
  };
  if (await findBlob(dir, manifestDescriptor) === null) {
    await storeBytes(dir, manifestDescriptor, artifact.manifestBytes, "manifest");
  }

  const index = existing === null ? [] : await readIndex(dir);
  const kept = index.filter((d) => d.annotations?.[REF_NAME_ANNOTATION] !== tag);
  kept.push({ ...manifestDescriptor, annotations: { [REF_NAME_ANNOTATION]: tag } });
  const json = { schemaVersion: 2, mediaType: OCI_INDEX_MEDIA_TYPE, manifests: kept };
  await writeAtomically(dir, INDEX_FILE, JSON.stringify(json));
  return { dir, tag, digest: artifact.manifestDigest, manifest: artifact.manifest, config: artifact.config };
}

/**
 * Imports a snapshot from an OCI image-layout directory into the local cache (as a pull would), verifying
 * every blob's length and SHA-256, and returns the cached `.hls` path. The layout directory can be removed
 * afterwards.
 *
 * @param dir The layout directory.
 * @param ref A tag from `index.json` (the last entry wins when a tag is listed twice) or a manifest digest
 *   (`sha256:…`).
 * @param options Cache directory, progress and cancellation.
 * @returns The cached snapshot; `reference` is `DIR@sha256:…`.
 * @throws {OciLayoutError} When `dir` is not a layout or lacks `ref`.
 * @throws {DigestMismatchError} / {@linkcode OciContentError} / `SnapshotFormatError` For corrupt or
 *   malformed content; nothing is cached.
 *
 * @example
 * ```ts ignore
 * import { importOciLayout } from "./layout.ts";
 *
 * const { path } = await importOciLayout("./guest-layout", "v1");
 * const snap = Snapshot.fromFileCached(path);
 * ```
 */
export async function importOciLayout(
  dir: string,
  ref: string,
  options: ImportOptions = {},
): Promise<PulledSnapshot> {
  if (await readLayoutVersion(dir) === null) {
    throw new OciLayoutError(dir, `it has no ${LAYOUT_FILE} file: not an OCI image layout`);
  }
  const index = await readIndex(dir);
  const manifests = index.filter((d) => d.mediaType === OCI_MANIFEST_MEDIA_TYPE);
  const byDigest = isSha256Digest(ref);
  const found = manifests.findLast((d) =>
    byDigest ? d.digest === ref : d.annotations?.[REF_NAME_ANNOTATION] === ref
  );
  if (found === undefined) {
    const tags = manifests.map((d) => d.annotations?.[REF_NAME_ANNOTATION]).filter((t) => t !== undefined);
    const listed = tags.length === 0
      ? "no tags"
      : `tags: ${tags.slice(0, 20).join(", ")}${tags.length > 20 ? ", …" : ""}`;
    throw new OciLayoutError(
      dir,
      `it has no manifest ${byDigest ? ref : `tagged ${JSON.stringify(ref)}`} (${listed})`,
    );
  }
  if (found.size > MAX_MANIFEST_SIZE) {
    throw new OciContentError(
      "TooLarge",
      INDEX_FILE,
      "manifests[].size",
      found.size,
      `at most ${MAX_MANIFEST_SIZE}`,
    );
  }
  const manifestBytes = await readBlobFile(dir, found, MAX_MANIFEST_SIZE, "manifest");
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const source = {
    open: async (descriptor: OciDescriptor) => {
      try {
        return (await Deno.open(blobPath(dir, descriptor.digest), { read: true })).readable;
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) {
          throw new OciLayoutError(dir, `blob ${descriptor.digest} is missing`);
        }
        throw error;
      }
    },
  };
  const result = await materialize(source, cacheDir, manifestBytes, found.digest, options);
  return {
    ...result,
    reference: `${dir}@${found.digest}`,
    bytesReceived: result.bytesReceived + manifestBytes.byteLength,
  };
}

/** The layout version, `null` when there is no `oci-layout` file; throws for another version. */
async function readLayoutVersion(dir: string): Promise<string | null> {
  let bytes: Uint8Array;
  try {
    bytes = await readFileLimited(`${dir}/${LAYOUT_FILE}`, 4096, LAYOUT_FILE);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
  const version = parseJsonObject(bytes, LAYOUT_FILE).imageLayoutVersion;
  if (version !== LAYOUT_VERSION) {
    throw new OciLayoutError(
      dir,
      `its imageLayoutVersion is ${JSON.stringify(version ?? null)}, expected "${LAYOUT_VERSION}"`,
    );
  }
  return version;
}

/** The manifest descriptors of `index.json` (validated); empty when the file does not exist. */
async function readIndex(dir: string): Promise<OciDescriptor[]> {
  let bytes: Uint8Array;
  try {
    bytes = await readFileLimited(`${dir}/${INDEX_FILE}`, MAX_INDEX_SIZE, INDEX_FILE);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
  const json = parseJsonObject(bytes, INDEX_FILE);
  if (json.schemaVersion !== 2) {
    throw new OciContentError("InvalidField", INDEX_FILE, "schemaVersion", json.schemaVersion ?? null, "2");
  }
  if (!Array.isArray(json.manifests) || json.manifests.length > MAX_INDEX_ENTRIES) {
    throw new OciContentError(
      "InvalidField",
      INDEX_FILE,
      "manifests",
      json.manifests ?? null,
      `an array of at most ${MAX_INDEX_ENTRIES} descriptors`,
    );
  }
  return json.manifests.map((value, i) =>
    parseDescriptor(value, INDEX_FILE, `manifests[${i}]`, Number.MAX_SAFE_INTEGER)
  );
}

/** Reads a small blob of the layout, verifying its length and digest. */
async function readBlobFile(
  dir: string,
  descriptor: OciDescriptor,
  limit: number,
  what: string,
): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await readFileLimited(blobPath(dir, descriptor.digest), limit, what);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new OciLayoutError(dir, `${what} blob ${descriptor.digest} is missing`);
    }
    throw error;
  }
  if (bytes.byteLength !== descriptor.size) {
    throw new OciContentError(
      "SizeMismatch",
      `${what} ${descriptor.digest}`,
      "",
      `${bytes.byteLength} bytes`,
      `${descriptor.size} bytes (its descriptor's size)`,
    );
  }
  const digest = sha256Digest(bytes);
  if (digest !== descriptor.digest) throw new DigestMismatchError(what, descriptor.digest, digest);
  return bytes;
}

/** Replaces a small file so readers see the old or the new content, never a mix. */
async function writeAtomically(dir: string, name: string, text: string): Promise<void> {
  const temp = `${dir}/.${name}.${crypto.randomUUID()}.partial`;
  try {
    await Deno.writeTextFile(temp, text, { createNew: true });
    await Deno.rename(temp, `${dir}/${name}`);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
}
