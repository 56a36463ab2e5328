/**
 * Shared pieces of the fuzzers: options and results, the corpus, error classification, and process
 * resource counters (fds and mappings) for leak and out-of-file mapping checks.
 *
 * @module
 */
import { dropIdleSystemAreas } from "../../vm/machine/system_image.ts";
import { gunzipSync, gzipSync } from "node:zlib";
import {
  ExecutionCanceledError,
  GuestAbortedError,
  GuestCrashedError,
  GuestError,
  GuestFunctionNotFoundError,
  HostFunctionError,
  HostFunctionMismatchError,
  MemoryAccessViolationError,
  PoisonedSandboxError,
  SNAPSHOT_FORMAT_ERROR_KINDS,
  SnapshotFormatError,
  SnapshotSandboxMismatchError,
} from "../../mod.ts";

/** Options every fuzzer takes. */
export interface FuzzOptions {
  /** Seed of the run; case `i` is `caseRng(seed, i)`. */
  seed: number;
  /** Number of cases to run (from `start`). */
  iterations: number;
  /** First case index (the long mode resumes after a crashed case). */
  start?: number;
  /** Where failing inputs are written (`<corpusDir>/<target>/`); not written when absent. */
  corpusDir?: string;
  /** Long mode: stop at `deadline` instead of after `iterations`, and report progress. */
  long?: boolean;
  /** `performance.now()` value at which a long run stops. */
  deadline?: number;
  /** Directory for the files of the case in flight (a temporary one when absent). */
  workDir?: string;
  /** Called with the number of cases done, at most every 250 ms and at the end. */
  onProgress?: (done: number) => void;
  /** Called before each case with its index (the long mode's crash bookkeeping). */
  onCase?: (index: number) => void;
  /** Called with each failure as it happens. */
  onFailure?: (failure: Failure) => void;
}

/** A case whose outcome is not allowed. */
export interface Failure {
  /** Case index in the run. */
  index: number;
  /** What the case did. */
  description: string;
  /** What went wrong. */
  message: string;
  /** The corpus file written, if any. */
  saved?: string;
}

/** What a fuzz run did. */
export interface FuzzResult {
  /** Target name. */
  target: string;
  /** Cases run. */
  cases: number;
  /** Disallowed outcomes. */
  failures: Failure[];
  /** How often each outcome happened (error name and kind, or "ok"). */
  outcomes: Record<string, number>;
  /** Wall time of the run in ms (reported, never asserted). */
  elapsedMs: number;
}

/** The fuzz targets. */
export const TARGETS = ["snapshot", "elf", "channel"] as const;
/** One of {@linkcode TARGETS}. */
export type Target = typeof TARGETS[number];

/** The committed corpus directory, `tests/fuzz/corpus/`. */
export const CORPUS_DIR: string = decodeURIComponent(new URL("./corpus/", import.meta.url).pathname);

/** Path of a committed guest binary. */
export function guestBinary(name: string): string {
  return decodeURIComponent(new URL(`../../guest/bin/${name}`, import.meta.url).pathname);
}

/** Counts outcomes and collects failures. */
export class Tally {
  readonly outcomes: Record<string, number> = {};
  readonly failures: Failure[] = [];
  readonly #saved = new Map<string, number>();
  /** Counts one outcome. */
  count(outcome: string): void {
    this.outcomes[outcome] = (this.outcomes[outcome] ?? 0) + 1;
  }

  /**
   * Records a failure and, with a corpus directory, saves its input, but at most `perSignature` inputs per
   * kind of failure (the message with numbers and stack frames taken out), so one bug does not fill the
   * corpus.
   */
  fail(
    opts: FuzzOptions,
    target: Target,
    index: number,
    description: string,
    message: string,
    input: () => { bytes: Uint8Array; ext: string },
    perSignature = 2,
  ): void {
    const failure: Failure = { index, description, message };
    if (opts.corpusDir) {
      const sig = signature(message);
      const n = this.#saved.get(sig) ?? 0;
      if (n < perSignature) {
        this.#saved.set(sig, n + 1);
        const { bytes, ext } = input();
        failure.saved = saveToCorpus(
          opts.corpusDir,
          target,
          bytes,
          ext,
          `${target} case ${index} of seed ${opts.seed}: ${description}\n${message}`,
        );
      }
    }
    this.failures.push(failure);
    opts.onFailure?.(failure);
  }
}

/** A failure message with numbers, hex and stack frames removed: failures of one kind share it. */
export function signature(message: string): string {
  return message.replace(/\[at [^\]]*\]/g, "").replace(/0x[0-9a-f]+|\d+/gi, "N").slice(0, 300);
}

/** A short name for an outcome: `ok`, the error's name, plus the snapshot error kind. */
export function outcomeName(e: unknown): string {
  if (e === undefined) return "ok";
  if (e instanceof SnapshotFormatError) return `SnapshotFormatError:${e.kind}`;
  if (e instanceof Error) return e.name;
  return `non-Error ${typeof e}`;
}

/** The sandbox errors a hostile guest or memory blob may cause. */
export const SANDBOX_ERRORS: readonly (abstract new (...args: never[]) => Error)[] = [
  GuestCrashedError,
  MemoryAccessViolationError,
  GuestAbortedError,
  ExecutionCanceledError,
  GuestError,
  GuestFunctionNotFoundError,
  HostFunctionError,
  PoisonedSandboxError,
];

/** The errors that leave a sandbox poisoned. */
export const POISONING_ERRORS: readonly (abstract new (...args: never[]) => Error)[] = [
  GuestCrashedError,
  MemoryAccessViolationError,
  GuestAbortedError,
  ExecutionCanceledError,
];

/** Whether `e` is an instance of one of `classes`. */
export function isOneOf(e: unknown, classes: readonly (abstract new (...args: never[]) => Error)[]): boolean {
  return classes.some((c) => e instanceof c);
}

/** Why a snapshot-loading error is not allowed, or undefined when it is. */
export function badSnapshotError(e: unknown): string | undefined {
  if (e instanceof SnapshotFormatError) {
    if (!SNAPSHOT_FORMAT_ERROR_KINDS.includes(e.kind)) return `unknown SnapshotFormatError kind ${e.kind}`;
    if (!e.message || !e.field) return "SnapshotFormatError without a message or field";
    return undefined;
  }
  if (e instanceof HostFunctionMismatchError || e instanceof SnapshotSandboxMismatchError) {
    return e.message ? undefined : `${e.name} without a message`;
  }
  return `unexpected ${describeError(e)}`;
}

/** Why a sandbox error is not allowed, or undefined when it is. */
export function badSandboxError(e: unknown): string | undefined {
  if (isOneOf(e, SANDBOX_ERRORS) || e instanceof HostFunctionMismatchError) {
    return (e as Error).message ? undefined : `${(e as Error).name} without a message`;
  }
  return `unexpected ${describeError(e)}`;
}

/** Name, message and the top of the stack of an error, for failure reports. */
export function describeError(e: unknown): string {
  if (e instanceof Error) {
    const stack = (e.stack ?? "").split("\n").slice(1, 5).map((l) => l.trim()).join(" | ");
    return `${e.name}: ${e.message}${stack ? ` [${stack}]` : ""}`;
  }
  return `non-Error thrown: ${String(e)}`;
}

// ---- resources ---------------------------------------------------------------------------------------------

/** Open fds of this process (after dropping idle caches, which hold a bounded number of fds). */
export function fdCount(): number {
  dropIdleSystemAreas();
  let n = 0;
  for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
  return n;
}

/** Lines of /proc/self/maps (after dropping idle caches). */
export function mapCount(): number {
  dropIdleSystemAreas();
  return Deno.readTextFileSync("/proc/self/maps").split("\n").filter((l) => l).length;
}

/**
 * Mappings made with plain `mmap` (glibc's mmap area at the top of the address space, where guest memory,
 * snapshot blobs and `kvm_run` live) plus every KVM, memfd and snapshot-file mapping. V8 places its 256 KiB
 * heap pages at random addresses elsewhere, so this count does not move with the JS heap.
 */
export function nativeMapCount(): number {
  dropIdleSystemAreas();
  let n = 0;
  for (const line of Deno.readTextFileSync("/proc/self/maps").split("\n")) {
    if (!line) continue;
    const start = BigInt(`0x${line.slice(0, line.indexOf("-"))}`);
    if (start >= 0x7e0000000000n || /kvm|memfd:|\.hls/.test(line)) n++;
  }
  return n;
}

/** Resident set size in bytes. */
export function rssBytes(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
  return m ? Number(m[1]) * 1024 : 0;
}

/** A mapping of a file: start, end, file offset. */
export interface FileMapping {
  start: bigint;
  end: bigint;
  offset: bigint;
  line: string;
}

/** The mappings of `path` in this process (also when the file was deleted meanwhile). */
export function mappingsOf(path: string): FileMapping[] {
  const out: FileMapping[] = [];
  for (const line of Deno.readTextFileSync("/proc/self/maps").split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ ([0-9a-f]+) \S+ \d+\s+(.*)$/.exec(line);
    if (!m) continue;
    const name = m[4].replace(/ \(deleted\)$/, "");
    if (name !== path) continue;
    out.push({ start: BigInt(`0x${m[1]}`), end: BigInt(`0x${m[2]}`), offset: BigInt(`0x${m[3]}`), line });
  }
  return out;
}

/** The fds of this process open on `path`. */
export function fdsOf(path: string): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (Deno.readLinkSync(`/proc/self/fd/${e.name}`).replace(/ \(deleted\)$/, "") === path) {
        out.push(Number(e.name));
      }
    } catch { /* closed meanwhile (the readDir fd itself) */ }
  }
  return out;
}

/** Why some mapping of `path` reaches past the end of its `fileSize` bytes, or undefined. */
export function mappingPastEnd(path: string, fileSize: number): string | undefined {
  const limit = (BigInt(fileSize) + 4095n) / 4096n * 4096n;
  for (const m of mappingsOf(path)) {
    if (m.offset + (m.end - m.start) > limit) {
      return `mapping reaches file offset ${
        m.offset + (m.end - m.start)
      }, past the ${fileSize}-byte file: ${m.line}`;
    }
  }
  return undefined;
}

// ---- corpus ------------------------------------------------------------------------------------------------

/** FNV-1a of the bytes, as 8 hex digits (corpus file names). */
export function shortHash(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  return (h >>> 0).toString(16).padStart(8, "0");
}

/** Compresses a corpus input (snapshot files are mostly zeros). */
export function gzip(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(gzipSync(bytes, { level: 9 }));
}

/** Decompresses a corpus input. */
export function gunzip(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(gunzipSync(bytes));
}

/**
 * Writes a failing input to `<corpusDir>/<target>/<name or hash><ext>` with a `.txt` note beside it; returns
 * the path.
 * `.gz` inputs are stored compressed.
 */
export function saveToCorpus(
  corpusDir: string,
  target: Target,
  input: Uint8Array,
  ext: string,
  note: string,
  name?: string,
): string {
  const dir = `${corpusDir.replace(/\/$/, "")}/${target}`;
  Deno.mkdirSync(dir, { recursive: true });
  const base = `${dir}/${name ?? shortHash(input)}`;
  const path = `${base}${ext}`;
  Deno.writeFileSync(path, ext.endsWith(".gz") ? gzip(input) : input);
  Deno.writeTextFileSync(`${base}.txt`, note.endsWith("\n") ? note : `${note}\n`);
  return path;
}

/** Corpus inputs of a target (every file except the `.txt` notes), sorted. */
export function corpusFiles(corpusDir: string, target: Target): string[] {
  const dir = `${corpusDir.replace(/\/$/, "")}/${target}`;
  const out: string[] = [];
  try {
    for (const e of Deno.readDirSync(dir)) {
      if (e.isFile && !e.name.endsWith(".txt") && !e.name.startsWith(".")) out.push(`${dir}/${e.name}`);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort();
}

/** Reads a corpus input, decompressing `.gz`. */
export function readCorpusInput(path: string): Uint8Array {
  const bytes = Deno.readFileSync(path);
  return path.endsWith(".gz") ? gunzip(bytes) : bytes;
}

/** Runs a fuzz loop: calls `runCase(i)` for each index, with progress, deadline and failure bookkeeping. */
export function loop(
  target: Target,
  opts: FuzzOptions,
  tally: Tally,
  runCase: (index: number) => void,
): FuzzResult {
  const start = opts.start ?? 0;
  const t0 = performance.now();
  let lastProgress = t0;
  let done = 0;
  for (let i = start; opts.long ? true : i < start + opts.iterations; i++) {
    if (opts.long && opts.deadline !== undefined && performance.now() >= opts.deadline) break;
    if (opts.long && opts.deadline === undefined && i >= start + opts.iterations) break;
    opts.onCase?.(i);
    runCase(i);
    done++;
    const now = performance.now();
    if (opts.onProgress && now - lastProgress >= 250) {
      lastProgress = now;
      opts.onProgress(done);
    }
  }
  opts.onProgress?.(done);
  return {
    target,
    cases: done,
    failures: tally.failures,
    outcomes: tally.outcomes,
    elapsedMs: performance.now() - t0,
  };
}

/** A fresh or given work directory, and a cleanup for it. */
export function workDirOf(opts: FuzzOptions): { dir: string; cleanup: () => void } {
  if (opts.workDir) {
    Deno.mkdirSync(opts.workDir, { recursive: true });
    return { dir: opts.workDir, cleanup: () => {} };
  }
  const dir = Deno.makeTempDirSync({ prefix: "snapvm-fuzz-" });
  return { dir, cleanup: () => Deno.removeSync(dir, { recursive: true }) };
}
