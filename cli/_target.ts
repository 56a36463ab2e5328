/**
 * What the `run`, `snapshot` and `bench` commands start from: a snapshot file, or a guest binary given as a
 * path, a URL, or `example:<name>` (the guests shipped in the package); and the sandbox options they share.
 *
 * @module
 */
import {
  CONFIG_LIMITS,
  type LogLevel,
  MultiUseSandbox,
  type SandboxConfiguration,
  Snapshot,
  UninitializedSandbox,
} from "../mod.ts";
import { type ExampleGuest, exampleGuestUrl, loadGuest } from "../guest/sdk.ts";
import { type OptionSpec, type ParsedArgs, parseSize } from "./_args.ts";
import { OperationError, UsageError } from "./_errors.ts";

/**
 * A guest binary in memory (with its path when it is a local file: snapshots record it), or a snapshot file
 * on disk (snapshots are mapped, so they must be local).
 */
export type Target =
  | { kind: "elf"; name: string; bytes: Uint8Array; path?: string }
  | { kind: "snapshot"; name: string; path: string };

const HLS_MAGIC = [0x48, 0x4c, 0x53, 0x00]; // "HLS\0"
const ELF_MAGIC = [0x7f, 0x45, 0x4c, 0x46]; // "\x7fELF"

function startsWith(bytes: Uint8Array, magic: readonly number[]): boolean {
  return magic.every((b, i) => bytes[i] === b);
}

/** Text for help screens: the forms a guest can be given in. */
export const GUEST_FORMS = "a path, a file:/http:/https: URL, or example:hello / example:testguest";

/**
 * Resolves a command-line guest or snapshot: `example:<name>`, a URL, or a path (snapshot or ELF, told
 * apart by the file's magic bytes).
 */
export async function openTarget(spec: string, command: string): Promise<Target> {
  if (spec.startsWith("example:")) {
    const name = spec.slice("example:".length);
    if (name !== "hello" && name !== "testguest") {
      throw new UsageError(
        `no example guest "${name}": expected example:hello or example:testguest`,
        command,
      );
    }
    return { kind: "elf", name: spec, bytes: await loadGuest(exampleGuestUrl(name as ExampleGuest)) };
  }
  if (/^(https?|file):/i.test(spec)) {
    const bytes = await loadGuest(spec);
    if (startsWith(bytes, HLS_MAGIC)) {
      throw new UsageError(`${spec} is a snapshot: snapshots are mapped from local files, download it first`);
    }
    return { kind: "elf", name: spec, bytes };
  }
  let head: Uint8Array;
  try {
    using f = await Deno.open(spec, { read: true });
    head = new Uint8Array(4);
    let n = 0;
    while (n < 4) {
      const r = await f.read(head.subarray(n));
      if (r === null) break;
      n += r;
    }
    head = head.subarray(0, n);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new OperationError(`Cannot read ${spec}: no such file`);
    if (e instanceof Deno.errors.IsADirectory) {
      throw new OperationError(`Cannot read ${spec}: it is a directory`);
    }
    throw e;
  }
  if (startsWith(head, HLS_MAGIC)) return { kind: "snapshot", name: spec, path: spec };
  if (startsWith(head, ELF_MAGIC)) {
    return { kind: "elf", name: spec, bytes: await loadGuest(spec), path: spec };
  }
  throw new OperationError(`Cannot use ${spec}: it is neither a snapshot (.hls) nor a guest ELF binary`);
}

/**
 * Throws a one-line {@linkcode OperationError} unless `path` is an existing regular file (Deno's own
 * messages name the syscall, which means little to a CLI user).
 */
export async function requireFile(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new OperationError(`Cannot read ${path}: no such file`);
    throw e;
  }
  if (!info.isFile) throw new OperationError(`Cannot read ${path}: not a regular file`);
}

/** Options every command that starts a sandbox accepts. */
export const SANDBOX_OPTIONS: OptionSpec = {
  "--heap": "value",
  "--stack": "value",
  "--input-size": "value",
  "--output-size": "value",
  "--timeout": "value",
  "--log": "value",
  "--init-arg": "value",
};

/** Help text for {@linkcode SANDBOX_OPTIONS}. */
export const SANDBOX_OPTIONS_HELP =
  `Sandbox options (the layout options apply to guest binaries; a snapshot keeps its layout):
  --heap <size>         guest heap (default 128k; 4k to 512m)
  --stack <size>        guest stack (default 64k; 8k to 16m)
  --input-size <size>   host-to-guest buffer (default 16k)
  --output-size <size>  guest-to-host buffer (default 16k)
  --timeout <ms>        limit per call and for guest init, 0 for none (default 1000)
  --log <level>         guest log level: trace debug info warn error off (default warn)
  --init-arg <n>        u64 passed to guest init (default 0)
Sizes: bytes or k/m/g (64k, 256m, 1g).`;

const LAYOUT = {
  "--heap": "heapSize",
  "--stack": "stackSize",
  "--input-size": "inputDataSize",
  "--output-size": "outputDataSize",
} as const;

const LOG_LEVELS: readonly LogLevel[] = ["trace", "debug", "info", "warn", "error", "off"];

/** The sandbox configuration the options ask for; range errors are usage errors here, not at evolve(). */
export function sandboxConfig(
  args: ParsedArgs,
  target: Target["kind"],
  command: string,
): SandboxConfiguration {
  const config: SandboxConfiguration = {};
  for (const [flag, field] of Object.entries(LAYOUT)) {
    const text = args.options.get(flag);
    if (typeof text !== "string") continue;
    if (target === "snapshot") {
      throw new UsageError(
        `${flag} applies to guest binaries: a snapshot keeps the layout it was made with`,
        command,
      );
    }
    const value = parseSize(text, flag);
    const [min, max] = CONFIG_LIMITS[field];
    if (value < min || value > max) {
      throw new UsageError(`${flag} is ${text}, allowed range is ${min} to ${max} bytes`, command);
    }
    config[field] = value;
  }
  const timeout = args.options.get("--timeout");
  if (typeof timeout === "string") {
    const [min, max] = CONFIG_LIMITS.maxExecutionTimeMs;
    const ms = /^\d+$/.test(timeout) ? Number(timeout) : NaN;
    if (!(ms >= min && ms <= max)) {
      throw new UsageError(`--timeout is "${timeout}", expected ${min} to ${max} ms`, command);
    }
    config.maxExecutionTimeMs = ms;
  }
  const log = args.options.get("--log");
  if (typeof log === "string") {
    if (!LOG_LEVELS.includes(log as LogLevel)) {
      throw new UsageError(`--log is "${log}", expected one of ${LOG_LEVELS.join(", ")}`, command);
    }
    config.guestLogLevel = log as LogLevel;
  }
  const initArg = args.options.get("--init-arg");
  if (typeof initArg === "string") {
    const m = /^(0x[0-9a-f]+|\d+)$/i.exec(initArg);
    const value = m ? BigInt(m[1]) : -1n;
    if (value < 0n || value >= 1n << 64n) {
      throw new UsageError(`--init-arg is "${initArg}", expected a u64`, command);
    }
    config.guestInitArg = value;
  }
  return config;
}

/**
 * The sandbox of a guest binary before init. A local file is named by its path, so that its snapshots
 * record the binary (for debuggers and core dumps; `snapvm snapshot --no-binary` leaves it out).
 */
export function guestSandbox(
  target: Target & { kind: "elf" },
  config: SandboxConfiguration,
): UninitializedSandbox {
  // The path is read again (as the sandbox was made from it); the bytes read first decided it is an ELF.
  return new UninitializedSandbox(target.path ?? target.bytes, config);
}

/** Starts a sandbox from `target`: evolve a guest binary, or load a snapshot (verified unless `unchecked`). */
export function startSandbox(
  target: Target,
  config: SandboxConfiguration,
  unchecked = false,
): MultiUseSandbox {
  if (target.kind === "elf") return guestSandbox(target, config).evolve();
  using snap = unchecked ? Snapshot.fromFileUnchecked(target.path) : Snapshot.fromFile(target.path);
  return MultiUseSandbox.fromSnapshot(snap, undefined, config);
}
