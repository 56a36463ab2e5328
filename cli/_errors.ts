/**
 * The CLI's exit codes, its own error classes, and how any error becomes one line on stderr.
 *
 * @module
 */
import { HypervisorUnavailableError, ResourceExhaustedError, SnapvmError } from "../mod.ts";
import { GccNotFoundError } from "../guest/sdk.ts";

/** Exit codes, documented in `snapvm --help`. */
export const EXIT = {
  /** Success. */
  ok: 0,
  /** The operation failed: a bad snapshot, a guest error, a failed build. */
  failed: 1,
  /** The command line is wrong. */
  usage: 2,
  /** The machine lacks something: KVM, gcc, a permission. */
  environment: 3,
} as const;

/** The command line is wrong: unknown option, missing argument, a value that does not parse. Exit 2. */
export class UsageError extends Error {
  /** The command whose help to point at, if any. */
  readonly command?: string;

  /** @param message What is wrong, as one line. */
  constructor(message: string, command?: string) {
    super(message);
    this.name = "UsageError";
    this.command = command;
  }
}

/** The operation ran and failed (e.g. verify found a corrupt file). Exit 1. */
export class OperationError extends SnapvmError {
  /** @param message What failed, as one line. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "OperationError";
  }
}

/**
 * The one line to print for `e` (without the `snapvm: ` prefix), the exit code, and whether the error is
 * an unexpected kind (likely a bug, where the stack helps). `command` is the command that was running, for
 * the help hint of usage errors.
 *
 * - {@linkcode UsageError} → 2; missing KVM or gcc and missing Deno permissions → 3;
 * - snapvm's own errors (every `SnapvmError`: snapshot, guest, build, registry…) and missing files → 1 with
 *   their own message;
 * - anything else → 1 with its class name, as it is likely a bug.
 */
export function describeError(
  e: unknown,
  command?: string,
): { line: string; code: number; unexpected: boolean } {
  const oneLine = (s: string) => s.replace(/\s*\n\s*/g, " ").trim();
  if (e instanceof UsageError) {
    const about = e.command ?? command;
    const hint = about ? ` (see 'snapvm ${about} --help')` : " (see 'snapvm --help')";
    return { line: oneLine(e.message) + hint, code: EXIT.usage, unexpected: false };
  }
  if (
    e instanceof HypervisorUnavailableError || e instanceof GccNotFoundError ||
    e instanceof ResourceExhaustedError
  ) {
    return { line: oneLine(e.message), code: EXIT.environment, unexpected: false };
  }
  if (e instanceof Deno.errors.NotCapable) {
    return { line: `Missing permission: ${oneLine(e.message)}`, code: EXIT.environment, unexpected: false };
  }
  if (e instanceof SnapvmError) {
    return { line: oneLine((e as Error).message), code: EXIT.failed, unexpected: false };
  }
  if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.IsADirectory) {
    return { line: oneLine((e as Error).message), code: EXIT.failed, unexpected: false };
  }
  if (e instanceof Error) {
    return { line: `${e.name}: ${oneLine(e.message)}`, code: EXIT.failed, unexpected: true };
  }
  return { line: `Unexpected error: ${String(e)}`, code: EXIT.failed, unexpected: true };
}
