/**
 * The vCPU run thread: a plain OS thread (no JavaScript, no event loop) that runs `KVM_RUN` for one vCPU,
 * so that a guest call never blocks the JavaScript thread that owns the sandbox. Its machine code is
 * `_run_thread.c`, carried as bytes (`_run_thread_image.ts`) and mapped once per JavaScript thread with
 * `ffi/executable.ts`; the thread itself is started with `pthread_create`.
 *
 * Protocol (one shared control block, see `_run_thread.c`): the owner posts a command (`post`, a futex
 * wake), the thread runs it and publishes the result (a futex the owner waits on, synchronously or with a
 * nonblocking FFI call that keeps the event loop free). The thread's id is the interrupt target of the
 * calls it runs: interrupt handles and the POSIX timer of the call's time limit signal that thread, which
 * blocks SIGUSR2 except inside `KVM_RUN` and consumes it there.
 *
 * @module
 */
import { openHost } from "../../ffi/executable.ts";
import { RUN_THREAD_IMAGE } from "./_run_thread_image.ts";
import { Mapping } from "../memory/mapping.ts";
import { OsCallError } from "../../errors.ts";
import { libc } from "../../ffi/linux/libc.ts";
import { errnoName } from "../../ffi/linux/errno.ts";

/** Control block fields (byte offsets), as `struct ctrl` in `_run_thread.c` declares them. */
const CTRL = {
  CMD_SEQ: 0,
  CMD: 4,
  FLAGS: 8,
  KICK: 12,
  DEADLINE: 16,
  CALL_STATE: 24,
  DONE_SEQ: 64,
  RESULT: 68,
  STATE: 72,
  TID: 76,
  TIMER: 80,
  RUNS: 84,
  WAITERS: 88,
  VCPU_FD: 128,
  VM_FD: 132,
  OWNER_PIDFD: 136,
  OWNER_TID: 140,
  PID: 144,
  SIGNO: 148,
  HEARTBEAT_MS: 152,
  RUN_ADDR: 160,
  RUN_SIZE: 168,
  GUEST_ADDR: 176,
  GUEST_SIZE: 184,
  PTHREAD: 192,
  DETACH: 200,
  NAME: 208,
  RING_ADDR: 224,
  RING_SIZE: 232,
  SIZE: 4096,
} as const;

const CMD_RUN = 1, CMD_STOP = 2;
const FLAG_RESET_SEGMENTS = 1;
/** `ctrl.state`: starting, ready (1), stopped, orphaned (see `_run_thread.c`). */
const STATE_STARTING = 0, STATE_STOPPED = 2, STATE_ORPHANED = 3;

/**
 * What {@linkcode RunThread.waitWord} saw: the deadline passed, the word changed, the run finished, or the
 * time slice ran out.
 *
 * @example
 * ```ts
 * import { WAIT } from "./run_thread.ts";
 * console.log(WAIT.WORD); // 1
 * ```
 */
export const WAIT = { DEADLINE: 0, WORD: 1, FINISHED: 2, SLICE: 3 } as const;

/**
 * The name run threads carry (visible in `/proc/<pid>/task/<tid>/comm`, at most 15 bytes).
 *
 * @example
 * ```ts
 * import { RUN_THREAD_NAME } from "./run_thread.ts";
 * console.log(RUN_THREAD_NAME); // "snapvm-vcpu"
 * ```
 */
export const RUN_THREAD_NAME = "snapvm-vcpu";

const SYS_FUTEX = 202n, FUTEX_WAIT_PRIVATE = 128n, FUTEX_WAKE_PRIVATE = 129n;
const SYS_PIDFD_OPEN = 434n;
/** `PIDFD_THREAD` (`O_EXCL`): a pidfd of one thread, readable once it exits (Linux 6.9). */
const PIDFD_THREAD = 0o200n;

/**
 * The C library functions used here. `Deno.dlopen` symbols are fast calls (~0.2 µs), while calling the
 * run thread's own code through `Deno.UnsafeFnPointer` costs ~1.5 µs a call, as much as a whole hot call:
 * so the hot path only uses futexes through `syscall`, and plain memory.
 */
const LIBC = {
  pthread_create: { parameters: ["buffer", "pointer", "pointer", "pointer"], result: "i32" },
  pthread_join: { parameters: ["u64", "pointer"], result: "i32" },
  /** Its address: an orphaned thread detaches itself (see `_run_thread.c`). */
  pthread_detach: { name: "pthread_detach", type: "pointer" },
  futex: { name: "syscall", parameters: ["i64", "pointer", "i64", "i64", "buffer"], result: "i64" },
  futexAsync: {
    name: "syscall",
    parameters: ["i64", "pointer", "i64", "i64", "buffer"],
    result: "i64",
    nonblocking: true,
  },
} as const;

const SIG = {
  waitHot: { parameters: ["pointer", "pointer", "u32", "u32", "i64", "i64", "i64"], result: "i32" },
  now: { parameters: [], result: "i64" },
  rdtsc: { parameters: [], result: "u64" },
} as const;

type WaitHotArgs = [Deno.PointerObject, Deno.PointerObject, number, number, number, number, number];

interface Natives {
  entry: Deno.PointerObject;
  waitHot: (...a: WaitHotArgs) => number;
  waitHotAsync: (...a: WaitHotArgs) => Promise<number>;
  now: () => bigint;
  rdtsc: () => bigint;
  libc: Deno.DynamicLibrary<typeof LIBC>["symbols"];
  /** performance.now() in ms + this = CLOCK_MONOTONIC in ms. */
  clockOffsetMs: number;
}

let natives: Natives | undefined;

/**
 * The run thread could not be set up: its machine code could not be mapped, or the thread not started.
 *
 * @example
 * ```ts
 * import { RunThreadError } from "./run_thread.ts";
 * console.log(new RunThreadError("pthread_create", "EAGAIN").message);
 * // "pthread_create failed: EAGAIN (while starting a vCPU run thread)"
 * ```
 */
export class RunThreadError extends OsCallError {
  /** Creates the error: the call that failed and its error code. */
  constructor(call: string, code: string) {
    super(call, code, "while starting a vCPU run thread");
    this.name = "RunThreadError";
  }
}

function load(): Natives {
  if (natives !== undefined) return natives;
  const host = openHost();
  if (host === null || host.os !== "linux") throw new RunThreadError("openHost", "not Linux");
  const image = Uint8Array.from(atob(RUN_THREAD_IMAGE.base64), (c) => c.charCodeAt(0));
  const size = Math.ceil(image.length / 4096) * 4096;
  // Mapped for the life of this JavaScript thread: run threads may execute it until they have ended, and an
  // orphaned one (see _run_thread.c) until after its owner has gone.
  const code = host.mapExecutable(image, size, size);
  const at = (offset: number) => Deno.UnsafePointer.offset(code.base, offset) as Deno.PointerObject;
  const e = RUN_THREAD_IMAGE.entries;
  // deno-lint-ignore no-explicit-any
  const fn = (offset: number, sig: Deno.ForeignFunction) => new Deno.UnsafeFnPointer(at(offset) as any, sig);
  const waitHot = fn(e.waitHot, SIG.waitHot);
  const waitHotAsync = fn(e.waitHot, { ...SIG.waitHot, nonblocking: true });
  const now = fn(e.now, SIG.now);
  const rdtsc = fn(e.rdtsc, SIG.rdtsc);
  // Never closed: the C library stays loaded for the life of the process anyway.
  const c = Deno.dlopen("libc.so.6", LIBC).symbols;
  // performance.now() and CLOCK_MONOTONIC run at the same rate; the offset comes from the sample whose
  // two reads of performance.now() lie closest together.
  let clockOffsetMs = 0, best = Infinity;
  for (let i = 0; i < 5; i++) {
    const before = performance.now();
    const mono = Number(now.call() as bigint) / 1e6;
    const after = performance.now();
    if (after - before < best) {
      best = after - before;
      clockOffsetMs = mono - (before + after) / 2;
    }
  }
  natives = {
    entry: at(e.thread),
    waitHot: (...a) => waitHot.call(...a) as number,
    waitHotAsync: (...a) => waitHotAsync.call(...a) as unknown as Promise<number>,
    now: () => now.call() as bigint,
    rdtsc: () => rdtsc.call() as bigint,
    libc: c,
    clockOffsetMs,
  };
  return natives;
}

/** CLOCK_MONOTONIC nanoseconds of a `performance.now()` time (ms); 0 for Infinity (no deadline). */
function monotonicNs(ms: number): bigint {
  if (!Number.isFinite(ms)) return 0n;
  return BigInt(Math.max(1, Math.round((ms + load().clockOffsetMs) * 1e6)));
}

/**
 * CLOCK_MONOTONIC microseconds of a `performance.now()` time (ms); 0 for Infinity (no deadline). A plain
 * number (exact up to 2^53 µs, centuries of uptime).
 */
function monotonicUs(ms: number): number {
  if (!Number.isFinite(ms)) return 0;
  return Math.max(1, Math.round((ms + load().clockOffsetMs) * 1e3));
}

let tscPerMs: number | undefined;

/**
 * Time-stamp counter ticks per millisecond, measured once per JavaScript thread (about 2 ms of busy
 * waiting): the guest measures its idle spin in TSC ticks (it has no other clock), which equal the host's.
 *
 * @example
 * ```ts ignore
 * import { tscTicksPerMs } from "./run_thread.ts";
 * console.log(tscTicksPerMs() > 0);
 * ```
 */
export function tscTicksPerMs(): number {
  if (tscPerMs === undefined) {
    const n = load();
    const t0 = performance.now(), c0 = n.rdtsc();
    let t1 = t0;
    while ((t1 = performance.now()) - t0 < 2);
    tscPerMs = Number(n.rdtsc() - c0) / (t1 - t0);
  }
  return tscPerMs;
}

/**
 * What a run thread needs from its vCPU.
 *
 * @example
 * ```ts
 * import type { RunThreadOptions } from "./run_thread.ts";
 * const o: RunThreadOptions = { vcpuFd: 5, vmFd: 4, run: { address: 0n, size: 12288 }, signal: 12, heartbeatMs: 0 };
 * console.log(o.signal);
 * ```
 */
export interface RunThreadOptions {
  /** The vCPU fd. */
  vcpuFd: number;
  /** The VM fd (closed by an orphaned thread). */
  vmFd: number;
  /** Address and size of the vCPU's `kvm_run` mapping. */
  run: { address: bigint; size: number };
  /** Address and size of the vCPU's dirty ring mapping, if it has one (unmapped by an orphaned thread). */
  ring?: { address: bigint; size: number };
  /** The signal that interrupts `KVM_RUN`. */
  signal: number;
  /** Interval of the heartbeat and of the owner checks, in ms; 0: the owner is the main thread, none. */
  heartbeatMs: number;
}

/** The least an adaptive hot wait spins (µs): a polling guest answers within about one. */
const MIN_SPIN_US = 10;

/** A 1-second `struct timespec`, the longest any futex wait here blocks before it looks again. */
const ONE_SECOND = new BigInt64Array([1n, 0n]);

/** The native address of `words[index]`, per array (made once: `UnsafePointer.of` is not free). */
const wordAddresses = new WeakMap<Int32Array, Deno.PointerObject>();

function wordPointer(words: Int32Array, index: number): Deno.PointerObject {
  let base = wordAddresses.get(words);
  if (base === undefined) {
    base = Deno.UnsafePointer.of(words) as Deno.PointerObject;
    wordAddresses.set(words, base);
  }
  return Deno.UnsafePointer.offset(base, index * 4) as Deno.PointerObject;
}

/**
 * One run thread and its control block. Not thread-safe: only the JavaScript thread that made it uses it
 * (interrupt handles reach the thread with a signal, never through this object).
 *
 * @example
 * ```ts ignore
 * const thread = RunThread.start({ vcpuFd, vmFd, run, signal: 12, heartbeatMs: 0 });
 * thread.post(false);
 * await thread.finished();
 * console.log(thread.result());
 * thread.stop();
 * ```
 */
export class RunThread {
  /** The thread's kernel id (what interrupt handles and its timer signal). */
  readonly tid: number;
  readonly #ctrl: Mapping;
  readonly #i32: Int32Array;
  readonly #view: DataView;
  readonly #ptr: Deno.PointerObject;
  readonly #cmdSeq: Deno.PointerObject;
  readonly #done: Deno.PointerObject;
  readonly #id: bigint;
  readonly #signal: number;
  #seq = 0;
  #stopped = false;
  /** How long {@linkcode waitWord} spins, adapted to what the last waits needed (µs, see there). */
  #spin = 0;

  private constructor(ctrl: Mapping, id: bigint, signal: number) {
    this.#signal = signal;
    this.#ctrl = ctrl;
    this.#i32 = new Int32Array(ctrl.bytes.buffer, 0, CTRL.SIZE / 4);
    this.#view = ctrl.view;
    this.#ptr = ctrl.pointer;
    this.#cmdSeq = Deno.UnsafePointer.offset(ctrl.pointer, CTRL.CMD_SEQ) as Deno.PointerObject;
    this.#done = Deno.UnsafePointer.offset(ctrl.pointer, CTRL.DONE_SEQ) as Deno.PointerObject;
    this.#id = id;
    this.tid = this.#view.getInt32(CTRL.TID, true);
  }

  /**
   * Starts a thread for a vCPU and waits until it is ready. Throws {@linkcode RunThreadError} when the OS
   * refuses.
   */
  static start(options: RunThreadOptions): RunThread {
    const n = load();
    const ctrl = Mapping.reserve(CTRL.SIZE);
    const v = ctrl.view;
    v.setInt32(CTRL.VCPU_FD, options.vcpuFd, true);
    v.setInt32(CTRL.VM_FD, options.vmFd, true);
    v.setInt32(CTRL.PID, libc().getpid(), true);
    v.setInt32(CTRL.SIGNO, options.signal, true);
    v.setUint32(CTRL.HEARTBEAT_MS, options.heartbeatMs, true);
    v.setBigUint64(CTRL.RUN_ADDR, options.run.address, true);
    v.setBigUint64(CTRL.RUN_SIZE, BigInt(options.run.size), true);
    if (options.ring !== undefined) {
      v.setBigUint64(CTRL.RING_ADDR, options.ring.address, true);
      v.setBigUint64(CTRL.RING_SIZE, BigInt(options.ring.size), true);
    }
    v.setBigUint64(CTRL.DETACH, BigInt(Deno.UnsafePointer.value(n.libc.pthread_detach)), true);
    v.setInt32(CTRL.OWNER_PIDFD, -1, true);
    if (options.heartbeatMs > 0) {
      // The owner may go away without closing anything (a terminated Worker): the thread watches it.
      const owner = libc().gettid();
      v.setInt32(CTRL.OWNER_TID, owner, true);
      // Without pidfds of threads (before Linux 6.9) this is -1 and the thread falls back to tgkill(…, 0).
      const pidfd = Number(libc().syscall3(SYS_PIDFD_OPEN, BigInt(owner), PIDFD_THREAD));
      v.setInt32(CTRL.OWNER_PIDFD, pidfd < 0 ? -1 : pidfd, true);
    }
    ctrl.bytes.set(new TextEncoder().encode(RUN_THREAD_NAME), CTRL.NAME);
    const id = new BigUint64Array(1);
    const rc = n.libc.pthread_create(id, null, n.entry, ctrl.pointer);
    if (rc !== 0) {
      const pidfd = v.getInt32(CTRL.OWNER_PIDFD, true);
      if (pidfd >= 0) libc().close(pidfd);
      ctrl.close();
      throw new RunThreadError("pthread_create", errnoName(rc));
    }
    v.setBigUint64(CTRL.PTHREAD, id[0], true);
    const i32 = new Int32Array(ctrl.bytes.buffer, 0, CTRL.SIZE / 4);
    const state = Deno.UnsafePointer.offset(ctrl.pointer, CTRL.STATE) as Deno.PointerObject;
    while (Atomics.load(i32, CTRL.STATE / 4) === STATE_STARTING) {
      n.libc.futex(SYS_FUTEX, state, FUTEX_WAIT_PRIVATE, BigInt(STATE_STARTING), ONE_SECOND);
    }
    return new RunThread(ctrl, id[0], options.signal);
  }

  /** True while the last posted run has not finished. */
  get busy(): boolean {
    return Atomics.load(this.#i32, CTRL.DONE_SEQ / 4) !== this.#seq;
  }

  /** How many times the thread entered `KVM_RUN` (for tests). */
  get runs(): number {
    return Atomics.load(this.#i32, CTRL.RUNS / 4) >>> 0;
  }

  /**
   * Starts one `KVM_RUN` on the thread and returns at once. `deadline` (in `performance.now()` time) is the
   * call's time limit, `callState` its interrupt handle words; `resetSegments` for an entry.
   */
  post(resetSegments: boolean, deadline = Infinity, callState?: Int32Array): void {
    const v = this.#view;
    v.setBigInt64(CTRL.DEADLINE, monotonicNs(deadline), true);
    v.setBigUint64(
      CTRL.CALL_STATE,
      callState === undefined ? 0n : BigInt(Deno.UnsafePointer.value(wordPointer(callState, 0))),
      true,
    );
    Atomics.store(this.#i32, CTRL.KICK / 4, 0);
    this.#command(CMD_RUN, resetSegments ? FLAG_RESET_SEGMENTS : 0);
  }

  #command(cmd: number, flags: number): void {
    const i = this.#i32;
    i[CTRL.CMD / 4] = cmd;
    i[CTRL.FLAGS / 4] = flags;
    this.#seq = (this.#seq + 1) | 0;
    Atomics.store(i, CTRL.CMD_SEQ / 4, this.#seq);
    (natives ?? load()).libc.futex(SYS_FUTEX, this.#cmdSeq, FUTEX_WAKE_PRIVATE, 1n, null);
  }

  /** Resolves once the current run has finished, without blocking the event loop. */
  async finished(): Promise<void> {
    const n = natives ?? load();
    while (this.busy) {
      await n.libc.futexAsync(
        SYS_FUTEX,
        this.#done,
        FUTEX_WAIT_PRIVATE,
        BigInt((this.#seq - 1) | 0),
        ONE_SECOND,
      );
    }
  }

  /** Blocks until the current run has finished. */
  finishedSync(): void {
    const n = natives ?? load();
    while (this.busy) {
      n.libc.futex(SYS_FUTEX, this.#done, FUTEX_WAIT_PRIVATE, BigInt((this.#seq - 1) | 0), ONE_SECOND);
    }
  }

  /** `KVM_RUN`'s result for the finished run: 0, or a negative errno. */
  result(): number {
    return Atomics.load(this.#i32, CTRL.RESULT / 4);
  }

  /**
   * Makes a busy run return (the guest stops where it is, as after any exit); returns at once. The run then
   * finishes with -EINTR unless it finished for another reason first.
   */
  kick(): void {
    Atomics.store(this.#i32, CTRL.KICK / 4, 1);
    libc().tgkill(libc().getpid(), this.tid, this.#signal);
  }

  /**
   * Waits until `words[index]` (guest memory the guest writes) differs from `seen`, the run finishes,
   * `deadline` (`performance.now()` time) passes, or `sliceMs` has gone by; returns one of
   * {@linkcode WAIT}. Spins here first, for at most `spinUs` (an answer usually takes a microsecond or two,
   * less than one call into the thread's code costs), then waits in the thread's code, sleeping in short
   * steps. The spin adapts: when this thread and the guest's share a core (a busy machine), spinning only
   * delays the guest, so after waits that the spin did not end, the next ones spin less (down to 2 µs), and
   * after waits it did end, more again (between 10 µs and `spinUs`).
   */
  waitWord(
    words: Int32Array,
    index: number,
    seen: number,
    deadline: number,
    spinUs: number,
    sliceMs: number,
  ): number {
    const i32 = this.#i32, seq = this.#seq;
    // A wait that ends with its spin (sliceMs no longer than spinUs) spins all of it and adapts nothing.
    const inline = sliceMs * 1000 <= spinUs;
    const spin = inline ? spinUs : this.#spin = Math.min(spinUs, Math.max(this.#spin, MIN_SPIN_US));
    // The clock is first read after 64 spins: most answers come sooner, and a clock read costs ~40 ns.
    let start = 0, spinEnd = 0;
    for (let n = 1;; n++) {
      if (Atomics.load(words, index) !== seen) {
        if (!inline) this.#spin = spin * 2;
        return WAIT.WORD;
      }
      if (Atomics.load(i32, CTRL.DONE_SEQ / 4) === seq) return WAIT.FINISHED;
      if ((n & 63) === 0) {
        const now = performance.now();
        if (start === 0) {
          start = now;
          spinEnd = now + spin / 1000;
        }
        if (now >= deadline) return WAIT.DEADLINE;
        if (now >= spinEnd) break;
      }
    }
    const left = start + sliceMs - performance.now();
    if (inline || left <= 0) return WAIT.SLICE;
    const r = (natives ?? load()).waitHot(
      this.#ptr,
      wordPointer(words, index),
      seen >>> 0,
      seq >>> 0,
      monotonicUs(deadline),
      Math.ceil(left * 1000),
      0,
    );
    if (r === WAIT.WORD) this.#spin = spin / 2;
    return r;
  }

  /** {@linkcode waitWord} without blocking the event loop (the whole wait runs in the thread's code). */
  waitWordAsync(
    words: Int32Array,
    index: number,
    seen: number,
    deadline: number,
    spinUs: number,
    sliceMs: number,
  ): Promise<number> {
    return load().waitHotAsync(
      this.#ptr,
      wordPointer(words, index),
      seen >>> 0,
      this.#seq >>> 0,
      monotonicUs(deadline),
      Math.ceil(sliceMs * 1000),
      spinUs,
    );
  }

  /** Tells an orphaned thread which guest memory to unmap (0 size: none). */
  setGuestMemory(address: bigint, size: number): void {
    this.#view.setBigUint64(CTRL.GUEST_ADDR, size > 0 ? address : 0n, true);
    this.#view.setBigUint64(CTRL.GUEST_SIZE, BigInt(size), true);
  }

  /** Ends the thread (stopping a busy run first) and frees its control block. Safe to call twice. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    const n = load();
    if (this.busy) {
      this.kick();
      this.finishedSync();
    }
    this.#command(CMD_STOP, 0);
    const state = Deno.UnsafePointer.offset(this.#ptr, CTRL.STATE) as Deno.PointerObject;
    let s: number;
    while ((s = Atomics.load(this.#i32, CTRL.STATE / 4)) !== STATE_STOPPED && s !== STATE_ORPHANED) {
      n.libc.futex(SYS_FUTEX, state, FUTEX_WAIT_PRIVATE, BigInt(s), ONE_SECOND);
    }
    n.libc.pthread_join(this.#id, null);
    this.#ctrl.close();
  }
}
