/**
 * An initialised sandbox that runs guest functions.
 *
 * @module
 */
import {
  ERR_HOST_FUNCTION,
  LOG_LEVELS,
  REQ_CALL,
  STATUS_ERROR,
  STATUS_NOT_FOUND,
  STATUS_OK,
} from "./_abi.ts";
import { BufferFullError, checkArgs, ProtocolError } from "./_codec.ts";
import type { GuestVm, RunContext } from "./_guest_vm.ts";
import { ThreadSignals } from "./_signals.ts";
import { InterruptHandle } from "./interrupt_handle.ts";
import type { ResolvedConfiguration } from "./config.ts";
import {
  GuestCrashedError,
  GuestError,
  GuestFunctionNotFoundError,
  HostFunctionError,
  PoisonedSandboxError,
  SandboxClosedError,
} from "./errors.ts";
import type { HostFunctions } from "./host_functions.ts";
import type { GuestFunctionInfo, Value } from "./types.ts";

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
}

/**
 * A running sandbox: call guest functions by name, synchronously.
 *
 * Errors that leave guest state undefined (abort, crash, memory access violation, cancellation) poison the
 * sandbox: later calls throw `PoisonedSandboxError`. `GuestError`, `HostFunctionError`,
 * `GuestFunctionNotFoundError` and argument errors do not.
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
  readonly #state: SandboxState;
  readonly #logLevel: number;
  #poison: Error | undefined;

  /** Use `UninitializedSandbox.evolve()`. */
  constructor(vm: GuestVm, state: SandboxState) {
    this.#vm = vm;
    this.#state = state;
    this.#logLevel = LOG_LEVELS.indexOf(state.config.guestLogLevel);
  }

  /** True once a failure left guest state undefined. */
  get poisoned(): boolean {
    return this.#poison !== undefined;
  }

  /**
   * Calls a guest function with arguments checked against the signature the guest registered.
   *
   * @example
   * ```ts ignore
   * sbx.call("Add", 2, 3); // 5
   * ```
   */
  call(name: string, ...args: unknown[]): Value {
    const vm = this.#vm;
    if (vm === undefined) throw new SandboxClosedError();
    if (this.#poison !== undefined) throw new PoisonedSandboxError(this.#poison);
    if (vm.running) {
      throw new Error(
        `Cannot call ${name}: the sandbox is already running a call (re-entered from a host function)`,
      );
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
    try {
      vm.run(ctx);
      return this.#result(vm, fn, ctx);
    } catch (e) {
      if (isPoisoning(e)) this.#poison = e as Error;
      throw e;
    }
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
    const s = ThreadSignals.get();
    return new InterruptHandle(vm.callState.shared, s.pid, s.tid);
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
    if (vm.running) throw new Error("Cannot close a sandbox from inside one of its calls");
    this.#vm = undefined;
    vm.close();
  }

  /** Same as `close()`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

function isPoisoning(e: unknown): boolean {
  if (!(e instanceof Error)) return true;
  return !(e instanceof GuestError || e instanceof HostFunctionError ||
    e instanceof GuestFunctionNotFoundError);
}
