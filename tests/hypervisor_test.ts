// In CI the hypervisor must be usable: this is the one test that fails, with the reason, when it is not
// (every other hypervisor test is skipped then; see tests/_hypervisor.ts).
import { hypervisorProblem } from "./_hypervisor.ts";

Deno.test("the hypervisor is usable (required in CI)", () => {
  if (hypervisorProblem === undefined) return;
  if (Deno.env.get("CI") === "true") {
    throw new Error(`CI must run the hypervisor tests: ${hypervisorProblem}`);
  }
  console.error(`!!! not in CI, so not failing: ${hypervisorProblem} !!!`);
});
