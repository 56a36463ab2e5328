/**
 * A bounds-checked little-endian reader. Internal to the format module.
 *
 * @module
 */

import { type SnapshotAction, SnapshotFormatError } from "./errors.ts";

/**
 * Options of {@linkcode ByteReader}.
 *
 * @example
 * ```ts
 * import type { ByteReaderOptions } from "./_reader.ts";
 *
 * const options: ByteReaderOptions = { fileOffset: 1176, action: "load" };
 * console.log(options);
 * ```
 */
export interface ByteReaderOptions {
  /** File offset of the first byte, so that truncation errors name absolute offsets. Defaults to 0. */
  fileOffset?: number;
  /** Passed to the errors the reader throws. Defaults to `"load"`. */
  action?: SnapshotAction;
}

/**
 * Reads little-endian integers and byte ranges from a `Uint8Array`, front to back. Every read checks the
 * remaining length first and throws a `SnapshotFormatError` of kind `Truncated` naming the field, so a
 * malformed file can never make a read run past the bytes it was given. The `DataView` covers exactly the
 * given bytes, so not even a bug here could read beyond them.
 *
 * @example
 * ```ts
 * import { ByteReader } from "./_reader.ts";
 *
 * const reader = new ByteReader(new Uint8Array([1, 0, 0, 0, 2]));
 * console.log(reader.u32("count"), reader.u8("tag"), reader.remaining); // 1 2 0
 * ```
 */
export class ByteReader {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  readonly #fileOffset: number;
  readonly #action: SnapshotAction;
  #position = 0;

  /**
   * @param bytes The bytes to read; the reader never looks outside them.
   * @param options File offset for messages, and the action for errors.
   */
  constructor(bytes: Uint8Array, options: ByteReaderOptions = {}) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#fileOffset = options.fileOffset ?? 0;
    this.#action = options.action ?? "load";
  }

  /** Offset of the next byte to read, relative to the start of the bytes. */
  get position(): number {
    return this.#position;
  }

  /** Number of bytes not read yet. */
  get remaining(): number {
    return this.#bytes.byteLength - this.#position;
  }

  /** Total number of bytes the reader covers. */
  get length(): number {
    return this.#bytes.byteLength;
  }

  /** Throws `Truncated` unless `size` more bytes are available, then claims them. */
  #take(size: number, field: string): number {
    const at = this.#position;
    if (size > this.#bytes.byteLength - at) {
      throw new SnapshotFormatError("Truncated", {
        field,
        found: `${this.#bytes.byteLength - at} bytes at file offset ${this.#fileOffset + at}`,
        expected: `${size} bytes`,
        action: this.#action,
      });
    }
    this.#position = at + size;
    return at;
  }

  /**
   * Reads an unsigned byte.
   *
   * @param field Name used in the error if the bytes run out.
   */
  u8(field: string): number {
    return this.#view.getUint8(this.#take(1, field));
  }

  /**
   * Reads a little-endian u16.
   *
   * @param field Name used in the error if the bytes run out.
   */
  u16(field: string): number {
    return this.#view.getUint16(this.#take(2, field), true);
  }

  /**
   * Reads a little-endian u32.
   *
   * @param field Name used in the error if the bytes run out.
   */
  u32(field: string): number {
    return this.#view.getUint32(this.#take(4, field), true);
  }

  /**
   * Reads a little-endian u64 as a bigint (a u64 does not fit a number).
   *
   * @param field Name used in the error if the bytes run out.
   */
  u64(field: string): bigint {
    return this.#view.getBigUint64(this.#take(8, field), true);
  }

  /**
   * Returns the next `size` bytes as a subarray (no copy) and moves past them.
   *
   * @param size A non-negative safe integer.
   * @param field Name used in the error if the bytes run out.
   */
  bytes(size: number, field: string): Uint8Array {
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`Invalid byte count ${size}`);
    const at = this.#take(size, field);
    return this.#bytes.subarray(at, at + size);
  }

  /**
   * Moves past `size` bytes without reading them.
   *
   * @param size A non-negative safe integer.
   * @param field Name used in the error if the bytes run out.
   */
  skip(size: number, field: string): void {
    this.bytes(size, field);
  }
}
