/**
 * Signals that stop a running `KVM_RUN` in this thread: the per-call time limit and interrupt handles.
 *
 * SIGUSR2 (never SIGUSR1: after ~150 deliveries Deno opens an inspector port) is blocked in the thread
 * that runs vCPUs, and unblocked only inside `KVM_RUN` through `KVM_SET_SIGNAL_MASK`. So a signal sent while
 * the thread is outside `KVM_RUN` stays pending and makes the next `KVM_RUN` return EINTR at once: no kick
 * is ever lost, and no other thread writes into `kvm_run`. After EINTR the pending signal is consumed with
 * `sigtimedwait`, without running any handler. A Deno listener is still installed, because an unhandled
 * SIGUSR2 that arrives while it is unblocked would terminate the process.
 *
 * The call path pays nothing for this unless `maxExecutionTimeMs` is set, which costs two
 * `timer_settime` calls per call (a POSIX timer that signals this thread).
 *
 * @module
 */
import { check } from "../../ffi/linux/errno.ts";
import { libc } from "../../ffi/linux/libc.ts";
import { IN_WORKER, trackTimer, untrackTimer } from "../../ffi/linux/reaper.ts";

export { IN_WORKER };

/**
 * While a synchronous call without any time limit runs in a Worker, its thread still leaves `KVM_RUN` this
 * often (ms), at the cost of one extra exit per interval, so that it is never blocked in the guest for
 * longer. (Deno cannot terminate a Worker that runs synchronous code at all, denoland/deno#35657, this
 * included: stop such a call with an interrupt handle; a pending `terminate()` then ends the Worker, and
 * its reaper releases what it left open. Run threads need no heartbeat: the reaper stops them.)
 */
export const HEARTBEAT_MS: number = IN_WORKER ? 100 : 0;

/** The signal that interrupts `KVM_RUN`. */
export const SIGUSR2 = 12;
const SIG_BLOCK = 0;
const CLOCK_MONOTONIC = 1;
const SIGEV_THREAD_ID = 4;

function sigsetWith(signal: number): Uint8Array {
  const set = new Uint8Array(128); // glibc sigset_t
  set[(signal - 1) >> 3] |= 1 << ((signal - 1) & 7);
  return set;
}

/** Signal state of the current thread (module instances are per Worker, so per thread). */
export class ThreadSignals {
  /** This thread's kernel id. */
  readonly tid: number;
  /** The process id. */
  readonly pid: number;
  /** The 8-byte kernel sigset to use inside `KVM_RUN` (this thread's mask without SIGUSR2). */
  readonly runMask: Uint8Array;
  readonly #usr2 = sigsetWith(SIGUSR2);
  readonly #zeroTimeout = new Uint8Array(16);
  readonly #timerSpec = new BigInt64Array(4);
  #timer: bigint | undefined;
  #armed = false;
  /** Effective deadlines of the calls running on this thread, outermost first. */
  #deadlines: number[] = [];

  private constructor() {
    const c = libc();
    try {
      Deno.addSignalListener("SIGUSR2", () => {});
    } catch {
      // Workers may not install listeners; the main thread's listener (or none yet) covers the process.
    }
    const old = new Uint8Array(128);
    check("pthread_sigmask", -c.pthread_sigmask(SIG_BLOCK, this.#usr2, old));
    this.runMask = old.slice(0, 8);
    this.runMask[(SIGUSR2 - 1) >> 3] &= ~(1 << ((SIGUSR2 - 1) & 7));
    this.tid = c.gettid();
    this.pid = c.getpid();
  }

  /** This thread's instance, set up on first use. */
  static get(): ThreadSignals {
    return (instance ??= new ThreadSignals());
  }

  /** Deletes this thread's timer, if it has one (the thread is done with VMs). */
  static shutdown(): void {
    instance?.close();
  }

  /** Consumes a pending SIGUSR2 of this thread, if any. */
  consume(): void {
    libc().sigtimedwait(this.#usr2, null, this.#zeroTimeout);
  }

  /**
   * Pushes a time limit of `ms` milliseconds (0: none of its own) and returns the effective deadline, in
   * `performance.now()` time: the earlier of its own and the enclosing call's. Limits nest because a host
   * function of one sandbox may call another sandbox on the same thread; the inner call must neither
   * outlive the outer call's limit nor cancel it. The timer is programmed for the innermost deadline, which
   * is the earliest; a call with no limit anywhere costs no system call.
   */
  arm(ms: number): number {
    const outer = this.#deadlines.length > 0 ? this.#deadlines[this.#deadlines.length - 1] : Infinity;
    const deadline = Math.min(ms > 0 ? performance.now() + ms : Infinity, outer);
    this.#deadlines.push(deadline);
    if (deadline !== outer || (this.#deadlines.length === 1 && HEARTBEAT_MS > 0)) this.#program();
    return deadline;
  }

  /** Pops the innermost time limit; the timer goes back to the enclosing deadline, or off. */
  disarm(): void {
    const inner = this.#deadlines.pop();
    const outer = this.#deadlines.length > 0 ? this.#deadlines[this.#deadlines.length - 1] : Infinity;
    if (inner !== outer || (this.#deadlines.length === 0 && HEARTBEAT_MS > 0)) this.#program();
  }

  /**
   * Programs the timer for the innermost deadline (now, if it has passed); with no deadline, off, or in a
   * Worker a periodic heartbeat while a call runs (see {@linkcode HEARTBEAT_MS}).
   */
  #program(): void {
    const running = this.#deadlines.length > 0;
    const deadline = running ? this.#deadlines[this.#deadlines.length - 1] : Infinity;
    const heartbeat = running && deadline === Infinity && HEARTBEAT_MS > 0;
    if (deadline === Infinity && !heartbeat && !this.#armed) return;
    if (this.#timer === undefined) this.#timer = this.#createTimer();
    const spec = this.#timerSpec;
    spec.fill(0n);
    if (heartbeat) {
      spec[0] = spec[2] = 0n;
      spec[1] = spec[3] = BigInt(HEARTBEAT_MS * 1_000_000);
      this.#armed = true;
    } else if (deadline !== Infinity) {
      // At least 1 µs: a zero it_value would disarm the timer instead of firing it.
      const us = Math.max(1, Math.ceil((deadline - performance.now()) * 1000));
      spec[2] = BigInt(Math.floor(us / 1_000_000));
      spec[3] = BigInt((us % 1_000_000) * 1000);
      this.#armed = true;
    } else {
      this.#armed = false;
    }
    check("timer_settime", libc().timer_settime(this.#timer, 0, spec, null));
  }

  /** Deletes the timer (the thread is done with VMs). */
  close(): void {
    if (this.#timer !== undefined) {
      untrackTimer(this.#timer);
      libc().timer_delete(this.#timer);
    }
    this.#timer = undefined;
    this.#armed = false;
    this.#deadlines = [];
  }

  #createTimer(): bigint {
    const ev = new Uint8Array(64); // struct sigevent
    const v = new DataView(ev.buffer);
    v.setInt32(8, SIGUSR2, true); // sigev_signo
    v.setInt32(12, SIGEV_THREAD_ID, true); // sigev_notify
    v.setInt32(16, this.tid, true); // sigev_notify_thread_id
    const id = new BigUint64Array(1);
    check("timer_create", libc().timer_create(CLOCK_MONOTONIC, ev, new Uint8Array(id.buffer)));
    // In a Worker, its reaper deletes it if the Worker ends first (ffi/linux/reaper.ts).
    return trackTimer(id[0]);
  }
}

let instance: ThreadSignals | undefined;
