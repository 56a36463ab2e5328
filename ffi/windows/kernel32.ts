/**
 * The kernel32 / kernelbase functions the Windows backend needs (virtual memory with placeholders, file
 * mappings, files, handles, errors), and their constants. `VirtualAlloc2`, `MapViewOfFile3` and
 * `UnmapViewOfFile2` are exported by `kernelbase.dll` only (Windows 10 1803+). Constants are pinned against
 * `winnt.h`, `memoryapi.h`, `fileapi.h`, `handleapi.h` and `winerror.h` (mingw-w64) in
 * `tests/ffi/windows/kernel32_test.ts`.
 *
 * Both DLLs are opened on first use, never at module load.
 *
 * @module
 */
import { Win32Error } from "./hresult.ts";

const KERNEL32 = {
  VirtualFree: { parameters: ["pointer", "usize", "u32"], result: "i32" },
  VirtualProtect: { parameters: ["pointer", "usize", "u32", "buffer"], result: "i32" },
  CreateFileW: {
    parameters: ["buffer", "u32", "u32", "pointer", "u32", "u32", "pointer"],
    result: "pointer",
  },
  CreateFileMappingW: {
    parameters: ["pointer", "pointer", "u32", "u32", "u32", "pointer"],
    result: "pointer",
  },
  MapViewOfFile: { parameters: ["pointer", "u32", "u32", "u32", "usize"], result: "pointer" },
  UnmapViewOfFile: { parameters: ["pointer"], result: "i32" },
  CloseHandle: { parameters: ["pointer"], result: "i32" },
  GetLastError: { parameters: [], result: "u32" },
  GetCurrentProcess: { parameters: [], result: "pointer" },
  GetCurrentProcessId: { parameters: [], result: "u32" },
  GetFileInformationByHandle: { parameters: ["pointer", "buffer"], result: "i32" },
  GetFileType: { parameters: ["pointer"], result: "u32" },
  ReadFile: { parameters: ["pointer", "buffer", "u32", "buffer", "buffer"], result: "i32" },
  DuplicateHandle: {
    parameters: ["pointer", "pointer", "pointer", "buffer", "u32", "i32", "u32"],
    result: "i32",
  },
  CreateMutexW: { parameters: ["pointer", "i32", "buffer"], result: "pointer" },
  RtlMoveMemory: { parameters: ["usize", "usize", "usize"], result: "void" },
} as const;

const KERNELBASE = {
  VirtualAlloc2: {
    parameters: ["pointer", "pointer", "usize", "u32", "u32", "pointer", "u32"],
    result: "pointer",
  },
  MapViewOfFile3: {
    parameters: ["pointer", "pointer", "pointer", "u64", "usize", "u32", "u32", "pointer", "u32"],
    result: "pointer",
  },
  UnmapViewOfFile2: { parameters: ["pointer", "pointer", "u32"], result: "i32" },
} as const;

/** The opened kernel32 symbols. */
export type Kernel32Symbols = Deno.DynamicLibrary<typeof KERNEL32>["symbols"];
/** The opened kernelbase symbols. */
export type KernelbaseSymbols = Deno.DynamicLibrary<typeof KERNELBASE>["symbols"];

let k32: Deno.DynamicLibrary<typeof KERNEL32> | undefined;
let kbase: Deno.DynamicLibrary<typeof KERNELBASE> | undefined;

/**
 * kernel32 symbols, opened on first call.
 *
 * @example
 * ```ts ignore
 * import { kernel32 } from "./kernel32.ts";
 * console.log(kernel32().GetCurrentProcessId());
 * ```
 */
export function kernel32(): Kernel32Symbols {
  if (k32 === undefined) k32 = Deno.dlopen("kernel32.dll", KERNEL32);
  return k32.symbols;
}

/**
 * kernelbase symbols (placeholder APIs), opened on first call.
 *
 * @example
 * ```ts ignore
 * import { kernelbase } from "./kernel32.ts";
 * console.log(typeof kernelbase().VirtualAlloc2);
 * ```
 */
export function kernelbase(): KernelbaseSymbols {
  if (kbase === undefined) kbase = Deno.dlopen("kernelbase.dll", KERNELBASE);
  return kbase.symbols;
}

/**
 * Page protections (`winnt.h`).
 *
 * @example
 * ```ts
 * import { PAGE } from "./kernel32.ts";
 * console.log(PAGE.WRITECOPY); // 8
 * ```
 */
export const PAGE = { NOACCESS: 0x01, READONLY: 0x02, READWRITE: 0x04, WRITECOPY: 0x08 } as const;

/**
 * Allocation and free types (`winnt.h`). `MEM_REPLACE_PLACEHOLDER` and `MEM_DECOMMIT` share 0x4000: the
 * first is an allocation type, the second a free type.
 *
 * @example
 * ```ts
 * import { MEM } from "./kernel32.ts";
 * console.log((MEM.RESERVE | MEM.RESERVE_PLACEHOLDER).toString(16)); // 42000
 * ```
 */
export const MEM = {
  COMMIT: 0x1000,
  RESERVE: 0x2000,
  REPLACE_PLACEHOLDER: 0x4000,
  DECOMMIT: 0x4000,
  RELEASE: 0x8000,
  RESERVE_PLACEHOLDER: 0x40000,
  COALESCE_PLACEHOLDERS: 0x1,
  PRESERVE_PLACEHOLDER: 0x2,
} as const;

/**
 * File-mapping view access (`memoryapi.h`; `FILE_MAP_READ` = `SECTION_MAP_READ`, `FILE_MAP_WRITE` =
 * `SECTION_MAP_WRITE` in `winnt.h`).
 *
 * @example
 * ```ts
 * import { FILE_MAP } from "./kernel32.ts";
 * console.log(FILE_MAP.READ); // 4
 * ```
 */
export const FILE_MAP = { COPY: 0x1, WRITE: 0x2, READ: 0x4 } as const;

/**
 * `CreateFileW` arguments and file constants (`winnt.h`, `fileapi.h`, `winbase.h`).
 *
 * @example
 * ```ts
 * import { FILE } from "./kernel32.ts";
 * console.log(FILE.OPEN_EXISTING); // 3
 * ```
 */
export const FILE = {
  GENERIC_READ: 0x80000000,
  SHARE_READ: 0x1,
  SHARE_WRITE: 0x2,
  SHARE_DELETE: 0x4,
  OPEN_EXISTING: 3,
  ATTRIBUTE_NORMAL: 0x80,
  ATTRIBUTE_DIRECTORY: 0x10,
  TYPE_DISK: 0x1,
} as const;

/**
 * `DuplicateHandle` options (`winnt.h`).
 *
 * @example
 * ```ts
 * import { DUPLICATE } from "./kernel32.ts";
 * console.log(DUPLICATE.CLOSE_SOURCE); // 1
 * ```
 */
export const DUPLICATE = { CLOSE_SOURCE: 0x1, SAME_ACCESS: 0x2 } as const;

/**
 * `BY_HANDLE_FILE_INFORMATION` (52 B, `fileapi.h`): dwFileAttributes @0, three FILETIMEs @4/@12/@20,
 * dwVolumeSerialNumber @28, nFileSizeHigh @32, nFileSizeLow @36, nNumberOfLinks @40, nFileIndexHigh @44,
 * nFileIndexLow @48.
 *
 * @example
 * ```ts
 * import { FILE_INFO } from "./kernel32.ts";
 * console.log(FILE_INFO.SIZE); // 52
 * ```
 */
export const FILE_INFO = {
  SIZE: 52,
  ATTRIBUTES: 0,
  LAST_WRITE_TIME: 20,
  VOLUME_SERIAL: 28,
  SIZE_HIGH: 32,
  SIZE_LOW: 36,
  INDEX_HIGH: 44,
  INDEX_LOW: 48,
} as const;

/**
 * `OVERLAPPED` (32 B on x64, `minwinbase.h`): Internal @0, InternalHigh @8, Offset u32 @16, OffsetHigh u32
 * @20, hEvent @24. Used for positional `ReadFile` on a synchronous handle.
 *
 * @example
 * ```ts
 * import { OVERLAPPED } from "./kernel32.ts";
 * console.log(OVERLAPPED.OFFSET); // 16
 * ```
 */
export const OVERLAPPED = { SIZE: 32, OFFSET: 16, OFFSET_HIGH: 20 } as const;

/**
 * `INVALID_HANDLE_VALUE`, `(HANDLE)(LONG_PTR)-1`, as a pointer value. `GetCurrentProcess()` returns the
 * same value as a pseudo-handle.
 *
 * @example
 * ```ts
 * import { INVALID_HANDLE_VALUE } from "./kernel32.ts";
 * console.log(INVALID_HANDLE_VALUE.toString(16)); // ffffffffffffffff
 * ```
 */
export const INVALID_HANDLE_VALUE = 0xffff_ffff_ffff_ffffn;

/**
 * `GetLastError()`. Read it right after the failing call, before any other FFI call.
 *
 * @example
 * ```ts ignore
 * import { lastError } from "./kernel32.ts";
 * console.log(lastError());
 * ```
 */
export function lastError(): number {
  return kernel32().GetLastError();
}

/**
 * Throws {@linkcode Win32Error} when a BOOL result is 0.
 *
 * @example
 * ```ts ignore
 * import { checkBool, kernel32 } from "./kernel32.ts";
 * checkBool("CloseHandle", kernel32().CloseHandle(handle));
 * ```
 */
export function checkBool(call: string, result: number): void {
  if (result === 0) throw new Win32Error(call, lastError());
}

/**
 * Throws {@linkcode Win32Error} when a returned handle or address is NULL (or, with `invalidToo`,
 * `INVALID_HANDLE_VALUE`, which `CreateFileW` returns on failure); returns the pointer otherwise.
 *
 * @example
 * ```ts ignore
 * import { checkPointer, kernel32 } from "./kernel32.ts";
 * const h = checkPointer("CreateMutexW", kernel32().CreateMutexW(null, 0, name));
 * ```
 */
export function checkPointer(
  call: string,
  p: Deno.PointerValue,
  invalidToo = false,
): Deno.PointerObject {
  if (p === null || (invalidToo && BigInt(Deno.UnsafePointer.value(p)) === INVALID_HANDLE_VALUE)) {
    throw new Win32Error(call, lastError());
  }
  return p;
}

/**
 * A NUL-terminated UTF-16LE string for `W` functions.
 *
 * @example
 * ```ts
 * import { wide } from "./kernel32.ts";
 * console.log(wide("ab").length); // 6
 * ```
 */
export function wide(s: string): Uint8Array {
  const out = new Uint8Array((s.length + 1) * 2);
  const v = new DataView(out.buffer);
  for (let i = 0; i < s.length; i++) v.setUint16(i * 2, s.charCodeAt(i), true);
  return out;
}
