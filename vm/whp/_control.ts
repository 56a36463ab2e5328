/**
 * The run/cancel/delete handshake of one WHP virtual processor, in a SharedArrayBuffer so that any thread
 * (the watchdog Worker, a Worker holding an interrupt target) can stop a run without ever calling
 * `WHvCancelRunVirtualProcessor` on a deleted partition, whose handle value Windows may already have given
 * to another object. It is the Atomics equivalent of Hyperlight's read/write lock around cancellation:
 *
 * - a canceller (reader) increments READERS, sets CANCEL, and calls the hypervisor only if DELETED is clear
 *   and RUNNING is set, then decrements READERS;
 * - the owner sets DELETED, waits until READERS is 0, and only then deletes the partition.
 *
 * Atomics are sequentially consistent, so either the canceller sees DELETED, or the owner sees the
 * canceller in READERS and waits for it. CANCEL also makes the owner's next run return `interrupted`
 * without entering the guest (`enter()` returns false), so a cancel that arrives between two runs (in a
 * host function) is never lost. Functions here that a Worker runs are written to survive
 * `Function.prototype.toString()`: they reference nothing but their parameters and {@linkcode CONTROL}.
 *
 * @module
 */

/**
 * Word indices and bits of the control block (Int32Array).
 *
 * @example
 * ```ts
 * import { CONTROL } from "./_control.ts";
 * console.log(CONTROL.WORDS); // 4
 * ```
 */
export const CONTROL = {
  /** Bit set: RUNNING, CANCEL, DELETED. */
  STATE: 0,
  /** Cancellers inside their critical section. */
  READERS: 1,
  /** How many times `WHvCancelRunVirtualProcessor` was called (diagnostics, tests). */
  KICKS: 2,
  WORDS: 4,
  RUNNING: 1,
  CANCEL: 2,
  DELETED: 4,
} as const;

/**
 * Asks the run of the VM whose control block is `state` to stop: records the request and, while the VM is
 * running and not deleted, calls `kick` (which calls `WHvCancelRunVirtualProcessor`). Returns false when
 * the VM is deleted.
 *
 * @example
 * ```ts
 * import { CONTROL, requestCancel } from "./_control.ts";
 * const state = new Int32Array(new SharedArrayBuffer(CONTROL.WORDS * 4));
 * console.log(requestCancel(state, () => {})); // true
 * ```
 */
export function requestCancel(state: Int32Array, kick: () => void): boolean {
  Atomics.add(state, CONTROL.READERS, 1);
  try {
    const before = Atomics.or(state, CONTROL.STATE, CONTROL.CANCEL);
    if ((before & CONTROL.DELETED) !== 0) return false;
    if ((Atomics.load(state, CONTROL.STATE) & CONTROL.RUNNING) !== 0) {
      Atomics.add(state, CONTROL.KICKS, 1);
      kick();
    }
    return true;
  } finally {
    Atomics.sub(state, CONTROL.READERS, 1);
    Atomics.notify(state, CONTROL.READERS);
  }
}

/**
 * The owner's side of a control block.
 *
 * @example
 * ```ts
 * import { VmControl } from "./_control.ts";
 * const c = new VmControl();
 * if (c.enter()) c.leave();
 * c.retire();
 * ```
 */
export class VmControl {
  /** Shared with cancellers (structured-cloneable). */
  readonly shared: SharedArrayBuffer = new SharedArrayBuffer(CONTROL.WORDS * 4);
  readonly #a = new Int32Array(this.shared);

  /**
   * Marks the VM running. Returns false, and leaves it not running, when a cancel is pending: the caller
   * then reports `interrupted` without entering the guest.
   */
  enter(): boolean {
    Atomics.or(this.#a, CONTROL.STATE, CONTROL.RUNNING);
    if ((Atomics.load(this.#a, CONTROL.STATE) & CONTROL.CANCEL) !== 0) {
      this.leave();
      return false;
    }
    return true;
  }

  /** Marks the VM not running. */
  leave(): void {
    Atomics.and(this.#a, CONTROL.STATE, ~CONTROL.RUNNING);
  }

  /** True while a cancel request is pending. */
  get cancelRequested(): boolean {
    return (Atomics.load(this.#a, CONTROL.STATE) & CONTROL.CANCEL) !== 0;
  }

  /** Consumes a pending cancel request. */
  acknowledge(): void {
    Atomics.and(this.#a, CONTROL.STATE, ~CONTROL.CANCEL);
  }

  /** True once {@linkcode retire} ran. */
  get retired(): boolean {
    return (Atomics.load(this.#a, CONTROL.STATE) & CONTROL.DELETED) !== 0;
  }

  /** Calls of the cancel function so far. */
  get kicks(): number {
    return Atomics.load(this.#a, CONTROL.KICKS);
  }

  /**
   * Refuses every later cancel and waits until cancellers already inside have left; afterwards deleting
   * the partition is safe. A canceller holds the block for one FFI call, so the wait is microseconds.
   */
  retire(): void {
    Atomics.or(this.#a, CONTROL.STATE, CONTROL.DELETED);
    for (;;) {
      const n = Atomics.load(this.#a, CONTROL.READERS);
      if (n === 0) return;
      Atomics.wait(this.#a, CONTROL.READERS, n, 1);
    }
  }
}
