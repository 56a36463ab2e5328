/**
 * What the operating system must provide for guest memory and snapshot backing, in snapvm's terms. The
 * implementations live in `posix/os_memory.ts` (mmap, memfd) and `windows/os_memory.ts` (VirtualAlloc2
 * placeholders, file mappings), with the same file names per platform as Deno std's `path/{posix,windows}`;
 * `mapping.ts` picks one at load time and builds the platform-neutral `Mapping` on top.
 *
 * @module
 */
import type { PageRun } from "../../format/sections.ts";
import type { OpenRules } from "./_read.ts";

/**
 * An immutable source of snapshot bytes that guest memory can be mapped from copy-on-write: a snapshot file
 * opened read-only, or a sealed in-memory copy. Owned by one `Snapshot`; `close()` releases it (mappings
 * made from it stay valid).
 *
 * @example
 * ```ts ignore
 * import { osMemory } from "./mapping.ts";
 * const backing = osMemory.sealedCopy(pointer, size);
 * backing.close();
 * ```
 */
export interface Backing {
  /** Offset of the blob inside the source (the file's `memory_offset`; 0 for an in-memory copy). */
  readonly offset: number;
  /** Blob length in bytes. */
  readonly size: number;
  /**
   * True for bytes held in memory (a memfd, a pagefile-backed section) rather than a file on disk. Such a
   * copy may have holes (zeros never written); a page fault on a hole through a mapping of it allocates the
   * page for good (tmpfs does, unlike `pread`), so views of it map only its data (`Blob.ref`).
   */
  readonly inMemory: boolean;
  /** True once closed. */
  readonly closed: boolean;
  /** Releases the OS handle. */
  close(): void;
}

/**
 * An open snapshot file: its size and a backing over the whole file (the blob offset is set later, from
 * the header), plus a bounded positional read for the prefix.
 *
 * @example
 * ```ts ignore
 * import { osMemory } from "./mapping.ts";
 * const f = osMemory.openFile("guest.hls", rules);
 * console.log(f.size);
 * f.close();
 * ```
 */
export interface OpenedFile {
  /** File size in bytes. */
  readonly size: number;
  /** Identity of the file for caches: device, inode (or volume serial, file index) and mtime. */
  readonly identity: string;
  /** True when the file's bytes were read into memory (it could not be mapped, or was given as bytes). */
  readonly inMemory: boolean;
  /** Reads up to `length` bytes at `offset` (fewer at the end of the file). */
  read(offset: number, length: number): Uint8Array;
  /** Turns the open file into the backing of a blob at `offset` of `size` bytes (ownership moves). */
  toBacking(offset: number, size: number): Backing;
  /** Closes the file unless it became a backing. */
  close(): void;
}

/**
 * The operating system calls guest memory needs. Addresses are host pointers.
 *
 * @example
 * ```ts ignore
 * import { osMemory } from "./mapping.ts";
 * const p = osMemory.reserve(1 << 20);
 * osMemory.release(p, 1 << 20);
 * ```
 */
export interface OsMemory {
  /** Page size of the host (4096 on every supported platform). */
  readonly pageSize: number;
  /**
   * Reserves and commits lazily `size` bytes of zero-filled private read/write memory. `splits` are offsets
   * where later calls will treat the range in separate pieces (a copy-on-write view, the guard page): Windows
   * must carve its reservation there up front; Linux ignores them.
   */
  reserve(size: number, splits?: readonly number[]): Deno.PointerObject;
  /** Releases memory from {@linkcode reserve} (with everything mapped into it). */
  release(pointer: Deno.PointerObject, size: number): void;
  /** Makes a page range inaccessible to the host (the guard page). */
  protectNone(pointer: Deno.PointerObject, size: number): void;
  /**
   * Replaces `[pointer, pointer + size)` (inside a reservation) with a copy-on-write view of `backing`:
   * reads see the blob, writes stay private to this process.
   */
  mapCopyOnWrite(pointer: Deno.PointerObject, size: number, backing: Backing): void;
  /** A read-only view of the whole blob (unmapped with {@linkcode unmapView}). */
  mapReadOnly(backing: Backing): Deno.PointerObject;
  /** Unmaps a view from {@linkcode mapReadOnly}. */
  unmapView(pointer: Deno.PointerObject, size: number): void;
  /** Allocates host pages for a range now (the guest's first touch is then cheaper); best effort. */
  prefault(pointer: Deno.PointerObject, size: number): void;
  /** Tells the OS that a file-backed range is read at random (no read-ahead); best effort. */
  adviseRandom(pointer: Deno.PointerObject, size: number): void;
  /**
   * Drops a range's private pages: it reads as zeros again. Only for private memory from `reserve` (Linux
   * also allows it on a copy-on-write view; Windows does not).
   */
  discard(pointer: Deno.PointerObject, size: number): void;
  /**
   * Copies `size` bytes (non-overlapping) between host addresses. Addresses are bigints so that a copy makes
   * no pointer object: restore copies this way on every call.
   */
  copy(to: bigint, from: bigint, size: bigint): void;
  /**
   * Copies `size` bytes at `pointer` into a new sealed, immutable backing. With `runs`, copies only those
   * pages (4096 bytes each, ascending, inside `size`) and leaves the others zero without writing them: holes
   * in the memfd (Linux), untouched demand-zero pages of the section (Windows), which take no memory until
   * read and leave the source's other pages unread.
   */
  sealedCopy(pointer: Deno.PointerObject, size: number, runs?: readonly PageRun[]): Backing;
  /** A backing holding `bytes` (for snapshots that arrive as bytes, e.g. from `deno compile` assets). */
  sealedBytes(bytes: Uint8Array): Backing;
  /**
   * Opens a snapshot file read-only. A missing path or a directory throws Deno's own `NotFound` /
   * `IsADirectory`. A regular file is used in place (mapped). A file that cannot be mapped but can be read
   * (a FIFO or pipe, a device, a file that reports no size, a file only Deno can open, as inside a `deno
   * compile` executable) is read into sealed memory, at most `rules.maxReadSize` bytes (`rules.tooLarge`
   * otherwise). What can be neither throws `rules.notRegular()`.
   */
  openFile(path: string, rules: OpenRules): OpenedFile;
  /**
   * A copy of `bytes` in sealed memory (a memfd; a pagefile-backed section on Windows), opened like a file
   * (for `Snapshot.fromBytes`). Zero chunks are not written: they take no memory.
   */
  openBytes(bytes: Uint8Array, identity: string): OpenedFile;
}
