/**
 * A neutral x86-64 register set (what the debugger and core dumps see of a stopped vCPU), independent of
 * how the hypervisor stores it, and the layout of the FXSAVE image that carries the x87/SSE state.
 *
 * @module
 */

/**
 * The registers of a stopped vCPU at guest (CPL3) level. All values are unsigned 64-bit `bigint`s;
 * segment registers hold the 16-bit selector.
 *
 * @example
 * ```ts
 * import { emptyRegisters } from "./registers.ts";
 * const regs = { ...emptyRegisters(), rip: 0x200000n, rsp: 0x250000n };
 * console.log(regs.rflags); // 2n
 * ```
 */
export interface X86Registers {
  /** General-purpose registers. */
  rax: bigint;
  /** General-purpose registers. */
  rbx: bigint;
  /** General-purpose registers. */
  rcx: bigint;
  /** General-purpose registers. */
  rdx: bigint;
  /** General-purpose registers. */
  rsi: bigint;
  /** General-purpose registers. */
  rdi: bigint;
  /** Frame pointer. */
  rbp: bigint;
  /** Stack pointer. */
  rsp: bigint;
  /** General-purpose registers. */
  r8: bigint;
  /** General-purpose registers. */
  r9: bigint;
  /** General-purpose registers. */
  r10: bigint;
  /** General-purpose registers. */
  r11: bigint;
  /** General-purpose registers. */
  r12: bigint;
  /** General-purpose registers. */
  r13: bigint;
  /** General-purpose registers. */
  r14: bigint;
  /** General-purpose registers. */
  r15: bigint;
  /** Instruction pointer. */
  rip: bigint;
  /** Flags. */
  rflags: bigint;
  /** Code segment selector (0x33 for snapvm guests). */
  cs: bigint;
  /** Stack segment selector (0x2b). */
  ss: bigint;
  /** Data segment selectors (0). */
  ds: bigint;
  /** Data segment selectors (0). */
  es: bigint;
  /** Data segment selectors (0). */
  fs: bigint;
  /** Data segment selectors (0). */
  gs: bigint;
  /** FS segment base. */
  fsBase: bigint;
  /** GS segment base. */
  gsBase: bigint;
  /**
   * The x87/SSE state as a 512-byte FXSAVE image ({@linkcode FXSAVE}), e.g. the first 512 bytes of
   * `KVM_GET_XSAVE`; absent when the target does not provide it (gdb then shows those registers as
   * unavailable).
   */
  fxsave?: Uint8Array;
}

/** Names of the 64-bit fields of {@linkcode X86Registers}, in declaration order. */
export type X86RegisterName = Exclude<keyof X86Registers, "fxsave">;

/** Every 64-bit field of {@linkcode X86Registers}. */
export const X86_REGISTER_NAMES: readonly X86RegisterName[] = [
  "rax",
  "rbx",
  "rcx",
  "rdx",
  "rsi",
  "rdi",
  "rbp",
  "rsp",
  "r8",
  "r9",
  "r10",
  "r11",
  "r12",
  "r13",
  "r14",
  "r15",
  "rip",
  "rflags",
  "cs",
  "ss",
  "ds",
  "es",
  "fs",
  "gs",
  "fsBase",
  "gsBase",
];

/**
 * All registers zero except RFLAGS (bit 1 is always set), no FXSAVE image.
 *
 * @example
 * ```ts
 * import { emptyRegisters } from "./registers.ts";
 * console.log(emptyRegisters().rax); // 0n
 * ```
 */
export function emptyRegisters(): X86Registers {
  const r = Object.fromEntries(X86_REGISTER_NAMES.map((n) => [n, 0n])) as unknown as X86Registers;
  r.rflags = 0x2n;
  return r;
}

/**
 * Byte offsets in the 512-byte FXSAVE image (64-bit format, Intel SDM Vol. 1 table 10-2): FCW, FSW, the
 * abridged tag byte, FOP, the 64-bit FPU instruction and data pointers, MXCSR, then ST0..ST7 (16 bytes
 * each, 10 used) and XMM0..XMM15 (16 bytes each).
 */
export const FXSAVE = {
  SIZE: 512,
  FCW: 0,
  FSW: 2,
  FTW: 4,
  FOP: 6,
  FIP: 8,
  FDP: 16,
  MXCSR: 24,
  MXCSR_MASK: 28,
  ST0: 32,
  XMM0: 160,
} as const;

/** RFLAGS bits. */
export const RFLAGS_TF = 0x100n;

/**
 * The RFLAGS bits a debugger may change: CF, PF, AF, ZF, SF, TF, DF, OF, RF, AC and ID. The others
 * (IF, IOPL, NT, VM, VIF, VIP, reserved) are the host's: a guest at CPL3 cannot change them either.
 */
export const RFLAGS_USER_MASK = 0x0000_0000_0025_0dd5n;
