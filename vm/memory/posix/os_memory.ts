/**
 * Guest memory and snapshot backing on Linux: anonymous `mmap` reservations, `MAP_PRIVATE | MAP_FIXED`
 * copy-on-write views of a file or a sealed memfd, `madvise` hints.
 *
 * @module
 */
import { check, ErrnoError, lastErrno } from "../../../ffi/linux/errno.ts";
import {
  F_ADD_SEALS,
  F_GETFL,
  F_SEAL_GROW,
  F_SEAL_SEAL,
  F_SEAL_SHRINK,
  F_SEAL_WRITE,
  F_SETFL,
  libc,
  MADV_DONTNEED,
  MADV_POPULATE_WRITE,
  MADV_RANDOM,
  MAP_ANONYMOUS,
  MAP_FAILED,
  MAP_FIXED,
  MAP_NORESERVE,
  MAP_PRIVATE,
  MAP_SHARED,
  MFD_ALLOW_SEALING,
  MFD_CLOEXEC,
  O_CLOEXEC,
  O_NONBLOCK,
  O_RDONLY,
  PROT_READ,
  PROT_WRITE,
  STAT,
} from "../../../ffi/linux/libc.ts";
import type { Backing, OpenedFile, OsMemory } from "../os_memory.ts";
import { trackFd, trackMapping, untrackFd, untrackMapping } from "../../../ffi/linux/reaper.ts";
import { isZero, type OpenRules, READ_CHUNK, readStream, readThroughDeno, type Sink } from "../_read.ts";

const encoder = new TextEncoder();
const PAGE_SIZE = 4096;

function mapOrThrow(
  call: string,
  at: Deno.PointerObject | null,
  size: number,
  prot: number,
  flags: number,
  fd: number,
  offset: number,
): Deno.PointerObject {
  const p = libc().mmap(at, BigInt(size), prot, flags, fd, BigInt(offset));
  if (p === null || BigInt(Deno.UnsafePointer.value(p)) === MAP_FAILED) {
    throw new ErrnoError(call, lastErrno());
  }
  if (at !== null && Deno.UnsafePointer.value(p) !== Deno.UnsafePointer.value(at)) {
    throw new ErrnoError(call, lastErrno());
  }
  // A new mapping (not one placed inside another): in a Worker, its reaper unmaps it if the Worker ends first.
  return at === null ? trackMapping(p, size) : p;
}

/** A file descriptor with the blob's place in it. */
class FdBacking implements Backing {
  #fd: number;
  readonly offset: number;
  readonly size: number;
  readonly inMemory: boolean;

  constructor(fd: number, offset: number, size: number, inMemory: boolean) {
    this.#fd = fd;
    this.offset = offset;
    this.size = size;
    this.inMemory = inMemory;
  }

  get fd(): number {
    if (this.#fd < 0) throw new Error("Backing is closed");
    return this.#fd;
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  close(): void {
    if (this.#fd < 0) return;
    untrackFd(this.#fd);
    libc().close(this.#fd);
    this.#fd = -1;
  }
}

function fdOf(backing: Backing): FdBacking {
  if (!(backing instanceof FdBacking)) throw new TypeError("Not a backing of this platform");
  return backing;
}

function sealed(name: string, size: number, fill: (fd: number) => void): Backing {
  const c = libc();
  const fd = trackFd(check(
    "memfd_create",
    c.memfd_create(encoder.encode(`${name}\0`), MFD_CLOEXEC | MFD_ALLOW_SEALING),
  ));
  try {
    check("ftruncate", c.ftruncate(fd, BigInt(size)));
    fill(fd);
    check(
      "fcntl(F_ADD_SEALS)",
      c.fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL),
    );
  } catch (e) {
    untrackFd(fd);
    c.close(fd);
    throw e;
  }
  return new FdBacking(fd, 0, size, true);
}

/** Writes `size` bytes at `from` to `fd` at `offset`. */
function pwriteAll(fd: number, from: Deno.PointerObject, size: number, offset = 0): void {
  for (let done = 0; done < size;) {
    const n = Number(
      libc().pwrite(fd, Deno.UnsafePointer.offset(from, done), BigInt(size - done), BigInt(offset + done)),
    );
    if (n <= 0) throw new ErrnoError("pwrite(memfd)", lastErrno());
    done += n;
  }
}

/** A chunk of `READ_CHUNK` zeros to compare read chunks with. */
let zeros: Uint8Array | undefined;

/** Whether a chunk read is all zeros, with one `memcmp`. */
function zeroChunk(bytes: Uint8Array): boolean {
  zeros ??= new Uint8Array(READ_CHUNK);
  if (bytes.byteLength > zeros.byteLength) return isZero(bytes);
  return libc().memcmp(
    Deno.UnsafePointer.of(bytes),
    Deno.UnsafePointer.of(zeros),
    BigInt(bytes.byteLength),
  ) === 0;
}

/**
 * A file's bytes in a new memfd, written as they come (chunks of zeros are left as holes), then sealed and
 * opened like a file on disk: reads are `pread`, blobs map it copy-on-write.
 */
class MemfdFile implements Sink {
  #fd: number;

  constructor() {
    this.#fd = trackFd(check(
      "memfd_create",
      libc().memfd_create(encoder.encode("snapvm-file\0"), MFD_CLOEXEC | MFD_ALLOW_SEALING),
    ));
  }

  write(offset: number, bytes: Uint8Array): void {
    for (let done = 0; done < bytes.byteLength;) {
      const n = Number(
        libc().pwrite_buf(
          this.#fd,
          bytes.subarray(done),
          BigInt(bytes.byteLength - done),
          BigInt(offset + done),
        ),
      );
      if (n <= 0) throw new ErrnoError("pwrite(memfd)", lastErrno());
      done += n;
    }
  }

  /** Sets the length (trailing zeros are holes too), seals, and hands the memfd over as an open file. */
  finish(size: number, identity: string): OpenedFile {
    const c = libc();
    check("ftruncate", c.ftruncate(this.#fd, BigInt(size)));
    check(
      "fcntl(F_ADD_SEALS)",
      c.fcntl(this.#fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL),
    );
    const file = new PosixFile(this.#fd, size, identity, true);
    this.#fd = -1;
    return file;
  }

  /** Closes the memfd unless `finish` handed it over. */
  [Symbol.dispose](): void {
    if (this.#fd >= 0) {
      untrackFd(this.#fd);
      libc().close(this.#fd);
    }
    this.#fd = -1;
  }
}

/**
 * Reads an open file that cannot be mapped (a FIFO, a device, a file that reports no size) to its end into
 * a sealed memfd. Takes `fd` over. The descriptor was opened non-blocking (so that opening a FIFO never
 * waits for a writer); reads block: a FIFO without a writer reads as empty, one with a writer is read until
 * the writer closes it.
 */
function readFd(fd: number, identity: string, rules: OpenRules): OpenedFile {
  try {
    const c = libc();
    const flags = c.fcntl(fd, F_GETFL, 0);
    if (flags >= 0) c.fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    using memfd = new MemfdFile();
    const size = readStream(
      (into) => {
        for (;;) {
          const n = Number(c.read(fd, into, BigInt(into.byteLength)));
          if (n >= 0) return n;
          const errno = lastErrno();
          if (errno !== EINTR) throw new ErrnoError("read", errno);
        }
      },
      memfd,
      rules,
      zeroChunk,
    );
    return memfd.finish(size, identity);
  } finally {
    untrackFd(fd);
    libc().close(fd);
  }
}

const EINTR = 4, ENOENT = 2, ENXIO = 6;

function notFound(path: string): Error {
  return new Deno.errors.NotFound(`No such file or directory (os error 2): open '${path}'`);
}

class PosixFile implements OpenedFile {
  #fd: number;
  readonly size: number;
  readonly identity: string;
  readonly inMemory: boolean;

  /** `inMemory`: the descriptor is a memfd holding a file's bytes (read in, or given as bytes). */
  constructor(fd: number, size: number, identity: string, inMemory: boolean) {
    this.#fd = fd;
    this.size = size;
    this.identity = identity;
    this.inMemory = inMemory;
  }

  read(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = Number(
        libc().pread(this.#fd, out.subarray(done), BigInt(length - done), BigInt(offset + done)),
      );
      if (n < 0) throw new ErrnoError("pread", lastErrno());
      if (n === 0) break;
      done += n;
    }
    return out.subarray(0, done);
  }

  toBacking(offset: number, size: number): Backing {
    if (this.#fd < 0) throw new Error("File is closed");
    const b = new FdBacking(this.#fd, offset, size, this.inMemory);
    this.#fd = -1;
    return b;
  }

  close(): void {
    if (this.#fd < 0) return;
    untrackFd(this.#fd);
    libc().close(this.#fd);
    this.#fd = -1;
  }
}

/**
 * The Linux implementation of {@linkcode OsMemory}.
 *
 * @example
 * ```ts
 * import { osMemory } from "./os_memory.ts";
 * const p = osMemory.reserve(8192);
 * osMemory.release(p, 8192);
 * ```
 */
export const osMemory: OsMemory = {
  pageSize: 4096,

  reserve(size) {
    return mapOrThrow(
      "mmap",
      null,
      size,
      PROT_READ | PROT_WRITE,
      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
      -1,
      0,
    );
  },

  release(pointer, size) {
    untrackMapping(pointer);
    check("munmap", libc().munmap(pointer, BigInt(size)));
  },

  protectNone(pointer, size) {
    check("mprotect", libc().mprotect(pointer, BigInt(size), 0));
  },

  mapCopyOnWrite(pointer, size, backing) {
    const b = fdOf(backing);
    mapOrThrow(
      "mmap(MAP_FIXED)",
      pointer,
      size,
      PROT_READ | PROT_WRITE,
      MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE,
      b.fd,
      b.offset,
    );
  },

  mapReadOnly(backing) {
    const b = fdOf(backing);
    return mapOrThrow("mmap", null, b.size, PROT_READ, MAP_SHARED, b.fd, b.offset);
  },

  unmapView(pointer, size) {
    untrackMapping(pointer);
    check("munmap", libc().munmap(pointer, BigInt(size)));
  },

  prefault(pointer, size) {
    // Best effort: MADV_POPULATE_WRITE exists since Linux 5.14; older kernels just fault later.
    if (size > 0) libc().madvise(pointer, BigInt(size), MADV_POPULATE_WRITE);
  },

  adviseRandom(pointer, size) {
    if (size > 0) libc().madvise(pointer, BigInt(size), MADV_RANDOM);
  },

  discard(pointer, size) {
    check("madvise(MADV_DONTNEED)", libc().madvise(pointer, BigInt(size), MADV_DONTNEED));
  },

  copy(to, from, size) {
    libc().memcpy(to, from, size);
  },

  sealedCopy(pointer, size, runs) {
    return sealed("snapvm-snapshot", size, (fd) => {
      if (runs === undefined) return pwriteAll(fd, pointer, size);
      // Only these pages: the rest of the memfd stays holes (zeros that take no memory).
      for (const run of runs) {
        const offset = run.first * PAGE_SIZE, length = run.count * PAGE_SIZE;
        if (offset + length > size) {
          throw new RangeError(`run ${run.first}+${run.count} is outside ${size} bytes`);
        }
        pwriteAll(fd, Deno.UnsafePointer.offset(pointer, offset)!, length, offset);
      }
    });
  },

  sealedBytes(bytes) {
    return sealed("snapvm-snapshot", bytes.byteLength, (fd) => {
      for (let done = 0; done < bytes.byteLength;) {
        const n = Number(
          libc().pwrite_buf(fd, bytes.subarray(done), BigInt(bytes.byteLength - done), BigInt(done)),
        );
        if (n <= 0) throw new ErrnoError("pwrite(memfd)", lastErrno());
        done += n;
      }
    });
  },

  openFile(path, rules) {
    // O_NONBLOCK: opening a FIFO must not wait for a writer.
    const fd = libc().open(encoder.encode(`${path}\0`), O_RDONLY | O_CLOEXEC | O_NONBLOCK, 0);
    if (fd < 0) {
      const errno = lastErrno();
      if (errno === ENOENT) {
        // Perhaps a file only Deno can open: the virtual file system of a `deno compile` executable.
        using memfd = new MemfdFile();
        let read;
        try {
          read = readThroughDeno(path, memfd, rules, zeroChunk);
        } catch (e) {
          if (e instanceof Deno.errors.NotFound) throw notFound(path);
          throw e;
        }
        return memfd.finish(read.size, read.identity);
      }
      if (errno === 13 || errno === 1) {
        throw new Deno.errors.PermissionDenied(`Permission denied (os error ${errno}): open '${path}'`);
      }
      if (errno === ENXIO) throw rules.notRegular(); // a socket
      throw new ErrnoError(`open(${path})`, errno);
    }
    trackFd(fd);
    const st = new BigUint64Array(STAT.SIZE / 8);
    if (libc().fstat(fd, new Uint8Array(st.buffer)) < 0) {
      const errno = lastErrno();
      untrackFd(fd);
      libc().close(fd);
      throw new ErrnoError("fstat", errno);
    }
    const v = new DataView(st.buffer);
    const mode = v.getUint32(STAT.MODE, true) & 0o170000;
    if (mode === 0o040000) {
      untrackFd(fd);
      libc().close(fd);
      throw new Deno.errors.IsADirectory(`Is a directory (os error 21): open '${path}'`);
    }
    const identity = `${v.getBigUint64(STAT.DEV, true)}:${v.getBigUint64(STAT.INO, true)}:` +
      `${v.getBigUint64(STAT.MTIME_SEC, true)}.${v.getBigUint64(STAT.MTIME_NSEC, true)}`;
    const size = Number(v.getBigInt64(STAT.SIZE_FIELD, true));
    // A regular file with a size is mapped. Anything else that opens (a FIFO, a character or block device, a
    // file that reports no size, as in /proc) is read into memory.
    if (mode === 0o100000 && size > 0) return new PosixFile(fd, size, identity, false);
    if (mode === 0o140000) {
      untrackFd(fd);
      libc().close(fd);
      throw rules.notRegular();
    }
    return readFd(fd, `read:${identity}`, rules);
  },

  openBytes(bytes, identity) {
    using memfd = new MemfdFile();
    for (let at = 0; at < bytes.byteLength; at += READ_CHUNK) {
      const chunk = bytes.subarray(at, Math.min(bytes.byteLength, at + READ_CHUNK));
      if (!zeroChunk(chunk)) memfd.write(at, chunk);
    }
    return memfd.finish(bytes.byteLength, identity);
  },
};

/**
 * A shared mapping of `size` bytes of `fd` at `offset` (the `kvm_run` area or the dirty ring of a vCPU):
 * returns its address.
 *
 * @example
 * ```ts ignore
 * import { mapShared } from "./os_memory.ts";
 * const p = mapShared(vcpuFd, 12288);
 * ```
 */
export function mapShared(fd: number, size: number, offset = 0): Deno.PointerObject {
  return mapOrThrow("mmap", null, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
}

/**
 * The file descriptor of a backing made on Linux (tests and diagnostics).
 *
 * @example
 * ```ts
 * import { backingFd, osMemory } from "./os_memory.ts";
 * const b = osMemory.sealedBytes(new Uint8Array(4096));
 * console.log(backingFd(b) >= 0);
 * b.close();
 * ```
 */
export function backingFd(backing: Backing): number {
  return fdOf(backing).fd;
}
