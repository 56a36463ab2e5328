/**
 * The reaper: what a Worker's native resources fall back on when the Worker ends without closing them.
 *
 * A Worker that is terminated, or that ends with sandboxes or snapshots still open, runs no `close()` and no
 * FinalizationRegistry callback: its isolate is torn down and nothing of it runs again. So every fd, mapping,
 * POSIX timer and run thread snapvm makes on a Worker's thread is listed, right after it is made, in a table
 * that a plain thread of the Worker's own, the reaper, shares with it (`snapvm_reaper` in
 * `vm/kvm/_run_thread.c`). The reaper blocks until the Worker's thread has gone (a pidfd of the thread,
 * `PIDFD_THREAD`, Linux 6.9; `tgkill(pid, tid, 0)` every {@linkcode REAPER_POLL_MS} before that) and then
 * releases everything the table still lists, its own table last, and ends. A Worker that closed everything
 * leaves an empty table: its reaper just ends too.
 *
 * Rules for the code that owns a resource: track it right after it is made, untrack it right before it is
 * released. A Worker that dies in between leaks at most that one resource, and the reaper never releases a
 * number (an fd, an address) that another thread may have been given since. The table holds at most
 * {@linkcode MAX_OWNED} entries; past that, the resource being tracked is released and a
 * `ResourceExhaustedError` thrown.
 *
 * The main thread has no reaper (its end is the process's): there every function here returns at once.
 * The reaper starts with the first tracked resource of a Worker, about 0.1 ms once per Worker.
 *
 * @module
 */
import { ResourceExhaustedError } from "../../errors.ts";
import { RUN_THREAD_IMAGE } from "../../vm/kvm/_run_thread_image.ts";
import { ErrnoError, errnoName, lastErrno } from "./errno.ts";

const ENOSYS = 38;
import {
  libc,
  MAP_ANONYMOUS,
  MAP_FAILED,
  MAP_NORESERVE,
  MAP_PRIVATE,
  PAGE_SIZE,
  PROT_READ,
  PROT_WRITE,
} from "./libc.ts";
import { pthreads } from "./pthreads.ts";
import { sharedCode } from "./shared_code.ts";

/**
 * True in a Worker. Its end cannot be observed (Deno fires no `unload` there, and runs no finalizer), so a
 * Worker's native resources are tracked by its reaper; the main thread's end is the process's.
 *
 * @example
 * ```ts
 * import { IN_WORKER } from "./reaper.ts";
 * console.log(IN_WORKER); // false on the main thread
 * ```
 */
export const IN_WORKER: boolean = typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !==
  "undefined";

/**
 * The reaper's table header, byte offsets (`struct reaper` in `_run_thread.c` asserts them): the owner
 * thread, its pidfd (-1: none), the process id, the fallback polling interval, the grace period (see
 * `reap()` there), the high-water mark of entries in use, the table's mapped size, the addresses of
 * `pthread_join` and `pthread_detach`, the reaper's own `pthread_t`, its name, and the first entry.
 *
 * @example
 * ```ts
 * import { REAPER } from "./reaper.ts";
 * console.log(REAPER.ENTRIES); // 128
 * ```
 */
export const REAPER = {
  OWNER_TID: 0,
  OWNER_PIDFD: 4,
  PID: 8,
  POLL_MS: 12,
  GRACE_MS: 16,
  USED: 20,
  SIZE: 24,
  JOIN: 32,
  DETACH: 40,
  PTHREAD: 48,
  NAME: 64,
  ENTRIES: 128,
} as const;

/**
 * One table entry (`struct owned`), byte offsets and size: its kind ({@linkcode OWNED_KIND}), an fd, and
 * two 64-bit words (a mapping's address and size, a timer's kernel id, a run thread's control block and
 * `pthread_t`).
 *
 * @example
 * ```ts
 * import { OWNED } from "./reaper.ts";
 * console.log(OWNED.SIZE); // 24
 * ```
 */
export const OWNED = { KIND: 0, FD: 4, A: 8, B: 16, SIZE: 24 } as const;

/**
 * Entry kinds, as `_run_thread.c` defines them (`OWNED_*`).
 *
 * @example
 * ```ts
 * import { OWNED_KIND } from "./reaper.ts";
 * console.log(OWNED_KIND.MAPPING); // 2
 * ```
 */
export const OWNED_KIND = { FREE: 0, FD: 1, MAPPING: 2, TIMER: 3, RUN_THREAD: 4 } as const;

/**
 * Most entries one Worker's table holds (1.5 MiB of address space, touched only as far as used): more than
 * the kernel's default limit of mappings for the whole process (`vm.max_map_count`, 65530).
 *
 * @example
 * ```ts
 * import { MAX_OWNED } from "./reaper.ts";
 * console.log(MAX_OWNED); // 65536
 * ```
 */
export const MAX_OWNED = 65536;

/**
 * How often a reaper looks whether its Worker's thread still exists where the kernel has no pidfds of
 * threads (before Linux 6.9), in ms.
 *
 * @example
 * ```ts
 * import { REAPER_POLL_MS } from "./reaper.ts";
 * console.log(REAPER_POLL_MS); // 100
 * ```
 */
export const REAPER_POLL_MS = 100;

/**
 * How long a reaper waits, after stopping a Worker's run threads, before it unmaps anything (ms): a hot wait
 * the Worker issued just before it died may still be about to start on its blocking pool (see `reap()` in
 * `_run_thread.c`).
 *
 * @example
 * ```ts
 * import { REAPER_GRACE_MS } from "./reaper.ts";
 * console.log(REAPER_GRACE_MS); // 100
 * ```
 */
export const REAPER_GRACE_MS = 100;

/**
 * The name reaper threads carry (`/proc/<pid>/task/<tid>/comm`).
 *
 * @example
 * ```ts
 * import { REAPER_NAME } from "./reaper.ts";
 * console.log(REAPER_NAME); // "snapvm-reaper"
 * ```
 */
export const REAPER_NAME = "snapvm-reaper";

const TABLE_BYTES = Math.ceil((REAPER.ENTRIES + MAX_OWNED * OWNED.SIZE) / PAGE_SIZE) * PAGE_SIZE;
const SYS_PIDFD_OPEN = 434n;
/** `PIDFD_THREAD` (`O_EXCL`): a pidfd of one thread, readable once it exits (Linux 6.9). */
const PIDFD_THREAD = 0o200n;

/**
 * The process's mapping of `_run_thread.c`'s machine code (see `shared_code.ts`): an entry point by name.
 *
 * @example
 * ```ts ignore
 * import { runThreadEntry } from "./reaper.ts";
 * console.log(runThreadEntry("thread"));
 * ```
 */
export function runThreadEntry(name: keyof typeof RUN_THREAD_IMAGE.entries): Deno.PointerObject {
  code ??= sharedCode(RUN_THREAD_IMAGE).base;
  return Deno.UnsafePointer.offset(code, RUN_THREAD_IMAGE.entries[name]) as Deno.PointerObject;
}

let code: Deno.PointerObject | undefined;

/** This Worker's table, once its reaper runs. */
let table: DataView | undefined;
/** Entries `[0, used)` have been handed out; `free` lists those given back. */
let used = 0;
const free: number[] = [];
const fds = new Map<number, number>();
const mappings = new Map<bigint, number>();
const timers = new Map<bigint, number>();
const threads = new Map<bigint, number>();

/** Maps the table and starts the reaper (it detaches itself from nobody: it is detached here). */
function start(): DataView {
  const c = libc();
  const p = c.mmap(
    null,
    BigInt(TABLE_BYTES),
    PROT_READ | PROT_WRITE,
    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
    -1,
    0n,
  );
  if (p === null || BigInt(Deno.UnsafePointer.value(p)) === MAP_FAILED) {
    throw exhausted("mmap(reaper table)", lastErrno());
  }
  // Never unmapped by this thread: the reaper unmaps it after the Worker has gone.
  const view = new DataView(Deno.UnsafePointerView.getArrayBuffer(p, TABLE_BYTES));
  const tid = c.gettid();
  // -1 before Linux 6.9: the reaper then polls with tgkill.
  const pidfd = Number(c.syscall3(SYS_PIDFD_OPEN, BigInt(tid), PIDFD_THREAD));
  view.setInt32(REAPER.OWNER_TID, tid, true);
  view.setInt32(REAPER.OWNER_PIDFD, pidfd < 0 ? -1 : pidfd, true);
  view.setInt32(REAPER.PID, c.getpid(), true);
  view.setUint32(REAPER.POLL_MS, REAPER_POLL_MS, true);
  view.setUint32(REAPER.GRACE_MS, REAPER_GRACE_MS, true);
  view.setBigUint64(REAPER.SIZE, BigInt(TABLE_BYTES), true);
  const t = pthreads();
  if (t === null) throw new ErrnoError("dlopen(pthread_create)", ENOSYS);
  view.setBigUint64(REAPER.JOIN, BigInt(Deno.UnsafePointer.value(t.pthreadJoinAddress)), true);
  view.setBigUint64(REAPER.DETACH, BigInt(Deno.UnsafePointer.value(t.pthreadDetachAddress)), true);
  new Uint8Array(view.buffer).set(new TextEncoder().encode(REAPER_NAME), REAPER.NAME);
  const id = new BigUint64Array(1);
  const rc = t.pthread_create(id, null, runThreadEntry("reaper"), p);
  if (rc !== 0) {
    if (pidfd >= 0) c.close(pidfd);
    view.buffer.transfer(0);
    c.munmap(p, BigInt(TABLE_BYTES));
    throw exhausted("pthread_create(reaper)", rc);
  }
  // Nobody joins it: it detaches itself when it ends, once this thread has gone (this is written long before).
  view.setBigUint64(REAPER.PTHREAD, id[0], true);
  return view;
}

/** The error for a failed call that set up the reaper. */
function exhausted(call: string, errno: number): Error {
  const name = errnoName(errno);
  if (name === "EAGAIN" || name === "ENOMEM" || name === "EMFILE") {
    return new ResourceExhaustedError(
      name === "EMFILE" ? "file descriptors" : "threads or memory",
      `${call} failed (${name}) while starting a Worker's reaper; close sandboxes and snapshots you no ` +
        "longer need, or end Workers",
      { cause: new ErrnoError(call, errno) },
    );
  }
  return new ErrnoError(call, errno);
}

/** Writes a new entry and returns its index; throws when the table is full (the caller releases). */
function add(kind: number, fd: number, a: bigint, b: bigint): number {
  const view = table ??= start();
  const slot = free.pop() ?? (used < MAX_OWNED ? used++ : -1);
  if (slot < 0) {
    throw new ResourceExhaustedError(
      "native resources of one Worker",
      `a Worker holds ${MAX_OWNED} fds, mappings and timers at once; close sandboxes and snapshots you no ` +
        "longer need",
    );
  }
  const at = REAPER.ENTRIES + slot * OWNED.SIZE;
  view.setInt32(at + OWNED.FD, fd, true);
  view.setBigUint64(at + OWNED.A, a, true);
  view.setBigUint64(at + OWNED.B, b, true);
  view.setUint32(at + OWNED.KIND, kind, true);
  view.setUint32(REAPER.USED, used, true);
  return slot;
}

function remove(slot: number): void {
  table!.setUint32(REAPER.ENTRIES + slot * OWNED.SIZE + OWNED.KIND, OWNED_KIND.FREE, true);
  free.push(slot);
}

/**
 * Tracks an fd this thread just opened (in a Worker; nothing on the main thread). Returns it. When the
 * table is full, or the reaper cannot start, closes it and throws.
 *
 * @example
 * ```ts ignore
 * import { trackFd, untrackFd } from "./reaper.ts";
 * const fd = trackFd(libc().open(path, O_RDONLY, 0));
 * untrackFd(fd);
 * libc().close(fd);
 * ```
 */
export function trackFd(fd: number): number {
  if (!IN_WORKER || fd < 0) return fd;
  try {
    fds.set(fd, add(OWNED_KIND.FD, fd, 0n, 0n));
  } catch (e) {
    libc().close(fd);
    throw e;
  }
  return fd;
}

/**
 * Stops tracking an fd that is about to be closed. Does nothing for an fd that is not tracked.
 *
 * @example
 * ```ts ignore
 * import { untrackFd } from "./reaper.ts";
 * untrackFd(fd);
 * libc().close(fd);
 * ```
 */
export function untrackFd(fd: number): void {
  if (!IN_WORKER) return;
  const slot = fds.get(fd);
  if (slot === undefined) return;
  fds.delete(fd);
  remove(slot);
}

/**
 * Tracks a mapping this thread just made (`size` bytes at `pointer`; an `mmap` with an address of its own,
 * not one placed inside another mapping). Returns the pointer. When the table is full, or the reaper
 * cannot start, unmaps it and throws.
 *
 * @example
 * ```ts ignore
 * import { trackMapping } from "./reaper.ts";
 * const p = trackMapping(libc().mmap(null, 4096n, 3, 0x22, -1, 0n)!, 4096);
 * ```
 */
export function trackMapping(pointer: Deno.PointerObject, size: number): Deno.PointerObject {
  if (!IN_WORKER) return pointer;
  const address = BigInt(Deno.UnsafePointer.value(pointer));
  try {
    mappings.set(address, add(OWNED_KIND.MAPPING, -1, address, BigInt(size)));
  } catch (e) {
    libc().munmap(pointer, BigInt(size));
    throw e;
  }
  return pointer;
}

/**
 * Stops tracking the mapping that starts at `pointer`, which is about to be unmapped (all of it).
 *
 * @example
 * ```ts ignore
 * import { untrackMapping } from "./reaper.ts";
 * untrackMapping(p);
 * libc().munmap(p, 4096n);
 * ```
 */
export function untrackMapping(pointer: Deno.PointerObject): void {
  if (!IN_WORKER) return;
  const address = BigInt(Deno.UnsafePointer.value(pointer));
  const slot = mappings.get(address);
  if (slot === undefined) return;
  mappings.delete(address);
  remove(slot);
}

/**
 * Tracks a POSIX timer this thread just created (its `timer_t`, which glibc makes the kernel's timer id
 * for every timer that does not notify through a new thread). When the table is full, or the reaper cannot
 * start, deletes it and throws.
 *
 * @example
 * ```ts ignore
 * import { trackTimer } from "./reaper.ts";
 * trackTimer(id);
 * ```
 */
export function trackTimer(id: bigint): bigint {
  if (!IN_WORKER) return id;
  try {
    timers.set(id, add(OWNED_KIND.TIMER, -1, id, 0n));
  } catch (e) {
    libc().timer_delete(id);
    throw e;
  }
  return id;
}

/**
 * Stops tracking a POSIX timer that is about to be deleted.
 *
 * @example
 * ```ts ignore
 * import { untrackTimer } from "./reaper.ts";
 * untrackTimer(id);
 * libc().timer_delete(id);
 * ```
 */
export function untrackTimer(id: bigint): void {
  if (!IN_WORKER) return;
  const slot = timers.get(id);
  if (slot === undefined) return;
  timers.delete(id);
  remove(slot);
}

/**
 * Tracks a run thread this thread just started (its control block and `pthread_t`): should the Worker end
 * first, the reaper stops and joins it before it releases anything else. Throws when the table is full, or
 * the reaper cannot start (the caller stops the thread).
 *
 * @example
 * ```ts ignore
 * import { trackRunThread } from "./reaper.ts";
 * trackRunThread(ctrl.address, pthread);
 * ```
 */
export function trackRunThread(ctrl: bigint, pthread: bigint): void {
  if (!IN_WORKER) return;
  threads.set(ctrl, add(OWNED_KIND.RUN_THREAD, -1, ctrl, pthread));
}

/**
 * Stops tracking a run thread, before it is told to stop (from then on only its owner may stop and join it).
 *
 * @example
 * ```ts ignore
 * import { untrackRunThread } from "./reaper.ts";
 * untrackRunThread(ctrl.address);
 * ```
 */
export function untrackRunThread(ctrl: bigint): void {
  if (!IN_WORKER) return;
  const slot = threads.get(ctrl);
  if (slot === undefined) return;
  threads.delete(ctrl);
  remove(slot);
}

/**
 * What this thread's table lists now (empty on the main thread): for tests and diagnostics.
 *
 * @example
 * ```ts
 * import { trackedResources } from "./reaper.ts";
 * console.log(trackedResources().fds.length); // 0 on the main thread
 * ```
 */
export function trackedResources(): {
  fds: number[];
  mappings: { address: bigint; size: number }[];
  timers: bigint[];
  runThreads: bigint[];
} {
  const size = (slot: number) =>
    Number(table!.getBigUint64(REAPER.ENTRIES + slot * OWNED.SIZE + OWNED.B, true));
  return {
    fds: [...fds.keys()],
    mappings: [...mappings].map(([address, slot]) => ({ address, size: size(slot) })),
    timers: [...timers.keys()],
    runThreads: [...threads.keys()],
  };
}
