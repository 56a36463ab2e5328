/**
 * Restore's page work: copies back the persistent pages a dirty bitmap marks and zeroes the scratch pages
 * it marks, in one native call where the restore library loads (`restore_library.ts`), page runs in
 * JavaScript where it does not. Both versions do exactly the same; tests compare them on random bitmaps.
 *
 * @module
 */
import type { Mapping } from "./mapping.ts";
import { restoreLibrary } from "./restore_library.ts";

const PAGE = 4096;

/** The plan's fields (u64 indexes), as `_restore_pages.c` declares them (`P_*` there). */
const PLAN = {
  BITMAP_WORDS: 0,
  PERSISTENT: 1,
  PERSISTENT_END: 2,
  SYSTEM: 3,
  SYSTEM_END: 4,
  BLOB: 5,
  SCRATCH: 6,
  SCRATCH_FIRST: 7,
  SCRATCH_END: 8,
  WORDS: 9,
} as const;

/**
 * Restores pages of one guest's memory: the persistent region (guest-physical page 0 on) and the scratch
 * region (from page `scratchFirst`), both parts of the guest's mapping.
 *
 * @example
 * ```ts
 * import { Mapping } from "./mapping.ts";
 * import { PageRestorer } from "./restore_pages.ts";
 *
 * using guest = Mapping.reserve(4 * 4096), source = Mapping.reserve(2 * 4096);
 * source.bytes.fill(7);
 * const persistent = guest.part(0, 2 * 4096), scratch = guest.part(3 * 4096, 4096);
 * const restorer = new PageRestorer(persistent, scratch, 3);
 * guest.bytes.fill(1);
 * const dirty = new BigUint64Array([0b1010n]); // page 1 (persistent) and page 3 (scratch)
 * console.log(restorer.restore(dirty, source, source, 1, true)); // 1 page copied
 * console.log(guest.bytes[4096], guest.bytes[3 * 4096], guest.bytes[0]); // 7 0 1
 * ```
 */
export class PageRestorer {
  readonly #persistent: Mapping;
  readonly #scratch: Mapping;
  readonly #scratchFirst: number;
  readonly #plan = new BigUint64Array(PLAN.WORDS);
  #system: Mapping | undefined;
  #blob: Mapping | undefined;
  #systemEnd = 0;

  /**
   * @param persistent The persistent region: guest-physical page 0 on.
   * @param scratch The scratch region.
   * @param scratchFirst The scratch region's first guest-physical page.
   */
  constructor(persistent: Mapping, scratch: Mapping, scratchFirst: number) {
    this.#persistent = persistent;
    this.#scratch = scratch;
    this.#scratchFirst = scratchFirst;
    const plan = this.#plan;
    plan[PLAN.PERSISTENT] = persistent.address;
    plan[PLAN.PERSISTENT_END] = BigInt(persistent.size / PAGE);
    plan[PLAN.SCRATCH] = scratch.address;
    plan[PLAN.SCRATCH_FIRST] = BigInt(scratchFirst);
  }

  /**
   * Copies every persistent page set in `dirty` back from `system` (pages below `systemEnd`) or `blob` (the
   * rest), and, with `zeroScratch`, zeroes every scratch page set there. Returns the number of pages copied.
   *
   * @throws {RangeError} If a source is smaller than the persistent region it restores, or is closed.
   */
  restore(
    dirty: BigUint64Array,
    system: Mapping,
    blob: Mapping,
    systemEnd: number,
    zeroScratch: boolean,
  ): number {
    if (this.#persistent.closed || this.#scratch.closed || system.closed || blob.closed) {
      throw new RangeError("Cannot restore pages: a mapping is closed");
    }
    const plan = this.#plan;
    if (system !== this.#system || blob !== this.#blob || systemEnd !== this.#systemEnd) {
      if (systemEnd * PAGE > system.size || blob.size < this.#persistent.size) {
        throw new RangeError(
          `Cannot restore pages: sources of ${system.size} and ${blob.size} bytes for a ` +
            `${this.#persistent.size}-byte region`,
        );
      }
      this.#system = system;
      this.#blob = blob;
      this.#systemEnd = systemEnd;
      plan[PLAN.SYSTEM] = system.address;
      plan[PLAN.SYSTEM_END] = BigInt(systemEnd);
      plan[PLAN.BLOB] = blob.address;
    }
    const scratchEnd = zeroScratch ? this.#scratchFirst + this.#scratch.size / PAGE : this.#scratchFirst;
    const native = restoreLibrary();
    if (native !== undefined) {
      plan[PLAN.BITMAP_WORDS] = BigInt(dirty.length);
      plan[PLAN.SCRATCH_END] = BigInt(scratchEnd);
      return Number(native.restorePages(plan, dirty));
    }
    let copied = 0;
    forEachRun(dirty, 0, this.#persistent.size / PAGE, systemEnd, (first, end) => {
      this.#persistent.copyFrom(first < systemEnd ? system : blob, first * PAGE, (end - first) * PAGE);
      copied += end - first;
    });
    if (zeroScratch) {
      const base = this.#scratchFirst, bytes = this.#scratch.bytes;
      forEachRun(dirty, base, scratchEnd, Infinity, (first, end) => {
        bytes.fill(0, (first - base) * PAGE, (end - base) * PAGE);
      });
    }
    return copied;
  }
}

/**
 * Calls `fn(first, end)` for each run of consecutive pages set in `bitmap` within [`from`, `to`); a run
 * that crosses `split` is reported as two runs.
 *
 * @example
 * ```ts
 * import { forEachRun } from "./restore_pages.ts";
 *
 * const runs: number[][] = [];
 * forEachRun(new BigUint64Array([0b111011n]), 0, 64, 4, (a, b) => runs.push([a, b]));
 * console.log(runs); // [ [ 0, 2 ], [ 3, 4 ], [ 4, 6 ] ]
 * ```
 */
export function forEachRun(
  bitmap: BigUint64Array,
  from: number,
  to: number,
  split: number,
  fn: (first: number, end: number) => void,
): void {
  const bits = new Uint32Array(bitmap.buffer, bitmap.byteOffset, bitmap.length * 2);
  to = Math.min(to, bits.length * 32);
  let run = -1;
  const flush = (end: number) => {
    if (run >= 0) fn(run, end);
    run = -1;
  };
  for (let word = from >>> 5, last = (to - 1) >>> 5; word <= last && to > from; word++) {
    // Clean memory, four words (128 pages) at a time: a restore after a small call finds a few set bits in a
    // bitmap of up to 65,536 pages (256 MiB), and a word at a time cost ~2.4 ns per word (6 µs at 256 MiB).
    if (run < 0) {
      while (word + 3 <= last && (bits[word] | bits[word + 1] | bits[word + 2] | bits[word + 3]) === 0) {
        word += 4;
      }
    }
    const w = bits[word];
    if (w === 0) {
      flush(Math.max(from, Math.min(to, word << 5)));
      continue;
    }
    for (let bit = 0; bit < 32; bit++) {
      const page = (word << 5) + bit;
      if (page >= to) break;
      if (page < from) continue;
      if (page === split) flush(page);
      if (((w >>> bit) & 1) !== 0) {
        if (run < 0) run = page;
      } else {
        flush(page);
        if (bit < 31 && w >>> (bit + 1) === 0) break; // the rest of the word is clean
      }
    }
  }
  flush(to);
}
