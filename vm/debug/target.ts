/**
 * The contract between a debugger front end (the gdb stub) and the sandbox that runs the guest: what the
 * sandbox exposes of a stopped vCPU, why it stopped, and what it must do next.
 *
 * @module
 */
import type { PhysicalMemory } from "./page_walk.ts";
import type { X86Registers } from "./registers.ts";
import type { SignalName } from "./signals.ts";

/**
 * A stopped guest vCPU as the debugger sees it. Only called while the vCPU is stopped (outside
 * `KVM_RUN`), on the thread that runs it.
 *
 * Registers are the guest's CPL3 state. After an exception that state is the one the CPU saved in the
 * exception frame (RIP, CS, RFLAGS, RSP, SS) plus the untouched general registers, not the CPL0 state of
 * the exception stub. `writeRegisters` must make the next `KVM_RUN` resume the guest at CPL3 with exactly
 * those values (no `iretq` through the stub).
 *
 * @example
 * ```ts ignore
 * const target: DebugTarget = {
 *   readRegisters: () => vcpuRegisters(),
 *   writeRegisters: (r) => setVcpuRegisters(r),
 *   readPhysical: (gpa, into) => memory.read(gpa, into),
 *   writePhysical: (gpa, data) => memory.write(gpa, data),
 *   cr3: () => 0x5000n,
 * };
 * ```
 */
export interface DebugTarget extends PhysicalMemory {
  /** The current registers (with `fxsave` if the target can provide the x87/SSE state). */
  readRegisters(): X86Registers;
  /**
   * Replaces the registers. Segment selectors are passed through unchanged from `readRegisters` (the stub
   * refuses to change them); `fxsave`, when present, replaces the x87/SSE state.
   */
  writeRegisters(registers: X86Registers): void;
  /** CR3: the guest-physical address of the PML4 (bits 12..51). */
  cr3(): bigint;
}

/**
 * Why the guest stopped, as the run loop reports it to `GdbStub.onStop`.
 *
 * - `attach`: a debugger just connected; the guest has not run since (or is between calls).
 * - `exception`: the guest raised CPU exception `vector` (1 = #DB after a single step, 3 = #BP from
 *   `int3`, others are faults). Registers are already restored from the exception frame: for vector 3 the
 *   RIP is the byte after the `int3`, as the CPU pushed it.
 * - `interrupt`: `GdbStub.interruptRequested` returned true (gdb's Ctrl-C, or the debugger went
 *   away).
 * - `signal`: a stop that is not a CPU exception, such as the guest's `sv_abort` (SIGABRT).
 */
export type StopReason =
  | { readonly kind: "attach" }
  | { readonly kind: "exception"; readonly vector: number; readonly faultAddress?: bigint }
  | { readonly kind: "interrupt" }
  | { readonly kind: "signal"; readonly signal: SignalName };

/**
 * What the run loop does when `GdbStub.onStop` returns.
 *
 * - `continue`: resume the guest with the (possibly changed) registers. `signal` (a gdb signal number,
 *   see `GDB_SIGNAL`) is set when gdb resumed with a signal (`C`/`vCont;C`, what gdb's `continue` does
 *   after a fault): that means "let it be fatal", so the run loop ends the call as a crash. Without it the
 *   guest runs on (after a fault: retries the faulting instruction, useful after fixing RIP or memory).
 * - `step`: resume for one instruction. The stub has already set RFLAGS.TF; the run loop runs the vCPU as
 *   for `continue`, and the #DB that follows comes back as `exception` vector 1.
 * - `kill`: gdb killed the program: end the call (the sandbox is poisoned, as after a crash).
 * - `detach`: gdb detached or disconnected: breakpoints are removed and TF is clear; resume the guest and
 *   stop calling this stub.
 */
export type ResumeAction =
  | { readonly kind: "continue"; readonly signal?: number }
  | { readonly kind: "step"; readonly signal?: number }
  | { readonly kind: "kill" }
  | { readonly kind: "detach" };

/** How the guest ended, for `GdbStub.onExit`: a clean end (`code`) or a fatal signal. */
export type ExitStatus =
  | { readonly kind: "exited"; readonly code: number }
  | { readonly kind: "signaled"; readonly signal: SignalName };
