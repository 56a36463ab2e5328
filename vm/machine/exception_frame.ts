/**
 * The exception frame the CPL0 stub leaves at the top of the exception stack (docs/ABI.md, "Exceptions"):
 * what the CPU pushed on its way from CPL3 into the stub, and the stub's error-code slot. This file is the
 * one place that knows the layout: the run loop reads a crash's details from it, the debugger and core
 * dumps the guest's CPL3 registers.
 *
 * @module
 */
import { EXC_STACK_TOP, IDT_VECTORS, STUB_ADDR } from "./abi.ts";

/** The guest's state when it raised the exception, as the CPU pushed it. */
export interface ExceptionFrame {
  /** The exception's error code (0 from the stub for vectors without one). */
  readonly errorCode: bigint;
  /** RIP: the faulting instruction, or the one after a trap (`int3`, a single step). */
  readonly rip: bigint;
  /** The guest's CS selector. */
  readonly cs: bigint;
  /** The guest's RFLAGS. */
  readonly rflags: bigint;
  /** The guest's RSP. */
  readonly rsp: bigint;
  /** The guest's SS selector. */
  readonly ss: bigint;
  /**
   * The guest's RAX, when the stub preserves it. ABI 2's stub overwrites RAX with the vector before it
   * exits, so the guest's value is lost (`undefined`).
   */
  readonly rax: bigint | undefined;
}

/**
 * Size of the frame below {@linkcode EXC_STACK_TOP}: error code at −48, RIP −40, CS −32, RFLAGS −24,
 * RSP −16, SS −8.
 */
export const EXCEPTION_FRAME_SIZE = 48;

/** Guest-physical address of the frame. */
export const EXCEPTION_FRAME_ADDR: number = EXC_STACK_TOP - EXCEPTION_FRAME_SIZE;

/** Bytes of one exception stub; the stub of vector `v` starts at `STUB_ADDR + v * STUB_SIZE`. */
export const STUB_SIZE = 16;

/**
 * Decodes the frame from its {@linkcode EXCEPTION_FRAME_SIZE} bytes (read at
 * {@linkcode EXCEPTION_FRAME_ADDR}).
 *
 * @example
 * ```ts
 * import { EXCEPTION_FRAME_SIZE, readExceptionFrame } from "./exception_frame.ts";
 * const bytes = new Uint8Array(EXCEPTION_FRAME_SIZE);
 * new DataView(bytes.buffer).setBigUint64(8, 0x200010n, true);
 * console.log(readExceptionFrame(bytes).rip); // 2097168n
 * ```
 */
export function readExceptionFrame(bytes: Uint8Array): ExceptionFrame {
  if (bytes.length < EXCEPTION_FRAME_SIZE) {
    throw new RangeError(`exception frame has ${bytes.length} bytes, expected ${EXCEPTION_FRAME_SIZE}`);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, EXCEPTION_FRAME_SIZE);
  return {
    errorCode: v.getBigUint64(0, true),
    rip: v.getBigUint64(8, true),
    cs: v.getBigUint64(16, true),
    rflags: v.getBigUint64(24, true),
    rsp: v.getBigUint64(32, true),
    ss: v.getBigUint64(40, true),
    rax: undefined,
  };
}

/**
 * The vector whose stub contains `rip`, or `undefined` when `rip` is not in a stub. A vCPU stopped in a stub
 * (after its `out`) is one that raised that exception.
 *
 * @example
 * ```ts
 * import { stubVector } from "./exception_frame.ts";
 * console.log(stubVector(0x20e9n)); // 14
 * console.log(stubVector(0x200000n)); // undefined
 * ```
 */
export function stubVector(rip: bigint): number | undefined {
  const offset = rip - BigInt(STUB_ADDR);
  if (offset < 0n || offset >= BigInt(IDT_VECTORS * STUB_SIZE)) return undefined;
  return Number(offset) / STUB_SIZE | 0;
}
