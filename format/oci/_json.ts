/**
 * Decoding JSON from untrusted bytes into a plain object, with typed errors. Internal.
 *
 * @module
 */

import { OciContentError } from "./errors.ts";

/**
 * Decodes UTF-8 JSON that must be an object.
 *
 * @param bytes The content (already bounded in size by the caller).
 * @param what Names the content in error messages (`manifest`, `config`, …).
 * @returns The object.
 * @throws {OciContentError} `InvalidJson` for bad UTF-8, bad JSON or a non-object.
 */
export function parseJsonObject(bytes: Uint8Array, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    throw new OciContentError("InvalidJson", what, "", `not valid UTF-8 JSON (${why})`, "a JSON object");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new OciContentError(
      "InvalidJson",
      what,
      "",
      Array.isArray(value) ? "an array" : typeof value,
      "a JSON object",
    );
  }
  return value as Record<string, unknown>;
}
