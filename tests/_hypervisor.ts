/**
 * Test helpers: the backend-neutral gate for tests that need a hypervisor (KVM on Linux, WHP on Windows),
 * and the paths of the guest binaries.
 *
 * The gate tries the hypervisor once per test process, the way a sandbox would. Where it cannot be used
 * (no /dev/kvm, a user without access to it, no Windows Hypervisor Platform), every gated test is skipped
 * with one loud line. In CI (`CI=true`) the tests are skipped too, and tests/hypervisor_test.ts fails once,
 * with the reason: one clear failure instead of hundreds.
 *
 * @module
 */
import { HypervisorUnavailableError } from "../mod.ts";
import { backend } from "../vm/backend/select.ts";

/** Why the hypervisor cannot be used here, or undefined when it can. */
export const hypervisorProblem: string | undefined = (() => {
  try {
    backend().createVm().release(true);
    return undefined;
  } catch (e) {
    if (e instanceof HypervisorUnavailableError) return e.message;
    return `the hypervisor failed: ${e instanceof Error ? e.message : String(e)}`;
  }
})();

/** Whether the hypervisor can be used here. */
export const hasHypervisor: boolean = hypervisorProblem === undefined;

let warned = false;

/**
 * Registers a test that needs the hypervisor. Where it cannot be used, the test is skipped, and one line
 * per test process says so loudly.
 */
export function vmTest(name: string, fn: (t: Deno.TestContext) => void | Promise<void>): void {
  if (hasHypervisor) {
    Deno.test({ name, fn, sanitizeResources: false, sanitizeOps: false });
    return;
  }
  if (!warned) {
    console.error(`!!! ${hypervisorProblem}: SKIPPING every test that needs a hypervisor !!!`);
    warned = true;
  }
  Deno.test({ name, ignore: true, fn });
}

const guestDir = new URL("../guest/bin/", import.meta.url);

/** Path of a committed guest binary, e.g. `guestPath("testguest")`. */
export function guestPath(name: string): string {
  return decodeURIComponent(new URL(name, guestDir).pathname);
}
