/**
 * Interrupt handles: stop a running guest call from any thread of this process.
 *
 * @module
 */
import type { InterruptTarget } from "./backend/backend.ts";
import { backend } from "./backend/select.ts";

/**
 * The shared words: running (1) or idle (0), the call's sequence number, the sequence number of the last
 * killed call, and the kernel id of the thread that runs the call's vCPU (0: the handle's target's). The
 * first three are also read by the KVM run thread (`vm/kvm/_run_thread.c`), in this order.
 */
const STATE = 0, CALL_SEQ = 1, KILL_SEQ = 2, TID = 3;

/**
 * Stops a running guest call from any thread of this process (a Worker, too): `kill()` ends the call in
 * progress with `ExecutionCanceledError` and poisons the sandbox. A kill when no call is running does
 * nothing.
 *
 * To use it in a Worker, post the handle (it is structured-cloneable data) and rebuild it there with
 * `InterruptHandle.from(data)`. A handle only ever reaches threads of the process that made it.
 *
 * @example
 * ```ts
 * import { InterruptHandle } from "./interrupt_handle.ts";
 * // const handle = sbx.interruptHandle();
 * // worker.postMessage(handle);  // in the worker: InterruptHandle.from(e.data).kill()
 * console.log(typeof InterruptHandle.from);
 * ```
 */
export class InterruptHandle {
  /** Shared state: [running, call sequence, killed sequence]. */
  readonly shared: SharedArrayBuffer;
  /** What the backend needs to interrupt the VM (for KVM: the thread that runs it). */
  readonly target: InterruptTarget;

  /** Use `sbx.interruptHandle()` or `InterruptHandle.from()`. */
  constructor(shared: SharedArrayBuffer, target: InterruptTarget) {
    this.shared = shared;
    this.target = target;
  }

  /**
   * Rebuilds a handle from its structured clone (as received by a Worker). Throws a TypeError for anything
   * that is not the data of an interrupt handle.
   *
   * @example
   * ```ts
   * import { InterruptHandle } from "./interrupt_handle.ts";
   * // self.onmessage = (e) => InterruptHandle.from(e.data).kill();
   * try {
   *   InterruptHandle.from({} as never);
   * } catch (e) {
   *   console.log((e as Error).name); // TypeError
   * }
   * ```
   */
  static from(data: { shared: SharedArrayBuffer; target: InterruptTarget }): InterruptHandle {
    const t = data?.target;
    const valid = data?.shared instanceof SharedArrayBuffer && data.shared.byteLength >= 12 &&
      typeof t === "object" && t !== null &&
      ((t.backend === "kvm" && Number.isInteger(t.tid) && (t.tid as number) > 0) ||
        (t.backend === "whp" && typeof t.partition === "bigint" && t.control instanceof SharedArrayBuffer));
    if (!valid) throw new TypeError("InterruptHandle.from() needs the data of an InterruptHandle");
    return new InterruptHandle(data.shared, { ...t });
  }

  /**
   * Stops the call in progress. Returns true if a call was running (it will end with
   * `ExecutionCanceledError` within milliseconds), false if the sandbox was idle.
   *
   * @example
   * ```ts
   * // handle.kill();
   * ```
   */
  kill(): boolean {
    const a = new Int32Array(this.shared);
    if (Atomics.load(a, STATE) !== 1) return false;
    Atomics.store(a, KILL_SEQ, Atomics.load(a, CALL_SEQ));
    // A call may run on another thread than the one the handle was made on (`callAsync`, hot sandboxes).
    const tid = a.length > TID ? Atomics.load(a, TID) : 0;
    backend().interrupt(tid > 0 && this.target.backend === "kvm" ? { ...this.target, tid } : this.target);
    // An asynchronous call that is waiting for a host function's Promise learns of the kill here.
    Atomics.notify(a, KILL_SEQ);
    return true;
  }
}

/** The sandbox's side of an interrupt handle. */
export class CallState {
  /** Shared with every {@linkcode InterruptHandle} of the sandbox. */
  readonly shared: SharedArrayBuffer = new SharedArrayBuffer(16);
  readonly #a = new Int32Array(this.shared);

  /** The shared words (see `STATE`, `CALL_SEQ`, `KILL_SEQ` above), for a run thread to read. */
  get words(): Int32Array {
    return this.#a;
  }

  /** Marks a call as running; `tid`: the thread that runs it, when not the handle's target. */
  begin(tid = 0): void {
    Atomics.add(this.#a, CALL_SEQ, 1);
    Atomics.store(this.#a, TID, tid);
    Atomics.store(this.#a, STATE, 1);
  }

  /** Marks the sandbox idle. */
  end(): void {
    Atomics.store(this.#a, STATE, 0);
  }

  /** True if an interrupt handle killed the current call. */
  killed(): boolean {
    return Atomics.load(this.#a, KILL_SEQ) === Atomics.load(this.#a, CALL_SEQ) &&
      Atomics.load(this.#a, STATE) === 1;
  }

  /**
   * Resolves when an interrupt handle kills the current call (or at once if it was killed), with a way to
   * stop waiting. Used while an asynchronous call waits for a host function's Promise.
   */
  whenKilled(): { promise: Promise<void>; cancel(): void } {
    let stop = false;
    const promise = (async () => {
      while (!stop) {
        // Read the word before checking: a kill in between changes it, and the wait then returns at once.
        const seq = Atomics.load(this.#a, KILL_SEQ);
        if (this.killed()) return;
        const w = Atomics.waitAsync(this.#a, KILL_SEQ, seq);
        if (w.async) await w.value;
      }
    })();
    return {
      promise,
      cancel: () => {
        stop = true;
        Atomics.notify(this.#a, KILL_SEQ);
      },
    };
  }
}
