/**
 * Validation of OCI content descriptors (`{mediaType, digest, size, annotations}`) from untrusted JSON.
 * Internal.
 *
 * @module
 */

import { OciContentError } from "./errors.ts";
import type { OciDescriptor } from "./manifest.ts";
import { isSha256Digest } from "./reference.ts";

/** Longest media type accepted (RFC 6838 allows 127 + 1 + 127). */
const MAX_MEDIA_TYPE_LENGTH = 255;
/** Most annotations on one descriptor, and longest key or value, so a hostile index cannot balloon memory. */
const MAX_ANNOTATIONS = 64;
const MAX_ANNOTATION_LENGTH = 4096;

/**
 * Checks one descriptor.
 *
 * @param value The parsed JSON value.
 * @param what The content it is in (`manifest`, `index.json`).
 * @param field Its path in that content (`layers[0]`).
 * @param maxSize Largest `size` accepted for what it points to.
 * @returns A clean copy holding only the known fields.
 * @throws {OciContentError} `InvalidField` or `TooLarge`.
 */
export function parseDescriptor(value: unknown, what: string, field: string, maxSize: number): OciDescriptor {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new OciContentError("InvalidField", what, field, value ?? null, "a descriptor object");
  }
  const d = value as Record<string, unknown>;
  if (typeof d.mediaType !== "string" || d.mediaType === "" || d.mediaType.length > MAX_MEDIA_TYPE_LENGTH) {
    throw new OciContentError(
      "InvalidField",
      what,
      `${field}.mediaType`,
      d.mediaType ?? null,
      "a media type",
    );
  }
  if (typeof d.digest !== "string" || !isSha256Digest(d.digest)) {
    throw new OciContentError(
      "InvalidField",
      what,
      `${field}.digest`,
      d.digest ?? null,
      "sha256: followed by 64 lower-case hex digits",
    );
  }
  if (typeof d.size !== "number" || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw new OciContentError(
      "InvalidField",
      what,
      `${field}.size`,
      d.size ?? null,
      "a non-negative integer",
    );
  }
  if (d.size > maxSize) {
    throw new OciContentError("TooLarge", what, `${field}.size`, d.size, `at most ${maxSize} bytes`);
  }
  const descriptor: OciDescriptor = { mediaType: d.mediaType, digest: d.digest, size: d.size };
  if (d.annotations !== undefined) {
    descriptor.annotations = parseAnnotations(d.annotations, what, `${field}.annotations`);
  }
  return descriptor;
}

/**
 * Checks an annotations map: an object of at most 64 string values, keys and values at most 4096 characters.
 *
 * @param value The parsed JSON value.
 * @param what The content it is in.
 * @param field Its path.
 * @returns A clean copy.
 * @throws {OciContentError} `InvalidField`.
 */
export function parseAnnotations(value: unknown, what: string, field: string): Record<string, string> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new OciContentError("InvalidField", what, field, value, "an object of strings");
  }
  const entries = Object.entries(value);
  if (entries.length > MAX_ANNOTATIONS) {
    throw new OciContentError(
      "InvalidField",
      what,
      field,
      `${entries.length} entries`,
      `at most ${MAX_ANNOTATIONS}`,
    );
  }
  const annotations: Record<string, string> = {};
  for (const [key, text] of entries) {
    if (
      typeof text !== "string" || key.length > MAX_ANNOTATION_LENGTH || text.length > MAX_ANNOTATION_LENGTH
    ) {
      throw new OciContentError(
        "InvalidField",
        what,
        `${field}[${JSON.stringify(key.slice(0, 100))}]`,
        text,
        `a string of at most ${MAX_ANNOTATION_LENGTH} characters`,
      );
    }
    annotations[key] = text;
  }
  return annotations;
}
