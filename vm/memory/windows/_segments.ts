/**
 * Bookkeeping of one reservation on Windows: which page ranges are private memory, mapped views or bare
 * placeholders. Windows cannot replace part of an allocation in place (there is no `MAP_FIXED`), so the
 * reservation is a `VirtualAlloc2` placeholder split into pieces, and each piece is one allocation or one
 * view. Pure: the OS calls are made by `os_memory.ts` from what these functions return.
 *
 * @module
 */

/** What a piece of a reservation is. */
export type SegmentKind = "private" | "view" | "placeholder";

/** One piece: `[offset, offset + size)` of the reservation. */
export interface Segment {
  /** Offset in the reservation. */
  offset: number;
  /** Length in bytes (page multiple). */
  size: number;
  /** Its current kind. */
  kind: SegmentKind;
}

/**
 * The segments a reservation of `size` bytes starts with when split at `cuts` (offsets, any order; out of
 * range or duplicate ones are ignored), all private.
 *
 * @example
 * ```ts
 * import { initialSegments } from "./_segments.ts";
 * console.log(initialSegments(12288, [4096]).map((s) => s.size)); // [4096, 8192]
 * ```
 */
export function initialSegments(size: number, cuts: readonly number[] = []): Segment[] {
  const points = [...new Set(cuts.filter((c) => c > 0 && c < size))].sort((a, b) => a - b);
  const out: Segment[] = [];
  let start = 0;
  for (const p of [...points, size]) {
    out.push({ offset: start, size: p - start, kind: "private" });
    start = p;
  }
  return out;
}

/**
 * What replacing `[offset, offset + size)` needs: the segments it overlaps (to turn into placeholders), and
 * for each one only partly covered, the parts outside the range whose bytes must be kept (`keep`: copied
 * out before, re-created as private memory and copied back after).
 *
 * @example
 * ```ts
 * import { initialSegments, planReplace } from "./_segments.ts";
 * const plan = planReplace(initialSegments(12288), 0, 4096);
 * console.log(plan.keep); // [{ offset: 4096, size: 8192 }]
 * ```
 */
export function planReplace(
  segments: readonly Segment[],
  offset: number,
  size: number,
): { overlapped: Segment[]; keep: { offset: number; size: number }[] } {
  const end = offset + size;
  const overlapped = segments.filter((s) => s.offset < end && s.offset + s.size > offset);
  if (overlapped.length === 0 || overlapped[0].offset > offset || lastEnd(overlapped) < end) {
    throw new RangeError(`range ${offset}+${size} is not inside the reservation`);
  }
  const keep: { offset: number; size: number }[] = [];
  for (const s of overlapped) {
    if (s.kind === "placeholder") continue;
    if (s.offset < offset) keep.push({ offset: s.offset, size: offset - s.offset });
    if (s.offset + s.size > end) keep.push({ offset: end, size: s.offset + s.size - end });
  }
  return { overlapped, keep };
}

function lastEnd(segments: readonly Segment[]): number {
  const last = segments[segments.length - 1];
  return last.offset + last.size;
}

/**
 * The segment list after `[offset, offset + size)` became one segment of `kind`, and the kept parts of
 * the segments it overlapped became private segments of their own.
 *
 * @example
 * ```ts
 * import { applyReplace, initialSegments } from "./_segments.ts";
 * const next = applyReplace(initialSegments(12288), 0, 4096, "view");
 * console.log(next.map((s) => s.kind)); // ["view", "private"]
 * ```
 */
export function applyReplace(
  segments: readonly Segment[],
  offset: number,
  size: number,
  kind: SegmentKind,
): Segment[] {
  const { keep } = planReplace(segments, offset, size);
  const end = offset + size;
  const untouched = segments.filter((s) => s.offset + s.size <= offset || s.offset >= end);
  const out = [
    ...untouched,
    { offset, size, kind },
    ...keep.map((k) => ({ offset: k.offset, size: k.size, kind: "private" as const })),
  ];
  return out.sort((a, b) => a.offset - b.offset);
}

/**
 * The segments overlapping `[offset, offset + size)`, each clipped to the range (for per-piece calls
 * such as discard).
 *
 * @example
 * ```ts
 * import { clip, initialSegments } from "./_segments.ts";
 * console.log(clip(initialSegments(12288, [4096]), 0, 8192).map((s) => s.size)); // [4096, 4096]
 * ```
 */
export function clip(
  segments: readonly Segment[],
  offset: number,
  size: number,
): { segment: Segment; offset: number; size: number }[] {
  const end = offset + size;
  return segments
    .filter((s) => s.offset < end && s.offset + s.size > offset)
    .map((s) => {
      const from = Math.max(s.offset, offset), to = Math.min(s.offset + s.size, end);
      return { segment: s, offset: from, size: to - from };
    });
}
