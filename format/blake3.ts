/**
 * BLAKE3-256, the hash of `.hls` files. Uses the official C library through FFI when one can be opened
 * (about 5 GB/s here) and a WebAssembly implementation otherwise (about 1 GB/s). Both give identical digests.
 *
 * The C library is looked for, once per process and only when first needed, at `$SNAPVM_BLAKE3_LIB`, as the
 * system's `libblake3.so.0` / `libblake3.so`, then at `build/libblake3.so` in the repository (which
 * `format/build_blake3.ts` builds). Opening it needs `--allow-ffi` (and `--allow-env` for the variable);
 * without them the WASM implementation is used.
 *
 * @module
 */

import { loadNativeBlake3, type NativeBlake3 } from "./_blake3_native.ts";
import { wasmBlake3 } from "./_blake3_wasm.ts";
import { toHex } from "./_hex.ts";

/**
 * Which implementation {@linkcode blake3} uses.
 *
 * @example
 * ```ts
 * import type { Blake3Backend } from "./blake3.ts";
 *
 * const backend: Blake3Backend = "wasm";
 * console.log(backend);
 * ```
 */
export type Blake3Backend = "native" | "wasm";

// undefined: not looked for yet; null: looked for and not found.
let native: NativeBlake3 | null | undefined;

function nativeLibrary(): NativeBlake3 | null {
  if (native === undefined) native = loadNativeBlake3();
  return native;
}

/**
 * BLAKE3-256 of `data`. The native path reads the bytes in place, so a `Uint8Array` over `mmap`ed memory
 * (from `Deno.UnsafePointerView.getArrayBuffer`) is hashed without a copy.
 *
 * @param data Any bytes.
 * @returns The 32-byte digest.
 *
 * @example
 * ```ts
 * import { blake3 } from "./blake3.ts";
 *
 * const digest = blake3(new TextEncoder().encode("abc"));
 * console.log(digest.length); // 32
 * ```
 */
export function blake3(data: Uint8Array): Uint8Array {
  const library = nativeLibrary();
  return library === null ? wasmBlake3(data) : library.hash(data);
}

/**
 * BLAKE3-256 of `data` as 64 lowercase hex digits, the form `b3sum` prints.
 *
 * @param data Any bytes.
 * @returns The hex digest.
 *
 * @example
 * ```ts
 * import { blake3Hex } from "./blake3.ts";
 *
 * console.log(blake3Hex(new Uint8Array(0)));
 * // af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262
 * ```
 */
export function blake3Hex(data: Uint8Array): string {
  return toHex(blake3(data));
}

/**
 * Which implementation {@linkcode blake3} uses in this process (looking for the C library if that has not
 * happened yet).
 *
 * @returns `"native"` for the C library, `"wasm"` for the fallback.
 *
 * @example
 * ```ts
 * import { blake3Backend } from "./blake3.ts";
 *
 * console.log(blake3Backend()); // "native" or "wasm"
 * ```
 */
export function blake3Backend(): Blake3Backend {
  return nativeLibrary() === null ? "wasm" : "native";
}

/**
 * The C library in use, for diagnostics.
 *
 * @returns Its path (or soname) and `blake3_version()`, or `null` when the WASM fallback is in use.
 *
 * @example
 * ```ts
 * import { blake3NativeLibrary } from "./blake3.ts";
 *
 * console.log(blake3NativeLibrary()?.version ?? "WASM");
 * ```
 */
export function blake3NativeLibrary(): { path: string; version: string } | null {
  const library = nativeLibrary();
  return library === null ? null : { path: library.path, version: library.version };
}
