/**
 * A snapshot's memory blob: the OS backing guest memory is mapped from copy-on-write, and a read-only
 * reference view of it (restore copies pages back from it, `toFile` writes it, the loader checks it).
 *
 * @module
 */
import type { Backing } from "./os_memory.ts";
import { Mapping, osMemory } from "./mapping.ts";

/**
 * The memory blob of one snapshot. Owns its backing and view; `close()` releases both, and guest memory
 * mapped from it earlier stays valid.
 *
 * @example
 * ```ts
 * import { Blob } from "./blob.ts";
 * using blob = Blob.fromBytes(new Uint8Array(4096).fill(1));
 * console.log(blob.ref.bytes[0]); // 1
 * ```
 */
export class Blob {
  /** Where guest memory is mapped from. */
  readonly backing: Backing;
  /** Read-only view of the whole blob. */
  readonly ref: Mapping;

  /** Takes ownership of `backing` and maps the reference view. */
  constructor(backing: Backing) {
    this.backing = backing;
    try {
      this.ref = Mapping.readOnly(backing);
    } catch (e) {
      backing.close();
      throw e;
    }
  }

  /**
   * A blob holding a copy of `size` bytes of host memory, sealed against any later change.
   *
   * @example
   * ```ts
   * import { Blob } from "./blob.ts";
   * import { Mapping } from "./mapping.ts";
   * using mem = Mapping.reserve(4096);
   * using blob = Blob.copyOf(mem);
   * console.log(blob.size); // 4096
   * ```
   */
  static copyOf(memory: Mapping): Blob {
    return new Blob(osMemory.sealedCopy(memory.pointer, memory.size));
  }

  /**
   * A blob holding a copy of `bytes`, sealed.
   *
   * @example
   * ```ts
   * import { Blob } from "./blob.ts";
   * using blob = Blob.fromBytes(new Uint8Array(8192));
   * console.log(blob.size); // 8192
   * ```
   */
  static fromBytes(bytes: Uint8Array): Blob {
    return new Blob(osMemory.sealedBytes(bytes));
  }

  /** Blob length in bytes. */
  get size(): number {
    return this.backing.size;
  }

  /** True once closed. */
  get closed(): boolean {
    return this.backing.closed;
  }

  /** Unmaps the reference view and releases the backing. */
  close(): void {
    if (this.backing.closed) return;
    this.ref.close();
    this.backing.close();
  }

  /** Same as `close()`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
