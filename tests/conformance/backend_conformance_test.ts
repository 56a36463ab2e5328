/**
 * The backend conformance suite: what every hypervisor backend must do, through the public API only. It
 * runs on KVM in CI, and is what a Windows machine runs for the WHP backend (`deno task test:conformance`;
 * docs/WHP.md). Each test names the interface behaviour it covers.
 */
import assert from "node:assert/strict";
import {
  ExecutionCanceledError,
  GuestCrashedError,
  GuestError,
  HostFunctionError,
  HostFunctions,
  InterruptHandle,
  MemoryAccessViolationError,
  MultiUseSandbox,
  Snapshot,
  UninitializedSandbox,
} from "../../mod.ts";
import { guestPath, vmTest } from "../_hypervisor.ts";

const add = () =>
  new HostFunctions().register("Add", { params: ["i32", "i32"], returns: "i32" }, (a, b) => a + b);

vmTest("conformance: calls (io exits to the ABI ports, entry registers, memory mapping)", () => {
  using sbx = new UninitializedSandbox(guestPath("testguest"), {}, add()).evolve();
  assert.equal(sbx.call("Echo", "hello"), "hello");
  assert.equal(sbx.call("AddToStatic", 5), 5);
  assert.equal(sbx.call("AddToStatic", 5), 10);
  for (let i = 0; i < 200; i++) assert.equal(sbx.call("Echo", `n${i}`), `n${i}`);
});

vmTest("conformance: host functions (a host call exits and resumes)", () => {
  using sbx = new UninitializedSandbox(guestPath("testguest"), {}, add()).evolve();
  assert.equal(sbx.call("Add", 2, 40), 42);
  const boom = new HostFunctions().register("Add", { params: ["i32", "i32"], returns: "i32" }, () => {
    throw new Error("boom");
  });
  using bad = new UninitializedSandbox(guestPath("testguest"), {}, boom).evolve();
  assert.throws(() => bad.call("Add", 1, 2), HostFunctionError);
  assert.equal(bad.poisoned, false);
});

vmTest("conformance: errors (guest errors, exceptions through the IDT stubs, memory exits)", () => {
  using sbx = new UninitializedSandbox(guestPath("testguest")).evolve();
  using snap = sbx.snapshot();
  assert.throws(() => sbx.call("Fail", 101, "no"), GuestError);
  assert.throws(
    () => sbx.call("DivideByZero"),
    (e: unknown) => e instanceof GuestCrashedError && e.vector === 0,
  );
  sbx.restore(snap);
  assert.throws(
    () => sbx.call("IllegalInstruction"),
    (e: unknown) => e instanceof GuestCrashedError && e.vector === 6,
  );
  sbx.restore(snap);
  assert.throws(() => sbx.call("WildWrite", 0x40000000n), MemoryAccessViolationError);
  sbx.restore(snap);
  assert.equal(sbx.call("Echo", "after"), "after");
});

vmTest("conformance: cancellation (time limit, interrupt target)", () => {
  using sbx = new UninitializedSandbox(guestPath("testguest"), { maxExecutionTimeMs: 100 }).evolve();
  using snap = sbx.snapshot();
  assert.throws(() => sbx.call("Spin"), ExecutionCanceledError);
  sbx.restore(snap);
  const handle = InterruptHandle.from(
    structuredClone({ shared: sbx.interruptHandle().shared, target: sbx.interruptHandle().target }),
  );
  assert.equal(handle.kill(), false);
  assert.equal(sbx.call("Echo", "x"), "x");
});

vmTest("conformance: snapshot and restore (dirty tracking, special registers, remapping)", () => {
  using sbx = new UninitializedSandbox(guestPath("testguest")).evolve();
  sbx.call("AddToStatic", 41);
  using snap = sbx.snapshot();
  for (let i = 0; i < 20; i++) {
    sbx.call("AddToStatic", i + 1);
    sbx.restore(snap);
    assert.equal(sbx.call("GetStatic"), 41);
  }
  using other = MultiUseSandbox.fromSnapshot(snap);
  assert.equal(other.call("GetStatic"), 41);
  assert.notEqual(other.call("Generation"), sbx.call("Generation"));
});

vmTest("conformance: snapshot file round trip (the hypervisor tag, copy-on-write mapping)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "snapvm-conformance-" });
  try {
    {
      using sbx = new UninitializedSandbox(guestPath("testguest"), {}, add()).evolve();
      sbx.call("AddToStatic", 7);
      using snap = sbx.snapshot();
      await snap.toFile(`${dir}/s.hls`);
    }
    assert.equal(Snapshot.inspectFile(`${dir}/s.hls`).compatible, true);
    for (const load of [Snapshot.fromFile, Snapshot.fromFileUnchecked]) {
      using snap = load(`${dir}/s.hls`);
      using sbx = MultiUseSandbox.fromSnapshot(snap, add());
      assert.equal(sbx.call("GetStatic"), 7);
      assert.equal(sbx.call("Add", 1, 2), 3);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
