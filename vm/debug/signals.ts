/**
 * Which POSIX signal a guest CPU exception looks like to a debugger, and the two numberings of signals
 * involved: gdb's remote protocol numbers (gdb's `enum gdb_signal`, `include/gdb/signals.def`) and the
 * Linux x86-64 numbers a core file's `pr_cursig` / `si_signo` carry. They agree except for SIGBUS.
 *
 * The vector-to-signal choice follows what Linux sends a process for the same exception
 * (`arch/x86/kernel/traps.c`).
 *
 * @module
 */

/** The signals a stopped guest can report. */
export type SignalName =
  | "SIGINT"
  | "SIGILL"
  | "SIGTRAP"
  | "SIGABRT"
  | "SIGFPE"
  | "SIGKILL"
  | "SIGBUS"
  | "SIGSEGV";

/** gdb remote protocol signal numbers (`T<sig>`, `X<sig>`, `C<sig>`). */
export const GDB_SIGNAL: Readonly<Record<SignalName, number>> = {
  SIGINT: 2,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGBUS: 10,
  SIGSEGV: 11,
};

/** Linux x86-64 signal numbers (`<asm/signal.h>`), for core files. */
export const LINUX_SIGNAL: Readonly<Record<SignalName, number>> = {
  SIGINT: 2,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGBUS: 7,
  SIGSEGV: 11,
};

const BY_VECTOR: Readonly<Record<number, SignalName>> = {
  0: "SIGFPE", // #DE divide error
  1: "SIGTRAP", // #DB debug (single step)
  3: "SIGTRAP", // #BP int3
  6: "SIGILL", // #UD invalid opcode
  7: "SIGFPE", // #NM device not available
  11: "SIGBUS", // #NP segment not present
  12: "SIGBUS", // #SS stack-segment fault
  16: "SIGFPE", // #MF x87 error
  17: "SIGBUS", // #AC alignment check
  18: "SIGBUS", // #MC machine check
  19: "SIGFPE", // #XM SIMD floating point
};

/**
 * The signal a process would receive for CPU exception `vector`; SIGSEGV for the rest (#OF, #BR, #GP,
 * #PF, #TS, #DF, #CP, …).
 *
 * @example
 * ```ts
 * import { signalForVector } from "./signals.ts";
 * console.log(signalForVector(14)); // "SIGSEGV"
 * console.log(signalForVector(0)); // "SIGFPE"
 * ```
 */
export function signalForVector(vector: number): SignalName {
  return BY_VECTOR[vector] ?? "SIGSEGV";
}
