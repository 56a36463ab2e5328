/**
 * Calls that do not stop the world: `callAsync` (the vCPU on a run thread of its own) and hot sandboxes
 * (the guest polls its mailbox between calls), on real KVM. Every mode must behave like `call()`: values,
 * host functions, typed errors, poisoning, time limits, interrupt handles, and the busy rules.
 */
import assert from "node:assert/strict";
import {
  ExecutionCanceledError,
  GuestAbortedError,
  GuestCrashedError,
  GuestError,
  HostFunctionError,
  HostFunctions,
  type LogRecord,
  MemoryAccessViolationError,
  MultiUseSandbox,
  PoisonedSandboxError,
  SandboxBusyError,
  type SandboxConfiguration,
  setLogger,
  UninitializedSandbox,
} from "../../../mod.ts";
import { guestPath, vmTest } from "../../_hypervisor.ts";

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

function hostFunctions(): HostFunctions {
  return new HostFunctions()
    .register("Add", { params: ["i32", "i32"], returns: "i32" }, (a: number, b: number) => a + b);
}

function testguest(config: SandboxConfiguration = {}, fns = hostFunctions()): MultiUseSandbox {
  return new UninitializedSandbox(guestPath("testguest"), config, fns).evolve();
}

/** The ways a call can run, each as a function of a sandbox made for it. */
const MODES: { name: string; config: SandboxConfiguration; call: CallFn }[] = [
  { name: "callAsync", config: {}, call: (s, n, ...a) => s.callAsync(n, ...a) },
  {
    name: "hot call",
    config: { hot: true },
    call: (s, n, ...a) => new Promise((resolve) => resolve(s.call(n, ...a))),
  },
  { name: "hot callAsync", config: { hot: true }, call: (s, n, ...a) => s.callAsync(n, ...a) },
];
type CallFn = (s: MultiUseSandbox, name: string, ...args: unknown[]) => Promise<unknown>;

/** The run thread of a sandbox's last call (interrupt-handle word 3, see vm/interrupt_handle.ts). */
function runThreadOf(sbx: MultiUseSandbox): number {
  return new Int32Array(sbx.interruptHandle().shared)[3];
}

function taskState(tid: number): { state: string; cpuTicks: number } {
  const fields = Deno.readTextFileSync(`/proc/self/task/${tid}/stat`).split(") ")[1].split(" ");
  return { state: fields[0], cpuTicks: Number(fields[11]) + Number(fields[12]) };
}

for (const mode of MODES) {
  vmTest(`${mode.name}: every value type round-trips, host functions work`, async () => {
    using sbx = testguest(mode.config);
    assert.equal(await mode.call(sbx, "Echo", "héllo ✓"), "héllo ✓");
    assert.equal(await mode.call(sbx, "EchoI32", -5), -5);
    assert.equal(await mode.call(sbx, "EchoU64", (1n << 64n) - 1n), (1n << 64n) - 1n);
    assert.equal(await mode.call(sbx, "EchoF64", Math.PI), Math.PI);
    assert.equal(await mode.call(sbx, "EchoBool", true), true);
    const bytes = new Uint8Array(3000).map((_, i) => i * 3);
    assert.deepEqual(await mode.call(sbx, "EchoBytes", bytes), bytes);
    assert.equal(await mode.call(sbx, "Nothing"), undefined);
    assert.equal(await mode.call(sbx, "Add", 40, 2), 42);
    assert.equal(await mode.call(sbx, "AddToStatic", 5), 5);
    assert.equal(await mode.call(sbx, "AddToStatic", 5), 10);
    for (let i = 0; i < 200; i++) assert.equal(await mode.call(sbx, "EchoI32", i), i);
    // A guest log record goes through the mailbox too; the call goes on.
    const records: LogRecord[] = [];
    setLogger((r) => records.push(r));
    try {
      assert.equal(await mode.call(sbx, "LogMessage", 4, "logged"), undefined);
    } finally {
      setLogger(undefined);
    }
    assert.deepEqual(records, [{ level: "error", source: "guest", message: "logged" }]);
    // The synchronous path still works on the same sandbox afterwards.
    assert.equal(sbx.call("Echo", "sync"), "sync");
  });

  vmTest(`${mode.name}: typed errors, and poisoning exactly as for call()`, async () => {
    using sbx = testguest(mode.config);
    const snap = sbx.snapshot();
    await assert.rejects(() => mode.call(sbx, "Fail", 101, "nope"), (e: unknown) => {
      assert.ok(e instanceof GuestError && e.code === 101, String(e));
      return true;
    });
    assert.equal(sbx.poisoned, false);
    await assert.rejects(() => mode.call(sbx, "Abort", 7, "bye"), GuestAbortedError);
    assert.equal(sbx.poisoned, true);
    await assert.rejects(() => mode.call(sbx, "Echo", "x"), PoisonedSandboxError);
    sbx.restore(snap);
    await assert.rejects(() => mode.call(sbx, "WildWrite", 0x10n), MemoryAccessViolationError);
    sbx.restore(snap);
    await assert.rejects(() => mode.call(sbx, "DivideByZero"), (e: unknown) => {
      assert.ok(e instanceof GuestCrashedError && e.vector === 0, String(e));
      return true;
    });
    sbx.restore(snap);
    assert.equal(await mode.call(sbx, "Echo", "back"), "back");
    snap.close();
  });

  vmTest(`${mode.name}: the time limit stops a guest that never answers`, async () => {
    using sbx = testguest({ ...mode.config, maxExecutionTimeMs: 100 });
    const snap = sbx.snapshot();
    await assert.rejects(() => mode.call(sbx, "Spin"), (e: unknown) => {
      assert.ok(e instanceof ExecutionCanceledError && e.reason === "timeout", String(e));
      return true;
    });
    assert.equal(sbx.poisoned, true);
    sbx.restore(snap);
    assert.equal(await mode.call(sbx, "Echo", "after"), "after");
    snap.close();
  });

  vmTest(`${mode.name}: an interrupt handle stops it from a Worker`, async () => {
    using sbx = testguest({ ...mode.config, maxExecutionTimeMs: 0 });
    const worker = new Worker(new URL("../_interrupt_worker.ts", import.meta.url), { type: "module" });
    try {
      const attempts = new Promise<number>((resolve) => (worker.onmessage = (e) => resolve(e.data)));
      worker.postMessage(sbx.interruptHandle());
      await assert.rejects(() => mode.call(sbx, "Spin"), (e: unknown) => {
        assert.ok(e instanceof ExecutionCanceledError && e.reason === "interrupted", String(e));
        return true;
      });
      assert.ok((await attempts) >= 1);
      assert.equal(sbx.poisoned, true);
    } finally {
      worker.terminate();
    }
  });

  vmTest(`${mode.name}: restore, snapshot and a fresh state per call`, async () => {
    using sbx = testguest(mode.config);
    using snap = sbx.snapshot();
    for (let i = 0; i < 20; i++) {
      assert.equal(await mode.call(sbx, "AddToStatic", 3), 3);
      sbx.restore(snap);
    }
    await mode.call(sbx, "AddToStatic", 9);
    using later = sbx.snapshot();
    assert.equal(await mode.call(sbx, "AddToStatic", 1), 10);
    sbx.restore(later);
    assert.equal(await mode.call(sbx, "GetStatic"), 9);
    using clone = MultiUseSandbox.fromSnapshot(later, hostFunctions(), mode.config);
    assert.equal(await mode.call(clone, "GetStatic"), 9);
  });
}

vmTest("callAsync keeps the event loop free while the guest computes", async () => {
  using sbx = testguest({ maxExecutionTimeMs: 300 });
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  try {
    await assert.rejects(() => sbx.callAsync("Spin"), ExecutionCanceledError);
  } finally {
    clearInterval(timer);
  }
  assert.ok(ticks > 0, "timers ran while the guest spun");
});

vmTest("the event loop can kill its own async call with an interrupt handle", async () => {
  for (const config of [{}, { hot: true }]) {
    using sbx = testguest({ ...config, maxExecutionTimeMs: 0 });
    const handle = sbx.interruptHandle();
    const call = sbx.callAsync("Spin");
    await delay(20);
    assert.equal(handle.kill(), true);
    await assert.rejects(
      call,
      (e: unknown) => e instanceof ExecutionCanceledError && e.reason === "interrupted",
    );
  }
});

vmTest("many sandboxes run in parallel from one event loop, each on its own thread", async () => {
  const sandboxes = Array.from({ length: 8 }, (_, i) => testguest(i % 2 ? { hot: true } : {}));
  try {
    const results = await Promise.all(
      sandboxes.map(async (s, i) => {
        const out: unknown[] = [];
        for (let k = 0; k < 50; k++) out.push(await s.callAsync("Add", i, k));
        return out;
      }),
    );
    results.forEach((out, i) => assert.deepEqual(out, Array.from({ length: 50 }, (_, k) => i + k)));
    const threads = new Set(sandboxes.map(runThreadOf));
    assert.equal(threads.size, sandboxes.length, "one run thread per sandbox");
    assert.ok(!threads.has(0));
  } finally {
    for (const s of sandboxes) s.close();
  }
});

vmTest("a sandbox with a call in flight refuses calls, snapshot, restore and close", async () => {
  for (const config of [{}, { hot: true }]) {
    using sbx = testguest({ ...config, maxExecutionTimeMs: 0 });
    using snap = sbx.snapshot();
    const handle = sbx.interruptHandle();
    const call = sbx.callAsync("Spin");
    const busy = (e: unknown) => e instanceof SandboxBusyError && /in flight/.test(e.message);
    await assert.rejects(() => sbx.callAsync("Echo", "x"), busy);
    assert.throws(() => sbx.call("Echo", "x"), busy);
    assert.throws(() => sbx.snapshot(), busy);
    assert.throws(() => sbx.restore(snap), busy);
    assert.throws(() => sbx.close(), busy);
    handle.kill();
    await assert.rejects(call, ExecutionCanceledError);
    sbx.restore(snap);
    assert.equal(await sbx.callAsync("Echo", "free"), "free");
  }
});

vmTest("callAsync: host functions may return a Promise, awaited before the guest goes on", async () => {
  for (const config of [{}, { hot: true }]) {
    const fns = new HostFunctions().register(
      "Add",
      { params: ["i32", "i32"], returns: "i32" },
      async (a: number, b: number) => {
        await delay(5);
        return a * 100 + b;
      },
    );
    using sbx = testguest(config, fns);
    assert.equal(await sbx.callAsync("Add", 3, 4), 304);
    // call() cannot wait: a Promise is a HostFunctionError there, and the sandbox stays usable.
    assert.throws(() => sbx.call("Add", 1, 2), HostFunctionError);
    assert.equal(sbx.poisoned, false);
  }
});

vmTest("callAsync: a host Promise that rejects is a HostFunctionError, not poisoning", async () => {
  const fns = new HostFunctions().register(
    "Add",
    { params: ["i32", "i32"], returns: "i32" },
    () => Promise.reject(new Error("backend down")),
  );
  using sbx = testguest({ hot: true }, fns);
  await assert.rejects(() => sbx.callAsync("Add", 1, 2), (e: unknown) => {
    assert.ok(e instanceof HostFunctionError && /backend down/.test(e.message), String(e));
    return true;
  });
  assert.equal(sbx.poisoned, false);
});

vmTest(
  "callAsync: a host Promise that never settles is ended by the limit or the interrupt handle",
  async () => {
    const fns = new HostFunctions().register("Add", { params: ["i32", "i32"], returns: "i32" }, () => {
      return new Promise<number>(() => {});
    });
    {
      using sbx = testguest({ maxExecutionTimeMs: 50 }, fns);
      await assert.rejects(
        () => sbx.callAsync("Add", 1, 2),
        (e: unknown) => e instanceof ExecutionCanceledError && e.reason === "timeout",
      );
      assert.equal(sbx.poisoned, true);
    }
    using sbx = testguest({ hot: true, maxExecutionTimeMs: 0 }, fns);
    const call = sbx.callAsync("Add", 1, 2);
    await delay(20);
    assert.equal(sbx.interruptHandle().kill(), true);
    await assert.rejects(
      call,
      (e: unknown) => e instanceof ExecutionCanceledError && e.reason === "interrupted",
    );
  },
);

vmTest("an async call's limit bounds a sandbox its host function calls synchronously", async () => {
  using inner = new UninitializedSandbox(guestPath("attackguest"), { maxExecutionTimeMs: 0 }).evolve();
  const fns = new HostFunctions().register("SpinInner", { params: [], returns: "i32" }, () => {
    inner.call("Spin");
    return 0;
  });
  using outer = new UninitializedSandbox(guestPath("attackguest"), { maxExecutionTimeMs: 200 }, fns).evolve();
  await assert.rejects(() => outer.callAsync("CallHost", "SpinInner"), (e: unknown) => {
    assert.ok(e instanceof HostFunctionError || e instanceof ExecutionCanceledError, String(e));
    return true;
  });
  assert.equal(inner.poisoned, true);
});

for (const mode of MODES.filter((m) => m.config.hot)) {
  // A hot call reads the clock only once its first spin is over: its limit must be in force before any host
  // function runs, for the sandboxes that function calls too.
  vmTest(`${mode.name}: its limit bounds a sandbox its host function calls synchronously`, async () => {
    using inner = new UninitializedSandbox(guestPath("attackguest"), { maxExecutionTimeMs: 0 }).evolve();
    const fns = new HostFunctions().register("SpinInner", { params: [], returns: "i32" }, () => {
      inner.call("Spin");
      return 0;
    });
    using outer = new UninitializedSandbox(
      guestPath("attackguest"),
      { ...mode.config, maxExecutionTimeMs: 200 },
      fns,
    ).evolve();
    // Warm: the guest polls, and the host call comes within the first spin, before the clock is read.
    for (let i = 0; i < 200; i++) await mode.call(outer, "Counter");
    await assert.rejects(() => mode.call(outer, "CallHost", "SpinInner"), (e: unknown) => {
      assert.ok(e instanceof HostFunctionError || e instanceof ExecutionCanceledError, String(e));
      return true;
    });
    assert.equal(inner.poisoned, true);
  });
}

vmTest("an idle hot sandbox parks itself and then uses no CPU", async () => {
  using sbx = testguest({ hot: { idleSpinMs: 1 } });
  assert.equal(sbx.call("Echo", "x"), "x");
  const tid = runThreadOf(sbx);
  let parked = false;
  for (let i = 0; i < 500 && !parked; i++) {
    await delay(10);
    parked = taskState(tid).state === "S";
  }
  assert.ok(parked, "the run thread sleeps");
  const before = taskState(tid).cpuTicks;
  await delay(200);
  assert.equal(taskState(tid).cpuTicks, before, "no CPU time while parked");
  assert.equal(sbx.call("Echo", "woken"), "woken");
});

// ---- the mailbox is hostile ---------------------------------------------------------------------------------

vmTest("a forged mailbox message (unknown kind, skipped sequence number) is a protocol error", async () => {
  const attack = () =>
    new UninitializedSandbox(guestPath("attackguest"), { hot: true, maxExecutionTimeMs: 2000 }).evolve();
  for (
    const [delta, kind, pattern] of [[1, 7, /kind is 7/], [2, 2, /guest_seq is/], [
      1,
      0,
      /kind is 0/,
    ]] as const
  ) {
    for (
      const run of [(s: MultiUseSandbox) => s.call("ForgeMailbox", "s", delta, kind, 16384), (
        s: MultiUseSandbox,
      ) => s.callAsync("ForgeMailbox", "s", delta, kind, 16384)]
    ) {
      using sbx = attack();
      await assert.rejects(async () => await run(sbx), (e: unknown) => {
        assert.ok(e instanceof GuestCrashedError && pattern.test(e.message), String(e));
        return true;
      });
      assert.equal(sbx.poisoned, true);
    }
  }
});

vmTest(
  "a hot guest that answers but never parks is parked by the host, and stopped by the limit",
  async () => {
    using sbx = new UninitializedSandbox(guestPath("attackguest"), {
      hot: { idleSpinMs: 1 },
      maxExecutionTimeMs: 300,
    }).evolve();
    // The guest posts a valid (void) result and then spins forever instead of polling the mailbox.
    assert.equal(sbx.call("ForgeMailbox", "s", 1, 1, 16384), undefined);
    const tid = runThreadOf(sbx);
    let parked = false;
    for (let i = 0; i < 500 && !parked; i++) {
      await delay(10);
      parked = taskState(tid).state === "S";
    }
    assert.ok(parked, "the host parked the spinning guest");
    // It never answers again: the next call ends at the time limit.
    assert.throws(() => sbx.call("Counter"), (e: unknown) => {
      assert.ok(e instanceof ExecutionCanceledError && e.reason === "timeout", String(e));
      return true;
    });
  },
);

// ---- the trust boundary holds on the run thread too --------------------------------------------------------

const SELECTORS = 0x002b_002b_002b_002bn; // DS, ES, FS, GS = user data

vmTest("selectors a guest loads on a run thread reach no other tenant, restore or pooled VM", async () => {
  for (const config of [{}, { hot: true }]) {
    const u = new UninitializedSandbox(guestPath("attackguest"), config);
    {
      using a = u.evolve();
      using snap = a.snapshot();
      await a.callAsync("LoadSegs", SELECTORS);
      assert.equal(await a.callAsync("ReadSegs"), SELECTORS, "the guest did load them");
      a.restore(snap);
      assert.equal(await a.callAsync("ReadSegs"), 0n, "after restore");
      await a.callAsync("LoadSegs", SELECTORS);
      using c = MultiUseSandbox.fromSnapshot(snap, undefined, config);
      assert.equal(await c.callAsync("ReadSegs"), 0n, "a sandbox made from a snapshot");
      await a.callAsync("LoadSegs", SELECTORS);
    }
    // The next sandboxes get the pooled VMs, run threads included.
    using next = u.evolve();
    assert.equal(await next.callAsync("ReadSegs"), 0n, "a pooled VM's run thread");
    using next2 = u.evolve();
    assert.equal(await next2.callAsync("ReadSegs"), 0n, "a pooled VM's run thread");
    assert.equal(next2.call("ReadSegs"), 0n);
  }
});

vmTest("vector state a guest sets on a run thread survives into no other sandbox or restore", async () => {
  for (const config of [{}, { hot: true }]) {
    const u = new UninitializedSandbox(guestPath("attackguest"), config);
    const fresh = await (async () => {
      using s = u.evolve();
      return await s.callAsync("ReadVector") as bigint;
    })();
    {
      using a = u.evolve();
      using snap = a.snapshot();
      await a.callAsync("SetVector", 0x1234_5678_9abc_def0n);
      assert.notEqual(await a.callAsync("ReadVector"), fresh);
      a.restore(snap);
      assert.equal(await a.callAsync("ReadVector"), fresh, "after restore");
      await a.callAsync("SetVector", 0x1234_5678_9abc_def0n);
    }
    using next = u.evolve();
    assert.equal(await next.callAsync("ReadVector"), fresh, "on a pooled VM");
  }
});
