/**
 * Guest calls whose vCPU runs on the VM's run thread (`VcpuThread`), not on the calling thread:
 *
 * - {@linkcode runAsync}: an exit-based call that never blocks the event loop. Each run is one `KVM_RUN` on
 *   the run thread, awaited with a nonblocking FFI call; host functions run on the calling thread between
 *   runs and may return a Promise, which is awaited (against the call's deadline and its interrupt handle)
 *   before the guest resumes.
 * - {@linkcode runHot} / {@linkcode runHotAsync}: a call on a hot sandbox, whose guest stays in the guest
 *   between calls polling its mailbox (docs/ABI.md, "Hot mode"): the request and the answer, host calls
 *   and log records pass through the mailbox and the I/O buffers without a VM exit. The waiting side
 *   watches the deadline (a hot run spans many calls, so the run thread's timer cannot); interrupt handles
 *   signal the run thread as for any call.
 *
 * Every exit and message is interpreted by `GuestVm.onExit` / `GuestVm.onMessage`, the same handler the
 * synchronous `GuestVm.run()` uses, so errors, poisoning and limits behave alike in every mode.
 *
 * @module
 */
import { MAILBOX_DONE } from "./abi.ts";
import type { VcpuThread } from "../backend/backend.ts";
import { ExecutionCanceledError } from "../errors.ts";
import { type CallFrame, DONE, type GuestVm, RESUME, type RunContext } from "./guest_vm.ts";
import { GUEST_SEQ_INDEX, type Mailbox } from "./mailbox.ts";

/**
 * Loads of the guest's sequence number a hot call spins for before it reads the clock: ~1.4 µs here (V8
 * calls a builtin for each `Atomics.load`, ~11 ns), while a polling guest answers an Echo in ~0.3 µs.
 */
const FIRST_SPINS = 128;
/** A synchronous wait for a hot guest spins this long before it sleeps in short steps (µs). */
const SYNC_SPIN_US = 100;
/** Waits are cut into slices this long (ms), after which the loop looks again. */
const SLICE_MS = 250;
/**
 * An asynchronous hot call first waits this long synchronously (µs): most answers arrive within
 * microseconds, while handing the wait to another thread costs ~15 µs (a nonblocking FFI call).
 */
const INLINE_WAIT_US = 20;
/**
 * The nonblocking wait of an asynchronous hot call spins this long before it sleeps (µs): not at all, as
 * the inline wait already spun, and a spinning helper thread only takes a core from the guests.
 */
const ASYNC_SPIN_US = 0;
/**
 * How often the idle watch looks at hot sandboxes, and how long past its idle spin a guest may go on
 * polling before the watch parks it (ms).
 */
const WATCH_MS = 100;

/**
 * Runs a call (its request already in the input buffer) on the run thread without blocking this thread.
 * Hot sandboxes use their mailbox.
 *
 * @example
 * ```ts ignore
 * await runAsync(vm, { functionName: "Echo", hostFunctions, maxExecutionTimeMs: 1000 });
 * ```
 */
export function runAsync(vm: GuestVm, ctx: RunContext): Promise<void> {
  // Not itself async: one Promise (and one microtask) less per call.
  return vm.hotIdleTicks !== undefined ? runHotAsync(vm, ctx) : runExitAsync(vm, ctx);
}

/** {@linkcode runAsync} on an ordinary sandbox: one `KVM_RUN` on the run thread per exit. */
async function runExitAsync(vm: GuestVm, ctx: RunContext): Promise<void> {
  const t = vm.vcpuThread();
  const call = vm.beginCall(ctx, "async");
  try {
    for (;;) {
      t.start(call.deadline, vm.callState.words);
      vm.exitPending = true;
      await t.finished();
      vm.exitPending = false;
      const step = vm.onExit(t.exit(), call);
      if (step === DONE) return;
      if (step !== RESUME) await hostPromise(vm, step, call);
    }
  } catch (e) {
    throw vm.failed(e);
  } finally {
    vm.endCall(call);
  }
}

/**
 * Runs a call on a hot sandbox, blocking this thread until the answer arrives (about a microsecond when
 * the guest is polling).
 *
 * @example
 * ```ts ignore
 * runHot(vm, { functionName: "Echo", hostFunctions, maxExecutionTimeMs: 1000 });
 * ```
 */
export function runHot(vm: GuestVm, ctx: RunContext): void {
  const t = vm.vcpuThread(), mb = vm.mailbox, idle = vm.hotIdleTicks!;
  const call = vm.beginCall(ctx, "hot", true);
  try {
    mb.checkIdle();
    mb.post(idle);
    spinBriefly(t, mb);
    for (;;) {
      if (mb.pending) {
        const kind = mb.take();
        if (kind === MAILBOX_DONE) return watchIdle(vm);
        vm.onMessage(kind, call); // synchronous: RESUME, or it throws
        mb.post(idle);
        continue;
      }
      vm.startClock(call); // before the waits, which watch the deadline
      if (!t.busy) resume(vm, t, call);
      const w = t.waitWord(mb.words, GUEST_SEQ_INDEX, mb.seen, call.deadline, SYNC_SPIN_US, SLICE_MS);
      if (w === "deadline") throw stopForTimeout(vm, call);
    }
  } catch (e) {
    vm.park(); // nothing more of this guest runs until a restore
    throw vm.failed(e);
  } finally {
    vm.endCall(call);
  }
}

/**
 * {@linkcode runHot} without blocking this thread for longer than a few microseconds; host functions may
 * return a Promise.
 *
 * @example
 * ```ts ignore
 * await runHotAsync(vm, { functionName: "Echo", hostFunctions, maxExecutionTimeMs: 1000 });
 * ```
 */
export async function runHotAsync(vm: GuestVm, ctx: RunContext): Promise<void> {
  const t = vm.vcpuThread(), mb = vm.mailbox, idle = vm.hotIdleTicks!;
  const call = vm.beginCall(ctx, "async", true);
  try {
    mb.checkIdle();
    mb.post(idle);
    spinBriefly(t, mb);
    for (;;) {
      if (mb.pending) {
        const kind = mb.take();
        if (kind === MAILBOX_DONE) return watchIdle(vm);
        const step = vm.onMessage(kind, call);
        if (step !== RESUME && step !== DONE) await hostPromise(vm, step, call);
        mb.post(idle);
        continue;
      }
      vm.startClock(call); // before the waits, which watch the deadline
      if (!t.busy) {
        const step = resume(vm, t, call, true);
        if (step !== undefined) {
          await hostPromise(vm, step, call);
          t.start(Infinity, vm.callState.words);
          vm.exitPending = true;
        }
      }
      const words = mb.words;
      let w = t.waitWord(
        words,
        GUEST_SEQ_INDEX,
        mb.seen,
        call.deadline,
        INLINE_WAIT_US,
        INLINE_WAIT_US / 1000,
      );
      if (w === "slice") {
        w = await t.waitWordAsync(words, GUEST_SEQ_INDEX, mb.seen, call.deadline, ASYNC_SPIN_US, SLICE_MS);
      }
      if (w === "deadline") throw stopForTimeout(vm, call);
    }
  } catch (e) {
    vm.park();
    throw vm.failed(e);
  } finally {
    vm.endCall(call);
  }
}

/**
 * The first wait of a hot call, before any clock read (a clock read costs ~130 ns, and a polling guest
 * answers within a microsecond): spins on the guest's sequence number for at most {@linkcode FIRST_SPINS}
 * loads while the run thread runs. The call loop then finds the message, or reads the clock and waits.
 */
function spinBriefly(t: VcpuThread, mb: Mailbox): void {
  if (!t.busy) return;
  const words = mb.words, seen = mb.seen;
  for (let n = 0; n < FIRST_SPINS; n++) {
    if (Atomics.load(words, GUEST_SEQ_INDEX) !== seen) return;
  }
}

/**
 * The run thread of a hot guest has stopped (it parked, was interrupted, or left the guest for another
 * reason): handles that exit and starts the guest again. With `deferAsync`, a host function's Promise
 * (from an exit-based host call) is returned instead, and the caller starts the guest once it settled.
 */
function resume(vm: GuestVm, t: VcpuThread, call: CallFrame, deferAsync = false): Promise<void> | undefined {
  if (vm.exitPending) {
    vm.exitPending = false;
    const step = vm.onExit(t.exit(), call);
    if (step !== RESUME && step !== DONE && deferAsync) return step;
  }
  // A hot run spans many calls: the waiting side watches each call's deadline, not the run thread.
  t.start(Infinity, vm.callState.words);
  vm.exitPending = true;
  return undefined;
}

/**
 * Hot sandboxes whose guest may still be polling after their last call. The runtime parks itself after
 * its idle spin; a guest that does not (a hostile one, or one stuck in a function after answering) is
 * parked by this watch, so that no idle sandbox keeps a core busy for long. Module state is per thread.
 */
const watched = new Map<GuestVm, { calls: number; idleTicks: number }>();
let watchTimer: ReturnType<typeof setInterval> | undefined;

/** A hot call ended: the guest polls on, watched. Cheap: no clock read on the hot path. */
function watchIdle(vm: GuestVm): void {
  vm.hotCalls++;
  if (watched.has(vm)) return;
  watched.set(vm, { calls: vm.hotCalls, idleTicks: 0 });
  if (watchTimer === undefined) {
    watchTimer = setInterval(watch, WATCH_MS);
    Deno.unrefTimer(watchTimer as unknown as number); // an idle sandbox keeps no process alive
  }
}

function watch(): void {
  for (const [vm, seen] of watched) {
    if (vm.closed || (!vm.running && (!vm.exitPending || !vm.vcpuThread().busy))) {
      watched.delete(vm); // closed, or parked
      continue;
    }
    if (vm.running || vm.hotCalls !== seen.calls) {
      seen.calls = vm.hotCalls;
      seen.idleTicks = 0;
      continue;
    }
    // Idle for at least idleTicks × WATCH_MS: parked by now, unless the guest does not park itself.
    if (++seen.idleTicks * WATCH_MS > vm.hotIdleMs + WATCH_MS) {
      // Stopped where it is; the next call reads this exit (interrupted) and resumes the guest.
      vm.vcpuThread().stop();
      watched.delete(vm);
    }
  }
  if (watched.size === 0) {
    clearInterval(watchTimer);
    watchTimer = undefined;
  }
}

/** The deadline passed while a hot guest ran: stops it and returns the timeout error. */
function stopForTimeout(vm: GuestVm, call: CallFrame): Error {
  vm.park();
  return vm.timeout(call);
}

/**
 * Waits for a host function's Promise (which writes the answer when it settles), or until the call is
 * killed through its interrupt handle or its deadline passes: then the call ends with
 * `ExecutionCanceledError` and the answer, should it come later, is dropped.
 */
async function hostPromise(vm: GuestVm, answered: Promise<void>, call: CallFrame): Promise<void> {
  answered.catch(() => {}); // raced below; a late rejection must not go unhandled
  const kill = vm.callState.whenKilled();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const racers: Promise<number>[] = [answered.then(() => 0), kill.promise.then(() => 1)];
  if (Number.isFinite(call.deadline)) {
    racers.push(
      new Promise((resolve) =>
        timer = setTimeout(() => resolve(2), Math.max(0, call.deadline - performance.now()))
      ),
    );
  } else {
    // A call in flight keeps the process alive, as its runs do (a wait for a kill alone would not).
    timer = setInterval(() => {}, 60_000);
  }
  let outcome: number;
  try {
    outcome = await Promise.race(racers);
  } finally {
    kill.cancel();
    clearTimeout(timer);
    clearInterval(timer);
  }
  if (outcome === 1) throw new ExecutionCanceledError(call.ctx.functionName, "interrupted");
  if (outcome === 2) throw vm.timeout(call);
}
