/**
 * The shape of a built-in BLAKE3 kernel image: flat x86-64 machine code, generated into
 * `_kernel_x86_64_*.ts` by `build_kernel.ts` and mapped into executable memory by `_native.ts`. Internal to
 * the format module.
 *
 * @module
 */

/**
 * The instruction set and calling convention an image is compiled for: `"x86_64-sysv"` for Linux (the System
 * V AMD64 ABI), `"x86_64-win64"` for Windows (the Microsoft x64 ABI).
 *
 * @example
 * ```ts
 * import type { KernelTarget } from "./_kernel_image.ts";
 *
 * const target: KernelTarget = "x86_64-sysv";
 * console.log(target);
 * ```
 */
export type KernelTarget = "x86_64-sysv" | "x86_64-win64";

/**
 * Byte offsets of the image's entry points from its first byte (see `_kernel.c` for what they do).
 *
 * @example
 * ```ts
 * import type { KernelEntries } from "./_kernel_image.ts";
 *
 * const entries: KernelEntries = { hash: 0, work: 16, root: 32, version: 48 };
 * console.log(entries.hash);
 * ```
 */
export interface KernelEntries {
  /** `snapvm_blake3_hash(input, len, out)`: the whole hash on the calling thread. */
  readonly hash: number;
  /** `snapvm_blake3_work(job)`: computes leaves of a parallel job; also the helper threads' start routine. */
  readonly work: number;
  /** `snapvm_blake3_root(cvs, count, out)`: the digest from a finished job's leaf chaining values (0 = ok). */
  readonly root: number;
  /** `blake3_version()`: the C library's version string. */
  readonly version: number;
}

/**
 * One built-in kernel: its bytes and where to call them. The image is position independent (the build links
 * it at two addresses and checks that the bytes are the same) and has no imports, so it runs wherever it is
 * copied, once the first {@linkcode KernelImage.codeBytes} are made executable.
 *
 * @example
 * ```ts
 * import type { KernelImage } from "./_kernel_image.ts";
 *
 * const describe = (kernel: KernelImage) => `${kernel.target}: ${kernel.mappedBytes} bytes`;
 * console.log(typeof describe);
 * ```
 */
export interface KernelImage {
  /** What it is compiled for. */
  readonly target: KernelTarget;
  /** The BLAKE3 C sources' version, which `blake3_version()` also returns. */
  readonly blake3Version: string;
  /** The compiler and linker that built it (a rebuild with the same ones gives the same bytes). */
  readonly toolchain: string;
  /** Length of the code and read-only data at the start of the image: page-aligned, mapped read+execute. */
  readonly codeBytes: number;
  /** Bytes to map: the code, then the writable data (page-aligned). */
  readonly mappedBytes: number;
  /** Entry points. */
  readonly entries: KernelEntries;
  /** The image bytes (up to the end of the initialised data; the rest of the mapping is zero), in base64. */
  readonly base64: string;
}

/**
 * Decodes an image's bytes.
 *
 * @param kernel The image.
 * @returns Its bytes (at most {@linkcode KernelImage.mappedBytes}).
 *
 * @example
 * ```ts
 * import { decodeKernelImage } from "./_kernel_image.ts";
 *
 * const bytes = decodeKernelImage({
 *   target: "x86_64-sysv",
 *   blake3Version: "0",
 *   toolchain: "none",
 *   codeBytes: 0,
 *   mappedBytes: 4096,
 *   entries: { hash: 0, work: 0, root: 0, version: 0 },
 *   base64: "w5A=",
 * });
 * console.log(bytes); // Uint8Array(2) [ 195, 144 ]
 * ```
 */
export function decodeKernelImage(kernel: KernelImage): Uint8Array {
  const text = atob(kernel.base64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}
