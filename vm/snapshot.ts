/**
 * Snapshots: a sandbox's persistent memory, special registers, entry point, layout and host-function
 * signatures, in memory (a sealed memfd) or in an `.hls` file (shared/format/hls-v1.md, docs/FORMAT.md).
 *
 * @module
 */
import {
  Arch,
  blake3,
  EntrypointTag,
  type HostFunction as RecordedHostFunction,
  type HostIdentity,
  inspectSnapshot,
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
import { openSnapshotFile, readHeaderHash, readPrefix, writeSnapshotFile } from "./snapshot/file.ts";
import { layoutOf, readFunctionTable } from "./snapshot/checks.ts";
import { hypervisorTag } from "./backend/select.ts";
import type { HostFunctions } from "./host_functions.ts";
import type { Layout } from "./machine/layout.ts";
import { Blob } from "./memory/blob.ts";
import { exhaustion } from "./resources.ts";
import { type SystemArea, systemAreaFor } from "./machine/system_image.ts";
import type { Mapping } from "./memory/mapping.ts";
import type { OpenedFile } from "./memory/os_memory.ts";
import type { GuestFunctionInfo, ReturnType, Signature, ValueType } from "./types.ts";

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
  /** The system area sandboxes map instead of the blob's (see `machine/system_area.ts`). */
  readonly system: SystemArea;
}

/** What a snapshot owns natively; released by `close()` or, as a last resort, at garbage collection. */
interface Owned {
  blob: Blob;
  system: SystemArea;
}

let construct: (blob: Blob, d: SnapshotData) => Snapshot;

const registry = new FinalizationRegistry<Owned>((o) => release(o));
const internals = new WeakMap<Snapshot, { blob: Blob; data: SnapshotData }>();

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
   * @example
   * ```ts ignore
   * const snap = Snapshot.fromFile("guest.hls");
   * ```
   */
  static fromFile(path: string | URL): Snapshot {
    return Snapshot.#load(path, true);
  }

  /**
   * Loads a snapshot file verifying only `header_hash` (which covers `blob_hash` but not the blob): constant
   * time in the blob's size. Use for files you wrote yourself.
   *
   * @example
   * ```ts ignore
   * const snap = Snapshot.fromFileUnchecked("guest.hls");
   * ```
   */
  static fromFileUnchecked(path: string | URL): Snapshot {
    return Snapshot.#load(path, false);
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
  static fromFileCached(path: string | URL): Snapshot {
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
      const fresh = Snapshot.#loadOpened(file, true);
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
   * Reads only the header and host-function section of a snapshot file, maps nothing, and describes it:
   * every header field, versions, arch and hypervisor names, compatibility with this host (and why not),
   * the host functions, and both hashes as hex. `compatible` is the loader's verdict: it runs every check
   * the loader runs before mapping the blob. Throws `SnapshotFormatError` only when the file cannot be read
   * as a snapshot at all.
   *
   * @example
   * ```ts ignore
   * console.log(Snapshot.inspectFile("guest.hls").compatible);
   * ```
   */
  static inspectFile(path: string | URL): SnapshotInspection {
    const file = openSnapshotFile(path);
    try {
      const prefix = readPrefix(file);
      const host = hostIdentity();
      const info = inspectSnapshot(prefix, file.size, host);
      if (info.compatible) {
        try {
          const parsed = parseSnapshotHeader(prefix, file.size, host);
          const layout = checkLoadable(parsed);
          // The image's page-table entries: the one part of the system area a loader reads from a file.
          const at = parsed.header.memoryOffset;
          imagePageEntries({ read: (offset, length) => file.read(at + offset, length) }, layout);
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

  static #load(path: string | URL, verify: boolean): Snapshot {
    let file;
    try {
      file = openSnapshotFile(path);
    } catch (e) {
      throw exhaustion(e);
    }
    try {
      return Snapshot.#loadOpened(file, verify);
    } catch (e) {
      throw exhaustion(e);
    } finally {
      file.close();
    }
  }

  /** Loads from an open file; the blob takes the file over (closing `file` afterwards is harmless). */
  static #loadOpened(file: OpenedFile, verify: boolean): Snapshot {
    const parsed = parseSnapshotHeader(readPrefix(file), file.size, hostIdentity());
    const layout = checkLoadable(parsed);
    const blob = new Blob(file.toBacking(parsed.header.memoryOffset, parsed.header.memorySize));
    let system: SystemArea | undefined;
    try {
      if (verify) verifyBlobHash(blob.ref.bytes, parsed.blobHash);
      // The only bytes of the system area taken from the file are the image's page-table entries, checked.
      system = systemAreaFor(blob.ref, layout);
      const call = parsed.header.entrypointTag === EntrypointTag.Call;
      return construct(blob, {
        system,
        layout,
        entrypoint: call ? "Call" : "Initialise",
        entryAddr: BigInt(parsed.header.entrypointAddr),
        hostFunctions: parsed.hostFunctions,
        family: newFamily(),
        functions: call ? readFunctionTable(blob.ref.window(FUNC_TABLE_ADDR, FUNC_TABLE_SIZE)) : undefined,
        // Only a verified load knows the blob matches the hash (toFile of an unchecked load hashes again).
        blobHash: verify ? parsed.blobHash : undefined,
      });
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
   * @example
   * ```ts ignore
   * await snap.toFile("guest.hls");
   * ```
   */
  async toFile(path: string | URL): Promise<void> {
    const { blob, data: d } = live(this);
    d.blobHash ??= blake3(blob.ref.bytes);
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
    }, blob.ref.bytes);
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

/** Copies `mem` (a persistent region) into a sealed backing and wraps it as a snapshot. */
export function snapshotFromMemory(mem: Mapping, d: Omit<SnapshotData, "system">): Snapshot {
  let blob: Blob;
  try {
    blob = withoutGeneration(mem, () => Blob.copyOf(mem));
  } catch (e) {
    throw exhaustion(e);
  }
  try {
    return construct(blob, { ...d, system: systemAreaFor(blob.ref, d.layout) });
  } catch (e) {
    blob.close();
    throw exhaustion(e);
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
