/**
 * Executable memory and plain OS threads, through the C library on Linux and `kernel32.dll` on Windows:
 * for machine code snapvm carries as bytes (the BLAKE3 kernel in `format/blake3/`, the PVM segment reset in
 * `vm/kvm/host_segments.ts`). Everything here goes through `Deno.dlopen`, so it needs `--allow-ffi` and
 * nothing else: no file is read or written.
 *
 * Threads are created with `pthread_create` / `CreateThread` rather than as Workers: one starts in tens of
 * microseconds (a Worker takes ~19 ms), runs only the kernel's machine code (no JavaScript, no event loop),
 * and is joined before the hash returns, so none outlives the call or keeps the process alive.
 *
 * @module
 */

import { SnapvmError } from "../errors.ts";
import { errnoName, lastErrno } from "./linux/errno.ts";
import {
  libc,
  MAP_ANONYMOUS,
  MAP_FAILED,
  MAP_PRIVATE,
  PAGE_SIZE,
  PROT_EXEC,
  PROT_READ,
  PROT_WRITE,
} from "./linux/libc.ts";
import { pthreads } from "./linux/pthreads.ts";
import { trackMapping, untrackMapping } from "./linux/reaper.ts";

export { PAGE_SIZE, PROT_EXEC };

/**
 * The Windows constants used here, from the Windows SDK: `MEM_*` and `PAGE_*` from `winnt.h`, `INFINITE`
 * and `WAIT_FAILED` from `winbase.h`.
 *
 * @example
 * ```ts
 * import { WINDOWS } from "./executable.ts";
 *
 * console.log(WINDOWS.PAGE_EXECUTE_READ); // 32
 * ```
 */
export const WINDOWS = {
  MEM_COMMIT: 0x1000,
  MEM_RESERVE: 0x2000,
  MEM_RELEASE: 0x8000,
  PAGE_READWRITE: 0x04,
  PAGE_EXECUTE_READ: 0x20,
  INFINITE: 0xffff_ffff,
  WAIT_FAILED: 0xffff_ffff,
} as const;

/**
 * Executable memory could not be prepared; the message names the OS call and its error.
 *
 * @example
 * ```ts
 * import { ExecutableMemoryError } from "./executable.ts";
 *
 * console.log(new ExecutableMemoryError("mprotect", "EACCES").message);
 * // "Cannot map machine code: mprotect failed with EACCES"
 * ```
 */
export class ExecutableMemoryError extends SnapvmError {
  /**
   * @param call The OS call that failed.
   * @param code Its error (an errno name or a Windows error number).
   */
  constructor(call: string, code: string) {
    super(`Cannot map machine code: ${call} failed with ${code}`);
    this.name = "ExecutableMemoryError";
  }
}

/**
 * Machine code copied into memory of its own, the first part executable and the rest writable.
 *
 * @example
 * ```ts ignore
 * import { openHost } from "./executable.ts";
 *
 * const memory = openHost()!.mapExecutable(new Uint8Array([0xc3]), 4096, 4096); // `ret`
 * memory.release();
 * ```
 */
export interface ExecutableMemory {
  /** The first byte of the code. */
  readonly base: Deno.PointerObject;
  /** Mapped bytes. */
  readonly size: number;
  /** Unmaps it; nothing may call into it afterwards. Calling it again does nothing. */
  release(): void;
}

/**
 * A started OS thread.
 *
 * @example
 * ```ts ignore
 * const thread = host.startThread(entry, argument);
 * thread?.join();
 * ```
 */
export interface OsThread {
  /** Waits until the thread has returned, and frees what the OS keeps for it. Call it exactly once. */
  join(): void;
}

/**
 * What the kernel needs from the operating system.
 *
 * @example
 * ```ts ignore
 * import { openHost } from "./executable.ts";
 *
 * console.log(openHost()?.os ?? "no executable memory on this OS");
 * ```
 */
export interface Host {
  /** The operating system. */
  readonly os: "linux" | "windows";
  /**
   * Copies `image` into fresh memory of `mappedBytes` bytes, then makes the first `codeBytes` read+execute
   * and leaves the rest read+write (never both writable and executable).
   *
   * @throws {ExecutableMemoryError} If the OS refuses.
   */
  mapExecutable(image: Uint8Array, codeBytes: number, mappedBytes: number): ExecutableMemory;
  /** Whether {@linkcode Host.startThread} can work here. */
  readonly canStartThreads: boolean;
  /**
   * Starts a thread running `entry(argument)`, a C function taking one pointer.
   *
   * @returns The thread, or `null` when the OS could not start one (the caller then does the work itself).
   */
  startThread(entry: Deno.PointerObject, argument: Deno.PointerObject): OsThread | null;
}

function copyInto(base: Deno.PointerObject, image: Uint8Array): void {
  // A view over the new mapping, used only here and dropped before any protection change.
  new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(base, image.length)).set(image);
}

function checkLayout(image: Uint8Array, codeBytes: number, mappedBytes: number): void {
  if (
    codeBytes % PAGE_SIZE !== 0 || mappedBytes % PAGE_SIZE !== 0 || codeBytes > mappedBytes ||
    image.length > mappedBytes
  ) {
    throw new RangeError(
      `Cannot map machine code: layout ${image.length}/${codeBytes}/${mappedBytes} is not page-aligned`,
    );
  }
}

function linuxHost(): Host {
  const c = libc();
  const threads = pthreads();
  return {
    os: "linux",
    mapExecutable(image, codeBytes, mappedBytes) {
      checkLayout(image, codeBytes, mappedBytes);
      const size = BigInt(mappedBytes);
      const base = c.mmap(null, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
      if (base === null || BigInt(Deno.UnsafePointer.value(base)) === MAP_FAILED) {
        throw new ExecutableMemoryError("mmap", errnoName(lastErrno()));
      }
      // In a Worker, its reaper unmaps it if the Worker ends first (ffi/linux/reaper.ts).
      trackMapping(base, mappedBytes);
      copyInto(base, image);
      if (c.mprotect(base, BigInt(codeBytes), PROT_READ | PROT_EXEC) !== 0) {
        const code = errnoName(lastErrno());
        untrackMapping(base);
        c.munmap(base, size);
        throw new ExecutableMemoryError("mprotect(PROT_EXEC)", code);
      }
      let mapped = true;
      return {
        base,
        size: mappedBytes,
        release() {
          if (!mapped) return;
          mapped = false;
          untrackMapping(base);
          c.munmap(base, size);
        },
      };
    },
    canStartThreads: threads !== null,
    startThread(entry, argument) {
      if (threads === null) return null;
      const id = new BigUint64Array(1); // pthread_t is an unsigned long on Linux
      if (threads.pthread_create(id, null, entry, argument) !== 0) return null;
      return { join: () => void threads.pthread_join(id[0], null) };
    },
  };
}

const KERNEL32_SYMBOLS = {
  VirtualAlloc: { parameters: ["pointer", "usize", "u32", "u32"], result: "pointer" },
  VirtualProtect: { parameters: ["pointer", "usize", "u32", "buffer"], result: "i32" },
  VirtualFree: { parameters: ["pointer", "usize", "u32"], result: "i32" },
  FlushInstructionCache: { parameters: ["pointer", "pointer", "usize"], result: "i32" },
  GetCurrentProcess: { parameters: [], result: "pointer" },
  GetLastError: { parameters: [], result: "u32" },
  CreateThread: {
    parameters: ["pointer", "usize", "pointer", "pointer", "u32", "pointer"],
    result: "pointer",
  },
  WaitForSingleObject: { parameters: ["pointer", "u32"], result: "u32" },
  CloseHandle: { parameters: ["pointer"], result: "i32" },
} as const;

function windowsHost(): Host {
  // Never closed: kernel32.dll is mapped into every Windows process for its whole life.
  const k = Deno.dlopen("kernel32.dll", KERNEL32_SYMBOLS).symbols;
  const fail = (call: string): never => {
    throw new ExecutableMemoryError(call, `error ${k.GetLastError()}`);
  };
  return {
    os: "windows",
    mapExecutable(image, codeBytes, mappedBytes) {
      checkLayout(image, codeBytes, mappedBytes);
      const base = k.VirtualAlloc(
        null,
        BigInt(mappedBytes),
        WINDOWS.MEM_COMMIT | WINDOWS.MEM_RESERVE,
        WINDOWS.PAGE_READWRITE,
      );
      if (base === null) return fail("VirtualAlloc");
      copyInto(base, image);
      const oldProtection = new Uint32Array(1);
      if (k.VirtualProtect(base, BigInt(codeBytes), WINDOWS.PAGE_EXECUTE_READ, oldProtection) === 0) {
        const error = `error ${k.GetLastError()}`;
        k.VirtualFree(base, 0n, WINDOWS.MEM_RELEASE);
        throw new ExecutableMemoryError("VirtualProtect(PAGE_EXECUTE_READ)", error);
      }
      // Required after writing code (Windows documents it for every CPU; x86 keeps caches coherent anyway).
      k.FlushInstructionCache(k.GetCurrentProcess(), base, BigInt(codeBytes));
      let mapped = true;
      return {
        base,
        size: mappedBytes,
        release() {
          if (mapped) k.VirtualFree(base, 0n, WINDOWS.MEM_RELEASE);
          mapped = false;
        },
      };
    },
    canStartThreads: true,
    startThread(entry, argument) {
      const handle = k.CreateThread(null, 0n, entry, argument, 0, null);
      if (handle === null) return null;
      return {
        join() {
          if (k.WaitForSingleObject(handle, WINDOWS.INFINITE) === WINDOWS.WAIT_FAILED) {
            // Cannot happen for a valid handle; do not close a handle a thread may still run under.
            return;
          }
          k.CloseHandle(handle);
        },
      };
    },
  };
}

let host: Host | null | undefined;

/**
 * The host for this process's OS, opened on first use.
 *
 * @returns The host, or `null` on an OS other than Linux and Windows.
 * @throws If its system library cannot be opened (also without `--allow-ffi`); callers check the permission
 *   first.
 *
 * @example
 * ```ts ignore
 * import { openHost } from "./executable.ts";
 *
 * console.log(openHost()?.canStartThreads);
 * ```
 */
export function openHost(): Host | null {
  if (host === undefined) {
    host = Deno.build.os === "linux" ? linuxHost() : Deno.build.os === "windows" ? windowsHost() : null;
  }
  return host;
}
