/**
 * The C library's thread calls, opened once per process (per Worker) on first use: for the BLAKE3 kernel's
 * helper threads (`ffi/executable.ts`), the vCPU run threads and the reaper (`vm/kvm/_run_thread.c`).
 * glibc 2.34+ has them in `libc.so.6`, older ones only in `libpthread.so.0`.
 *
 * @module
 */

/** The `Deno.dlopen` symbol table: two calls, and two addresses for machine code that calls them itself. */
export const PTHREAD_SYMBOLS = {
  pthread_create: { parameters: ["buffer", "pointer", "pointer", "pointer"], result: "i32" },
  pthread_join: { parameters: ["u64", "pointer"], result: "i32" },
  /** Address of `pthread_join` (an address costs a lookup; a call, a compiled binding of ~0.2 ms). */
  pthreadJoinAddress: { name: "pthread_join", type: "pointer" },
  /** Address of `pthread_detach`. */
  pthreadDetachAddress: { name: "pthread_detach", type: "pointer" },
} as const;

/** The opened symbols; see {@linkcode pthreads}. */
export type PthreadSymbols = Deno.DynamicLibrary<typeof PTHREAD_SYMBOLS>["symbols"];

let lib: PthreadSymbols | null | undefined;

/**
 * The thread calls, or null where no C library has them.
 *
 * @example
 * ```ts
 * import { pthreads } from "./pthreads.ts";
 * console.log(pthreads() !== null); // true with glibc
 * ```
 */
export function pthreads(): PthreadSymbols | null {
  if (lib !== undefined) return lib;
  lib = null;
  for (const name of ["libc.so.6", "libpthread.so.0"]) {
    try {
      // Never closed: it is the C library, which stays loaded for the life of the process anyway.
      lib = Deno.dlopen(name, PTHREAD_SYMBOLS).symbols;
      break;
    } catch {
      // Try the next name.
    }
  }
  return lib;
}
