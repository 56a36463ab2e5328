/**
 * Snapshots: a sandbox's persistent memory, special registers, entry point, layout and host-function
 * signatures, in memory (a sealed memfd) or in an `.hls` file (docs/FORMAT.md): complete, or a delta over a
 * base file.
 *
 * @module
 */
import {
  Arch,
  type BinaryInfo,
  blake3,
  EntrypointTag,
  type HostFunction as RecordedHostFunction,
  type HostIdentity,
  inspectSnapshot,
  MAX_BINARY_PATH_BYTES,
  MAX_WORKING_SET_RUNS,
  type PageRun,
  type ParsedSnapshot,
  parseSnapshotHeader,
  SnapshotFormatError,
  type SnapshotInspection,
  verifyBlobHash,
} from "../format/mod.ts";
import {
  ABI_VERSION,
  FUNC_TABLE_ADDR,
  FUNC_TABLE_SIZE,
  IMAGE_BASE,
  MEMORY_MAP,
  PAGE,
} from "./machine/abi.ts";
import { tagOf, typeOfTag } from "./machine/codec.ts";
import { ABI_SREGS, checkAbiSregs } from "./machine/sregs.ts";
import { imagePageEntries, withoutGeneration } from "./machine/system_area.ts";
import {
  basename,
  openSnapshotBytes,
  openSnapshotFile,
  pathString,
  readHeaderHash,
  readPrefix,
  writeSnapshotFile,
} from "./snapshot/file.ts";
import { layoutOf, readFunctionTable } from "./snapshot/checks.ts";
import { chainReader, openChain, type SnapshotBaseReference } from "./snapshot/chain.ts";
import { blobDataRuns, capRuns, coalesce, differingRuns, pageCount, union } from "./snapshot/_pages.ts";
import { memoryHint, readAheadWorkingSet, recordPresentPages } from "./snapshot/working_set.ts";
import type {
  SnapshotFileSource,
  SnapshotPullOptions,
  SnapshotPushOptions,
  SnapshotPushResult,
} from "./snapshot/registry.ts";
import { toHex } from "../format/_hex.ts";
import { hypervisorTag } from "./backend/select.ts";
import type { HostFunctions } from "./host_functions.ts";
import type { Layout } from "./machine/layout.ts";
import { Blob } from "./memory/blob.ts";
import { exhaustion } from "./resources.ts";
import { type SystemArea, systemAreaFor } from "./machine/system_image.ts";
import type { Mapping } from "./memory/mapping.ts";
import type { OpenedFile } from "./memory/os_memory.ts";
import { MultiUseSandbox } from "./multi_use_sandbox.ts";
import type { GuestFunctionInfo, ReturnType, Signature, ValueType } from "./types.ts";

export type { SnapshotBaseReference } from "./snapshot/chain.ts";
export type { SnapshotPullOptions, SnapshotPushOptions, SnapshotPushResult } from "./snapshot/registry.ts";

/** The host this process is, as snapshot files name it. */
export function hostIdentity(): HostIdentity {
  return { arch: Arch.X86_64, hypervisor: hypervisorTag(), abiVersion: ABI_VERSION, memoryMap: MEMORY_MAP };
}
let lastFamily = 0;
/** A new restore-compatibility family (process-local, never persisted). */
export function newFamily(): number {
  return ++lastFamily;
}

/** What a snapshot holds besides its memory blob. */
export interface SnapshotData {
  /** The memory layout. */
  readonly layout: Layout;
  /** Initialise: guest init has not run; Call: ready for calls at `entryAddr`. */
  readonly entrypoint: "Initialise" | "Call";
  /** Init entry point or dispatch loop. */
  readonly entryAddr: bigint;
  /** Host functions registered when the snapshot was taken. */
  readonly hostFunctions: readonly RecordedHostFunction[];
  /** Restore-compatibility family. */
  readonly family: number;
  /** The guest's functions (Call snapshots). */
  readonly functions?: ReadonlyMap<string, GuestFunctionInfo>;
  /** BLAKE3 of the blob, once known. */
  blobHash?: Uint8Array;
  /**
   * The guest binary the snapshot comes from (its path and ELF entry point), when known: set by
   * `UninitializedSandbox` for a binary given as a path (made absolute; `guestBinaryPath` when configured),
   * carried into snapshots of its sandboxes and of sandboxes made from a snapshot that has one, and stored
   * in the file's BINARY section. A path from a file is only ever handed on as a string.
   */
  readonly binary?: BinaryInfo;
  /** Pages a cold start touches (see `Snapshot.recordWorkingSet`), stored in the WORKING_SET section. */
  workingSet?: readonly PageRun[];
  /** The system area sandboxes map instead of the blob's (see `machine/system_area.ts`). */
  readonly system: SystemArea;
}

/**
 * Options of `Snapshot.fromFile`, `fromFileUnchecked`, `fromFileCached` and `inspectFile`.
 *
 * @example
 * ```ts ignore
 * const snap = Snapshot.fromFile("top.hls", { resolveBase: (base) => `/var/snapshots/${base.blobHash}.hls` });
 * ```
 */
export interface SnapshotLoadOptions {
  /**
   * Where a delta's base is. Called for every delta in a chain; return a path (or `file:` URL), or
   * `undefined` for the default: the base's recorded file name in the delta's directory. The file found is
   * checked against the recorded `blob_hash` either way.
   */
  resolveBase?: (base: SnapshotBaseReference) => string | URL | undefined;
}

/**
 * Options of `snapshot.toFile`.
 *
 * @example
 * ```ts ignore
 * await snap.toFile("step2.hls", { base: "step1.hls" }); // a delta: only the pages that differ
 * ```
 */
export interface SnapshotToFileOptions {
  /**
   * Writes a delta over this snapshot file (complete or itself a delta, up to `MAX_DELTA_CHAIN` deep): only
   * the pages that differ from it. The delta records the base's `blob_hash` and file name; keep both files
   * in one directory, or load with `resolveBase`.
   */
  base?: string | URL;
  /** Writes the recorded working set (`recordWorkingSet`), if any; default true. */
  workingSet?: boolean;
  /**
   * Writes the guest binary's path and entry point (BINARY section), if known; default true. Pass false for
   * files that leave this machine when the local path should not travel with them.
   */
  binary?: boolean;
}

/**
 * What `Snapshot.inspectFile` returns: the file's description and, for a delta, its chain of bases.
 *
 * @example
 * ```ts ignore
 * const info = Snapshot.inspectFile("top.hls");
 * for (const link of info.chain) console.log(link.path, link.blobHash, link.problem ?? "ok");
 * ```
 */
export interface SnapshotFileInspection extends SnapshotInspection {
  /**
   * The bases of a delta, nearest first (empty for a complete file): where each was looked for, the
   * `blob_hash` the delta above it records, its chain depth (0 for the complete file at the bottom), and
   * why it cannot be used, if so.
   */
  chain: { path: string; blobHash: string; chainDepth: number; problem?: string }[];
}

/** Pages a delta merges across: fewer mappings per sandbox start for at most 64 KiB more per gap. */
const DELTA_GAP_PAGES = 16;
/** Runs a writer allows a delta (each is a mapping per sandbox start); the format allows more. */
const DELTA_TARGET_RUNS = 32;

/** What a snapshot owns natively; released by `close()` or, as a last resort, at garbage collection. */
interface Owned {
  blob: Blob;
  system: SystemArea;
}

let construct: (blob: Blob, d: SnapshotData) => Snapshot;

const registry = new FinalizationRegistry<Owned>((o) => release(o));
const internals = new WeakMap<Snapshot, { blob: Blob; data: SnapshotData }>();
/**
 * The registry code, loaded on first use: it brings the OCI client and `node:crypto`, which would add about
 * 10 ms to every import of the package for programs that never push or pull.
 */
const registryModule = () => import("./snapshot/registry.ts");
/** The file each snapshot loaded from a file came from: what `push` sends while it is unchanged. */
const sources = new WeakMap<Snapshot, SnapshotFileSource>();

function release(o: Owned): void {
  o.blob.close();
  o.system.release();
}

/**
 * A snapshot of a sandbox: take one with `sbx.snapshot()` (or `u.snapshot()` before init), restore it with
 * `sbx.restore()`, start new sandboxes from it with `MultiUseSandbox.fromSnapshot()`, and persist it with
 * `toFile()`. Load files with `Snapshot.fromFile()`.
 *
 * A snapshot holds an fd and a read-only mapping of its memory; `close()` releases them early, otherwise
 * they are released when the object is garbage collected. Sandboxes made from it keep working after that,
 * and after the file is renamed or deleted. Modifying a snapshot file in place while it is loaded is
 * undefined behaviour (as with Firecracker snapshots): write a new file and rename it instead.
 *
 * @example
 * ```ts ignore
 * import { MultiUseSandbox, Snapshot, UninitializedSandbox } from "../mod.ts";
 * using sbx = new UninitializedSandbox("./guest/bin/testguest").evolve();
 * await sbx.snapshot().toFile("guest.hls");
 * using copy = MultiUseSandbox.fromSnapshot(Snapshot.fromFile("guest.hls"));
 * ```
 */
export class Snapshot {
  /** Not for direct use: snapshots come from sandboxes and files. */
  private constructor(internal: unknown) {
    const { blob, data } = internal as { blob: Blob; data: SnapshotData };
    internals.set(this, { blob, data });
    registry.register(this, { blob, system: data.system }, blob);
  }

  /**
   * Loads a snapshot file and verifies both `header_hash` and `blob_hash`. Throws `SnapshotFormatError` for
   * any problem with the file, and Deno's own `NotFound` when it does not exist.
   *
   * A regular file is mapped where it is. A path that can be read but not mapped (a FIFO, a device, a file
   * inside a `deno compile` executable) is read whole into sealed memory first, at most
   * `MAX_SNAPSHOT_FILE_SIZE` bytes (`SnapshotFormatError` `InvalidField` `file size` beyond), then checked
   * the same way (see `fromBytes`).
   *
   * A delta file (written by `toFile` with `base`) is loaded with its chain of bases: each is found (next to
   * the delta, or by `options.resolveBase`) and checked against the `blob_hash` the delta records, and the
   * whole resulting memory is verified against the delta's `blob_hash`. A missing base is
   * `SnapshotFormatError` `BaseNotFound`, a wrong one `BaseMismatch`.
   *
   * @example
   * ```ts ignore
   * const snap = Snapshot.fromFile("guest.hls");
   * ```
   */
  static fromFile(path: string | URL, options?: SnapshotLoadOptions): Snapshot {
    return Snapshot.#load(path, true, options);
  }

  /**
   * Loads a snapshot from the bytes of a snapshot file (such as a file embedded in a `deno compile`
   * executable: `Snapshot.fromBytes(await Deno.readFile(new URL("./guest.hls", import.meta.url)))`), with
   * exactly the checks of `fromFile`: every header field, `header_hash`, the sections, and `blob_hash`
   * over the whole memory. The bytes are copied into sealed memory (a memfd on Linux, a pagefile-backed
   * section on Windows; chunks of zeros are not copied), which sandboxes map copy-on-write as they would the
   * file; the array can be dropped afterwards. At most `MAX_SNAPSHOT_FILE_SIZE` bytes
   * (`SnapshotFormatError` `InvalidField` `file size` beyond).
   *
   * A delta's base is not in the bytes and there is no directory to look for it in: it is loaded from the
   * path `options.resolveBase` returns (checked against the recorded `blob_hash` as always), and without
   * one the load is refused with `SnapshotFormatError` `BaseNotFound`.
   *
   * @example
   * ```ts ignore
   * const snap = Snapshot.fromBytes(await Deno.readFile(new URL("./guest.hls", import.meta.url)));
   * using sbx = MultiUseSandbox.fromSnapshot(snap);
   * ```
   */
  static fromBytes(bytes: Uint8Array, options?: SnapshotLoadOptions): Snapshot {
    let file;
    try {
      file = openSnapshotBytes(bytes);
    } catch (e) {
      throw exhaustion(e);
    }
    try {
      return Snapshot.#loadOpened(file, "(snapshot bytes)", true, options, false).snapshot;
    } catch (e) {
      throw exhaustion(e);
    } finally {
      file.close();
    }
  }

  /**
   * Loads a snapshot file verifying only `header_hash` (which covers `blob_hash` but not the blob): constant
   * time in the blob's size (for a file that is mapped; one that must be read, as `fromFile` says, costs
   * the read). Use for files you wrote yourself.
   *
   * For a delta, every file of the chain has its header checked (including that each base's `blob_hash` is
   * the one recorded), but no memory is hashed.
   *
   * @example
   * ```ts ignore
   * const snap = Snapshot.fromFileUnchecked("guest.hls");
   * ```
   */
  static fromFileUnchecked(path: string | URL, options?: SnapshotLoadOptions): Snapshot {
    return Snapshot.#load(path, false, options);
  }

  /**
   * Like `fromFile`, but the first load of a file in this process is kept (weakly): later loads of the same
   * unchanged file (same device, inode, size, mtime and header hash) return the same `Snapshot` without
   * hashing again.
   *
   * @example
   * ```ts ignore
   * const a = Snapshot.fromFileCached("guest.hls");
   * const b = Snapshot.fromFileCached("guest.hls"); // a === b
   * ```
   */
  static fromFileCached(path: string | URL, options?: SnapshotLoadOptions): Snapshot {
    const file = openSnapshotFile(path);
    try {
      const key = file.identity;
      const hash = readHeaderHash(file);
      const hit = cache.get(key);
      const snap = hit?.ref.deref();
      if (
        snap !== undefined && hit!.size === file.size && !internals.get(snap)!.blob.closed &&
        hash !== undefined && equalBytes(hash, hit!.headerHash)
      ) return snap;
      const fresh = Snapshot.#loadOpened(file, pathString(path), true, options).snapshot;
      if (hash !== undefined) {
        const ref = new WeakRef(fresh);
        cache.set(key, { ref, size: file.size, headerHash: hash });
        cacheCleanup.register(fresh, { key, ref });
      }
      return fresh;
    } finally {
      file.close();
    }
  }

  /**
   * Pulls a snapshot from an OCI registry into the local cache and loads it, verified (`fromFileCached`):
   * every layer's SHA-256 is checked as it arrives, the memory's BLAKE3 on load. A snapshot already in the
   * cache is not downloaded again (a reference by tag costs one manifest request; by digest, none), and a
   * delta is pulled with its bases. `reference` is `host[:port]/repository[:tag]` or `…@sha256:…`; plain HTTP
   * is used only for loopback hosts unless `options.insecure`. Errors are the typed errors of the OCI layer
   * (`RegistryError`, `DigestMismatchError`, …) and of the loader.
   *
   * @example
   * ```ts ignore
   * using snap = await Snapshot.pull("127.0.0.1:5000/team/guest:v1");
   * using sbx = MultiUseSandbox.fromSnapshot(snap);
   * ```
   */
  static async pull(reference: string, options: SnapshotPullOptions = {}): Promise<Snapshot> {
    const { pullSnapshot } = await registryModule();
    return await pullSnapshot(reference, options, (path, load) => Snapshot.fromFileCached(path, load));
  }

  /**
   * Reads only the header and host-function section of a snapshot file, maps nothing, and describes it:
   * every header field, versions, arch and hypervisor names, compatibility with this host (and why not),
   * the host functions, both hashes as hex, and the sections (binary, delta base, working set). For a delta,
   * `chain` lists its bases as the loader would find them (headers only). `compatible` is the loader's
   * verdict: it runs every check the loader runs before mapping the blob, the chain's included. Throws
   * `SnapshotFormatError` only when the file cannot be read as a snapshot at all.
   *
   * @example
   * ```ts ignore
   * console.log(Snapshot.inspectFile("guest.hls").compatible);
   * ```
   */
  static inspectFile(path: string | URL, options?: SnapshotLoadOptions): SnapshotFileInspection {
    const file = openSnapshotFile(path);
    try {
      const prefix = readPrefix(file);
      const host = hostIdentity();
      const info: SnapshotFileInspection = { ...inspectSnapshot(prefix, file.size, host), chain: [] };
      if (info.compatible) {
        try {
          const parsed = parseSnapshotHeader(prefix, file.size, host);
          const layout = checkLoadable(parsed);
          const chain = parsed.base === null
            ? [{ file, parsed, path: pathString(path) }]
            : openChain(file, parsed, pathString(path), host, options?.resolveBase, info.chain);
          try {
            // The image's page-table entries: the one part of the system area a loader reads from a file
            // (for a delta, from whichever file of the chain holds them).
            imagePageEntries(chainReader(chain), layout);
          } finally {
            for (const link of chain.slice(1)) link.file.close();
          }
        } catch (e) {
          if (!(e instanceof SnapshotFormatError)) throw e;
          info.compatible = false;
          info.incompatibilities.push({ kind: e.kind, field: e.field, message: e.message });
        }
      }
      return info;
    } finally {
      file.close();
    }
  }

  static #load(path: string | URL, verify: boolean, options?: SnapshotLoadOptions): Snapshot {
    return Snapshot.#loadWithHeader(path, verify, options).snapshot;
  }

  static #loadWithHeader(
    path: string | URL,
    verify: boolean,
    options?: SnapshotLoadOptions,
  ): { snapshot: Snapshot; parsed: ParsedSnapshot } {
    let file;
    try {
      file = openSnapshotFile(path);
    } catch (e) {
      throw exhaustion(e);
    }
    try {
      return Snapshot.#loadOpened(file, pathString(path), verify, options);
    } catch (e) {
      throw exhaustion(e);
    } finally {
      file.close();
    }
  }

  /**
   * Loads from an open file (and, for a delta, its chain of bases); the blob takes the files over (closing
   * `file` afterwards is harmless).
   */
  static #loadOpened(
    file: OpenedFile,
    path: string,
    verify: boolean,
    options?: SnapshotLoadOptions,
    located = true,
  ): { snapshot: Snapshot; parsed: ParsedSnapshot } {
    const host = hostIdentity();
    const parsed = parseSnapshotHeader(readPrefix(file), file.size, host);
    const layout = checkLoadable(parsed);
    const source = { path, identity: file.identity, bases: new Map<string, string>() };
    // Only files used in place are a source `push` may send again; bytes, or a file read into memory (a FIFO,
    // a device), are written out afresh.
    let inPlace = !file.inMemory;
    let blob: Blob;
    if (parsed.base === null) {
      blob = new Blob(file.toBacking(parsed.header.memoryOffset, parsed.header.memorySize));
    } else {
      // Top first; the complete file at the bottom supplies every page no delta stores.
      const chain = openChain(file, parsed, path, host, options?.resolveBase, undefined, located);
      for (const link of chain.slice(1)) {
        source.bases.set(toHex(link.parsed.blobHash), link.path);
        inPlace &&= !link.file.inMemory;
      }
      const bottom = chain[chain.length - 1];
      try {
        const base = bottom.file.toBacking(
          bottom.parsed.header.memoryOffset,
          bottom.parsed.header.memorySize,
        );
        const layers = chain.slice(0, -1).reverse().map((link) => ({
          backing: link.file.toBacking(link.parsed.header.memoryOffset, link.parsed.storedSize),
          runs: link.parsed.base!.runs,
        }));
        blob = Blob.layered(base, layers);
      } finally {
        for (const link of chain) link.file.close();
      }
    }
    let system: SystemArea | undefined;
    try {
      // Queue the reads a cold start will make, in one batch, before anything touches the blob.
      if (parsed.workingSet !== null) readAheadWorkingSet(blob, parsed.workingSet);
      if (verify) verifyBlobHash(blob.ref.bytes, parsed.blobHash);
      // From here on the view is read a page at a time (restores): no 8 MiB read-around.
      blob.adviseRandom();
      // The only bytes of the system area taken from the file are the image's page-table entries, checked;
      // read from the files, so that a load that verifies nothing maps no view.
      system = systemAreaFor(blob, layout);
      const call = parsed.header.entrypointTag === EntrypointTag.Call;
      const snapshot = construct(blob, {
        system,
        layout,
        entrypoint: call ? "Call" : "Initialise",
        entryAddr: BigInt(parsed.header.entrypointAddr),
        hostFunctions: parsed.hostFunctions,
        family: newFamily(),
        functions: call ? readFunctionTable(functionTable(blob)) : undefined,
        // Only a verified load knows the blob matches the hash (toFile of an unchecked load hashes again).
        blobHash: verify ? parsed.blobHash : undefined,
        binary: parsed.binary ?? undefined,
        workingSet: parsed.workingSet ?? undefined,
      });
      if (inPlace) sources.set(snapshot, source);
      return { snapshot, parsed };
    } catch (e) {
      system?.release();
      blob.close();
      throw e;
    }
  }

  /** Whether guest init has run in this snapshot (`"Call"`) or not (`"Initialise"`). */
  get entrypoint(): "Initialise" | "Call" {
    return data(this).entrypoint;
  }

  /** Size of the memory blob in bytes. */
  get memorySize(): number {
    return data(this).layout.persistentSize;
  }

  /** The guest binary the snapshot comes from (path and ELF entry point), when known. */
  get binary(): { path: string; entry: bigint } | undefined {
    const b = data(this).binary;
    return b === undefined ? undefined : { path: b.path, entry: b.entry };
  }

  /** The host functions recorded in the snapshot, with their signatures. */
  get hostFunctions(): { name: string; params: ValueType[]; returns: ReturnType }[] {
    return data(this).hostFunctions.map((f) => ({
      name: f.name,
      params: f.parameterTypes.map((t) => typeOfTag(t) as ValueType),
      returns: typeOfTag(f.returnType)!,
    }));
  }

  /**
   * Writes the snapshot to `path` atomically: a temporary file in the same directory, fsync, rename over
   * `path`, fsync of the directory. A crash leaves either the old file or the new one. Writing into a
   * missing directory throws Deno's own `NotFound`.
   *
   * Pages of zeros are left as holes (the file is sparse: it reads the same and takes only its data on
   * disk). With `options.base`, writes a delta: only the pages that differ from that snapshot file, which
   * must have the same memory size (`SnapshotFormatError` `BaseMismatch` otherwise). The file is format
   * version 2 when it is a delta or carries the binary or a working set, version 1 otherwise.
   *
   * @example
   * ```ts ignore
   * await snap.toFile("guest.hls");
   * await later.toFile("guest-2.hls", { base: "guest.hls" });
   * ```
   */
  async toFile(path: string | URL, options: SnapshotToFileOptions = {}): Promise<void> {
    const { blob, data: d } = live(this);
    d.blobHash ??= blake3(blob.ref.bytes);
    const data = blobDataRuns(blob);
    const pages = blob.size / PAGE;
    let stored: readonly PageRun[] = [{ first: 0, count: pages }];
    let base: Parameters<typeof writeSnapshotFile>[1]["base"];
    if (options.base !== undefined) {
      const basePath = pathString(options.base);
      refuseSelfBase(pathString(path), basePath);
      // The base as a loader will see it (its chain included), headers checked, memory not hashed.
      const { snapshot: baseSnap, parsed } = Snapshot.#loadWithHeader(basePath, false);
      try {
        const other = live(baseSnap).blob;
        if (other.size !== blob.size) {
          throw new SnapshotFormatError("BaseMismatch", {
            field: "memory_size",
            found: other.size,
            expected: `${blob.size}, this snapshot's memory size (a delta needs a base of the same layout)`,
            action: "save",
          });
        }
        // Pages outside both snapshots' data are zero in both: only the rest is compared.
        const changed = differingRuns(blob.ref, other.ref, union(data, blobDataRuns(other)));
        stored = capRuns(coalesce(changed, DELTA_GAP_PAGES), DELTA_TARGET_RUNS);
        base = {
          blobHash: parsed.blobHash,
          chainDepth: (parsed.base?.chainDepth ?? 0) + 1,
          fileName: basename(basePath),
          runs: stored,
        };
      } finally {
        baseSnap.close();
      }
    }
    await writeSnapshotFile(path, {
      header: {
        arch: Arch.X86_64,
        abiVersion: ABI_VERSION,
        hypervisor: hypervisorTag(),
        entrypointTag: d.entrypoint === "Call" ? EntrypointTag.Call : EntrypointTag.Initialise,
        entrypointAddr: Number(d.entryAddr),
        stackTopGva: d.layout.stackTop,
        inputDataSize: d.layout.inputSize,
        outputDataSize: d.layout.outputSize,
        heapSize: d.layout.heapSize,
        codeSize: d.layout.imageEnd - IMAGE_BASE,
        initDataSize: 0,
        initDataPermissions: 0,
        scratchSize: d.layout.scratchSize,
        snapshotSize: d.layout.persistentSize,
        ptSize: d.layout.ptPages * PAGE,
        memorySize: d.layout.persistentSize,
      },
      // Sandboxes always enter with the ABI's registers, so that is what the file records.
      sregs: d.entrypoint === "Call" ? ABI_SREGS : null,
      hostFunctions: d.hostFunctions,
      blobHash: d.blobHash,
      memoryMap: MEMORY_MAP,
      binary: options.binary === false ? undefined : d.binary,
      base,
      workingSet: options.workingSet === false ? undefined : d.workingSet,
    }, { view: blob.ref, stored, data });
  }

  /**
   * Pushes the snapshot to an OCI registry under `reference` (`host[:port]/repository[:tag]`, tag `latest`
   * when absent). A snapshot loaded from a file pushes that file (a delta with its bases, each a layer) as
   * long as it is unchanged; any other snapshot is written to a temporary file first (`options.base` makes
   * it a delta over that file). Blobs the registry already has are not sent again. Returns the reference by
   * digest and what was sent.
   *
   * @example
   * ```ts ignore
   * const pushed = await snap.push("127.0.0.1:5000/team/guest:v1");
   * console.log(pushed.reference); // 127.0.0.1:5000/team/guest@sha256:…
   * ```
   */
  async push(reference: string, options: SnapshotPushOptions = {}): Promise<SnapshotPushResult> {
    live(this);
    const { pushSnapshot } = await registryModule();
    return await pushSnapshot(this, sources.get(this), reference, options);
  }

  /**
   * Records the snapshot's working set: the pages a sandbox started from it touches, so that a file written
   * afterwards (`toFile`) lets a cold start read them from disk in one batch instead of one 4 KiB read per
   * page fault. Starts a sandbox from the snapshot (with `hostFunctions`, which must include those the
   * snapshot records), runs `warmUp` on it (typically the first calls a real user makes), and notes which
   * pages of its memory were touched, from the page tables (Linux `/proc/self/pagemap`). The image pages and
   * the guest's function table are always included. Replaces a working set recorded or loaded before.
   *
   * Returns how many runs and pages were recorded (0 where the platform cannot tell).
   *
   * @example
   * ```ts ignore
   * snap.recordWorkingSet((sbx) => sbx.call("Echo", "warm-up"), hostFunctions);
   * await snap.toFile("guest.hls");
   * ```
   */
  recordWorkingSet(
    warmUp?: (sandbox: MultiUseSandbox) => void,
    hostFunctions?: HostFunctions,
  ): { runs: number; pages: number } {
    const { blob, data: d } = live(this);
    let memory: Mapping | undefined;
    const stop = blob.onMapInto((m) => void (memory ??= m));
    let sandbox: MultiUseSandbox;
    try {
      sandbox = MultiUseSandbox.fromSnapshot(this, hostFunctions);
    } finally {
      stop();
    }
    try {
      warmUp?.(sandbox);
      const touched = memory === undefined ? undefined : recordPresentPages(memory);
      if (touched === undefined) {
        d.workingSet = undefined;
        return { runs: 0, pages: 0 };
      }
      // The loader reads the function table through the snapshot's own view, not through the sandbox.
      const tableBytes = functionTable(blob).length;
      const table = { first: FUNC_TABLE_ADDR / PAGE, count: Math.ceil(tableBytes / PAGE) };
      const runs = capRuns(coalesce(union(touched, [table]), WORKING_SET_GAP_PAGES), MAX_WORKING_SET_RUNS);
      d.workingSet = runs;
      return { runs: runs.length, pages: pageCount(runs) };
    } finally {
      sandbox.close();
    }
  }

  /**
   * Releases the snapshot's fd and mapping now instead of at garbage collection. Sandboxes made from it are
   * unaffected; the snapshot itself can no longer be used.
   *
   * @example
   * ```ts ignore
   * snap.close();
   * ```
   */
  close(): void {
    const i = internals.get(this);
    if (i === undefined) return;
    registry.unregister(i.blob);
    release({ blob: i.blob, system: i.data.system });
  }

  /** Same as `close()`. */
  [Symbol.dispose](): void {
    this.close();
  }

  static {
    construct = (blob, data) => new Snapshot({ blob, data });
  }
}

function data(s: Snapshot): SnapshotData {
  return live(s).data;
}

/** The snapshot's blob and data; throws if it was closed. */
export function live(s: Snapshot): { blob: Blob; data: SnapshotData } {
  const i = internals.get(s);
  if (i === undefined) throw new TypeError("Not a Snapshot");
  if (i.blob.closed) throw new TypeError("Snapshot is closed");
  return i;
}

/**
 * Copies `mem` (a persistent region) into a sealed backing and wraps it as a snapshot. Notes which pages of
 * `mem` may hold data (see `memoryHint`), so that the copy and `toFile` read only those.
 */
export function snapshotFromMemory(mem: Mapping, d: Omit<SnapshotData, "system">): Snapshot {
  let blob: Blob;
  try {
    blob = withoutGeneration(mem, () => Blob.copyOf(mem, memoryHint(mem)));
  } catch (e) {
    throw exhaustion(e);
  }
  return snapshotOf(blob, { ...d, binary: recordable(d.binary) });
}

/**
 * The binary a snapshot records: its path and entry point only, and only when a file can store them (a path
 * of 1..`MAX_BINARY_PATH_BYTES` UTF-8 bytes without NUL, a known entry point: 0 is none, a guest's is in
 * its image), so that `toFile` never fails over a detail nothing needs to run the snapshot.
 */
function recordable(binary: BinaryInfo | undefined): BinaryInfo | undefined {
  if (binary === undefined || binary.entry <= 0n || binary.entry >= 1n << 64n) return undefined;
  const { path } = binary;
  if (path === "" || !path.isWellFormed() || path.includes("\0")) return undefined;
  if (new TextEncoder().encode(path).byteLength > MAX_BINARY_PATH_BYTES) return undefined;
  return { path, entry: binary.entry };
}

/**
 * Wraps a blob as a snapshot, building its system area; takes the blob over (closed on failure). For
 * snapshots made from memory (`snapshotFromMemory`) and tests that assemble one.
 */
export function snapshotOf(blob: Blob, d: Omit<SnapshotData, "system">): Snapshot {
  try {
    return construct(blob, { ...d, system: systemAreaFor(blob, d.layout) });
  } catch (e) {
    blob.close();
    throw exhaustion(e);
  }
}

/**
 * The bytes of the function table in a blob: its `u32 length` and as many bytes as it says, bounded by the
 * table's area (`readFunctionTable` refuses a length beyond it). Read from the files, not through a view.
 */
function functionTable(blob: Blob): Uint8Array {
  // One read of the table's first page, which holds most tables whole (a cold start saves a `pread`).
  const head = blob.read(FUNC_TABLE_ADDR, PAGE);
  const length = new DataView(head.buffer, head.byteOffset, head.byteLength).getUint32(0, true);
  const total = 4 + Math.min(length, FUNC_TABLE_SIZE - 4);
  return total <= head.length ? head.subarray(0, total) : blob.read(FUNC_TABLE_ADDR, total);
}

/** Gaps of untouched pages a working set merges across: one larger read instead of two requests. */
const WORKING_SET_GAP_PAGES = 16;

/** Refuses to write a delta over its own base (it would name itself: a chain that loops). */
function refuseSelfBase(target: string, base: string): void {
  const absolute = (p: string) => {
    try {
      return Deno.realPathSync(p);
    } catch {
      return undefined;
    }
  };
  const a = absolute(target), b = absolute(base);
  if (a !== undefined && a === b) {
    throw new SnapshotFormatError("BaseMismatch", {
      field: "base",
      found: base,
      expected: "a file other than the one being written (a delta cannot be its own base)",
      action: "save",
    });
  }
}

/**
 * The loader's checks on top of the codec's: the exact layout, and for Call snapshots the special registers
 * against the ABI. Returns the layout.
 */
function checkLoadable(parsed: ParsedSnapshot): Layout {
  const layout = layoutOf(parsed);
  if (parsed.sregs !== null) checkAbiSregs(parsed.sregs);
  return layout;
}

/** The host functions of a set, in the snapshot's record form. */
export function recordHostFunctions(fns: HostFunctions): RecordedHostFunction[] {
  return fns.names().map((name) => recordHostFunction(name, fns.get(name)!.signature));
}

/** One host function in the snapshot's record form. */
export function recordHostFunction(name: string, sig: Signature): RecordedHostFunction {
  return {
    name,
    returnType: tagOf(sig.returns) as RecordedHostFunction["returnType"],
    parameterTypes: sig.params.map((p) => tagOf(p) as RecordedHostFunction["returnType"]),
  };
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

const cache = new Map<
  string,
  { ref: WeakRef<Snapshot>; size: number; headerHash: Uint8Array }
>();
const cacheCleanup = new FinalizationRegistry<{ key: string; ref: WeakRef<Snapshot> }>(({ key, ref }) => {
  if (cache.get(key)?.ref === ref) cache.delete(key);
});
