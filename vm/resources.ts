/**
 * Turns an operating-system failure that means "the machine ran out of something" into a
 * {@linkcode ResourceExhaustedError} that says what ran out and what to do; anything else passes through.
 *
 * @module
 */
import { OsCallError, ResourceExhaustedError } from "../errors.ts";

const EXHAUSTED: Record<string, [resource: string, hint: string]> = {
  EMFILE: [
    "file descriptors",
    "each sandbox holds two and each snapshot one: close the ones you no longer need, or raise the limit " +
    "(ulimit -n)",
  ],
  ENFILE: ["file descriptors (system-wide)", "close sandboxes and snapshots, or raise fs.file-max"],
  ENOMEM: [
    "memory",
    "close sandboxes and snapshots you no longer need, lower heapSize, or raise the process's memory limit",
  ],
  ENOSPC: ["memory for in-memory snapshots", "close snapshots you no longer need (they live in tmpfs)"],
  E_OUTOFMEMORY: ["memory", "close sandboxes and snapshots you no longer need"],
  ERROR_NOT_ENOUGH_MEMORY: ["memory", "close sandboxes and snapshots you no longer need"],
  ERROR_COMMITMENT_LIMIT: [
    "commit charge (page file)",
    "close sandboxes you no longer need, or enlarge the page file",
  ],
  ERROR_TOO_MANY_OPEN_FILES: ["handles", "close sandboxes and snapshots you no longer need"],
};

/**
 * `e`, or a {@linkcode ResourceExhaustedError} with `e` as its cause when `e` is an OS call that ran out of
 * file descriptors, memory or the like.
 *
 * @example
 * ```ts
 * import { OsCallError } from "../errors.ts";
 * import { exhaustion } from "./resources.ts";
 * console.log(exhaustion(new OsCallError("ioctl(KVM_CREATE_VCPU)", "EMFILE")).name); // ResourceExhaustedError
 * ```
 */
export function exhaustion(e: unknown): unknown {
  if (!(e instanceof OsCallError)) return e;
  const what = EXHAUSTED[e.code];
  return what === undefined
    ? e
    : new ResourceExhaustedError(what[0], `${e.call} failed (${e.code}); ${what[1]}`, {
      cause: e,
    });
}
