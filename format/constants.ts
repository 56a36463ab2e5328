/**
 * Byte offsets of the `.hls` format (versions 1 and 2), the limits a loader enforces, and the few facts of
 * snapvm's guest memory map (docs/ABI.md) that the loader needs to check a header's layout.
 *
 * Changing any value here changes either the file format (bump `HLS_FORMAT_VERSION`) or the meaning of the
 * memory blob (bump the ABI version); `tests/format_constants_test.ts` pins them all.
 *
 * @module
 */

// ---- Byte layout (docs/FORMAT.md) ---------------------------------------------------------------------------

/**
 * The magic `HLS\0` (bytes 48 4C 53 00) read as a little-endian u32.
 *
 * @example
 * ```ts
 * import { HLS_MAGIC } from "./constants.ts";
 *
 * console.log(HLS_MAGIC.toString(16)); // 534c48
 * ```
 */
export const HLS_MAGIC = 0x00534c48;

/**
 * Format version 1: preamble, header, special registers, hashes, host functions, blob. Still written for
 * every snapshot that needs no section (docs/FORMAT.md, "Versions"), so older readers keep loading them.
 *
 * @example
 * ```ts
 * import { HLS_FORMAT_VERSION_1 } from "./constants.ts";
 *
 * console.log(HLS_FORMAT_VERSION_1); // 1
 * ```
 */
export const HLS_FORMAT_VERSION_1 = 1;

/**
 * Format version 2: version 1 plus a list of typed sections after the host functions (binary, delta base,
 * working set), covered by `header_hash`. A version-1-only reader refuses it with `UnsupportedFormatVersion`.
 *
 * @example
 * ```ts
 * import { HLS_FORMAT_VERSION_2 } from "./constants.ts";
 *
 * console.log(HLS_FORMAT_VERSION_2); // 2
 * ```
 */
export const HLS_FORMAT_VERSION_2 = 2;

/**
 * The newest byte-layout version this module reads and writes (it reads every version from 1 up).
 *
 * @example
 * ```ts
 * import { HLS_FORMAT_VERSION } from "./constants.ts";
 *
 * console.log(HLS_FORMAT_VERSION); // 2
 * ```
 */
export const HLS_FORMAT_VERSION = HLS_FORMAT_VERSION_2;

/**
 * File offset of the 19 × u64 header (just after the 8-byte preamble).
 *
 * @example
 * ```ts
 * import { HEADER_OFFSET } from "./constants.ts";
 *
 * console.log(HEADER_OFFSET); // 8
 * ```
 */
export const HEADER_OFFSET = 8;

/**
 * Size of the header: 19 × u64.
 *
 * @example
 * ```ts
 * import { HEADER_SIZE } from "./constants.ts";
 *
 * console.log(HEADER_SIZE); // 152
 * ```
 */
export const HEADER_SIZE = 152;

/**
 * File offset of the special registers.
 *
 * @example
 * ```ts
 * import { SREGS_OFFSET } from "./constants.ts";
 *
 * console.log(SREGS_OFFSET); // 160
 * ```
 */
export const SREGS_OFFSET = 160;

/**
 * Size of the special registers in the file: 119 × u64.
 *
 * @example
 * ```ts
 * import { SREGS_SIZE } from "./constants.ts";
 *
 * console.log(SREGS_SIZE); // 952
 * ```
 */
export const SREGS_SIZE = 952;

/**
 * File offset of `header_hash`.
 *
 * @example
 * ```ts
 * import { HEADER_HASH_OFFSET } from "./constants.ts";
 *
 * console.log(HEADER_HASH_OFFSET); // 1112
 * ```
 */
export const HEADER_HASH_OFFSET = 1112;

/**
 * File offset of `blob_hash`.
 *
 * @example
 * ```ts
 * import { BLOB_HASH_OFFSET } from "./constants.ts";
 *
 * console.log(BLOB_HASH_OFFSET); // 1144
 * ```
 */
export const BLOB_HASH_OFFSET = 1144;

/**
 * Length of each BLAKE3-256 hash.
 *
 * @example
 * ```ts
 * import { HASH_SIZE } from "./constants.ts";
 *
 * console.log(HASH_SIZE); // 32
 * ```
 */
export const HASH_SIZE = 32;

/**
 * File offset of the host-functions section, which is also the size of the fixed part of the file
 * (preamble, header, special registers, hashes). A loader reads at least this many bytes first.
 *
 * @example
 * ```ts
 * import { HOST_FUNCS_OFFSET } from "./constants.ts";
 *
 * console.log(HOST_FUNCS_OFFSET); // 1176
 * ```
 */
export const HOST_FUNCS_OFFSET = 1176;

/**
 * `memory_offset` must be a multiple of this, so that the blob can be `mmap`ed straight from the file.
 *
 * @example
 * ```ts
 * import { FILE_PAGE_SIZE } from "./constants.ts";
 *
 * console.log(FILE_PAGE_SIZE); // 4096
 * ```
 */
export const FILE_PAGE_SIZE = 4096;

/**
 * Number of zero bytes the writer appends after the blob (backs the guard page on Windows).
 *
 * @example
 * ```ts
 * import { TRAILING_GUARD_SIZE } from "./constants.ts";
 *
 * console.log(TRAILING_GUARD_SIZE); // 4096
 * ```
 */
export const TRAILING_GUARD_SIZE = 4096;

// ---- Limits enforced on load (and on save) ------------------------------------------------------------------

/**
 * Largest memory blob the format allows (1 GiB); a layout (see `MemoryMap`) may allow less.
 *
 * @example
 * ```ts
 * import { MAX_MEMORY_SIZE } from "./constants.ts";
 *
 * console.log(MAX_MEMORY_SIZE); // 1073741824
 * ```
 */
export const MAX_MEMORY_SIZE = 1024 * 1024 * 1024;

/**
 * Largest host-functions section, in bytes (the spec's limit).
 *
 * @example
 * ```ts
 * import { MAX_HOST_FUNCS_SIZE } from "./constants.ts";
 *
 * console.log(MAX_HOST_FUNCS_SIZE); // 1048576
 * ```
 */
export const MAX_HOST_FUNCS_SIZE = 1024 * 1024;

/**
 * Most host functions in one snapshot.
 *
 * @example
 * ```ts
 * import { MAX_HOST_FUNCTIONS } from "./constants.ts";
 *
 * console.log(MAX_HOST_FUNCTIONS); // 4096
 * ```
 */
export const MAX_HOST_FUNCTIONS = 4096;

/**
 * Longest host-function name, in UTF-8 bytes.
 *
 * @example
 * ```ts
 * import { MAX_HOST_FUNCTION_NAME_BYTES } from "./constants.ts";
 *
 * console.log(MAX_HOST_FUNCTION_NAME_BYTES); // 256
 * ```
 */
export const MAX_HOST_FUNCTION_NAME_BYTES = 256;

/**
 * Most parameters of one host function.
 *
 * @example
 * ```ts
 * import { MAX_HOST_FUNCTION_PARAMS } from "./constants.ts";
 *
 * console.log(MAX_HOST_FUNCTION_PARAMS); // 64
 * ```
 */
export const MAX_HOST_FUNCTION_PARAMS = 64;

/**
 * Largest `memory_offset`: where the blob starts after the largest legal host-functions section. Anything
 * further would leave unhashed padding that no writer produces. In version 2 the host functions and the
 * sections share this budget.
 *
 * @example
 * ```ts
 * import { MAX_MEMORY_OFFSET } from "./constants.ts";
 *
 * console.log(MAX_MEMORY_OFFSET); // 1052672
 * ```
 */
export const MAX_MEMORY_OFFSET: number =
  Math.ceil((HOST_FUNCS_OFFSET + MAX_HOST_FUNCS_SIZE) / FILE_PAGE_SIZE) *
  FILE_PAGE_SIZE;

/**
 * Largest snapshot file a loader ever reads: the largest prefix (`MAX_MEMORY_OFFSET`), blob
 * (`MAX_MEMORY_SIZE`) and trailing guard; bytes after the guard are never needed. A file that cannot be
 * mapped (a FIFO, a device, a file inside a `deno compile` executable) and the bytes given to
 * `Snapshot.fromBytes` are copied into memory up to this size, and refused beyond it.
 *
 * @example
 * ```ts
 * import { MAX_SNAPSHOT_FILE_SIZE } from "./constants.ts";
 *
 * console.log(MAX_SNAPSHOT_FILE_SIZE); // 1074798592
 * ```
 */
export const MAX_SNAPSHOT_FILE_SIZE: number = MAX_MEMORY_OFFSET + MAX_MEMORY_SIZE + TRAILING_GUARD_SIZE;

/**
 * Largest input or output buffer.
 *
 * @example
 * ```ts
 * import { MAX_IO_BUFFER_SIZE } from "./constants.ts";
 *
 * console.log(MAX_IO_BUFFER_SIZE); // 268435456
 * ```
 */
export const MAX_IO_BUFFER_SIZE = 256 * 1024 * 1024;

/**
 * Smallest input buffer: it must hold the 72-byte boot record (docs/ABI.md, "Entry").
 *
 * @example
 * ```ts
 * import { MIN_INPUT_DATA_SIZE } from "./constants.ts";
 *
 * console.log(MIN_INPUT_DATA_SIZE); // 72
 * ```
 */
export const MIN_INPUT_DATA_SIZE = 72;

/**
 * Smallest output buffer: it must hold a successful init result (`u32 status`, `u64 dispatch_addr`).
 *
 * @example
 * ```ts
 * import { MIN_OUTPUT_DATA_SIZE } from "./constants.ts";
 *
 * console.log(MIN_OUTPUT_DATA_SIZE); // 12
 * ```
 */
export const MIN_OUTPUT_DATA_SIZE = 12;

// ---- snapvm guest memory map (docs/ABI.md), as far as the loader checks it ----------------------------------

/**
 * Guest page size; the persistent region ends on a page boundary.
 *
 * @example
 * ```ts
 * import { GUEST_PAGE_SIZE } from "./constants.ts";
 *
 * console.log(GUEST_PAGE_SIZE); // 4096
 * ```
 */
export const GUEST_PAGE_SIZE = 4096;

/**
 * Fewest page-table bytes: PML4, PDPT, PD and at least one page table.
 *
 * @example
 * ```ts
 * import { MIN_PT_SIZE } from "./constants.ts";
 *
 * console.log(MIN_PT_SIZE); // 16384
 * ```
 */
export const MIN_PT_SIZE = 4 * GUEST_PAGE_SIZE;

/**
 * The unmapped stack guard between the persistent region (the blob) and the scratch region.
 *
 * @example
 * ```ts
 * import { STACK_GUARD_SIZE } from "./constants.ts";
 *
 * console.log(STACK_GUARD_SIZE); // 4096
 * ```
 */
export const STACK_GUARD_SIZE = 4096;

/**
 * `stack_top_gva` must be a multiple of this (the x86-64 System V stack alignment).
 *
 * @example
 * ```ts
 * import { STACK_ALIGNMENT } from "./constants.ts";
 *
 * console.log(STACK_ALIGNMENT); // 16
 * ```
 */
export const STACK_ALIGNMENT = 16;

// ---- Version 2 sections (docs/FORMAT.md, "Sections") ---------------------------------------------------------

/**
 * Size of the section table's own header in version 2: `u32 section_count`, `u32 sections_size`.
 *
 * @example
 * ```ts
 * import { SECTION_TABLE_HEADER_SIZE } from "./constants.ts";
 *
 * console.log(SECTION_TABLE_HEADER_SIZE); // 8
 * ```
 */
export const SECTION_TABLE_HEADER_SIZE = 8;

/**
 * Size of each section's header: `u32 type`, `u32 length`.
 *
 * @example
 * ```ts
 * import { SECTION_HEADER_SIZE } from "./constants.ts";
 *
 * console.log(SECTION_HEADER_SIZE); // 8
 * ```
 */
export const SECTION_HEADER_SIZE = 8;

/**
 * Most sections in one file (each type at most once).
 *
 * @example
 * ```ts
 * import { MAX_SECTIONS } from "./constants.ts";
 *
 * console.log(MAX_SECTIONS); // 16
 * ```
 */
export const MAX_SECTIONS = 16;

/**
 * Largest `sections_size` (the sections after the table header), in bytes. The host functions and the
 * sections together must also end before `MAX_MEMORY_OFFSET`.
 *
 * @example
 * ```ts
 * import { MAX_SECTIONS_SIZE } from "./constants.ts";
 *
 * console.log(MAX_SECTIONS_SIZE); // 1048576
 * ```
 */
export const MAX_SECTIONS_SIZE = 1024 * 1024;

/**
 * Section types with this bit set are optional: a reader that does not know one skips it. A reader that does
 * not know a type without it refuses the file (`UnsupportedFormatVersion`).
 *
 * @example
 * ```ts
 * import { OPTIONAL_SECTION_BIT } from "./constants.ts";
 *
 * console.log(OPTIONAL_SECTION_BIT.toString(16)); // 80000000
 * ```
 */
export const OPTIONAL_SECTION_BIT = 0x8000_0000;

/**
 * Longest guest binary path in a BINARY section, in UTF-8 bytes (Linux's `PATH_MAX`).
 *
 * @example
 * ```ts
 * import { MAX_BINARY_PATH_BYTES } from "./constants.ts";
 *
 * console.log(MAX_BINARY_PATH_BYTES); // 4096
 * ```
 */
export const MAX_BINARY_PATH_BYTES = 4096;

/**
 * Longest base file name in a BASE section, in UTF-8 bytes (a file name, not a path: `NAME_MAX`).
 *
 * @example
 * ```ts
 * import { MAX_BASE_FILE_NAME_BYTES } from "./constants.ts";
 *
 * console.log(MAX_BASE_FILE_NAME_BYTES); // 255
 * ```
 */
export const MAX_BASE_FILE_NAME_BYTES = 255;

/**
 * Most page runs in a delta's BASE section. Each run is one extra mapping per sandbox start; writers
 * coalesce to far fewer (`DELTA_TARGET_RUNS` in the writer).
 *
 * @example
 * ```ts
 * import { MAX_DELTA_RUNS } from "./constants.ts";
 *
 * console.log(MAX_DELTA_RUNS); // 4096
 * ```
 */
export const MAX_DELTA_RUNS = 4096;

/**
 * Longest chain of deltas: a delta's `chain_depth` (1 for a delta on a complete file) is at most this.
 *
 * @example
 * ```ts
 * import { MAX_DELTA_CHAIN } from "./constants.ts";
 *
 * console.log(MAX_DELTA_CHAIN); // 8
 * ```
 */
export const MAX_DELTA_CHAIN = 8;

/**
 * Most page runs in a WORKING_SET section.
 *
 * @example
 * ```ts
 * import { MAX_WORKING_SET_RUNS } from "./constants.ts";
 *
 * console.log(MAX_WORKING_SET_RUNS); // 16384
 * ```
 */
export const MAX_WORKING_SET_RUNS = 16384;
