/**
 * An initialised sandbox that runs guest functions.
 *
 * @module
 */
import {
  ERR_HOST_FUNCTION,
  LOG_LEVELS,
  PAGE,
  REQ_CALL,
  STATUS_ERROR,
  STATUS_NOT_FOUND,
  STATUS_OK,
} from "./machine/abi.ts";
import { BufferFullError, checkArgs, ProtocolError } from "./machine/codec.ts";
import { GuestVm, type RunContext } from "./machine/guest_vm.ts";
import { runAsync, runHot } from "./machine/async_call.ts";
import { formatHostFunctionSignature } from "../format/host_functions.ts";
import { initialise } from "./machine/init.ts";
import { newGeneration, prefaultInfoAndImage, writeInfoPage } from "./machine/system_area.ts";
import { log } from "./logger.ts";
import type { Layout } from "./machine/layout.ts";
import type { Blob } from "./memory/blob.ts";
import type { Mapping } from "./memory/mapping.ts";
import {
  live,
  recordHostFunction,
  recordHostFunctions,
  type Snapshot,
  type SnapshotData,
  snapshotFromMemory,
} from "./snapshot.ts";
import { InterruptHandle } from "./interrupt_handle.ts";
import { resolveConfiguration, type ResolvedConfiguration, type SandboxConfiguration } from "./config.ts";
import {
  GuestCrashedError,
  GuestError,
  GuestFunctionNotFoundError,
  HostFunctionError,
  HostFunctionMismatchError,
  PoisonedSandboxError,
  SandboxBusyError,
  SandboxClosedError,
  SnapshotSandboxMismatchError,
} from "./errors.ts";
import { HostFunctions } from "./host_functions.ts";
import type { GuestFunctionInfo, Value } from "./types.ts";
import {
  binaryInfo,
  type GuestBinaryInfo,
  SandboxDebugger,
  writeSandboxCore,
} from "./debug/sandbox_debugger.ts";

/** What a sandbox needs besides its VM. */
export interface SandboxState {
  /** Guest address of the dispatch loop. */
  readonly dispatch: bigint;
  /** The guest's functions by name. */
  readonly functions: ReadonlyMap<string, GuestFunctionInfo>;
  /** Host functions the guest may call. */
  readonly hostFunctions: HostFunctions;
  /** Configuration. */
  readonly config: ResolvedConfiguration;
  /** Restore-compatibility family (see `SnapshotSandboxMismatchError`). */
  readonly family: number;
  /** The snapshot whose memory the sandbox was last synchronised to, if any. */
  readonly base?: Snapshot;
  /** The guest binary (path and entry), when known: for debuggers and core dumps. */
  readonly binary?: GuestBinaryInfo;
}

let construct: (vm: GuestVm, state: SandboxState) => MultiUseSandbox;

/**
 * A running sandbox: call guest functions by name, synchronously (`call`) or without blocking the event
 * loop (`callAsync`, which runs the guest on a thread of its own).
 *
 * Errors that leave guest state undefined (abort, crash, memory access violation, cancellation) poison the
 * sandbox: later calls throw `PoisonedSandboxError`. `GuestError`, `HostFunctionError`,
 * `GuestFunctionNotFoundError` and argument errors do not.
 *
 * A hot sandbox (`SandboxConfiguration.hot`) keeps its guest running between calls, polling a mailbox, so
 * that `call` and `callAsync` cost no VM exit; it parks itself when idle.
 *
 * @example
 * ```ts ignore
 * import { UninitializedSandbox } from "../mod.ts";
 * using sbx = new UninitializedSandbox("./guest/bin/testguest").evolve();
 * console.log(sbx.call("Echo", "hello")); // "hello"
 * ```
 */
export class MultiUseSandbox {
  #vm: GuestVm | undefined;
  #state: SandboxState;
  readonly #logLevel: number;
  #poison: Error | undefined;
  /** A `callAsync` call is in flight. */
  #inFlight = false;

  /** Use `UninitializedSandbox.evolve()` or `MultiUseSandbox.fromSnapshot()`. */
  private constructor(internal: unknown) {
    const { vm, state } = internal as { vm: GuestVm; state: SandboxState };
    this.#vm = vm;
    this.#state = state;
    this.#logLevel = LOG_LEVELS.indexOf(state.config.guestLogLevel);
    // A debugged guest runs on the calling thread, where the gdb stub lives: never hot.
    if (state.config.hot !== undefined && vm.debugger === undefined) vm.makeHot(state.config.hot.idleSpinMs);
    unclosed.register(this, vm, vm);
  }

  static {
    construct = (vm, state) => new MultiUseSandbox({ vm, state });
  }

  /** True once a failure left guest state undefined. */
  get poisoned(): boolean {
    return this.#poison !== undefined;
  }

  /**
   * A typed function for one guest function, so results need no casts: `P` are the parameter types and `R`
   * the result type as JavaScript sees them (`i32`… `f64` ↔ `number`, `i64`/`u64` ↔ `bigint`, `bool` ↔
   * `boolean`, `string`, `bytes` ↔ `Uint8Array`, `void` ↔ `undefined`). The function must exist (else
   * `GuestFunctionNotFoundError` now), and every call still checks the arguments against the signature the
   * guest registered, so a wrong `P` fails as a `TypeError`, never silently.
   *
   * @example
   * ```ts ignore
   * const echo = sbx.fn<[string], string>("Echo");
   * const text: string = echo("hello");
   * ```
   */
  fn<P extends Value[] = Value[], R extends Value = Value>(name: string): (...args: P) => R {
    if (this.#vm === undefined) throw new SandboxClosedError();
    if (!this.#state.functions.has(name)) throw new GuestFunctionNotFoundError(name);
    return (...args: P) => this.call(name, ...args) as R;
  }

  /**
   * Calls a guest function with arguments checked against the signature the guest registered. For a typed
   * result, see {@linkcode MultiUseSandbox.fn}.
   *
   * @example
   * ```ts ignore
   * sbx.call("Add", 2, 3); // 5
   * ```
   */
  call(name: string, ...args: unknown[]): Value {
    const { vm, fn, ctx } = this.#request(name, args, "call");
    try {
      if (vm.hotIdleTicks !== undefined) runHot(vm, ctx);
      else vm.run(ctx);
      return this.#result(vm, fn, ctx);
    } catch (e) {
      if (isPoisoning(e)) this.#poison = e as Error;
      throw e;
    }
  }

  /**
   * Calls a guest function like {@linkcode call}, without blocking the event loop: the guest runs on a
   * thread of its own (one per sandbox), so many sandboxes run in parallel from one event loop. Host
   * functions still run on this thread, and may return a Promise, which is awaited before the guest goes
   * on. Time limits, interrupt handles, poisoning and errors are those of `call`. While the call is in
   * flight the sandbox refuses other calls, `snapshot`, `restore` and `close` with `SandboxBusyError`.
   *
   * @example
   * ```ts ignore
   * console.log(await sbx.callAsync("Echo", "hello")); // "hello"
   * ```
   */
  async callAsync(name: string, ...args: unknown[]): Promise<Value> {
    const { vm, fn, ctx } = this.#request(name, args, "callAsync");
    this.#inFlight = true;
    try {
      // A debugged guest runs on the calling thread, where the gdb stub lives.
      if (vm.debugger === undefined) await runAsync(vm, ctx);
      else vm.run(ctx);
      return this.#result(vm, fn, ctx);
    } catch (e) {
      if (isPoisoning(e)) this.#poison = e as Error;
      throw e;
    } finally {
      this.#inFlight = false;
    }
  }

  /** Checks that a call may start and writes its request into the input buffer. */
  #request(
    name: string,
    args: unknown[],
    what: string,
  ): { vm: GuestVm; fn: GuestFunctionInfo; ctx: RunContext } {
    const vm = this.#vm;
    if (vm === undefined) throw new SandboxClosedError();
    if (this.#poison !== undefined) throw new PoisonedSandboxError(this.#poison);
    if (this.#inFlight) throw new SandboxBusyError(`${what} ${name}`, "a callAsync call is in flight");
    if (vm.running) {
      throw new SandboxBusyError(`${what} ${name}`, "re-entered from one of its host functions");
    }
    const fn = this.#state.functions.get(name);
    if (fn === undefined) throw new GuestFunctionNotFoundError(name);
    checkArgs("Guest function", name, fn, args);
    const w = vm.inputWriter();
    try {
      w.u32(REQ_CALL);
      w.u32(this.#logLevel);
      w.string(name);
      w.u32(args.length);
      for (let i = 0; i < args.length; i++) w.value(fn.params[i], args[i] as Value);
    } catch (e) {
      if (e instanceof BufferFullError) {
        throw new RangeError(
          `Arguments of guest function ${name} do not fit the ${vm.layout.inputSize}-byte input buffer (inputDataSize)`,
        );
      }
      throw e;
    }
    const ctx: RunContext = {
      functionName: name,
      hostFunctions: this.#state.hostFunctions,
      maxExecutionTimeMs: this.#state.config.maxExecutionTimeMs,
    };
    return { vm, fn, ctx };
  }

  #result(vm: GuestVm, fn: GuestFunctionInfo, ctx: RunContext): Value {
    const r = vm.outputReader();
    try {
      const status = r.u32("result status");
      if (status === STATUS_OK) return r.value(`result of ${fn.name}`, fn.returns);
      if (status === STATUS_ERROR) {
        const code = r.u32("error code");
        const message = r.string("error message");
        if (code === ERR_HOST_FUNCTION && ctx.hostFailure !== undefined) {
          throw new HostFunctionError(ctx.hostFailure.name, ctx.hostFailure.error);
        }
        throw new GuestError(fn.name, code, message);
      }
      if (status === STATUS_NOT_FOUND) throw new GuestFunctionNotFoundError(fn.name);
      throw new ProtocolError(`result status is ${status}, expected 0, 1 or 2`);
    } catch (e) {
      if (e instanceof ProtocolError) throw new GuestCrashedError(`protocol error: ${e.message}`);
      throw e;
    }
  }

  /**
   * Creates a sandbox from a snapshot without the guest binary. The persistent memory is mapped
   * copy-on-write from the snapshot's bytes (guest writes never reach the file); the scratch region starts
   * empty. A Call snapshot resumes ready for calls; an Initialise snapshot runs guest init first.
   *
   * `hostFunctions` must include every host function recorded in the snapshot with the same signature
   * (`HostFunctionMismatchError` otherwise). The layout (heap, stack and buffer sizes) always comes from the
   * snapshot; `maxExecutionTimeMs`, `guestLogLevel` and `guestInitArg` come from `config`. A config that asks
   * for another layout is logged as a warning.
   *
   * @example
   * ```ts ignore
   * const fns = new HostFunctions().register("Add", { params: ["i32", "i32"], returns: "i32" }, (a, b) => a + b);
   * using sbx = MultiUseSandbox.fromSnapshot(Snapshot.fromFile("guest.hls"), fns);
   * ```
   */
  static fromSnapshot(
    snapshot: Snapshot,
    hostFunctions?: HostFunctions,
    config?: SandboxConfiguration,
  ): MultiUseSandbox {
    const { blob, data } = live(snapshot);
    const fns = hostFunctions?.clone() ?? new HostFunctions();
    checkHostFunctions(data, fns);
    const resolved = resolveConfiguration(config);
    warnAboutLayout(config, data.layout);
    const vm = GuestVm.create(data.layout, (persistent) => {
      loadPersistent(persistent, blob, data);
      newGeneration(persistent);
    });
    try {
      const binary = debugBinary(resolved.guestBinaryPath, data);
      vm.debugger = SandboxDebugger.create(vm, { ...resolved, binary });
      let dispatch = data.entryAddr;
      let functions = data.functions;
      if (data.entrypoint === "Call") vm.enterAt(dispatch);
      else ({ dispatch, functions } = initialise(vm, data.entryAddr, resolved, fns));
      return construct(vm, {
        dispatch,
        functions: functions!,
        hostFunctions: fns,
        config: resolved,
        family: data.family,
        base: data.entrypoint === "Call" ? snapshot : undefined,
        binary,
      });
    } catch (e) {
      vm.close();
      throw e;
    }
  }

  /**
   * A snapshot of the current state (entry point Call): persistent memory, special registers, layout and
   * the registered host functions. Refused for a poisoned sandbox.
   *
   * @example
   * ```ts ignore
   * const snap = sbx.snapshot();
   * sbx.call("AddToStatic", 1);
   * sbx.restore(snap);
   * ```
   */
  snapshot(): Snapshot {
    const vm = this.#idleVm("snapshot");
    // A hot guest is parked first (and stays parked until the next call): memory must not change meanwhile.
    const failure = vm.park();
    if (failure !== undefined) {
      this.#poison = failure;
      throw new PoisonedSandboxError(failure);
    }
    // Debugger: the snapshot must not capture breakpoints.
    return vm.debugger === undefined
      ? this.#snapshot(vm)
      : vm.debugger.withoutBreakpoints(() => this.#snapshot(vm));
  }

  #snapshot(vm: GuestVm): Snapshot {
    const s = this.#state;
    const snap = snapshotFromMemory(vm.persistent, {
      layout: vm.layout,
      entrypoint: "Call",
      entryAddr: s.dispatch,
      hostFunctions: recordHostFunctions(s.hostFunctions),
      family: s.family,
      functions: s.functions,
      binary: s.binary,
    });
    vm.synced(); // memory now equals the snapshot: track changes from here
    this.#state = { ...s, base: snap };
    return snap;
  }

  /**
   * Returns the sandbox to a snapshot's state and clears poisoning. The snapshot must come from this
   * sandbox, from a sibling made from the same `Snapshot`, or be the one this sandbox was made from
   * (`SnapshotSandboxMismatchError` otherwise). Restoring the snapshot the sandbox was last synchronised to
   * copies back only the pages the guest wrote (KVM dirty log); another one is mapped afresh. The scratch
   * region (stack, buffers) is emptied either way.
   *
   * @example
   * ```ts ignore
   * sbx.restore(snap);
   * ```
   */
  restore(snapshot: Snapshot): void {
    const vm = this.#vm;
    if (vm === undefined) throw new SandboxClosedError();
    this.#notBusy(vm, "restore");
    // Debugger: breakpoints come out of memory for the restore and go back in afterwards.
    if (vm.debugger === undefined) this.#restore(vm, snapshot);
    else vm.debugger.withoutBreakpoints(() => this.#restore(vm, snapshot));
  }

  #restore(vm: GuestVm, snapshot: Snapshot): void {
    const { blob, data } = live(snapshot);
    if (data.family !== this.#state.family) throw new SnapshotSandboxMismatchError();
    let incremental: boolean;
    try {
      vm.park(); // whatever a hot guest did while idle, the restore undoes
      incremental = snapshot === this.#state.base && data.entrypoint === "Call" &&
        vm.restoreAndEnter(blob.ref, data.system.blob.ref, data.entryAddr);
      if (!incremental) {
        // First, so that whatever KVM still had to finish (it may write guest memory) is undone below.
        vm.resetCpu();
        loadPersistent(vm.persistent, blob, data);
        vm.persistentReplaced();
        vm.resetScratch();
        vm.synced();
        newGeneration(vm.persistent); // restoreAndEnter writes it with the pages
      }
    } catch (e) {
      // Half restored: neither the old state nor the snapshot's. No call may run on it.
      this.#poison = e as Error;
      throw e;
    }
    this.#poison = undefined;
    try {
      if (data.entrypoint === "Call") {
        if (!incremental) vm.enterAt(data.entryAddr);
        const s = this.#state;
        if (s.base !== snapshot || s.dispatch !== data.entryAddr || s.functions !== data.functions) {
          this.#state = { ...s, dispatch: data.entryAddr, functions: data.functions!, base: snapshot };
        }
      } else {
        const { dispatch, functions } = initialise(
          vm,
          data.entryAddr,
          this.#state.config,
          this.#state.hostFunctions,
        );
        this.#state = { ...this.#state, dispatch, functions, base: undefined };
      }
    } catch (e) {
      this.#poison = e as Error;
      throw e;
    }
  }

  #idleVm(what: string): GuestVm {
    const vm = this.#vm;
    if (vm === undefined) throw new SandboxClosedError();
    if (this.#poison !== undefined) throw new PoisonedSandboxError(this.#poison);
    this.#notBusy(vm, what);
    return vm;
  }

  #notBusy(vm: GuestVm, what: string): void {
    if (this.#inFlight) throw new SandboxBusyError(what, "a callAsync call is in flight");
    if (vm.running) throw new SandboxBusyError(what, "called from inside one of its calls");
  }

  /**
   * Writes an ELF core file of the guest as it is now, between calls: its registers, every page of memory
   * it can see, and its binary's path when known (`guestBinaryPath`). Open it with
   * `gdb <guest binary> <core>`. Works on a poisoned sandbox too: after a crash the registers are those of
   * the crash. See docs/DEBUGGING.md.
   *
   * @throws {CoreDumpError} when the file cannot be written.
   * @example
   * ```ts ignore
   * sbx.coreDump("/tmp/guest.core");
   * ```
   */
  coreDump(path: string | URL): void {
    const vm = this.#vm;
    if (vm === undefined) throw new SandboxClosedError();
    if (vm.running) throw new SandboxBusyError("coreDump", "called from inside one of its calls");
    writeSandboxCore(vm, path, this.#state.binary);
  }

  /**
   * The guest's functions, as it registered them.
   *
   * @example
   * ```ts ignore
   * for (const f of sbx.guestFunctions()) console.log(f.name, f.params, f.returns);
   * ```
   */
  guestFunctions(): GuestFunctionInfo[] {
    return [...this.#state.functions.values()];
  }

  /**
   * A handle that can stop a running call from another thread; see `InterruptHandle`.
   *
   * @example
   * ```ts ignore
   * const handle = sbx.interruptHandle();
   * ```
   */
  interruptHandle(): InterruptHandle {
    const vm = this.#vm;
    if (vm === undefined) throw new SandboxClosedError();
    return new InterruptHandle(vm.callState.shared, vm.interruptTarget);
  }

  /**
   * Releases the VM and its memory. Safe to call twice.
   *
   * @example
   * ```ts ignore
   * sbx.close();
   * ```
   */
  close(): void {
    const vm = this.#vm;
    if (vm === undefined) return;
    this.#notBusy(vm, "close");
    this.#vm = undefined;
    unclosed.unregister(vm);
    vm.close();
  }

  /** Same as `close()`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * The guest binary a sandbox made from a snapshot names to debuggers and core dumps: `guestBinaryPath` when
 * configured (a path the user gave: its segments may be read for a core's mapped-file note), else the path
 * recorded in the snapshot. That one is file content, as hostile as the rest of the file: it is only ever
 * handed on as a string (to gdb, into a core's notes), never opened or run here, so its segments are
 * given as none and a core names no mapped file for it (docs/SECURITY.md).
 */
function debugBinary(configured: string | undefined, data: SnapshotData): GuestBinaryInfo | undefined {
  const recorded = data.binary;
  if (configured !== undefined) {
    const entry = recorded?.entry ?? (data.entrypoint === "Initialise" ? data.entryAddr : 0n);
    return binaryInfo(configured, entry);
  }
  return recorded === undefined ? undefined : { path: recorded.path, entry: recorded.entry, segments: [] };
}

/**
 * A snapshot's memory as a sandbox sees it: the blob, copy-on-write, with the system area mapped over it
 * from the snapshot's rebuilt copy (never the blob's own, see `machine/system_area.ts`).
 */
function loadPersistent(persistent: Mapping, blob: Blob, data: SnapshotData): void {
  mapSnapshot(persistent, blob, data.layout);
  persistent.mapCopyOnWrite(data.system.blob.backing, 0);
  writeInfoPage(persistent);
}

/**
 * Maps a snapshot's blob copy-on-write over a sandbox's persistent region (for a delta: the base, then the
 * delta's pages over it), without read-around (a fault would otherwise read 8 MiB of the file for one
 * page), and prefaults the info page and the image.
 */
function mapSnapshot(persistent: Mapping, blob: Blob, layout: Layout): void {
  blob.mapInto(persistent);
  prefaultInfoAndImage(persistent, layout);
}

/** A sandbox around a running VM (for `UninitializedSandbox.evolve()`; not part of the public API). */
export function sandboxOf(vm: GuestVm, state: SandboxState): MultiUseSandbox {
  return construct(vm, state);
}

/**
 * The safety net for sandboxes nobody closed: when one is garbage-collected its VM and memory are released
 * (`close()` and `using` remain the way to release them on time).
 */
const unclosed = new FinalizationRegistry<GuestVm>((vm) => {
  try {
    vm.close();
  } catch {
    // Nothing to report to at this point.
  }
});

function isPoisoning(e: unknown): boolean {
  if (!(e instanceof Error)) return true;
  return !(e instanceof GuestError || e instanceof HostFunctionError ||
    e instanceof GuestFunctionNotFoundError);
}

function checkHostFunctions(data: SnapshotData, given: HostFunctions): void {
  const missing: string[] = [];
  const mismatched: { name: string; recorded: string; given: string }[] = [];
  for (const f of data.hostFunctions) {
    const recorded = formatHostFunctionSignature(f);
    const entry = given.get(f.name);
    if (entry === undefined) missing.push(recorded);
    else {
      const offered = formatHostFunctionSignature(recordHostFunction(f.name, entry.signature));
      if (offered !== recorded) mismatched.push({ name: f.name, recorded, given: offered });
    }
  }
  if (missing.length || mismatched.length) throw new HostFunctionMismatchError(missing, mismatched);
}

function warnAboutLayout(config: SandboxConfiguration | undefined, layout: Layout): void {
  if (config === undefined) return;
  const actual: Record<string, number> = {
    heapSize: layout.heapSize,
    stackSize: layout.stackSize,
    inputDataSize: layout.inputSize,
    outputDataSize: layout.outputSize,
  };
  for (const [field, value] of Object.entries(actual)) {
    const asked = (config as Record<string, unknown>)[field];
    if (typeof asked === "number" && Math.ceil(asked / PAGE) * PAGE !== value) {
      log({
        level: "warn",
        source: "snapvm",
        message: `fromSnapshot: config.${field} ${asked} ignored; the snapshot's layout has ${value}`,
      });
    }
  }
}
