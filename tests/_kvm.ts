/**
 * Test helpers: KVM-gated tests and paths of the guest binaries.
 *
 * @module
 */

/** Whether /dev/kvm exists here. */
export const hasKvm: boolean = (() => {
  try {
    Deno.statSync("/dev/kvm");
    return true;
  } catch {
    return false;
  }
})();

let warned = false;

/**
 * Registers a test that needs KVM. Without /dev/kvm it is skipped with one loud line, except in CI
 * (`CI=true`), where a missing /dev/kvm fails the test.
 */
export function kvmTest(name: string, fn: (t: Deno.TestContext) => void | Promise<void>): void {
  if (hasKvm) {
    Deno.test({ name, fn, sanitizeResources: false, sanitizeOps: false });
  } else if (Deno.env.get("CI") === "true") {
    Deno.test(name, () => {
      throw new Error("/dev/kvm is missing in CI: KVM tests must run there");
    });
  } else {
    if (!warned) {
      console.error(
        "!!! /dev/kvm not found: SKIPPING every KVM test (they run for real wherever /dev/kvm exists) !!!",
      );
      warned = true;
    }
    Deno.test({ name, ignore: true, fn });
  }
}

const guestDir = new URL("../guest/bin/", import.meta.url);

/** Path of a committed guest binary, e.g. `guestPath("testguest")`. */
export function guestPath(name: string): string {
  return new URL(name, guestDir).pathname;
}
