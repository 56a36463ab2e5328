/**
 * `OsMemory` on Windows: guest memory in `VirtualAlloc2` placeholders, snapshots as file-mapping sections,
 * copy-on-write views through `MapViewOfFile3(MEM_REPLACE_PLACEHOLDER, PAGE_WRITECOPY)`.
 *
 * Commit charge: Windows does not overcommit. Private read/write memory is charged in full when committed
 * (`reserve` commits the whole range, though pages are only materialised on first touch), and a
 * copy-on-write view is charged for its whole size when mapped, since any page of it may become private.
 * So each VM costs its full guest memory in commit, whether it maps the snapshot copy-on-write or copies
 * it into private memory; what copy-on-write saves is the copy itself and the physical pages of everything
 * the guest only reads, which stay shared with the file's (or section's) page cache. See docs/WHP.md.
 *
 * Nothing is opened at module load.
 *
 * @module
 */
import type { Backing, OpenedFile, OsMemory } from "../os_memory.ts";
import type { PageRun } from "../../../format/sections.ts";
import { isZero, type OpenRules, READ_CHUNK, readStream, readThroughDeno, type Sink } from "../_read.ts";
import { WIN32_ERROR, Win32Error } from "../../../ffi/windows/hresult.ts";
import {
  checkBool,
  checkPointer,
  DUPLICATE,
  FILE,
  FILE_INFO,
  FILE_MAP,
  INVALID_HANDLE_VALUE,
  kernel32,
  kernelbase,
  lastError,
  MEM,
  OVERLAPPED,
  PAGE as PROT,
  wide,
} from "../../../ffi/windows/kernel32.ts";
import { applyReplace, clip, initialSegments, planReplace, type Segment } from "./_segments.ts";

const PAGE_SIZE = 4096;
/** Views of a section must start at a multiple of this (unless they replace a placeholder). */
const ALLOCATION_GRANULARITY = 65536;

/** A reservation made by `reserve`. */
interface Reservation {
  base: bigint;
  size: number;
  segments: Segment[];
}

const reservations = new Map<bigint, Reservation>();
/** Read-only views: returned address → view base (the view starts at a 64 KiB-aligned file offset). */
const readOnlyViews = new Map<bigint, bigint>();

function addr(p: Deno.PointerObject): bigint {
  return BigInt(Deno.UnsafePointer.value(p));
}

function ptr(a: bigint): Deno.PointerObject {
  const p = Deno.UnsafePointer.create(a);
  if (p === null) throw new RangeError("null address");
  return p;
}

function process(): Deno.PointerObject {
  return kernel32().GetCurrentProcess()!;
}

function reservationOf(pointer: Deno.PointerObject, size: number): { r: Reservation; offset: number } {
  const a = addr(pointer);
  for (const r of reservations.values()) {
    if (a >= r.base && a + BigInt(size) <= r.base + BigInt(r.size)) return { r, offset: Number(a - r.base) };
  }
  throw new RangeError(`0x${a.toString(16)}+${size} is not inside memory from reserve()`);
}

/** A snapshot's bytes: a section handle (file-backed or pagefile-backed) that only allows reading. */
class SectionBacking implements Backing {
  readonly offset: number;
  readonly size: number;
  readonly inMemory: boolean;
  #section: Deno.PointerObject | null;

  constructor(section: Deno.PointerObject, offset: number, size: number, inMemory: boolean) {
    this.#section = section;
    this.offset = offset;
    this.size = size;
    this.inMemory = inMemory;
  }

  get closed(): boolean {
    return this.#section === null;
  }

  /** The section handle; throws once closed. */
  get section(): Deno.PointerObject {
    if (this.#section === null) throw new Error("snapshot backing is closed");
    return this.#section;
  }

  close(): void {
    if (this.#section === null) return;
    kernel32().CloseHandle(this.#section);
    this.#section = null;
  }
}

function sectionOf(b: Backing): SectionBacking {
  if (!(b instanceof SectionBacking)) throw new TypeError("not a Windows snapshot backing");
  return b;
}

/** Turns one segment back into a placeholder (its bytes are dropped). */
function toPlaceholder(r: Reservation, s: Segment): void {
  const at = ptr(r.base + BigInt(s.offset));
  if (s.kind === "view") {
    checkBool("UnmapViewOfFile2", kernelbase().UnmapViewOfFile2(process(), at, MEM.PRESERVE_PLACEHOLDER));
  } else if (s.kind === "private") {
    checkBool(
      "VirtualFree(MEM_PRESERVE_PLACEHOLDER)",
      kernel32().VirtualFree(at, BigInt(s.size), MEM.RELEASE | MEM.PRESERVE_PLACEHOLDER),
    );
  }
}

/** Splits the placeholder starting at `at` so that its first `size` bytes become a placeholder of their own. */
function splitFront(at: bigint, size: number): void {
  checkBool(
    "VirtualFree(split placeholder)",
    kernel32().VirtualFree(ptr(at), BigInt(size), MEM.RELEASE | MEM.PRESERVE_PLACEHOLDER),
  );
}

/** Private read/write memory in place of the placeholder `[at, at + size)`. */
function commitPlaceholder(at: bigint, size: number): void {
  const p = kernelbase().VirtualAlloc2(
    null,
    ptr(at),
    BigInt(size),
    MEM.RESERVE | MEM.COMMIT | MEM.REPLACE_PLACEHOLDER,
    PROT.READWRITE,
    null,
    0,
  );
  checkPointer("VirtualAlloc2(MEM_REPLACE_PLACEHOLDER)", p);
}

/**
 * Makes `[offset, offset + size)` of `r` one placeholder, keeping the bytes of partly covered neighbours
 * (copied out and back: pass split points to `reserve` to avoid that).
 */
function carve(r: Reservation, offset: number, size: number): void {
  const { overlapped, keep } = planReplace(r.segments, offset, size);
  const saved = keep.map((k) => {
    const view = Deno.UnsafePointerView.getArrayBuffer(ptr(r.base + BigInt(k.offset)), k.size);
    const copy = new Uint8Array(view).slice();
    view.transfer(0);
    return { ...k, copy };
  });
  for (const s of overlapped) toPlaceholder(r, s);
  // The overlapped pieces are now adjacent placeholders: merge them, then cut out exactly the range.
  const first = overlapped[0], last = overlapped[overlapped.length - 1];
  const spanStart = first.offset, spanEnd = last.offset + last.size;
  if (overlapped.length > 1) {
    checkBool(
      "VirtualFree(MEM_COALESCE_PLACEHOLDERS)",
      kernel32().VirtualFree(
        ptr(r.base + BigInt(spanStart)),
        BigInt(spanEnd - spanStart),
        MEM.RELEASE | MEM.COALESCE_PLACEHOLDERS,
      ),
    );
  }
  if (spanStart < offset) splitFront(r.base + BigInt(spanStart), offset - spanStart);
  if (offset + size < spanEnd) splitFront(r.base + BigInt(offset), size);
  for (const k of saved) {
    commitPlaceholder(r.base + BigInt(k.offset), k.size);
    const view = Deno.UnsafePointerView.getArrayBuffer(ptr(r.base + BigInt(k.offset)), k.size);
    new Uint8Array(view).set(k.copy);
    view.transfer(0);
  }
  r.segments = applyReplace(r.segments, offset, size, "placeholder");
}

function mapView(
  section: Deno.PointerObject,
  at: bigint,
  fileOffset: number,
  size: number,
  protect: number,
): void {
  const p = kernelbase().MapViewOfFile3(
    section,
    process(),
    ptr(at),
    BigInt(fileOffset),
    BigInt(size),
    MEM.REPLACE_PLACEHOLDER,
    protect,
    null,
    0,
  );
  checkPointer("MapViewOfFile3(MEM_REPLACE_PLACEHOLDER)", p);
}

function newSection(size: number): Deno.PointerObject {
  const h = kernel32().CreateFileMappingW(
    ptr(INVALID_HANDLE_VALUE),
    null,
    PROT.READWRITE,
    Math.floor(size / 2 ** 32),
    size % 2 ** 32,
    null,
  );
  return checkPointer("CreateFileMappingW(pagefile)", h);
}

/** Fills a new pagefile-backed section, then keeps only a read-only handle to it (Windows' "seal"). */
function sealedSection(size: number, fill: (view: Deno.PointerObject) => void): SectionBacking {
  const k = kernel32();
  const h = newSection(Math.max(size, 1));
  let owned: Deno.PointerObject | null = h;
  try {
    if (size > 0) {
      const view = checkPointer("MapViewOfFile", k.MapViewOfFile(h, FILE_MAP.WRITE, 0, 0, BigInt(size)));
      try {
        fill(view);
      } finally {
        k.UnmapViewOfFile(view);
      }
    }
    const out = new BigUint64Array(1);
    // DUPLICATE_CLOSE_SOURCE closes the writable handle even if the call fails.
    owned = null;
    checkBool(
      "DuplicateHandle(FILE_MAP_READ)",
      k.DuplicateHandle(
        process(),
        h,
        process(),
        new Uint8Array(out.buffer),
        FILE_MAP.READ,
        0,
        DUPLICATE.CLOSE_SOURCE,
      ),
    );
    return new SectionBacking(ptr(out[0]), 0, size, true);
  } finally {
    if (owned !== null) k.CloseHandle(owned);
  }
}

class WindowsFile implements OpenedFile {
  readonly size: number;
  readonly identity: string;
  readonly inMemory = false;
  #handle: Deno.PointerObject | null;

  constructor(handle: Deno.PointerObject, size: number, identity: string) {
    this.#handle = handle;
    this.size = size;
    this.identity = identity;
  }

  read(offset: number, length: number): Uint8Array {
    const h = this.#h();
    const n = Math.max(0, Math.min(length, this.size - offset));
    const out = new Uint8Array(n);
    let done = 0;
    while (done < n) {
      const ov = new Uint8Array(OVERLAPPED.SIZE);
      const v = new DataView(ov.buffer);
      const at = offset + done;
      v.setUint32(OVERLAPPED.OFFSET, at % 2 ** 32, true);
      v.setUint32(OVERLAPPED.OFFSET_HIGH, Math.floor(at / 2 ** 32), true);
      const got = new Uint32Array(1);
      const ok = kernel32().ReadFile(h, out.subarray(done), n - done, new Uint8Array(got.buffer), ov);
      if (ok === 0) {
        const err = lastError();
        if (err === WIN32_ERROR.ERROR_HANDLE_EOF) break;
        throw new Win32Error("ReadFile", err);
      }
      if (got[0] === 0) break;
      done += got[0];
    }
    return out.subarray(0, done);
  }

  toBacking(offset: number, size: number): Backing {
    const h = this.#h();
    const section = checkPointer(
      "CreateFileMappingW(file)",
      kernel32().CreateFileMappingW(h, null, PROT.READONLY, 0, 0, null),
    );
    // The section keeps the file open; the handle is no longer needed.
    this.close();
    return new SectionBacking(section, offset, size, false);
  }

  close(): void {
    if (this.#handle === null) return;
    kernel32().CloseHandle(this.#handle);
    this.#handle = null;
  }

  #h(): Deno.PointerObject {
    if (this.#handle === null) throw new Error("snapshot file is closed");
    return this.#handle;
  }
}

/**
 * A snapshot file's bytes in a pagefile-backed section, opened like a file: for files that cannot be mapped
 * (read into memory) and snapshots given as bytes. Reads map a view and copy.
 */
class SectionFile implements OpenedFile {
  readonly size: number;
  readonly identity: string;
  readonly inMemory = true;
  #section: SectionBacking | null;

  constructor(section: SectionBacking, identity: string) {
    this.#section = section;
    this.size = section.size;
    this.identity = identity;
  }

  read(offset: number, length: number): Uint8Array {
    const section = this.#s();
    const n = Math.max(0, Math.min(length, this.size - offset));
    if (n === 0) return new Uint8Array(0);
    const view = osMemory.mapReadOnly(new SectionBacking(section.section, offset, n, true));
    try {
      const bytes = Deno.UnsafePointerView.getArrayBuffer(view, n);
      const out = new Uint8Array(bytes).slice();
      bytes.transfer(0);
      return out;
    } finally {
      osMemory.unmapView(view, n);
    }
  }

  toBacking(offset: number, size: number): Backing {
    const section = this.#s();
    this.#section = null;
    return new SectionBacking(section.section, offset, size, true);
  }

  close(): void {
    this.#section?.close();
    this.#section = null;
  }

  #s(): SectionBacking {
    if (this.#section === null) throw new Error("snapshot file is closed");
    return this.#section;
  }
}

/** Non-zero chunks of a file being read, kept until its size is known (a section's size is fixed). */
class ChunkSink implements Sink {
  readonly chunks: { offset: number; bytes: Uint8Array }[] = [];

  write(offset: number, bytes: Uint8Array): void {
    this.chunks.push({ offset, bytes: bytes.slice() });
  }

  /** A sealed section of `size` bytes holding the chunks (the rest stays untouched zero pages). */
  finish(size: number, identity: string): OpenedFile {
    const section = sealedSection(size, (view) => {
      for (const c of this.chunks) {
        const buf = Deno.UnsafePointerView.getArrayBuffer(view, c.bytes.byteLength, c.offset);
        new Uint8Array(buf).set(c.bytes);
        buf.transfer(0);
      }
    });
    this.chunks.length = 0;
    return new SectionFile(section, identity);
  }
}

/** Reads a handle that is not a disk file (a pipe, a character device) to its end, sequentially. */
function readHandle(h: Deno.PointerObject, identity: string, rules: OpenRules): OpenedFile {
  const sink = new ChunkSink();
  const got = new Uint32Array(1);
  const size = readStream(
    (into) => {
      if (kernel32().ReadFile(h, into, into.byteLength, new Uint8Array(got.buffer), null) !== 0) {
        return got[0];
      }
      const err = lastError();
      if (err === WIN32_ERROR.ERROR_BROKEN_PIPE || err === WIN32_ERROR.ERROR_HANDLE_EOF) return 0;
      throw new Win32Error("ReadFile", err);
    },
    sink,
    rules,
  );
  return sink.finish(size, identity);
}

/**
 * The Windows implementation of {@linkcode OsMemory}.
 *
 * `reserve` takes optional split offsets beyond the interface: a reservation split where
 * `mapCopyOnWrite` will later replace memory lets that replacement happen without copying the
 * neighbouring bytes out and back.
 *
 * @example
 * ```ts ignore
 * import { osMemory } from "./os_memory.ts";
 * const p = osMemory.reserve(3 * 4096);
 * osMemory.release(p, 3 * 4096);
 * ```
 */
export const osMemory: OsMemory = {
  pageSize: PAGE_SIZE,

  reserve(size: number, splits: readonly number[] = []): Deno.PointerObject {
    if (size <= 0 || size % PAGE_SIZE !== 0) {
      throw new RangeError(`size ${size} is not a positive page multiple`);
    }
    if (splits.some((s) => s % PAGE_SIZE !== 0)) {
      throw new RangeError("split offsets must be page multiples");
    }
    const base = checkPointer(
      "VirtualAlloc2(MEM_RESERVE_PLACEHOLDER)",
      kernelbase().VirtualAlloc2(
        null,
        null,
        BigInt(size),
        MEM.RESERVE | MEM.RESERVE_PLACEHOLDER,
        PROT.NOACCESS,
        null,
        0,
      ),
    );
    const r: Reservation = { base: addr(base), size, segments: initialSegments(size, splits) };
    try {
      for (const s of r.segments.slice(0, -1)) splitFront(r.base + BigInt(s.offset), s.size);
      for (const s of r.segments) commitPlaceholder(r.base + BigInt(s.offset), s.size);
    } catch (e) {
      releaseSegments(r);
      throw e;
    }
    reservations.set(r.base, r);
    return base;
  },

  release(pointer: Deno.PointerObject, size: number): void {
    const r = reservations.get(addr(pointer));
    if (r === undefined || r.size !== size) {
      throw new RangeError("release() of memory reserve() did not return");
    }
    reservations.delete(r.base);
    releaseSegments(r);
  },

  protectNone(pointer: Deno.PointerObject, size: number): void {
    const old = new Uint32Array(1);
    checkBool(
      "VirtualProtect(PAGE_NOACCESS)",
      kernel32().VirtualProtect(pointer, BigInt(size), PROT.NOACCESS, new Uint8Array(old.buffer)),
    );
  },

  mapCopyOnWrite(pointer: Deno.PointerObject, size: number, backing: Backing): void {
    const b = sectionOf(backing);
    if (size > b.size) {
      throw new RangeError(`copy-on-write view of ${size} bytes over a ${b.size}-byte blob`);
    }
    const { r, offset } = reservationOf(pointer, size);
    carve(r, offset, size);
    mapView(b.section, r.base + BigInt(offset), b.offset, size, PROT.WRITECOPY);
    r.segments = applyReplace(r.segments, offset, size, "view");
  },

  mapReadOnly(backing: Backing): Deno.PointerObject {
    const b = sectionOf(backing);
    const aligned = Math.floor(b.offset / ALLOCATION_GRANULARITY) * ALLOCATION_GRANULARITY;
    const delta = b.offset - aligned;
    const view = checkPointer(
      "MapViewOfFile(FILE_MAP_READ)",
      kernel32().MapViewOfFile(
        b.section,
        FILE_MAP.READ,
        Math.floor(aligned / 2 ** 32),
        aligned % 2 ** 32,
        BigInt(b.size + delta),
      ),
    );
    const out = addr(view) + BigInt(delta);
    readOnlyViews.set(out, addr(view));
    return ptr(out);
  },

  unmapView(pointer: Deno.PointerObject, _size: number): void {
    const a = addr(pointer);
    const base = readOnlyViews.get(a);
    if (base === undefined) throw new RangeError("unmapView() of a view mapReadOnly() did not return");
    readOnlyViews.delete(a);
    checkBool("UnmapViewOfFile", kernel32().UnmapViewOfFile(ptr(base)));
  },

  prefault(pointer: Deno.PointerObject, size: number): void {
    // Write-touch every page (a copy-on-write page becomes private, as MADV_POPULATE_WRITE does on Linux).
    try {
      const buf = Deno.UnsafePointerView.getArrayBuffer(pointer, size);
      const bytes = new Uint8Array(buf);
      for (let i = 0; i < size; i += PAGE_SIZE) bytes[i] |= 0;
      buf.transfer(0);
    } catch {
      // best effort
    }
  },

  adviseRandom(_pointer: Deno.PointerObject, _size: number): void {
    // Windows has no per-range read-ahead advice for mapped views; page faults on a view read clusters
    // chosen by the memory manager. Nothing to do.
  },

  discard(pointer: Deno.PointerObject, size: number): void {
    const { r, offset } = reservationOf(pointer, size);
    for (const part of clip(r.segments, offset, size)) {
      const at = ptr(r.base + BigInt(part.offset));
      if (part.segment.kind === "private") {
        // Decommit and commit again: the pages read as zeros and no longer use physical memory.
        checkBool("VirtualFree(MEM_DECOMMIT)", kernel32().VirtualFree(at, BigInt(part.size), MEM.DECOMMIT));
        checkPointer(
          "VirtualAlloc2(MEM_COMMIT)",
          kernelbase().VirtualAlloc2(null, at, BigInt(part.size), MEM.COMMIT, PROT.READWRITE, null, 0),
        );
      } else if (part.segment.kind === "view") {
        throw new RangeError("discard() of a copy-on-write view: map the snapshot again instead");
      }
    }
  },

  copy(to: bigint, from: bigint, size: bigint): void {
    kernel32().RtlMoveMemory(to, from, size);
  },

  sealedCopy(pointer: Deno.PointerObject, size: number, runs?: readonly PageRun[]): Backing {
    return sealedSection(size, (view) => {
      const to = BigInt(Deno.UnsafePointer.value(view)), from = BigInt(Deno.UnsafePointer.value(pointer));
      if (runs === undefined) return kernel32().RtlMoveMemory(to, from, BigInt(size));
      // Only these pages: a pagefile-backed section reads as zeros and materialises a page only when it is
      // written (its commit charge is the whole size either way).
      for (const run of runs) {
        const offset = run.first * PAGE_SIZE, length = run.count * PAGE_SIZE;
        if (offset + length > size) {
          throw new RangeError(`run ${run.first}+${run.count} is outside ${size} bytes`);
        }
        kernel32().RtlMoveMemory(to + BigInt(offset), from + BigInt(offset), BigInt(length));
      }
    });
  },

  sealedBytes(bytes: Uint8Array): Backing {
    return sealedSection(bytes.length, (view) => {
      const buf = Deno.UnsafePointerView.getArrayBuffer(view, bytes.length);
      new Uint8Array(buf).set(bytes);
      buf.transfer(0);
    });
  },

  openFile(path: string, rules: OpenRules): OpenedFile {
    // Deno's own errors for a missing path or a directory, as the POSIX implementation gives.
    const info = Deno.statSync(path);
    if (info.isDirectory) throw new Deno.errors.IsADirectory(`Is a directory: open '${path}'`);
    if (!info.isFile) throw rules.notRegular();
    const k = kernel32();
    // FILE_SHARE_DELETE: the file may be renamed over or deleted while loaded; no FILE_SHARE_WRITE: nobody
    // may modify it in place meanwhile.
    const h = k.CreateFileW(
      wide(path),
      FILE.GENERIC_READ,
      FILE.SHARE_READ | FILE.SHARE_DELETE,
      null,
      FILE.OPEN_EXISTING,
      FILE.ATTRIBUTE_NORMAL,
      null,
    );
    if (h === null || BigInt(Deno.UnsafePointer.value(h)) === INVALID_HANDLE_VALUE) {
      const err = lastError();
      // Deno found it, Windows does not: the virtual file system of a `deno compile` executable.
      if (err === WIN32_ERROR.ERROR_FILE_NOT_FOUND || err === WIN32_ERROR.ERROR_PATH_NOT_FOUND) {
        const sink = new ChunkSink();
        const read = readThroughDeno(path, sink, rules);
        return sink.finish(read.size, read.identity);
      }
      throw new Win32Error(`CreateFileW(${path})`, err);
    }
    try {
      if (k.GetFileType(h) !== FILE.TYPE_DISK) return readHandle(h, `read:${path}`, rules);
      const fi = new Uint8Array(FILE_INFO.SIZE);
      checkBool("GetFileInformationByHandle", k.GetFileInformationByHandle(h, fi));
      const v = new DataView(fi.buffer);
      if ((v.getUint32(FILE_INFO.ATTRIBUTES, true) & FILE.ATTRIBUTE_DIRECTORY) !== 0) {
        throw new Deno.errors.IsADirectory(`Is a directory: open '${path}'`);
      }
      const size = v.getUint32(FILE_INFO.SIZE_HIGH, true) * 2 ** 32 + v.getUint32(FILE_INFO.SIZE_LOW, true);
      const identity = [
        v.getUint32(FILE_INFO.VOLUME_SERIAL, true),
        v.getUint32(FILE_INFO.INDEX_HIGH, true),
        v.getUint32(FILE_INFO.INDEX_LOW, true),
        v.getBigUint64(FILE_INFO.LAST_WRITE_TIME, true),
      ].join(":");
      const file = new WindowsFile(h, size, identity);
      return file;
    } catch (e) {
      k.CloseHandle(h);
      throw e;
    }
  },

  openBytes(bytes: Uint8Array, identity: string): OpenedFile {
    const section = sealedSection(bytes.byteLength, (view) => {
      // Zero chunks stay untouched: demand-zero pages that take no memory.
      for (let at = 0; at < bytes.byteLength; at += READ_CHUNK) {
        const chunk = bytes.subarray(at, Math.min(bytes.byteLength, at + READ_CHUNK));
        if (isZero(chunk)) continue;
        const buf = Deno.UnsafePointerView.getArrayBuffer(view, chunk.byteLength, at);
        new Uint8Array(buf).set(chunk);
        buf.transfer(0);
      }
    });
    return new SectionFile(section, identity);
  },
};

function releaseSegments(r: Reservation): void {
  const k = kernel32();
  for (const s of r.segments) {
    const at = ptr(r.base + BigInt(s.offset));
    // Each segment is its own allocation, view or placeholder, released on its own.
    if (s.kind === "view") k.UnmapViewOfFile(at);
    else k.VirtualFree(at, 0n, MEM.RELEASE);
  }
}
