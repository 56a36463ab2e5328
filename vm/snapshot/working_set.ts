/**
 * What the page tables say about snapshot memory: which pages of a sandbox's memory hold data when a
 * snapshot is taken (so `toFile` skips the rest without reading it), which pages a warm-up touched (the
 * working set), and reading a working set ahead from the snapshot's files in one batch when it is loaded.
 *
 * @module
 */
import type { PageRun } from "../../format/sections.ts";
import { Blob } from "../memory/blob.ts";
import type { Mapping } from "../memory/mapping.ts";
import { SYSTEM_AREA_END } from "../machine/abi.ts";
import {
  blobDataRuns,
  fdOfBacking,
  type FileRange,
  inodeOf,
  pageCached,
  partsOfRange,
  presentRuns,
  readAhead,
  union,
} from "./_pages.ts";

const PAGE = 4096;

/**
 * Below this size `snapshot()` does not consult the page tables: scanning the copy at `toFile` costs less
 * than reading `/proc/self/maps` and the pagemap (~0.2 ms).
 */
const HINT_MIN_SIZE = 16 * 1024 * 1024;

/**
 * Pages of a sandbox's memory that may hold data, or undefined when that cannot be told cheaply and safely.
 * A page the process never touched reads as zero in anonymous memory, and as the mapped blob's page in a
 * copy-on-write view of a blob (`Blob.mapInto`); so the answer is the touched pages, plus that blob's own
 * data pages. The system area (below `SYSTEM_AREA_END`, mapped from the snapshot's rebuilt copy) counts as
 * data throughout. Anything else mapped there (another file) makes the answer undefined.
 */
export function memoryHint(memory: Mapping): PageRun[] | undefined {
  if (memory.size < HINT_MIN_SIZE) return undefined;
  const parts = partsOfRange(memory.address, memory.size);
  if (parts === undefined) return undefined;
  let candidates: readonly PageRun[] = [];
  let blobInodes: Set<string | undefined> | undefined;
  for (const part of parts) {
    if (part.inode === undefined) continue;
    if (blobInodes === undefined) {
      const blob = Blob.mappedInto(memory);
      blobInodes = blob === undefined || blob.closed
        ? new Set()
        : new Set([blob.backing, ...blob.overlays.map((o) => o.backing)].map(inodeOf));
      if (blob !== undefined && !blob.closed) candidates = union(candidates, blobDataRuns(blob));
    }
    if (blobInodes.has(part.inode)) continue;
    if ((part.first + part.count) * PAGE <= SYSTEM_AREA_END) {
      candidates = union(candidates, [{ first: part.first, count: part.count }]);
      continue;
    }
    return undefined;
  }
  const touched = presentRuns(memory);
  return touched === undefined ? undefined : union(touched, candidates);
}

/**
 * The pages of a sandbox's memory that are present in the page tables: everything the guest (through KVM)
 * or the host read or wrote since it was mapped, plus neighbours the kernel mapped along with a fault
 * (fault-around, up to 64 KiB of pages already cached). Undefined where the platform cannot tell.
 */
export function recordPresentPages(memory: Mapping): PageRun[] | undefined {
  return presentRuns(memory);
}

/**
 * Queues reads of the working set's pages from the files behind `blob` (the base file, and the delta files
 * for pages they store), merged into as few ranges as possible. Returns at once; page faults on those pages
 * then wait for the batch instead of each reading 4 KiB.
 */
export function readAheadWorkingSet(blob: Blob, workingSet: readonly PageRun[]): void {
  const baseFd = fdOfBacking(blob.backing);
  if (baseFd === undefined || workingSet.length === 0 || lastPageCached(blob, baseFd, workingSet)) return;
  // Every overlay segment with its file, in page order.
  const pieces = blob.overlays.flatMap((o) => {
    const fd = fdOfBacking(o.backing)!;
    return o.segments.map((s) => ({ ...s, fd, offset: o.backing.offset }));
  }).sort((a, b) => a.first - b.first);
  const ranges: FileRange[] = [];
  const add = (fd: number, offset: number, length: number) => {
    const last = ranges[ranges.length - 1];
    if (last !== undefined && last.fd === fd && last.offset + last.length === offset) last.length += length;
    else ranges.push({ fd, offset, length });
  };
  let i = 0;
  for (const run of workingSet) {
    let p = run.first;
    const end = run.first + run.count;
    while (p < end) {
      while (i < pieces.length && pieces[i].first + pieces[i].count <= p) i++;
      const s = pieces[i];
      if (s !== undefined && s.first <= p) {
        const n = Math.min(end, s.first + s.count) - p;
        add(s.fd, s.offset + (s.from + p - s.first) * PAGE, n * PAGE);
        p += n;
      } else {
        const n = Math.min(end, s === undefined ? end : s.first) - p;
        add(baseFd, blob.backing.offset + p * PAGE, n * PAGE);
        p += n;
      }
    }
  }
  readAhead(ranges);
}

/**
 * Whether the working set's last page is in the page cache: then the file is warm (a cold start read it
 * before), and asking for the batch would cost a `posix_fadvise` per run (~1.5 µs each) for nothing. One
 * `cachestat` of that page, in the file that holds it, answers it without mapping anything (the loader
 * maps no view of the blob). The last page rather than the first: the kernel reads a few pages ahead of
 * the prefix, so the first may be cached in a file that is otherwise cold. A file evicted only in part may
 * be judged warm; it then loads as without a working set.
 */
function lastPageCached(blob: Blob, baseFd: number, workingSet: readonly PageRun[]): boolean {
  const last = workingSet[workingSet.length - 1];
  const page = last.first + last.count - 1;
  for (const overlay of blob.overlays) {
    for (const s of overlay.segments) {
      if (page >= s.first && page < s.first + s.count) {
        const fd = fdOfBacking(overlay.backing)!;
        return pageCached(fd, overlay.backing.offset + (s.from + page - s.first) * PAGE) === true;
      }
    }
  }
  return pageCached(baseFd, blob.backing.offset + page * PAGE) === true;
}
