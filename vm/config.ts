/**
 * Sandbox configuration: defaults, limits and validation.
 *
 * @module
 */
import { LOG_LEVELS } from "./machine/abi.ts";

/** Guest log levels, most verbose first. */
export type LogLevel = "trace" | "debug" | "info" | "warn" | "error" | "off";

/**
 * Options for a sandbox. Sizes are in bytes and rounded up to whole 4 KiB pages.
 *
 * | field | default | allowed |
 * |---|---|---|
 * | `heapSize` | 128 KiB | 4 KiB – 512 MiB |
 * | `stackSize` | 64 KiB | 8 KiB – 16 MiB |
 * | `inputDataSize` | 16 KiB | 4 KiB – 16 MiB |
 * | `outputDataSize` | 16 KiB | 4 KiB – 16 MiB |
 * | `maxExecutionTimeMs` | 1000 | 0 (no limit) – 2^31−1 |
 * | `guestLogLevel` | `"warn"` | `trace` `debug` `info` `warn` `error` `off` |
 * | `guestInitArg` | 0 | any u64, passed to guest init |
 * | `gdbPort` | off | 0 (any free port) – 65535 |
 * | `coreDumpDir` | off | a directory path |
 * | `guestBinaryPath` | the path given to `UninitializedSandbox` | a file path |
 *
 * The total of image, heap, stack and buffers must stay under 1 GiB.
 *
 * @example
 * ```ts
 * import type { SandboxConfiguration } from "./config.ts";
 * const config: SandboxConfiguration = { heapSize: 8 << 20, maxExecutionTimeMs: 200 };
 * ```
 */
export interface SandboxConfiguration {
  /** Guest heap size. */
  heapSize?: number;
  /** Guest stack size. */
  stackSize?: number;
  /** Host-to-guest buffer size: bounds the encoded arguments of one call. */
  inputDataSize?: number;
  /** Guest-to-host buffer size: bounds one result, host call or log record. */
  outputDataSize?: number;
  /** Stop a call (or guest init) that runs longer than this; 0 disables the limit. */
  maxExecutionTimeMs?: number;
  /** Guest log records below this level are not sent to the host. */
  guestLogLevel?: LogLevel;
  /** A guest-defined value passed to guest initialisation. */
  guestInitArg?: bigint | number;
  /**
   * Debug the guest with gdb: the sandbox listens on 127.0.0.1:`gdbPort` (never another address) and speaks
   * the gdb remote protocol. Its first run (guest init, or the first call of a sandbox made from a Call
   * snapshot) waits for gdb to connect and stops at the guest's entry; gdb can also connect later and takes
   * over at the next call or within 50 ms. 0 picks a free port; a log record names it. Linux only (elsewhere
   * creating the sandbox throws `DebuggerConnectionError`). See docs/DEBUGGING.md.
   */
  gdbPort?: number;
  /**
   * Write an ELF core file into this directory whenever the guest crashes (a CPU exception, `sv_abort`, a
   * triple fault): `core.<guest name>.<pid>.<n>`, named by the error's `coreFile` and message. The directory
   * must exist.
   */
  coreDumpDir?: string;
  /**
   * Path of the guest ELF the sandbox runs, for debugging: gdb loads its symbols through the stub (gdb
   * needs no file argument), and core files name it. `UninitializedSandbox` uses the path it was given;
   * set this for `MultiUseSandbox.fromSnapshot` (or when the guest was given as bytes).
   */
  guestBinaryPath?: string;
}

/** A configuration with every field present and checked. */
export interface ResolvedConfiguration {
  /** See {@linkcode SandboxConfiguration}. */
  readonly heapSize: number;
  /** See {@linkcode SandboxConfiguration}. */
  readonly stackSize: number;
  /** See {@linkcode SandboxConfiguration}. */
  readonly inputDataSize: number;
  /** See {@linkcode SandboxConfiguration}. */
  readonly outputDataSize: number;
  /** See {@linkcode SandboxConfiguration}. */
  readonly maxExecutionTimeMs: number;
  /** See {@linkcode SandboxConfiguration}. */
  readonly guestLogLevel: LogLevel;
  /** See {@linkcode SandboxConfiguration}. */
  readonly guestInitArg: bigint;
  /** See {@linkcode SandboxConfiguration}; `undefined` when off. */
  readonly gdbPort: number | undefined;
  /** See {@linkcode SandboxConfiguration}; `undefined` when off. */
  readonly coreDumpDir: string | undefined;
  /** See {@linkcode SandboxConfiguration}. */
  readonly guestBinaryPath: string | undefined;
}

const KiB = 1024, MiB = 1024 * 1024;

/** Allowed ranges of the numeric fields: [min, max, default]. */
export const CONFIG_LIMITS = {
  heapSize: [4 * KiB, 512 * MiB, 128 * KiB],
  stackSize: [8 * KiB, 16 * MiB, 64 * KiB],
  inputDataSize: [4 * KiB, 16 * MiB, 16 * KiB],
  outputDataSize: [4 * KiB, 16 * MiB, 16 * KiB],
  maxExecutionTimeMs: [0, 2 ** 31 - 1, 1000],
} as const;

/** Allowed range of `gdbPort` (0: any free port). */
const GDB_PORT_RANGE = [0, 65535] as const;

function pageUp(n: number): number {
  return Math.ceil(n / 4096) * 4096;
}

/**
 * Fills in defaults and checks every field; throws TypeError/RangeError naming the field and the allowed
 * range.
 *
 * @example
 * ```ts
 * import { resolveConfiguration } from "./config.ts";
 * console.log(resolveConfiguration({ heapSize: 1 << 20 }).heapSize);
 * ```
 */
export function resolveConfiguration(config: SandboxConfiguration = {}): ResolvedConfiguration {
  if (typeof config !== "object" || config === null) {
    throw new TypeError("SandboxConfiguration must be an object");
  }
  const out: Record<string, unknown> = {};
  for (const [field, [min, max, def]] of Object.entries(CONFIG_LIMITS)) {
    const value = (config as Record<string, unknown>)[field] ?? def;
    if (typeof value !== "number" || !Number.isInteger(value)) {
      throw new TypeError(`SandboxConfiguration.${field} must be an integer, got ${String(value)}`);
    }
    if (value < min || value > max) {
      throw new RangeError(`SandboxConfiguration.${field} is ${value}, allowed range is ${min} to ${max}`);
    }
    out[field] = field === "maxExecutionTimeMs" ? value : pageUp(value);
  }
  const level = config.guestLogLevel ?? "warn";
  if (!LOG_LEVELS.includes(level)) {
    throw new RangeError(
      `SandboxConfiguration.guestLogLevel is "${level}", allowed: ${LOG_LEVELS.join(", ")}`,
    );
  }
  out.guestLogLevel = level;
  const arg = config.guestInitArg ?? 0n;
  const bigArg = typeof arg === "number" && Number.isSafeInteger(arg) ? BigInt(arg) : arg;
  if (typeof bigArg !== "bigint" || bigArg < 0n || bigArg >= 1n << 64n) {
    throw new RangeError(`SandboxConfiguration.guestInitArg is ${String(arg)}, allowed range is 0 to 2^64-1`);
  }
  out.guestInitArg = bigArg;
  const port = config.gdbPort;
  if (port !== undefined) {
    if (typeof port !== "number" || !Number.isInteger(port)) {
      throw new TypeError(`SandboxConfiguration.gdbPort must be an integer, got ${String(port)}`);
    }
    const [min, max] = GDB_PORT_RANGE;
    if (port < min || port > max) {
      throw new RangeError(`SandboxConfiguration.gdbPort is ${port}, allowed range is ${min} to ${max}`);
    }
  }
  out.gdbPort = port;
  for (const field of ["coreDumpDir", "guestBinaryPath"] as const) {
    const value = config[field];
    if (value !== undefined && (typeof value !== "string" || value === "")) {
      throw new TypeError(
        `SandboxConfiguration.${field} must be a non-empty path string, got ${String(value)}`,
      );
    }
    out[field] = value;
  }
  return out as unknown as ResolvedConfiguration;
}
