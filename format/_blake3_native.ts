/**
 * BLAKE3 through the official C library, loaded with `Deno.dlopen`. Internal to the format module.
 *
 * @module
 */

const SYMBOLS = {
  blake3_version: { parameters: [], result: "pointer" },
  blake3_hasher_init: { parameters: ["buffer"], result: "void" },
  blake3_hasher_update: { parameters: ["buffer", "buffer", "usize"], result: "void" },
  blake3_hasher_finalize: { parameters: ["buffer", "buffer", "usize"], result: "void" },
} as const;

// sizeof(blake3_hasher) is 1912 bytes in every C release so far; the struct is opaque to us, so leave room
// for a future release to grow it.
const HASHER_STATE_SIZE = 8192;

/**
 * An opened BLAKE3 C library.
 *
 * @example
 * ```ts ignore
 * import { openNativeBlake3 } from "./_blake3_native.ts";
 *
 * const lib = openNativeBlake3("build/libblake3.so");
 * console.log(lib.version, lib.hash(new Uint8Array(0)).length); // 1.3.1 32
 * ```
 */
export interface NativeBlake3 {
  /** The path or name it was opened with. */
  readonly path: string;
  /** `blake3_version()` of the library, e.g. `1.3.1`. */
  readonly version: string;
  /**
   * Hashes `data` in one call, reading it in place (no copy).
   *
   * @param data Any bytes, including a view of `mmap`ed memory.
   * @returns The 32-byte BLAKE3-256 digest.
   */
  hash(data: Uint8Array): Uint8Array;
  /** Unloads the library; `hash` must not be called afterwards. */
  close(): void;
}

/**
 * Opens a BLAKE3 C library (`libblake3.so`) and wraps it.
 *
 * @param path A file path, or a bare soname that the dynamic loader searches for.
 * @returns The wrapper.
 * @throws If the library cannot be opened or lacks a symbol (also without `--allow-ffi`).
 *
 * @example
 * ```ts ignore
 * import { openNativeBlake3 } from "./_blake3_native.ts";
 *
 * console.log(openNativeBlake3("libblake3.so.0").version);
 * ```
 */
export function openNativeBlake3(path: string): NativeBlake3 {
  const library = Deno.dlopen(path, SYMBOLS);
  const { symbols } = library;
  const versionPointer = symbols.blake3_version();
  const version = versionPointer === null ? "unknown" : Deno.UnsafePointerView.getCString(versionPointer);
  // One hasher state per library, reused: JS is single-threaded per isolate and each call runs to completion.
  const state = new Uint8Array(HASHER_STATE_SIZE);
  return {
    path,
    version,
    hash(data: Uint8Array): Uint8Array {
      const out = new Uint8Array(32);
      symbols.blake3_hasher_init(state);
      // An empty view may have no backing pointer; BLAKE3 of nothing needs no update call anyway.
      if (data.byteLength > 0) symbols.blake3_hasher_update(state, data, BigInt(data.byteLength));
      symbols.blake3_hasher_finalize(state, out, 32n);
      return out;
    },
    close(): void {
      library.close();
    },
  };
}

function readEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    // Without --allow-env the variable is simply not consulted.
    return undefined;
  }
}

/**
 * The places the native library is looked for, in order: `$SNAPVM_BLAKE3_LIB`, the system's
 * `libblake3.so.0` and `libblake3.so`, then `build/libblake3.so` under the repository root (only when this
 * module was loaded from a `file:` URL).
 *
 * @returns Paths or sonames to pass to `Deno.dlopen`.
 *
 * @example
 * ```ts ignore
 * import { nativeBlake3Candidates } from "./_blake3_native.ts";
 *
 * console.log(nativeBlake3Candidates());
 * ```
 */
export function nativeBlake3Candidates(): string[] {
  const candidates: string[] = [];
  const fromEnv = readEnv("SNAPVM_BLAKE3_LIB");
  if (fromEnv) candidates.push(fromEnv);
  candidates.push("libblake3.so.0", "libblake3.so");
  const repoBuild = new URL("../build/libblake3.so", import.meta.url);
  if (repoBuild.protocol === "file:") candidates.push(decodeURIComponent(repoBuild.pathname));
  return candidates;
}

/**
 * Opens the first library of {@linkcode nativeBlake3Candidates} that works.
 *
 * @returns The library, or `null` when none could be opened.
 *
 * @example
 * ```ts ignore
 * import { loadNativeBlake3 } from "./_blake3_native.ts";
 *
 * console.log(loadNativeBlake3()?.path ?? "no native BLAKE3");
 * ```
 */
export function loadNativeBlake3(): NativeBlake3 | null {
  for (const candidate of nativeBlake3Candidates()) {
    try {
      return openNativeBlake3(candidate);
    } catch {
      // Missing library, missing symbol or no FFI permission: try the next one, then fall back to WASM.
    }
  }
  return null;
}
