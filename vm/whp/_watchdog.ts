/**
 * The time limit on WHP: a watchdog Worker per thread that calls `WHvCancelRunVirtualProcessor` when a
 * deadline passes, because the thread that runs the vCPU is blocked inside `WHvRunVirtualProcessor` and
 * cannot run a timer of its own.
 *
 * Why a Worker and not a kernel32 timer queue with a `Deno.UnsafeCallback`: a callback invoked from a
 * foreign (thread-pool) thread is queued to its isolate's event loop, and that isolate is the one blocked in
 * the FFI call, so it would fire only after the run it should stop. A timer queue calling
 * `WHvCancelRunVirtualProcessor` directly would need native code for the argument shuffle. A Worker has its
 * own event loop; messages reach it while the owner is blocked (postMessage does not need the sender's
 * loop; measured ~4 µs per message here), and its `setTimeout` fires on time.
 *
 * The Worker is made from a Blob of its own source (functions below serialised with `toString()`), so it
 * needs no module file next to this one: it works from `https:` imports and in `deno compile` binaries
 * without `--include`. It inherits the owner's permissions (`--allow-ffi`). A live Worker keeps the
 * process alive, so it is terminated once no deadline has been armed for {@linkcode WATCHDOG_IDLE_MS}
 * (through an unref'ed timer that does not itself keep the process alive); spawning one costs ~10 ms.
 *
 * Arms nest per thread: the top of the stack is the one the Worker watches; disarming re-activates the one
 * below with its original deadline (and cancels its VM at once when that has already passed).
 *
 * @module
 */
import { CONTROL, requestCancel } from "./_control.ts";

/** Idle time after which the Worker is terminated. */
export const WATCHDOG_IDLE_MS = 250;

/** Interval at which the Worker repeats a cancel the owner has not acknowledged yet. */
export const RETRY_MS = 5;

/** What a deadline stops: the VM's control block and partition handle value. */
export interface WatchTarget {
  /** The VM's control block (see `_control.ts`). */
  readonly control: SharedArrayBuffer;
  /** The partition handle as a number. */
  readonly partition: bigint;
}

/** The message the owner posts for each (re-)activated deadline. */
interface ArmMessage {
  id: number;
  gen: SharedArrayBuffer;
  control: SharedArrayBuffer;
  partition: bigint;
  ms: number;
}

/**
 * The Worker's whole program. `dll` null means "count kicks only" (tests on hosts without WHP); otherwise
 * it opens `dll` with the one `symbol` and calls it.
 */
function watchdogMain(dll: string | null, symbol: Deno.ForeignFunction, retryMs: number): void {
  let cancel: ((p: Deno.PointerValue, vp: number, flags: number) => number) | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let current: ArmMessage | undefined;
  const kick = (partition: bigint) => {
    if (dll === null) return;
    if (cancel === null) {
      const lib = Deno.dlopen(dll, { WHvCancelRunVirtualProcessor: symbol });
      cancel = lib.symbols.WHvCancelRunVirtualProcessor as unknown as typeof cancel;
    }
    cancel!(Deno.UnsafePointer.create(partition), 0, 0);
  };
  const fire = () => {
    const m = current;
    if (m === undefined || Atomics.load(new Int32Array(m.gen), 0) !== m.id) return;
    const state = new Int32Array(m.control);
    requestCancel(state, () => kick(m.partition));
    // Repeat until the owner acknowledges or disarms: covers a kick that lands between the owner's last
    // check and its entry into the hypervisor, should a cancel of a VP that is not running be dropped.
    if ((Atomics.load(state, CONTROL.STATE) & CONTROL.CANCEL) !== 0) timer = setTimeout(fire, retryMs);
  };
  (globalThis as unknown as { onmessage: (e: MessageEvent<ArmMessage>) => void }).onmessage = (e) => {
    clearTimeout(timer);
    current = e.data;
    timer = setTimeout(fire, Math.max(0, e.data.ms));
  };
}

function workerSource(dll: string | null, symbol: Deno.ForeignFunction): string {
  return [
    `const CONTROL = ${JSON.stringify(CONTROL)};`,
    requestCancel.toString(),
    `(${watchdogMain.toString()})(${JSON.stringify(dll)}, ${JSON.stringify(symbol)}, ${RETRY_MS});`,
  ].join("\n");
}

interface Arm {
  target: WatchTarget;
  deadline: number;
}

/**
 * One thread's deadlines and its watchdog Worker.
 *
 * @example
 * ```ts ignore
 * import { Watchdog } from "./_watchdog.ts";
 * const w = new Watchdog(null, symbol);
 * w.arm({ control, partition: 0n }, 100);
 * w.disarm();
 * w.close();
 * ```
 */
export class Watchdog {
  readonly #dll: string | null;
  readonly #symbol: Deno.ForeignFunction;
  readonly #gen = new Int32Array(new SharedArrayBuffer(4));
  readonly #stack: Arm[] = [];
  #worker: Worker | undefined;
  #idle: ReturnType<typeof setTimeout> | undefined;

  /** `dll` is the DLL to call `symbol` from (null: count kicks only). */
  constructor(dll: string | null, symbol: Deno.ForeignFunction) {
    this.#dll = dll;
    this.#symbol = symbol;
  }

  /** Armed deadlines on this thread. */
  get depth(): number {
    return this.#stack.length;
  }

  /** Stops `target`'s run once `ms` milliseconds have passed (or at its next run). */
  arm(target: WatchTarget, ms: number): void {
    this.#stack.push({ target, deadline: performance.now() + ms });
    this.#activate();
  }

  /** Undoes the innermost {@linkcode arm}. */
  disarm(): void {
    if (this.#stack.pop() === undefined) return;
    this.#activate();
  }

  /** Terminates the Worker (a later arm starts a new one). */
  close(): void {
    Atomics.add(this.#gen, 0, 1);
    this.#stack.length = 0;
    if (this.#idle !== undefined) clearTimeout(this.#idle);
    this.#idle = undefined;
    this.#worker?.terminate();
    this.#worker = undefined;
  }

  #activate(): void {
    const id = Atomics.add(this.#gen, 0, 1) + 1;
    const top = this.#stack.at(-1);
    if (top === undefined) {
      this.#scheduleIdle();
      return;
    }
    if (this.#idle !== undefined) clearTimeout(this.#idle);
    this.#idle = undefined;
    const ms = top.deadline - performance.now();
    if (ms <= 0) {
      // Already due: the owner is this thread and is not inside a run, so no kick is needed; the pending
      // cancel makes the VM's next run return at once.
      requestCancel(new Int32Array(top.target.control), () => {});
      return;
    }
    const message: ArmMessage = {
      id,
      gen: this.#gen.buffer as SharedArrayBuffer,
      control: top.target.control,
      partition: top.target.partition,
      ms,
    };
    this.#ensureWorker().postMessage(message);
  }

  #ensureWorker(): Worker {
    if (this.#worker === undefined) {
      const url = URL.createObjectURL(
        new Blob([workerSource(this.#dll, this.#symbol)], { type: "text/javascript" }),
      );
      try {
        this.#worker = new Worker(url, { type: "module" });
      } finally {
        URL.revokeObjectURL(url);
      }
    }
    return this.#worker;
  }

  #scheduleIdle(): void {
    if (this.#worker === undefined || this.#idle !== undefined) return;
    const idle = setTimeout(() => {
      this.#idle = undefined;
      if (this.#stack.length === 0) {
        this.#worker?.terminate();
        this.#worker = undefined;
      }
    }, WATCHDOG_IDLE_MS);
    Deno.unrefTimer(idle);
    this.#idle = idle;
  }
}
