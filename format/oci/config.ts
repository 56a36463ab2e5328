/**
 * The config blob of a snapvm OCI manifest (media type `application/vnd.snapvm.snapshot.config.v1+json`):
 * the snapshot's header fields, versions, names, special registers, host functions and hashes as JSON, so a
 * scheduler can see what a snapshot needs (arch, hypervisor, ABI, memory size, host functions) without
 * downloading the memory blob.
 *
 * @module
 */

import { HEADER_FIELDS, type HeaderFieldName } from "../header.ts";
import { MAX_HOST_FUNCTIONS } from "../constants.ts";
import { OciContentError } from "./errors.ts";
import { MAX_CONFIG_SIZE, MAX_SNAPSHOT_LAYER_SIZE } from "./constants.ts";
import { parseJsonObject } from "./_json.ts";
import { readSnapshotFileInfo } from "./_snapshot_file.ts";

/**
 * What the config blob holds: the host-independent part of a `SnapshotInspection` plus the file length.
 * Numbers beyond 2^53 appear as decimal strings, special registers as `0x` hex strings, as in
 * `SnapshotInspection`.
 *
 * @example
 * ```ts
 * import type { SnapshotConfig } from "./config.ts";
 *
 * function needs(config: SnapshotConfig): string {
 *   return `${config.arch}/${config.hypervisor} ABI ${config.abiVersion}, ${config.header.memory_size} bytes of memory`;
 * }
 * console.log(typeof needs);
 * ```
 */
export interface SnapshotConfig {
  /** The `.hls` format version. */
  formatVersion: number;
  /** `abi_version`. */
  abiVersion: number | string;
  /** `arch` by name (`x86_64`, …). */
  arch: string;
  /** `hypervisor` by name (`KVM`, …). */
  hypervisor: string;
  /** `entrypoint_tag` by name (`Initialise`, `Call`). */
  entrypoint: string;
  /** Every header field by spec name. */
  header: Record<HeaderFieldName, number | string>;
  /** The special registers, or `null` when the file has none. */
  sregs: Record<string, unknown> | null;
  /** Host-function signatures, e.g. `HostPrint(string) -> i32`. */
  hostFunctions: string[];
  /** `header_hash` as 64 hex digits. */
  headerHash: string;
  /** `blob_hash` (BLAKE3 of the memory blob) as 64 hex digits. */
  blobHash: string;
  /** The length of the `.hls` file in bytes. */
  fileSize: number;
}

/**
 * Reads a snapshot file's prefix (never its blob), runs every check of `inspectSnapshot` on it and builds
 * its config. The file is judged against snapvm's own arch and hypervisor with the file's ABI version, so
 * an x86_64/KVM file gets snapvm's full layout checks whatever its ABI, and a file of another arch or
 * hypervisor is still accepted (a registry can hold snapshots for any host).
 *
 * @param path The `.hls` file.
 * @returns The config.
 * @throws {SnapshotFormatError} When the file is not a valid snapshot.
 * @throws {Deno.errors.NotFound} When the file does not exist.
 *
 * @example
 * ```ts ignore
 * import { readSnapshotConfig } from "./config.ts";
 *
 * const config = await readSnapshotConfig("guest.hls");
 * console.log(config.arch, config.header.memory_size);
 * ```
 */
export async function readSnapshotConfig(path: string | URL): Promise<SnapshotConfig> {
  return (await readSnapshotFileInfo(path)).config;
}

/**
 * Encodes a config as the blob pushed to registries: compact JSON in a fixed key order, so the same
 * snapshot always gives the same config digest (and the same manifest digest).
 *
 * @param config The config.
 * @returns UTF-8 JSON bytes.
 *
 * @example
 * ```ts ignore
 * import { encodeSnapshotConfig } from "./config.ts";
 *
 * const bytes = encodeSnapshotConfig(config);
 * ```
 */
export function encodeSnapshotConfig(config: SnapshotConfig): Uint8Array {
  const header: Record<string, number | string> = {};
  for (const [name] of HEADER_FIELDS) header[name] = config.header[name];
  const ordered: SnapshotConfig = {
    formatVersion: config.formatVersion,
    abiVersion: config.abiVersion,
    arch: config.arch,
    hypervisor: config.hypervisor,
    entrypoint: config.entrypoint,
    header: header as Record<HeaderFieldName, number | string>,
    sregs: config.sregs,
    hostFunctions: config.hostFunctions,
    headerHash: config.headerHash,
    blobHash: config.blobHash,
    fileSize: config.fileSize,
  };
  return new TextEncoder().encode(JSON.stringify(ordered));
}

const HEX_HASH = /^[0-9a-f]{64}$/;
const DECIMAL = /^[0-9]{1,20}$/;

/**
 * Parses and validates a config blob received from a registry or a layout directory: every field of
 * {@linkcode SnapshotConfig} present with the right type, header fields non-negative integers (or decimal
 * strings beyond 2^53), hashes 64 hex digits, at most `MAX_HOST_FUNCTIONS` host functions.
 *
 * @param bytes The blob (at most `MAX_CONFIG_SIZE` bytes).
 * @returns The config.
 * @throws {OciContentError} Naming the first field that is wrong.
 *
 * @example
 * ```ts
 * import { OciContentError, parseSnapshotConfig } from "./mod.ts";
 *
 * try {
 *   parseSnapshotConfig(new TextEncoder().encode('{"formatVersion": "one"}'));
 * } catch (error) {
 *   console.log(error instanceof OciContentError && error.message);
 *   // Invalid config: formatVersion is "one", expected a positive integer
 * }
 * ```
 */
export function parseSnapshotConfig(bytes: Uint8Array): SnapshotConfig {
  const what = "config";
  if (bytes.byteLength > MAX_CONFIG_SIZE) {
    throw new OciContentError(
      "TooLarge",
      what,
      "",
      `${bytes.byteLength} bytes`,
      `at most ${MAX_CONFIG_SIZE}`,
    );
  }
  const json = parseJsonObject(bytes, what);
  const bad = (field: string, expected: string): never => {
    throw new OciContentError("InvalidField", what, field, json[field.split(".")[0]], expected);
  };
  const integer = (value: unknown) => typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
  const bigInteger = (value: unknown) => integer(value) || (typeof value === "string" && DECIMAL.test(value));
  const name = (field: string) => {
    const value = json[field];
    if (typeof value !== "string" || value === "" || value.length > 64) {
      bad(field, "a name of 1..64 characters");
    }
    return value as string;
  };

  if (!integer(json.formatVersion) || json.formatVersion === 0) bad("formatVersion", "a positive integer");
  if (!bigInteger(json.abiVersion)) bad("abiVersion", "a non-negative integer");
  const header = json.header;
  if (typeof header !== "object" || header === null || Array.isArray(header)) bad("header", "an object");
  const fields: Record<string, number | string> = {};
  for (const [field] of HEADER_FIELDS) {
    const value = (header as Record<string, unknown>)[field];
    if (!bigInteger(value)) {
      throw new OciContentError("InvalidField", what, `header.${field}`, value, "a non-negative integer");
    }
    fields[field] = value as number | string;
  }
  const sregs = json.sregs;
  if (sregs !== null && (typeof sregs !== "object" || Array.isArray(sregs))) {
    bad("sregs", "an object or null");
  }
  const hostFunctions = json.hostFunctions;
  if (
    !Array.isArray(hostFunctions) || hostFunctions.length > MAX_HOST_FUNCTIONS ||
    !hostFunctions.every((s) => typeof s === "string")
  ) {
    bad("hostFunctions", `an array of at most ${MAX_HOST_FUNCTIONS} strings`);
  }
  for (const field of ["headerHash", "blobHash"]) {
    if (typeof json[field] !== "string" || !HEX_HASH.test(json[field] as string)) {
      bad(field, "64 lower-case hex digits");
    }
  }
  if (!integer(json.fileSize) || (json.fileSize as number) > MAX_SNAPSHOT_LAYER_SIZE) {
    bad("fileSize", `an integer in 0..${MAX_SNAPSHOT_LAYER_SIZE}`);
  }
  return {
    formatVersion: json.formatVersion as number,
    abiVersion: json.abiVersion as number | string,
    arch: name("arch"),
    hypervisor: name("hypervisor"),
    entrypoint: name("entrypoint"),
    header: fields as Record<HeaderFieldName, number | string>,
    sregs: sregs as Record<string, unknown> | null,
    hostFunctions: hostFunctions as string[],
    headerHash: json.headerHash as string,
    blobHash: json.blobHash as string,
    fileSize: json.fileSize as number,
  };
}
