/**
 * An owned range of host memory (guest memory, a snapshot's read-only view, a vCPU's shared area) with
 * zero-copy views that become unusable (length 0) before the memory is unmapped, so no JavaScript view can
 * ever touch unmapped memory. The operating system calls come from `posix/os_memory.ts` or
 * `windows/os_memory.ts`, picked once here.
 *
 * @module
 */
import { osMemory as posix } from "./posix/os_memory.ts";
import { osMemory as windows } from "./windows/os_memory.ts";
import type { Backing, OsMemory } from "./os_memory.ts";

/**
 * The operating system's memory calls for this platform.
 *
 * @example
 * ```ts
 * import { osMemory } from "./mapping.ts";
 * console.log(osMemory.pageSize); // 4096
 * ```
 */
export const osMemory: OsMemory = Deno.build.os === "windows" ? windows : posix;

/** How a mapping gives its memory back. */
type Unmap = (pointer: Deno.PointerObject, size: number) => void;

/**
 * One mapping. `bytes` and `view` cover it; `close()` detaches every buffer handed out (every view over it
 * drops to length 0) and only then unmaps.
 *
 * @example
 * ```ts
 * import { Mapping } from "./mapping.ts";
 * using m = Mapping.reserve(4096);
 * m.bytes[0] = 1;
 * ```
 */
export class Mapping {
  /** The host address of the mapping. */
  readonly pointer: Deno.PointerObject;
  /** The host address as a number. */
  readonly address: bigint;
  /** The mapping's length in bytes. */
  readonly size: number;
  #closed = false;
  /** How to unmap; undefined for a part of another mapping (the owner unmaps). */
  readonly #unmap: Unmap | undefined;
  #parts: Mapping[] = [];
  #buffer: ArrayBuffer | undefined;
  #bytes: Uint8Array | undefined;
  #view: DataView | undefined;
  /**
   * Buffers handed out by `window()`, detached at close. Held strongly: a WeakRef would keep its target
   * alive until the current job ends anyway, so a synchronous loop would grow the heap either way; windows
   * are made a bounded number of times per mapping (init, function table, crash frames).
   */
  #windows: ArrayBuffer[] = [];

  private constructor(pointer: Deno.PointerObject, size: number, unmap: Unmap | undefined) {
    this.pointer = pointer;
    this.address = BigInt(Deno.UnsafePointer.value(pointer));
    this.size = size;
    this.#unmap = unmap;
  }

  /**
   * Zero-filled private memory, reserved lazily (pages cost nothing until touched). `splits` are offsets
   * where parts will be treated separately later (see `OsMemory.reserve`).
   *
   * @example
   * ```ts
   * import { Mapping } from "./mapping.ts";
   * using m = Mapping.reserve(1 << 20);
   * ```
   */
  static reserve(size: number, splits?: readonly number[]): Mapping {
    return new Mapping(osMemory.reserve(size, splits), size, osMemory.release);
  }

  /**
   * Takes ownership of memory mapped elsewhere: `unmap` runs at close, after every view is detached.
   *
   * @example
   * ```ts
   * import { Mapping, osMemory } from "./mapping.ts";
   * const m = Mapping.adopt(osMemory.reserve(4096), 4096, osMemory.release);
   * m.close();
   * ```
   */
  static adopt(pointer: Deno.PointerObject, size: number, unmap: Unmap): Mapping {
    return new Mapping(pointer, size, unmap);
  }

  /**
   * A read-only view of a snapshot backing's whole blob.
   *
   * @example
   * ```ts
   * import { Mapping, osMemory } from "./mapping.ts";
   * using backing = { ...osMemory.sealedBytes(new Uint8Array(4096)), [Symbol.dispose]() {} };
   * ```
   */
  static readOnly(backing: Backing): Mapping {
    return new Mapping(osMemory.mapReadOnly(backing), backing.size, osMemory.unmapView);
  }

  /**
   * A sub-range of this mapping as a mapping of its own (for views and the calls below). The part is
   * closed, and its views detached, when this mapping closes; closing the part alone unmaps nothing.
   *
   * @example
   * ```ts
   * import { Mapping } from "./mapping.ts";
   * using m = Mapping.reserve(3 * 4096);
   * const tail = m.part(8192, 4096);
   * tail.bytes[0] = 1;
   * ```
   */
  part(offset: number, size: number): Mapping {
    this.#open();
    if (offset < 0 || size <= 0 || offset + size > this.size) {
      throw new RangeError(`part ${offset}+${size} is outside the ${this.size}-byte mapping`);
    }
    const p = new Mapping(Deno.UnsafePointer.offset(this.pointer, offset)!, size, undefined);
    this.#parts.push(p);
    return p;
  }

  /**
   * Makes a page range inaccessible (a guard page).
   *
   * @example
   * ```ts
   * import { Mapping } from "./mapping.ts";
   * using m = Mapping.reserve(8192);
   * m.protectNone(4096, 4096);
   * ```
   */
  protectNone(offset: number, size: number): void {
    this.#range(offset, size);
    osMemory.protectNone(this.#at(offset), size);
  }

  /**
   * Replaces the whole mapping (or, with `offset`, the backing's size from there), in place, with a
   * copy-on-write view of `backing`: the address and every view stay valid, and guest writes stay private.
   *
   * @example
   * ```ts
   * import { Mapping, osMemory } from "./mapping.ts";
   * const backing = osMemory.sealedBytes(new Uint8Array(4096).fill(7));
   * using m = Mapping.reserve(4096);
   * m.mapCopyOnWrite(backing);
   * console.log(m.bytes[0]); // 7
   * backing.close();
   * ```
   */
  mapCopyOnWrite(backing: Backing, offset?: number): void {
    if (offset === undefined && backing.size !== this.size) {
      throw new RangeError(`backing of ${backing.size} bytes does not fit the ${this.size}-byte mapping`);
    }
    this.#range(offset ?? 0, backing.size);
    osMemory.mapCopyOnWrite(this.#at(offset ?? 0), backing.size, backing);
  }

  /**
   * Allocates the host pages of a range now, so that the guest's first touch is cheaper (best effort).
   *
   * @example
   * ```ts
   * import { Mapping } from "./mapping.ts";
   * using m = Mapping.reserve(8192);
   * m.prefault(0, 8192);
   * ```
   */
  prefault(offset: number, size: number): void {
    this.#range(offset, size);
    osMemory.prefault(this.#at(offset), size);
  }

  /**
   * Tells the OS that a file-backed range is read at random: no read-ahead (best effort).
   *
   * @example
   * ```ts
   * import { Mapping } from "./mapping.ts";
   * using m = Mapping.reserve(8192);
   * m.adviseRandom(0, 8192);
   * ```
   */
  adviseRandom(offset: number, size: number): void {
    this.#range(offset, size);
    osMemory.adviseRandom(this.#at(offset), size);
  }

  /**
   * Drops a range's private pages: it reads as zeros again (or as the backing, in a copy-on-write view).
   *
   * @example
   * ```ts
   * import { Mapping } from "./mapping.ts";
   * using m = Mapping.reserve(4096);
   * m.bytes[0] = 1;
   * m.discard(0, 4096);
   * console.log(m.bytes[0]); // 0
   * ```
   */
  discard(offset: number, size: number): void {
    this.#range(offset, size);
    osMemory.discard(this.#at(offset), size);
  }

  /**
   * Bytes of the whole mapping (length 0 after `close()`). Made on first use: V8 counts an external buffer
   * as memory pressure, so making one over hundreds of MiB on every sandbox start would trigger a full GC
   * each time (measured: ~0.6 GC per cold start at 256 MiB). Prefer `window()` for small ranges of big
   * mappings.
   */
  get bytes(): Uint8Array {
    if (this.#bytes === undefined) {
      if (this.#closed || this.size === 0) return new Uint8Array(0);
      this.#buffer = Deno.UnsafePointerView.getArrayBuffer(this.pointer, this.size);
      this.#bytes = new Uint8Array(this.#buffer);
    }
    return this.#bytes;
  }

  /** A DataView over the whole mapping (see `bytes`). */
  get view(): DataView {
    if (this.#view === undefined) {
      const bytes = this.bytes;
      if (bytes.length === 0) return new DataView(new ArrayBuffer(0));
      this.#view = new DataView(bytes.buffer);
    }
    return this.#view;
  }

  /**
   * Bytes of `[offset, offset + length)` over their own small buffer, detached like the others at close.
   * The buffer stays attached to the mapping until it closes: for reads and writes repeated over a long
   * life, use `read()` / `write()`.
   *
   * @example
   * ```ts
   * import { Mapping } from "./mapping.ts";
   * using m = Mapping.reserve(1 << 20);
   * m.window(4096, 16).fill(1);
   * ```
   */
  window(offset: number, length: number): Uint8Array {
    this.#open();
    if (offset < 0 || length < 0 || offset + length > this.size) {
      throw new RangeError(`window ${offset}+${length} is outside the ${this.size}-byte mapping`);
    }
    if (length === 0) return new Uint8Array(0);
    const buffer = Deno.UnsafePointerView.getArrayBuffer(this.#at(offset), length);
    this.#windows.push(buffer);
    return new Uint8Array(buffer);
  }

  /**
   * Copies `length` bytes at `offset` out into a new array. Unlike `window()`, nothing stays attached to
   * the mapping: use it for small reads repeated over a mapping's life.
   *
   * @example
   * ```ts
   * import { Mapping } from "./mapping.ts";
   * using m = Mapping.reserve(4096);
   * console.log(m.read(0, 4)); // Uint8Array(4) [ 0, 0, 0, 0 ]
   * ```
   */
  read(offset: number, length: number): Uint8Array {
    this.#range(offset, length);
    const out = new Uint8Array(length);
    if (length > 0) new Deno.UnsafePointerView(this.#at(offset)).copyInto(out);
    return out;
  }

  /**
   * Copies `bytes` into the mapping at `offset` with one `memcpy`, making no JavaScript view (an external
   * buffer per write cost ~2 µs: restore writes the info page this way every time).
   *
   * @example
   * ```ts
   * import { Mapping } from "./mapping.ts";
   * using m = Mapping.reserve(4096);
   * m.write(8, new Uint8Array([1, 2]));
   * console.log(m.read(8, 2)); // Uint8Array(2) [ 1, 2 ]
   * ```
   */
  write(offset: number, bytes: Uint8Array): void {
    this.#range(offset, bytes.length);
    if (bytes.length === 0) return;
    osMemory.copy(
      this.address + BigInt(offset),
      BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes))),
      BigInt(bytes.length),
    );
  }

  /**
   * Copies `length` bytes from host address `from` into the mapping at `offset`: for a caller that owns a
   * long-lived buffer and took its address once (`Deno.UnsafePointer.of` costs ~0.2 µs a call).
   *
   * @example
   * ```ts
   * import { Mapping } from "./mapping.ts";
   * using m = Mapping.reserve(4096);
   * const bytes = new Uint8Array([1, 2]);
   * m.writeFrom(8, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes))), bytes.length);
   * console.log(m.read(8, 2)); // Uint8Array(2) [ 1, 2 ]
   * ```
   */
  writeFrom(offset: number, from: bigint, length: number): void {
    this.#range(offset, length);
    if (length > 0) osMemory.copy(this.address + BigInt(offset), from, BigInt(length));
  }

  /**
   * Copies `length` bytes at `offset` from `source` (another mapping) to the same offset here, without
   * making any JavaScript view.
   *
   * @example
   * ```ts
   * import { Mapping } from "./mapping.ts";
   * using a = Mapping.reserve(8192), b = Mapping.reserve(8192);
   * a.copyFrom(b, 4096, 4096);
   * ```
   */
  copyFrom(source: Mapping, offset: number, length: number): void {
    this.#open();
    source.#open();
    if (offset < 0 || length < 0 || offset + length > this.size || offset + length > source.size) {
      throw new RangeError(`copy ${offset}+${length} is outside the mappings`);
    }
    const at = BigInt(offset);
    osMemory.copy(this.address + at, source.address + at, BigInt(length));
  }

  /** True once closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Detaches every view, then unmaps. Safe to call twice.
   *
   * @example
   * ```ts
   * import { Mapping } from "./mapping.ts";
   * const m = Mapping.reserve(4096);
   * m.close();
   * ```
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // transfer(0) detaches an external buffer: every Uint8Array/DataView over it now has length 0, so a
    // stale view reads undefined instead of segfaulting the process after the memory is unmapped.
    this.#buffer?.transfer(0);
    for (const w of this.#windows) w.transfer(0);
    this.#buffer = this.#bytes = this.#view = undefined;
    this.#windows = [];
    for (const part of this.#parts) part.close();
    this.#parts = [];
    if (this.#unmap !== undefined && this.size > 0) this.#unmap(this.pointer, this.size);
  }

  /** Same as `close()`. */
  [Symbol.dispose](): void {
    this.close();
  }

  #open(): void {
    if (this.#closed) throw new Error("Mapping is closed");
  }

  #range(offset: number, size: number): void {
    this.#open();
    if (offset < 0 || size < 0 || offset + size > this.size) {
      throw new RangeError(`range ${offset}+${size} is outside the ${this.size}-byte mapping`);
    }
  }

  #at(offset: number): Deno.PointerObject {
    return Deno.UnsafePointer.offset(this.pointer, offset)!;
  }
}
