/**
 * The 19-field header of an `.hls` file (file offset 8, 19 × u64) and the names of its fields.
 *
 * @module
 */

import type { Arch, EntrypointTag, Hypervisor } from "./tags.ts";

/**
 * A validated header. Every field is a number: the loader has bounded all of them (sizes and addresses by
 * the 1 GiB guest memory limit, `abi_version` by equality with the host's), so none loses precision.
 * Field meanings are in docs/FORMAT.md; how snapvm's layout constrains them is documented on
 * `parseSnapshotHeader`.
 *
 * @example
 * ```ts
 * import type { SnapshotHeader } from "./header.ts";
 *
 * function blobRange(header: SnapshotHeader): [number, number] {
 *   return [header.memoryOffset, header.memoryOffset + header.memorySize];
 * }
 * console.log(typeof blobRange);
 * ```
 */
export interface SnapshotHeader {
  /** `arch`: guest architecture. */
  arch: Arch;
  /** `abi_version`: version of the memory-blob contents and host/guest contract. */
  abiVersion: number;
  /** `stack_top_gva`: stack pointer used to enter the guest. */
  stackTopGva: number;
  /** `entrypoint_tag`: Initialise (0) or Call (1). */
  entrypointTag: EntrypointTag;
  /** `entrypoint_addr`: init entry point or call dispatcher. */
  entrypointAddr: number;
  /** `input_data_size`: host-to-guest buffer size. */
  inputDataSize: number;
  /** `output_data_size`: guest-to-host buffer size. */
  outputDataSize: number;
  /** `heap_size`: guest heap size. */
  heapSize: number;
  /** `code_size`: size of the loaded guest image, from `IMAGE_BASE` to the end of its last segment. */
  codeSize: number;
  /** `init_data_size`: always 0 in snapvm. */
  initDataSize: number;
  /** `init_data_permissions`: always 0 in snapvm. */
  initDataPermissions: number;
  /** `scratch_size`: size of the scratch region (stack, input, output) rebuilt on load. */
  scratchSize: number;
  /** `snapshot_size`: bytes of the blob mapped into the guest (equals `memorySize`). */
  snapshotSize: number;
  /** `pt_size`: bytes of page tables inside the blob, from `PAGE_TABLES_BASE`. */
  ptSize: number;
  /** `memory_size`: length of the memory blob. */
  memorySize: number;
  /** `memory_offset`: file offset of the memory blob. */
  memoryOffset: number;
  /** `has_sregs`: 1 when the special registers were saved. */
  hasSregs: 0 | 1;
  /** `hypervisor`: hypervisor that produced the special registers. */
  hypervisor: Hypervisor;
  /** `host_funcs_size`: length of the host-functions section. */
  hostFuncsSize: number;
}

/**
 * The header fields in file order: spec name (used in error messages) and {@linkcode SnapshotHeader} key.
 * Field `i` is the u64 at file offset `8 + 8 × i`.
 *
 * @example
 * ```ts
 * import { HEADER_FIELDS } from "./header.ts";
 *
 * const index = HEADER_FIELDS.findIndex(([name]) => name === "memory_offset");
 * console.log(8 + 8 * index); // 128
 * ```
 */
export const HEADER_FIELDS: readonly (readonly [HeaderFieldName, keyof SnapshotHeader])[] = [
  ["arch", "arch"],
  ["abi_version", "abiVersion"],
  ["stack_top_gva", "stackTopGva"],
  ["entrypoint_tag", "entrypointTag"],
  ["entrypoint_addr", "entrypointAddr"],
  ["input_data_size", "inputDataSize"],
  ["output_data_size", "outputDataSize"],
  ["heap_size", "heapSize"],
  ["code_size", "codeSize"],
  ["init_data_size", "initDataSize"],
  ["init_data_permissions", "initDataPermissions"],
  ["scratch_size", "scratchSize"],
  ["snapshot_size", "snapshotSize"],
  ["pt_size", "ptSize"],
  ["memory_size", "memorySize"],
  ["memory_offset", "memoryOffset"],
  ["has_sregs", "hasSregs"],
  ["hypervisor", "hypervisor"],
  ["host_funcs_size", "hostFuncsSize"],
];

/**
 * A header field's name as the spec writes it.
 *
 * @example
 * ```ts
 * import type { HeaderFieldName } from "./header.ts";
 *
 * const name: HeaderFieldName = "pt_size";
 * console.log(name);
 * ```
 */
export type HeaderFieldName =
  | "arch"
  | "abi_version"
  | "stack_top_gva"
  | "entrypoint_tag"
  | "entrypoint_addr"
  | "input_data_size"
  | "output_data_size"
  | "heap_size"
  | "code_size"
  | "init_data_size"
  | "init_data_permissions"
  | "scratch_size"
  | "snapshot_size"
  | "pt_size"
  | "memory_size"
  | "memory_offset"
  | "has_sregs"
  | "hypervisor"
  | "host_funcs_size";

/**
 * A header as read from the file, before validation: every field a u64 bigint, keyed by spec name.
 *
 * @example
 * ```ts
 * import type { RawSnapshotHeader } from "./header.ts";
 *
 * function isCall(raw: RawSnapshotHeader): boolean {
 *   return raw.entrypoint_tag === 1n;
 * }
 * console.log(typeof isCall);
 * ```
 */
export type RawSnapshotHeader = Record<HeaderFieldName, bigint>;
