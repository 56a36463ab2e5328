/**
 * Buffers at a guaranteed alignment for FFI. `WHV_REGISTER_VALUE` arrays must be 16-byte aligned, and
 * nothing in JavaScript promises that of a typed array, so the buffer is over-allocated and sliced at the
 * first aligned address (checked through `Deno.UnsafePointer.value`).
 *
 * @module
 */

/**
 * `size` bytes starting at an address that is a multiple of `align` (a power of two). The view is made
 * over a fresh `ArrayBuffer` (always allocated outside the V8 heap, so its address never moves), and keeps
 * it alive.
 *
 * @example
 * ```ts
 * import { addressOf, alignedBytes } from "./aligned.ts";
 * const b = alignedBytes(48, 16);
 * console.log(addressOf(b) % 16n); // 0n
 * ```
 */
export function alignedBytes(size: number, align = 16): Uint8Array {
  if (!Number.isInteger(align) || align <= 0 || (align & (align - 1)) !== 0) {
    throw new RangeError(`alignment must be a power of two, got ${align}`);
  }
  if (!Number.isInteger(size) || size < 0) throw new RangeError(`size must be a whole number, got ${size}`);
  const backing = new Uint8Array(new ArrayBuffer(size + align));
  const pad = padTo(addressOf(backing), align);
  return backing.subarray(pad, pad + size);
}

/**
 * The host address of a typed array's first byte.
 *
 * @example
 * ```ts
 * import { addressOf } from "./aligned.ts";
 * console.log(addressOf(new Uint8Array(new ArrayBuffer(8))) > 0n); // true
 * ```
 */
export function addressOf(bytes: Uint8Array): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes)));
}

/**
 * Bytes to add to `address` to reach the next multiple of `align` (0 when already aligned).
 *
 * @example
 * ```ts
 * import { padTo } from "./aligned.ts";
 * console.log(padTo(0x1008n, 16)); // 8
 * ```
 */
export function padTo(address: bigint, align: number): number {
  const a = BigInt(align);
  return Number((a - (address % a)) % a);
}
