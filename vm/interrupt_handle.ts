/**
 * Interrupt handles: stop a running guest call from any thread.
 *
 * @module
 */
import { libc } from "../ffi/linux/libc.ts";
import { SIGUSR2 } from "./kvm/signals.ts";

const STATE = 0, CALL_SEQ = 1, KILL_SEQ = 2;

/**
 * Stops a running guest call from any thread (a Worker, too): `kill()` ends the call in progress with
 * `ExecutionCanceledError` and poisons the sandbox. A kill when no call is running does nothing.
 *
 * To use it in a Worker, post the handle (it is structured-cloneable data) and rebuild it there with
 * `InterruptHandle.from(data)`.
 *
 * @example
 * ```ts
 * import { InterruptHandle } from "./interrupt_handle.ts";
 * // const handle = sbx.interruptHandle();
 * // worker.postMessage(handle);  // in the worker: InterruptHandle.from(e.data).kill()
 * ```
 */
export class InterruptHandle {
  /** Shared state: [running, call sequence, killed sequence]. */
  readonly shared: SharedArrayBuffer;
  /** Process id. */
  readonly pid: number;
  /** Kernel thread id of the thread that runs the sandbox. */
  readonly tid: number;

  /** Use `sbx.interruptHandle()` or `InterruptHandle.from()`. */
  constructor(shared: SharedArrayBuffer, pid: number, tid: number) {
    this.shared = shared;
    this.pid = pid;
    this.tid = tid;
  }

  /**
   * Rebuilds a handle from its structured clone (as received by a Worker).
   *
   * @example
   * ```ts
   * import { InterruptHandle } from "./interrupt_handle.ts";
   * // self.onmessage = (e) => InterruptHandle.from(e.data).kill();
   * ```
   */
  static from(data: { shared: SharedArrayBuffer; pid: number; tid: number }): InterruptHandle {
    if (!(data?.shared instanceof SharedArrayBuffer) || data.shared.byteLength < 12) {
      throw new TypeError("InterruptHandle.from() needs the data of an InterruptHandle");
    }
    return new InterruptHandle(data.shared, data.pid, data.tid);
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
    libc().tgkill(this.pid, this.tid, SIGUSR2);
    return true;
  }
}

/** The sandbox's side of an interrupt handle. */
export class CallState {
  /** Shared with every {@linkcode InterruptHandle} of the sandbox. */
  readonly shared: SharedArrayBuffer = new SharedArrayBuffer(12);
  readonly #a = new Int32Array(this.shared);

  /** Marks a call as running; returns its sequence number. */
  begin(): void {
    Atomics.add(this.#a, CALL_SEQ, 1);
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
}
