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
 * | `hot` | off | `true`, or `{ idleSpinMs }` (0 – 10000, default 2): see {@linkcode HotOptions} |
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
   * creating the sandbox throws `DebuggerConnectionError`). A debugged sandbox runs its guest on the calling
   * thread, where the stub is: `hot` is ignored and `callAsync` blocks while the guest runs. See
   * docs/DEBUGGING.md.
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
  /**
   * A hot sandbox: between calls its vCPU stays in the guest, on a thread of its own, polling a mailbox, so
   * a call costs no VM exit (about 1-2 µs instead of tens). `true` for the default idle spin.
   */
  hot?: boolean | HotOptions;
}

/**
 * Options of a hot sandbox (`SandboxConfiguration.hot`).
 *
 * A hot sandbox's guest polls its mailbox for `idleSpinMs` after its last message, using one CPU core
 * meanwhile, then parks itself with a VM exit; an idle hot sandbox costs no CPU. The next call after a park
 * pays one VM entry.
 *
 * @example
 * ```ts
 * import type { HotOptions } from "./config.ts";
 * const hot: HotOptions = { idleSpinMs: 5 };
 * console.log(hot.idleSpinMs);
 * ```
 */
export interface HotOptions {
  /** How long the guest polls without news before it parks, in ms (default 2, at most 10000). */
  idleSpinMs?: number;
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
  /** See {@linkcode SandboxConfiguration}: `undefined` for an ordinary sandbox. */
  readonly hot: Readonly<Required<HotOptions>> | undefined;
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
/**
 * Allowed range and default of `HotOptions.idleSpinMs`: [min, max, default].
 *
 * @example
 * ```ts
 * import { HOT_IDLE_SPIN_MS } from "./config.ts";
 * console.log(HOT_IDLE_SPIN_MS[2]); // 2
 * ```
 */
export const HOT_IDLE_SPIN_MS = [0, 10_000, 2] as const;

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
  out.hot = resolveHot(config.hot);
  return out as unknown as ResolvedConfiguration;
}

function resolveHot(hot: unknown): Readonly<Required<HotOptions>> | undefined {
  if (hot === undefined || hot === false) return undefined;
  const [min, max, def] = HOT_IDLE_SPIN_MS;
  if (hot === true) return Object.freeze({ idleSpinMs: def });
  if (typeof hot !== "object" || hot === null) {
    throw new TypeError(`SandboxConfiguration.hot must be a boolean or an object, got ${String(hot)}`);
  }
  const ms = (hot as HotOptions).idleSpinMs ?? def;
  if (typeof ms !== "number" || !Number.isFinite(ms)) {
    throw new TypeError(`SandboxConfiguration.hot.idleSpinMs must be a number, got ${String(ms)}`);
  }
  if (ms < min || ms > max) {
    throw new RangeError(`SandboxConfiguration.hot.idleSpinMs is ${ms}, allowed range is ${min} to ${max}`);
  }
  return Object.freeze({ idleSpinMs: ms });
}
