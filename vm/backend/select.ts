/**
 * Picks the hypervisor backend for this platform: KVM on Linux, the Windows Hypervisor Platform on Windows. Every part of snapvm that needs a VM gets it
 * from here, so this is the one place that knows which backends exist.
 *
 * @module
 */
import { HypervisorUnavailableError } from "../errors.ts";
import { kvmBackend } from "../kvm/backend.ts";
import { whpBackend } from "../whp/backend.ts";
import { Hypervisor } from "../../format/mod.ts";
import type { Backend } from "./backend.ts";

/**
 * The backend of this platform. Throws {@linkcode HypervisorUnavailableError} on a platform snapvm has no
 * backend for.
 *
 * @example
 * ```ts
 * import { backend } from "./select.ts";
 * console.log(backend().name); // "kvm" on Linux
 * ```
 */
export function backend(): Backend {
  if (Deno.build.arch === "x86_64") {
    if (Deno.build.os === "linux") return kvmBackend;
    if (Deno.build.os === "windows") return whpBackend;
  }
  throw new HypervisorUnavailableError(
    `${Deno.build.os}/${Deno.build.arch}`,
    "no hypervisor backend for this platform",
    "snapvm runs on x86-64 Linux (KVM) and x86-64 Windows (Windows Hypervisor Platform)",
  );
}

/**
 * The hypervisor tag this platform writes into snapshot files and expects in them (`HypervisorMismatch`
 * otherwise): WHP on Windows, KVM elsewhere. Known without opening the hypervisor, so that inspecting a
 * file works anywhere.
 *
 * @example
 * ```ts
 * import { hypervisorTag } from "./select.ts";
 * console.log(hypervisorTag()); // 1 (KVM) on Linux
 * ```
 */
export function hypervisorTag(): Hypervisor {
  return Deno.build.os === "windows" ? Hypervisor.WHP : Hypervisor.KVM;
}
