/**
 * An owned `mmap` mapping with a zero-copy view that becomes unusable (length 0) before the memory is
 * unmapped, so no JavaScript view can ever touch unmapped memory.
 *
 * @module
 */
import { check, lastErrno, OsCallError } from "../../ffi/linux/errno.ts";
import {
  libc,
  MAP_ANONYMOUS,
  MAP_FAILED,
  MAP_FIXED,
  MAP_NORESERVE,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
} from "../../ffi/linux/libc.ts";

/**
 * One mapping. `bytes` and `view` cover it; `close()` detaches their buffer (every view over it drops to
 * length 0) and only then unmaps.
 *
 * @example
 * ```ts
 * import { Mapping } from "./mapping.ts";
 * using m = Mapping.anonymous(4096);
 * m.bytes[0] = 1;
 * ```
 */
export class Mapping {
  /** The host address of the mapping. */
  readonly pointer: Deno.PointerObject;
  /** The host address as a number, for `kvm_userspace_memory_region`. */
  readonly address: bigint;
  /** The mapping's length in bytes. */
  readonly size: number;
  #closed = false;
  /** Set for a part of another mapping: closing it only detaches its views; the owner unmaps. */
  readonly #partOf: Mapping | undefined;
  #parts: Mapping[] = [];
  #buffer: ArrayBuffer | undefined;
  #bytes: Uint8Array | undefined;
  #view: DataView | undefined;
  /** Buffers handed out by `window()`, detached at close. */
  #windows: WeakRef<ArrayBuffer>[] = [];

  private constructor(pointer: Deno.PointerObject, size: number, partOf?: Mapping) {
    this.pointer = pointer;
    this.address = BigInt(Deno.UnsafePointer.value(pointer));
    this.size = size;
    this.#partOf = partOf;
  }

  /**
   * A sub-range of this mapping as a mapping of its own (for views, `advise`, `remapPrivateFile`). The part
   * is closed, and its views detached, when this mapping closes; closing the part alone unmaps nothing.
   *
   * @example
   * ```ts
   * import { Mapping } from "./mapping.ts";
   * using m = Mapping.anonymous(3 * 4096);
   * const tail = m.part(8192, 4096);
   * tail.bytes[0] = 1;
   * ```
   */
  part(offset: number, size: number): Mapping {
    if (this.#closed) throw new Error("Mapping is closed");
    if (offset < 0 || size <= 0 || offset + size > this.size) {
      throw new RangeError(`part ${offset}+${size} is outside the ${this.size}-byte mapping`);
    }
    const p = new Mapping(Deno.UnsafePointer.offset(this.pointer, offset)!, size, this);
    this.#parts.push(p);
    return p;
  }

  /**
   * `mprotect` of a byte range (page aligned).
   *
   * @example
   * ```ts
   * import { Mapping } from "./mapping.ts";
   * using m = Mapping.anonymous(8192);
   * m.protect(4096, 4096, 0); // PROT_NONE
   * ```
   */
  protect(offset: number, length: number, prot: number): void {
    check("mprotect", libc().mprotect(Deno.UnsafePointer.offset(this.pointer, offset), BigInt(length), prot));
  }

  /**
   * `mmap` with the given arguments; throws {@linkcode OsCallError} naming the call on failure.
   *
   * @example
   * ```ts
   * import { Mapping } from "./mapping.ts";
   * const m = Mapping.map(4096, 3, 0x22, -1, 0);
   * m.close();
   * ```
   */
  static map(size: number, prot: number, flags: number, fd: number, offset: number): Mapping {
    const p = libc().mmap(null, BigInt(size), prot, flags, fd, BigInt(offset));
    if (p === null || BigInt(Deno.UnsafePointer.value(p)) === MAP_FAILED) {
      throw new OsCallError("mmap", lastErrno());
    }
    return new Mapping(p, size);
  }

  /**
   * Zero-filled private anonymous memory, reserved lazily (pages cost nothing until touched).
   *
   * @example
   * ```ts
   * import { Mapping } from "./mapping.ts";
   * using m = Mapping.anonymous(1 << 20);
   * ```
   */
  static anonymous(size: number): Mapping {
    return Mapping.map(size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  }

  /**
   * A shared mapping of `size` bytes of `fd` at `offset` (the `kvm_run` area of a vCPU, for example).
   *
   * @example
   * ```ts
   * import { Mapping } from "./mapping.ts";
   * // const run = Mapping.shared(vcpuFd, 12288);
   * ```
   */
  static shared(fd: number, size: number, offset = 0): Mapping {
    return Mapping.map(size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
  }

  /**
   * A read-only shared mapping of a file (a snapshot's reference copy of its blob).
   *
   * @example
   * ```ts
   * // const ref = Mapping.readOnly(fd, size, 4096);
   * ```
   */
  static readOnly(fd: number, size: number, offset: number): Mapping {
    return Mapping.map(size, PROT_READ, MAP_SHARED, fd, offset);
  }

  /**
   * Replaces the whole mapping, in place, with a copy-on-write mapping of `fd` at `offset` (`MAP_FIXED`):
   * the address and every view stay valid, and KVM picks up the new pages without re-registering a slot.
   *
   * @example
   * ```ts
   * // persistent.remapPrivateFile(snapshotFd, 4096);
   * ```
   */
  remapPrivateFile(fd: number, offset: number): void {
    if (this.#closed) throw new Error("Mapping is closed");
    const p = libc().mmap(
      this.pointer,
      BigInt(this.size),
      PROT_READ | PROT_WRITE,
      MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE,
      fd,
      BigInt(offset),
    );
    if (p === null || BigInt(Deno.UnsafePointer.value(p)) !== this.address) {
      throw new OsCallError("mmap(MAP_FIXED)", lastErrno());
    }
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
   *
   * @example
   * ```ts
   * import { Mapping } from "./mapping.ts";
   * using m = Mapping.anonymous(1 << 20);
   * m.window(4096, 16).fill(1);
   * ```
   */
  window(offset: number, length: number): Uint8Array {
    if (this.#closed) throw new Error("Mapping is closed");
    if (offset < 0 || length < 0 || offset + length > this.size) {
      throw new RangeError(`window ${offset}+${length} is outside the ${this.size}-byte mapping`);
    }
    if (length === 0) return new Uint8Array(0);
    const buffer = Deno.UnsafePointerView.getArrayBuffer(
      Deno.UnsafePointer.offset(this.pointer, offset)!,
      length,
    );
    if (this.#windows.length > 64) this.#windows = this.#windows.filter((w) => w.deref() !== undefined);
    this.#windows.push(new WeakRef(buffer));
    return new Uint8Array(buffer);
  }

  /**
   * Copies `length` bytes at `offset` from `source` (another mapping) to the same offset here, without
   * making any JavaScript view.
   *
   * @example
   * ```ts
   * import { Mapping } from "./mapping.ts";
   * using a = Mapping.anonymous(8192), b = Mapping.anonymous(8192);
   * a.copyFrom(b, 4096, 4096);
   * ```
   */
  copyFrom(source: Mapping, offset: number, length: number): void {
    if (this.#closed || source.#closed) throw new Error("Mapping is closed");
    if (offset < 0 || length < 0 || offset + length > this.size || offset + length > source.size) {
      throw new RangeError(`copy ${offset}+${length} is outside the mappings`);
    }
    libc().memcpy(
      Deno.UnsafePointer.offset(this.pointer, offset),
      Deno.UnsafePointer.offset(source.pointer, offset),
      BigInt(length),
    );
  }

  /** True once closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * `madvise` over a byte range of the mapping.
   *
   * @example
   * ```ts
   * import { Mapping } from "./mapping.ts";
   * using m = Mapping.anonymous(8192);
   * m.advise(0, 8192, 4); // MADV_DONTNEED
   * ```
   */
  advise(offset: number, length: number, advice: number): void {
    const p = Deno.UnsafePointer.offset(this.pointer, offset);
    check("madvise", libc().madvise(p, BigInt(length), advice));
  }

  /**
   * Detaches every view, then unmaps. Safe to call twice.
   *
   * @example
   * ```ts
   * import { Mapping } from "./mapping.ts";
   * const m = Mapping.anonymous(4096);
   * m.close();
   * ```
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // transfer(0) detaches an external buffer: every Uint8Array/DataView over it now has length 0, so a
    // stale view reads undefined instead of segfaulting the process after munmap.
    this.#buffer?.transfer(0);
    for (const w of this.#windows) w.deref()?.transfer(0);
    this.#buffer = this.#bytes = this.#view = undefined;
    this.#windows = [];
    for (const part of this.#parts) part.close();
    this.#parts = [];
    if (this.#partOf === undefined && this.size > 0) {
      check("munmap", libc().munmap(this.pointer, BigInt(this.size)));
    }
  }

  /** Same as `close()`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
