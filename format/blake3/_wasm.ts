/**
 * BLAKE3 in WebAssembly: the `"wasm"` backend, the last fallback, used when neither the built-in kernel nor
 * a C library can run (no `--allow-ffi`, or a CPU other than x86-64 without `libblake3`). It hashes on the
 * calling thread. Internal to the format module.
 *
 * `blake3-jit` (MIT) was the fastest correct candidate measured on the project's machines with a 256 MiB
 * input: about 1.0 GB/s, against 0.6 GB/s for `hash-wasm` and 0.2 GB/s for `@webbuf/blake3`. It is
 * synchronous (the WASM SIMD kernel is generated and compiled on first use, no `.wasm` file to fetch), has no
 * dependencies, and works from Deno's npm cache without network access.
 *
 * @module
 */

// Pinned inline, next to its only user, so that the version is stated where the measurement above is.
// deno-lint-ignore no-import-prefix
import { hash } from "npm:blake3-jit@1.1.0";

/**
 * Hashes `data` with the WASM implementation.
 *
 * @param data Any bytes.
 * @returns The 32-byte BLAKE3-256 digest.
 *
 * @example
 * ```ts
 * import { wasmBlake3 } from "./_wasm.ts";
 *
 * console.log(wasmBlake3(new Uint8Array(0)).length); // 32
 * ```
 */
export function wasmBlake3(data: Uint8Array): Uint8Array {
  return hash(data, 32);
}
