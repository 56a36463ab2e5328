/**
 * The typed errors of the WHP backend.
 *
 * @module
 */
import { SnapvmError } from "../../errors.ts";
import { HypervisorUnavailableError } from "../errors.ts";

/** Why the Windows Hypervisor Platform cannot be used. */
export type WhpUnavailableReason =
  | "not-windows"
  | "dll-missing"
  | "hypervisor-absent"
  | "no-dirty-tracking";

const UNAVAILABLE: Record<WhpUnavailableReason, { message: string; hint: string }> = {
  "not-windows": {
    message: "the WHP backend runs on Windows only",
    hint: "use the KVM backend on Linux",
  },
  "dll-missing": {
    message: "Windows Hypervisor Platform is not installed (WinHvPlatform.dll cannot be loaded)",
    hint:
      "run in an elevated PowerShell: Enable-WindowsOptionalFeature -Online -FeatureName HypervisorPlatform, then reboot",
  },
  "hypervisor-absent": {
    message: "Windows Hypervisor Platform is installed but no hypervisor is running",
    hint:
      "enable virtualization (VT-x/AMD-V) in the firmware, or nested virtualization for a VM (Set-VMProcessor -ExposeVirtualizationExtensions $true on its host), then reboot",
  },
  "no-dirty-tracking": {
    message: "this Windows version's hypervisor platform lacks dirty-page tracking, which restore needs",
    hint: "update to Windows 10 version 1903 or later",
  },
};

/**
 * The Windows Hypervisor Platform cannot be used on this machine: a {@linkcode HypervisorUnavailableError}
 * (that is its `name`, and what users catch) whose `code` says which of the known causes it was.
 *
 * @example
 * ```ts
 * import { WhpUnavailableError } from "./errors.ts";
 * const e = new WhpUnavailableError("dll-missing");
 * console.log(e.backend, e.code, e.message);
 * ```
 */
export class WhpUnavailableError extends HypervisorUnavailableError {
  /** Which known cause. */
  readonly code: WhpUnavailableReason;
  /** What the user can do about it. */
  readonly hint: string;
  /** Creates the error; `detail` (an OS message) is appended to the reason when given. */
  constructor(code: WhpUnavailableReason, detail?: string) {
    const { message, hint } = UNAVAILABLE[code];
    super("whp", `${message}${detail ? ` (${detail})` : ""}`, hint);
    this.code = code;
    this.hint = hint;
  }
}

/**
 * A second WHP partition was asked for in a process that already has one. Without a surrogate process,
 * Windows lets a process map memory into one partition only (the second `WHvMapGpaRange` fails with
 * `ERROR_VID_PARTITION_ALREADY_EXISTS`), so snapvm refuses up front, for every thread (Worker) of the
 * process.
 *
 * @example
 * ```ts
 * import { WhpPartitionLimitError } from "./errors.ts";
 * console.log(new WhpPartitionLimitError().message);
 * ```
 */
export class WhpPartitionLimitError extends SnapvmError {
  /** Creates the error. */
  constructor() {
    super(
      "Cannot create a sandbox: this process already has a WHP partition (Windows allows one partition " +
        "with mapped memory per process without a surrogate process); close the other sandbox (a Worker's " +
        "sandboxes are released when it ends), or run sandboxes in separate processes",
    );
    this.name = "WhpPartitionLimitError";
  }
}

/**
 * A WHP feature snapvm asked for needs a newer Windows than this one.
 *
 * @example
 * ```ts
 * import { WhpUnsupportedWindowsError } from "./errors.ts";
 * console.log(new WhpUnsupportedWindowsError("WHvMapGpaRange2").message);
 * ```
 */
export class WhpUnsupportedWindowsError extends SnapvmError {
  /** The missing export. */
  readonly symbol: string;
  /** Creates the error for the missing export `symbol`. */
  constructor(symbol: string) {
    super(
      `Cannot use ${symbol}: WinHvPlatform.dll on this machine does not export it; it needs Windows 11 or ` +
        "Windows Server 2022 or later",
    );
    this.name = "WhpUnsupportedWindowsError";
    this.symbol = symbol;
  }
}
