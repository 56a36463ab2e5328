/**
 * snapvm's snapshot-file codec: the `.hls` format (versions 1 and 2), its typed errors, and BLAKE3.
 *
 * @example Build a snapshot prefix and parse it back
 * ```ts
 * import { Arch, blake3, encodeSnapshotPrefix, Hypervisor, parseSnapshotHeader } from "./mod.ts";
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
 * const host = { arch: Arch.X86_64, hypervisor: Hypervisor.KVM, abiVersion: 1 } as const;
 * console.log(parseSnapshotHeader(prefix, prefix.length + memorySize + 4096, host).header.codeSize); // 4096
 * ```
 *
 * @module
 */

export * from "./constants.ts";
export * from "./errors.ts";
export * from "./tags.ts";
export * from "./header.ts";
export * from "./sregs.ts";
export * from "./host_functions.ts";
export * from "./sections.ts";
export * from "./hls.ts";
export * from "./inspect.ts";
export * from "./blake3.ts";
