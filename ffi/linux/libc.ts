/**
 * Bindings to the few glibc functions snapvm needs, opened once per process (per Worker) on first use.
 *
 * Variadic `ioctl` is declared several times with fixed parameter lists (one per argument kind), which is
 * how Deno FFI calls variadic C functions. `"buffer"` parameters take a TypedArray directly, the cheapest way
 * to pass a struct. 64-bit integer parameters take `bigint` (numbers are slower and type-check badly).
 *
 * @module
 */

const SYMBOLS = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "u64"], result: "i32" },
  ioctl_buf: { name: "ioctl", parameters: ["i32", "u64", "buffer"], result: "i32" },
  ioctl_ptr: { name: "ioctl", parameters: ["i32", "u64", "pointer"], result: "i32" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  madvise: { parameters: ["pointer", "usize", "i32"], result: "i32" },
  mprotect: { parameters: ["pointer", "usize", "i32"], result: "i32" },
  memfd_create: { parameters: ["buffer", "u32"], result: "i32" },
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  pwrite: { parameters: ["i32", "pointer", "usize", "i64"], result: "isize" },
  pwrite_buf: { name: "pwrite", parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  pread_ptr: { name: "pread", parameters: ["i32", "pointer", "usize", "i64"], result: "isize" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  fstat: { parameters: ["i32", "buffer"], result: "i32" },
  // Addresses as bigints: a fast call that creates no pointer objects (~15 ns, against ~150 ns with two).
  memcpy: { parameters: ["usize", "usize", "usize"], result: "void" },
  memcmp: { parameters: ["pointer", "pointer", "usize"], result: "i32" },
  lseek: { parameters: ["i32", "i64", "i32"], result: "i64" },
  posix_fadvise: { parameters: ["i32", "i64", "i64", "i32"], result: "i32" },
  mincore: { parameters: ["pointer", "usize", "buffer"], result: "i32" },
  gettid: { parameters: [], result: "i32" },
  getpid: { parameters: [], result: "i32" },
  tgkill: { parameters: ["i32", "i32", "i32"], result: "i32" },
  pthread_sigmask: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  sigtimedwait: { parameters: ["buffer", "pointer", "buffer"], result: "i32" },
  timer_create: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  timer_settime: { parameters: ["usize", "i32", "buffer", "pointer"], result: "i32" },
  timer_delete: { parameters: ["usize"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  syscall_ptr: { name: "syscall", parameters: ["i64", "i64", "buffer"], result: "i64" },
  syscall3: { name: "syscall", parameters: ["i64", "i64", "u64"], result: "i64" },
  syscall_buf2: { name: "syscall", parameters: ["i64", "i64", "buffer", "buffer", "u64"], result: "i64" },
} as const;

/** The opened symbols; see {@linkcode libc}. */
export type LibcSymbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let lib: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;

/**
 * The glibc symbols, opened on first use. `Deno.dlopen` costs about 100 µs per symbol, so it runs once.
 *
 * @example
 * ```ts
 * import { libc } from "./libc.ts";
 * console.log(libc().getpid());
 * ```
 */
export function libc(): LibcSymbols {
  if (lib === undefined) lib = Deno.dlopen("libc.so.6", SYMBOLS);
  return lib.symbols;
}

/** `MAP_FAILED` as returned through FFI: a pointer whose value is all ones, not `null`. */
export const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

/** mmap/mprotect protection bits (`<sys/mman.h>`). */
export const PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4;
/** The page size on x86-64 (Linux and Windows). */
export const PAGE_SIZE = 4096;
/** mmap flags. */
export const MAP_SHARED = 0x01,
  MAP_PRIVATE = 0x02,
  MAP_FIXED = 0x10,
  MAP_ANONYMOUS = 0x20,
  MAP_NORESERVE = 0x4000;
/** madvise advice values. */
export const MADV_RANDOM = 1,
  MADV_WILLNEED = 3,
  MADV_DONTNEED = 4,
  MADV_HUGEPAGE = 14,
  MADV_POPULATE_READ = 22,
  MADV_POPULATE_WRITE = 23;
/** lseek(2) whence values that find data and holes in sparse files. */
export const SEEK_DATA = 3, SEEK_HOLE = 4;
/** posix_fadvise(2) advice values. */
export const POSIX_FADV_RANDOM = 1, POSIX_FADV_WILLNEED = 3, POSIX_FADV_DONTNEED = 4;
/** open(2) flags. */
export const O_RDONLY = 0, O_RDWR = 2, O_NONBLOCK = 0x800, O_CLOEXEC = 0x80000;
/** fcntl(2) commands for the file status flags (O_NONBLOCK). */
export const F_GETFL = 3, F_SETFL = 4;
/**
 * `cachestat(2)` (Linux 6.5): `cachestat(fd, struct cachestat_range { u64 off, len } *, struct cachestat
 * { u64 nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted } *, 0)`; ENOSYS before 6.5.
 */
export const SYS_CACHESTAT = 451n;
/**
 * memfd_create(2) flags and fcntl(2) sealing. `MFD_EXEC` (Linux 6.3): an executable memfd even where
 * `vm.memfd_noexec=1` makes them not executable by default; older kernels refuse the flag with EINVAL.
 */
export const MFD_CLOEXEC = 1,
  MFD_ALLOW_SEALING = 2,
  MFD_EXEC = 0x10,
  F_ADD_SEALS = 1033,
  F_SEAL_SEAL = 1,
  F_SEAL_SHRINK = 2,
  F_SEAL_GROW = 4,
  F_SEAL_WRITE = 8;

/**
 * Byte offsets in glibc's x86-64 `struct stat` (144 B), as `fstat` fills it: `st_dev` u64 @0, `st_ino` @8,
 * `st_mode` u32 @24, `st_size` i64 @48, `st_mtim` {sec @88, nsec @96}.
 */
export const STAT = {
  SIZE: 144,
  DEV: 0,
  INO: 8,
  MODE: 24,
  SIZE_FIELD: 48,
  MTIME_SEC: 88,
  MTIME_NSEC: 96,
} as const;
