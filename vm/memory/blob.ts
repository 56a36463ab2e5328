/**
 * A snapshot's memory blob: the OS backing guest memory is mapped from copy-on-write, and a read-only
 * reference view of it (restore copies pages back from it, `toFile` writes it, the loader checks it).
 *
 * A blob loaded from a delta file is layered: a complete base backing, plus overlays (the delta files'
 * stored pages) mapped over it at their guest pages, in both the reference view and every sandbox's memory.
 * Where overlays cannot be mapped in place (not Linux, or too many pieces), the layers are copied once into
 * one sealed backing instead.
 *
 * @module
 */
import type { Backing } from "./os_memory.ts";
import { Mapping, osMemory } from "./mapping.ts";
import { backingFd } from "./posix/os_memory.ts";
import { ErrnoError, lastErrno } from "../../ffi/linux/errno.ts";
import { trackMapping } from "../../ffi/linux/reaper.ts";
import {
  libc,
  MADV_HUGEPAGE,
  MAP_ANONYMOUS,
  MAP_FAILED,
  MAP_FIXED,
  MAP_NORESERVE,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
} from "../../ffi/linux/libc.ts";
import type { PageRun } from "../../format/sections.ts";
// Page-run helpers only (that module imports this one for types alone).
import { capRuns, coalesce, dataRunsOfFd } from "../snapshot/_pages.ts";

const PAGE = 4096;

/**
 * Most overlay pieces a blob maps in place. Each is one `mmap` per sandbox start (~2–5 µs here) and two more
 * VMAs per sandbox; a blob with more is copied into one sealed backing at load instead.
 */
export const MAX_OVERLAY_SEGMENTS = 64;

/**
 * Guest pages `first .. first + count − 1` come from page `from` onwards of an overlay's backing.
 *
 * @example
 * ```ts
 * import type { Segment } from "./blob.ts";
 * const s: Segment = { first: 512, count: 4, from: 0 };
 * console.log(s.count);
 * ```
 */
export interface Segment extends PageRun {
  /** Page index inside the overlay's backing. */
  readonly from: number;
}

/**
 * The stored pages of one delta file and where they go.
 *
 * @example
 * ```ts ignore
 * const overlay: Overlay = { backing, segments: [{ first: 600, count: 2, from: 0 }] };
 * ```
 */
export interface Overlay {
  /** The delta's stored pages (file offset `memory_offset`, length pages × 4096). */
  readonly backing: Backing;
  /** Disjoint across all overlays of a blob: later layers already won over earlier ones. */
  readonly segments: readonly Segment[];
}

/**
 * One delta layer as the file stores it: its runs, packed in order into `backing`.
 *
 * @example
 * ```ts ignore
 * const layer: Layer = { backing, runs: parsed.base!.runs };
 * ```
 */
export interface Layer {
  /** The delta's stored pages. */
  readonly backing: Backing;
  /** The guest pages it stores, ascending. */
  readonly runs: readonly PageRun[];
}

/**
 * Overlay segments up to this many pages are copied into a sandbox's memory rather than mapped: measured
 * here, mapping costs ~6 µs per segment plus ~10 µs more in the sandbox's first call and teardown (more VMAs),
 * while copying costs ~2 µs per page.
 */
const COPY_MAX_PAGES = 4;

const mapped = new WeakMap<Mapping, Blob>();

/** Data extents of an in-memory blob separated by at most this many pages share one mapping in its view. */
const VIEW_GAP_PAGES = 16;
/** Most mappings a view of an in-memory blob is made of. */
const MAX_VIEW_EXTENTS = 64;

/**
 * The memory blob of one snapshot. Owns its backings and view; `close()` releases them, and guest memory
 * mapped from it earlier stays valid.
 *
 * @example
 * ```ts
 * import { Blob } from "./blob.ts";
 * using blob = Blob.fromBytes(new Uint8Array(4096).fill(1));
 * console.log(blob.ref.bytes[0]); // 1
 * ```
 */
export class Blob {
  /** Where guest memory is mapped from (for a layered blob: the complete base). */
  readonly backing: Backing;
  /** Delta pages mapped over the base (empty for a plain blob). */
  readonly overlays: readonly Overlay[];
  /**
   * Pages that may be non-zero, when known (a superset: every page outside is zero). Set by a copy whose
   * source told which pages it had touched; `toFile` then scans only these.
   */
  readonly hint: readonly PageRun[] | undefined;
  #ref: Mapping | undefined;
  #random = false;
  #recorders: ((memory: Mapping) => void)[] = [];

  /**
   * Takes ownership of `backing` (and of the overlays' backings). The reference view is mapped when first
   * used (starting a sandbox and reading bytes with `read` need none).
   *
   * @example
   * ```ts
   * import { Blob } from "./blob.ts";
   * import { osMemory } from "./mapping.ts";
   * using blob = new Blob(osMemory.sealedBytes(new Uint8Array(4096)));
   * console.log(blob.size); // 4096
   * ```
   */
  constructor(backing: Backing, overlays: readonly Overlay[] = [], hint?: readonly PageRun[]) {
    this.backing = backing;
    this.overlays = overlays;
    this.hint = hint;
  }

  /**
   * Read-only view of the whole blob (overlays included), mapped on first use. A blob held in memory (a
   * sealed memfd, which has holes where zeros were never written) is viewed as anonymous zero memory with
   * its data extents mapped over it: reading the whole view (hashing it) then maps the shared zero page
   * for the holes instead of allocating a memfd page for each.
   */
  get ref(): Mapping {
    if (this.#ref === undefined) {
      if (this.backing.closed) throw new Error("Blob is closed");
      const ref = this.#sparseView() ?? Mapping.readOnly(this.backing);
      try {
        for (const overlay of this.overlays) {
          for (const s of overlay.segments) mapOverlay(ref.pointer, s, overlay.backing, false);
        }
        if (this.#random) ref.adviseRandom(0, ref.size);
      } catch (e) {
        ref.close();
        throw e;
      }
      this.#ref = ref;
    }
    return this.#ref;
  }

  /**
   * For a backing held in memory on Linux: anonymous read-only zero pages with the backing's data extents
   * (its hint, else `lseek(SEEK_DATA)`) mapped over them, merged to at most `MAX_VIEW_EXTENTS` mappings
   * (pages in merged gaps are holes mapped from the memfd: a few pages at most). Undefined otherwise.
   */
  #sparseView(): Mapping | undefined {
    if (Deno.build.os !== "linux" || !this.backing.inMemory) return undefined;
    const fd = backingFd(this.backing);
    const data = this.hint ?? dataRunsOfFd(fd, this.backing.offset, this.size);
    if (data === undefined) return undefined;
    const size = this.size;
    const p = zeroView(size);
    const view = Mapping.adopt(p, size, osMemory.unmapView);
    try {
      for (const run of capRuns(coalesce(data, VIEW_GAP_PAGES), MAX_VIEW_EXTENTS)) {
        mapOverlay(p, { ...run, from: run.first }, this.backing, false);
      }
    } catch (e) {
      view.close();
      throw e;
    }
    return view;
  }

  /**
   * From now on the reference view is read a page at a time (function table, restores), so a fault reads
   * one page instead of the kernel's read-around window (8 MiB here).
   */
  adviseRandom(): void {
    this.#random = true;
    this.#ref?.adviseRandom(0, this.#ref.size);
  }

  /**
   * Copies `length` bytes at `offset` of the blob out, from the files directly on Linux (no view mapped),
   * else through the reference view.
   *
   * @example
   * ```ts
   * import { Blob } from "./blob.ts";
   * using blob = Blob.fromBytes(new Uint8Array(8192).fill(5));
   * console.log(blob.read(4096, 2)); // Uint8Array(2) [ 5, 5 ]
   * ```
   */
  read(offset: number, length: number): Uint8Array {
    if (offset < 0 || length < 0 || offset + length > this.size) {
      throw new RangeError(`read ${offset}+${length} is outside the ${this.size}-byte blob`);
    }
    if (Deno.build.os !== "linux") return this.ref.window(offset, length).slice();
    const out = new Uint8Array(length);
    this.#pieces(offset, length, (at, fd, fileOffset, n) => {
      preadAll(fd, Deno.UnsafePointer.of(out.subarray(at - offset))!, n, fileOffset);
    });
    return out;
  }

  /** Calls `fn` for each piece of `[offset, offset + length)` with the file (base or overlay) that holds it. */
  #pieces(
    offset: number,
    length: number,
    fn: (at: number, fd: number, fileOffset: number, length: number) => void,
  ): void {
    const end = offset + length;
    let at = offset;
    while (at < end) {
      const page = Math.floor(at / PAGE);
      let found: { fd: number; fileOffset: number; until: number } | undefined;
      let next = end;
      for (const overlay of this.overlays) {
        for (const s of overlay.segments) {
          const from = s.first * PAGE, to = (s.first + s.count) * PAGE;
          if (page >= s.first && page < s.first + s.count) {
            found = {
              fd: backingFd(overlay.backing),
              fileOffset: overlay.backing.offset + s.from * PAGE + at - from,
              until: to,
            };
          } else if (from > at && from < next) next = from;
        }
      }
      const n = Math.min(end, found?.until ?? next) - at;
      if (found !== undefined) fn(at, found.fd, found.fileOffset, n);
      else fn(at, backingFd(this.backing), this.backing.offset + at, n);
      at += n;
    }
  }

  /**
   * A blob whose memory is `base` with each layer's pages over it, later layers winning. Takes ownership of
   * every backing. Maps the overlays in place when they are few and the platform can; otherwise copies the
   * layers once into a sealed backing.
   *
   * @example
   * ```ts ignore
   * const blob = Blob.layered(baseBacking, [{ backing: deltaBacking, runs }]);
   * ```
   */
  static layered(base: Backing, layers: readonly Layer[]): Blob {
    const overlays = flatten(layers);
    const pieces = overlays.reduce((n, o) => n + o.segments.length, 0);
    if (pieces <= MAX_OVERLAY_SEGMENTS && Deno.build.os === "linux") return new Blob(base, overlays);
    // Copy once: base copy-on-write, the layers' pages written over it, then sealed.
    try {
      using memory = Mapping.reserve(base.size);
      memory.mapCopyOnWrite(base);
      for (const overlay of overlays) {
        if (overlay.segments.length === 0) continue;
        using view = Mapping.readOnly(overlay.backing);
        for (const s of overlay.segments) {
          osMemory.copy(
            memory.address + BigInt(s.first * PAGE),
            view.address + BigInt(s.from * PAGE),
            BigInt(s.count * PAGE),
          );
        }
      }
      return Blob.copyOf(memory);
    } finally {
      base.close();
      for (const layer of layers) layer.backing.close();
    }
  }

  /**
   * A blob holding a copy of `size` bytes of host memory, sealed against any later change. `hint`, when
   * given, lists the pages that may be non-zero (every other page must read as zero).
   *
   * @example
   * ```ts
   * import { Blob } from "./blob.ts";
   * import { Mapping } from "./mapping.ts";
   * using mem = Mapping.reserve(4096);
   * using blob = Blob.copyOf(mem);
   * console.log(blob.size); // 4096
   * ```
   */
  static copyOf(memory: Mapping, hint?: readonly PageRun[]): Blob {
    // With a hint, only the hinted pages are copied (the rest of the copy is holes): the source's other
    // pages are never read, so never mapped, and their absence from the page tables is what the next hint
    // is made of.
    return new Blob(osMemory.sealedCopy(memory.pointer, memory.size, hint), [], hint);
  }

  /**
   * A blob holding a copy of `bytes`, sealed.
   *
   * @example
   * ```ts
   * import { Blob } from "./blob.ts";
   * using blob = Blob.fromBytes(new Uint8Array(8192));
   * console.log(blob.size); // 8192
   * ```
   */
  static fromBytes(bytes: Uint8Array): Blob {
    return new Blob(osMemory.sealedBytes(bytes));
  }

  /**
   * The blob last mapped into `memory` by {@linkcode Blob.mapInto}, if any: the pages of `memory` the process
   * never touched since still read as this blob's.
   *
   * @example
   * ```ts
   * import { Blob } from "./blob.ts";
   * import { Mapping } from "./mapping.ts";
   * using mem = Mapping.reserve(4096);
   * console.log(Blob.mappedInto(mem)); // undefined
   * ```
   */
  static mappedInto(memory: Mapping): Blob | undefined {
    return mapped.get(memory);
  }

  /**
   * Maps the blob copy-on-write over `memory` (a sandbox's persistent region, same size): the base, then the
   * overlays at their pages, then `MADV_RANDOM` so that a fault reads one page, not 8 MiB of read-around.
   *
   * @example
   * ```ts
   * import { Blob } from "./blob.ts";
   * import { Mapping } from "./mapping.ts";
   * using blob = Blob.fromBytes(new Uint8Array(4096).fill(3));
   * using mem = Mapping.reserve(4096);
   * blob.mapInto(mem);
   * console.log(mem.bytes[0]); // 3
   * ```
   */
  mapInto(memory: Mapping): void {
    memory.mapCopyOnWrite(this.backing);
    for (const overlay of this.overlays) {
      for (const s of overlay.segments) {
        // A few pages are cheaper to copy (one private page each) than to map (an mmap, two more VMAs).
        if (s.count > COPY_MAX_PAGES) mapOverlay(memory.pointer, s, overlay.backing, true);
        else {
          const at = Deno.UnsafePointer.offset(memory.pointer, s.first * PAGE)!;
          preadAll(backingFd(overlay.backing), at, s.count * PAGE, overlay.backing.offset + s.from * PAGE);
        }
      }
    }
    memory.adviseRandom(0, this.size);
    mapped.set(memory, this);
    for (const record of this.#recorders) record(memory);
  }

  /**
   * Calls `recorder` with the memory of every sandbox this blob is mapped into until the returned function
   * is called (for recording working sets).
   *
   * @example
   * ```ts
   * import { Blob } from "./blob.ts";
   * using blob = Blob.fromBytes(new Uint8Array(4096));
   * const stop = blob.onMapInto((memory) => console.log(memory.size));
   * stop();
   * ```
   */
  onMapInto(recorder: (memory: Mapping) => void): () => void {
    this.#recorders.push(recorder);
    return () => {
      this.#recorders = this.#recorders.filter((r) => r !== recorder);
    };
  }

  /** Blob length in bytes. */
  get size(): number {
    return this.backing.size;
  }

  /** True once closed. */
  get closed(): boolean {
    return this.backing.closed;
  }

  /** Unmaps the reference view and releases the backings. */
  close(): void {
    if (this.backing.closed) return;
    this.#ref?.close();
    this.#ref = undefined;
    this.backing.close();
    for (const overlay of this.overlays) overlay.backing.close();
  }

  /** Same as `close()`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Turns layers (bottom first) into disjoint segments per overlay: walking from the top layer down, each
 * layer keeps only the pages no layer above it stores.
 */
function flatten(layers: readonly Layer[]): Overlay[] {
  const taken: { first: number; end: number }[] = []; // sorted, disjoint: pages of the layers above
  const result: Overlay[] = [];
  for (let k = layers.length - 1; k >= 0; k--) {
    const segments: Segment[] = [];
    let from = 0;
    for (const run of layers[k].runs) {
      let p = run.first;
      const end = run.first + run.count;
      for (const t of taken) {
        if (t.end <= p) continue;
        if (t.first >= end) break;
        if (t.first > p) segments.push({ first: p, count: t.first - p, from: from + p - run.first });
        p = Math.max(p, t.end);
      }
      if (p < end) segments.push({ first: p, count: end - p, from: from + p - run.first });
      from += run.count;
    }
    segments.sort((a, b) => a.first - b.first);
    for (const run of layers[k].runs) insert(taken, run.first, run.first + run.count);
    result.unshift({ backing: layers[k].backing, segments });
  }
  return result;
}

function insert(list: { first: number; end: number }[], first: number, end: number): void {
  let i = 0;
  while (i < list.length && list[i].end < first) i++;
  let j = i;
  while (j < list.length && list[j].first <= end) {
    first = Math.min(first, list[j].first);
    end = Math.max(end, list[j].end);
    j++;
  }
  list.splice(i, j - i, { first, end });
}

const HUGE_PAGE = 2 * 1024 * 1024;

/**
 * `size` bytes of read-only anonymous memory (Linux), starting on a 2 MiB boundary and marked
 * `MADV_HUGEPAGE`: a read fault on 2 aligned MiB of it then maps the huge zero page, and reading a mostly
 * empty 256 MiB view (hashing it) costs about the hash alone (~45 ms here) instead of ~90 ms of 4 KiB faults.
 */
function zeroView(size: number): Deno.PointerObject {
  const c = libc();
  const raw = c.mmap(
    null,
    BigInt(size + HUGE_PAGE),
    PROT_READ,
    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
    -1,
    0n,
  );
  if (raw === null || BigInt(Deno.UnsafePointer.value(raw)) === MAP_FAILED) {
    throw new ErrnoError("mmap(anonymous view)", lastErrno());
  }
  const start = BigInt(Deno.UnsafePointer.value(raw));
  const aligned = (start + BigInt(HUGE_PAGE - 1)) & ~BigInt(HUGE_PAGE - 1);
  const head = Number(aligned - start);
  if (head > 0) c.munmap(raw, BigInt(head));
  if (HUGE_PAGE - head > 0) c.munmap(Deno.UnsafePointer.offset(raw, head + size), BigInt(HUGE_PAGE - head));
  const p = Deno.UnsafePointer.offset(raw, head)!;
  c.madvise(p, BigInt(size), MADV_HUGEPAGE); // best effort: without it, 4 KiB zero pages
  return trackMapping(p, size); // osMemory.unmapView untracks it
}

/** Reads exactly `length` bytes of a file at `offset` into memory at `to` (Linux). */
function preadAll(fd: number, to: Deno.PointerObject, length: number, offset: number): void {
  for (let done = 0; done < length;) {
    const n = Number(
      libc().pread_ptr(fd, Deno.UnsafePointer.offset(to, done), BigInt(length - done), BigInt(offset + done)),
    );
    if (n <= 0) {
      throw new ErrnoError("pread(snapshot file)", n < 0 ? lastErrno() : 5 /* EIO: file shorter */);
    }
    done += n;
  }
}

/** Maps one overlay segment at its guest pages inside a mapping that starts at `base` (Linux only). */
function mapOverlay(base: Deno.PointerObject, s: Segment, backing: Backing, writable: boolean): void {
  const at = Deno.UnsafePointer.offset(base, s.first * PAGE);
  const size = BigInt(s.count * PAGE);
  const p = libc().mmap(
    at,
    size,
    writable ? PROT_READ | PROT_WRITE : PROT_READ,
    writable ? MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE : MAP_SHARED | MAP_FIXED,
    backingFd(backing),
    BigInt(backing.offset + s.from * PAGE),
  );
  if (p === null || BigInt(Deno.UnsafePointer.value(p)) === MAP_FAILED) {
    throw new ErrnoError("mmap(MAP_FIXED, delta pages)", lastErrno());
  }
}
