/**
 * Streaming SHA-256 for OCI content digests (`sha256:<hex>`).
 *
 * Web Crypto only hashes a whole buffer at once, which would mean holding a 1 GiB snapshot in memory.
 * Deno's `node:crypto` `createHash` is incremental and native (about 1.7 GB/s here against 0.8 GB/s for a
 * one-shot `crypto.subtle.digest` of the same 64 MiB), so every blob is hashed chunk by chunk while it is
 * read, written or sent.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";

/** How much of a file {@linkcode digestFile} reads at a time. */
const READ_CHUNK = 1024 * 1024;

/**
 * An incremental SHA-256: feed bytes with {@linkcode Sha256.update}, then read the OCI digest once.
 *
 * @example
 * ```ts
 * import { Sha256 } from "./digest.ts";
 *
 * const hash = new Sha256();
 * hash.update(new TextEncoder().encode("a"));
 * hash.update(new TextEncoder().encode("bc"));
 * console.log(hash.digest());
 * // sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
 * ```
 */
export class Sha256 {
  #hash: Hash = createHash("sha256");
  #done = false;

  /**
   * Adds bytes.
   *
   * @param bytes The next bytes of the content.
   * @returns This hasher, for chaining.
   * @throws {Error} After {@linkcode Sha256.digest}.
   */
  update(bytes: Uint8Array): this {
    if (this.#done) throw new Error("Sha256.update called after digest()");
    this.#hash.update(bytes);
    return this;
  }

  /**
   * Finishes the hash.
   *
   * @returns `sha256:` and 64 lower-case hex digits.
   * @throws {Error} When called twice.
   */
  digest(): string {
    if (this.#done) throw new Error("Sha256.digest called twice");
    this.#done = true;
    return `sha256:${this.#hash.digest("hex")}`;
  }
}

/**
 * The OCI digest of bytes in memory.
 *
 * @param bytes The content.
 * @returns `sha256:<hex>`.
 *
 * @example
 * ```ts
 * import { sha256Digest } from "./digest.ts";
 *
 * console.log(sha256Digest(new Uint8Array(0)));
 * // sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
 * ```
 */
export function sha256Digest(bytes: Uint8Array): string {
  return new Sha256().update(bytes).digest();
}

/**
 * The OCI digest and length of a file, read in 1 MiB chunks (memory use does not grow with the file).
 *
 * @param path The file.
 * @returns Its digest and its length in bytes.
 * @throws {Deno.errors.NotFound} When the file does not exist.
 *
 * @example
 * ```ts ignore
 * import { digestFile } from "./digest.ts";
 *
 * const { digest, size } = await digestFile("guest.hls");
 * ```
 */
export async function digestFile(path: string | URL): Promise<{ digest: string; size: number }> {
  using file = await Deno.open(path, { read: true });
  const hash = new Sha256();
  const buffer = new Uint8Array(READ_CHUNK);
  let size = 0;
  for (;;) {
    const n = await file.read(buffer);
    if (n === null) break;
    hash.update(buffer.subarray(0, n));
    size += n;
  }
  return { digest: hash.digest(), size };
}
