/**
 * A fixed-size little-endian writer, the counterpart of `_reader.ts`. Internal to the format module.
 *
 * @module
 */

/**
 * Writes little-endian integers and byte ranges into a buffer of fixed size, front to back. Writing past the
 * end or writing a value that does not fit the integer width is a bug in the caller, so it throws
 * `RangeError` rather than a format error.
 *
 * @example
 * ```ts
 * import { ByteWriter } from "./_writer.ts";
 *
 * const writer = new ByteWriter(new Uint8Array(5));
 * writer.u32(1);
 * writer.u8(2);
 * console.log(writer.bytesWritten); // 5
 * ```
 */
export class ByteWriter {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  #position = 0;

  /** @param bytes The buffer to fill; the writer never writes outside it. */
  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Offset of the next byte to write. */
  get position(): number {
    return this.#position;
  }

  /** Number of bytes written so far (the same as {@linkcode ByteWriter.position}). */
  get bytesWritten(): number {
    return this.#position;
  }

  /** Number of bytes still free. */
  get remaining(): number {
    return this.#bytes.byteLength - this.#position;
  }

  #take(size: number): number {
    const at = this.#position;
    if (size > this.#bytes.byteLength - at) {
      throw new RangeError(
        `Write of ${size} bytes at offset ${at} overflows a ${this.#bytes.byteLength}-byte buffer`,
      );
    }
    this.#position = at + size;
    return at;
  }

  #checkInteger(value: number, max: number): void {
    if (!Number.isInteger(value) || value < 0 || value > max) {
      throw new RangeError(`Value ${value} does not fit an unsigned integer of maximum ${max}`);
    }
  }

  /**
   * Writes an unsigned byte.
   *
   * @param value An integer in 0..255.
   */
  u8(value: number): void {
    this.#checkInteger(value, 0xff);
    this.#view.setUint8(this.#take(1), value);
  }

  /**
   * Writes a little-endian u16.
   *
   * @param value An integer in 0..65535.
   */
  u16(value: number): void {
    this.#checkInteger(value, 0xffff);
    this.#view.setUint16(this.#take(2), value, true);
  }

  /**
   * Writes a little-endian u32.
   *
   * @param value An integer in 0..2^32−1.
   */
  u32(value: number): void {
    this.#checkInteger(value, 0xffff_ffff);
    this.#view.setUint32(this.#take(4), value, true);
  }

  /**
   * Writes a little-endian u64.
   *
   * @param value A non-negative safe integer, or a bigint in 0..2^64−1.
   */
  u64(value: number | bigint): void {
    if (typeof value === "number") {
      // A number above 2^53 has already lost precision; refuse it instead of writing a rounded value.
      this.#checkInteger(value, Number.MAX_SAFE_INTEGER);
      value = BigInt(value);
    } else if (value < 0n || value > 0xffff_ffff_ffff_ffffn) {
      throw new RangeError(`Value ${value} does not fit a u64`);
    }
    this.#view.setBigUint64(this.#take(8), value, true);
  }

  /**
   * Copies bytes in.
   *
   * @param bytes The bytes to copy.
   */
  bytes(bytes: Uint8Array): void {
    this.#bytes.set(bytes, this.#take(bytes.byteLength));
  }

  /**
   * Leaves `size` bytes as they are (zero in a fresh buffer) and moves past them.
   *
   * @param size A non-negative integer.
   */
  skip(size: number): void {
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`Invalid byte count ${size}`);
    this.#take(size);
  }
}
