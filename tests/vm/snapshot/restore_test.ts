/**
 * `sbx.restore(snapshot)`: exact state, scratch region, poisoning, and which snapshots a sandbox may restore.
 */
import assert from "node:assert/strict";
import {
  MultiUseSandbox,
  type MultiUseSandbox as Sandbox,
  PoisonedSandboxError,
  Snapshot,
  SnapshotSandboxMismatchError,
} from "../../../mod.ts";
import { vmTest } from "../../_hypervisor.ts";
import { fileDigest, hostFns, testguest, withTempDir } from "./_util.ts";

/** Saves a snapshot and returns the file's SHA-256: equal digests mean equal memory, registers and layout. */
async function stateDigest(snap: Snapshot, path: string): Promise<string> {
  await snap.toFile(path);
  return await fileDigest(path);
}

/** Takes a snapshot of the sandbox's current state and digests it (the snapshot is closed again). */
async function currentDigest(sbx: Sandbox, path: string): Promise<string> {
  using snap = sbx.snapshot();
  return await stateDigest(snap, path);
}

/** Scratch-region addresses of a sandbox made from `snap` (from its file header). */
async function scratchAddresses(snap: Snapshot, dir: string) {
  await snap.toFile(`${dir}/layout.hls`);
  const h = Snapshot.inspectFile(`${dir}/layout.hls`).header;
  const stackTop = BigInt(h.stack_top_gva);
  return {
    stackTop,
    inputBase: stackTop,
    outputBase: stackTop + BigInt(h.input_data_size),
  };
}

const ECHO_FILL = 0x7878787878787878n; // "xxxxxxxx"

/** Leaves data in the stack, input buffer and output buffer, and checks it is there. */
function dirtyScratch(sbx: Sandbox, a: { stackTop: bigint; inputBase: bigint; outputBase: bigint }): void {
  assert.equal((sbx.call("Echo", "x".repeat(3000)) as string).length, 3000);
  assert.equal(sbx.call("ReadAddr", a.inputBase + 2000n), ECHO_FILL);
  assert.equal((sbx.call("ReturnLarge", 12_000) as Uint8Array).length, 12_000);
  assert.notEqual(sbx.call("ReadAddr", a.outputBase + 8192n), 0n);
  assert.equal(sbx.call("StackOverflow", 8), 8); // 8 frames of 4 KiB below the stack top
  assert.ok(deepStackWords(sbx, a.stackTop).some((w) => w !== 0n), "the recursion left data on the stack");
}

/** The words of [stackTop - 24 KiB, stackTop - 12 KiB): written by deep recursion, never by a small call. */
function deepStackWords(sbx: Sandbox, stackTop: bigint): bigint[] {
  const words = [];
  for (let addr = stackTop - 24n * 1024n; addr < stackTop - 12n * 1024n; addr += 8n) {
    words.push(sbx.call("ReadAddr", addr) as bigint);
  }
  return words;
}

/** Checks that what dirtyScratch left is gone. */
function assertScratchEmpty(
  sbx: Sandbox,
  a: { stackTop: bigint; inputBase: bigint; outputBase: bigint },
  what: string,
): void {
  assert.equal(sbx.call("ReadAddr", a.inputBase + 2000n), 0n, `${what}: input buffer`);
  assert.equal(sbx.call("ReadAddr", a.outputBase + 8192n), 0n, `${what}: output buffer`);
  assert.ok(deepStackWords(sbx, a.stackTop).every((w) => w === 0n), `${what}: stack`);
}

vmTest("restore returns to a snapshot taken from the sandbox itself, again and again", () => {
  using sbx = testguest().evolve();
  sbx.call("AddToStatic", 41);
  using a = sbx.snapshot();
  sbx.call("AddToStatic", 1);
  using b = sbx.snapshot();
  for (let i = 0; i < 20; i++) {
    sbx.call("AddToStatic", 100);
    sbx.restore(i % 2 === 0 ? a : b);
    assert.equal(sbx.call("GetStatic"), i % 2 === 0 ? 41 : 42);
  }
  sbx.restore(a);
  sbx.restore(a); // twice in a row
  assert.equal(sbx.call("GetStatic"), 41);
});

vmTest(
  "restore after heavy dirtying gives back the exact state (dirty-page copy-back and remap)",
  async () => {
    await withTempDir(async (dir) => {
      using sbx = testguest({ heapSize: 16 << 20 }).evolve();
      sbx.call("AddToStatic", 41);
      sbx.call("TouchPages", 64);
      using a = sbx.snapshot();
      const digestA = await stateDigest(a, `${dir}/a.hls`);

      // Copy-back path: `a` is the snapshot the sandbox was last synchronised to.
      for (let round = 0; round < 3; round++) {
        sbx.call("TouchPages", 64); // the snapshot's buffer, every page changed
        sbx.call("TouchPages", 3000); // a new 12 MiB buffer: most of the heap
        sbx.call("AddToStatic", 7);
        sbx.call("Malloc", 1n << 20n);
        sbx.restore(a);
        assert.equal(await currentDigest(sbx, `${dir}/now.hls`), digestA, `copy-back round ${round}`);
        assert.equal(sbx.call("GetStatic"), 41);
      }

      // Remap path: restore `a` after another snapshot `c` became the sandbox's base, and back to `c`.
      sbx.call("TouchPages", 2000);
      sbx.call("AddToStatic", 1);
      using c = sbx.snapshot();
      const digestC = await stateDigest(c, `${dir}/c.hls`);
      sbx.call("TouchPages", 3500);
      sbx.restore(a);
      assert.equal(await currentDigest(sbx, `${dir}/now.hls`), digestA, "remap to a");
      sbx.call("TouchPages", 3500);
      sbx.restore(c);
      assert.equal(await currentDigest(sbx, `${dir}/now.hls`), digestC, "remap to c");
      sbx.call("TouchPages", 3500);
      sbx.restore(c);
      assert.equal(await currentDigest(sbx, `${dir}/now.hls`), digestC, "copy-back to c");
      assert.equal(sbx.call("GetStatic"), 42);
    });
  },
);

vmTest("restore to a loaded snapshot gives back the file's exact state", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/base.hls`;
    {
      using src = testguest({ heapSize: 8 << 20 }).evolve();
      src.call("AddToStatic", 41);
      src.call("TouchPages", 32);
      using snap = src.snapshot();
      await snap.toFile(path);
    }
    const digest = await fileDigest(path);
    for (const load of [Snapshot.fromFile, Snapshot.fromFileUnchecked]) {
      using loaded = load(path);
      using sbx = MultiUseSandbox.fromSnapshot(loaded, hostFns());
      assert.equal(await currentDigest(sbx, `${dir}/now.hls`), digest, "fresh sandbox");
      for (let round = 0; round < 10; round++) {
        sbx.call("TouchPages", 32);
        sbx.call("TouchPages", 1500);
        assert.equal(sbx.call("AddToStatic", round), 41 + round);
        sbx.restore(loaded);
        assert.equal(sbx.call("GetStatic"), 41);
      }
      assert.equal(await currentDigest(sbx, `${dir}/now.hls`), digest, `${load.name}: after restores`);
      // From another snapshot of this sandbox back to the loaded one (remap).
      sbx.call("AddToStatic", 9);
      using mid = sbx.snapshot();
      sbx.restore(loaded);
      assert.equal(sbx.call("GetStatic"), 41);
      sbx.restore(mid);
      assert.equal(sbx.call("GetStatic"), 50);
      sbx.restore(loaded);
      assert.equal(await currentDigest(sbx, `${dir}/now.hls`), digest, `${load.name}: after remaps`);
    }
  });
});

vmTest("restore to an Initialise snapshot runs guest init again from the pristine image", () => {
  const u = testguest();
  using pre = u.snapshot();
  using sbx = MultiUseSandbox.fromSnapshot(pre, hostFns());
  const firstMalloc = sbx.call("Malloc", 4096n);
  sbx.call("AddToStatic", 5);
  sbx.call("TouchPages", 10);
  for (let i = 0; i < 3; i++) {
    sbx.restore(pre);
    assert.equal(sbx.call("GetStatic"), 0);
    assert.equal(sbx.call("Malloc", 4096n), firstMalloc, "the heap starts over");
    assert.equal(sbx.call("Add", 1, 1), 2);
    sbx.call("AddToStatic", 5);
  }
  // Back and forth between the pre-init snapshot and a Call snapshot of the same sandbox.
  using call = sbx.snapshot();
  sbx.restore(pre);
  assert.equal(sbx.call("GetStatic"), 0);
  sbx.restore(call);
  assert.equal(sbx.call("GetStatic"), 5);
});

vmTest(
  "the scratch region (stack, input and output buffers) is empty after restore and in new sandboxes",
  async () => {
    await withTempDir(async (dir) => {
      using src = testguest().evolve();
      src.call("AddToStatic", 41);
      using snap = src.snapshot();
      const addr = await scratchAddresses(snap, dir);

      dirtyScratch(src, addr);
      using second = src.snapshot(); // the scratch region is not part of a snapshot...
      using fromSecond = MultiUseSandbox.fromSnapshot(second, hostFns());
      assertScratchEmpty(fromSecond, addr, "sandbox from a snapshot taken with dirty scratch");

      src.restore(second); // ...and restore empties it (copy-back path)
      assertScratchEmpty(src, addr, "restore to the last snapshot");
      dirtyScratch(src, addr);
      src.restore(snap); // remap path
      assertScratchEmpty(src, addr, "restore to an older snapshot");

      using loaded = Snapshot.fromFile(`${dir}/layout.hls`);
      using sbx = MultiUseSandbox.fromSnapshot(loaded, hostFns());
      assertScratchEmpty(sbx, addr, "sandbox from a file");
      dirtyScratch(sbx, addr);
      sbx.restore(loaded);
      assertScratchEmpty(sbx, addr, "restore to the loaded snapshot");

      // After a crash, too.
      dirtyScratch(sbx, addr);
      assert.throws(() => sbx.call("IllegalInstruction"), { name: "GuestCrashedError" });
      sbx.restore(loaded);
      assertScratchEmpty(sbx, addr, "restore after a crash");

      // Initialise snapshots: init runs in an emptied scratch region (it only writes the start of the buffers).
      using pre = testguest().snapshot();
      using fromPre = MultiUseSandbox.fromSnapshot(pre, hostFns());
      assertScratchEmpty(fromPre, addr, "sandbox from an Initialise snapshot");
      dirtyScratch(fromPre, addr);
      fromPre.restore(pre);
      assertScratchEmpty(fromPre, addr, "restore to an Initialise snapshot");
    });
  },
);

/**
 * Calls Spin and has a Worker kill it through the sandbox's InterruptHandle. The sandbox must have no time
 * limit (the Worker kills the first call it sees running, and reports only then).
 */
async function interruptedSpin(sbx: Sandbox): Promise<unknown> {
  const worker = new Worker(new URL("../_interrupt_worker.ts", import.meta.url), { type: "module" });
  try {
    const done = new Promise((resolve) => (worker.onmessage = resolve));
    worker.postMessage(sbx.interruptHandle());
    let caught: unknown;
    try {
      sbx.call("Spin");
    } catch (e) {
      caught = e;
    }
    await done;
    return caught;
  } finally {
    worker.terminate();
  }
}

vmTest("restore after a crash clears poisoning, for every way of poisoning", async () => {
  await withTempDir(async (dir) => {
    const crashes: [string, (s: Sandbox) => unknown, string][] = [
      ["ud2", (s) => s.call("IllegalInstruction"), "GuestCrashedError"],
      ["divide by zero", (s) => s.call("DivideByZero"), "GuestCrashedError"],
      ["null write", (s) => s.call("WildWrite", 0n), "MemoryAccessViolationError"],
      ["write to code", (s) => s.call("WildWrite", 0x200000n), "MemoryAccessViolationError"],
      ["abort", (s) => s.call("Abort", 7, "bye"), "GuestAbortedError"],
      ["stack overflow", (s) => s.call("StackOverflow", 1000), "GuestCrashedError"],
      ["interrupted", interruptedSpin, "ExecutionCanceledError"],
    ];
    // No time limit: Spin ends only when the Worker kills it, however long the Worker takes to start.
    const noLimit = { maxExecutionTimeMs: 0 };
    using src = testguest({ heapSize: 4 << 20, ...noLimit }).evolve();
    src.call("AddToStatic", 41);
    using snap = src.snapshot();
    const digest = await stateDigest(snap, `${dir}/snap.hls`);
    using loaded = Snapshot.fromFile(`${dir}/snap.hls`);
    using fromLoaded = MultiUseSandbox.fromSnapshot(loaded, hostFns(), noLimit);
    using pre = testguest({ heapSize: 4 << 20, ...noLimit }).snapshot();
    using fromPre = MultiUseSandbox.fromSnapshot(pre, hostFns(), noLimit);

    for (
      const [sbx, target, value] of [[src, snap, 41], [fromLoaded, loaded, 41], [fromPre, pre, 0]] as const
    ) {
      for (const [what, crash, name] of crashes) {
        sbx.call("TouchPages", 500); // dirty pages before the crash must be undone too
        sbx.call("AddToStatic", 3);
        let caught: unknown;
        try {
          caught = await crash(sbx);
        } catch (e) {
          caught = e;
        }
        assert.equal((caught as Error | undefined)?.name, name, what);
        assert.equal(sbx.poisoned, true, what);
        assert.throws(() => sbx.call("GetStatic"), PoisonedSandboxError, what);
        assert.throws(() => sbx.snapshot(), PoisonedSandboxError, `${what}: snapshot of a poisoned sandbox`);
        sbx.restore(target);
        assert.equal(sbx.poisoned, false, what);
        assert.equal(sbx.call("GetStatic"), value, what);
        assert.equal(sbx.call("Echo", what), what);
      }
    }
    assert.equal(await currentDigest(src, `${dir}/now.hls`), digest);
    assert.equal(await currentDigest(fromLoaded, `${dir}/now.hls`), digest);
  });
});

vmTest("a snapshot of a poisoned sandbox is refused, with the poisoning error as cause", () => {
  using sbx = testguest().evolve();
  using good = sbx.snapshot();
  assert.throws(() => sbx.call("DivideByZero"), { name: "GuestCrashedError" });
  assert.throws(() => sbx.snapshot(), (e: unknown) => {
    assert.ok(e instanceof PoisonedSandboxError);
    assert.equal((e.cause as Error).name, "GuestCrashedError");
    return true;
  });
  sbx.restore(good);
  using after = sbx.snapshot();
  assert.equal(after.entrypoint, "Call");
});

vmTest(
  "restore accepts the sandbox's own snapshots, its siblings' and the Snapshot it was made from",
  async () => {
    await withTempDir(async (dir) => {
      using src = testguest().evolve();
      src.call("AddToStatic", 41);
      using s1 = src.snapshot();
      await s1.toFile(`${dir}/s1.hls`);

      const check = (base: Snapshot, what: string, v = 41) => {
        using a = MultiUseSandbox.fromSnapshot(base, hostFns());
        using b = MultiUseSandbox.fromSnapshot(base, hostFns());
        b.call("AddToStatic", 5);
        using fromB = b.snapshot();
        a.restore(fromB); // a sibling's snapshot
        assert.equal(a.call("GetStatic"), v + 5, what);
        a.call("AddToStatic", 1);
        using fromA = a.snapshot();
        b.restore(fromA);
        assert.equal(b.call("GetStatic"), v + 6, what);
        a.restore(base); // the Snapshot both came from
        b.restore(base);
        assert.equal(a.call("GetStatic"), v, what);
        assert.equal(b.call("GetStatic"), v, what);
        // A sandbox made from a sibling's snapshot belongs to the same family.
        using c = MultiUseSandbox.fromSnapshot(fromA, hostFns());
        c.restore(fromB);
        c.restore(base);
        assert.equal(c.call("GetStatic"), v, what);
      };
      check(s1, "in-memory snapshot");
      using loaded = Snapshot.fromFile(`${dir}/s1.hls`);
      check(loaded, "fromFile");
      using unchecked = Snapshot.fromFileUnchecked(`${dir}/s1.hls`);
      check(unchecked, "fromFileUnchecked");
      using pre = testguest().snapshot();
      check(pre, "Initialise snapshot", 0);

      // fromFileCached returns the same object, so sandboxes from two cached loads are siblings.
      using cachedA = MultiUseSandbox.fromSnapshot(Snapshot.fromFileCached(`${dir}/s1.hls`), hostFns());
      using cachedB = MultiUseSandbox.fromSnapshot(Snapshot.fromFileCached(`${dir}/s1.hls`), hostFns());
      cachedB.call("AddToStatic", 2);
      using fromCachedB = cachedB.snapshot();
      cachedA.restore(fromCachedB);
      assert.equal(cachedA.call("GetStatic"), 43);
    });
  },
);

vmTest(
  "restore refuses any other snapshot with SnapshotSandboxMismatchError, leaving the sandbox intact",
  async () => {
    await withTempDir(async (dir) => {
      const u = testguest();
      using x = u.evolve();
      using y = u.evolve(); // same binary and configuration, different sandbox
      x.call("AddToStatic", 41);
      y.call("AddToStatic", 1);
      using sx = x.snapshot();
      using sy = y.snapshot();
      await sx.toFile(`${dir}/sx.hls`);
      using pre = u.snapshot();
      using fromPre = MultiUseSandbox.fromSnapshot(pre, hostFns());
      using load1 = Snapshot.fromFile(`${dir}/sx.hls`);
      using load2 = Snapshot.fromFile(`${dir}/sx.hls`); // same file, another fromFile call
      using load3 = Snapshot.fromFileUnchecked(`${dir}/sx.hls`);
      using from1 = MultiUseSandbox.fromSnapshot(load1, hostFns());
      using from2 = MultiUseSandbox.fromSnapshot(load2, hostFns());
      using from2Snap = from2.snapshot();

      const refused: [Sandbox, Snapshot, string][] = [
        [x, sy, "another sandbox of the same UninitializedSandbox"],
        [y, sx, "the other way round"],
        [x, pre, "the Initialise snapshot of its UninitializedSandbox"],
        [fromPre, sx, "a sandbox from the Initialise snapshot, given an evolved sandbox's snapshot"],
        [x, load1, "its own snapshot, saved and loaded again"],
        [from1, load2, "the same file loaded by another fromFile call"],
        [from1, load3, "the same file loaded by fromFileUnchecked"],
        [from1, from2Snap, "a snapshot of a sandbox made from another load of the same file"],
        [from2, load1, "the other way round"],
        [from1, sx, "the in-memory snapshot the file was written from"],
      ];
      for (const [sbx, snap, what] of refused) {
        const before = sbx.call("GetStatic");
        sbx.call("AddToStatic", 1);
        assert.throws(() => sbx.restore(snap), SnapshotSandboxMismatchError, what);
        assert.equal(sbx.poisoned, false, what);
        assert.equal(sbx.call("GetStatic"), (before as number) + 1, `${what}: state untouched`);
      }
      // Even a poisoned sandbox stays poisoned when given a foreign snapshot.
      assert.throws(() => x.call("IllegalInstruction"));
      assert.throws(() => x.restore(sy), SnapshotSandboxMismatchError);
      assert.equal(x.poisoned, true);
      x.restore(sx);
      assert.equal(x.call("GetStatic"), 41);
    });
  },
);

vmTest("restore and snapshot from inside a host function are refused", () => {
  // deno-lint-ignore prefer-const
  let sbx: Sandbox;
  let snap: Snapshot | undefined;
  let inside: "restore" | "snapshot" = "restore";
  const fns = hostFns().register("Add", { params: ["i32", "i32"], returns: "i32" }, () => {
    if (inside === "restore") sbx.restore(snap!);
    else sbx.snapshot().close();
    return 0;
  });
  sbx = testguest(undefined, fns).evolve();
  try {
    snap = sbx.snapshot();
    assert.throws(() => sbx.call("Add", 1, 2), { name: "HostFunctionError", message: /Cannot restore/ });
    inside = "snapshot";
    assert.throws(() => sbx.call("Add", 1, 2), { name: "HostFunctionError", message: /Cannot snapshot/ });
    assert.equal(sbx.poisoned, false);
    assert.equal(sbx.call("Echo", "fine"), "fine");
    sbx.restore(snap);
  } finally {
    snap?.close();
    sbx.close();
  }
});
