/**
 * The errors a sandbox throws. Each class has a stable `name`, so code can branch on `err.name` as well as
 * with `instanceof`.
 *
 * @module
 */
import { SnapvmError } from "../errors.ts";
import { thrownMessage } from "./machine/codec.ts";

/**
 * The guest called `sv_abort` or panicked. The sandbox is poisoned.
 *
 * @example
 * ```ts
 * import { GuestAbortedError } from "./errors.ts";
 * const e = new GuestAbortedError(3, "bad state");
 * console.log(e.code, e.guestMessage);
 * ```
 */
export class GuestAbortedError extends SnapvmError {
  /** The abort code the guest passed. */
  readonly code: number;
  /** The guest's message. */
  readonly guestMessage: string;
  /** Creates the error. */
  constructor(code: number, guestMessage: string) {
    super(`Guest aborted with code ${code}: ${guestMessage}`);
    this.name = "GuestAbortedError";
    this.code = code;
    this.guestMessage = guestMessage;
  }
}

/**
 * The guest function returned an error result. The sandbox stays usable.
 *
 * @example
 * ```ts
 * import { GuestError } from "./errors.ts";
 * const e = new GuestError("Fail", 101, "nope");
 * console.log(e.code);
 * ```
 */
export class GuestError extends SnapvmError {
  /** The guest's error code (see docs/ABI.md; user codes start at 100). */
  readonly code: number;
  /** The guest's message. */
  readonly guestMessage: string;
  /** The guest function that failed (`"<init>"` for guest initialisation). */
  readonly functionName: string;
  /** Creates the error. */
  constructor(functionName: string, code: number, guestMessage: string, options?: ErrorOptions) {
    super(`Guest function ${functionName} failed with code ${code}: ${guestMessage}`, options);
    this.name = "GuestError";
    this.code = code;
    this.guestMessage = guestMessage;
    this.functionName = functionName;
  }
}

/**
 * No guest function of that name is registered. The sandbox stays usable.
 *
 * @example
 * ```ts
 * import { GuestFunctionNotFoundError } from "./errors.ts";
 * console.log(new GuestFunctionNotFoundError("Nope").message);
 * ```
 */
export class GuestFunctionNotFoundError extends SnapvmError {
  /** The name that was called. */
  readonly functionName: string;
  /** Creates the error. */
  constructor(functionName: string) {
    super(`Guest function not found: ${functionName}`);
    this.name = "GuestFunctionNotFoundError";
    this.functionName = functionName;
  }
}

/**
 * A host function threw while the guest called it, and the guest passed the failure on. The original
 * exception is the `cause`. The sandbox stays usable.
 *
 * @example
 * ```ts
 * import { HostFunctionError } from "./errors.ts";
 * const e = new HostFunctionError("Add", new Error("boom"));
 * console.log(e.message);
 * ```
 */
export class HostFunctionError extends SnapvmError {
  /** The host function that threw. */
  readonly functionName: string;
  /** Creates the error. */
  constructor(functionName: string, cause: unknown) {
    super(`Host function ${functionName} failed: ${thrownMessage(cause)}`, { cause });
    this.name = "HostFunctionError";
    this.functionName = functionName;
  }
}

/**
 * The guest read or wrote memory it may not: an unmapped address, or a write to read-only memory (or
 * executed non-executable memory). The sandbox is poisoned.
 *
 * @example
 * ```ts
 * import { MemoryAccessViolationError } from "./errors.ts";
 * const e = new MemoryAccessViolationError(0x1000n, "write", 0x200010n);
 * console.log(e.address);
 * ```
 */
export class MemoryAccessViolationError extends SnapvmError {
  /** The guest address that was accessed. */
  readonly address: bigint;
  /** What the guest tried to do. */
  readonly access: "read" | "write" | "execute";
  /** The guest instruction pointer at the fault. */
  readonly rip: bigint;
  /** Creates the error. */
  constructor(address: bigint, access: "read" | "write" | "execute", rip: bigint, detail = "") {
    super(
      `Guest memory access violation: ${access} at 0x${address.toString(16)} (rip 0x${rip.toString(16)})` +
        (detail ? `: ${detail}` : ""),
    );
    this.name = "MemoryAccessViolationError";
    this.address = address;
    this.access = access;
    this.rip = rip;
  }
}

/** x86 exception names by vector, for messages. */
const VECTORS: Record<number, string> = {
  0: "#DE divide error",
  1: "#DB debug",
  3: "#BP breakpoint",
  4: "#OF overflow",
  5: "#BR bound range",
  6: "#UD invalid opcode",
  7: "#NM device not available",
  8: "#DF double fault",
  10: "#TS invalid TSS",
  11: "#NP segment not present",
  12: "#SS stack fault",
  13: "#GP general protection",
  14: "#PF page fault",
  16: "#MF x87 floating point",
  17: "#AC alignment check",
  18: "#MC machine check",
  19: "#XM SIMD floating point",
};

/**
 * The guest crashed: a CPU exception other than a plain access violation, a triple fault, or a broken
 * host/guest protocol. The sandbox is poisoned.
 *
 * @example
 * ```ts
 * import { GuestCrashedError } from "./errors.ts";
 * const e = new GuestCrashedError("invalid opcode", { vector: 6, rip: 0x200000n });
 * console.log(e.vector);
 * ```
 */
export class GuestCrashedError extends SnapvmError {
  /** The exception vector, or `undefined` for a triple fault or protocol error. */
  readonly vector: number | undefined;
  /** The guest instruction pointer, when known. */
  readonly rip: bigint | undefined;
  /** The faulting address (CR2) for page faults. */
  readonly cr2: bigint | undefined;
  /** The exception's error code, when it has one. */
  readonly errorCode: bigint | undefined;
  /** Creates the error. */
  constructor(
    reason: string,
    detail: { vector?: number; rip?: bigint; cr2?: bigint; errorCode?: bigint } = {},
  ) {
    const parts = [];
    if (detail.vector !== undefined) {
      parts.push(`vector ${detail.vector} (${VECTORS[detail.vector] ?? "reserved"})`);
    }
    if (detail.rip !== undefined) parts.push(`rip 0x${detail.rip.toString(16)}`);
    if (detail.cr2 !== undefined) parts.push(`cr2 0x${detail.cr2.toString(16)}`);
    if (detail.errorCode !== undefined) parts.push(`error code 0x${detail.errorCode.toString(16)}`);
    super(`Guest crashed: ${reason}${parts.length ? ` [${parts.join(", ")}]` : ""}`);
    this.name = "GuestCrashedError";
    this.vector = detail.vector;
    this.rip = detail.rip;
    this.cr2 = detail.cr2;
    this.errorCode = detail.errorCode;
  }
}

/**
 * The call was stopped: `maxExecutionTimeMs` ran out, or an interrupt handle killed it. The sandbox is
 * poisoned.
 *
 * @example
 * ```ts
 * import { ExecutionCanceledError } from "./errors.ts";
 * console.log(new ExecutionCanceledError("Spin", "timeout").message);
 * ```
 */
export class ExecutionCanceledError extends SnapvmError {
  /** Why: the time limit, or an interrupt handle. */
  readonly reason: "timeout" | "interrupted";
  /** Creates the error. */
  constructor(functionName: string, reason: "timeout" | "interrupted", limitMs?: number) {
    super(
      reason === "interrupted"
        ? `Guest function ${functionName} canceled by an interrupt handle`
        : limitMs === undefined
        ? `Guest function ${functionName} canceled: the enclosing call's maxExecutionTimeMs ran out`
        : `Guest function ${functionName} canceled: exceeded maxExecutionTimeMs (${limitMs} ms)`,
    );
    this.name = "ExecutionCanceledError";
    this.reason = reason;
  }
}

/**
 * The sandbox is poisoned: an earlier call aborted, crashed or was canceled, so guest state is undefined.
 * `cause` is the error that poisoned it.
 *
 * @example
 * ```ts
 * import { PoisonedSandboxError } from "./errors.ts";
 * console.log(new PoisonedSandboxError(new Error("x")).message);
 * ```
 */
export class PoisonedSandboxError extends SnapvmError {
  /** Creates the error. */
  constructor(cause: unknown) {
    super(
      `Sandbox is poisoned by an earlier failure (${
        cause instanceof Error ? cause.name : "error"
      }); restore a snapshot or create a new sandbox`,
      { cause },
    );
    this.name = "PoisonedSandboxError";
  }
}

/**
 * The hypervisor cannot be used. `backend` names the one snapvm tried (`"kvm"` on Linux, `"whp"` on
 * Windows); the message says what went wrong and what to do.
 *
 * @example
 * ```ts
 * import { HypervisorUnavailableError } from "./errors.ts";
 * const e = new HypervisorUnavailableError("kvm", "/dev/kvm does not exist", "load kvm_intel or kvm_amd");
 * console.log(e.backend, e.message);
 * ```
 */
export class HypervisorUnavailableError extends SnapvmError {
  /** The backend that could not be used. */
  readonly backend: string;
  /** What went wrong, without the hint. */
  readonly reason: string;
  /** Creates the error: which backend, what went wrong, and (optionally) what to do about it. */
  constructor(backend: string, reason: string, hint?: string) {
    const label = backend === "kvm" ? "KVM" : backend === "whp" ? "Windows Hypervisor Platform" : backend;
    super(`Hypervisor unavailable (${label}): ${reason}${hint ? `; ${hint}` : ""}`);
    this.name = "HypervisorUnavailableError";
    this.backend = backend;
    this.reason = reason;
  }
}

/**
 * The sandbox is busy: a call is running (re-entered from one of its own host functions, or, with
 * `callAsync`, still in flight), so it cannot take another call, a snapshot, a restore or a close now.
 * Nothing changed; the running call is unaffected.
 *
 * @example
 * ```ts
 * import { SandboxBusyError } from "./errors.ts";
 * console.log(new SandboxBusyError("restore").message);
 * ```
 */
export class SandboxBusyError extends SnapvmError {
  /** What was refused: `call`, `snapshot`, `restore` or `close`. */
  readonly operation: string;
  /** Creates the error for the refused operation. */
  constructor(operation: string, detail = "a call is running") {
    super(`Cannot ${operation}: the sandbox is busy (${detail})`);
    this.name = "SandboxBusyError";
    this.operation = operation;
  }
}

/**
 * The sandbox was used after `close()`.
 *
 * @example
 * ```ts
 * import { SandboxClosedError } from "./errors.ts";
 * console.log(new SandboxClosedError().message);
 * ```
 */
export class SandboxClosedError extends SnapvmError {
  /** Creates the error. */
  constructor() {
    super("Sandbox is closed");
    this.name = "SandboxClosedError";
  }
}

/**
 * The guest binary is not a loadable snapvm guest: the message names the ELF field, what was found and what
 * was expected.
 *
 * @example
 * ```ts
 * import { GuestBinaryError } from "./errors.ts";
 * console.log(new GuestBinaryError("e_machine is 3, expected 62 (x86-64)").message);
 * ```
 */
export class GuestBinaryError extends SnapvmError {
  /** Creates the error. */
  constructor(detail: string) {
    super(`Cannot load guest binary: ${detail}`);
    this.name = "GuestBinaryError";
  }
}

/**
 * The host functions given to `MultiUseSandbox.fromSnapshot` are not a superset of those recorded in the
 * snapshot: lists every missing function and every signature mismatch.
 *
 * @example
 * ```ts
 * import { HostFunctionMismatchError } from "./errors.ts";
 * const e = new HostFunctionMismatchError(["Add(i32, i32) -> i32"], []);
 * console.log(e.missing);
 * ```
 */
export class HostFunctionMismatchError extends SnapvmError {
  /** Recorded functions that were not given, as signatures like `Add(i32, i32) -> i32`. */
  readonly missing: readonly string[];
  /** Functions given with another signature: what the snapshot recorded and what was given. */
  readonly mismatched: readonly { name: string; recorded: string; given: string }[];
  /** Creates the error. */
  constructor(missing: string[], mismatched: { name: string; recorded: string; given: string }[]) {
    const parts = [];
    if (missing.length) parts.push(`missing: ${missing.join(", ")}`);
    for (const m of mismatched) parts.push(`${m.name}: snapshot has ${m.recorded}, given ${m.given}`);
    super(`Host functions do not match the snapshot (${parts.join("; ")})`);
    this.name = "HostFunctionMismatchError";
    this.missing = missing;
    this.mismatched = mismatched;
  }
}

/**
 * `restore()` was given a snapshot from another lineage: a sandbox may restore only snapshots taken from
 * itself, from a sibling made from the same `Snapshot` object, or loaded by the same `fromFile` call.
 *
 * @example
 * ```ts
 * import { SnapshotSandboxMismatchError } from "./errors.ts";
 * console.log(new SnapshotSandboxMismatchError().message);
 * ```
 */
export class SnapshotSandboxMismatchError extends SnapvmError {
  /** Creates the error. */
  constructor() {
    super(
      "Cannot restore: the snapshot does not belong to this sandbox (take it from this sandbox or a sibling " +
        "made from the same Snapshot, or use the Snapshot this sandbox was created from)",
    );
    this.name = "SnapshotSandboxMismatchError";
  }
}
