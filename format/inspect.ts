/**
 * A plain, JSON-ready description of a snapshot file: every header field, versions, names of the architecture,
 * hypervisor and entry point, whether (and why not) it loads on this host, its host functions and hashes.
 *
 * @module
 */

import { HEADER_FIELDS, type HeaderFieldName, type RawSnapshotHeader } from "./header.ts";
import { formatHostFunctionSignature, type HostFunction } from "./host_functions.ts";
import type { ParsedSnapshot } from "./hls.ts";
import { pagesIn, type SnapshotSections } from "./sections.ts";
import { SEGMENT_NAMES, type Sregs } from "./sregs.ts";
import { ARCH_NAMES, ENTRYPOINT_NAMES, type HostIdentity, HYPERVISOR_NAMES } from "./tags.ts";
import { checkPrefix, hostIncompatibilities } from "./_check.ts";
import { hexAddress, toHex } from "./_hex.ts";

/**
 * One reason a snapshot does not load on this host.
 *
 * @example
 * ```ts
 * import type { Incompatibility } from "./inspect.ts";
 *
 * const reason: Incompatibility = { kind: "AbiMismatch", field: "abi_version", message: "…" };
 * console.log(reason.kind);
 * ```
 */
export interface Incompatibility {
  /** `ArchMismatch`, `AbiMismatch` or `HypervisorMismatch`; from `Snapshot.inspectFile` also `InvalidField` for a layout or register the loader refuses. */
  kind: string;
  /** The header field. */
  field: string;
  /** The full message, as loading would throw it. */
  message: string;
}

/**
 * The result of {@linkcode inspectSnapshot} and {@linkcode describeSnapshot}. Only strings, numbers, booleans,
 * arrays and plain objects, so `JSON.stringify` works on it. u64 values beyond 2^53 appear as decimal
 * strings; register values and addresses of the special registers as `0x` hex strings.
 *
 * @example
 * ```ts
 * import type { SnapshotInspection } from "./inspect.ts";
 *
 * function summary(info: SnapshotInspection): string {
 *   return `${info.arch}/${info.hypervisor} ABI ${info.abiVersion}: ${info.compatible ? "loads" : "refused"}`;
 * }
 * console.log(typeof summary);
 * ```
 */
export interface SnapshotInspection {
  /** The preamble's format version. */
  formatVersion: number;
  /** `abi_version`. */
  abiVersion: number | string;
  /** `arch` by name (`x86_64`, `aarch64`, `i686`). */
  arch: string;
  /** `hypervisor` by name (`KVM`, `MSHV`, `WHP`). */
  hypervisor: string;
  /** `entrypoint_tag` by name (`Initialise`, `Call`). */
  entrypoint: string;
  /** Whether the snapshot loads on the given host. */
  compatible: boolean;
  /** Why it does not (empty when compatible). */
  incompatibilities: Incompatibility[];
  /** Whether the host ABI's layout rules were checked (not for a snapshot of another arch/ABI/hypervisor). */
  layoutChecked: boolean;
  /** Every header field by spec name. */
  header: Record<HeaderFieldName, number | string>;
  /** The special registers, or `null` when absent. */
  sregs: Record<string, unknown> | null;
  /** Host-function signatures, e.g. `HostPrint(string) -> i32`. */
  hostFunctions: string[];
  /** `header_hash` as hex. */
  headerHash: string;
  /** `blob_hash` as hex. */
  blobHash: string;
  /** BINARY section: the guest binary's path and ELF entry point (`0x` hex), or `null`. */
  binary: { path: string; entry: string } | null;
  /**
   * BASE section, present for delta files: the base's `blob_hash` (hex), the chain depth (1 = on a complete
   * file), the base file name, and how many runs and pages the delta stores.
   */
  base: { blobHash: string; chainDepth: number; fileName: string; runs: number; pages: number } | null;
  /** WORKING_SET section: how many runs and pages, or `null`. */
  workingSet: { runs: number; pages: number } | null;
  /** Optional sections this snapvm does not know (skipped): type and length. */
  skippedSections: { type: number; length: number }[];
  /** Bytes of blob data stored in the file: `memory_size`, or a delta's pages × 4096. */
  storedSize: number;
}

function plainNumber(value: bigint): number | string {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value.toString();
}

function plainSregs(sregs: Sregs | null): Record<string, unknown> | null {
  if (sregs === null) return null;
  const plain: Record<string, unknown> = {};
  for (const name of SEGMENT_NAMES) plain[name] = { ...sregs[name], base: hexAddress(sregs[name].base) };
  plain.gdt = { base: hexAddress(sregs.gdt.base), limit: sregs.gdt.limit };
  plain.idt = { base: hexAddress(sregs.idt.base), limit: sregs.idt.limit };
  for (const name of ["cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apicBase"] as const) {
    plain[name] = hexAddress(sregs[name]);
  }
  plain.interruptBitmap = sregs.interruptBitmap.map((word) => hexAddress(word));
  return plain;
}

function build(
  formatVersion: number,
  raw: RawSnapshotHeader,
  sregs: Sregs | null,
  hostFunctions: HostFunction[],
  headerHash: Uint8Array,
  blobHash: Uint8Array,
  host: HostIdentity,
  layoutChecked: boolean,
  sections: SnapshotSections,
  storedSize: number,
): SnapshotInspection {
  const incompatibilities = hostIncompatibilities(raw, host, "load").map((error) => ({
    kind: error.kind,
    field: error.field,
    message: error.message,
  }));
  const header = {} as Record<HeaderFieldName, number | string>;
  for (const [name] of HEADER_FIELDS) header[name] = plainNumber(raw[name]);
  const named = (names: Readonly<Record<number, string>>, value: bigint) =>
    names[Number(value)] ?? `unknown ${value}`;
  return {
    formatVersion,
    abiVersion: plainNumber(raw.abi_version),
    arch: named(ARCH_NAMES, raw.arch),
    hypervisor: named(HYPERVISOR_NAMES, raw.hypervisor),
    entrypoint: named(ENTRYPOINT_NAMES, raw.entrypoint_tag),
    compatible: incompatibilities.length === 0,
    incompatibilities,
    layoutChecked,
    header,
    sregs: plainSregs(sregs),
    hostFunctions: hostFunctions.map(formatHostFunctionSignature),
    headerHash: toHex(headerHash),
    blobHash: toHex(blobHash),
    binary: sections.binary && { path: sections.binary.path, entry: hexAddress(sections.binary.entry) },
    base: sections.base && {
      blobHash: toHex(sections.base.blobHash),
      chainDepth: sections.base.chainDepth,
      fileName: sections.base.fileName,
      runs: sections.base.runs.length,
      pages: pagesIn(sections.base.runs),
    },
    workingSet: sections.workingSet && {
      runs: sections.workingSet.length,
      pages: pagesIn(sections.workingSet),
    },
    skippedSections: sections.skipped.map(({ type, length }) => ({ type, length })),
    storedSize,
  };
}

/**
 * Describes a snapshot file, whether or not it is compatible with this host. Every check of
 * `parseSnapshotHeader` runs, except that arch/ABI/hypervisor mismatches are reported in the result instead of
 * thrown, and snapvm's layout rules are skipped for such a foreign snapshot.
 *
 * @param bytes The file from offset 0, at least `snapshotPrefixLength` bytes.
 * @param fileLength The real file length.
 * @param host This host, to judge compatibility.
 * @returns The description.
 * @throws {SnapshotFormatError} For a corrupt or malformed file.
 *
 * @example
 * ```ts
 * import { Arch, blake3, encodeSnapshotPrefix, Hypervisor, inspectSnapshot } from "./mod.ts";
 *
 * const memorySize = 0x201000;
 * const prefix = encodeSnapshotPrefix({
 *   header: {
 *     arch: Arch.X86_64, abiVersion: 1, hypervisor: Hypervisor.KVM, entrypointTag: 0, entrypointAddr: 0x200000,
 *     stackTopGva: 0x212000, inputDataSize: 0x1000, outputDataSize: 0x1000, heapSize: 0, codeSize: 0x1000,
 *     initDataSize: 0, initDataPermissions: 0, scratchSize: 0x12000, snapshotSize: memorySize, ptSize: 0x4000,
 *     memorySize,
 *   },
 *   sregs: null,
 *   hostFunctions: [],
 *   blobHash: blake3(new Uint8Array(memorySize)),
 * });
 * const info = inspectSnapshot(prefix, prefix.length + memorySize + 4096, {
 *   arch: Arch.X86_64, hypervisor: Hypervisor.KVM, abiVersion: 2,
 * });
 * console.log(info.compatible, info.incompatibilities[0].kind); // false AbiMismatch
 * ```
 */
export function inspectSnapshot(
  bytes: Uint8Array,
  fileLength: bigint | number,
  host: HostIdentity,
): SnapshotInspection {
  const checked = checkPrefix(bytes, fileLength, { host, action: "load", collectIncompatibilities: true });
  return build(
    checked.formatVersion,
    checked.raw,
    checked.sregs,
    checked.hostFunctions,
    checked.headerHash,
    checked.blobHash,
    host,
    checked.layoutChecked,
    checked.sections,
    checked.storedSize,
  );
}

/**
 * Describes an already parsed snapshot (see `parseSnapshotHeader`), judging compatibility against `host`.
 *
 * @param parsed The parsed snapshot.
 * @param host This host.
 * @returns The description.
 *
 * @example
 * ```ts ignore
 * import { describeSnapshot } from "./inspect.ts";
 *
 * console.log(JSON.stringify(describeSnapshot(parsed, host), null, 2));
 * ```
 */
export function describeSnapshot(parsed: ParsedSnapshot, host: HostIdentity): SnapshotInspection {
  const raw = {} as RawSnapshotHeader;
  for (const [name, key] of HEADER_FIELDS) raw[name] = BigInt(parsed.header[key]);
  return build(
    parsed.formatVersion,
    raw,
    parsed.sregs,
    parsed.hostFunctions,
    parsed.headerHash,
    parsed.blobHash,
    host,
    true,
    {
      binary: parsed.binary,
      base: parsed.base,
      workingSet: parsed.workingSet,
      skipped: parsed.skippedSections,
    },
    parsed.storedSize,
  );
}
