/**
 * The Windows Hypervisor Platform API (`WinHvPlatform.dll`, Windows 10 1803 and later, x64): the symbol
 * table snapvm calls, and every enum value, struct size and field offset it reads or writes. Each value is
 * pinned against `winhvplatformdefs.h` / `winhvplatform.h` (as shipped by mingw-w64) in
 * `tests/ffi/windows/winhvplatform_test.ts`, which quotes the header line it checked.
 *
 * The DLL is opened on first use, never at module load, so this module type-checks and imports on Linux.
 *
 * @module
 */

/** The DLL that exports the API. */
export const WHP_DLL = "WinHvPlatform.dll";

/**
 * Symbols, one declaration per function (`winhvplatform.h`). A partition handle is an opaque pointer;
 * `HRESULT` is returned as `i32` (failures are negative). `WHvMapGpaRange2` only exists on Windows 11 /
 * Server 2022 and later, so it is optional: `null` where missing.
 */
const SYMBOLS = {
  WHvGetCapability: { parameters: ["u32", "buffer", "u32", "buffer"], result: "i32" },
  WHvCreatePartition: { parameters: ["buffer"], result: "i32" },
  WHvSetupPartition: { parameters: ["pointer"], result: "i32" },
  WHvDeletePartition: { parameters: ["pointer"], result: "i32" },
  WHvSetPartitionProperty: { parameters: ["pointer", "u32", "buffer", "u32"], result: "i32" },
  WHvMapGpaRange: { parameters: ["pointer", "pointer", "u64", "u64", "u32"], result: "i32" },
  WHvMapGpaRange2: {
    parameters: ["pointer", "pointer", "pointer", "u64", "u64", "u32"],
    result: "i32",
    optional: true,
  },
  WHvUnmapGpaRange: { parameters: ["pointer", "u64", "u64"], result: "i32" },
  WHvCreateVirtualProcessor: { parameters: ["pointer", "u32", "u32"], result: "i32" },
  WHvRunVirtualProcessor: { parameters: ["pointer", "u32", "buffer", "u32"], result: "i32" },
  WHvCancelRunVirtualProcessor: { parameters: ["pointer", "u32", "u32"], result: "i32" },
  WHvGetVirtualProcessorRegisters: {
    parameters: ["pointer", "u32", "buffer", "u32", "buffer"],
    result: "i32",
  },
  WHvSetVirtualProcessorRegisters: {
    parameters: ["pointer", "u32", "buffer", "u32", "buffer"],
    result: "i32",
  },
  WHvGetVirtualProcessorXsaveState: {
    parameters: ["pointer", "u32", "buffer", "u32", "buffer"],
    result: "i32",
  },
  WHvSetVirtualProcessorXsaveState: { parameters: ["pointer", "u32", "buffer", "u32"], result: "i32" },
  WHvQueryGpaRangeDirtyBitmap: { parameters: ["pointer", "u64", "u64", "buffer", "u32"], result: "i32" },
} as const;

/**
 * The declaration of `WHvCancelRunVirtualProcessor` alone, for a watchdog Worker that opens the DLL itself
 * (one owner for the signature).
 *
 * @example
 * ```ts
 * import { CANCEL_SYMBOL } from "./winhvplatform.ts";
 * console.log(CANCEL_SYMBOL.parameters.length); // 3
 * ```
 */
export const CANCEL_SYMBOL = SYMBOLS.WHvCancelRunVirtualProcessor;

/** The opened symbols; see {@linkcode whp}. */
export type WhpSymbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let lib: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;

/**
 * The WinHvPlatform symbols, opened on first call. Throws Deno's own error when the DLL is missing (the
 * Windows feature "Windows Hypervisor Platform" is not installed); the backend turns that into its typed
 * unavailability error.
 *
 * @example
 * ```ts ignore
 * import { whp } from "./winhvplatform.ts";
 * console.log(whp().WHvMapGpaRange2 === null ? "Windows 10" : "Windows 11");
 * ```
 */
export function whp(): WhpSymbols {
  if (lib === undefined) lib = Deno.dlopen(WHP_DLL, SYMBOLS);
  return lib.symbols;
}

/**
 * `WHV_CAPABILITY_CODE` values snapvm queries with `WHvGetCapability`.
 *
 * @example
 * ```ts
 * import { WHV_CAPABILITY_CODE } from "./winhvplatform.ts";
 * console.log(WHV_CAPABILITY_CODE.HypervisorPresent); // 0
 * ```
 */
export const WHV_CAPABILITY_CODE = {
  /** `WINBOOL`: the hypervisor runs and the API is usable. */
  HypervisorPresent: 0x00000000,
  /** `WHV_CAPABILITY_FEATURES` (u64): bit 3 DirtyPageTracking, bit 2 Xsave. */
  Features: 0x00000001,
} as const;

/**
 * Bits of `WHV_CAPABILITY_FEATURES` (u64 bit numbers).
 *
 * @example
 * ```ts
 * import { WHV_CAPABILITY_FEATURE_BIT } from "./winhvplatform.ts";
 * console.log(WHV_CAPABILITY_FEATURE_BIT.DirtyPageTracking); // 3
 * ```
 */
export const WHV_CAPABILITY_FEATURE_BIT = {
  PartialUnmap: 0,
  LocalApicEmulation: 1,
  Xsave: 2,
  DirtyPageTracking: 3,
};

/**
 * `WHV_PARTITION_PROPERTY_CODE` values snapvm sets.
 *
 * @example
 * ```ts
 * import { WHV_PARTITION_PROPERTY_CODE } from "./winhvplatform.ts";
 * console.log(WHV_PARTITION_PROPERTY_CODE.ProcessorCount.toString(16)); // 1fff
 * ```
 */
export const WHV_PARTITION_PROPERTY_CODE = {
  /** `UINT32 ProcessorCount`: set to 1 before `WHvSetupPartition`. */
  ProcessorCount: 0x00001fff,
} as const;

/**
 * `WHV_MAP_GPA_RANGE_FLAGS`.
 *
 * @example
 * ```ts
 * import { WHV_MAP_GPA_RANGE_FLAGS } from "./winhvplatform.ts";
 * console.log(WHV_MAP_GPA_RANGE_FLAGS.Read | WHV_MAP_GPA_RANGE_FLAGS.Write); // 3
 * ```
 */
export const WHV_MAP_GPA_RANGE_FLAGS = {
  None: 0x00000000,
  Read: 0x00000001,
  Write: 0x00000002,
  Execute: 0x00000004,
  TrackDirtyPages: 0x00000008,
} as const;

/**
 * `WHV_REGISTER_NAME` values (x64) snapvm reads or writes.
 *
 * @example
 * ```ts
 * import { WHV_REGISTER_NAME } from "./winhvplatform.ts";
 * console.log(WHV_REGISTER_NAME.Rip); // 16
 * ```
 */
export const WHV_REGISTER_NAME = {
  Rax: 0x00,
  Rcx: 0x01,
  Rdx: 0x02,
  Rbx: 0x03,
  Rsp: 0x04,
  Rbp: 0x05,
  Rsi: 0x06,
  Rdi: 0x07,
  R8: 0x08,
  R9: 0x09,
  R10: 0x0a,
  R11: 0x0b,
  R12: 0x0c,
  R13: 0x0d,
  R14: 0x0e,
  R15: 0x0f,
  Rip: 0x10,
  Rflags: 0x11,
  Es: 0x12,
  Cs: 0x13,
  Ss: 0x14,
  Ds: 0x15,
  Fs: 0x16,
  Gs: 0x17,
  Ldtr: 0x18,
  Tr: 0x19,
  Idtr: 0x1a,
  Gdtr: 0x1b,
  Cr0: 0x1c,
  Cr2: 0x1d,
  Cr3: 0x1e,
  Cr4: 0x1f,
  Cr8: 0x20,
  Dr0: 0x21,
  Dr1: 0x22,
  Dr2: 0x23,
  Dr3: 0x24,
  Dr6: 0x25,
  Dr7: 0x26,
  XCr0: 0x27,
  Tsc: 0x2000,
  Efer: 0x2001,
  KernelGsBase: 0x2002,
  ApicBase: 0x2003,
  Pat: 0x2004,
  SysenterCs: 0x2005,
  SysenterEip: 0x2006,
  SysenterEsp: 0x2007,
  Star: 0x2008,
  Lstar: 0x2009,
  Cstar: 0x200a,
  Sfmask: 0x200b,
  TscAux: 0x207b,
  PendingInterruption: 0x80000000,
  InterruptState: 0x80000001,
  PendingEvent: 0x80000002,
} as const;

/**
 * `WHV_RUN_VP_EXIT_REASON` values (x64).
 *
 * @example
 * ```ts
 * import { WHV_RUN_VP_EXIT_REASON } from "./winhvplatform.ts";
 * console.log(WHV_RUN_VP_EXIT_REASON.Canceled.toString(16)); // 2001
 * ```
 */
export const WHV_RUN_VP_EXIT_REASON = {
  None: 0x00000000,
  MemoryAccess: 0x00000001,
  X64IoPortAccess: 0x00000002,
  UnrecoverableException: 0x00000004,
  InvalidVpRegisterValue: 0x00000005,
  UnsupportedFeature: 0x00000006,
  X64InterruptWindow: 0x00000007,
  X64Halt: 0x00000008,
  X64ApicEoi: 0x00000009,
  X64MsrAccess: 0x00001000,
  X64Cpuid: 0x00001001,
  Exception: 0x00001002,
  X64Rdtsc: 0x00001003,
  Hypercall: 0x00001005,
  Canceled: 0x00002001,
} as const;

/**
 * `WHV_REGISTER_VALUE`: a 16-byte union that must be 16-byte aligned (`DECLSPEC_ALIGN(16) WHV_UINT128`).
 *
 * @example
 * ```ts
 * import { REGISTER_VALUE } from "./winhvplatform.ts";
 * console.log(REGISTER_VALUE.SIZE, REGISTER_VALUE.ALIGN); // 16 16
 * ```
 */
export const REGISTER_VALUE = { SIZE: 16, ALIGN: 16 } as const;

/**
 * `WHV_X64_SEGMENT_REGISTER` (16 B): Base u64 @0, Limit u32 @8, Selector u16 @12, Attributes u16 @14 with
 * SegmentType bits 0-3, NonSystemSegment 4, DescriptorPrivilegeLevel 5-6, Present 7, Reserved 8-11,
 * Available 12, Long 13, Default 14, Granularity 15.
 *
 * @example
 * ```ts
 * import { SEGMENT } from "./winhvplatform.ts";
 * console.log(SEGMENT.ATTRIBUTES); // 14
 * ```
 */
export const SEGMENT = {
  SIZE: 16,
  BASE: 0,
  LIMIT: 8,
  SELECTOR: 12,
  ATTRIBUTES: 14,
  /** Bit positions inside Attributes. */
  TYPE_SHIFT: 0,
  S_SHIFT: 4,
  DPL_SHIFT: 5,
  PRESENT_SHIFT: 7,
  AVL_SHIFT: 12,
  L_SHIFT: 13,
  DB_SHIFT: 14,
  G_SHIFT: 15,
} as const;

/**
 * `WHV_X64_TABLE_REGISTER` (16 B): Pad u16[3] @0, Limit u16 @6, Base u64 @8.
 *
 * @example
 * ```ts
 * import { TABLE } from "./winhvplatform.ts";
 * console.log(TABLE.LIMIT, TABLE.BASE); // 6 8
 * ```
 */
export const TABLE = { SIZE: 16, LIMIT: 6, BASE: 8 } as const;

/**
 * `WHV_RUN_VP_EXIT_CONTEXT` (224 B on x64): ExitReason u32 @0, Reserved u32 @4, `WHV_VP_EXIT_CONTEXT`
 * VpContext @8 (40 B), then the exit-specific union @48. Offsets below are from the start of the whole
 * context.
 *
 * @example
 * ```ts
 * import { EXIT_CONTEXT } from "./winhvplatform.ts";
 * console.log(EXIT_CONTEXT.SIZE, EXIT_CONTEXT.IO_PORT); // 224 72
 * ```
 */
export const EXIT_CONTEXT = {
  SIZE: 224,
  EXIT_REASON: 0,
  /** `WHV_VP_EXIT_CONTEXT`: ExecutionState u16 @0, InstructionLength:4 / Cr8:4 @2, Cs @8, Rip @24, Rflags @32. */
  VP_CONTEXT: 8,
  EXECUTION_STATE: 8,
  /** Low 4 bits: InstructionLength; high 4 bits: Cr8. */
  INSTRUCTION_LENGTH: 10,
  CS: 16,
  RIP: 32,
  RFLAGS: 40,
  /** Start of the union. */
  PAYLOAD: 48,
  /** `WHV_MEMORY_ACCESS_CONTEXT`: AccessInfo u32 @20 (bits 0-1 AccessType, 2 GpaUnmapped, 3 GvaValid), Gpa @24, Gva @32. */
  MEMORY_ACCESS_INFO: 68,
  MEMORY_GPA: 72,
  MEMORY_GVA: 80,
  /**
   * `WHV_X64_IO_PORT_ACCESS_CONTEXT`: AccessInfo u32 @20 (bit 0 IsWrite, 1-3 AccessSize, 4 StringOp,
   * 5 RepPrefix), PortNumber u16 @24, Rax u64 @32.
   */
  IO_ACCESS_INFO: 68,
  IO_PORT: 72,
  IO_RAX: 80,
  /** `WHV_VP_EXCEPTION_CONTEXT`: ExceptionInfo u32 @20, ExceptionType u8 @24, ErrorCode u32 @28, ExceptionParameter @32. */
  EXCEPTION_INFO: 68,
  EXCEPTION_TYPE: 72,
  EXCEPTION_ERROR_CODE: 76,
  EXCEPTION_PARAMETER: 80,
  /** `WHV_X64_UNSUPPORTED_FEATURE_CONTEXT`: FeatureCode u32 @0, FeatureParameter u64 @8. */
  UNSUPPORTED_FEATURE_CODE: 48,
  UNSUPPORTED_FEATURE_PARAMETER: 56,
  /** `WHV_RUN_VP_CANCELED_CONTEXT`: CancelReason u32 @0. */
  CANCEL_REASON: 48,
} as const;

/**
 * `WHV_MEMORY_ACCESS_TYPE` (the low two bits of a memory access's AccessInfo).
 *
 * @example
 * ```ts
 * import { WHV_MEMORY_ACCESS_TYPE } from "./winhvplatform.ts";
 * console.log(WHV_MEMORY_ACCESS_TYPE.Write); // 1
 * ```
 */
export const WHV_MEMORY_ACCESS_TYPE = { Read: 0, Write: 1, Execute: 2 } as const;
