/**
 * errno handling: turns a failed libc call into an {@linkcode ErrnoError} that names the call.
 *
 * @module
 */
import { OsCallError } from "../../errors.ts";
import { libc } from "./libc.ts";

const NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  4: "EINTR",
  5: "EIO",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  22: "EINVAL",
  24: "EMFILE",
  25: "ENOTTY",
  28: "ENOSPC",
  32: "EPIPE",
  38: "ENOSYS",
  95: "EOPNOTSUPP",
  98: "EADDRINUSE",
  104: "ECONNRESET",
};

/** Symbolic name of an errno value, such as `"EINVAL"`, or `"errno N"` for unknown values. */
export function errnoName(errno: number): string {
  return NAMES[errno] ?? `errno ${errno}`;
}

/**
 * A libc or kernel call failed: an {@linkcode OsCallError} that also carries the raw `errno`.
 *
 * @example
 * ```ts
 * import { ErrnoError } from "./errno.ts";
 * const e = new ErrnoError("ioctl(KVM_CREATE_VM)", 12);
 * console.log(e.message); // "ioctl(KVM_CREATE_VM) failed: ENOMEM"
 * ```
 */
export class ErrnoError extends OsCallError {
  /** The raw errno value. */
  readonly errno: number;
  /** Builds the error from the call name and errno. */
  constructor(call: string, errno: number) {
    super(call, errnoName(errno));
    this.errno = errno;
  }
}

let errnoView: Deno.UnsafePointerView | undefined;

/**
 * The calling thread's errno. Read it right after the failing call, before any other FFI call.
 *
 * @example
 * ```ts
 * import { lastErrno } from "./errno.ts";
 * console.log(lastErrno());
 * ```
 */
export function lastErrno(): number {
  // __errno_location is per thread but fixed for a thread's lifetime, so one view per module instance
  // (modules are per Worker) is enough.
  if (errnoView === undefined) errnoView = new Deno.UnsafePointerView(libc().__errno_location()!);
  return errnoView.getInt32(0);
}

/**
 * Throws {@linkcode ErrnoError} when `result` is negative; returns it otherwise.
 *
 * @example
 * ```ts
 * import { check } from "./errno.ts";
 * import { libc } from "./libc.ts";
 * const pid = check("getpid", libc().getpid());
 * ```
 */
export function check(call: string, result: number): number {
  if (result < 0) throw new ErrnoError(call, lastErrno());
  return result;
}

/**
 * Calls `fn` again while it fails with `EINTR`, then {@linkcode check}s its result. For system calls a
 * signal can interrupt before they have done anything (`KVM_CREATE_VM` returns EINTR when a signal, a
 * profiler's SIGPROF for example, arrives while it sets up the VM's memory management).
 *
 * @example
 * ```ts
 * import { checkRetrying } from "./errno.ts";
 * import { libc } from "./libc.ts";
 * const pid = checkRetrying("getpid", () => libc().getpid());
 * ```
 */
export function checkRetrying(call: string, fn: () => number): number {
  for (;;) {
    const result = fn();
    if (result >= 0) return result;
    const errno = lastErrno();
    if (errno !== EINTR) throw new ErrnoError(call, errno);
  }
}

const EINTR = 4;
