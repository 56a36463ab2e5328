/**
 * Lowercase hexadecimal rendering of bytes and addresses. Internal to the format module.
 *
 * @module
 */

const DIGITS: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/**
 * Renders bytes as lowercase hex, two digits per byte, no separators.
 *
 * @param bytes The bytes.
 * @returns The hex string.
 *
 * @example
 * ```ts
 * import { toHex } from "./_hex.ts";
 *
 * console.log(toHex(new Uint8Array([0x48, 0x4c]))); // 484c
 * ```
 */
export function toHex(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) text += DIGITS[byte];
  return text;
}

/**
 * Renders an integer as `0x`-prefixed lowercase hex, the way addresses read best.
 *
 * @param value A non-negative integer.
 * @returns For example `0x200000`.
 *
 * @example
 * ```ts
 * import { hexAddress } from "./_hex.ts";
 *
 * console.log(hexAddress(0x200000n)); // 0x200000
 * ```
 */
export function hexAddress(value: bigint | number): string {
  return `0x${value.toString(16)}`;
}
