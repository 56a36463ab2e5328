/**
 * The built-in BLAKE3 kernel: the official C implementation, compiled into position-independent machine code
 * that ships inside this module (`_kernel_x86_64_*.ts`, built by `build_kernel.ts`), copied into executable
 * memory and called through `Deno.UnsafeFnPointer`. It needs `--allow-ffi` only: no file is written, read or
 * `dlopen`ed except the system C library (`kernel32.dll` on Windows). Internal to the format module.
 *
 * Large inputs are hashed on several threads: the input is cut into equal leaves (whole BLAKE3 subtrees),
 * helper threads and the calling thread take leaves from a shared counter until none is left, and the leaves'
 * chaining values are joined into the root on the calling thread (see `_kernel.c`). The digest is the same
 * as a single-threaded hash. When no thread can be started, the calling thread computes every leaf itself.
 *
 * @module
 */

import { type ExecutableMemory, type Host, openHost } from "../../ffi/executable.ts";
import { decodeKernelImage, type KernelImage, type KernelTarget } from "./_kernel_image.ts";
import { KERNEL_X86_64_SYSV } from "./_kernel_x86_64_sysv.ts";
import { KERNEL_X86_64_WIN64 } from "./_kernel_x86_64_win64.ts";

/** BLAKE3's chunk: the leaves of its tree. */
export const CHUNK_BYTES = 1024;

/** Inputs below this are hashed on the calling thread: starting threads costs more than it saves. */
export const PARALLEL_MIN_BYTES = 4 << 20;

/** Leaves are at least this big, so that each uses the widest SIMD kernel with little per-leaf overhead. */
export const MIN_LEAF_BYTES = 256 << 10;

/** About this many leaves per thread, so that a thread that starts late or is descheduled is caught up. */
const LEAVES_PER_THREAD = 8;

/** At most this many threads per hash: beyond it, memory bandwidth is the limit, not the cores. */
export const MAX_THREADS = 16;

/** Byte offsets in `struct snapvm_blake3_job` (`_kernel.c`), all 8-byte fields. */
const JOB_FIELDS = { input: 0, inputLen: 1, leafLen: 2, leafCount: 3, nextLeaf: 4, cvs: 5 } as const;
const JOB_WORDS = 6;

/** An official BLAKE3 test vector (input: bytes `i % 251`), checked once after the kernel is mapped. */
const SELF_TEST = {
  length: 1025,
  digest: "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444",
};

/**
 * The kernel could not be loaded, or it did not pass its self-test.
 *
 * @example
 * ```ts
 * import { KernelLoadError } from "./_native.ts";
 *
 * console.log(new KernelLoadError("no kernel for linux aarch64").message);
 * // "Cannot load the built-in BLAKE3 kernel: no kernel for linux aarch64"
 * ```
 */
export class KernelLoadError extends Error {
  /** @param reason What went wrong. */
  constructor(reason: string) {
    super(`Cannot load the built-in BLAKE3 kernel: ${reason}`);
    this.name = "KernelLoadError";
  }
}

/**
 * The loaded kernel.
 *
 * @example
 * ```ts ignore
 * import { loadNativeKernel } from "./_native.ts";
 *
 * using kernel = loadNativeKernel();
 * console.log(kernel.hash(new Uint8Array(0)).length); // 32
 * ```
 */
export interface NativeKernel extends Disposable {
  /** The image's target. */
  readonly target: KernelTarget;
  /** `blake3_version()` of the compiled C sources. */
  readonly version: string;
  /** How many threads a large hash uses: the CPU count (at most {@linkcode MAX_THREADS}), 1 without threads. */
  readonly threads: number;
  /**
   * BLAKE3-256 of `data`, on {@linkcode NativeKernel.threads} threads from {@linkcode PARALLEL_MIN_BYTES}
   * up. Reads the bytes in place (no copy).
   */
  hash(data: Uint8Array): Uint8Array;
  /**
   * BLAKE3-256 of `data` with an explicit split, for tests and benchmarks.
   *
   * @param threads Threads to use (the calling one included); 1 hashes on the calling thread without leaves.
   * @param leafBytes Leaf size: a power of two, at least 1024. Defaults to the size {@linkcode hash} picks.
   */
  hashWith(data: Uint8Array, threads: number, leafBytes?: number): Uint8Array;
  /** Unmaps the kernel; the hash methods throw afterwards. */
  close(): void;
}

/**
 * The image for this OS and CPU.
 *
 * @param os `Deno.build.os`.
 * @param arch `Deno.build.arch`.
 * @returns The image, or `null` where there is none (every OS but Linux and Windows, every CPU but x86-64).
 *
 * @example
 * ```ts
 * import { kernelImageFor } from "./_native.ts";
 *
 * console.log(kernelImageFor("linux", "x86_64")?.target); // "x86_64-sysv"
 * console.log(kernelImageFor("darwin", "aarch64")); // null
 * ```
 */
export function kernelImageFor(os: typeof Deno.build.os, arch: typeof Deno.build.arch): KernelImage | null {
  if (arch !== "x86_64") return null;
  if (os === "linux") return KERNEL_X86_64_SYSV;
  if (os === "windows") return KERNEL_X86_64_WIN64;
  return null;
}

/**
 * The leaf size {@linkcode NativeKernel.hash} uses: about {@linkcode LEAVES_PER_THREAD} leaves per thread,
 * rounded down to a power of two, at least {@linkcode MIN_LEAF_BYTES}.
 *
 * @param length Input length in bytes.
 * @param threads Threads that will hash it.
 * @returns Bytes per leaf.
 *
 * @example
 * ```ts
 * import { leafBytesFor } from "./_native.ts";
 *
 * console.log(leafBytesFor(256 << 20, 2)); // 16777216
 * ```
 */
export function leafBytesFor(length: number, threads: number): number {
  let leaf = MIN_LEAF_BYTES;
  while (leaf * 2 * threads * LEAVES_PER_THREAD <= length) leaf *= 2;
  return leaf;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function pointerOf(data: ArrayBufferView): Deno.PointerObject {
  const pointer = Deno.UnsafePointer.of(data);
  if (pointer === null) throw new KernelLoadError("an input buffer has no address");
  return pointer;
}

/**
 * Options of {@linkcode loadNativeKernel}.
 *
 * @example
 * ```ts
 * import type { NativeKernelOptions } from "./_native.ts";
 *
 * const options: NativeKernelOptions = { maxThreads: 1 };
 * console.log(options);
 * ```
 */
export interface NativeKernelOptions {
  /** The image; defaults to the one for this OS and CPU. */
  kernel?: KernelImage | null;
  /** Upper bound for {@linkcode NativeKernel.threads}; defaults to the CPU count. */
  maxThreads?: number;
  /** Executable memory and threads; defaults to the OS's (tests wrap it to refuse threads). */
  host?: Host | null;
}

/**
 * Maps an image into executable memory, checks it against an official test vector, and wraps it.
 *
 * @param options Image, thread bound and host overrides.
 * @returns The kernel.
 * @throws {KernelLoadError} When there is no image for this platform, the OS refuses executable memory, or the
 *   self-test fails. Also throws without `--allow-ffi`; callers check the permission first.
 *
 * @example
 * ```ts ignore
 * import { loadNativeKernel } from "./_native.ts";
 *
 * const kernel = loadNativeKernel();
 * console.log(kernel.version, kernel.threads);
 * ```
 */
export function loadNativeKernel(options: NativeKernelOptions = {}): NativeKernel {
  const kernel = options.kernel === undefined
    ? kernelImageFor(Deno.build.os, Deno.build.arch)
    : options.kernel;
  const maxThreads = options.maxThreads ?? navigator.hardwareConcurrency;
  if (kernel === null) throw new KernelLoadError(`no kernel for ${Deno.build.os} ${Deno.build.arch}`);
  let host: Host | null;
  try {
    host = options.host === undefined ? openHost() : options.host;
  } catch (error) {
    throw new KernelLoadError(
      `cannot open the system library: ${error instanceof Error ? error.message : error}`,
    );
  }
  if (host === null) throw new KernelLoadError(`no executable memory on ${Deno.build.os}`);
  let memory: ExecutableMemory;
  try {
    memory = host.mapExecutable(decodeKernelImage(kernel), kernel.codeBytes, kernel.mappedBytes);
  } catch (error) {
    throw new KernelLoadError(error instanceof Error ? error.message : String(error));
  }
  const base = BigInt(Deno.UnsafePointer.value(memory.base));
  // Untyped pointers into the image; each becomes a typed function pointer below.
  const entry = (offset: number) => Deno.UnsafePointer.create<never>(base + BigInt(offset))!;
  const hashFn = new Deno.UnsafeFnPointer(entry(kernel.entries.hash), {
    parameters: ["buffer", "u64", "buffer"],
    result: "void",
  });
  const workFn = new Deno.UnsafeFnPointer(entry(kernel.entries.work), {
    parameters: ["buffer"],
    result: "pointer",
  });
  const rootFn = new Deno.UnsafeFnPointer(entry(kernel.entries.root), {
    parameters: ["buffer", "u64", "buffer"],
    result: "i32",
  });
  const versionFn = new Deno.UnsafeFnPointer(entry(kernel.entries.version), {
    parameters: [],
    result: "pointer",
  });
  const workEntry = entry(kernel.entries.work);
  let open = true;

  const ensureOpen = () => {
    if (!open) throw new KernelLoadError("the kernel was closed");
  };
  const single = (data: Uint8Array): Uint8Array => {
    const out = new Uint8Array(32);
    hashFn.call(data, BigInt(data.byteLength), out);
    return out;
  };
  const parallel = (data: Uint8Array, threads: number, leafBytes: number): Uint8Array => {
    const leafCount = Math.ceil(data.byteLength / leafBytes);
    const cvs = new Uint8Array(leafCount * 32);
    const job = new BigUint64Array(JOB_WORDS);
    job[JOB_FIELDS.input] = BigInt(Deno.UnsafePointer.value(pointerOf(data)));
    job[JOB_FIELDS.inputLen] = BigInt(data.byteLength);
    job[JOB_FIELDS.leafLen] = BigInt(leafBytes);
    job[JOB_FIELDS.leafCount] = BigInt(leafCount);
    job[JOB_FIELDS.nextLeaf] = 0n;
    job[JOB_FIELDS.cvs] = BigInt(Deno.UnsafePointer.value(pointerOf(cvs)));
    const jobPointer = pointerOf(job);
    const helpers = [];
    try {
      for (let i = 1; i < Math.min(threads, leafCount); i++) {
        const thread = host.startThread(workEntry, jobPointer);
        if (thread === null) break; // the threads that did start, and this one, take the remaining leaves
        helpers.push(thread);
      }
      workFn.call(job);
    } finally {
      // `data`, `job` and `cvs` stay referenced (and so alive) until every helper has returned.
      for (const thread of helpers) thread.join();
    }
    const out = new Uint8Array(32);
    if (rootFn.call(cvs, BigInt(leafCount), out) !== 0) {
      // Unreachable: callers only split inputs longer than one leaf.
      throw new RangeError(`Cannot hash: ${leafCount} leaf, expected at least 2`);
    }
    return out;
  };

  const self: NativeKernel = {
    target: kernel.target,
    version: Deno.UnsafePointerView.getCString(versionFn.call()!),
    threads: host.canStartThreads ? Math.max(1, Math.min(MAX_THREADS, Math.floor(maxThreads) || 1)) : 1,
    hash(data) {
      ensureOpen();
      if (self.threads < 2 || data.byteLength < PARALLEL_MIN_BYTES) return single(data);
      return parallel(data, self.threads, leafBytesFor(data.byteLength, self.threads));
    },
    hashWith(data, threads, leafBytes = leafBytesFor(data.byteLength, threads)) {
      ensureOpen();
      if (!Number.isInteger(leafBytes) || leafBytes < CHUNK_BYTES || (leafBytes & (leafBytes - 1)) !== 0) {
        throw new RangeError(`Cannot hash: leaf size ${leafBytes} is not a power of two of at least 1024`);
      }
      // One leaf is the whole tree, whose root the single-threaded path computes.
      if (threads < 2 || data.byteLength <= leafBytes) return single(data);
      return parallel(data, threads, leafBytes);
    },
    close() {
      open = false;
      memory.release();
    },
    [Symbol.dispose]() {
      self.close();
    },
  };

  const probe = Uint8Array.from({ length: SELF_TEST.length }, (_, i) => i % 251);
  const digest = hex(single(probe));
  if (self.version !== kernel.blake3Version || digest !== SELF_TEST.digest) {
    memory.release();
    throw new KernelLoadError(
      `self-test failed: version ${self.version}, expected ${kernel.blake3Version}; ` +
        `digest ${digest}, expected ${SELF_TEST.digest}`,
    );
  }
  return self;
}
