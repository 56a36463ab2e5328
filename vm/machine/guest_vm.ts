/**
 * One running guest machine: a backend VM, the guest's memory (persistent region, guard page, scratch
 * region), and the exit loop that serves a guest call (host calls, logs, aborts, exceptions, cancellation).
 * Nothing here knows which hypervisor runs the VM.
 *
 * @module
 */
import {
  ENTRY_FXRSTOR,
  ENTRY_XRSTOR,
  ENTRY_XRSTOR_SITE,
  ERROR_CODE_VECTORS,
  EXC_STACK_TOP,
  FRAME,
  FUNC_TABLE_ADDR,
  FUNC_TABLE_SIZE,
  INFO_ADDR,
  INFO_SIZE,
  LOG_LEVELS,
  MAILBOX_HOST_CALL,
  PAGE,
  PORT_ABORT,
  PORT_DONE,
  PORT_EXCEPTION,
  PORT_HOST_CALL,
  PORT_LOG,
  RFLAGS,
  STATUS_ERROR,
  STATUS_OK,
  SYSTEM_AREA_END,
} from "./abi.ts";
import { checkArgs, ProtocolError, Reader, thrownMessage, valueProblem, Writer } from "./codec.ts";
import type { EntryRegisters, VcpuThread, VirtualMachine, VmExit } from "../backend/backend.ts";
import { Mailbox, type MailboxKind } from "./mailbox.ts";
import type { ReturnType, Value } from "../types.ts";
import { backend } from "../backend/select.ts";
import { CallState } from "../interrupt_handle.ts";
import { ABI_SREGS } from "./sregs.ts";
import { freshInfo } from "./system_area.ts";
import {
  ExecutionCanceledError,
  GuestAbortedError,
  GuestCrashedError,
  MemoryAccessViolationError,
} from "../errors.ts";
import type { HostFunctions } from "../host_functions.ts";
import type { Layout } from "./layout.ts";
import { log } from "../logger.ts";
import { Mapping } from "../memory/mapping.ts";
import { PageRestorer, type RestoreRequest } from "../memory/restore_pages.ts";
import { restoreLibrary } from "../memory/restore_library.ts";
import { exhaustion } from "../resources.ts";
import type { SandboxDebugger } from "../debug/sandbox_debugger.ts";

/** The registers the IDT stub saved when the guest took an exception (docs/ABI.md, "Exceptions"). */
export interface ExceptionFrame {
  /** The guest's stack segment. */
  readonly ss: bigint;
  /** The guest's stack pointer. */
  readonly rsp: bigint;
  /** The guest's RFLAGS. */
  readonly rflags: bigint;
  /** The guest's code segment. */
  readonly cs: bigint;
  /** Where the guest was: the faulting instruction, or the one after a trap (`int3`, single step). */
  readonly rip: bigint;
  /** The error code (0 for vectors without one). */
  readonly errorCode: bigint;
  /** The guest's RAX (saved by the stub before it reports the vector in EAX). */
  readonly rax: bigint;
}

/**
 * What the exit handler decided: the call is done, or the guest resumes.
 *
 * @example
 * ```ts
 * import { DONE, RESUME } from "./guest_vm.ts";
 * console.log(RESUME, DONE); // 0 1
 * ```
 */
export const RESUME = 0, DONE = 1;

/**
 * {@linkcode RESUME}, {@linkcode DONE}, or a Promise to await before resuming (an async host function).
 *
 * @example
 * ```ts
 * import { RESUME, type Step } from "./guest_vm.ts";
 * const step: Step = RESUME;
 * console.log(step);
 * ```
 */
export type Step = typeof RESUME | typeof DONE | Promise<void>;

/**
 * One call in progress (see {@linkcode GuestVm.beginCall}).
 *
 * @example
 * ```ts ignore
 * const call = vm.beginCall({ functionName: "Echo", hostFunctions, maxExecutionTimeMs: 100 }, "sync");
 * vm.endCall(call);
 * ```
 */
export interface CallFrame {
  /** The call's context. */
  readonly ctx: RunContext;
  /** Its own time limit in ms (0: none), for the error message. */
  readonly limit: number;
  /** The effective deadline, in `performance.now()` time (Infinity: none). */
  deadline: number;
  /** How it runs: see {@linkcode GuestVm.beginCall}. */
  readonly mode: "sync" | "hot" | "async";
  /** The guest is hot: its results come through the mailbox and `out DONE` parks it. */
  readonly hot: boolean;
  /** Set when the call has ended: a host function's Promise that settles later writes nothing. */
  over: boolean;
  /**
   * The call's own limit is not in `deadline` yet: the clock is read on first need (see
   * {@linkcode GuestVm.startClock}), so a hot call answered at once reads no clock at all.
   */
  unclocked: boolean;
}

/** Effective deadlines of the calls that block this thread, innermost last (module state is per thread). */
const enclosing: number[] = [];

/** A call's own limit in ms, shortened to what is left of the enclosing deadline (never 0, which means none). */
function nestedLimitMs(limit: number, outer: number): number {
  const left = Math.max(outer - performance.now(), 0.001);
  return limit > 0 ? Math.min(limit, left) : left;
}

/** A guest I/O buffer as bytes and a DataView over the same memory. */
interface BufferView {
  bytes: Uint8Array;
  view: DataView;
}

/** What a run loop needs besides the VM: host functions, limits, and a place to record host failures. */
export interface RunContext {
  /** Name of the guest function (for errors). */
  readonly functionName: string;
  /** Host functions the guest may call. */
  readonly hostFunctions: HostFunctions;
  /** Time limit, 0 for none. */
  readonly maxExecutionTimeMs: number;
  /** Set by the loop when a host function threw during the call. */
  hostFailure?: { name: string; error: unknown };
}

/**
 * A VM with one vCPU over the guest's memory: the persistent region at guest-physical 0, an unmapped guard
 * page, and the scratch region.
 */
export class GuestVm {
  readonly layout: Layout;
  /** The persistent region: guest-physical 0 .. persistentSize. */
  readonly persistent: Mapping;
  /** The scratch region: stack and I/O buffers. */
  readonly scratch: Mapping;
  /** The whole range (persistent, guard, scratch) mapped into the VM. */
  readonly #guest: Mapping;
  readonly #vm: VirtualMachine;
  readonly callState: CallState = new CallState();
  /** Set while a call runs: refuses re-entry from host functions. */
  running = false;
  /** False once a run ended in an error: the vCPU may be mid-exception and is not reused. */
  #clean = true;
  /** gdb stub and crash cores (vm/debug/sandbox_debugger.ts); undefined, and free, unless configured. */
  debugger: SandboxDebugger | undefined;
  /**
   * Guest pages written host-side (by a debugger) since memory last equalled a snapshot. The hypervisor's
   * dirty log does not see those writes, so a restore copies (persistent) or zeroes (scratch) them as well.
   */
  readonly #hostWritten = new Set<number>();
  /**
   * For a hot sandbox: the guest's idle spin in TSC ticks (see `SandboxConfiguration.hot`); undefined for
   * an ordinary one.
   */
  hotIdleTicks: bigint | undefined;
  /** For a hot sandbox: the idle spin in ms, and the calls made so far (for the idle watch). */
  hotIdleMs = 0;
  hotCalls = 0;
  /** A run was started on the run thread and its exit has not been read yet. */
  exitPending = false;
  #mailbox: Mailbox | undefined;

  private constructor(
    layout: Layout,
    guest: Mapping,
    persistent: Mapping,
    scratch: Mapping,
    vm: VirtualMachine,
  ) {
    this.layout = layout;
    this.#guest = guest;
    this.persistent = persistent;
    this.scratch = scratch;
    this.#vm = vm;
    this.#pages = new PageRestorer(persistent, scratch, layout.scratchBase / PAGE, {
      hostBuffers: [
        { offset: layout.inputBase - layout.scratchBase, length: layout.inputSize },
        { offset: layout.outputBase - layout.scratchBase, length: layout.outputSize },
      ],
      fresh: { offset: INFO_ADDR, length: INFO_SIZE },
    });
  }

  /** Restore's page work over this guest's memory. */
  readonly #pages: PageRestorer;

  /**
   * Creates a VM: reserves the guest's memory (persistent region, guard page, scratch region) as one host
   * range mapped into the VM at once, lets `fill` provide the persistent region (write into it, or map a
   * snapshot over it), and loads the ABI's special registers. One range instead of two halves the memory
   * map updates, which cost 60-110 µs each on KVM here (SRCU synchronisation).
   */
  static create(layout: Layout, fill: (persistent: Mapping) => void): GuestVm {
    const owned: { close(): void }[] = [];
    try {
      const guest = Mapping.reserve(layout.scratchBase + layout.scratchSize, [
        layout.persistentSize,
        layout.scratchBase,
      ]);
      owned.push(guest);
      // The guard page is never mapped in the guest's page tables; no access for the host either.
      guest.protectNone(layout.persistentSize, PAGE);
      const persistent = guest.part(0, layout.persistentSize);
      const scratch = guest.part(layout.scratchBase, layout.scratchSize);
      fill(persistent);
      prefaultScratch(scratch, layout);
      const vm = backend().createVm();
      owned.push({ close: () => vm.release(false) });
      vm.mapMemory({
        address: guest.address,
        size: guest.size,
        guard: { offset: layout.persistentSize, size: PAGE },
        trackedPages: layout.persistentSize / PAGE,
      });
      vm.setSregs(ABI_SREGS);
      return new GuestVm(layout, guest, persistent, scratch, vm);
    } catch (e) {
      for (const o of owned.reverse()) o.close();
      throw exhaustion(e);
    }
  }

  /** Input buffer bytes (inside the scratch mapping). */
  get input(): Uint8Array {
    return this.#buffers().input.bytes;
  }

  /** A writer over the input buffer. */
  inputWriter(): Writer {
    this.#noteHostWrites();
    const b = this.#buffers().input;
    return this.#lastInput = new Writer(b.bytes, b.view, b.bytes.length);
  }

  /** A reader over the output buffer. */
  outputReader(): Reader {
    const b = this.#buffers().output;
    return new Reader(b.bytes, b.view, b.bytes.length);
  }

  /** A writer over the output buffer (host-call answers). */
  outputWriter(): Writer {
    this.#noteHostWrites();
    const b = this.#buffers().output;
    return this.#lastOutput = new Writer(b.bytes, b.view, b.bytes.length);
  }

  #lastInput: Writer | undefined;
  #lastOutput: Writer | undefined;

  /** Host writes are not in the hypervisor's log: remember how far they reached, for restore to zero. */
  #noteHostWrites(): void {
    if (this.#lastInput !== undefined) {
      this.#inputWritten = Math.max(this.#inputWritten, this.#lastInput.high);
    }
    if (this.#lastOutput !== undefined) {
      this.#outputWritten = Math.max(this.#outputWritten, this.#lastOutput.high);
    }
    this.#lastInput = this.#lastOutput = undefined;
  }

  #views: { input: BufferView; output: BufferView } | undefined;

  /** Views of both buffers, made once: the scratch region keeps its address for the VM's life. */
  #buffers(): { input: BufferView; output: BufferView } {
    if (this.#views === undefined) {
      const l = this.layout, all = this.scratch.bytes;
      const region = (base: number, size: number) => {
        const bytes = all.subarray(base - l.scratchBase, base - l.scratchBase + size);
        return { bytes, view: new DataView(bytes.buffer, bytes.byteOffset, size) };
      };
      this.#views = { input: region(l.inputBase, l.inputSize), output: region(l.outputBase, l.outputSize) };
    }
    return this.#views;
  }

  /** The VM's run thread (started on first use). */
  vcpuThread(): VcpuThread {
    return this.#vm.vcpuThread();
  }

  /** The mailbox (docs/ABI.md, "Hot mode"). */
  get mailbox(): Mailbox {
    return this.#mailbox ??= new Mailbox(this.scratch, this.layout);
  }

  /** Makes this a hot sandbox: its guest polls the mailbox for `idleSpinMs` before it parks. */
  makeHot(idleSpinMs: number): void {
    this.hotIdleMs = idleSpinMs;
    this.hotIdleTicks = BigInt(Math.round(idleSpinMs * this.vcpuThread().ticksPerMs));
  }

  /** True once {@linkcode close} ran. */
  get closed(): boolean {
    return this.#guest.closed;
  }

  /**
   * Parks a hot guest (or any run on the run thread): stops the run if it is still going and reads its
   * exit, so that the vCPU is idle and this thread may use it. Returns an error when the guest had left its
   * mailbox loop meanwhile (an abort, an exception, any exit but a park), for the sandbox to be poisoned
   * with; undefined when it was parked or only polling.
   */
  park(): Error | undefined {
    if (!this.exitPending) return undefined;
    const t = this.#vm.vcpuThread();
    if (t.busy) {
      t.stop();
      t.finishedSync();
    }
    this.exitPending = false;
    let exit: VmExit;
    try {
      exit = t.exit();
    } catch (e) {
      this.#clean = false;
      return e as Error;
    }
    const port = exit.kind === "io" && exit.write && exit.size === 4 && !exit.string ? exit.port : -1;
    if (exit.kind === "interrupted" || port === PORT_DONE) {
      return undefined;
    }
    this.#clean = false;
    if (port === PORT_ABORT) return this.#abort();
    if (port === PORT_EXCEPTION && exit.kind === "io") return this.#exception(exit.value);
    return exit.kind === "io"
      ? new GuestCrashedError(
        `protocol error: the idle guest left its mailbox loop (out to port 0x${exit.port.toString(16)})`,
      )
      : this.#unexpectedExit(exit);
  }

  /**
   * Next run starts at `rip` with a fresh stack (`rdi` as its first argument), through the entry code of the
   * info page, which first puts x87/SSE/AVX state in its initial state (docs/ABI.md, "Entry"): no vector
   * register survives from the state before, at the cost of a few instructions in the guest instead of a
   * `KVM_SET_XSAVE` ioctl (13 µs on PVM hosts).
   */
  enterAt(rip: bigint, rdi = 0n): void {
    this.#vm.setEntryRegisters(this.#entryAt(rip, rdi));
  }

  /** The registers of an entry at `rip`, now the one staged last ({@linkcode enterAt}). */
  #entryAt(rip: bigint, rdi: bigint): Readonly<Required<EntryRegisters>> {
    const code = xrstorAtCpl3 ? ENTRY_XRSTOR_RIP : ENTRY_FXRSTOR_RIP;
    let e = this.#entry;
    // The same entry as the last one (every restore of a snapshot) is the same object, which the backend
    // has encoded already.
    if (e === undefined || e.r11 !== rip || e.rdi !== rdi || e.rip !== code) {
      e = this.#entry = { rip: code, rsp: BigInt(this.layout.stackTop), rflags: RFLAGS, rdi, r11: rip };
    }
    return e;
  }

  /** The entry staged last (`r11`: where the entry code jumps to); never changed once staged. */
  #entry: Readonly<Required<EntryRegisters>> | undefined;

  /**
   * Starts a call: computes its deadline, marks it running for interrupt handles and re-entry checks.
   * `mode`: `"sync"` runs the vCPU on this thread (`run()`), `"hot"` waits on this thread for a hot guest
   * running on the run thread, `"async"` runs or waits without blocking this thread. Calls that block this
   * thread nest: their deadline is the earlier of their own and the enclosing call's (a host function of
   * one sandbox may call another), which `"async"` calls are not part of.
   */
  beginCall(ctx: RunContext, mode: "sync" | "hot" | "async", lazyClock = false): CallFrame {
    const limit = ctx.maxExecutionTimeMs;
    let deadline: number, unclocked = false;
    if (mode === "sync") {
      const outer = enclosing.length === 0 ? Infinity : enclosing[enclosing.length - 1];
      deadline = this.#vm.armTimeout(outer === Infinity ? limit : nestedLimitMs(limit, outer));
    } else {
      // A clock read costs ~130 ns, a sixth of a hot call: with lazyClock, the clock is read by
      // startClock(), which the caller calls before it waits, and onExit/onMessage before they handle
      // anything (a host function may call another sandbox, which reads `enclosing`).
      unclocked = lazyClock && limit > 0;
      deadline = limit > 0 && !unclocked ? performance.now() + limit : Infinity;
      if (mode === "hot" && enclosing.length > 0) {
        deadline = Math.min(deadline, enclosing[enclosing.length - 1]);
      }
    }
    if (mode !== "async") enclosing.push(deadline);
    const threaded = mode !== "sync";
    this.callState.begin(threaded ? this.vcpuThread().interruptTarget.tid : 0);
    this.running = true;
    return {
      ctx,
      limit,
      deadline,
      mode,
      hot: threaded && this.hotIdleTicks !== undefined,
      over: false,
      unclocked,
    };
  }

  /**
   * Puts the call's own limit into its deadline, counted from now, if {@linkcode beginCall} left it out
   * (`lazyClock`). Called before anything reads the deadline: the limit then counts from a moment at most
   * a short spin (~1.5 µs) after the call began.
   */
  startClock(call: CallFrame): void {
    if (!call.unclocked) return;
    call.unclocked = false;
    this.#setDeadline(call, Math.min(call.deadline, performance.now() + call.limit));
  }

  /** Ends a call started with {@linkcode beginCall}. */
  endCall(call: CallFrame): void {
    call.over = true;
    this.running = false;
    if (call.mode !== "async") enclosing.pop();
    if (call.mode === "sync") this.#vm.disarmTimeout();
    this.callState.end();
  }

  /** A run ended in an error: the vCPU is not reused as it is; protocol errors become crashes. */
  failed(e: unknown): unknown {
    this.#clean = false;
    const error = e instanceof ProtocolError ? new GuestCrashedError(`protocol error: ${e.message}`) : e;
    // Debugger: a core file for a crash, and the news for gdb.
    this.debugger?.runFailed(error);
    return error;
  }

  /**
   * Runs the vCPU on this thread until the guest reports `DONE`. Everything else is handled here or thrown
   * as a typed error (which poisons the sandbox, as the caller decides).
   */
  run(ctx: RunContext): void {
    const vm = this.#vm;
    const call = this.beginCall(ctx, "sync");
    try {
      // Debugger: wait for gdb before the first run, take over a debugger that connected, report Ctrl-C.
      if (this.debugger !== undefined) {
        this.#setDeadline(call, this.debugger.enterRun(ctx.functionName, call.deadline));
      }
      for (;;) {
        if (
          this.onExit(this.debugger === undefined ? vm.run() : this.debugger.run(), call) === DONE
        ) return;
      }
    } catch (e) {
      throw this.failed(e);
    } finally {
      this.endCall(call);
    }
  }

  /**
   * XRSTOR at CPL3 needs CR4.OSXSAVE, which hardware KVM takes from the guest's CR4 (clear: #UD) and PVM
   * from the host's (set): the entry code tries XRSTOR first and, where it faults, this process uses the
   * FXRSTOR entry from then on (there a guest cannot use AVX state either, so FXRSTOR resets all it can reach).
   */
  #entryFallback(vector: number): boolean {
    if (vector !== 6 || this.#entry === undefined || !xrstorAtCpl3) return false;
    if (this.exceptionFrame().rip !== BigInt(ENTRY_XRSTOR_SITE)) return false;
    xrstorAtCpl3 = false;
    this.#vm.setSregs(ABI_SREGS); // back from the exception stub's CPL0
    this.enterAt(this.#entry.r11, this.#entry.rdi);
    return true;
  }

  /**
   * Handles one exit of a call, the one place that interprets exits for every way of running a call
   * (`run()` here, the run-thread loops in `async_call.ts`): returns {@linkcode DONE}, {@linkcode RESUME},
   * or, for a host function of an asynchronous call that returned a Promise, a Promise to await before
   * resuming. Throws the typed error of a failure.
   */
  onExit(exit: VmExit, call: CallFrame): Step {
    this.startClock(call); // host functions, nested calls and the checks below read the deadline
    if (exit.kind === "io") {
      const port = exit.port;
      if (!exit.write || exit.size !== 4 || exit.string) {
        throw new GuestCrashedError(
          `protocol error: port 0x${port.toString(16)} accessed with ${
            exit.write ? "out" : "in"
          }, size ${exit.size}${exit.string ? ", string form" : ""}; expected one 32-bit out`,
        );
      }
      // A hot guest parks with `out DONE` (its results come through the mailbox): resume it.
      if (port === PORT_DONE) return call.hot ? RESUME : DONE;
      if (port === PORT_HOST_CALL) return this.hostCall(call);
      if (port === PORT_LOG) {
        this.#log();
        return RESUME;
      }
      if (port === PORT_ABORT) {
        // Debugger: report the abort as SIGABRT; gdb may resume the guest.
        const resumed = this.debugger?.abort(call.deadline);
        if (resumed === undefined) throw this.#abort();
        this.#setDeadline(call, resumed);
        return RESUME;
      }
      if (port === PORT_EXCEPTION) {
        if (this.#entryFallback(exit.value)) return RESUME;
        // Debugger: breakpoints, single steps and faults stop in gdb, which may resume the guest.
        const resumed = this.debugger?.exception(exit.value, call.deadline);
        if (resumed === undefined) throw this.#exception(exit.value);
        this.#setDeadline(call, resumed);
        return RESUME;
      }
      throw new GuestCrashedError(`protocol error: out to undefined port 0x${port.toString(16)}`);
    }
    if (exit.kind === "interrupted") {
      // The run thread consumes its own signal; this thread's is consumed here.
      if (call.mode === "sync") this.#vm.acknowledgeInterrupt();
      if (this.callState.killed()) throw new ExecutionCanceledError(call.ctx.functionName, "interrupted");
      if (performance.now() >= call.deadline) throw this.timeout(call);
      // Debugger: a gdb that connected, or gdb's Ctrl-C.
      if (this.debugger !== undefined) this.#setDeadline(call, this.debugger.interrupted(call.deadline));
      return RESUME;
    }
    throw this.#unexpectedExit(exit);
  }

  /**
   * A new deadline for a running call (the debugger pauses the time limit while gdb has the guest stopped);
   * calls nested in it see it too.
   */
  #setDeadline(call: CallFrame, deadline: number): void {
    call.deadline = deadline;
    if (call.mode !== "async") enclosing[enclosing.length - 1] = deadline;
  }

  /** Handles a hot guest's mailbox message other than a result: a host call or a log record. */
  onMessage(kind: MailboxKind, call: CallFrame): Step {
    this.startClock(call); // host functions and nested calls read the deadline
    if (kind === MAILBOX_HOST_CALL) return this.hostCall(call);
    this.#log();
    return RESUME;
  }

  /** The error for a call that ran out of time (its own limit or the enclosing call's). */
  timeout(call: CallFrame): ExecutionCanceledError {
    return call.limit > 0
      ? new ExecutionCanceledError(call.ctx.functionName, "timeout", call.limit)
      : new ExecutionCanceledError(call.ctx.functionName, "timeout");
  }

  /**
   * Serves a host call from the output buffer and writes the answer there. A host function of an
   * asynchronous call may return a Promise: the answer is then written when it settles (unless the call
   * has ended meanwhile), and the returned Promise says when.
   */
  hostCall(call: CallFrame): Step {
    const ctx = call.ctx;
    const r = this.outputReader();
    const name = r.string("host function name");
    const argc = r.u32("host call argument count");
    if (argc > 64) throw new ProtocolError(`host call ${name} has ${argc} arguments, at most 64 allowed`);
    const args = [];
    for (let i = 0; i < argc; i++) args.push(r.value(`host call ${name} argument ${i}`));
    const entry = ctx.hostFunctions.get(name);
    if (entry === undefined) return this.#answerError(call, `host function ${name} is not registered`);
    try {
      checkArgs("Host function", name, entry.signature, args);
    } catch (e) {
      return this.#answerError(call, (e as Error).message);
    }
    let result;
    try {
      // The synchronous part of an asynchronous call's host function blocks this thread: a sandbox it
      // calls synchronously is bounded by the asynchronous call's deadline.
      if (call.mode === "async") enclosing.push(call.deadline);
      try {
        result = entry.fn(...args);
      } finally {
        if (call.mode === "async") enclosing.pop();
      }
    } catch (e) {
      ctx.hostFailure = { name, error: e };
      return this.#answerError(call, thrownMessage(e));
    }
    if (result instanceof Promise) {
      if (call.mode !== "async") {
        result.catch(() => {});
        const e = new TypeError(
          `Host function ${name} returned a Promise; host functions must be synchronous (in callAsync they may be async)`,
        );
        ctx.hostFailure = { name, error: e };
        return this.#answerError(call, e.message);
      }
      return result.then(
        (value) => void (call.over || this.#answer(call, name, entry.signature.returns, value)),
        (e) => {
          if (call.over) return;
          ctx.hostFailure = { name, error: e };
          this.#answerError(call, thrownMessage(e));
        },
      );
    }
    return this.#answer(call, name, entry.signature.returns, result);
  }

  /** Checks a host function's value and writes it as the answer (or the error it is). */
  #answer(call: CallFrame, name: string, returns: ReturnType, result: unknown): Step {
    const problem = valueProblem(returns, result);
    if (problem !== undefined) {
      const e = new TypeError(
        `Host function ${name} returned a bad value: ${problem.replace(/^range: /, "")}`,
      );
      call.ctx.hostFailure = { name, error: e };
      return this.#answerError(call, e.message);
    }
    const w = this.outputWriter();
    try {
      w.u32(STATUS_OK);
      w.value(returns, result as Value);
    } catch {
      return this.#answerError(
        call,
        `result of host function ${name} does not fit the ${this.layout.outputSize}-byte output buffer`,
      );
    }
    return this.#afterHostCall(call);
  }

  #answerError(call: CallFrame, failure: string): Step {
    const w = this.outputWriter();
    w.u32(STATUS_ERROR);
    w.string(failure.slice(0, Math.max(0, Math.floor(this.layout.outputSize / 4) - 16)));
    return this.#afterHostCall(call);
  }

  #afterHostCall(call: CallFrame): Step {
    // A nested sandbox called from the host function may have run past this call's deadline.
    if (performance.now() >= call.deadline) throw this.timeout(call);
    return RESUME;
  }

  #log(): void {
    const r = this.outputReader();
    const level = r.u32("log level");
    const message = r.string("log message");
    const name = LOG_LEVELS[Math.min(level, 4)] as Exclude<typeof LOG_LEVELS[number], "off">;
    log({ level: name, source: "guest", message });
  }

  #abort(): GuestAbortedError {
    const r = this.outputReader();
    const code = r.u32("abort code");
    return new GuestAbortedError(code, r.string("abort message"));
  }

  #exception(vector: number): Error {
    const frame = this.exceptionFrame();
    const { errorCode, rip, rsp } = frame;
    if (vector === 14) {
      const cr2 = this.#vm.getSregs().cr2;
      const l = this.layout;
      // A fault on the guard page is a stack overflow when the stack pointer has reached it too (a stray
      // access to the guard page from elsewhere is an ordinary access violation).
      const guard = BigInt(l.persistentSize), stackBottom = BigInt(l.scratchBase);
      if (cr2 >= guard && cr2 < stackBottom && rsp < stackBottom + BigInt(PAGE)) {
        return new GuestCrashedError("stack overflow (page fault on the stack guard page)", {
          vector,
          rip,
          cr2,
          errorCode,
        });
      }
      const access = errorCode & 16n ? "execute" : errorCode & 2n ? "write" : "read";
      const detail = errorCode & 1n ? "page is protected" : "page is not mapped";
      return new MemoryAccessViolationError(cr2, access, rip, detail);
    }
    return new GuestCrashedError(vector === 3 ? "breakpoint" : "CPU exception", {
      vector,
      rip,
      errorCode: ERROR_CODE_VECTORS.has(vector) ? errorCode : undefined,
    });
  }

  /** The frame the IDT stub left on the exception stack (docs/ABI.md, "Exceptions"). */
  exceptionFrame(): ExceptionFrame {
    const bytes = this.persistent.read(EXC_STACK_TOP + FRAME.RAX, -FRAME.RAX);
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const at = (offset: number) => v.getBigUint64(offset - FRAME.RAX, true);
    return {
      ss: at(FRAME.SS),
      rsp: at(FRAME.RSP),
      rflags: at(FRAME.RFLAGS),
      cs: at(FRAME.CS),
      rip: at(FRAME.RIP),
      errorCode: at(FRAME.ERROR_CODE),
      rax: at(FRAME.RAX),
    };
  }

  #unexpectedExit(exit: VmExit): Error {
    const rip = () => this.#vm.instructionPointer();
    switch (exit.kind) {
      case "shutdown":
        return new GuestCrashedError("triple fault", { rip: rip() });
      case "mmio":
        return new MemoryAccessViolationError(
          exit.gpa,
          exit.write ? "write" : "read",
          rip(),
          "no memory there",
        );
      case "halt":
        return new GuestCrashedError("guest halted", { rip: rip() });
      case "failed":
        return new GuestCrashedError(exit.reason, { rip: rip() });
      default:
        return new GuestCrashedError(`unexpected VM exit ${exit.kind}`, { rip: rip() });
    }
  }

  /**
   * Brings the vCPU back to the ABI's entry state before a restore: finishes whatever the last run left
   * pending, resets x87/SSE/AVX state and the special registers, and after a failed run also everything a
   * guest could only have changed at CPL0 (debug registers, MSRs, XCR0, pending events).
   */
  resetCpu(): void {
    this.#finishAndReset();
    this.#vm.setSregs(ABI_SREGS);
  }

  /** Finishes what the last run left pending; after a failed run, resets what only CPL0 could change. */
  #finishAndReset(): void {
    this.#vm.resetVcpu(!this.#clean);
    this.#clean = true;
  }

  /**
   * An incremental restore and the entry after it, as {@linkcode resetCpu}, then putting memory back, then
   * {@linkcode enterAt}`(entryAddr)`. Memory goes back to the snapshot it was last synchronised with,
   * touching only what changed: the persistent pages the guest wrote are copied back (from `system` below
   * `SYSTEM_AREA_END`, from `blob` above), the scratch pages it wrote and the parts of the I/O buffers the host
   * wrote are zeroed, and the info page gets a new generation (docs/ABI.md). All of it, and the staging of
   * the vCPU's registers where the backend stages them in memory, is one call of the page restorer. Returns
   * false, having done nothing, when dirty tracking has not started (the caller maps the snapshot afresh).
   *
   * Dirty bits are sticky (see `VirtualMachine.takeDirtyPages`): the persistent pages a guest writes on
   * every call are copied back on every restore without being write-protected again, for
   * {@linkcode STICKY_ROUNDS} restores (fewer for larger sets, see {@linkcode stickyRounds}); scratch pages
   * stay untracked once written.
   */
  restoreAndEnter(blob: Mapping, system: Mapping, entryAddr: bigint): boolean {
    const vm = this.#vm;
    if (!vm.tracking) return false;
    // First, so that whatever KVM still had to finish (it may write guest memory) is undone below.
    this.#finishAndReset();
    const entry = this.#entryAt(entryAddr, 0n);
    // Where the page restorer is native, it also writes the staged registers and collects a dirty ring;
    // else the backend's setters and `takeDirtyPages()` do.
    const native = restoreLibrary() !== undefined;
    const staging = native ? vm.stageEntryInMemory(entry, ABI_SREGS) : undefined;
    if (staging === undefined) {
      vm.setSregs(ABI_SREGS);
      vm.setEntryRegisters(entry);
    }
    const ring = native ? vm.dirtyRing : undefined;
    const dirty = vm.takeDirtyPages(ring !== undefined);
    // Debugger: pages written host-side are not in the log.
    this.#addHostWritten(dirty);
    const zeroScratch = vm.tracksScratch && this.#scratchTracked;
    this.#noteHostWrites();
    const r = this.#request ??= {
      dirty,
      ring,
      system,
      blob,
      systemEnd: SYSTEM_AREA_END / PAGE,
      zeroScratch,
      inputWritten: 0,
      outputWritten: 0,
      fresh: 0,
      staging,
    };
    r.dirty = dirty;
    r.ring = ring;
    r.system = system;
    r.blob = blob;
    r.zeroScratch = zeroScratch;
    r.inputWritten = this.#inputWritten;
    r.outputWritten = this.#outputWritten;
    r.fresh = freshInfo();
    r.staging = staging;
    const copied = this.#pages.restore(r);
    this.#inputWritten = this.#outputWritten = 0;
    if (!zeroScratch) this.resetScratch();
    else this.#mailbox?.clear();
    // Last: a backend may clear more than the persistent bits (a dirty ring resets every collected page),
    // and the scratch pages above were found through those bits.
    if (++this.#restoresSinceClear >= stickyRounds(copied)) {
      vm.clearDirtyPages(dirty, this.layout.persistentSize / PAGE);
      this.#restoresSinceClear = 0;
    }
    return true;
  }

  /** The page restorer's request, reused by every restore. */
  #request: RestoreRequest | undefined;

  /**
   * Memory now equals a snapshot: track writes from here. Tracking starts only now, not at creation,
   * because every first write to a page under dirty logging takes an extra write-protection fault (measured
   * on KVM: cold start to the first call 620 µs with logging from the start, 448 µs without).
   */
  synced(): void {
    this.#hostWritten.clear();
    const vm = this.#vm;
    if (!vm.tracking) {
      vm.startDirtyTracking();
      // Scratch pages written before tracking started are not in the log: the next restore zeroes all.
      this.#scratchTracked = false;
      return;
    }
    vm.clearDirtyPages(vm.takeDirtyPages(), this.layout.persistentSize / PAGE);
    // The backend may have cleared the scratch pages' bits too: the next restore zeroes all of it.
    this.#scratchTracked = false;
  }

  /**
   * Records a host-side write (a debugger's) into guest memory: the hypervisor's dirty log does not see it,
   * so the next restore copies (persistent) or zeroes (scratch) these pages as well.
   */
  markHostWritten(gpa: number, length: number): void {
    for (let page = Math.floor(gpa / PAGE); page * PAGE < gpa + length; page++) this.#hostWritten.add(page);
  }

  /** Adds the pages of {@linkcode markHostWritten} to a dirty bitmap, and forgets them. */
  #addHostWritten(dirty: BigUint64Array): void {
    if (this.#hostWritten.size === 0) return;
    for (const page of this.#hostWritten) {
      if (page >>> 6 < dirty.length) dirty[page >>> 6] |= 1n << BigInt(page & 63);
    }
    this.#hostWritten.clear();
  }

  /** Restores since the dirty bits were last cleared (see {@linkcode STICKY_ROUNDS}). */
  #restoresSinceClear = 0;

  /** Scratch pages written since tracking started are in the log (so restore can zero just those). */
  #scratchTracked = false;

  /** Drops every scratch page (the region reads as zeros again) and prefaults the hot ones. */
  resetScratch(): void {
    this.#mailbox?.reset();
    if (this.layout.scratchSize <= ZERO_SCRATCH_MAX) {
      // Zeroing keeps the pages, and the hypervisor's mappings of them: dropping them would make the next
      // call fault each one in again (measured on a 96 KiB scratch: next call 160 µs after dropping, 90 µs
      // after zeroing).
      this.scratch.bytes.fill(0);
    } else {
      this.scratch.discard(0, this.layout.scratchSize);
      prefaultScratch(this.scratch, this.layout);
    }
    this.#lastInput = this.#lastOutput = undefined;
    this.#inputWritten = this.#outputWritten = 0;
    this.#scratchTracked = this.#vm.tracking;
  }

  /**
   * Records that the host wrote `end` bytes at the start of the input buffer without a writer (the boot
   * record): host writes are not in the hypervisor's log, so restore zeroes these extents itself.
   */
  hostWroteInput(end: number): void {
    this.#inputWritten = Math.max(this.#inputWritten, end);
  }

  #inputWritten = 0;
  #outputWritten = 0;

  /** Writes the function table (docs/ABI.md) into persistent memory. */
  writeFunctionTable(list: Uint8Array): void {
    if (list.length > FUNC_TABLE_SIZE - 4) {
      throw new GuestCrashedError(
        `protocol error: the guest's function list takes ${list.length} bytes, at most ${
          FUNC_TABLE_SIZE - 4
        } allowed`,
      );
    }
    const table = new Uint8Array(4 + list.length);
    new DataView(table.buffer).setUint32(0, list.length, true);
    table.set(list, 4);
    this.persistent.write(FUNC_TABLE_ADDR, table);
  }

  /** The persistent region now maps other host pages (another snapshot's view): tell the hypervisor. */
  persistentReplaced(): void {
    this.#vm.memoryReplaced(0, this.layout.persistentSize);
  }

  /** The backend VM, for the debugger and core dumps (registers, between exits only). */
  get machine(): VirtualMachine {
    return this.#vm;
  }

  /** The interrupt target of the VM (see `InterruptHandle`). */
  get interruptTarget(): VirtualMachine["interruptTarget"] {
    return this.#vm.interruptTarget;
  }

  /**
   * Releases the VM and both memory regions: a VM whose last run ended normally goes back to the backend's
   * pool; any other is destroyed.
   */
  close(): void {
    this.park();
    this.debugger?.close();
    this.#vm.release(this.#clean);
    this.#guest.close();
  }
}

/** The entry code's two entry points (docs/ABI.md, "Entry"), as the vCPU's RIP. */
const ENTRY_XRSTOR_RIP = BigInt(ENTRY_XRSTOR), ENTRY_FXRSTOR_RIP = BigInt(ENTRY_FXRSTOR);

/** Whether XRSTOR works at CPL3 on this host (see `GuestVm.#entryFallback`); found out on the first entry. */
let xrstorAtCpl3 = true;

/**
 * Restores after which the sticky dirty pages are write-protected again, so that pages a guest stopped
 * writing leave the set copied back on every restore. Copying a page back costs ~0.2–0.4 µs; protecting it
 * again costs its share of one `KVM_RESET_DIRTY_RINGS` / `KVM_CLEAR_DIRTY_LOG` plus a ~2.5 µs fault at its
 * next write (PVM): keeping a page sticky pays as long as the guest writes it about once in 8 restores.
 */
const STICKY_ROUNDS = 32;

/** Sets of more than this many pages are cleared after {@linkcode STICKY_ROUNDS_LARGE} restores. */
const STICKY_LARGE = 64;
const STICKY_ROUNDS_LARGE = 8;

/** Sets of more than this many pages (64 MiB, ~5 ms to copy) are cleared on every restore. */
const STICKY_MAX = 16384;

/** How many restores a sticky set of `pages` pages lives (see {@linkcode STICKY_ROUNDS}). */
function stickyRounds(pages: number): number {
  return pages > STICKY_MAX ? 1 : pages > STICKY_LARGE ? STICKY_ROUNDS_LARGE : STICKY_ROUNDS;
}

/** Scratch regions up to this size are zeroed on restore; bigger ones are dropped and refaulted. */
const ZERO_SCRATCH_MAX = 1024 * 1024;

/** How much of each hot scratch range to prefault. */
const PREFAULT = 16 * 1024;

/**
 * Allocates the host pages a call touches first (top of the stack, start of both buffers) before the guest
 * runs. A guest fault on a page the host has not allocated costs a host page fault on top of the hypervisor's
 * fault (measured on KVM: guest init 410 µs without, 252 µs with).
 */
function prefaultScratch(scratch: Mapping, l: Layout): void {
  const stackTop = l.stackTop - l.scratchBase;
  const stackPart = Math.min(PREFAULT, l.stackSize);
  scratch.prefault(stackTop - stackPart, stackPart + Math.min(PREFAULT, l.inputSize));
  scratch.prefault(l.outputBase - l.scratchBase, Math.min(PREFAULT, l.outputSize));
}
