/**
 * Content-addressed blob storage under a root directory (`ROOT/blobs/sha256/<hex>`), shared by the pull
 * cache and image-layout directories. Internal.
 *
 * A blob is streamed into a temporary file next to its final name while its SHA-256 is computed and its
 * length counted against the descriptor (a declared `Content-Length` is never trusted); only when both
 * match, and the optional validation passes, is it fsynced, made read-only and renamed into place. So a blob
 * file that exists is complete and verified, a failure leaves nothing behind, and two processes storing the
 * same blob at once both succeed.
 *
 * @module
 */

import { DigestMismatchError, OciContentError } from "./errors.ts";
import type { OciDescriptor } from "./manifest.ts";
import { Sha256 } from "./digest.ts";

/**
 * The path of a blob under a root directory.
 *
 * @param root The cache or layout directory.
 * @param digest `sha256:<hex>` (already validated).
 * @returns `ROOT/blobs/sha256/<hex>`.
 */
export function blobPath(root: string, digest: string): string {
  return `${root}/blobs/sha256/${digest.slice("sha256:".length)}`;
}

/**
 * The path of a stored blob of the descriptor's size, or `null` when there is none. Sizes are compared so a
 * file truncated by hand is not taken; contents are not re-hashed (they were verified when stored).
 *
 * @param root The cache or layout directory.
 * @param descriptor The blob wanted.
 */
export async function findBlob(root: string, descriptor: OciDescriptor): Promise<string | null> {
  const path = blobPath(root, descriptor.digest);
  try {
    const info = await Deno.stat(path);
    return info.isFile && info.size === descriptor.size ? path : null;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** Options of {@linkcode storeBlob}. */
export interface StoreOptions {
  /** Checks the complete, digest-verified temporary file before it is renamed into place. */
  validate?: (path: string) => Promise<void>;
  /** Called with the length of each chunk written. */
  onBytes?: (bytes: number) => void;
  /** Maps an error thrown while reading the source (e.g. a broken connection) to a typed one. */
  readError?: (error: unknown) => unknown;
  /** Aborts the write; the temporary file is removed. */
  signal?: AbortSignal;
}

/** A blob written and verified into a temporary file next to its final name, not yet visible. */
export interface StagedBlob {
  /** The temporary file (complete, digest-verified, fsynced, read-only). */
  readonly path: string;
  /** Renames it into place; returns the final path. */
  commit(): Promise<string>;
  /** Removes it (harmless after `commit`). */
  discard(): Promise<void>;
}

/**
 * Streams a blob into `ROOT/blobs/sha256/<hex>`, verifying its size and digest.
 *
 * @param root The cache or layout directory.
 * @param descriptor The expected digest and size.
 * @param source The bytes.
 * @param what Names the blob in errors (`layer`, `config`, `manifest`).
 * @param options Validation, progress and cancellation.
 * @returns The blob's final path.
 * @throws {OciContentError} `SizeMismatch` when the source is longer or shorter than `descriptor.size`.
 * @throws {DigestMismatchError} When the content's digest differs.
 */
export async function storeBlob(
  root: string,
  descriptor: OciDescriptor,
  source: ReadableStream<Uint8Array> | null,
  what: string,
  options: StoreOptions = {},
): Promise<string> {
  const staged = await stageBlob(root, descriptor, source, what, options);
  try {
    return await staged.commit();
  } catch (error) {
    await staged.discard();
    throw error;
  }
}

/**
 * Like {@linkcode storeBlob}, but leaves the verified blob in a temporary file until `commit()`, so several
 * blobs that must be checked together (a delta and its base) become visible only when all of them passed.
 */
export async function stageBlob(
  root: string,
  descriptor: OciDescriptor,
  source: ReadableStream<Uint8Array> | null,
  what: string,
  options: StoreOptions = {},
): Promise<StagedBlob> {
  const final = blobPath(root, descriptor.digest);
  const dir = final.slice(0, final.lastIndexOf("/"));
  await Deno.mkdir(dir, { recursive: true });
  const random = crypto.getRandomValues(new Uint8Array(6)).reduce(
    (s, b) => s + b.toString(16).padStart(2, "0"),
    "",
  );
  const temp = `${dir}/.${descriptor.digest.slice(7, 23)}.${random}.partial`;
  const file = await Deno.open(temp, { write: true, createNew: true, mode: 0o644 });
  let open = true;
  const reader = source?.getReader();
  try {
    const hash = new Sha256();
    let total = 0;
    for (;;) {
      options.signal?.throwIfAborted();
      let chunk: ReadableStreamReadResult<Uint8Array> | undefined;
      try {
        chunk = reader === undefined ? { done: true, value: undefined } : await reader.read();
      } catch (error) {
        if (options.signal?.aborted) throw options.signal.reason;
        throw options.readError === undefined ? error : options.readError(error);
      }
      if (chunk.done) break;
      const bytes = chunk.value;
      total += bytes.byteLength;
      if (total > descriptor.size) {
        throw new OciContentError(
          "SizeMismatch",
          `${what} ${descriptor.digest}`,
          "",
          `more than ${descriptor.size} bytes`,
          `${descriptor.size} bytes (its descriptor's size)`,
        );
      }
      hash.update(bytes);
      for (let written = 0; written < bytes.byteLength;) {
        written += await file.write(bytes.subarray(written));
      }
      options.onBytes?.(bytes.byteLength);
    }
    if (total !== descriptor.size) {
      throw new OciContentError(
        "SizeMismatch",
        `${what} ${descriptor.digest}`,
        "",
        `${total} bytes`,
        `${descriptor.size} bytes (its descriptor's size)`,
      );
    }
    const digest = hash.digest();
    if (digest !== descriptor.digest) throw new DigestMismatchError(what, descriptor.digest, digest);
    // Durable before it becomes visible: a cached blob is trusted without re-hashing.
    await file.syncData();
    file.close();
    open = false;
    await options.validate?.(temp);
    await Deno.chmod(temp, 0o444).catch(() => {}); // not supported everywhere (Windows); only a safeguard
  } catch (error) {
    await reader?.cancel().catch(() => {});
    if (open) file.close();
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
  let committed = false;
  return {
    path: temp,
    async commit() {
      await Deno.rename(temp, final);
      committed = true;
      return final;
    },
    async discard() {
      if (!committed) await Deno.remove(temp).catch(() => {});
    },
  };
}

/**
 * Stores bytes held in memory (manifests, configs) like {@linkcode storeBlob}.
 *
 * @param root The cache or layout directory.
 * @param descriptor The expected digest and size.
 * @param bytes The content.
 * @param what Names the blob in errors.
 * @returns The blob's final path.
 */
export function storeBytes(
  root: string,
  descriptor: OciDescriptor,
  bytes: Uint8Array,
  what: string,
): Promise<string> {
  return storeBlob(root, descriptor, new Blob([bytes as BlobPart]).stream(), what);
}
