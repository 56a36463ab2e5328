/**
 * Snapshots: a sandbox's persistent memory, special registers, entry point, layout and host-function
 * signatures, in memory (a sealed memfd) or in an `.hls` file (shared/format/hls-v1.md, docs/FORMAT.md).
 *
 * @module
 */
import { check, lastErrno, OsCallError } from "../ffi/linux/errno.ts";
import {
  F_ADD_SEALS,
  F_SEAL_GROW,
  F_SEAL_SEAL,
  F_SEAL_SHRINK,
  F_SEAL_WRITE,
  libc,
  MFD_ALLOW_SEALING,
  MFD_CLOEXEC,
} from "../ffi/linux/libc.ts";
import {
  Arch,
  blake3,
  EntrypointTag,
  type HostFunction as RecordedHostFunction,
  type HostIdentity,
  Hypervisor,
  inspectSnapshot,
  parseSnapshotHeader,
  SnapshotFormatError,
  type SnapshotInspection,
  SREGS_OFFSET,
  SREGS_SIZE,
  sregsFromKvm,
  verifyBlobHash,
} from "../format/mod.ts";
import { ABI_VERSION, FUNC_TABLE_ADDR, FUNC_TABLE_SIZE, IMAGE_BASE, PAGE } from "./machine/abi.ts";
import { tagOf, typeOfTag } from "./machine/codec.ts";
import { openFile, readHeaderHash, readPrefix, statPath, writeSnapshotFile } from "./snapshot/file.ts";
import { checkAbiSregs, kvmSregsFromFile, layoutOf, readFunctionTable } from "./snapshot/checks.ts";
import type { HostFunctions } from "./host_functions.ts";
import type { Layout } from "./machine/layout.ts";
import { Mapping } from "./memory/mapping.ts";
import type { GuestFunctionInfo, ReturnType, Signature, ValueType } from "./types.ts";

/** The host this process is, as snapshot files name it. */
export const HOST: HostIdentity = { arch: Arch.X86_64, hypervisor: Hypervisor.KVM, abiVersion: ABI_VERSION };

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
  /** `struct kvm_sregs` (312 B), or null for Initialise snapshots. */
  readonly sregs: Uint8Array | null;
  /** Host functions registered when the snapshot was taken. */
  readonly hostFunctions: readonly RecordedHostFunction[];
  /** Restore-compatibility family. */
  readonly family: number;
  /** The guest's functions (Call snapshots). */
  readonly functions?: ReadonlyMap<string, GuestFunctionInfo>;
  /** BLAKE3 of the blob, once known. */
  blobHash?: Uint8Array;
}

/** The memory blob: an fd to map copy-on-write from, and a read-only reference view. */
export class Blob {
  #fd: number;
  /** File offset of the blob. */
  readonly offset: number;
  /** Blob length. */
  readonly size: number;
  /** Read-only mapping of the blob (restore copies pages back from it, toFile writes it). */
  readonly ref: Mapping;

  /** Takes ownership of `fd`; maps the reference view. */
  constructor(fd: number, offset: number, size: number) {
    this.#fd = fd;
    this.offset = offset;
    this.size = size;
    try {
      this.ref = Mapping.readOnly(fd, size, offset);
    } catch (e) {
      libc().close(fd);
      throw e;
    }
  }

  /** The fd, or -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  /** Unmaps the reference view and closes the fd. */
  close(): void {
    if (this.#fd < 0) return;
    this.ref.close();
    libc().close(this.#fd);
    this.#fd = -1;
  }
}

const registry = new FinalizationRegistry<Blob>((blob) => blob.close());
const internals = new WeakMap<Snapshot, { blob: Blob; data: SnapshotData }>();

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
  private constructor(blob: Blob, data: SnapshotData) {
    internals.set(this, { blob, data });
    registry.register(this, blob, blob);
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
    const st = statPath(path);
    const key = `${st.dev}:${st.ino}`;
    const hit = cache.get(key);
    const snap = hit?.ref.deref();
    if (
      snap !== undefined && hit!.size === st.size && hit!.mtime === st.mtime &&
      internals.get(snap)?.blob.fd! >= 0
    ) {
      const hash = readHeaderHash(path);
      if (hash !== undefined && equalBytes(hash, hit!.headerHash)) return snap;
    }
    const fresh = Snapshot.#load(path, true);
    const hash = readHeaderHash(path);
    if (hash !== undefined) {
      const ref = new WeakRef(fresh);
      cache.set(key, { ref, size: st.size, mtime: st.mtime, headerHash: hash });
      cacheCleanup.register(fresh, { key, ref });
    }
    return fresh;
  }

  /**
   * Reads only the header and host-function section of a snapshot file, maps nothing, and describes it:
   * every header field, versions, arch and hypervisor names, compatibility with this host (and why not),
   * the host functions, and both hashes as hex. Throws `SnapshotFormatError` only when the file cannot be
   * read as a snapshot at all.
   *
   * @example
   * ```ts ignore
   * console.log(Snapshot.inspectFile("guest.hls").compatible);
   * ```
   */
  static inspectFile(path: string | URL): SnapshotInspection {
    const f = openFile(path);
    try {
      const prefix = readPrefix(f.fd, f.size);
      const info = inspectSnapshot(prefix, f.size, HOST);
      if (info.compatible) {
        // The loader's own checks on top of the codec's: exact layout and ABI registers.
        try {
          const parsed = parseSnapshotHeader(prefix, f.size, HOST);
          layoutOf(parsed);
          if (parsed.header.entrypointTag === EntrypointTag.Call) {
            checkAbiSregs(kvmSregsFromFile(prefix.subarray(SREGS_OFFSET, SREGS_OFFSET + SREGS_SIZE)));
          }
        } catch (e) {
          if (!(e instanceof SnapshotFormatError)) throw e;
          info.compatible = false;
          info.incompatibilities.push({ kind: e.kind, field: e.field, message: e.message });
        }
      }
      return info;
    } finally {
      libc().close(f.fd);
    }
  }

  static #load(path: string | URL, verify: boolean): Snapshot {
    const f = openFile(path);
    let fd = f.fd;
    try {
      const prefix = readPrefix(fd, f.size);
      const parsed = parseSnapshotHeader(prefix, f.size, HOST);
      const layout = layoutOf(parsed);
      const blob = new Blob(fd, parsed.header.memoryOffset, parsed.header.memorySize);
      fd = -1; // owned by blob now
      try {
        if (verify) verifyBlobHash(blob.ref.bytes, parsed.blobHash);
        const call = parsed.header.entrypointTag === EntrypointTag.Call;
        const data: SnapshotData = {
          layout,
          entrypoint: call ? "Call" : "Initialise",
          entryAddr: BigInt(parsed.header.entrypointAddr),
          sregs: call
            ? checkAbiSregs(kvmSregsFromFile(prefix.subarray(SREGS_OFFSET, SREGS_OFFSET + SREGS_SIZE)))
            : null,
          hostFunctions: parsed.hostFunctions,
          family: newFamily(),
          functions: call ? readFunctionTable(blob.ref.window(FUNC_TABLE_ADDR, FUNC_TABLE_SIZE)) : undefined,
          blobHash: parsed.blobHash,
        };
        return new Snapshot(blob, data);
      } catch (e) {
        blob.close();
        throw e;
      }
    } finally {
      if (fd >= 0) libc().close(fd);
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
        arch: HOST.arch,
        abiVersion: ABI_VERSION,
        hypervisor: HOST.hypervisor,
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
      sregs: d.sregs ? sregsFromKvm(d.sregs) : null,
      hostFunctions: d.hostFunctions,
      blobHash: d.blobHash,
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
    i.blob.close();
  }

  /** Same as `close()`. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Creates a snapshot (module-internal: see {@linkcode snapshotFromMemory}). */
  static create(blob: Blob, d: SnapshotData): Snapshot {
    return new Snapshot(blob, d);
  }
}

function data(s: Snapshot): SnapshotData {
  return live(s).data;
}

/** The snapshot's blob and data; throws if it was closed. */
export function live(s: Snapshot): { blob: Blob; data: SnapshotData } {
  const i = internals.get(s);
  if (i === undefined) throw new TypeError("Not a Snapshot");
  if (i.blob.fd < 0) throw new TypeError("Snapshot is closed");
  return i;
}

/**
 * Copies `mem` (a persistent region) into a sealed memfd and wraps it as a snapshot.
 */
export function snapshotFromMemory(mem: Mapping, d: SnapshotData): Snapshot {
  const c = libc();
  const fd = check(
    "memfd_create",
    c.memfd_create(new TextEncoder().encode("snapvm-snapshot\0"), MFD_CLOEXEC | MFD_ALLOW_SEALING),
  );
  try {
    check("ftruncate", c.ftruncate(fd, BigInt(mem.size)));
    for (let done = 0; done < mem.size;) {
      const n = Number(
        c.pwrite(fd, Deno.UnsafePointer.offset(mem.pointer, done), BigInt(mem.size - done), BigInt(done)),
      );
      if (n <= 0) throw new OsCallError("pwrite(memfd)", lastErrno());
      done += n;
    }
    check(
      "fcntl(F_ADD_SEALS)",
      c.fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL),
    );
  } catch (e) {
    c.close(fd);
    throw e;
  }
  return Snapshot.create(new Blob(fd, 0, mem.size), d);
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
  { ref: WeakRef<Snapshot>; size: number; mtime: string; headerHash: Uint8Array }
>();
const cacheCleanup = new FinalizationRegistry<{ key: string; ref: WeakRef<Snapshot> }>(({ key, ref }) => {
  if (cache.get(key)?.ref === ref) cache.delete(key);
});
