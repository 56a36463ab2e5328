/**
 * `MultiUseSandbox.fromSnapshot(snapshot, hostFunctions?, config?)`: the public `HostFunctions` class, the
 * superset rule for host functions, and which configuration fields apply to a sandbox made from a snapshot.
 */
import assert from "node:assert/strict";
import {
  HostFunctionMismatchError,
  HostFunctions,
  type LogRecord,
  MultiUseSandbox,
  setLogger,
  Snapshot,
  UninitializedSandbox,
} from "../../../mod.ts";
import { vmTest } from "../../_hypervisor.ts";
import { hostFns, TESTGUEST, testguest, withTempDir } from "./_util.ts";

/** Runs `fn` with the module's logger capturing records. */
function capturingLogs<T>(fn: (records: LogRecord[]) => T): T {
  const records: LogRecord[] = [];
  setLogger((r) => void records.push(r));
  try {
    return fn(records);
  } finally {
    setLogger(undefined);
  }
}

Deno.test("HostFunctions is a public class that starts with the default HostPrint", () => {
  const fns = new HostFunctions();
  assert.deepEqual(fns.names(), ["HostPrint"]);
  assert.deepEqual(fns.get("HostPrint")?.signature, { params: ["string"], returns: "i32" });
  const same = fns.register("Add", { params: ["i32", "i32"], returns: "i32" }, (a, b) => a + b);
  assert.equal(same, fns, "register returns the set");
  assert.deepEqual(fns.names(), ["Add", "HostPrint"]);
  assert.throws(() => fns.register("", { params: [], returns: "void" }, () => undefined), TypeError);
  assert.throws(
    () => fns.register("Bad", { params: ["void" as "i32"], returns: "void" }, () => undefined),
    TypeError,
  );
  assert.throws(
    () => fns.register("Bad", { params: [], returns: "nope" as "void" }, () => undefined),
    TypeError,
  );
});

vmTest("UninitializedSandbox takes a HostFunctions set", () => {
  const printed: string[] = [];
  const fns = new HostFunctions()
    .register("Add", { params: ["i32", "i32"], returns: "i32" }, (a, b) => a * 1000 + b)
    .registerPrint((t) => void printed.push(t));
  const u = new UninitializedSandbox(TESTGUEST, undefined, fns);
  assert.deepEqual(u.hostFunctions.names(), ["Add", "HostPrint"]);
  using sbx = u.evolve();
  assert.equal(sbx.call("Add", 4, 2), 4002);
  sbx.call("PrintOutput", "via the set");
  assert.deepEqual(printed, ["via the set"]);
});

vmTest(
  "fromSnapshot accepts a superset of the recorded host functions and uses the given implementations",
  async () => {
    await withTempDir(async (dir) => {
      using src = testguest().evolve();
      src.call("AddToStatic", 41);
      using snap = src.snapshot();
      await snap.toFile(`${dir}/s.hls`);
      using pre = testguest().snapshot();
      using loaded = Snapshot.fromFile(`${dir}/s.hls`);
      for (const [s, base] of [[snap, 41], [pre, 0], [loaded, 41]] as const) {
        const printed: string[] = [];
        const fns = new HostFunctions()
          .register("Add", { params: ["i32", "i32"], returns: "i32" }, (a, b) => a * b) // another implementation
          .register("Extra", { params: ["string", "u64"], returns: "bytes" }, () => new Uint8Array(1))
          .register("Another", { params: [], returns: "void" }, () => undefined)
          .registerPrint((t) => void printed.push(t));
        using sbx = MultiUseSandbox.fromSnapshot(s, fns);
        assert.equal(sbx.call("GetStatic"), base);
        assert.equal(sbx.call("Add", 6, 7), 42, "the implementation given to fromSnapshot is called");
        assert.equal(sbx.call("PrintOutput", "hello"), 5);
        assert.deepEqual(printed, ["hello"]);
        // Registering on the set afterwards does not change the sandbox.
        fns.register("Add", { params: ["i32", "i32"], returns: "i32" }, () => -1);
        assert.equal(sbx.call("Add", 6, 7), 42);
      }
    });
  },
);

vmTest("fromSnapshot without host functions works when the snapshot records only HostPrint", () => {
  const u = new UninitializedSandbox(TESTGUEST); // only the default HostPrint
  using src = u.evolve();
  using snap = src.snapshot();
  assert.deepEqual(snap.hostFunctions, [{ name: "HostPrint", params: ["string"], returns: "i32" }]);
  using sbx = MultiUseSandbox.fromSnapshot(snap);
  assert.equal(sbx.call("Echo", "no host functions"), "no host functions");
  // Add is not a host function of this sandbox: the guest reports it, as with evolve().
  assert.throws(() => sbx.call("Add", 1, 2), { name: "GuestError", code: 2 });
  using pre = u.snapshot();
  using fromPre = MultiUseSandbox.fromSnapshot(pre);
  assert.equal(fromPre.call("Echo", "x"), "x");
});

vmTest("a snapshot records the host functions of its source when it is taken", () => {
  const u = testguest();
  using pre = u.snapshot();
  u.registerHostFunction("Later", { params: ["u32"], returns: "u32" }, (x) => x);
  using later = u.snapshot();
  assert.deepEqual(pre.hostFunctions.map((f) => f.name), ["Add", "HostPrint"]);
  assert.deepEqual(later.hostFunctions.map((f) => f.name), ["Add", "HostPrint", "Later"]);
  // A sandbox made with a superset records the superset: sandboxes made from its snapshots need it too.
  const superset = hostFns().register("Extra", { params: [], returns: "void" }, () => undefined);
  using sbx = MultiUseSandbox.fromSnapshot(pre, superset);
  using snap = sbx.snapshot();
  assert.deepEqual(snap.hostFunctions.map((f) => f.name), ["Add", "Extra", "HostPrint"]);
  assert.throws(() => MultiUseSandbox.fromSnapshot(snap, hostFns()), (e: unknown) => {
    assert.ok(e instanceof HostFunctionMismatchError);
    assert.deepEqual(e.missing, ["Extra() -> void"]);
    return true;
  });
});

vmTest("HostFunctionMismatchError lists every missing function and every signature mismatch", async () => {
  await withTempDir(async (dir) => {
    const recorded = new HostFunctions()
      .register("Add", { params: ["i32", "i32"], returns: "i32" }, (a, b) => a + b)
      .register("Mul", { params: ["f64", "f64"], returns: "f64" }, (a, b) => a * b)
      .register("Name", { params: [], returns: "string" }, () => "n")
      .register("Blob", { params: ["bytes"], returns: "void" }, () => undefined)
      .register("Order", { params: ["u32", "i32"], returns: "bool" }, () => true);
    const u = testguest(undefined, recorded);
    using pre = u.snapshot();
    using src = u.evolve();
    using call = src.snapshot();
    await call.toFile(`${dir}/call.hls`);
    await pre.toFile(`${dir}/pre.hls`);
    using loadedCall = Snapshot.fromFile(`${dir}/call.hls`);
    using loadedPre = Snapshot.fromFileUnchecked(`${dir}/pre.hls`);

    const given = new HostFunctions()
      .register("HostPrint", { params: ["string"], returns: "void" }, () => undefined) // return type differs
      .register("Add", { params: ["i32", "i32"], returns: "i64" }, () => 0n) // return type differs
      .register("Blob", { params: ["bytes"], returns: "void" }, () => undefined) // matches
      .register("Order", { params: ["i32", "u32"], returns: "bool" }, () => true) // parameter order differs
      .register("Unrelated", { params: [], returns: "void" }, () => undefined);
    for (
      const [what, snap] of [["Call", call], ["Initialise", pre], ["fromFile", loadedCall], [
        "unchecked",
        loadedPre,
      ]] as const
    ) {
      assert.throws(() => MultiUseSandbox.fromSnapshot(snap, given), (e: unknown) => {
        assert.ok(e instanceof HostFunctionMismatchError, `${what}: ${e}`);
        assert.equal(e.name, "HostFunctionMismatchError");
        assert.deepEqual([...e.missing].sort(), ["Mul(f64, f64) -> f64", "Name() -> string"], what);
        assert.deepEqual([...e.mismatched].sort((a, b) => a.name.localeCompare(b.name)), [
          { name: "Add", recorded: "Add(i32, i32) -> i32", given: "Add(i32, i32) -> i64" },
          { name: "HostPrint", recorded: "HostPrint(string) -> i32", given: "HostPrint(string) -> void" },
          { name: "Order", recorded: "Order(u32, i32) -> bool", given: "Order(i32, u32) -> bool" },
        ], what);
        for (
          const text of [
            "Mul(f64, f64) -> f64",
            "Name() -> string",
            "Add(i32, i32) -> i64",
            "HostPrint",
            "Order",
          ]
        ) {
          assert.ok(e.message.includes(text), `${what}: message lacks ${text}: ${e.message}`);
        }
        assert.ok(!e.message.includes("Blob") && !e.message.includes("Unrelated"), e.message);
        return true;
      });
    }
    // Only missing ones, only mismatched ones.
    assert.throws(() => MultiUseSandbox.fromSnapshot(call), (e: unknown) => {
      assert.ok(e instanceof HostFunctionMismatchError);
      assert.deepEqual([...e.missing].sort(), [
        "Add(i32, i32) -> i32",
        "Blob(bytes) -> void",
        "Mul(f64, f64) -> f64",
        "Name() -> string",
        "Order(u32, i32) -> bool",
      ]);
      assert.deepEqual(e.mismatched, []);
      return true;
    });
    const oneParam = recorded.clone().register("Add", { params: ["i32"], returns: "i32" }, (a) => a);
    assert.throws(() => MultiUseSandbox.fromSnapshot(loadedCall, oneParam), (e: unknown) => {
      assert.ok(e instanceof HostFunctionMismatchError);
      assert.deepEqual(e.missing, []);
      assert.deepEqual(e.mismatched, [{
        name: "Add",
        recorded: "Add(i32, i32) -> i32",
        given: "Add(i32) -> i32",
      }]);
      return true;
    });
    // The exact set works.
    using ok = MultiUseSandbox.fromSnapshot(loadedCall, recorded);
    assert.equal(ok.call("Add", 2, 2), 4);
  });
});

vmTest("fromSnapshot: maxExecutionTimeMs and guestLogLevel of the given config take effect", async () => {
  await withTempDir(async (dir) => {
    // The source has no time limit and logs only errors; neither is part of the snapshot.
    using src = testguest({ maxExecutionTimeMs: 0, guestLogLevel: "error" }).evolve();
    using snap = src.snapshot();
    await snap.toFile(`${dir}/s.hls`);
    using loaded = Snapshot.fromFile(`${dir}/s.hls`);
    using pre = testguest({ maxExecutionTimeMs: 0, guestLogLevel: "error" }).snapshot();
    for (const [what, s] of [["in memory", snap], ["from file", loaded], ["Initialise", pre]] as const) {
      using limited = MultiUseSandbox.fromSnapshot(s, hostFns(), { maxExecutionTimeMs: 250 });
      assert.throws(() => limited.call("Spin"), { name: "ExecutionCanceledError" }, what);

      capturingLogs((records) => {
        using info = MultiUseSandbox.fromSnapshot(s, hostFns(), { guestLogLevel: "info" });
        info.call("LogMessage", 1, "debug record");
        info.call("LogMessage", 2, "info record");
        using defaults = MultiUseSandbox.fromSnapshot(s, hostFns()); // default level: warn
        defaults.call("LogMessage", 2, "info record, filtered");
        defaults.call("LogMessage", 3, "warn record");
        const guest = records.filter((r) => r.source === "guest").map((r) => [r.level, r.message]);
        assert.deepEqual(guest, [["info", "info record"], ["warn", "warn record"]], what);
        assert.deepEqual(records.filter((r) => r.source === "snapvm"), [], `${what}: no warnings`);
      });
    }
  });
});

vmTest(
  "fromSnapshot: the layout comes from the snapshot; a config asking for another one is a logged warning",
  async () => {
    await withTempDir(async (dir) => {
      const layout = {
        heapSize: 256 * 1024,
        stackSize: 32 * 1024,
        inputDataSize: 8 * 1024,
        outputDataSize: 12 * 1024,
      };
      using src = testguest(layout).evolve();
      using snap = src.snapshot();
      await snap.toFile(`${dir}/s.hls`);
      using loaded = Snapshot.fromFile(`${dir}/s.hls`);
      using pre = testguest(layout).snapshot();
      const other = {
        heapSize: 64 << 20,
        stackSize: 1 << 20,
        inputDataSize: 1 << 20,
        outputDataSize: 1 << 20,
      };
      for (const [what, s] of [["in memory", snap], ["from file", loaded], ["Initialise", pre]] as const) {
        capturingLogs((records) => {
          using sbx = MultiUseSandbox.fromSnapshot(s, hostFns(), other);
          const warnings = records.filter((r) => r.source === "snapvm");
          assert.equal(warnings.length, 4, `${what}: one warning per field: ${JSON.stringify(warnings)}`);
          for (const [field, value] of Object.entries(layout)) {
            const w = warnings.find((r) => r.message.includes(field));
            assert.ok(w, `${what}: no warning about ${field}`);
            assert.equal(w.level, "warn");
            assert.ok(
              w.message.includes(String(value)),
              `${what}: ${w.message} does not say the snapshot's value`,
            );
          }
          // The snapshot's sizes are in force: a 1 MiB allocation does not fit the 256 KiB heap...
          assert.throws(() => sbx.call("Malloc", 1n << 20n), { name: "GuestError", code: 4 }, what);
          // ...arguments must fit the 8 KiB input buffer...
          assert.throws(() => sbx.call("Echo", "x".repeat(9000)), {
            name: "RangeError",
            message: /8192-byte/,
          }, what);
          // ...results the 12 KiB output buffer...
          assert.throws(() => sbx.call("ReturnLarge", 13 * 1024), { name: "GuestError", code: 5 }, what);
          assert.equal((sbx.call("ReturnLarge", 11 * 1024) as Uint8Array).length, 11 * 1024);
          // ...and the stack is 32 KiB: 6 frames of 4 KiB fit, 64 overflow.
          assert.equal(sbx.call("StackOverflow", 6), 6);
          assert.throws(() => sbx.call("StackOverflow", 64), { name: "GuestCrashedError" }, what);
        });
        capturingLogs((records) => {
          // Asking for exactly the snapshot's layout (or sizes that round up to it) is not worth a warning.
          using same = MultiUseSandbox.fromSnapshot(s, hostFns(), {
            ...layout,
            heapSize: layout.heapSize - 100,
          });
          using runtimeOnly = MultiUseSandbox.fromSnapshot(s, hostFns(), { maxExecutionTimeMs: 500 });
          assert.deepEqual(records, [], what);
          assert.equal(same.call("GetStatic"), runtimeOnly.call("GetStatic"));
        });
      }
    });
  },
);

vmTest("fromSnapshot: guestInitArg of the config reaches guest init of an Initialise snapshot", async () => {
  await withTempDir(async (dir) => {
    const u = testguest({ heapSize: 1 << 20 });
    using pre = u.snapshot();
    await pre.toFile(`${dir}/pre.hls`);
    const h = Snapshot.inspectFile(`${dir}/pre.hls`).header;
    const heapBase = BigInt(h.memory_size) - BigInt(h.heap_size);
    // Init with arg bit 0 writes 1 at the start of every page of one heap-sized allocation (header 16 bytes).
    const marks = (sbx: MultiUseSandbox) =>
      [8n, 64n, 200n].map((page) => sbx.call("ReadAddr", heapBase + 16n + page * 4096n) as bigint);
    using plain = MultiUseSandbox.fromSnapshot(pre, hostFns());
    assert.deepEqual(marks(plain), [0n, 0n, 0n]);
    using touched = MultiUseSandbox.fromSnapshot(pre, hostFns(), { guestInitArg: 1 });
    assert.deepEqual(marks(touched), [1n, 1n, 1n]);
    using loaded = Snapshot.fromFile(`${dir}/pre.hls`);
    using fromFile = MultiUseSandbox.fromSnapshot(loaded, hostFns(), { guestInitArg: 1n });
    assert.deepEqual(marks(fromFile), [1n, 1n, 1n]);
    // restore() of the Initialise snapshot runs init with the sandbox's own configuration again.
    touched.restore(pre);
    assert.deepEqual(marks(touched), [1n, 1n, 1n]);
    plain.restore(pre);
    assert.deepEqual(marks(plain), [0n, 0n, 0n]);
  });
});
