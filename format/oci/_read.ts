/**
 * Reading untrusted bytes with a size limit, never trusting a declared length. Internal.
 *
 * @module
 */

import { OciContentError } from "./errors.ts";

/**
 * Reads a whole stream, failing as soon as it goes past `limit` bytes (the rest is not read).
 *
 * @param stream The body.
 * @param limit Most bytes accepted.
 * @param what Names the content in the error.
 * @returns The bytes.
 * @throws {OciContentError} `TooLarge`.
 */
export async function readStreamLimited(
  stream: ReadableStream<Uint8Array> | null,
  limit: number,
  what: string,
): Promise<Uint8Array> {
  if (stream === null) return new Uint8Array(0);
  const reader = stream.getReader();
  const parts: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > limit) {
        throw new OciContentError("TooLarge", what, "", `more than ${limit} bytes`, `at most ${limit} bytes`);
      }
      parts.push(value);
    }
  } catch (error) {
    await reader.cancel().catch(() => {});
    throw error;
  } finally {
    reader.releaseLock();
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.byteLength;
  }
  return bytes;
}

/**
 * Reads a whole file of at most `limit` bytes.
 *
 * @param path The file.
 * @param limit Most bytes accepted.
 * @param what Names the content in the error.
 * @returns The bytes.
 * @throws {OciContentError} `TooLarge`.
 * @throws {Deno.errors.NotFound} When the file does not exist.
 */
export async function readFileLimited(path: string, limit: number, what: string): Promise<Uint8Array> {
  const file = await Deno.open(path, { read: true });
  return await readStreamLimited(file.readable, limit, what);
}
