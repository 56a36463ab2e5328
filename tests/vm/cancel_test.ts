import assert from "node:assert/strict";
import { ExecutionCanceledError, PoisonedSandboxError, UninitializedSandbox } from "../../mod.ts";
import { guestPath, vmTest } from "../_hypervisor.ts";

vmTest("maxExecutionTimeMs stops a spinning guest", () => {
  using sbx = new UninitializedSandbox(guestPath("testguest"), { maxExecutionTimeMs: 50 }).evolve();
  assert.throws(() => sbx.call("Spin"), (e: unknown) => {
    assert.ok(e instanceof ExecutionCanceledError);
    assert.equal(e.name, "ExecutionCanceledError");
    assert.equal(e.reason, "timeout");
    return true;
  });
  assert.throws(() => sbx.call("Echo", "x"), PoisonedSandboxError);
  using fresh = new UninitializedSandbox(guestPath("testguest")).evolve();
  assert.equal(fresh.call("Echo", "after"), "after");
});

vmTest("a call that finishes in time is not affected by the limit, many times over", () => {
  using sbx = new UninitializedSandbox(guestPath("testguest"), { maxExecutionTimeMs: 5 }).evolve();
  for (let i = 0; i < 300; i++) assert.equal(sbx.call("EchoI32", i), i);
});

vmTest("an interrupt handle stops a spinning guest from a Worker", async () => {
  using sbx = new UninitializedSandbox(guestPath("testguest"), { maxExecutionTimeMs: 0 }).evolve();
  const handle = sbx.interruptHandle();
  assert.equal(handle.kill(), false, "kill on an idle sandbox does nothing");
  const worker = new Worker(new URL("./_interrupt_worker.ts", import.meta.url), { type: "module" });
  const done = new Promise<number>((resolve) => (worker.onmessage = (e) => resolve(e.data)));
  worker.postMessage(handle);
  assert.throws(() => sbx.call("Spin"), (e: unknown) => {
    assert.ok(e instanceof ExecutionCanceledError);
    assert.equal(e.reason, "interrupted");
    return true;
  });
  assert.ok((await done) >= 1);
  worker.terminate();
  assert.equal(sbx.poisoned, true);
});
