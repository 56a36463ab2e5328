/**
 * The host functions a guest may call.
 *
 * @module
 */
import { isType } from "./machine/codec.ts";
import type { Signature, Value, ValueType } from "./types.ts";

/**
 * A host function: called with the guest's arguments, returns a value of its signature's return type. It
 * may return a Promise of one only for calls made with `callAsync` (the guest waits until it settles);
 * `call` cannot wait, and reports a Promise as a `HostFunctionError`.
 *
 * @example
 * ```ts
 * import type { HostFunction } from "./host_functions.ts";
 * const add: HostFunction = (a, b) => (a as number) + (b as number);
 * ```
 */
// deno-lint-ignore no-explicit-any
export type HostFunction = (...args: any[]) => Value | Promise<Value>;

/** A registered host function. */
export interface HostFunctionEntry {
  /** Its signature. */
  readonly signature: Signature;
  /** The implementation. */
  readonly fn: HostFunction;
}

/** Longest host or guest function name, in UTF-8 bytes. */
export const MAX_FUNCTION_NAME = 255;
/** Most parameters of one function. */
export const MAX_PARAMS = 32;

const encoder = new TextEncoder();

function defaultPrint(text: string): number {
  const bytes = encoder.encode(text);
  let done = 0;
  while (done < bytes.length) done += Deno.stdout.writeSync(bytes.subarray(done));
  return bytes.length;
}

/**
 * A set of host functions. Starts with the built-in `HostPrint(string) -> i32`, which writes to stdout.
 *
 * @example
 * ```ts
 * import { HostFunctions } from "./host_functions.ts";
 * const fns = new HostFunctions()
 *   .register("Add", { params: ["i32", "i32"], returns: "i32" }, (a: number, b: number) => a + b);
 * console.log(fns.names());
 * ```
 */
export class HostFunctions {
  readonly #fns = new Map<string, HostFunctionEntry>();

  /** A set holding only `HostPrint`. */
  constructor() {
    this.registerPrint((text) => void defaultPrint(text));
  }

  /**
   * Registers (or replaces) a host function. Throws TypeError for a bad name or signature.
   *
   * @example
   * ```ts
   * import { HostFunctions } from "./host_functions.ts";
   * new HostFunctions().register("Now", { params: [], returns: "f64" }, () => Date.now());
   * ```
   */
  register(name: string, signature: Signature, fn: HostFunction): this {
    if (typeof name !== "string" || name.length === 0 || encoder.encode(name).length > MAX_FUNCTION_NAME) {
      throw new TypeError(
        `Host function name must be a non-empty string of at most ${MAX_FUNCTION_NAME} bytes`,
      );
    }
    if (typeof fn !== "function") {
      throw new TypeError(`Host function ${name}: implementation is not a function`);
    }
    const params = signature?.params;
    if (!Array.isArray(params) || params.length > MAX_PARAMS || !params.every((p) => isType(p, false))) {
      throw new TypeError(
        `Host function ${name}: params must be an array of at most ${MAX_PARAMS} value types (i32, u32, i64, u64, f32, f64, bool, string, bytes)`,
      );
    }
    if (!isType(signature.returns, true)) {
      throw new TypeError(`Host function ${name}: returns must be a value type or "void"`);
    }
    this.#fns.set(name, {
      signature: { params: [...params] as ValueType[], returns: signature.returns },
      fn,
    });
    return this;
  }

  /**
   * Replaces `HostPrint`, which receives the guest's printed text.
   *
   * @example
   * ```ts
   * import { HostFunctions } from "./host_functions.ts";
   * const out: string[] = [];
   * new HostFunctions().registerPrint((t) => void out.push(t));
   * ```
   */
  registerPrint(fn: (text: string) => void): this {
    const encoderLength = (t: string) => encoder.encode(t).length;
    return this.register("HostPrint", { params: ["string"], returns: "i32" }, (text: string) => {
      fn(text);
      return encoderLength(text);
    });
  }

  /**
   * The entry for a name, if registered.
   *
   * @example
   * ```ts
   * import { HostFunctions } from "./host_functions.ts";
   * console.log(new HostFunctions().get("HostPrint")?.signature);
   * ```
   */
  get(name: string): HostFunctionEntry | undefined {
    return this.#fns.get(name);
  }

  /**
   * Registered names, sorted.
   *
   * @example
   * ```ts
   * import { HostFunctions } from "./host_functions.ts";
   * console.log(new HostFunctions().names()); // ["HostPrint"]
   * ```
   */
  names(): string[] {
    return [...this.#fns.keys()].sort();
  }

  /**
   * A copy of this set (later registrations on either do not affect the other).
   *
   * @example
   * ```ts
   * import { HostFunctions } from "./host_functions.ts";
   * const copy = new HostFunctions().clone();
   * ```
   */
  clone(): HostFunctions {
    const c = new HostFunctions();
    for (const [name, e] of this.#fns) c.#fns.set(name, e);
    return c;
  }
}
