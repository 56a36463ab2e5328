/**
 * The base classes of snapvm's errors. Every error snapvm throws on purpose is a {@linkcode SnapvmError}:
 * `catch (e) { if (e instanceof SnapvmError) … }` tells snapvm's typed failures from bugs, and each subclass
 * has a stable `name` to branch on. (Programming errors in arguments are Deno's usual `TypeError` and
 * `RangeError`, and missing files Deno's own `Deno.errors.*`.)
 *
 * @module
 */

/**
 * The base class of every error snapvm throws on purpose.
 *
 * @example
 * ```ts
 * import { SnapvmError } from "./errors.ts";
 * class MyError extends SnapvmError {}
 * console.log(new MyError("x") instanceof SnapvmError); // true
 * ```
 */
export class SnapvmError extends Error {
  /** Creates the error; subclasses set their own `name`. */
  constructor(message?: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SnapvmError";
  }
}

/**
 * An operating-system or hypervisor call failed in a way snapvm does not turn into something more
 * specific: `call` names it (for ioctls the request, e.g. `ioctl(KVM_RUN)`; on Windows the function), `code`
 * is the symbolic error (`EFAULT`, `E_INVALIDARG`, …). Resource exhaustion is a
 * {@linkcode ResourceExhaustedError} instead.
 *
 * @example
 * ```ts
 * import { OsCallError } from "./errors.ts";
 * const e = new OsCallError("ioctl(KVM_RUN)", "EFAULT", "bad address");
 * console.log(e.message); // ioctl(KVM_RUN) failed: EFAULT (bad address)
 * ```
 */
export class OsCallError extends SnapvmError {
  /** The call that failed. */
  readonly call: string;
  /** Symbolic error code such as `"EINVAL"`. */
  readonly code: string;
  /** Creates the error; `detail` explains the code when given. */
  constructor(call: string, code: string, detail?: string) {
    super(`${call} failed: ${code}${detail ? ` (${detail})` : ""}`);
    this.name = "OsCallError";
    this.call = call;
    this.code = code;
  }
}

/**
 * The machine ran out of something a sandbox needs: `resource` says what (file descriptors, memory, …),
 * the message what to do. The `cause` is the failed call.
 *
 * @example
 * ```ts
 * import { ResourceExhaustedError } from "./errors.ts";
 * const e = new ResourceExhaustedError("file descriptors", "raise the limit (ulimit -n)");
 * console.log(e.message);
 * ```
 */
export class ResourceExhaustedError extends SnapvmError {
  /** What ran out. */
  readonly resource: string;
  /** Creates the error. */
  constructor(resource: string, hint: string, options?: ErrorOptions) {
    super(`Out of ${resource}: ${hint}`, options);
    this.name = "ResourceExhaustedError";
    this.resource = resource;
  }
}
