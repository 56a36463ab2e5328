import assert from "node:assert/strict";
import { HypervisorUnavailableError } from "../../../mod.ts";
import { guestPath, vmTest } from "../../_hypervisor.ts";

// Runs a child Deno in a private mount namespace where /dev is an empty tmpfs, so /dev/kvm really is
// missing for it. That needs root (and unshare); elsewhere the test says so and checks nothing.
vmTest("no /dev/kvm gives HypervisorUnavailableError that says what to do", async () => {
  if (Deno.build.os !== "linux" || Deno.uid() !== 0) {
    console.error("!!! not root: cannot hide /dev/kvm in a mount namespace; SKIPPING this check !!!");
    return;
  }
  const script = `
    import { UninitializedSandbox } from ${JSON.stringify(new URL("../../../mod.ts", import.meta.url).href)};
    try { new UninitializedSandbox(${
    JSON.stringify(guestPath("testguest"))
  }).evolve(); console.log("no error"); }
    catch (e) { console.log(JSON.stringify({ name: e.name, message: e.message, backend: e.backend, isClass: e.constructor.name })); }`;
  const cmd = new Deno.Command("unshare", {
    args: ["--mount", "sh", "-c", `mount -t tmpfs tmpfs /dev && exec "$0" run -A -`, Deno.execPath()],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  });
  const child = cmd.spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(script));
  await w.close();
  const out = await child.output();
  const text = new TextDecoder().decode(out.stdout).trim();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const r = JSON.parse(text);
  assert.equal(r.name, "HypervisorUnavailableError");
  assert.equal(r.isClass, HypervisorUnavailableError.name);
  assert.match(r.message, /\/dev\/kvm does not exist/);
  assert.match(r.message, /Hypervisor unavailable \(KVM\)/);
  assert.equal(r.backend, "kvm");
});
