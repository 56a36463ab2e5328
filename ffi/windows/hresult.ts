/**
 * HRESULT and Win32 error values the Windows backend meets, with their names and what they mean, and the
 * typed error a failed call becomes. Values are pinned against the Windows SDK headers (as shipped by
 * mingw-w64) in `tests/ffi/windows/hresult_test.ts`.
 *
 * Nothing here touches a DLL: the module loads on every platform.
 *
 * @module
 */
import { OsCallError } from "../../errors.ts";

/**
 * HRESULT values (as unsigned 32-bit numbers) with a name and a sentence each. `WHV_E_*` come from
 * `winerror.h`'s virtualization facility; `ERROR_VID_*` / `ERROR_HV_*` are NTSTATUS-shaped codes that
 * WinHvPlatform returns unchanged.
 *
 * @example
 * ```ts
 * import { HRESULT } from "./hresult.ts";
 * console.log(HRESULT.E_INVALIDARG.toString(16)); // 80070057
 * ```
 */
export const HRESULT = {
  S_OK: 0x00000000,
  E_NOTIMPL: 0x80004001,
  E_FAIL: 0x80004005,
  E_ACCESSDENIED: 0x80070005,
  E_OUTOFMEMORY: 0x8007000e,
  E_INVALIDARG: 0x80070057,
  E_UNEXPECTED: 0x8000ffff,
  WHV_E_UNKNOWN_CAPABILITY: 0x80370300,
  WHV_E_INSUFFICIENT_BUFFER: 0x80370301,
  WHV_E_UNKNOWN_PROPERTY: 0x80370302,
  WHV_E_UNSUPPORTED_HYPERVISOR_CONFIG: 0x80370303,
  WHV_E_INVALID_PARTITION_CONFIG: 0x80370304,
  WHV_E_GPA_RANGE_NOT_FOUND: 0x80370305,
  WHV_E_VP_ALREADY_EXISTS: 0x80370306,
  WHV_E_VP_DOES_NOT_EXIST: 0x80370307,
  WHV_E_INVALID_VP_STATE: 0x80370308,
  WHV_E_INVALID_VP_REGISTER_NAME: 0x80370309,
  ERROR_HV_NOT_PRESENT: 0xc0351000,
  ERROR_VID_PARTITION_ALREADY_EXISTS: 0xc0370008,
} as const;

const HRESULT_TEXT: Record<number, string> = {
  [HRESULT.E_NOTIMPL]: "not implemented",
  [HRESULT.E_FAIL]: "unspecified failure",
  [HRESULT.E_ACCESSDENIED]: "access denied",
  [HRESULT.E_OUTOFMEMORY]: "out of memory",
  [HRESULT.E_INVALIDARG]: "invalid argument",
  [HRESULT.E_UNEXPECTED]: "unexpected failure",
  [HRESULT.WHV_E_UNKNOWN_CAPABILITY]: "the hypervisor does not know this capability",
  [HRESULT.WHV_E_INSUFFICIENT_BUFFER]: "the buffer is too small",
  [HRESULT.WHV_E_UNKNOWN_PROPERTY]: "the hypervisor does not know this partition property",
  [HRESULT.WHV_E_UNSUPPORTED_HYPERVISOR_CONFIG]: "the hypervisor configuration is not supported",
  [HRESULT.WHV_E_INVALID_PARTITION_CONFIG]: "the partition configuration is invalid",
  [HRESULT.WHV_E_GPA_RANGE_NOT_FOUND]: "no guest-physical range is mapped (or dirty-tracked) there",
  [HRESULT.WHV_E_VP_ALREADY_EXISTS]: "the virtual processor already exists",
  [HRESULT.WHV_E_VP_DOES_NOT_EXIST]: "the virtual processor does not exist",
  [HRESULT.WHV_E_INVALID_VP_STATE]: "the virtual processor is in a state that does not allow this",
  [HRESULT.WHV_E_INVALID_VP_REGISTER_NAME]: "the register name is not valid",
  [HRESULT.ERROR_HV_NOT_PRESENT]: "no hypervisor is running",
  [HRESULT.ERROR_VID_PARTITION_ALREADY_EXISTS]: "this process already has a partition with mapped memory",
};

const HRESULT_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(HRESULT).map(([name, value]) => [value, name]),
);

/**
 * Win32 error codes (`GetLastError()`) the backend distinguishes.
 *
 * @example
 * ```ts
 * import { WIN32_ERROR } from "./hresult.ts";
 * console.log(WIN32_ERROR.ERROR_ALREADY_EXISTS); // 183
 * ```
 */
export const WIN32_ERROR = {
  ERROR_FILE_NOT_FOUND: 2,
  ERROR_PATH_NOT_FOUND: 3,
  ERROR_ACCESS_DENIED: 5,
  ERROR_NOT_ENOUGH_MEMORY: 8,
  ERROR_SHARING_VIOLATION: 32,
  ERROR_HANDLE_EOF: 38,
  ERROR_NOT_SUPPORTED: 50,
  ERROR_INVALID_PARAMETER: 87,
  ERROR_BROKEN_PIPE: 109,
  ERROR_MOD_NOT_FOUND: 126,
  ERROR_PROC_NOT_FOUND: 127,
  ERROR_ALREADY_EXISTS: 183,
  ERROR_INVALID_ADDRESS: 487,
  ERROR_COMMITMENT_LIMIT: 1455,
} as const;

const WIN32_TEXT: Record<number, string> = {
  [WIN32_ERROR.ERROR_FILE_NOT_FOUND]: "file not found",
  [WIN32_ERROR.ERROR_PATH_NOT_FOUND]: "path not found",
  [WIN32_ERROR.ERROR_ACCESS_DENIED]: "access denied",
  [WIN32_ERROR.ERROR_NOT_ENOUGH_MEMORY]: "not enough memory",
  [WIN32_ERROR.ERROR_SHARING_VIOLATION]: "the file is in use by another process",
  [WIN32_ERROR.ERROR_HANDLE_EOF]: "end of file",
  [WIN32_ERROR.ERROR_NOT_SUPPORTED]: "not supported",
  [WIN32_ERROR.ERROR_INVALID_PARAMETER]: "invalid parameter",
  [WIN32_ERROR.ERROR_BROKEN_PIPE]: "the pipe has been ended",
  [WIN32_ERROR.ERROR_MOD_NOT_FOUND]: "module not found",
  [WIN32_ERROR.ERROR_PROC_NOT_FOUND]: "procedure not found",
  [WIN32_ERROR.ERROR_ALREADY_EXISTS]: "already exists",
  [WIN32_ERROR.ERROR_INVALID_ADDRESS]: "invalid address",
  [WIN32_ERROR.ERROR_COMMITMENT_LIMIT]:
    "the commit limit is reached (enlarge the paging file or run fewer sandboxes at once)",
};

const WIN32_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(WIN32_ERROR).map(([name, value]) => [value, name]),
);

/**
 * An HRESULT as an unsigned 32-bit number. FFI returns `i32`, so failures arrive negative.
 *
 * @example
 * ```ts
 * import { toUnsigned } from "./hresult.ts";
 * console.log(toUnsigned(-2147024809).toString(16)); // 80070057
 * ```
 */
export function toUnsigned(hr: number): number {
  return hr >>> 0;
}

/**
 * True for a failed HRESULT (severity bit set).
 *
 * @example
 * ```ts
 * import { failed } from "./hresult.ts";
 * console.log(failed(0), failed(-2147024809)); // false true
 * ```
 */
export function failed(hr: number): boolean {
  return (hr >>> 0) >= 0x80000000;
}

/**
 * `NAME (0xXXXXXXXX): meaning` for an HRESULT, or `HRESULT 0xXXXXXXXX` (with its Win32 code when it
 * wraps one: facility 7) for values not in {@linkcode HRESULT}.
 *
 * @example
 * ```ts
 * import { describeHresult } from "./hresult.ts";
 * console.log(describeHresult(0x80370305));
 * ```
 */
export function describeHresult(hr: number): string {
  const u = hr >>> 0;
  const hex = `0x${u.toString(16).toUpperCase().padStart(8, "0")}`;
  const name = HRESULT_NAMES[u];
  if (name !== undefined) return `${name} (${hex}): ${HRESULT_TEXT[u] ?? "failure"}`;
  // HRESULT_FROM_WIN32: severity 1, facility 7 (FACILITY_WIN32), code in the low 16 bits.
  if (((u & 0xffff0000) >>> 0) === 0x80070000) return `HRESULT ${hex}, ${describeWin32Error(u & 0xffff)}`;
  return `HRESULT ${hex}`;
}

/**
 * `NAME (N): meaning` for a Win32 error code, or `Win32 error N`.
 *
 * @example
 * ```ts
 * import { describeWin32Error } from "./hresult.ts";
 * console.log(describeWin32Error(1455));
 * ```
 */
export function describeWin32Error(code: number): string {
  const name = WIN32_NAMES[code];
  return name === undefined ? `Win32 error ${code}` : `${name} (${code}): ${WIN32_TEXT[code]}`;
}

/**
 * A WinHvPlatform call returned a failed HRESULT. `call` names the function, `hresult` is the unsigned
 * value and `code` its symbolic name (or the hex value).
 *
 * @example
 * ```ts
 * import { HresultError } from "./hresult.ts";
 * const e = new HresultError("WHvMapGpaRange", 0x80070057);
 * console.log(e.message); // WHvMapGpaRange failed: E_INVALIDARG (0x80070057): invalid argument
 * ```
 */
export class HresultError extends OsCallError {
  /** The HRESULT, unsigned. */
  readonly hresult: number;
  /** Builds the error from the call name and the HRESULT (signed or unsigned). */
  constructor(call: string, hr: number) {
    const u = hr >>> 0;
    super(call, HRESULT_NAMES[u] ?? `0x${u.toString(16).toUpperCase().padStart(8, "0")}`);
    this.message = `${call} failed: ${describeHresult(hr)}`;
    this.name = "HresultError";
    this.hresult = u;
  }
}

/**
 * A kernel32/kernelbase call failed; `error` is `GetLastError()` read right after it.
 *
 * @example
 * ```ts
 * import { Win32Error } from "./hresult.ts";
 * console.log(new Win32Error("VirtualAlloc2", 1455).message);
 * ```
 */
export class Win32Error extends OsCallError {
  /** The Win32 error code. */
  readonly error: number;
  /** Builds the error from the call name and the Win32 error code. */
  constructor(call: string, error: number) {
    super(call, WIN32_NAMES[error] ?? `Win32 error ${error}`);
    this.message = `${call} failed: ${describeWin32Error(error)}`;
    this.name = "Win32Error";
    this.error = error;
  }
}

/**
 * Throws {@linkcode HresultError} for a failed HRESULT; returns nothing otherwise.
 *
 * @example
 * ```ts
 * import { checkHresult } from "./hresult.ts";
 * checkHresult("WHvSetupPartition", 0);
 * ```
 */
export function checkHresult(call: string, hr: number): void {
  if (failed(hr)) throw new HresultError(call, hr);
}
