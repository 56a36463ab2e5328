/**
 * Reading and writing `.hls` snapshot files (format versions 1 and 2, docs/FORMAT.md).
 *
 * A file is a prefix (preamble, header, special registers, hashes, host functions, in version 2 a section
 * table, zero padding), the memory blob at the page-aligned `memory_offset`, and a 4096-byte zero guard. A
 * delta file (version 2 with a BASE section) stores only the pages of its runs there, packed. This module
 * builds and checks the prefix; the caller writes or `mmap`s the blob, because only it knows how the blob is
 * held in memory. Writers produce version 1 unless a section is given.
 *
 * Writing:
 *
 * ```ts ignore
 * const prefix = encodeSnapshotPrefix({ header, sregs, hostFunctions, blobHash: blake3(blob) });
 * // write prefix, then blob, then new Uint8Array(TRAILING_GUARD_SIZE)
 * ```
 *
 * Loading:
 *
 * ```ts ignore
 * const head = readFirstBytes(file, 4096);                 // at least HOST_FUNCS_OFFSET bytes
 * const needed = snapshotPrefixLength(head);               // more if host functions or sections are large
 * const parsed = parseSnapshotHeader(head_or_more, fileSize, host);
 * const blob = mmapPrivate(file, parsed.header.memoryOffset, parsed.header.memorySize);
 * if (checked) verifyBlobHash(blob, parsed.blobHash);
 * ```
 *
 * @module
 */

import {
  FILE_PAGE_SIZE,
  HASH_SIZE,
  HEADER_HASH_OFFSET,
  HLS_FORMAT_VERSION_1,
  HLS_FORMAT_VERSION_2,
  HLS_MAGIC,
  HOST_FUNCS_OFFSET,
  TRAILING_GUARD_SIZE,
} from "./constants.ts";
import { SnapshotFormatError } from "./errors.ts";
import { HEADER_FIELDS, type SnapshotHeader } from "./header.ts";
import { encodeHostFunctions, type HostFunction } from "./host_functions.ts";
import { encodeSregs, type Sregs } from "./sregs.ts";
import {
  type BinaryInfo,
  type DeltaBase,
  encodeSections,
  needsSections,
  type PageRun,
  pagesIn,
  type SkippedSection,
} from "./sections.ts";
import type { HostIdentity, MemoryMap } from "./tags.ts";
import { blake3 } from "./blake3.ts";
import { checkedPrefixLength, checkPrefix, headerHashTo } from "./_check.ts";
import { toHex } from "./_hex.ts";
import { ByteWriter } from "./_writer.ts";

// The pieces of a snapshot file, re-exported so that this module alone covers the whole format.
export type { HeaderFieldName, RawSnapshotHeader, SnapshotHeader } from "./header.ts";
export { HEADER_FIELDS } from "./header.ts";
export type { DescriptorTable, Segment, Sregs } from "./sregs.ts";
export { decodeSregs, emptySregs, encodeSregs, SEGMENT_FLAGS, SEGMENT_NAMES } from "./sregs.ts";
export type { HostFunction } from "./host_functions.ts";
export {
  decodeHostFunctions,
  encodeHostFunctions,
  formatHostFunctionSignature,
  ValueTag,
} from "./host_functions.ts";
export type { BinaryInfo, DeltaBase, PageRun, SkippedSection, SnapshotSections } from "./sections.ts";
export { decodeSections, encodeSections, pagesIn, SECTION_NAMES, SectionType } from "./sections.ts";

/**
 * The header fields a writer chooses. `hasSregs`, `hostFuncsSize` and `memoryOffset` follow from the rest of
 * {@linkcode SnapshotPrefixInput} and are filled in by {@linkcode encodeSnapshotPrefix}.
 *
 * @example
 * ```ts
 * import type { SnapshotHeaderFields } from "./hls.ts";
 *
 * type Chosen = keyof SnapshotHeaderFields;
 * const key: Chosen = "heapSize";
 * console.log(key);
 * ```
 */
export type SnapshotHeaderFields = Omit<SnapshotHeader, "hasSregs" | "hostFuncsSize" | "memoryOffset">;

/**
 * Everything {@linkcode encodeSnapshotPrefix} needs.
 *
 * @example
 * ```ts
 * import type { SnapshotPrefixInput } from "./hls.ts";
 *
 * function describe(input: SnapshotPrefixInput): string {
 *   return `${input.hostFunctions.length} host functions, sregs ${input.sregs === null ? "absent" : "present"}`;
 * }
 * console.log(typeof describe);
 * ```
 */
export interface SnapshotPrefixInput {
  /** The header fields the writer chooses. */
  header: SnapshotHeaderFields;
  /** The vCPU special registers (required for a Call snapshot), or `null` (for an Initialise snapshot). */
  sregs: Sregs | null;
  /** The host functions the guest was built against. */
  hostFunctions: readonly HostFunction[];
  /** BLAKE3-256 of the memory blob. */
  blobHash: Uint8Array;
  /** The writer's memory layout: when given, the header is checked against it before anything is written. */
  memoryMap?: MemoryMap;
  /** The guest binary the snapshot came from (BINARY section; makes the file version 2). */
  binary?: BinaryInfo;
  /**
   * Makes the file a delta (BASE section, version 2): the blob stored at `memory_offset` is then the pages of
   * `base.runs` only, packed in order. `blobHash` stays the hash of the whole resulting memory.
   */
  base?: DeltaBase;
  /** Pages a cold start touches (WORKING_SET section, version 2); an empty list writes no section. */
  workingSet?: readonly PageRun[];
}

/**
 * A checked snapshot prefix, as returned by {@linkcode parseSnapshotHeader}.
 *
 * @example
 * ```ts
 * import type { ParsedSnapshot } from "./hls.ts";
 *
 * function blobEnd(parsed: ParsedSnapshot): number {
 *   return parsed.header.memoryOffset + parsed.header.memorySize;
 * }
 * console.log(typeof blobEnd);
 * ```
 */
export interface ParsedSnapshot {
  /** The preamble's format version (1 or 2). */
  formatVersion: number;
  /** The header, every field checked. */
  header: SnapshotHeader;
  /** The special registers, or `null` when the file has none (`has_sregs` 0). */
  sregs: Sregs | null;
  /** The host functions, in stored order. */
  hostFunctions: HostFunction[];
  /** The stored `header_hash` (already verified). */
  headerHash: Uint8Array;
  /** The stored `blob_hash`; check it with {@linkcode verifyBlobHash}. */
  blobHash: Uint8Array;
  /** BINARY section, or `null`. */
  binary: BinaryInfo | null;
  /** BASE section (the file is a delta), or `null`. */
  base: DeltaBase | null;
  /** WORKING_SET section, or `null`. */
  workingSet: readonly PageRun[] | null;
  /** Optional sections this reader does not know (skipped, still covered by `header_hash`). */
  skippedSections: readonly SkippedSection[];
  /**
   * Bytes of blob data stored at `memory_offset`: `memory_size` for a complete snapshot, the delta's pages ×
   * 4096 for a delta. The file is at least `memory_offset + storedSize + 4096` bytes long.
   */
  storedSize: number;
}

function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

/**
 * Builds the file from offset 0 up to `memory_offset`: preamble, header, special registers (zeros when
 * `sregs` is `null`), `header_hash`, `blob_hash`, host-functions section, the section table when a section is
 * given (then the file is version 2, else version 1) and zero padding to the next page. Then it runs the
 * loader's checks over the result, so it never produces a file that {@linkcode parseSnapshotHeader} (on a
 * host matching the header) would refuse.
 *
 * @param input Header fields, special registers, host functions, the blob's hash and optional sections.
 * @returns `memory_offset` bytes; append the blob (for a delta: the pages of `base.runs`, packed) and
 *   {@linkcode TRAILING_GUARD_SIZE} zero bytes.
 * @throws {SnapshotFormatError} With a "Cannot save snapshot" message when the input breaks a rule of the
 *   format or of snapvm's layout.
 * @throws {RangeError} When a field is not a non-negative safe integer or `blobHash` is not 32 bytes.
 *
 * @example
 * ```ts
 * import { Arch, blake3, EntrypointTag, encodeSnapshotPrefix, Hypervisor, parseSnapshotHeader } from "./mod.ts";
 *
 * const blob = new Uint8Array(0x201000); // guest memory from 0 to the end of a one-page image, no heap
 * const prefix = encodeSnapshotPrefix({
 *   header: {
 *     arch: Arch.X86_64, abiVersion: 1, hypervisor: Hypervisor.KVM,
 *     entrypointTag: EntrypointTag.Initialise, entrypointAddr: 0x200000, stackTopGva: 0x212000,
 *     inputDataSize: 0x1000, outputDataSize: 0x1000, heapSize: 0, codeSize: 0x1000,
 *     initDataSize: 0, initDataPermissions: 0, scratchSize: 0x12000, snapshotSize: 0x201000,
 *     ptSize: 0x4000, memorySize: 0x201000,
 *   },
 *   sregs: null,
 *   hostFunctions: [],
 *   blobHash: blake3(blob),
 * });
 * const fileLength = prefix.length + blob.length + 4096;
 * const parsed = parseSnapshotHeader(prefix, fileLength, { arch: Arch.X86_64, hypervisor: Hypervisor.KVM, abiVersion: 1 });
 * console.log(parsed.header.memoryOffset); // 4096
 * ```
 */
export function encodeSnapshotPrefix(input: SnapshotPrefixInput): Uint8Array {
  if (input.blobHash.byteLength !== HASH_SIZE) {
    throw new RangeError(`blobHash must be ${HASH_SIZE} bytes, got ${input.blobHash.byteLength}`);
  }
  const hostSection = encodeHostFunctions(input.hostFunctions);
  const sections = needsSections(input) ? encodeSections(input, input.header.memorySize) : new Uint8Array(0);
  const hashedEnd = HOST_FUNCS_OFFSET + hostSection.byteLength + sections.byteLength;
  const memoryOffset = alignUp(hashedEnd, FILE_PAGE_SIZE);
  const header: SnapshotHeader = {
    ...input.header,
    hasSregs: input.sregs === null ? 0 : 1,
    hostFuncsSize: hostSection.byteLength,
    memoryOffset,
  };

  const bytes = new Uint8Array(memoryOffset);
  const writer = new ByteWriter(bytes);
  writer.u32(HLS_MAGIC);
  writer.u32(sections.byteLength === 0 ? HLS_FORMAT_VERSION_1 : HLS_FORMAT_VERSION_2);
  for (const [name, key] of HEADER_FIELDS) {
    const value = header[key];
    if (typeof value !== "number") throw new RangeError(`Header field ${name} is missing`);
    writer.u64(value);
  }
  writer.bytes(encodeSregs(input.sregs));
  writer.skip(HASH_SIZE); // header_hash, computed below over everything else
  writer.bytes(input.blobHash);
  writer.bytes(hostSection);
  writer.bytes(sections);
  bytes.set(headerHashTo(bytes, hashedEnd), HEADER_HASH_OFFSET);

  const stored = input.base === undefined ? header.memorySize : pagesIn(input.base.runs) * FILE_PAGE_SIZE;
  const fileLength = BigInt(memoryOffset) + BigInt(stored) + BigInt(TRAILING_GUARD_SIZE);
  const self: HostIdentity = {
    arch: header.arch,
    hypervisor: header.hypervisor,
    abiVersion: header.abiVersion,
    memoryMap: input.memoryMap,
  };
  checkPrefix(bytes, fileLength, { host: self, action: "save" });
  return bytes;
}

/**
 * How many bytes from the start of the file {@linkcode parseSnapshotHeader} needs: 1176 plus
 * `host_funcs_size` for version 1, `memory_offset` for version 2 (whose section table ends before the
 * blob). Read at least `HOST_FUNCS_OFFSET` (1176) bytes, ask this, and read the rest if needed. Checks the
 * preamble, the host-functions size limit and (version 2) `memory_offset`'s bounds on the way.
 *
 * @param bytes At least the first 1176 bytes of the file.
 * @returns The prefix length to read (at most `MAX_MEMORY_OFFSET`).
 * @throws {SnapshotFormatError} `Truncated` (fewer than 1176 bytes), `BadMagic`, `UnsupportedFormatVersion`,
 *   `HostFunctionsTooLarge`, `InvalidField` (`memory_offset` of a version-2 file).
 *
 * @example
 * ```ts
 * import { snapshotPrefixLength } from "./hls.ts";
 *
 * const bytes = new Uint8Array(1176);
 * bytes.set([0x48, 0x4c, 0x53, 0x00, 1, 0, 0, 0]);
 * console.log(snapshotPrefixLength(bytes)); // 1176
 * ```
 */
export function snapshotPrefixLength(bytes: Uint8Array): number {
  return checkedPrefixLength(bytes, "load");
}

/**
 * Checks a snapshot's prefix, in the order of the loading rules (docs/FORMAT.md), and returns what it holds.
 *
 * 1. Preamble: magic `HLS\0` (`BadMagic`), format version 1 or 2 (`UnsupportedFormatVersion`).
 * 2. Header tags (`InvalidField`): `arch` 1..3, `entrypoint_tag` 0..1, `has_sregs` 0..1, `hypervisor` 1..3,
 *    `init_data_permissions` ⊆ {1, 2, 4}.
 * 3. Host compatibility: `arch` (`ArchMismatch`), `abi_version` (`AbiMismatch`), `hypervisor`
 *    (`HypervisorMismatch`) equal the host's.
 * 4. Sizes and offsets, in bigint arithmetic: `host_funcs_size` ≤ 1 MiB (`HostFunctionsTooLarge`);
 *    `memory_offset` a multiple of 4096, ≥ 1176 + `host_funcs_size`, ≤ `MAX_MEMORY_OFFSET`; `memory_size` a
 *    non-zero multiple of 4096, ≤ 1 GiB; the file at least `memory_offset + memory_size + 4096` bytes long
 *    (`Truncated`). Then, when `host.memoryMap` is given, the layout it describes (all `InvalidField`):
 *    `snapshot_size` = `memory_size`;
 *    `init_data_size` = `init_data_permissions` = 0; `code_size` ≥ 1; `heap_size` a multiple of 4096;
 *    `memory_size` = align4096(`IMAGE_BASE` + `code_size`) + `heap_size`; `pt_size` a multiple of 4096 in
 *    [`MIN_PT_SIZE`, `IMAGE_BASE` − `PAGE_TABLES_BASE`]; `scratch_size` a non-zero multiple of 4096 with
 *    `memory_size` + 4096 (stack guard) + `scratch_size` ≤ 1 GiB; `input_data_size` in
 *    [`MIN_INPUT_DATA_SIZE`, `MAX_IO_BUFFER_SIZE`], `output_data_size` in [`MIN_OUTPUT_DATA_SIZE`,
 *    `MAX_IO_BUFFER_SIZE`]; `stack_top_gva` 16-byte aligned, above the scratch base (`memory_size` + 4096)
 *    and leaving room for the input and output buffers before the scratch end; `entrypoint_addr` inside the
 *    image [`IMAGE_BASE`, `IMAGE_BASE` + `code_size`).
 * 5. `entrypoint_tag` is Call if and only if `has_sregs` is 1 (`InvalidField`).
 * 6. Special registers: each value fits its real width (`InvalidField`); all zeros when `has_sregs` is 0.
 * 7. `header_hash` (`HeaderHashMismatch`).
 * 8. The host-functions section (see `host_functions.ts`; `InvalidField` or `Truncated`).
 * 9. Version 2: the section table (see `sections.ts`) — its extent is checked before step 7 (it must end
 *    before `memory_offset`, which is the next page boundary, with zero padding), its contents after step 8;
 *    an unknown required section type is `UnsupportedFormatVersion`, a chain depth above `MAX_DELTA_CHAIN`
 *    is `ChainTooLong`. Then the file must hold the stored blob (`Truncated`): `memory_size` bytes, or a
 *    delta's pages.
 *
 * The blob itself is not read: map it, then call {@linkcode verifyBlobHash} for a checked load.
 *
 * @param bytes The file from offset 0: at least {@linkcode snapshotPrefixLength} bytes (more is fine).
 * @param fileLength The real length of the file (from `stat`), to check that the blob and guard are there.
 * @param host The running host's architecture, hypervisor and ABI version.
 * @returns The checked contents.
 * @throws {SnapshotFormatError} For every problem with the file (message "Cannot load snapshot: …").
 * @throws {RangeError} When `bytes` is shorter than needed while the file is not (a caller bug).
 *
 * @example
 * ```ts
 * import { Arch, Hypervisor, parseSnapshotHeader, SnapshotFormatError } from "./mod.ts";
 *
 * try {
 *   parseSnapshotHeader(new Uint8Array(8), 8, { arch: Arch.X86_64, hypervisor: Hypervisor.KVM, abiVersion: 1 });
 * } catch (error) {
 *   console.log(error instanceof SnapshotFormatError && error.kind); // BadMagic
 * }
 * ```
 */
export function parseSnapshotHeader(
  bytes: Uint8Array,
  fileLength: bigint | number,
  host: HostIdentity,
): ParsedSnapshot {
  const checked = checkPrefix(bytes, fileLength, { host, action: "load" });
  // Every field is now bounded (sizes by 1 GiB, tags by their ranges, abi_version by the host's), so the
  // conversion to number is exact.
  const header = {} as Record<keyof SnapshotHeader, number>;
  for (const [name, key] of HEADER_FIELDS) header[key] = Number(checked.raw[name]);
  return {
    formatVersion: checked.formatVersion,
    header: header as SnapshotHeader,
    sregs: checked.sregs,
    hostFunctions: checked.hostFunctions,
    headerHash: checked.headerHash,
    blobHash: checked.blobHash,
    binary: checked.sections.binary,
    base: checked.sections.base,
    workingSet: checked.sections.workingSet,
    skippedSections: checked.sections.skipped,
    storedSize: checked.storedSize,
  };
}

/**
 * Checks the memory blob against `blob_hash` (the step an unchecked load skips). Hashes in place: pass a view
 * of the mapped blob.
 *
 * @param blob The `memory_size` bytes of the blob.
 * @param expected The stored `blob_hash` ({@linkcode ParsedSnapshot.blobHash}).
 * @throws {SnapshotFormatError} `BlobHashMismatch` when they differ.
 *
 * @example
 * ```ts
 * import { blake3, verifyBlobHash } from "./mod.ts";
 *
 * const blob = new Uint8Array(4096);
 * verifyBlobHash(blob, blake3(blob)); // no error
 * ```
 */
export function verifyBlobHash(blob: Uint8Array, expected: Uint8Array): void {
  const actual = blake3(blob);
  let same = actual.byteLength === expected.byteLength;
  for (let i = 0; same && i < actual.byteLength; i++) same = actual[i] === expected[i];
  if (!same) {
    throw new SnapshotFormatError("BlobHashMismatch", {
      field: "blob_hash",
      found: toHex(expected),
      expected: `${toHex(actual)} (BLAKE3 of the ${blob.byteLength}-byte memory blob)`,
      hint: "the memory blob is corrupt",
    });
  }
}
