/**
 * The typed error raised for every snapshot file that cannot be read or written.
 *
 * @module
 */
import { SnapvmError } from "../errors.ts";
import { HEADER_FIELDS } from "./header.ts";

/**
 * Every kind of {@linkcode SnapshotFormatError}, in a stable order. Code may switch on these strings; they are
 * never renamed, only added to.
 *
 * - `BadMagic`: the file does not start with `HLS\0`; it is not a snapshot file at all.
 * - `UnsupportedFormatVersion`: the preamble names a byte layout this snapvm does not read (0, or above 2),
 *   or a version-2 file holds a required section type it does not know. The file may be convertible by a
 *   snapvm release that knows that version.
 * - `AbiMismatch`: `abi_version` differs from this host's ABI. The memory blob has another meaning; the snapshot
 *   must be regenerated from the guest binary.
 * - `ArchMismatch`: `arch` is not the running host's architecture.
 * - `HypervisorMismatch`: `hypervisor` is not the running host's hypervisor (segment-register hidden fields
 *   differ between hypervisors for the same architectural state).
 * - `Truncated`: the file, or a structure inside it, ends before the bytes it must hold.
 * - `InvalidField`: a field holds a value outside its range, or inconsistent with another field or with the
 *   memory layout; also used for a malformed host-functions section (bad UTF-8, bad tag, duplicate name).
 * - `HeaderHashMismatch`: `header_hash` does not match the preamble, header, special registers, `blob_hash`
 *   and host functions: one of them is corrupt.
 * - `BlobHashMismatch`: `blob_hash` does not match the memory blob: the blob is corrupt.
 * - `HostFunctionsTooLarge`: the host-functions section is larger than
 *   `MAX_HOST_FUNCS_SIZE` (1 MiB).
 * - `BaseNotFound`: a delta's base snapshot file is not where the delta names it (or where `resolveBase`
 *   says), or is not a file.
 * - `BaseMismatch`: the file found as a delta's base is another snapshot: its `blob_hash`, memory size or
 *   chain depth differs from what the delta records, or the chain loops back on itself.
 * - `ChainTooLong`: a delta's chain of bases is deeper than `MAX_DELTA_CHAIN`.
 *
 * @example Switch on a kind
 * ```ts
 * import { SNAPSHOT_FORMAT_ERROR_KINDS } from "./errors.ts";
 *
 * console.log(SNAPSHOT_FORMAT_ERROR_KINDS.includes("BadMagic")); // true
 * ```
 */
export const SNAPSHOT_FORMAT_ERROR_KINDS = [
  "BadMagic",
  "UnsupportedFormatVersion",
  "AbiMismatch",
  "ArchMismatch",
  "HypervisorMismatch",
  "Truncated",
  "InvalidField",
  "HeaderHashMismatch",
  "BlobHashMismatch",
  "HostFunctionsTooLarge",
  "BaseNotFound",
  "BaseMismatch",
  "ChainTooLong",
] as const;

/**
 * One of {@linkcode SNAPSHOT_FORMAT_ERROR_KINDS}.
 *
 * @example
 * ```ts
 * import type { SnapshotFormatErrorKind } from "./errors.ts";
 *
 * const kind: SnapshotFormatErrorKind = "Truncated";
 * console.log(kind);
 * ```
 */
export type SnapshotFormatErrorKind = typeof SNAPSHOT_FORMAT_ERROR_KINDS[number];

/**
 * Whether the error happened while reading a file or while building one. It only changes the message prefix
 * ("Cannot load snapshot" or "Cannot save snapshot").
 *
 * @example
 * ```ts
 * import type { SnapshotAction } from "./errors.ts";
 *
 * const action: SnapshotAction = "save";
 * console.log(action);
 * ```
 */
export type SnapshotAction = "load" | "save";

/**
 * What to put in a {@linkcode SnapshotFormatError}.
 *
 * @example
 * ```ts
 * import type { SnapshotFormatErrorInit } from "./errors.ts";
 *
 * const init: SnapshotFormatErrorInit = { field: "memory_offset", found: 4097n, expected: "a multiple of 4096" };
 * console.log(init.field);
 * ```
 */
export interface SnapshotFormatErrorInit {
  /**
   * Which field or structure is wrong: a header field name as in the spec (`memory_offset`), `magic`,
   * `format_version`, `sregs.cs.limit`, `header_hash`, `host_functions[2].name`, `file length`, …
   */
  field: string;
  /** The value found in the file. Strings are shown as they are, numbers and bigints in decimal. */
  found: string | number | bigint;
  /** What was expected, as a phrase that completes "expected …". */
  expected: string;
  /** An extra sentence telling the user what to do about it. */
  hint?: string;
  /** Defaults to `"load"`. */
  action?: SnapshotAction;
}

const PREAMBLE_FIELDS = new Set(["magic", "format_version"]);
const HEADER_FIELD_NAMES = new Set<string>(HEADER_FIELDS.map(([name]) => name));

/** Names the field the way a user reads it: "header field memory_offset", "special register cs.limit". */
function describeField(field: string): string {
  if (PREAMBLE_FIELDS.has(field)) return `preamble field ${field}`;
  if (HEADER_FIELD_NAMES.has(field)) return `header field ${field}`;
  if (field.startsWith("sregs.")) return `special register ${field.slice("sregs.".length)}`;
  if (field.startsWith("host_functions")) return `host-functions section field ${field}`;
  if (field.startsWith("sections")) return `section table field ${field}`;
  if (/^(binary|base|working_set)\./.test(field)) return `section field ${field}`;
  return field;
}

/**
 * A snapshot file that cannot be loaded (or a snapshot that cannot be saved) because of its contents.
 * `kind` says what class of problem it is, `field`, `found` and `expected` say exactly where and what.
 *
 * @example Catch and inspect
 * ```ts
 * import { SnapshotFormatError } from "./errors.ts";
 *
 * const error = new SnapshotFormatError("InvalidField", {
 *   field: "memory_offset",
 *   found: 4097n,
 *   expected: "a multiple of 4096",
 * });
 * console.log(error.message);
 * // Cannot load snapshot: header field memory_offset is 4097, expected a multiple of 4096
 * console.log(error.kind, error.field); // InvalidField memory_offset
 * ```
 */
export class SnapshotFormatError extends SnapvmError {
  /** Always `"SnapshotFormatError"`. */
  override name = "SnapshotFormatError";
  /** The class of problem; one of {@linkcode SNAPSHOT_FORMAT_ERROR_KINDS}. */
  readonly kind: SnapshotFormatErrorKind;
  /** The field or structure that is wrong (see {@linkcode SnapshotFormatErrorInit.field}). */
  readonly field: string;
  /** The value found. */
  readonly found: string | number | bigint;
  /** What was expected instead. */
  readonly expected: string;

  /**
   * Builds the error and its message from the parts.
   *
   * @param kind The class of problem.
   * @param init Field, found value, expectation, optional hint and action.
   */
  constructor(kind: SnapshotFormatErrorKind, init: SnapshotFormatErrorInit) {
    const prefix = init.action === "save" ? "Cannot save snapshot" : "Cannot load snapshot";
    const hint = init.hint === undefined ? "" : `; ${init.hint}`;
    super(`${prefix}: ${describeField(init.field)} is ${init.found}, expected ${init.expected}${hint}`);
    this.kind = kind;
    this.field = init.field;
    this.found = init.found;
    this.expected = init.expected;
  }
}
