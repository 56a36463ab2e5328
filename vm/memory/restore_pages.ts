/**
 * Restore's page work: collects a KVM dirty ring, copies back the persistent pages the dirty bitmap marks,
 * zeroes the scratch pages it marks and the bytes the host wrote into the I/O buffers, writes fresh bytes
 * (the info page's new generation) and stages the vCPU's entry registers, in one native call where the
 * restore library loads (`restore_library.ts`); page runs in JavaScript where it does not (there the backend
 * collects its ring and stages registers itself). Both versions do the same page work; tests compare them
 * on random bitmaps.
 *
 * @module
 */
import type { MemoryStaging } from "../backend/backend.ts";
import type { Mapping } from "./mapping.ts";
import { restoreLibrary, RING, setU64 } from "./restore_library.ts";

const PAGE = 4096;

/**
 * The plan's fields (u64 indexes), as `_restore_pages.c` declares them (`P_*` there; a test compares the
 * two).
 *
 * @example
 * ```ts
 * import { PLAN } from "./restore_pages.ts";
 * console.log(PLAN.WORDS); // 21
 * ```
 */
export const PLAN = {
  BITMAP_WORDS: 0,
  PERSISTENT: 1,
  PERSISTENT_END: 2,
  SYSTEM: 3,
  SYSTEM_END: 4,
  BLOB: 5,
  SCRATCH: 6,
  SCRATCH_FIRST: 7,
  SCRATCH_END: 8,
  CLEAR_A: 9,
  CLEAR_A_LEN: 10,
  CLEAR_B: 11,
  CLEAR_B_LEN: 12,
  WRITE_TO: 13,
  WRITE_FROM: 14,
  WRITE_LEN: 15,
  STAGE_TO: 16,
  STAGE_FROM: 17,
  STAGE_LEN: 18,
  FLAGS_AT: 19,
  FLAGS: 20,
  WORDS: 21,
} as const;

/** A dirty ring state with no ring (0 entries): nothing to collect. */
const NO_RING = new BigUint64Array(RING.WORDS);

/** A byte range within a region. */
export interface ByteRange {
  /** Offset from the region's start. */
  offset: number;
  /** Length in bytes. */
  length: number;
}

/**
 * What one {@linkcode PageRestorer.restore} does. A caller keeps one and updates its fields, so that a
 * restore allocates nothing.
 */
export interface RestoreRequest {
  /** The dirty pages, one bit per guest-physical page. */
  dirty: BigUint64Array;
  /** A backend's dirty ring (its `dirtyRing`) to collect into `dirty` first, or undefined. */
  ring: BigUint64Array | undefined;
  /** The system area's source: pages below `systemEnd`. */
  system: Mapping;
  /** The snapshot's blob: the other persistent pages. */
  blob: Mapping;
  /** The first page that comes from `blob`. */
  systemEnd: number;
  /** Zero the scratch pages set in `dirty` (else the caller empties the scratch region itself). */
  zeroScratch: boolean;
  /** Bytes the host wrote at the start of the input buffer. */
  inputWritten: number;
  /** Bytes the host wrote at the start of the output buffer. */
  outputWritten: number;
  /** Host address (a number) of the bytes for the fresh range, memory the caller owns. */
  fresh: number;
  /** A backend's register staging (`stageEntryInMemory`) to make last, or undefined. */
  staging: MemoryStaging | undefined;
}

/** Where a {@linkcode PageRestorer} works besides the dirty pages. */
export interface RestoreTargets {
  /**
   * Two ranges of the scratch region that the host writes (the input and output buffers): the hypervisor's
   * dirty log does not see host writes, so each restore zeroes the prefix of each that the host wrote.
   */
  hostBuffers: readonly [ByteRange, ByteRange];
  /** A range of the persistent region that each restore fills with fresh bytes (the info page's generation). */
  fresh: ByteRange;
}

/**
 * Restores one guest's memory: the persistent region (guest-physical page 0 on) and the scratch region
 * (from page `scratchFirst`), both parts of the guest's mapping.
 *
 * @example
 * ```ts
 * import { Mapping } from "./mapping.ts";
 * import { PageRestorer } from "./restore_pages.ts";
 *
 * using guest = Mapping.reserve(4 * 4096), source = Mapping.reserve(2 * 4096);
 * source.bytes.fill(7);
 * const persistent = guest.part(0, 2 * 4096), scratch = guest.part(3 * 4096, 4096);
 * const restorer = new PageRestorer(persistent, scratch, 3, {
 *   hostBuffers: [{ offset: 0, length: 2048 }, { offset: 2048, length: 2048 }],
 *   fresh: { offset: 0, length: 8 },
 * });
 * guest.bytes.fill(1);
 * const dirty = new BigUint64Array([0b1010n]); // page 1 (persistent) and page 3 (scratch)
 * const fresh = new Uint8Array(8).fill(9);
 * const from = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(fresh)));
 * const request = {
 *   dirty, ring: undefined, system: source, blob: source, systemEnd: 1, zeroScratch: true,
 *   inputWritten: 0, outputWritten: 0, fresh: from, staging: undefined,
 * };
 * console.log(restorer.restore(request)); // 1 page copied
 * console.log(guest.bytes[4096], guest.bytes[3 * 4096], guest.bytes[0], guest.bytes[8]); // 7 0 9 1
 * ```
 */
export class PageRestorer {
  readonly #persistent: Mapping;
  readonly #scratch: Mapping;
  readonly #scratchFirst: number;
  readonly #targets: RestoreTargets;
  readonly #plan = new BigUint64Array(PLAN.WORDS);
  readonly #planWords = new Uint32Array(this.#plan.buffer);
  #system: Mapping | undefined;
  #blob: Mapping | undefined;
  #systemEnd = 0;

  /**
   * @param persistent The persistent region: guest-physical page 0 on.
   * @param scratch The scratch region.
   * @param scratchFirst The scratch region's first guest-physical page.
   * @param targets The host-written buffers and the fresh range.
   * @throws {RangeError} If a target lies outside its region.
   */
  constructor(persistent: Mapping, scratch: Mapping, scratchFirst: number, targets: RestoreTargets) {
    for (const r of targets.hostBuffers) inside(r, scratch, "host buffer");
    inside(targets.fresh, persistent, "fresh range");
    this.#persistent = persistent;
    this.#scratch = scratch;
    this.#scratchFirst = scratchFirst;
    this.#targets = targets;
    const plan = this.#plan;
    plan[PLAN.PERSISTENT] = persistent.address;
    plan[PLAN.PERSISTENT_END] = BigInt(persistent.size / PAGE);
    plan[PLAN.SCRATCH] = scratch.address;
    plan[PLAN.SCRATCH_FIRST] = BigInt(scratchFirst);
    plan[PLAN.CLEAR_A] = scratch.address + BigInt(targets.hostBuffers[0].offset);
    plan[PLAN.CLEAR_B] = scratch.address + BigInt(targets.hostBuffers[1].offset);
    plan[PLAN.WRITE_TO] = persistent.address + BigInt(targets.fresh.offset);
    plan[PLAN.WRITE_LEN] = BigInt(targets.fresh.length);
  }

  /**
   * Does what `r` asks, in this order: collects the dirty ring `r.ring` into `r.dirty`; copies every persistent
   * page set in `r.dirty` back from `r.system` (pages below `r.systemEnd`) or `r.blob` (the rest); with
   * `r.zeroScratch`, zeroes every scratch page set there; zeroes the first `r.inputWritten` and
   * `r.outputWritten` bytes of the two host buffers; copies the fresh range's length of bytes from host
   * address `r.fresh` into the fresh range; makes the register staging `r.staging`. A ring and a staging are
   * only given where the native library is loaded. Returns the number of pages copied. Allocates nothing on
   * the native path.
   *
   * @throws {RangeError} If a mapping is closed, a source is smaller than what it restores, or a written
   * length exceeds its buffer.
   */
  restore(r: RestoreRequest): number {
    const { dirty, system, blob, systemEnd, inputWritten, outputWritten } = r;
    if (this.#persistent.closed || this.#scratch.closed || system.closed || blob.closed) {
      throw new RangeError("Cannot restore pages: a mapping is closed");
    }
    const input = this.#targets.hostBuffers[0], output = this.#targets.hostBuffers[1];
    if (
      !(inputWritten >= 0 && inputWritten <= input.length && outputWritten >= 0 &&
        outputWritten <= output.length)
    ) {
      throw new RangeError(`Cannot restore pages: host wrote ${inputWritten} and ${outputWritten} bytes`);
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
    const scratchEnd = r.zeroScratch ? this.#scratchFirst + this.#scratch.size / PAGE : this.#scratchFirst;
    const native = restoreLibrary();
    if (native !== undefined) {
      const words = this.#planWords, staging = r.staging;
      setU64(words, PLAN.BITMAP_WORDS, dirty.length);
      setU64(words, PLAN.SCRATCH_END, scratchEnd);
      setU64(words, PLAN.CLEAR_A_LEN, inputWritten);
      setU64(words, PLAN.CLEAR_B_LEN, outputWritten);
      setU64(words, PLAN.WRITE_FROM, r.fresh);
      if (staging !== this.#staging) {
        this.#staging = staging;
        setU64(words, PLAN.STAGE_TO, staging?.to ?? 0);
        setU64(words, PLAN.STAGE_FROM, staging?.from ?? 0);
        setU64(words, PLAN.STAGE_LEN, staging?.length ?? 0);
        setU64(words, PLAN.FLAGS_AT, staging?.flagsAt ?? 0);
        setU64(words, PLAN.FLAGS, staging?.flags ?? 0);
      }
      return native.restorePages(plan, dirty, r.ring ?? NO_RING);
    }
    if (r.ring !== undefined || r.staging !== undefined) {
      throw new Error("Cannot restore pages: a dirty ring or a staging without the native library");
    }
    let copied = 0;
    forEachRun(dirty, 0, this.#persistent.size / PAGE, systemEnd, (first, end) => {
      this.#persistent.copyFrom(first < systemEnd ? system : blob, first * PAGE, (end - first) * PAGE);
      copied += end - first;
    });
    const bytes = this.#scratch.bytes, base = this.#scratchFirst;
    forEachRun(dirty, base, scratchEnd, Infinity, (first, end) => {
      bytes.fill(0, (first - base) * PAGE, (end - base) * PAGE);
    });
    bytes.fill(0, input.offset, input.offset + inputWritten);
    bytes.fill(0, output.offset, output.offset + outputWritten);
    this.#persistent.writeFrom(this.#targets.fresh.offset, BigInt(r.fresh), this.#targets.fresh.length);
    return copied;
  }

  /** The staging the plan holds. */
  #staging: MemoryStaging | undefined;
}

function inside(r: ByteRange, region: Mapping, what: string): void {
  if (!(r.offset >= 0 && r.length >= 0 && r.offset + r.length <= region.size)) {
    throw new RangeError(`Cannot restore pages: ${what} ${r.offset}+${r.length} is outside its region`);
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
