/**
 * BLAKE3-256, the hash of `.hls` files. Three implementations give identical digests; the first that can run
 * is chosen once per process (per Worker), when first needed:
 *
 * 1. `"library"`, when `$SNAPVM_BLAKE3_LIB` names a BLAKE3 C library (`libblake3.so`) to use instead;
 * 2. `"native"`: the official C implementation compiled to x86-64 machine code that ships inside this module
 *    (Linux and Windows), about 5 GB/s per core, with large inputs hashed on every core;
 * 3. `"library"` again, with a system-wide `libblake3` (for other CPUs);
 * 4. `"wasm"`: WebAssembly (`blake3-jit`), about 1 GB/s on one core.
 *
 * `"native"` needs `--allow-ffi` and nothing else. Nothing here ever asks for a permission: each one is
 * checked with `Deno.permissions.querySync` first and the step is skipped when it is not granted
 * (`$SNAPVM_BLAKE3_LIB` is only read with `--allow-env` or `--allow-env=SNAPVM_BLAKE3_LIB`). See
 * `docs/HASHING.md` for the measurements and the permissions of each backend.
 *
 * @module
 */

import { openBlake3Library, systemLibraryNames } from "./blake3/_library.ts";
import { loadNativeKernel } from "./blake3/_native.ts";
import { wasmBlake3 } from "./blake3/_wasm.ts";
import { toHex } from "./_hex.ts";

/**
 * Which implementation {@linkcode blake3} uses: `"native"` for the built-in machine code (multi-threaded),
 * `"library"` for a BLAKE3 C library loaded from the system or `$SNAPVM_BLAKE3_LIB` (one thread), `"wasm"`
 * for the WebAssembly fallback (one thread). `"native"` and `"library"` run at native speed.
 *
 * @example
 * ```ts
 * import type { Blake3Backend } from "./blake3.ts";
 *
 * const backend: Blake3Backend = "wasm";
 * console.log(backend);
 * ```
 */
export type Blake3Backend = "native" | "library" | "wasm";

/**
 * What {@linkcode blake3Info} reports.
 *
 * @example
 * ```ts
 * import { blake3Info, type Blake3Info } from "./blake3.ts";
 *
 * const info: Blake3Info = blake3Info();
 * console.log(info.backend, info.threads);
 * ```
 */
export interface Blake3Info {
  /** The implementation in use. */
  readonly backend: Blake3Backend;
  /** What exactly runs, e.g. `BLAKE3 1.3.1 (C), built-in x86_64-sysv kernel`. */
  readonly implementation: string;
  /** How many threads a large input is hashed on (1 for `"library"` and `"wasm"`). */
  readonly threads: number;
  /** Why each backend tried before the one in use was not used, e.g. `native: --allow-ffi not granted`. */
  readonly skipped: readonly string[];
}

/** The environment variable that names a BLAKE3 C library to use instead of the built-in kernel. */
export const BLAKE3_LIBRARY_ENV = "SNAPVM_BLAKE3_LIB";

interface Selected {
  info: Blake3Info;
  hash: (data: Uint8Array) => Uint8Array;
}

let selected: Selected | undefined;

/** Whether a permission is granted, without ever prompting. */
function granted(descriptor: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(descriptor).state === "granted";
  } catch {
    // A runtime without the permissions API (or that rejects the descriptor) grants nothing we rely on.
    return false;
  }
}

function reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function tryLibrary(path: string, skipped: string[]): Selected | null {
  // Unscoped: besides dlopen, reading the library's version string through a pointer needs all of --allow-ffi
  // (and would prompt for it under --allow-ffi=<path>).
  if (!granted({ name: "ffi" })) {
    skipped.push(`library ${path}: --allow-ffi not granted`);
    return null;
  }
  try {
    const library = openBlake3Library(path);
    return {
      info: {
        backend: "library",
        implementation: `BLAKE3 ${library.version} (C), library ${path}`,
        threads: 1,
        skipped,
      },
      hash: (data) => library.hash(data),
    };
  } catch (error) {
    skipped.push(`library ${path}: ${reason(error)}`);
    return null;
  }
}

function select(): Selected {
  const skipped: string[] = [];
  const fromEnv = granted({ name: "env", variable: BLAKE3_LIBRARY_ENV })
    ? Deno.env.get(BLAKE3_LIBRARY_ENV)
    : undefined;
  if (fromEnv) {
    const library = tryLibrary(fromEnv, skipped);
    if (library !== null) return library;
  }

  if (!granted({ name: "ffi" })) {
    skipped.push("native: --allow-ffi not granted");
  } else {
    try {
      const kernel = loadNativeKernel();
      return {
        info: {
          backend: "native",
          implementation: `BLAKE3 ${kernel.version} (C), built-in ${kernel.target} kernel`,
          threads: kernel.threads,
          skipped,
        },
        hash: (data) => kernel.hash(data),
      };
    } catch (error) {
      skipped.push(`native: ${reason(error)}`);
    }
  }

  for (const name of systemLibraryNames(Deno.build.os)) {
    const library = tryLibrary(name, skipped);
    if (library !== null) return library;
  }

  return {
    info: { backend: "wasm", implementation: "blake3-jit 1.1.0 (WebAssembly)", threads: 1, skipped },
    hash: wasmBlake3,
  };
}

function implementation(): Selected {
  selected ??= select();
  return selected;
}

/**
 * BLAKE3-256 of `data`. The native backends read the bytes in place, so a `Uint8Array` over `mmap`ed memory
 * (from `Deno.UnsafePointerView.getArrayBuffer`) is hashed without a copy; `"native"` hashes inputs of 4 MiB
 * and more on every core, and returns when all its threads are done.
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
  return implementation().hash(data);
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
 * Which implementation {@linkcode blake3} uses in this process (choosing it if that has not happened yet).
 * A consumer's CI can assert native speed with `blake3Backend() !== "wasm"`, or the built-in kernel with
 * `=== "native"`.
 *
 * @returns `"native"`, `"library"` or `"wasm"`; see {@linkcode Blake3Backend}.
 *
 * @example
 * ```ts
 * import { blake3Backend } from "./blake3.ts";
 *
 * console.log(blake3Backend()); // "native" with --allow-ffi on x86-64 Linux or Windows
 * ```
 */
export function blake3Backend(): Blake3Backend {
  return implementation().info.backend;
}

/**
 * Details of the implementation {@linkcode blake3} uses, for diagnostics: what runs, on how many threads, and
 * why the backends before it were skipped.
 *
 * @returns The details.
 *
 * @example
 * ```ts
 * import { blake3Info } from "./blake3.ts";
 *
 * const info = blake3Info();
 * console.log(`${info.implementation}, ${info.threads} thread(s)`, info.skipped);
 * ```
 */
export function blake3Info(): Blake3Info {
  return implementation().info;
}
