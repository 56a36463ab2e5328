/**
 * Page-level work on snapshot memory: runs of pages, finding the pages that hold data (holes of sparse files,
 * zero pages, pages that differ from a base, pages a process has touched), and telling the kernel which file
 * pages to read ahead or drop. On Linux the scans go through libc (`memcmp`, `lseek(SEEK_DATA)`,
 * `/proc/self/pagemap`, `posix_fadvise`); elsewhere they fall back to plain loops, and the hints are no-ops.
 *
 * Every function returns page runs in the format's shape (`PageRun`: ascending, disjoint).
 *
 * @module
 */
import type { PageRun } from "../../format/sections.ts";
import {
  libc,
  MAP_FAILED,
  MAP_SHARED,
  O_CLOEXEC,
  O_RDONLY,
  POSIX_FADV_DONTNEED,
  POSIX_FADV_WILLNEED,
  PROT_READ,
  SEEK_DATA,
  SEEK_HOLE,
  STAT,
  SYS_CACHESTAT,
} from "../../ffi/linux/libc.ts";
import { ErrnoError, lastErrno } from "../../ffi/linux/errno.ts";
import { trackFd, untrackFd } from "../../ffi/linux/reaper.ts";
import type { Blob } from "../memory/blob.ts";
import type { Mapping } from "../memory/mapping.ts";
import type { Backing } from "../memory/os_memory.ts";
import { backingFd } from "../memory/posix/os_memory.ts";

const PAGE = 4096;
const LINUX = Deno.build.os === "linux";
const encoder = new TextEncoder();

// ---- Run algebra ------------------------------------------------------------------------------------------------

/** Appends page `first..first+count` to `runs`, merging with the last run when they touch. */
function push(runs: { first: number; count: number }[], first: number, count: number): void {
  const last = runs[runs.length - 1];
  if (last !== undefined && last.first + last.count >= first) {
    last.count = Math.max(last.count, first + count - last.first);
  } else runs.push({ first, count });
}

/** Number of pages in runs. */
export function pageCount(runs: readonly PageRun[]): number {
  let n = 0;
  for (const r of runs) n += r.count;
  return n;
}

/** The union of two run lists. */
export function union(a: readonly PageRun[], b: readonly PageRun[]): PageRun[] {
  const out: { first: number; count: number }[] = [];
  let i = 0, j = 0;
  while (i < a.length || j < b.length) {
    const next = j >= b.length || (i < a.length && a[i].first <= b[j].first) ? a[i++] : b[j++];
    push(out, next.first, next.count);
  }
  return out;
}

/** The pages in both run lists. */
export function intersect(a: readonly PageRun[], b: readonly PageRun[]): PageRun[] {
  const out: PageRun[] = [];
  let i = 0, j = 0;
  while (i < a.length && j < b.length) {
    const first = Math.max(a[i].first, b[j].first);
    const aEnd = a[i].first + a[i].count, bEnd = b[j].first + b[j].count;
    const end = Math.min(aEnd, bEnd);
    if (first < end) out.push({ first, count: end - first });
    if (aEnd <= bEnd) i++;
    else j++;
  }
  return out;
}

/** Merges runs separated by at most `maxGap` pages (the gap pages join the run). */
export function coalesce(runs: readonly PageRun[], maxGap: number): PageRun[] {
  const out: { first: number; count: number }[] = [];
  for (const r of runs) {
    const last = out[out.length - 1];
    if (last !== undefined && r.first - (last.first + last.count) <= maxGap) {
      last.count = r.first + r.count - last.first;
    } else out.push({ first: r.first, count: r.count });
  }
  return out;
}

/** Merges the runs separated by the smallest gaps until at most `max` runs remain. */
export function capRuns(runs: readonly PageRun[], max: number): PageRun[] {
  if (runs.length <= max) return runs.map((r) => ({ ...r }));
  const gaps = runs.slice(1).map((r, i) => r.first - (runs[i].first + runs[i].count)).sort((x, y) => x - y);
  // Every gap up to the (n − max)th smallest is filled; ties may merge a few more, never fewer.
  return coalesce(runs, gaps[runs.length - max - 1]);
}

/** Runs `[first, first + count)` limited to `[0, pages)`. */
export function clip(runs: readonly PageRun[], pages: number): PageRun[] {
  const out: PageRun[] = [];
  for (const r of runs) {
    const end = Math.min(r.first + r.count, pages);
    if (r.first < end) out.push({ first: r.first, count: end - r.first });
  }
  return out;
}

// ---- Finding data ---------------------------------------------------------------------------------------------

/**
 * The pages of `[offset, offset + size)` of a file that are not holes, as pages relative to `offset`, from
 * `lseek(SEEK_DATA/SEEK_HOLE)`. Undefined where the platform or file system cannot tell (then every page may
 * hold data).
 */
export function dataRunsOfFd(fd: number, offset: number, size: number): PageRun[] | undefined {
  if (!LINUX) return undefined;
  const c = libc();
  const runs: { first: number; count: number }[] = [];
  const end = offset + size;
  for (let at = offset; at < end;) {
    const data = Number(c.lseek(fd, BigInt(at), SEEK_DATA));
    if (data < 0) {
      const errno = lastErrno();
      if (errno === 6) break; // ENXIO: no data after `at`
      return undefined; // EINVAL: not supported here
    }
    if (data >= end) break;
    const hole = Math.min(end, Number(c.lseek(fd, BigInt(data), SEEK_HOLE)));
    if (hole <= data) return undefined;
    const first = Math.floor((data - offset) / PAGE);
    push(runs, first, Math.ceil((hole - offset) / PAGE) - first);
    at = hole;
  }
  return runs;
}

/** Pages of a blob that may hold data (a superset of its non-zero pages), cached per blob. */
const dataRunsCache = new WeakMap<Blob, readonly PageRun[]>();

/**
 * Pages of the blob that may be non-zero: its hint (from `snapshot()`), else the file's data extents plus the
 * delta overlays, else every page.
 */
export function blobDataRuns(blob: Blob): readonly PageRun[] {
  let runs = dataRunsCache.get(blob);
  if (runs !== undefined) return runs;
  const pages = blob.size / PAGE;
  runs = blob.hint;
  if (runs === undefined) {
    const base = fdOf(blob.backing);
    runs = base === undefined ? undefined : dataRunsOfFd(base, blob.backing.offset, blob.size);
    if (runs !== undefined) {
      for (const overlay of blob.overlays) {
        runs = union(runs, overlay.segments.map(({ first, count }) => ({ first, count })));
      }
    }
  }
  runs ??= [{ first: 0, count: pages }];
  dataRunsCache.set(blob, runs);
  return runs;
}

function fdOf(backing: Backing): number | undefined {
  if (!LINUX) return undefined;
  try {
    return backingFd(backing);
  } catch {
    return undefined;
  }
}

const CHUNK_PAGES = 256; // 1 MiB: one libc call clears most of a zero or unchanged blob
const BLOCK_PAGES = 16;

/**
 * Calls `visit(first, count)` for the pages of `runs` that `same(offset, length)` does not report unchanged,
 * checking 1 MiB chunks, then 64 KiB blocks, then pages, so that an unchanged blob costs one call per MiB.
 */
function scan(
  runs: readonly PageRun[],
  same: (offset: number, length: number) => boolean,
): PageRun[] {
  const out: { first: number; count: number }[] = [];
  const visit = (first: number, count: number, step: number) => {
    for (let p = first, end = first + count; p < end; p += step) {
      const n = Math.min(step, end - p);
      if (same(p * PAGE, n * PAGE)) continue;
      if (step === 1) push(out, p, 1);
      else visit(p, n, step === CHUNK_PAGES ? BLOCK_PAGES : 1);
    }
  };
  for (const r of runs) visit(r.first, r.count, CHUNK_PAGES);
  return out;
}

/**
 * The non-zero pages of a mapping, looking only at `within` (pages outside are known to be zero).
 *
 * @param view The mapping (a blob's read-only view).
 * @param within Pages that may be non-zero.
 */
export function nonZeroRuns(view: Mapping, within: readonly PageRun[]): PageRun[] {
  const bytes = view.bytes;
  const words = new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 2);
  // Data usually starts near the start of a page: looking at its first 64 bytes in JavaScript settles most
  // non-zero ranges without a libc call (a call costs ~0.3 µs, a dense 256 MiB blob has 65536 pages).
  const headNonZero = (offset: number) => {
    for (let i = offset >> 2, end = i + 16; i < end; i++) if (words[i] !== 0) return true;
    return false;
  };
  if (LINUX) {
    const c = libc(), base = view.pointer;
    // All bytes equal the first byte when the range equals itself shifted by one.
    return scan(within, (offset, length) =>
      !headNonZero(offset) &&
      c.memcmp(
          Deno.UnsafePointer.offset(base, offset),
          Deno.UnsafePointer.offset(base, offset + 1),
          BigInt(length - 1),
        ) === 0);
  }
  return scan(within, (offset, length) => {
    if (headNonZero(offset)) return false;
    let acc = 0;
    for (let i = offset >> 2, end = (offset + length) >> 2; i < end && acc === 0; i++) acc |= words[i];
    return acc === 0;
  });
}

/**
 * The pages where two mappings of the same size differ, looking only at `within`.
 *
 * @param a One mapping.
 * @param b The other.
 * @param within Pages to compare (all when omitted).
 */
export function differingRuns(a: Mapping, b: Mapping, within?: readonly PageRun[]): PageRun[] {
  if (a.size !== b.size) throw new RangeError(`Cannot compare ${a.size} with ${b.size} bytes`);
  const runs = within ?? [{ first: 0, count: a.size / PAGE }];
  if (LINUX) {
    const c = libc();
    return scan(runs, (offset, length) =>
      c.memcmp(
        Deno.UnsafePointer.offset(a.pointer, offset),
        Deno.UnsafePointer.offset(b.pointer, offset),
        BigInt(length),
      ) === 0);
  }
  const x = new Int32Array(a.bytes.buffer, a.bytes.byteOffset, a.size >> 2);
  const y = new Int32Array(b.bytes.buffer, b.bytes.byteOffset, b.size >> 2);
  return scan(runs, (offset, length) => {
    for (let i = offset >> 2, end = (offset + length) >> 2; i < end; i++) if (x[i] !== y[i]) return false;
    return true;
  });
}

// ---- What a process touched -----------------------------------------------------------------------------------

function openProc(path: string): number {
  const fd = libc().open(encoder.encode(`${path}\0`), O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) throw new ErrnoError(`open(${path})`, lastErrno());
  return trackFd(fd);
}

/**
 * Pages of `mapping` that are present (or swapped) in this process's page tables, from `/proc/self/pagemap`
 * (bits 63 and 62 need no privilege). A page the process (or KVM for a guest) has read or written is
 * present; one never touched is not. Undefined where pagemap is unavailable.
 */
export function presentRuns(mapping: Mapping): PageRun[] | undefined {
  if (!LINUX) return undefined;
  const pages = mapping.size / PAGE;
  let fd: number;
  try {
    fd = openProc("/proc/self/pagemap");
  } catch {
    return undefined;
  }
  try {
    const entries = new Uint32Array(pages * 2);
    const bytes = new Uint8Array(entries.buffer);
    const at = (mapping.address / BigInt(PAGE)) * 8n;
    for (let done = 0; done < bytes.length;) {
      const n = Number(
        libc().pread(fd, bytes.subarray(done), BigInt(bytes.length - done), at + BigInt(done)),
      );
      if (n <= 0) return undefined;
      done += n;
    }
    const out: { first: number; count: number }[] = [];
    for (let p = 0; p < pages; p++) {
      if ((entries[2 * p + 1] & 0xc000_0000) !== 0) push(out, p, 1);
    }
    return out;
  } finally {
    untrackFd(fd);
    libc().close(fd);
  }
}

/** One mapping (VMA) inside a range: its pages relative to the range, and its file's inode (none: anonymous). */
export interface RangePart extends PageRun {
  /** The inode of the mapped file as `/proc/self/maps` prints it, or undefined for anonymous memory. */
  readonly inode: string | undefined;
}

/**
 * The mappings that make up `[address, address + size)` of this process, from `/proc/self/maps`: each
 * one's pages (relative to `address`) and whether it maps a file. Undefined when it cannot be read or the
 * range has a gap.
 */
export function partsOfRange(address: bigint, size: number): RangePart[] | undefined {
  if (!LINUX) return undefined;
  let text: string;
  try {
    text = Deno.readTextFileSync("/proc/self/maps");
  } catch {
    return undefined;
  }
  const end = address + BigInt(size);
  const page = BigInt(PAGE);
  let covered = address;
  const parts: RangePart[] = [];
  for (const line of text.split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ (\S+) (\d+)\s*(.*)$/.exec(line);
    if (m === null) continue;
    const from = BigInt(`0x${m[1]}`), to = BigInt(`0x${m[2]}`);
    if (to <= address || from >= end) continue;
    if (from > covered) return undefined; // a gap: not one mapping
    covered = to;
    const first = Number(((from < address ? address : from) - address) / page);
    const last = Number(((to > end ? end : to) - address) / page);
    const anonymous = m[4] === "0" && m[5] === "";
    parts.push({ first, count: last - first, inode: anonymous ? undefined : m[4] });
  }
  return covered >= end ? parts : undefined;
}

/** The inode of a backing's file, as `/proc/self/maps` prints it. */
export function inodeOf(backing: Backing): string | undefined {
  const fd = fdOf(backing);
  if (fd === undefined || backing.closed) return undefined;
  const st = new Uint8Array(STAT.SIZE);
  if (libc().fstat(fd, st) < 0) return undefined;
  return new DataView(st.buffer).getBigUint64(STAT.INO, true).toString();
}

// ---- Page cache hints -------------------------------------------------------------------------------------------

/** A byte range of one file. */
export interface FileRange {
  /** The file's descriptor. */
  fd: number;
  /** Byte offset. */
  offset: number;
  /** Byte length. */
  length: number;
}

/**
 * Asks the kernel to read these file ranges into the page cache now, all at once (`posix_fadvise
 * WILLNEED`: the reads are queued together and the call returns without waiting for them). Faults on those
 * pages then wait for the batch instead of issuing one 4 KiB read each. Best effort.
 */
export function readAhead(ranges: readonly FileRange[]): void {
  if (!LINUX) return;
  const c = libc();
  for (const r of ranges) c.posix_fadvise(r.fd, BigInt(r.offset), BigInt(r.length), POSIX_FADV_WILLNEED);
}

/**
 * Whether the file page at `offset` of `fd` is in the page cache, without mapping or reading it:
 * `cachestat(2)` (Linux 6.5, ~1 µs here), else `mincore` of a one-page mapping (~7 µs). Undefined when
 * neither can tell (then the caller assumes it is not).
 */
export function pageCached(fd: number, offset: number): boolean | undefined {
  if (!LINUX) return undefined;
  const c = libc();
  if (cachestatWorks) {
    const range = new BigUint64Array([BigInt(offset), BigInt(PAGE)]);
    const stat = new BigUint64Array(5);
    const r = c.syscall_buf2(
      SYS_CACHESTAT,
      BigInt(fd),
      new Uint8Array(range.buffer),
      new Uint8Array(stat.buffer),
      0n,
    );
    if (r === 0n) return stat[0] > 0n;
    if (lastErrno() !== ENOSYS) return undefined;
    cachestatWorks = false;
  }
  const p = c.mmap(null, BigInt(PAGE), PROT_READ, MAP_SHARED, fd, BigInt(offset));
  if (p === null || BigInt(Deno.UnsafePointer.value(p)) === MAP_FAILED) return undefined;
  try {
    const cached = new Uint8Array(1);
    return c.mincore(p, BigInt(PAGE), cached) === 0 ? (cached[0] & 1) === 1 : undefined;
  } finally {
    c.munmap(p, BigInt(PAGE));
  }
}
/** False once `cachestat` said ENOSYS (a kernel before 6.5). */
let cachestatWorks = true;
const ENOSYS = 38;

/** The descriptor of a backing, for {@linkcode readAhead}; undefined off Linux. */
export function fdOfBacking(backing: Backing): number | undefined {
  return fdOf(backing);
}

/**
 * Drops a file's clean pages from the page cache (`posix_fadvise DONTNEED`; no privilege needed), so the
 * next reader finds none of it cached, as on a host the file has just been copied to. Pages still mapped by
 * a process, or dirty, stay. For benchmarks and tests.
 *
 * @param path The file.
 */
export function evictFromPageCache(path: string): void {
  if (!LINUX) return;
  const fd = libc().open(encoder.encode(`${path}\0`), O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) throw new ErrnoError(`open(${path})`, lastErrno());
  trackFd(fd);
  try {
    libc().posix_fadvise(fd, 0n, 0n, POSIX_FADV_DONTNEED);
  } finally {
    untrackFd(fd);
    libc().close(fd);
  }
}
