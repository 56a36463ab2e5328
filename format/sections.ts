/**
 * The typed sections of a version-2 `.hls` file (docs/FORMAT.md, "Sections"): the guest binary a snapshot
 * came from, the base a delta file applies to, and the working set a cold start reads first.
 *
 * ## Encoding (all integers little-endian, no alignment)
 *
 * The section table starts right after the host functions (file offset `1176 + host_funcs_size`):
 *
 * ```
 * u32 section_count              1 .. MAX_SECTIONS (16)
 * u32 sections_size              bytes that follow, ≤ MAX_SECTIONS_SIZE; the table ends before memory_offset
 * section_count × {
 *   u32 type                     ascending, each at most once; bit 31 set = optional (skipped if unknown)
 *   u32 length                   bytes of payload
 *   length bytes payload
 * }
 * ```
 *
 * Payloads (each must be exactly `length` bytes):
 *
 * ```
 * BINARY (1)       u64 entry, u32 path_len (1..4096), path (UTF-8, no NUL)
 * BASE (2)         blake3 base_blob_hash[32], u32 chain_depth (1..MAX_DELTA_CHAIN),
 *                  u32 file_name_len (1..255), file_name (UTF-8; no '/', '\', NUL; not "." or ".."),
 *                  u32 run_count (0..MAX_DELTA_RUNS), run_count × run
 * WORKING_SET (3)  u32 run_count (1..MAX_WORKING_SET_RUNS), run_count × run
 * run              u32 first_page, u32 page_count (≥ 1); runs ascending, separated by at least one page,
 *                  inside the blob (first_page + page_count ≤ memory_size / 4096)
 * ```
 *
 * @module
 */

import {
  FILE_PAGE_SIZE,
  HASH_SIZE,
  MAX_BASE_FILE_NAME_BYTES,
  MAX_BINARY_PATH_BYTES,
  MAX_DELTA_CHAIN,
  MAX_DELTA_RUNS,
  MAX_SECTIONS,
  MAX_SECTIONS_SIZE,
  MAX_WORKING_SET_RUNS,
  OPTIONAL_SECTION_BIT,
  SECTION_HEADER_SIZE,
  SECTION_TABLE_HEADER_SIZE,
} from "./constants.ts";
import { type SnapshotAction, SnapshotFormatError } from "./errors.ts";
import { ByteReader } from "./_reader.ts";
import { ByteWriter } from "./_writer.ts";
import { hexAddress, toHex } from "./_hex.ts";

/**
 * Section types of version 2. Types with `OPTIONAL_SECTION_BIT` set may be skipped by readers that do not
 * know them; these three are required to be understood.
 *
 * @example
 * ```ts
 * import { SectionType } from "./sections.ts";
 *
 * console.log(SectionType.Base); // 2
 * ```
 */
export const SectionType = { Binary: 1, Base: 2, WorkingSet: 3 } as const;
/**
 * A value of {@linkcode SectionType}.
 *
 * @example
 * ```ts
 * import { SectionType } from "./sections.ts";
 *
 * const type: SectionType = SectionType.WorkingSet;
 * console.log(type); // 3
 * ```
 */
export type SectionType = typeof SectionType[keyof typeof SectionType];

/**
 * Display names of the {@linkcode SectionType} values.
 *
 * @example
 * ```ts
 * import { SECTION_NAMES } from "./sections.ts";
 *
 * console.log(SECTION_NAMES[1]); // BINARY
 * ```
 */
export const SECTION_NAMES: Readonly<Record<SectionType, string>> = {
  1: "BINARY",
  2: "BASE",
  3: "WORKING_SET",
};

/**
 * A run of consecutive guest pages: pages `first` .. `first + count − 1` (page = 4096 bytes of the blob).
 *
 * @example
 * ```ts
 * import type { PageRun } from "./sections.ts";
 *
 * const run: PageRun = { first: 512, count: 16 }; // guest-physical 0x200000 .. 0x210000
 * console.log(run.first * 4096);
 * ```
 */
export interface PageRun {
  /** Index of the first page. */
  readonly first: number;
  /** Number of pages, at least 1. */
  readonly count: number;
}

/**
 * The guest binary a snapshot was made from (BINARY section): for core dumps and debuggers, never needed to
 * run the snapshot.
 *
 * @example
 * ```ts
 * import type { BinaryInfo } from "./sections.ts";
 *
 * const binary: BinaryInfo = { path: "/srv/guests/echo", entry: 0x201000n };
 * console.log(binary.path);
 * ```
 */
export interface BinaryInfo {
  /** The path the sandbox was created from, as given (UTF-8, 1..4096 bytes, no NUL). */
  readonly path: string;
  /** The ELF entry point (`e_entry`). */
  readonly entry: bigint;
}

/**
 * What a delta file records about its base (BASE section). The file's blob holds only the pages of `runs`,
 * packed in order; every other page comes from the base, the snapshot whose `blob_hash` is `blobHash`.
 *
 * @example
 * ```ts
 * import type { DeltaBase } from "./sections.ts";
 *
 * function storedPages(base: DeltaBase): number {
 *   return base.runs.reduce((sum, run) => sum + run.count, 0);
 * }
 * console.log(typeof storedPages);
 * ```
 */
export interface DeltaBase {
  /** The base snapshot's `blob_hash` (BLAKE3 of its whole memory). */
  readonly blobHash: Uint8Array;
  /** 1 for a delta on a complete file, n + 1 for a delta on a delta of depth n. */
  readonly chainDepth: number;
  /** The base file's name (no directory), where loaders look first: next to the delta. */
  readonly fileName: string;
  /** The pages this delta stores, ascending and separated. */
  readonly runs: readonly PageRun[];
}

/**
 * A delta's reference to its base, as handed to a `resolveBase` callback (loading a delta, or pushing or
 * exporting one): the callback returns where the base file is, and whatever it returns is checked against
 * `blobHash`.
 *
 * @example
 * ```ts
 * import type { SnapshotBaseReference } from "./sections.ts";
 *
 * const resolveBase = (base: SnapshotBaseReference) => `/srv/snapshots/${base.blobHash}.hls`;
 * console.log(typeof resolveBase);
 * ```
 */
export interface SnapshotBaseReference {
  /** The base's `blob_hash`, 64 hex digits: the file found must have exactly this one. */
  blobHash: string;
  /** The base's file name as the delta records it. */
  fileName: string;
  /** The base's own chain depth plus one (1: the base is a complete file). */
  chainDepth: number;
  /** Path of the delta that names this base. */
  delta: string;
}

/**
 * A section a reader skipped because it does not know its (optional) type.
 *
 * @example
 * ```ts
 * import type { SkippedSection } from "./sections.ts";
 *
 * const skipped: SkippedSection = { type: 0x80000010, length: 12 };
 * console.log(skipped.length);
 * ```
 */
export interface SkippedSection {
  /** The section type (bit 31 set). */
  readonly type: number;
  /** Its payload length. */
  readonly length: number;
}

/**
 * The sections of a file; `null` for each one it does not have (a version-1 file has none).
 *
 * @example
 * ```ts
 * import type { SnapshotSections } from "./sections.ts";
 *
 * function isDelta(sections: SnapshotSections): boolean {
 *   return sections.base !== null;
 * }
 * console.log(typeof isDelta);
 * ```
 */
export interface SnapshotSections {
  /** BINARY. */
  readonly binary: BinaryInfo | null;
  /** BASE: present exactly for delta files. */
  readonly base: DeltaBase | null;
  /** WORKING_SET: the pages a cold start touches, read ahead in one batch. */
  readonly workingSet: readonly PageRun[] | null;
  /** Optional sections of types this reader does not know. */
  readonly skipped: readonly SkippedSection[];
}

/**
 * The sections a writer may add (each optional).
 *
 * @example
 * ```ts
 * import type { SectionsInput } from "./sections.ts";
 *
 * const input: SectionsInput = { workingSet: [{ first: 1, count: 4 }] };
 * console.log(input.workingSet?.length);
 * ```
 */
export interface SectionsInput {
  /** BINARY. */
  binary?: BinaryInfo;
  /** BASE (makes the file a delta). */
  base?: DeltaBase;
  /** WORKING_SET; an empty list writes no section. */
  workingSet?: readonly PageRun[];
}

/**
 * The sections of a version-1 file: none.
 *
 * @example
 * ```ts
 * import { NO_SECTIONS } from "./sections.ts";
 *
 * console.log(NO_SECTIONS.base); // null
 * ```
 */
export const NO_SECTIONS: SnapshotSections = Object.freeze({
  binary: null,
  base: null,
  workingSet: null,
  skipped: Object.freeze([]) as readonly SkippedSection[],
});

/**
 * Total number of pages in a list of runs.
 *
 * @param runs The runs.
 * @returns The sum of their counts.
 *
 * @example
 * ```ts
 * import { pagesIn } from "./sections.ts";
 *
 * console.log(pagesIn([{ first: 0, count: 2 }, { first: 5, count: 3 }])); // 5
 * ```
 */
export function pagesIn(runs: readonly PageRun[]): number {
  let pages = 0;
  for (const run of runs) pages += run.count;
  return pages;
}

/**
 * Whether a file with these sections needs format version 2.
 *
 * @param input The sections a writer was asked to add.
 * @returns False when none is present, so the writer keeps writing version 1.
 *
 * @example
 * ```ts
 * import { needsSections } from "./sections.ts";
 *
 * console.log(needsSections({}), needsSections({ workingSet: [{ first: 0, count: 1 }] })); // false true
 * ```
 */
export function needsSections(input: SectionsInput): boolean {
  return input.binary !== undefined || input.base !== undefined ||
    (input.workingSet !== undefined && input.workingSet.length > 0);
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

type Fail = (field: string, found: string | number | bigint, expected: string) => never;

function failer(action: SnapshotAction): Fail {
  return (field, found, expected) => {
    throw new SnapshotFormatError("InvalidField", { field, found, expected, action });
  };
}

function checkRuns(
  runs: readonly PageRun[],
  field: string,
  maxRuns: number,
  minRuns: number,
  memoryPages: number,
  fail: Fail,
): void {
  if (runs.length < minRuns || runs.length > maxRuns) {
    fail(`${field}.run_count`, runs.length, `${minRuns}..${maxRuns}`);
  }
  let next = 0; // the lowest first_page the next run may have
  runs.forEach((run, i) => {
    const at = `${field}.runs[${i}]`;
    if (!Number.isInteger(run.first) || run.first < next || run.first > 0xffff_ffff) {
      fail(
        `${at}.first_page`,
        run.first,
        i === 0 ? "a page index" : `at least ${next} (ascending, at least one page after the previous run)`,
      );
    }
    if (!Number.isInteger(run.count) || run.count < 1 || run.count > 0xffff_ffff) {
      fail(`${at}.page_count`, run.count, "at least 1");
    }
    // u32 + u32 is exact in a double: no overflow to guard against.
    const end = run.first + run.count;
    if (end > memoryPages) {
      fail(
        `${at}.page_count`,
        run.count,
        `at most ${Math.max(0, memoryPages - run.first)} (the run ends at page ${end}, the blob has ` +
          `${memoryPages} pages)`,
      );
    }
    next = end + 1;
  });
}

function checkText(
  bytes: Uint8Array,
  field: string,
  max: number,
  forbidden: RegExp,
  what: string,
  fail: Fail,
): string {
  if (bytes.byteLength < 1 || bytes.byteLength > max) {
    fail(field, `${bytes.byteLength} bytes long`, `1..${max} bytes of UTF-8`);
  }
  let text: string;
  try {
    text = utf8Decoder.decode(bytes);
  } catch {
    return fail(field, `bytes ${toHex(bytes.subarray(0, 64))}`, "well-formed UTF-8");
  }
  if (forbidden.test(text)) fail(field, JSON.stringify(text), what);
  return text;
}

const PATH_FORBIDDEN = /\0/;
const PATH_RULE = "a path without NUL characters";
const NAME_FORBIDDEN = /[\0/\\]|^\.\.?$/;
const NAME_RULE = 'a file name without "/", "\\" or NUL, not "." or ".."';

function encodeRuns(writer: ByteWriter, runs: readonly PageRun[]): void {
  writer.u32(runs.length);
  for (const run of runs) {
    writer.u32(run.first);
    writer.u32(run.count);
  }
}

/**
 * Encodes the section table (table header and sections), in ascending type order. Returns an empty array
 * when there is no section (a version-1 file).
 *
 * @param input The sections.
 * @param memorySize The blob's `memory_size`, which the runs must fit.
 * @returns The bytes to store after the host functions.
 * @throws {SnapshotFormatError} With a "Cannot save snapshot" message for a value a loader would refuse
 *   (`InvalidField`; `ChainTooLong` for a chain depth above `MAX_DELTA_CHAIN`).
 *
 * @example
 * ```ts
 * import { decodeSections, encodeSections } from "./sections.ts";
 *
 * const bytes = encodeSections({ binary: { path: "/bin/guest", entry: 0x201000n } }, 0x300000);
 * console.log(decodeSections(bytes, { memorySize: 0x300000 }).binary?.path); // /bin/guest
 * ```
 */
export function encodeSections(input: SectionsInput, memorySize: number): Uint8Array {
  if (!needsSections(input)) return new Uint8Array(0);
  const fail = failer("save");
  const memoryPages = Math.floor(memorySize / FILE_PAGE_SIZE);
  const payloads: [number, Uint8Array][] = [];

  if (input.binary !== undefined) {
    const { path, entry } = input.binary;
    if (typeof path !== "string" || !path.isWellFormed()) {
      fail("binary.path", JSON.stringify(path), "a well-formed Unicode string");
    }
    const pathBytes = utf8Encoder.encode(path);
    checkText(pathBytes, "binary.path", MAX_BINARY_PATH_BYTES, PATH_FORBIDDEN, PATH_RULE, fail);
    if (typeof entry !== "bigint" || entry < 0n || entry > 0xffff_ffff_ffff_ffffn) {
      fail("binary.entry", String(entry), "a u64");
    }
    const bytes = new Uint8Array(12 + pathBytes.byteLength);
    const writer = new ByteWriter(bytes);
    writer.u64(entry);
    writer.u32(pathBytes.byteLength);
    writer.bytes(pathBytes);
    payloads.push([SectionType.Binary, bytes]);
  }

  if (input.base !== undefined) {
    const { blobHash, chainDepth, fileName, runs } = input.base;
    if (!(blobHash instanceof Uint8Array) || blobHash.byteLength !== HASH_SIZE) {
      fail("base.blob_hash", `${blobHash?.byteLength} bytes`, `${HASH_SIZE} bytes`);
    }
    checkChainDepth(chainDepth, "save");
    if (typeof fileName !== "string" || !fileName.isWellFormed()) {
      fail("base.file_name", JSON.stringify(fileName), "a well-formed Unicode string");
    }
    const name = utf8Encoder.encode(fileName);
    checkText(name, "base.file_name", MAX_BASE_FILE_NAME_BYTES, NAME_FORBIDDEN, NAME_RULE, fail);
    checkRuns(runs, "base", MAX_DELTA_RUNS, 0, memoryPages, fail);
    const bytes = new Uint8Array(HASH_SIZE + 4 + 4 + name.byteLength + 4 + 8 * runs.length);
    const writer = new ByteWriter(bytes);
    writer.bytes(blobHash);
    writer.u32(chainDepth);
    writer.u32(name.byteLength);
    writer.bytes(name);
    encodeRuns(writer, runs);
    payloads.push([SectionType.Base, bytes]);
  }

  if (input.workingSet !== undefined && input.workingSet.length > 0) {
    const runs = input.workingSet;
    checkRuns(runs, "working_set", MAX_WORKING_SET_RUNS, 1, memoryPages, fail);
    const bytes = new Uint8Array(4 + 8 * runs.length);
    encodeRuns(new ByteWriter(bytes), runs);
    payloads.push([SectionType.WorkingSet, bytes]);
  }

  let size = 0;
  for (const [, payload] of payloads) size += SECTION_HEADER_SIZE + payload.byteLength;
  if (size > MAX_SECTIONS_SIZE) fail("sections_size", size, `at most ${MAX_SECTIONS_SIZE}`);
  const bytes = new Uint8Array(SECTION_TABLE_HEADER_SIZE + size);
  const writer = new ByteWriter(bytes);
  writer.u32(payloads.length);
  writer.u32(size);
  for (const [type, payload] of payloads) {
    writer.u32(type);
    writer.u32(payload.byteLength);
    writer.bytes(payload);
  }
  return bytes;
}

function checkChainDepth(depth: number, action: SnapshotAction): void {
  if (!Number.isInteger(depth) || depth < 1) {
    failer(action)("base.chain_depth", depth, `1..${MAX_DELTA_CHAIN}`);
  }
  if (depth > MAX_DELTA_CHAIN) {
    throw new SnapshotFormatError("ChainTooLong", {
      field: "base.chain_depth",
      found: depth,
      expected: `at most ${MAX_DELTA_CHAIN} (MAX_DELTA_CHAIN)`,
      hint: "write a complete snapshot (toFile without base) and start a new chain from it",
      action,
    });
  }
}

/**
 * Options of {@linkcode decodeSections}.
 *
 * @example
 * ```ts
 * import type { DecodeSectionsOptions } from "./sections.ts";
 *
 * const options: DecodeSectionsOptions = { memorySize: 0x300000, fileOffset: 1176 };
 * console.log(options.memorySize);
 * ```
 */
export interface DecodeSectionsOptions {
  /** The file's (validated) `memory_size`: runs must lie inside it. */
  memorySize: number;
  /** File offset of the section table, for error messages. Defaults to 1176. */
  fileOffset?: number;
  /** Only changes the error message prefix. Defaults to `"load"`. */
  action?: SnapshotAction;
}

function readRuns(
  reader: ByteReader,
  field: string,
  maxRuns: number,
  minRuns: number,
  memoryPages: number,
  fail: Fail,
): PageRun[] {
  const count = reader.u32(`${field}.run_count`);
  // Bounded before anything is allocated or read.
  if (count < minRuns || count > maxRuns) fail(`${field}.run_count`, count, `${minRuns}..${maxRuns}`);
  const runs: PageRun[] = [];
  for (let i = 0; i < count; i++) {
    runs.push({ first: reader.u32(`${field}.runs[${i}].first_page`), count: 0 });
    (runs[i] as { count: number }).count = reader.u32(`${field}.runs[${i}].page_count`);
  }
  checkRuns(runs, field, maxRuns, minRuns, memoryPages, fail);
  return runs;
}

/**
 * Decodes and checks a section table (table header and sections, exactly `8 + sections_size` bytes).
 *
 * @param bytes The table.
 * @param options The blob size the runs must fit, file offset and action for messages.
 * @returns The sections found.
 * @throws {SnapshotFormatError} `Truncated` when a section runs past the table; `InvalidField` for a bad
 *   count, size, order, duplicate, length, text or run; `ChainTooLong` for a chain depth above
 *   `MAX_DELTA_CHAIN`; `UnsupportedFormatVersion` for an unknown required section type.
 *
 * @example
 * ```ts
 * import { decodeSections, encodeSections } from "./sections.ts";
 *
 * const bytes = encodeSections({ workingSet: [{ first: 1, count: 2 }] }, 0x10000);
 * console.log(decodeSections(bytes, { memorySize: 0x10000 }).workingSet); // [ { first: 1, count: 2 } ]
 * ```
 */
export function decodeSections(bytes: Uint8Array, options: DecodeSectionsOptions): SnapshotSections {
  const action = options.action ?? "load";
  const fail = failer(action);
  const fileOffset = options.fileOffset ?? 1176;
  const memoryPages = Math.floor(options.memorySize / FILE_PAGE_SIZE);
  const table = new ByteReader(bytes, { fileOffset, action });
  const count = table.u32("sections.count");
  if (count < 1 || count > MAX_SECTIONS) {
    fail("sections.count", count, `1..${MAX_SECTIONS} (a file without sections is written as version 1)`);
  }
  const size = table.u32("sections_size");
  if (size > MAX_SECTIONS_SIZE) fail("sections_size", size, `at most ${MAX_SECTIONS_SIZE}`);
  if (size !== table.remaining) {
    fail("sections_size", size, `${table.remaining} (the bytes of the section table after its header)`);
  }

  let binary: BinaryInfo | null = null;
  let base: DeltaBase | null = null;
  let workingSet: PageRun[] | null = null;
  const skipped: SkippedSection[] = [];
  let previous = -1;
  for (let i = 0; i < count; i++) {
    const at = `sections[${i}]`;
    const type = table.u32(`${at}.type`);
    const length = table.u32(`${at}.length`);
    const sectionOffset = fileOffset + table.position;
    const payload = table.bytes(length, `${at} payload`);
    if (type <= previous) {
      fail(
        `${at}.type`,
        hexAddress(type),
        `above ${hexAddress(previous)} (types ascending, each at most once)`,
      );
    }
    previous = type;
    const reader = new ByteReader(payload, { fileOffset: sectionOffset, action });
    if (type === SectionType.Binary) {
      const entry = reader.u64("binary.entry");
      const pathLength = reader.u32("binary.path_len");
      if (pathLength < 1 || pathLength > MAX_BINARY_PATH_BYTES) {
        fail("binary.path_len", pathLength, `1..${MAX_BINARY_PATH_BYTES}`);
      }
      const path = checkText(
        reader.bytes(pathLength, "binary.path"),
        "binary.path",
        MAX_BINARY_PATH_BYTES,
        PATH_FORBIDDEN,
        PATH_RULE,
        fail,
      );
      binary = { path, entry };
    } else if (type === SectionType.Base) {
      const blobHash = reader.bytes(HASH_SIZE, "base.blob_hash").slice();
      const chainDepth = reader.u32("base.chain_depth");
      checkChainDepth(chainDepth, action);
      const nameLength = reader.u32("base.file_name_len");
      if (nameLength < 1 || nameLength > MAX_BASE_FILE_NAME_BYTES) {
        fail("base.file_name_len", nameLength, `1..${MAX_BASE_FILE_NAME_BYTES}`);
      }
      const fileName = checkText(
        reader.bytes(nameLength, "base.file_name"),
        "base.file_name",
        MAX_BASE_FILE_NAME_BYTES,
        NAME_FORBIDDEN,
        NAME_RULE,
        fail,
      );
      const runs = readRuns(reader, "base", MAX_DELTA_RUNS, 0, memoryPages, fail);
      base = { blobHash, chainDepth, fileName, runs };
    } else if (type === SectionType.WorkingSet) {
      workingSet = readRuns(reader, "working_set", MAX_WORKING_SET_RUNS, 1, memoryPages, fail);
    } else if ((type & OPTIONAL_SECTION_BIT) !== 0) {
      skipped.push({ type, length });
      continue;
    } else {
      throw new SnapshotFormatError("UnsupportedFormatVersion", {
        field: `${at}.type`,
        found: type,
        expected: "1 (BINARY), 2 (BASE), 3 (WORKING_SET) or an optional type (bit 31 set)",
        hint: "the file needs a snapvm release that knows this section",
        action,
      });
    }
    if (reader.remaining !== 0) {
      fail(`${at}.length`, length, `${length - reader.remaining} (the section's contents)`);
    }
  }
  if (table.remaining !== 0) {
    fail("sections_size", size, `${size - table.remaining} (the end of the last section)`);
  }
  return { binary, base, workingSet, skipped };
}
