/**
 * The errors of the debugging tools (page-table walks, core dumps, the gdb connection). Each class has a
 * stable `name`, so code can branch on `err.name` as well as with `instanceof`.
 *
 * @module
 */
import { SnapvmError } from "../../errors.ts";

/** Why a guest virtual address could not be used; see {@linkcode GuestAddressError}. */
export type GuestAddressProblem =
  /** Bits 63..47 are not all equal. */
  | "non-canonical"
  /** An entry on the walk has its present bit clear. */
  | "not mapped"
  /** An entry has a bit set that the CPU requires to be zero (it would fault with PFEC.RSVD). */
  | "reserved bit"
  /** A page-table entry points at a table outside guest memory. */
  | "table outside guest memory"
  /** The page is mapped, but its physical address is outside guest memory. */
  | "page outside guest memory"
  /** The debugger may not write there: the page is not user-accessible (kernel/system area). */
  | "supervisor page"
  /** Enumerating the mappings visited more page tables than the limit allows. */
  | "too many page tables"
  /** Enumerating the mappings found more mapped memory than the limit allows. */
  | "too much mapped memory";

/**
 * A guest virtual address could not be translated or accessed from the host. The page tables are guest
 * memory, so they are treated as hostile input: a malformed walk is this error, never a crash.
 *
 * @example
 * ```ts
 * import { GuestAddressError } from "./errors.ts";
 * const e = new GuestAddressError(0x1000n, "not mapped", "PT entry 1 is not present");
 * console.log(e.message); // "Cannot access guest address 0x1000: not mapped (PT entry 1 is not present)"
 * ```
 */
export class GuestAddressError extends SnapvmError {
  /** The guest virtual address. */
  readonly address: bigint;
  /** What went wrong. */
  readonly problem: GuestAddressProblem;
  /** Creates the error; `detail` names the entry or limit involved. */
  constructor(address: bigint, problem: GuestAddressProblem, detail = "") {
    super(`Cannot access guest address 0x${address.toString(16)}: ${problem}${detail ? ` (${detail})` : ""}`);
    this.name = "GuestAddressError";
    this.address = address;
    this.problem = problem;
  }
}

/**
 * A core dump could not be built from its description (the message names the field and the limit).
 *
 * @example
 * ```ts
 * import { CoreDumpError } from "./errors.ts";
 * const e = new CoreDumpError("memory range 2 overlaps range 1");
 * console.log(e.message); // "Cannot write core dump: memory range 2 overlaps range 1"
 * ```
 */
export class CoreDumpError extends SnapvmError {
  /** Creates the error. */
  constructor(detail: string, options?: ErrorOptions) {
    super(`Cannot write core dump: ${detail}`, options);
    this.name = "CoreDumpError";
  }
}

/**
 * The debugger connection failed or timed out (accepting, reading or writing the TCP socket). The cause is
 * the failed system call (an `ErrnoError`), when there is one.
 *
 * @example
 * ```ts
 * import { DebuggerConnectionError } from "./errors.ts";
 * const e = new DebuggerConnectionError("no debugger connected to 127.0.0.1:1234 within 1000 ms");
 * console.log(e.message);
 * ```
 */
export class DebuggerConnectionError extends SnapvmError {
  /** Creates the error. */
  constructor(detail: string, options?: ErrorOptions) {
    super(`Debugger connection failed: ${detail}`, options);
    this.name = "DebuggerConnectionError";
  }
}
