/**
 * BLAKE3 through a shared build of the official C library (`libblake3`), loaded with `Deno.dlopen`: the
 * `"library"` backend, used when `$SNAPVM_BLAKE3_LIB` names one, or when the built-in kernel cannot run and the
 * system has one installed. It hashes on the calling thread. Internal to the format module.
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
 * import { openBlake3Library } from "./_library.ts";
 *
 * const lib = openBlake3Library("libblake3.so.0");
 * console.log(lib.version, lib.hash(new Uint8Array(0)).length); // 1.3.1 32
 * ```
 */
export interface Blake3Library {
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
 * import { openBlake3Library } from "./_library.ts";
 *
 * console.log(openBlake3Library("libblake3.so.0").version);
 * ```
 */
export function openBlake3Library(path: string): Blake3Library {
  const library = Deno.dlopen(path, SYMBOLS);
  const { symbols } = library;
  let version: string;
  try {
    const versionPointer = symbols.blake3_version();
    version = versionPointer === null ? "unknown" : Deno.UnsafePointerView.getCString(versionPointer);
  } catch (error) {
    library.close();
    throw error;
  }
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

/**
 * Names under which an installed BLAKE3 C library is looked for, for an OS: the dynamic loader searches its
 * usual folders for them.
 *
 * @param os `Deno.build.os`.
 * @returns Sonames or file names to pass to `Deno.dlopen`.
 *
 * @example
 * ```ts
 * import { systemLibraryNames } from "./_library.ts";
 *
 * console.log(systemLibraryNames("linux")); // [ "libblake3.so.0", "libblake3.so" ]
 * ```
 */
export function systemLibraryNames(os: typeof Deno.build.os): string[] {
  if (os === "windows") return ["blake3.dll"];
  if (os === "darwin") return ["libblake3.0.dylib", "libblake3.dylib"];
  return ["libblake3.so.0", "libblake3.so"];
}
