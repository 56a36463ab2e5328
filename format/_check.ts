/**
 * The loader's checks of an `.hls` prefix (everything before the memory blob), in the order of the loading
 * rules in docs/FORMAT.md. Internal: `hls.ts` and `inspect.ts` are the public faces.
 *
 * All arithmetic on file values is done in bigint, so no sum of u64 fields can overflow or round.
 *
 * @module
 */

import {
  FILE_PAGE_SIZE,
  HASH_SIZE,
  HEADER_HASH_OFFSET,
  HLS_FORMAT_VERSION,
  HLS_FORMAT_VERSION_1,
  HLS_MAGIC,
  HOST_FUNCS_OFFSET,
  MAX_HOST_FUNCS_SIZE,
  MAX_IO_BUFFER_SIZE,
  MAX_MEMORY_OFFSET,
  MAX_MEMORY_SIZE,
  MAX_SECTIONS,
  MAX_SECTIONS_SIZE,
  MIN_INPUT_DATA_SIZE,
  MIN_OUTPUT_DATA_SIZE,
  MIN_PT_SIZE,
  SECTION_TABLE_HEADER_SIZE,
  SREGS_OFFSET,
  SREGS_SIZE,
  STACK_ALIGNMENT,
  STACK_GUARD_SIZE,
  TRAILING_GUARD_SIZE,
} from "./constants.ts";
import { type SnapshotAction, SnapshotFormatError, type SnapshotFormatErrorKind } from "./errors.ts";
import { HEADER_FIELDS, type HeaderFieldName, type RawSnapshotHeader } from "./header.ts";
import { decodeHostFunctions, type HostFunction } from "./host_functions.ts";
import { decodeSections, NO_SECTIONS, pagesIn, type SnapshotSections } from "./sections.ts";
import { decodeSregs, type Sregs } from "./sregs.ts";
import { ARCH_NAMES, ENTRYPOINT_NAMES, type HostIdentity, HYPERVISOR_NAMES, type MemoryMap } from "./tags.ts";
import { blake3 } from "./blake3.ts";
import { hexAddress, toHex } from "./_hex.ts";
import { ByteReader } from "./_reader.ts";

/** How strictly to treat host compatibility. */
export interface CheckOptions {
  /** The host the snapshot must match. */
  host: HostIdentity;
  /** Only changes the error message prefix. */
  action: SnapshotAction;
  /**
   * Record arch/ABI/hypervisor mismatches instead of throwing them (for inspection). The snapvm layout
   * checks are then skipped for an incompatible file, since they describe this host's ABI.
   */
  collectIncompatibilities?: boolean;
}

/** What the checks read from a prefix that passed them. */
export interface CheckedPrefix {
  formatVersion: number;
  raw: RawSnapshotHeader;
  sregs: Sregs | null;
  hostFunctions: HostFunction[];
  headerHash: Uint8Array;
  blobHash: Uint8Array;
  /** Host-compatibility errors, when collected instead of thrown. */
  incompatibilities: SnapshotFormatError[];
  /** Whether the layout checks ran (they need the host's memory map and a compatible file). */
  layoutChecked: boolean;
  /** The version-2 sections (none for version 1). */
  sections: SnapshotSections;
  /** Bytes of blob data stored at `memory_offset`: `memory_size`, or a delta's pages × 4096. */
  storedSize: number;
}

const PAGE = BigInt(FILE_PAGE_SIZE);
const FIXED_PREFIX = BigInt(HOST_FUNCS_OFFSET);

function alignUp(value: bigint, alignment: bigint): bigint {
  return (value + alignment - 1n) / alignment * alignment;
}

/**
 * Converts a file length to bigint, refusing values that cannot be a length.
 *
 * @param fileLength The real file length, from `stat`.
 */
export function toFileLength(fileLength: bigint | number): bigint {
  if (typeof fileLength === "number") {
    if (!Number.isSafeInteger(fileLength) || fileLength < 0) {
      throw new RangeError(`Invalid file length ${fileLength}`);
    }
    return BigInt(fileLength);
  }
  if (fileLength < 0n) throw new RangeError(`Invalid file length ${fileLength}`);
  return fileLength;
}

/**
 * BLAKE3 of bytes [0, 1112) and [1144, end): the `header_hash` of a file whose hashed part ends at `end`
 * (`1176 + host_funcs_size` in version 1, the end of the section table in version 2).
 *
 * @param prefix At least `end` bytes from the start of the file.
 * @param end Where the hashed part ends.
 */
export function headerHashTo(prefix: Uint8Array, end: number): Uint8Array {
  // header_hash itself sits between the two ranges; one small copy is cheaper than a streaming hasher API.
  const message = new Uint8Array(end - HASH_SIZE);
  message.set(prefix.subarray(0, HEADER_HASH_OFFSET), 0);
  message.set(prefix.subarray(HEADER_HASH_OFFSET + HASH_SIZE, end), HEADER_HASH_OFFSET);
  return blake3(message);
}

/** Index of the first non-zero byte in `bytes[from, to)`, or -1 (a plain loop: `findIndex` costs ~10x). */
function firstNonZero(bytes: Uint8Array, from: number, to: number): number {
  // Four bytes at a time while aligned (the padding runs to a page boundary), then byte by byte. 32-bit
  // words, not 64-bit: each BigUint64Array element read is a bigint, which made scanning a page of padding
  // take several µs.
  let i = from;
  while (i < to && (bytes.byteOffset + i) % 4 !== 0) if (bytes[i++] !== 0) return i - 1;
  if (to - i >= 4) {
    const words = new Uint32Array(bytes.buffer, bytes.byteOffset + i, (to - i) >> 2);
    let k = 0;
    while (k < words.length && words[k] === 0) k++;
    i += k * 4;
  }
  for (; i < to; i++) if (bytes[i] !== 0) return i;
  return -1;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Checks the preamble and returns the number of bytes the full check needs: `1176 + host_funcs_size` for
 * version 1, `memory_offset` for version 2 (its section table ends before the blob).
 *
 * @param bytes The start of the file.
 * @param action Only changes the error message prefix.
 */
export function checkedPrefixLength(bytes: Uint8Array, action: SnapshotAction): number {
  const reader = new ByteReader(bytes, { action });
  const version = readPreamble(reader, action);
  if (bytes.byteLength < HOST_FUNCS_OFFSET) {
    throw new SnapshotFormatError("Truncated", {
      field: "fixed header",
      found: `${bytes.byteLength} bytes`,
      expected: `at least ${HOST_FUNCS_OFFSET} bytes (preamble, header, special registers and hashes)`,
      action,
    });
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const field = (name: HeaderFieldName) =>
    view.getBigUint64(8 + 8 * HEADER_FIELDS.findIndex(([n]) => n === name), true);
  const hostFuncsSize = field("host_funcs_size");
  checkHostFuncsSize(hostFuncsSize, action);
  if (version === HLS_FORMAT_VERSION_1) return HOST_FUNCS_OFFSET + Number(hostFuncsSize);
  const memoryOffset = field("memory_offset");
  checkMemoryOffset(memoryOffset, FIXED_PREFIX + hostFuncsSize + BigInt(SECTION_TABLE_HEADER_SIZE), action);
  return Number(memoryOffset);
}

/** `memory_offset` is page aligned, after `minimum` (the host functions or section table header) and bounded. */
function checkMemoryOffset(memoryOffset: bigint, minimum: bigint, action: SnapshotAction): void {
  const fail = (expected: string) => {
    throw new SnapshotFormatError("InvalidField", {
      field: "memory_offset",
      found: memoryOffset,
      expected,
      action,
    });
  };
  if (memoryOffset % PAGE !== 0n) fail(`a multiple of ${PAGE}`);
  if (memoryOffset < minimum) fail(`at least ${minimum} (the end of the host functions)`);
  if (memoryOffset > BigInt(MAX_MEMORY_OFFSET)) fail(`at most ${MAX_MEMORY_OFFSET}`);
}

function checkHostFuncsSize(hostFuncsSize: bigint, action: SnapshotAction): void {
  if (hostFuncsSize > BigInt(MAX_HOST_FUNCS_SIZE)) {
    throw new SnapshotFormatError("HostFunctionsTooLarge", {
      field: "host_funcs_size",
      found: hostFuncsSize,
      expected: `at most ${MAX_HOST_FUNCS_SIZE} bytes`,
      action,
    });
  }
}

function readPreamble(reader: ByteReader, action: SnapshotAction): number {
  const magic = reader.bytes(4, "magic");
  if (new DataView(magic.buffer, magic.byteOffset, 4).getUint32(0, true) !== HLS_MAGIC) {
    throw new SnapshotFormatError("BadMagic", {
      field: "magic",
      found: `bytes ${toHex(magic).replace(/(..)(?!$)/g, "$1 ")}`,
      expected: `48 4c 53 00 ("HLS\\0")`,
      hint: "this is not a snapvm snapshot file",
      action,
    });
  }
  const version = reader.u32("format_version");
  if (version < HLS_FORMAT_VERSION_1 || version > HLS_FORMAT_VERSION) {
    throw new SnapshotFormatError("UnsupportedFormatVersion", {
      field: "format_version",
      found: version,
      expected: `${HLS_FORMAT_VERSION_1} to ${HLS_FORMAT_VERSION}`,
      hint: `this snapvm reads format versions ${HLS_FORMAT_VERSION_1} to ${HLS_FORMAT_VERSION}; a file of ` +
        `version ${version} may be convertible by a snapvm release that reads it`,
      action,
    });
  }
  return version;
}

/**
 * Runs loading rule 1 over a prefix: preamble → header tags → host compatibility → sizes and offsets →
 * entrypoint_tag/has_sregs → sregs ranges → header_hash → host-functions section.
 *
 * @param bytes The file from offset 0, at least `1176 + host_funcs_size` bytes (more is fine).
 * @param fileLength The real length of the file.
 * @param options Host and strictness.
 */
export function checkPrefix(
  bytes: Uint8Array,
  fileLength: bigint | number,
  options: CheckOptions,
): CheckedPrefix {
  const { host, action } = options;
  const length = toFileLength(fileLength);
  if (BigInt(bytes.byteLength) > length) {
    throw new RangeError(`Got ${bytes.byteLength} bytes of a file said to be ${length} bytes long`);
  }
  const fail = (
    kind: SnapshotFormatErrorKind,
    field: string,
    found: string | number | bigint,
    expected: string,
    hint?: string,
  ): never => {
    throw new SnapshotFormatError(kind, { field, found, expected, hint, action });
  };

  // ---- Preamble ----
  const reader = new ByteReader(bytes, { action });
  const formatVersion = readPreamble(reader, action);
  if (length < FIXED_PREFIX) {
    fail(
      "Truncated",
      "file length",
      `${length} bytes`,
      `at least ${HOST_FUNCS_OFFSET} bytes (preamble, header, special registers and hashes)`,
    );
  }
  if (bytes.byteLength < HOST_FUNCS_OFFSET) {
    throw new RangeError(`Need the first ${HOST_FUNCS_OFFSET} bytes of the file, got ${bytes.byteLength}`);
  }

  // ---- Header tags ----
  const raw = {} as RawSnapshotHeader;
  for (const [name] of HEADER_FIELDS) raw[name] = reader.u64(name);
  const headerHash = bytes.slice(HEADER_HASH_OFFSET, HEADER_HASH_OFFSET + HASH_SIZE);
  const blobHash = bytes.slice(HEADER_HASH_OFFSET + HASH_SIZE, HOST_FUNCS_OFFSET);

  if (!(raw.arch >= 1n && raw.arch <= 3n)) {
    fail("InvalidField", "arch", raw.arch, "1 (x86_64), 2 (aarch64) or 3 (i686)");
  }
  if (raw.entrypoint_tag > 1n) {
    fail("InvalidField", "entrypoint_tag", raw.entrypoint_tag, "0 (Initialise) or 1 (Call)");
  }
  if (raw.has_sregs > 1n) fail("InvalidField", "has_sregs", raw.has_sregs, "0 or 1");
  if (!(raw.hypervisor >= 1n && raw.hypervisor <= 3n)) {
    fail("InvalidField", "hypervisor", raw.hypervisor, "1 (KVM), 2 (MSHV) or 3 (WHP)");
  }
  if (raw.init_data_permissions > 7n) {
    fail(
      "InvalidField",
      "init_data_permissions",
      raw.init_data_permissions,
      "bits READ 1, WRITE 2, EXECUTE 4 only",
    );
  }

  // ---- Host compatibility ----
  const incompatibilities = hostIncompatibilities(raw, host, action);
  if (incompatibilities.length > 0 && !options.collectIncompatibilities) throw incompatibilities[0];

  // ---- Sizes and offsets: the file's own structure ----
  checkHostFuncsSize(raw.host_funcs_size, action);
  const v1 = formatVersion === HLS_FORMAT_VERSION_1;
  const hostFuncsEnd = FIXED_PREFIX + raw.host_funcs_size;
  checkMemoryOffset(raw.memory_offset, v1 ? hostFuncsEnd : hostFuncsEnd + TABLE_HEADER, action);
  if (raw.memory_size === 0n || raw.memory_size % PAGE !== 0n) {
    fail("InvalidField", "memory_size", raw.memory_size, `a non-zero multiple of ${PAGE}`);
  }
  const maxMemory = host.memoryMap?.maxGuestMemory ?? MAX_MEMORY_SIZE;
  if (raw.memory_size > BigInt(maxMemory)) {
    fail("InvalidField", "memory_size", raw.memory_size, `at most ${maxMemory}`);
  }
  // A delta stores fewer bytes than memory_size: its length is checked again once its runs are known.
  checkFileLength(length, raw.memory_offset, v1 ? raw.memory_size : 0n, v1 ? "memory_size" : "", fail);
  const prefixEnd = v1 ? hostFuncsEnd : raw.memory_offset;
  if (BigInt(bytes.byteLength) < prefixEnd) {
    throw new RangeError(
      `Need the first ${prefixEnd} bytes of the file (see snapshotPrefixLength), got ${bytes.byteLength}`,
    );
  }

  // ---- Version 2: the section table's extent, before anything is hashed or decoded ----
  let hashedEnd = Number(hostFuncsEnd);
  if (!v1) {
    const at = Number(hostFuncsEnd);
    const table = new DataView(bytes.buffer, bytes.byteOffset + at, SECTION_TABLE_HEADER_SIZE);
    const sectionCount = table.getUint32(0, true);
    if (sectionCount < 1 || sectionCount > MAX_SECTIONS) {
      fail(
        "InvalidField",
        "sections.count",
        sectionCount,
        `1..${MAX_SECTIONS} (a file without sections is written as version 1)`,
      );
    }
    const sectionsSize = BigInt(table.getUint32(4, true));
    if (sectionsSize > BigInt(MAX_SECTIONS_SIZE)) {
      fail("InvalidField", "sections_size", sectionsSize, `at most ${MAX_SECTIONS_SIZE}`);
    }
    const tableEnd = hostFuncsEnd + TABLE_HEADER + sectionsSize;
    if (tableEnd > raw.memory_offset) {
      fail(
        "InvalidField",
        "sections_size",
        sectionsSize,
        `at most ${raw.memory_offset - hostFuncsEnd - TABLE_HEADER} (the section table ends before ` +
          `memory_offset ${raw.memory_offset})`,
      );
    }
    // No unhashed slack: the blob starts at the first page boundary after the table, and the padding is 0.
    if (raw.memory_offset !== alignUp(tableEnd, PAGE)) {
      fail(
        "InvalidField",
        "memory_offset",
        raw.memory_offset,
        `${alignUp(tableEnd, PAGE)} (the end of the section table, ${tableEnd}, rounded up to a page)`,
      );
    }
    hashedEnd = Number(tableEnd);
    const nonZero = firstNonZero(bytes, hashedEnd, Number(raw.memory_offset));
    if (nonZero !== -1) {
      fail(
        "InvalidField",
        "padding",
        `a non-zero byte at file offset ${nonZero}`,
        "zeros from the end of the section table to memory_offset",
      );
    }
  }

  // ---- Sizes and offsets: the host ABI's memory layout, when the caller names it ----
  if (incompatibilities.length === 0 && host.memoryMap !== undefined) checkLayout(raw, fail, host.memoryMap);

  // ---- Entry point and special registers agree ----
  const isCall = raw.entrypoint_tag === 1n;
  if (isCall !== (raw.has_sregs === 1n)) {
    fail(
      "InvalidField",
      "has_sregs",
      raw.has_sregs,
      `${isCall ? 1 : 0} because entrypoint_tag is ${nameOf(ENTRYPOINT_NAMES, raw.entrypoint_tag)}`,
      "special registers are saved exactly for Call snapshots",
    );
  }

  // ---- Special registers ----
  const sregsBytes = bytes.subarray(SREGS_OFFSET, SREGS_OFFSET + SREGS_SIZE);
  let sregs: Sregs | null = null;
  if (raw.has_sregs === 1n) {
    sregs = decodeSregs(sregsBytes, action);
  } else {
    const nonZero = firstNonZero(bytes, SREGS_OFFSET, SREGS_OFFSET + SREGS_SIZE);
    if (nonZero !== -1) {
      fail(
        "InvalidField",
        "sregs",
        `a non-zero byte at file offset ${nonZero}`,
        "all zeros when has_sregs is 0",
      );
    }
  }

  // ---- header_hash ----
  const hostFuncsSize = Number(raw.host_funcs_size);
  const computed = headerHashTo(bytes, hashedEnd);
  if (!equalBytes(computed, headerHash)) {
    const parts = v1 ? "host functions" : "host functions and sections";
    fail(
      "HeaderHashMismatch",
      "header_hash",
      toHex(headerHash),
      `${toHex(computed)} (BLAKE3 of preamble, header, special registers, blob_hash and ${parts})`,
      `the file's header, special registers, blob_hash, ${parts} are corrupt`,
    );
  }

  // ---- Host functions ----
  const hostFunctions = decodeHostFunctions(
    bytes.subarray(HOST_FUNCS_OFFSET, HOST_FUNCS_OFFSET + hostFuncsSize),
    {
      action,
    },
  );

  // ---- Version 2: the sections, and the length of a delta's stored pages ----
  let sections = NO_SECTIONS;
  let storedSize = raw.memory_size;
  if (!v1) {
    sections = decodeSections(bytes.subarray(Number(hostFuncsEnd), hashedEnd), {
      memorySize: Number(raw.memory_size),
      fileOffset: Number(hostFuncsEnd),
      action,
    });
    storedSize = sections.base === null ? raw.memory_size : BigInt(pagesIn(sections.base.runs)) * PAGE;
    checkFileLength(
      length,
      raw.memory_offset,
      storedSize,
      sections.base === null ? "memory_size" : "the delta's stored pages",
      fail,
    );
  }

  const layoutChecked = incompatibilities.length === 0 && host.memoryMap !== undefined;
  return {
    formatVersion,
    raw,
    sregs,
    hostFunctions,
    headerHash,
    blobHash,
    incompatibilities,
    layoutChecked,
    sections,
    storedSize: Number(storedSize),
  };
}

const TABLE_HEADER = BigInt(SECTION_TABLE_HEADER_SIZE);

/** The file holds `stored` bytes of blob at `memory_offset` and the trailing guard. */
function checkFileLength(
  length: bigint,
  memoryOffset: bigint,
  stored: bigint,
  what: string,
  fail: (kind: SnapshotFormatErrorKind, field: string, found: string, expected: string) => never,
): void {
  const needed = memoryOffset + stored + BigInt(TRAILING_GUARD_SIZE);
  if (length < needed) {
    fail(
      "Truncated",
      "file length",
      `${length} bytes`,
      `at least ${needed} bytes (memory_offset ${memoryOffset} + ${what ? `${what} ${stored} + ` : ""}` +
        `${TRAILING_GUARD_SIZE}-byte trailing guard)`,
    );
  }
}

function nameOf(names: Readonly<Record<number, string>>, value: bigint): string {
  const name = value <= 255n ? names[Number(value)] : undefined;
  return name === undefined ? `${value}` : `${value} (${name})`;
}

/**
 * The ways a header does not fit the host, in the order loading reports them: arch, ABI, hypervisor.
 *
 * @param raw The header's `arch`, `abi_version` and `hypervisor`.
 * @param host The running host.
 * @param action Only changes the message prefix.
 */
export function hostIncompatibilities(
  raw: Pick<RawSnapshotHeader, "arch" | "abi_version" | "hypervisor">,
  host: HostIdentity,
  action: SnapshotAction,
): SnapshotFormatError[] {
  const errors: SnapshotFormatError[] = [];
  if (raw.arch !== BigInt(host.arch)) {
    errors.push(
      new SnapshotFormatError("ArchMismatch", {
        field: "arch",
        found: nameOf(ARCH_NAMES, raw.arch),
        expected: `${nameOf(ARCH_NAMES, BigInt(host.arch))}, this host's architecture`,
        action,
      }),
    );
  }
  if (raw.abi_version !== BigInt(host.abiVersion)) {
    errors.push(
      new SnapshotFormatError("AbiMismatch", {
        field: "abi_version",
        found: raw.abi_version,
        expected: `${host.abiVersion}, the ABI version of this snapvm`,
        hint:
          "the memory blob was built for another host/guest ABI; regenerate the snapshot from the guest binary",
        action,
      }),
    );
  }
  if (raw.hypervisor !== BigInt(host.hypervisor)) {
    errors.push(
      new SnapshotFormatError("HypervisorMismatch", {
        field: "hypervisor",
        found: nameOf(HYPERVISOR_NAMES, raw.hypervisor),
        expected: `${nameOf(HYPERVISOR_NAMES, BigInt(host.hypervisor))}, this host's hypervisor`,
        hint:
          "special registers from another hypervisor cannot be restored; regenerate the snapshot on this host",
        action,
      }),
    );
  }
  return errors;
}

type Fail = (
  kind: SnapshotFormatErrorKind,
  field: string,
  found: string | number | bigint,
  expected: string,
) => never;

/**
 * The checks that only hold for snapvm's guest memory map: the blob is guest memory from address 0 to the end
 * of the heap; page tables at 0x5000; the image at 0x200000; the heap right after the image's last page; then
 * an unmapped guard page and the scratch region (stack, input buffer, output buffer).
 */
function checkLayout(raw: RawSnapshotHeader, fail: Fail, map: MemoryMap): void {
  const field = (name: HeaderFieldName) => raw[name];
  const within = (name: HeaderFieldName, min: bigint, max: bigint) => {
    if (field(name) < min || field(name) > max) {
      fail("InvalidField", name, field(name), `between ${min} and ${max}`);
    }
  };
  const pageMultiple = (name: HeaderFieldName) => {
    if (field(name) % PAGE !== 0n) fail("InvalidField", name, field(name), `a multiple of ${PAGE}`);
  };
  const maxMemory = BigInt(map.maxGuestMemory);
  const imageBase = BigInt(map.imageBase);

  if (raw.snapshot_size !== raw.memory_size) {
    fail("InvalidField", "snapshot_size", raw.snapshot_size, `${raw.memory_size}, equal to memory_size`);
  }
  // Fields snapvm's layout does not use are written as 0 and must read back as 0.
  if (raw.init_data_size !== 0n) {
    fail("InvalidField", "init_data_size", raw.init_data_size, "0 (snapvm has no init-data region)");
  }
  if (raw.init_data_permissions !== 0n) {
    fail(
      "InvalidField",
      "init_data_permissions",
      raw.init_data_permissions,
      "0 (snapvm has no init-data region)",
    );
  }

  // Image and heap: the blob ends exactly where the heap does.
  within("code_size", 1n, maxMemory);
  within("heap_size", 0n, maxMemory);
  pageMultiple("heap_size");
  const imageEnd = imageBase + raw.code_size;
  const persistentEnd = alignUp(imageEnd, PAGE) + raw.heap_size;
  if (raw.memory_size !== persistentEnd) {
    fail(
      "InvalidField",
      "memory_size",
      raw.memory_size,
      `${persistentEnd} (image end ${
        hexAddress(imageEnd)
      } rounded up to a page, plus heap_size ${raw.heap_size})`,
    );
  }

  // Page tables: from the map's base, never into the image.
  pageMultiple("pt_size");
  within("pt_size", BigInt(MIN_PT_SIZE), BigInt(map.pageTablesEnd) - BigInt(map.pageTablesBase));

  // Scratch region: after the blob and the stack guard, inside the guest memory limit.
  pageMultiple("scratch_size");
  const scratchBase = raw.memory_size + BigInt(STACK_GUARD_SIZE);
  within("scratch_size", PAGE, maxMemory);
  const scratchEnd = scratchBase + raw.scratch_size;
  if (scratchEnd > maxMemory) {
    fail(
      "InvalidField",
      "scratch_size",
      raw.scratch_size,
      `at most ${
        maxMemory - scratchBase < 0n ? 0n : maxMemory - scratchBase
      } (guest memory, blob + ${STACK_GUARD_SIZE}-byte ` +
        `stack guard + scratch, is at most ${map.maxGuestMemory} bytes)`,
    );
  }
  within("input_data_size", BigInt(MIN_INPUT_DATA_SIZE), BigInt(MAX_IO_BUFFER_SIZE));
  within("output_data_size", BigInt(MIN_OUTPUT_DATA_SIZE), BigInt(MAX_IO_BUFFER_SIZE));

  // Stack top: above the scratch base (a non-empty stack), with the input and output buffers after it.
  const stackTop = raw.stack_top_gva;
  if (stackTop % BigInt(STACK_ALIGNMENT) !== 0n) {
    fail("InvalidField", "stack_top_gva", hexAddress(stackTop), `a multiple of ${STACK_ALIGNMENT}`);
  }
  const highestStackTop = scratchEnd - raw.input_data_size - raw.output_data_size;
  if (stackTop <= scratchBase || stackTop > highestStackTop) {
    fail(
      "InvalidField",
      "stack_top_gva",
      hexAddress(stackTop),
      `above the scratch base ${hexAddress(scratchBase)} and at most ${
        hexAddress(highestStackTop)
      } (scratch end ` +
        `${hexAddress(scratchEnd)} less the input and output buffers)`,
    );
  }

  // Entry point: code of the guest image (its ELF entry, or the call dispatcher).
  if (raw.entrypoint_addr < imageBase || raw.entrypoint_addr >= imageEnd) {
    fail(
      "InvalidField",
      "entrypoint_addr",
      hexAddress(raw.entrypoint_addr),
      `an address inside the guest image [${hexAddress(imageBase)}, ${hexAddress(imageEnd)})`,
    );
  }
}
