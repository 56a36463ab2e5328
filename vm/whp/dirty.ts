/**
 * The dirty-page bitmap of `WHvQueryGpaRangeDirtyBitmap`: one bit per 4 KiB page from the start of the
 * queried range, bit `p % 64` of UINT64 `p / 64`, the array 8-byte aligned and a whole number of UINT64s.
 * That is exactly the neutral form `VirtualMachine.takeDirtyPages()` returns, so the bitmap is handed on
 * after masking the bits past the tracked pages.
 *
 * @module
 */

/**
 * Bytes the bitmap of `pages` pages needs: one bit per page, rounded up to whole UINT64s.
 *
 * @example
 * ```ts
 * import { bitmapBytes } from "./dirty.ts";
 * console.log(bitmapBytes(65)); // 16
 * ```
 */
export function bitmapBytes(pages: number): number {
  return Math.ceil(pages / 64) * 8;
}

/**
 * Clears the bits past `pages` in the last word (the hypervisor may report pages the range covers beyond
 * the tracked ones). Returns `bitmap`.
 *
 * @example
 * ```ts
 * import { maskToPages } from "./dirty.ts";
 * console.log(maskToPages(new BigUint64Array([0xffn]), 4)[0]); // 15n
 * ```
 */
export function maskToPages(bitmap: BigUint64Array, pages: number): BigUint64Array {
  const words = Math.ceil(pages / 64);
  if (bitmap.length > words) bitmap.fill(0n, words);
  if (pages % 64 !== 0 && words > 0) bitmap[words - 1] &= (1n << BigInt(pages % 64)) - 1n;
  return bitmap;
}

/**
 * The page numbers whose bits are set, in order.
 *
 * @example
 * ```ts
 * import { dirtyPages } from "./dirty.ts";
 * console.log(dirtyPages(new BigUint64Array([0b101n, 1n]))); // [0, 2, 64]
 * ```
 */
export function dirtyPages(bitmap: BigUint64Array): number[] {
  const out: number[] = [];
  const halves = new Uint32Array(bitmap.buffer, bitmap.byteOffset, bitmap.length * 2);
  for (let i = 0; i < halves.length; i++) {
    let w = halves[i];
    while (w !== 0) {
      const bit = 31 - Math.clz32(w & -w);
      out.push(i * 32 + bit);
      w &= w - 1;
    }
  }
  return out;
}
