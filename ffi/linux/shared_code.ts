/**
 * Machine code mapped once per process and shared by every thread and Worker, never unmapped: the code of
 * threads that may outlive the JavaScript thread that started them (a Worker's vCPU run threads and its
 * reaper, `vm/kvm/_run_thread.c`), and of calls that may still be running on a blocking-pool thread after
 * their Worker has gone. Unmapping such code with its Worker could pull it from under one of them; mapping
 * it once per Worker and never unmapping it would leak a mapping per Worker.
 *
 * Module state is per Worker, so the mapping is found again through the kernel: it is a sealed memfd named
 * after the SHA-256 of the image, mapped read+execute, whose name `/proc/self/maps` shows. A Worker looks there
 * first and maps a new one only when none is found (two threads that both find none at the same moment make
 * two; every later one uses one of them). Where the kernel refuses an executable memfd (`vm.memfd_noexec=2`,
 * some hardened policies), the code goes into anonymous memory of this thread's own, which then stays for
 * the life of the process: one mapping per Worker (docs/SECURITY.md).
 *
 * @module
 */
import { ErrnoError, lastErrno } from "./errno.ts";
import {
  F_ADD_SEALS,
  F_SEAL_GROW,
  F_SEAL_SEAL,
  F_SEAL_SHRINK,
  F_SEAL_WRITE,
  libc,
  MAP_ANONYMOUS,
  MAP_FAILED,
  MAP_PRIVATE,
  MAP_SHARED,
  MFD_ALLOW_SEALING,
  MFD_CLOEXEC,
  MFD_EXEC,
  O_CLOEXEC,
  O_RDONLY,
  PAGE_SIZE,
  PROT_EXEC,
  PROT_READ,
  PROT_WRITE,
} from "./libc.ts";

const EINVAL = 22;

/**
 * Code shared by the process: its first byte, and whether it is the process-wide mapping (false: this
 * thread's own fallback copy, see the module comment).
 *
 * @example
 * ```ts ignore
 * import { sharedCode } from "./shared_code.ts";
 * const code = sharedCode({ label: "ret", sha256, base64: "ww==" });
 * console.log(code.shared);
 * ```
 */
export interface SharedCode {
  /** The first byte of the image. */
  readonly base: Deno.PointerObject;
  /** True for the process-wide mapping. */
  readonly shared: boolean;
}

const encoder = new TextEncoder();

/** `/proc/self/maps`, read through the C library (no file permission of Deno's involved). */
function readMaps(): string {
  const c = libc();
  const fd = c.open(encoder.encode("/proc/self/maps\0"), O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) return "";
  // The fd lives only within this synchronous function, which no Worker termination can interrupt.
  try {
    const chunks: Uint8Array[] = [];
    let offset = 0;
    for (;;) {
      const chunk = new Uint8Array(64 * 1024);
      const n = Number(c.pread(fd, chunk, BigInt(chunk.length), BigInt(offset)));
      if (n <= 0) break;
      chunks.push(chunk.subarray(0, n));
      offset += n;
    }
    const all = new Uint8Array(offset);
    let at = 0;
    for (const chunk of chunks) {
      all.set(chunk, at);
      at += chunk.length;
    }
    return new TextDecoder().decode(all);
  } finally {
    c.close(fd);
  }
}

/** The start of a mapping of memfd `name` of `size` bytes (read+execute, from offset 0), if there is one. */
function find(name: string, size: number): Deno.PointerObject | undefined {
  const suffix = ` /memfd:${name} (deleted)`;
  const maps = readMaps();
  for (let at = maps.indexOf(suffix); at >= 0; at = maps.indexOf(suffix, at + 1)) {
    const line = maps.slice(maps.lastIndexOf("\n", at) + 1, at);
    const [range, perms, offset] = line.split(" ");
    if (!perms.startsWith("r-x") || Number.parseInt(offset, 16) !== 0) continue;
    const [start, end] = range.split("-").map((h) => BigInt(`0x${h}`));
    // The name carries the SHA-256 of the bytes: only a mapping of this very image has it.
    if (end - start === BigInt(size)) return Deno.UnsafePointer.create(start)!;
  }
  return undefined;
}

/** Maps `image` from a new sealed memfd `name`, read+execute; undefined where the kernel refuses. */
function create(name: string, image: Uint8Array, size: number): Deno.PointerObject | undefined {
  const c = libc();
  const cname = encoder.encode(`${name}\0`);
  let fd = c.memfd_create(cname, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
  if (fd < 0 && lastErrno() === EINVAL) fd = c.memfd_create(cname, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return undefined;
  // The fd lives only within this synchronous function, which no Worker termination can interrupt.
  try {
    if (c.ftruncate(fd, BigInt(size)) < 0) return undefined;
    for (let done = 0; done < image.length;) {
      const n = Number(c.pwrite_buf(fd, image.subarray(done), BigInt(image.length - done), BigInt(done)));
      if (n <= 0) return undefined;
      done += n;
    }
    if (c.fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
      return undefined;
    }
    const p = c.mmap(null, BigInt(size), PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0n);
    if (p === null || BigInt(Deno.UnsafePointer.value(p)) === MAP_FAILED) return undefined;
    return p;
  } finally {
    c.close(fd);
  }
}

/** This thread's own copy of `image` in anonymous memory, read+execute (never writable and executable). */
function fallback(image: Uint8Array, size: number): Deno.PointerObject {
  const c = libc();
  const p = c.mmap(null, BigInt(size), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
  if (p === null || BigInt(Deno.UnsafePointer.value(p)) === MAP_FAILED) {
    throw new ErrnoError("mmap", lastErrno());
  }
  const view = Deno.UnsafePointerView.getArrayBuffer(p, image.length);
  new Uint8Array(view).set(image);
  view.transfer(0);
  if (c.mprotect(p, BigInt(size), PROT_READ | PROT_EXEC) !== 0) {
    const errno = lastErrno();
    c.munmap(p, BigInt(size));
    throw new ErrnoError("mprotect(PROT_EXEC)", errno);
  }
  // Not tracked by the reaper and never unmapped: threads may run it until the process ends.
  return p;
}

const mapped = new Map<string, SharedCode>();

/**
 * Machine code carried as base64, with the SHA-256 of its bytes (hex, at least 32 digits) and a label for
 * the memfd's name.
 *
 * @example
 * ```ts
 * import type { CodeImage } from "./shared_code.ts";
 * const ret: CodeImage = { label: "ret", sha256: "a".repeat(64), base64: "ww==" };
 * console.log(ret.label);
 * ```
 */
export interface CodeImage {
  /** A short name (letters, digits, dashes). */
  readonly label: string;
  /** SHA-256 of the bytes, hex. */
  readonly sha256: string;
  /** The bytes. */
  readonly base64: string;
}

/**
 * The process's mapping of `image`, found or made on first use in this thread (see the module comment).
 * Finding it costs a read of `/proc/self/maps` (~0.3 ms), once per Worker.
 *
 * @throws {ErrnoError} when not even this thread's own copy can be mapped.
 *
 * @example
 * ```ts ignore
 * import { sharedCode } from "./shared_code.ts";
 * const code = sharedCode({ label: "ret", sha256, base64: "ww==" });
 * ```
 */
export function sharedCode(image: CodeImage): SharedCode {
  const name = `snapvm-code-${image.label}-${image.sha256.slice(0, 32)}`;
  let code = mapped.get(name);
  if (code !== undefined) return code;
  const padding = image.base64.endsWith("==") ? 2 : image.base64.endsWith("=") ? 1 : 0;
  const length = (image.base64.length / 4) * 3 - padding;
  const size = Math.ceil(length / PAGE_SIZE) * PAGE_SIZE;
  let base = find(name, size);
  if (base === undefined) {
    const bytes = Uint8Array.fromBase64(image.base64);
    base = create(name, bytes, size);
    code = base !== undefined ? { base, shared: true } : { base: fallback(bytes, size), shared: false };
  } else {
    code = { base, shared: true };
  }
  mapped.set(name, code);
  return code;
}
