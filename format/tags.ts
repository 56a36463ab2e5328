/**
 * The enumerated header values of an `.hls` file (architecture, hypervisor, entry point, init-data
 * permissions), with their display names, and the identity of the host that loads a snapshot.
 *
 * @module
 */

/**
 * Guest architectures (header field `arch`).
 *
 * @example
 * ```ts
 * import { Arch } from "./tags.ts";
 *
 * console.log(Arch.X86_64); // 1
 * ```
 */
export const Arch = { X86_64: 1, AARCH64: 2, I686: 3 } as const;
/**
 * A value of {@linkcode Arch}.
 *
 * @example
 * ```ts
 * import { Arch } from "./tags.ts";
 *
 * const arch: Arch = Arch.X86_64;
 * console.log(arch);
 * ```
 */
export type Arch = typeof Arch[keyof typeof Arch];

/**
 * Display names of {@linkcode Arch} values.
 *
 * @example
 * ```ts
 * import { ARCH_NAMES } from "./tags.ts";
 *
 * console.log(ARCH_NAMES[1]); // x86_64
 * ```
 */
export const ARCH_NAMES: Readonly<Record<Arch, string>> = { 1: "x86_64", 2: "aarch64", 3: "i686" };

/**
 * Hypervisors that produce special registers (header field `hypervisor`).
 *
 * @example
 * ```ts
 * import { Hypervisor } from "./tags.ts";
 *
 * console.log(Hypervisor.KVM); // 1
 * ```
 */
export const Hypervisor = { KVM: 1, MSHV: 2, WHP: 3 } as const;
/**
 * A value of {@linkcode Hypervisor}.
 *
 * @example
 * ```ts
 * import { Hypervisor } from "./tags.ts";
 *
 * const hypervisor: Hypervisor = Hypervisor.KVM;
 * console.log(hypervisor);
 * ```
 */
export type Hypervisor = typeof Hypervisor[keyof typeof Hypervisor];

/**
 * Display names of {@linkcode Hypervisor} values.
 *
 * @example
 * ```ts
 * import { HYPERVISOR_NAMES } from "./tags.ts";
 *
 * console.log(HYPERVISOR_NAMES[1]); // KVM
 * ```
 */
export const HYPERVISOR_NAMES: Readonly<Record<Hypervisor, string>> = { 1: "KVM", 2: "MSHV", 3: "WHP" };

/**
 * Where execution resumes (header field `entrypoint_tag`): `Initialise` runs the guest's init from its ELF
 * entry point; `Call` enters the call dispatcher of an initialised guest, with saved special registers.
 *
 * @example
 * ```ts
 * import { EntrypointTag } from "./tags.ts";
 *
 * console.log(EntrypointTag.Call); // 1
 * ```
 */
export const EntrypointTag = { Initialise: 0, Call: 1 } as const;
/**
 * A value of {@linkcode EntrypointTag}.
 *
 * @example
 * ```ts
 * import { EntrypointTag } from "./tags.ts";
 *
 * const tag: EntrypointTag = EntrypointTag.Initialise;
 * console.log(tag);
 * ```
 */
export type EntrypointTag = typeof EntrypointTag[keyof typeof EntrypointTag];

/**
 * Display names of {@linkcode EntrypointTag} values.
 *
 * @example
 * ```ts
 * import { ENTRYPOINT_NAMES } from "./tags.ts";
 *
 * console.log(ENTRYPOINT_NAMES[0]); // Initialise
 * ```
 */
export const ENTRYPOINT_NAMES: Readonly<Record<EntrypointTag, string>> = { 0: "Initialise", 1: "Call" };

/**
 * Bits of the header field `init_data_permissions`. snapvm has no init-data region, so it always writes 0.
 *
 * @example
 * ```ts
 * import { InitDataPermission } from "./tags.ts";
 *
 * console.log(InitDataPermission.READ | InitDataPermission.WRITE); // 3
 * ```
 */
export const InitDataPermission = { READ: 1, WRITE: 2, EXECUTE: 4 } as const;

/**
 * The running host, which a snapshot must match to be loaded.
 *
 * @example
 * ```ts
 * import { Arch, Hypervisor, type HostIdentity } from "./tags.ts";
 *
 * const host: HostIdentity = { arch: Arch.X86_64, hypervisor: Hypervisor.KVM, abiVersion: 1 };
 * console.log(host);
 * ```
 */
export interface HostIdentity {
  /** The host's guest architecture. */
  arch: Arch;
  /** The hypervisor the host runs guests with. */
  hypervisor: Hypervisor;
  /** The host's ABI version (the version of the guest memory layout and call protocol). */
  abiVersion: number;
  /**
   * Where that ABI puts things in guest memory. When given, the loader also checks that the header
   * describes exactly that layout; without it only the file's own structure is checked.
   */
  memoryMap?: MemoryMap;
}

/**
 * The fixed places of a guest memory layout that header fields are checked against: page tables start at
 * `pageTablesBase` and must end before `pageTablesEnd`, the image is linked at `imageBase`, and guest memory
 * (blob, stack guard, scratch) is at most `maxGuestMemory` bytes.
 *
 * @example
 * ```ts
 * import type { MemoryMap } from "./tags.ts";
 *
 * const map: MemoryMap = { pageTablesBase: 0x5000, pageTablesEnd: 0x1e0000, imageBase: 0x200000, maxGuestMemory: 944 << 20 };
 * console.log(map.imageBase);
 * ```
 */
export interface MemoryMap {
  /** Guest-physical address of the first page-table page. */
  readonly pageTablesBase: number;
  /** Page tables end at or before this address. */
  readonly pageTablesEnd: number;
  /** Guest-physical address the image is linked at. */
  readonly imageBase: number;
  /** Most guest memory a layout may use, in bytes. */
  readonly maxGuestMemory: number;
}
