/**
 * Snapshots taken, saved, loaded and turned into sandboxes, through the public API against real KVM.
 */
import assert from "node:assert/strict";
import {
  HostFunctions,
  MultiUseSandbox,
  SandboxClosedError,
  Snapshot,
  UninitializedSandbox,
} from "../../../mod.ts";
import { guestPath, vmTest } from "../../_hypervisor.ts";
import { fileDigest, hostFns, testguest, withTempDir } from "./_util.ts";

const ADD = { name: "Add", params: ["i32", "i32"], returns: "i32" };
const HOST_PRINT = { name: "HostPrint", params: ["string"], returns: "i32" };

vmTest("Initialise snapshot (before guest init): in-memory round trip runs guest init", () => {
  const u = testguest();
  using pre = u.snapshot();
  assert.equal(pre.entrypoint, "Initialise");
  assert.deepEqual(pre.hostFunctions, [ADD, HOST_PRINT]);
  using reference = u.evolve();
  using sbx = MultiUseSandbox.fromSnapshot(pre, hostFns());
  assert.deepEqual(sbx.guestFunctions(), reference.guestFunctions());
  assert.equal(sbx.call("GetStatic"), 0);
  assert.equal(sbx.call("AddToStatic", 5), 5);
  assert.equal(sbx.call("Add", 2, 3), 5);
  assert.equal(sbx.call("Echo", "pre-init"), "pre-init");
  // A second sandbox from the same snapshot runs init again, from the untouched image.
  using again = MultiUseSandbox.fromSnapshot(pre, hostFns());
  assert.equal(again.call("GetStatic"), 0);
});

vmTest("Initialise snapshot through a file, with both loaders", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/pre.hls`;
    const u = testguest({ heapSize: 512 * 1024 });
    {
      using pre = u.snapshot();
      await pre.toFile(path);
    }
    const info = Snapshot.inspectFile(path);
    assert.equal(info.entrypoint, "Initialise");
    assert.equal(info.header.entrypoint_tag, 0);
    assert.equal(info.header.has_sregs, 0);
    assert.equal(info.sregs, null);
    assert.equal(info.header.heap_size, 512 * 1024);
    for (const load of [Snapshot.fromFile, Snapshot.fromFileUnchecked]) {
      using snap = load(path);
      assert.equal(snap.entrypoint, "Initialise");
      assert.deepEqual(snap.hostFunctions, [ADD, HOST_PRINT]);
      using sbx = MultiUseSandbox.fromSnapshot(snap, hostFns());
      assert.equal(sbx.call("GetStatic"), 0);
      assert.equal(sbx.call("AddToStatic", 3), 3);
      assert.equal(sbx.call("Add", 20, 22), 42);
    }
  });
});

vmTest(
  "an Initialise snapshot of a guest whose init fails: fromSnapshot throws the init error",
  async () => {
    await withTempDir(async (dir) => {
      const u = new UninitializedSandbox(guestPath("badinit"));
      using pre = u.snapshot();
      await pre.toFile(`${dir}/badinit.hls`);
      using loaded = Snapshot.fromFile(`${dir}/badinit.hls`);
      for (const s of [pre, loaded]) {
        assert.throws(() => MultiUseSandbox.fromSnapshot(s), {
          name: "GuestError",
          code: 101,
          message: /<init>/,
        });
      }
      const before = [...Deno.readDirSync("/proc/self/fd")].length;
      for (let i = 0; i < 20; i++) assert.throws(() => MultiUseSandbox.fromSnapshot(loaded));
      assert.ok([...Deno.readDirSync("/proc/self/fd")].length <= before, "a failed init leaks nothing");
    });
  },
);

vmTest("Call snapshot (after init): in-memory round trip keeps guest state and does not rerun init", () => {
  using src = testguest().evolve();
  src.call("AddToStatic", 41);
  const kept = src.call("Malloc", 10_000n) as bigint;
  using snap = src.snapshot();
  assert.equal(snap.entrypoint, "Call");
  assert.deepEqual(snap.hostFunctions, [ADD, HOST_PRINT]);
  using sbx = MultiUseSandbox.fromSnapshot(snap, hostFns());
  assert.deepEqual(sbx.guestFunctions(), src.guestFunctions());
  // Rerunning init would reset the heap and abort in sv_register (registration after init); neither happens.
  assert.equal(sbx.call("GetStatic"), 41);
  const next = sbx.call("Malloc", 10_000n) as bigint;
  assert.notEqual(next, kept, "the allocation made before the snapshot is still live");
  sbx.call("Free", kept);
  assert.equal(sbx.call("Add", 40, 2), 42);
  assert.equal(sbx.call("Echo", "after"), "after");
});

vmTest("Call snapshot through a file, with both loaders", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/call.hls`;
    {
      using src = testguest().evolve();
      src.call("AddToStatic", 41);
      using snap = src.snapshot();
      await snap.toFile(path);
    }
    for (const load of [Snapshot.fromFile, Snapshot.fromFileUnchecked]) {
      using snap = load(path);
      assert.equal(snap.entrypoint, "Call");
      using sbx = MultiUseSandbox.fromSnapshot(snap, hostFns());
      assert.equal(sbx.call("GetStatic"), 41);
      assert.equal(sbx.call("AddToStatic", 1), 42);
      assert.equal(sbx.call("Add", 1, 2), 3);
      assert.equal(sbx.call("Echo", "loaded"), "loaded");
    }
  });
});

vmTest("snapshot → save → load → call preserves state over several generations", async () => {
  await withTempDir(async (dir) => {
    let sbx = testguest().evolve();
    let expected = 0;
    try {
      for (let gen = 1; gen <= 5; gen++) {
        expected += gen;
        assert.equal(sbx.call("AddToStatic", gen), expected);
        sbx.call("Malloc", 4096n * BigInt(gen)); // the heap changes too
        const path = `${dir}/gen${gen}.hls`;
        {
          using snap = sbx.snapshot();
          await snap.toFile(path);
        }
        sbx.close();
        using loaded = Snapshot.fromFile(path);
        sbx = MultiUseSandbox.fromSnapshot(loaded, hostFns());
        assert.equal(sbx.call("GetStatic"), expected, `generation ${gen}`);
      }
    } finally {
      sbx.close();
    }
  });
});

vmTest("memory protections survive saving and loading", async () => {
  await withTempDir(async (dir) => {
    {
      using src = testguest().evolve();
      using snap = src.snapshot();
      await snap.toFile(`${dir}/s.hls`);
    }
    using pre = testguest().snapshot();
    await pre.toFile(`${dir}/pre.hls`);
    for (const file of ["s.hls", "pre.hls"]) {
      using loaded = Snapshot.fromFile(`${dir}/${file}`);
      const attempts: [string, (s: MultiUseSandbox) => unknown, string?][] = [
        ["read the null page", (s) => s.call("ReadAddr", 0n)],
        ["read the descriptor tables", (s) => s.call("ReadAddr", 0x1000n)],
        ["read the page tables", (s) => s.call("ReadAddr", 0x5000n)],
        ["read the function table", (s) => s.call("ReadAddr", 0x1e0000n)],
        ["write the image's code", (s) => s.call("WildWrite", 0x200000n)],
        // A stray write to the guard page is an access violation; only a stack that grew into it is an overflow.
        ["write the stack guard", (s) => s.call("WildWrite", BigInt(loaded.memorySize))],
      ];
      for (const [what, attempt, name = "MemoryAccessViolationError"] of attempts) {
        using sbx = MultiUseSandbox.fromSnapshot(loaded, hostFns());
        assert.throws(() => attempt(sbx), { name }, `${file}: ${what}`);
      }
    }
  });
});

vmTest("overwriting an existing file; snapshots loaded from the old file keep the old state", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.hls`;
    using src = testguest().evolve();
    src.call("AddToStatic", 1);
    using one = src.snapshot();
    await one.toFile(path);
    using oldLoaded = Snapshot.fromFile(path);
    using fromOld = MultiUseSandbox.fromSnapshot(oldLoaded, hostFns());

    src.call("AddToStatic", 1);
    using two = src.snapshot();
    await two.toFile(path); // over the existing file
    assert.equal(Snapshot.inspectFile(path).blobHash !== "", true);
    using newLoaded = Snapshot.fromFile(path);
    using fromNew = MultiUseSandbox.fromSnapshot(newLoaded, hostFns());
    assert.equal(fromNew.call("GetStatic"), 2);

    // The snapshot loaded before the overwrite, and its sandbox, still see the old file's contents.
    assert.equal(fromOld.call("GetStatic"), 1);
    fromOld.call("TouchPages", 16);
    using later = MultiUseSandbox.fromSnapshot(oldLoaded, hostFns());
    assert.equal(later.call("GetStatic"), 1);
    // A loaded snapshot saved over the very file it was loaded from.
    await newLoaded.toFile(path);
    using reloaded = Snapshot.fromFile(path);
    using fromReloaded = MultiUseSandbox.fromSnapshot(reloaded, hostFns());
    assert.equal(fromReloaded.call("GetStatic"), 2);
    assert.equal(fromNew.call("AddToStatic", 1), 3);
    // No temporary files are left next to it.
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["state.hls"]);
  });
});

vmTest(
  "saving is deterministic: a loaded snapshot saves byte-identically, equal states give equal files",
  async () => {
    await withTempDir(async (dir) => {
      for (const [i, src] of [testguest().evolve(), testguest().evolve()].entries()) {
        src.call("AddToStatic", 41);
        using snap = src.snapshot();
        await snap.toFile(`${dir}/sandbox${i}.hls`);
        src.close();
      }
      // Two different sandboxes (different ids, different VMs) in the same state give the same bytes: nothing
      // specific to a sandbox instance, such as its id, is persisted.
      assert.equal(await fileDigest(`${dir}/sandbox0.hls`), await fileDigest(`${dir}/sandbox1.hls`));
      using loaded = Snapshot.fromFile(`${dir}/sandbox0.hls`);
      await loaded.toFile(`${dir}/resaved.hls`);
      assert.equal(await fileDigest(`${dir}/resaved.hls`), await fileDigest(`${dir}/sandbox0.hls`));
      using unchecked = Snapshot.fromFileUnchecked(`${dir}/sandbox0.hls`);
      await unchecked.toFile(`${dir}/resaved2.hls`);
      assert.equal(await fileDigest(`${dir}/resaved2.hls`), await fileDigest(`${dir}/sandbox0.hls`));
      // The same holds for Initialise snapshots.
      const u = testguest();
      for (const name of ["pre0", "pre1"]) {
        using pre = u.snapshot();
        await pre.toFile(`${dir}/${name}.hls`);
      }
      assert.equal(await fileDigest(`${dir}/pre0.hls`), await fileDigest(`${dir}/pre1.hls`));
    });
  },
);

vmTest("toFile and the loaders accept file: URLs and relative paths", async () => {
  await withTempDir(async (dir) => {
    using src = testguest().evolve();
    src.call("AddToStatic", 7);
    using snap = src.snapshot();
    const url = new URL(`file://${dir}/with%20space.hls`);
    await snap.toFile(url);
    Deno.statSync(`${dir}/with space.hls`);
    for (const load of [Snapshot.fromFile, Snapshot.fromFileUnchecked, Snapshot.fromFileCached]) {
      using sbx = MultiUseSandbox.fromSnapshot(load(url), hostFns());
      assert.equal(sbx.call("GetStatic"), 7);
    }
    assert.equal(Snapshot.inspectFile(url).entrypoint, "Call");

    const cwd = Deno.cwd();
    Deno.chdir(dir);
    try {
      await snap.toFile("relative.hls");
      using loaded = Snapshot.fromFile("relative.hls");
      using sbx = MultiUseSandbox.fromSnapshot(loaded, hostFns());
      assert.equal(sbx.call("GetStatic"), 7);
    } finally {
      Deno.chdir(cwd);
    }
    Deno.statSync(`${dir}/relative.hls`);
  });
});

vmTest("a missing file, or writing into a missing directory, gives Deno's own NotFound", async () => {
  await withTempDir(async (dir) => {
    const missing = `${dir}/no-such.hls`;
    for (
      const f of [
        Snapshot.fromFile,
        Snapshot.fromFileUnchecked,
        Snapshot.fromFileCached,
        Snapshot.inspectFile,
      ]
    ) {
      assert.throws(() => f(missing), (e: unknown) => {
        assert.ok(e instanceof Deno.errors.NotFound, `${f.name}: ${e}`);
        assert.equal((e as Error).name, "NotFound");
        return true;
      });
    }
    using src = testguest().evolve();
    using snap = src.snapshot();
    await assert.rejects(async () => await snap.toFile(`${dir}/no/such/dir/x.hls`), (e: unknown) => {
      assert.ok(e instanceof Deno.errors.NotFound, String(e));
      return true;
    });
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  });
});

Deno.test("a directory given as a snapshot file gives Deno's own IsADirectory, like NotFound", async () => {
  await withTempDir((dir) => {
    for (
      const f of [
        Snapshot.fromFile,
        Snapshot.fromFileUnchecked,
        Snapshot.fromFileCached,
        Snapshot.inspectFile,
      ]
    ) {
      assert.throws(() => f(dir), (e: unknown) => {
        assert.ok(
          e instanceof Deno.errors.IsADirectory,
          `${f.name}: got ${(e as Error).name}: ${(e as Error).message}`,
        );
        return true;
      });
    }
  });
});

vmTest(
  "toFile onto a directory or below a file gives Deno's own errors and leaves no temporary file",
  async () => {
    await withTempDir(async (dir) => {
      using src = testguest().evolve();
      using snap = src.snapshot();
      Deno.mkdirSync(`${dir}/sub`);
      await assert.rejects(async () => await snap.toFile(`${dir}/sub`), Deno.errors.IsADirectory);
      Deno.writeTextFileSync(`${dir}/file`, "not a directory");
      await assert.rejects(async () => await snap.toFile(`${dir}/file/x.hls`), Deno.errors.NotADirectory);
      assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["file", "sub"]);
      assert.deepEqual([...Deno.readDirSync(`${dir}/sub`)], []);
    });
  },
);

vmTest("a snapshot and its sandboxes stay valid while the file is renamed or deleted", async () => {
  await withTempDir(async (dir) => {
    {
      using src = testguest().evolve();
      src.call("AddToStatic", 41);
      using snap = src.snapshot();
      await snap.toFile(`${dir}/a.hls`);
    }
    for (const load of [Snapshot.fromFile, Snapshot.fromFileUnchecked]) {
      Deno.copyFileSync(`${dir}/a.hls`, `${dir}/b.hls`);
      using snap = load(`${dir}/b.hls`);
      using before = MultiUseSandbox.fromSnapshot(snap, hostFns());
      before.call("AddToStatic", 1);
      Deno.renameSync(`${dir}/b.hls`, `${dir}/c.hls`);
      using renamed = MultiUseSandbox.fromSnapshot(snap, hostFns());
      assert.equal(renamed.call("GetStatic"), 41);
      Deno.removeSync(`${dir}/c.hls`);
      using deleted = MultiUseSandbox.fromSnapshot(snap, hostFns());
      deleted.call("TouchPages", 20);
      assert.equal(deleted.call("AddToStatic", 2), 43);
      assert.equal(before.call("GetStatic"), 42);
      before.restore(snap);
      assert.equal(before.call("GetStatic"), 41);
      await snap.toFile(`${dir}/d.hls`); // saving it again still works
      using reloaded = Snapshot.fromFile(`${dir}/d.hls`);
      using fromReloaded = MultiUseSandbox.fromSnapshot(reloaded, hostFns());
      assert.equal(fromReloaded.call("GetStatic"), 41);
      Deno.removeSync(`${dir}/d.hls`);
    }
  });
});

vmTest("guest writes never reach the snapshot file (copy-on-write), nor an in-memory snapshot", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/cow.hls`;
    using src = testguest({ heapSize: 4 << 20 }).evolve();
    src.call("AddToStatic", 41);
    src.call("TouchPages", 8);
    using memSnap = src.snapshot();
    await memSnap.toFile(path);
    const digest = await fileDigest(path);

    for (const load of [Snapshot.fromFile, Snapshot.fromFileUnchecked]) {
      using snap = load(path);
      const sandboxes = [0, 1, 2].map(() => MultiUseSandbox.fromSnapshot(snap, hostFns()));
      try {
        for (const [i, sbx] of sandboxes.entries()) {
          sbx.call("TouchPages", 8); // the pages of the snapshot's buffer
          sbx.call("TouchPages", 900); // a new 3.5 MiB buffer, most of the heap
          sbx.call("AddToStatic", 1000 + i);
          const p = sbx.call("Malloc", 64n * 1024n) as bigint;
          for (let off = 0n; off < 64n * 1024n; off += 4096n) sbx.call("WildWrite", p + off);
          sbx.restore(snap);
          sbx.call("TouchPages", 8);
          sbx.call("TouchPages", 700);
        }
      } finally {
        for (const sbx of sandboxes) sbx.close();
      }
      assert.equal(await fileDigest(path), digest, `${load.name}: the file changed`);
    }
    // The in-memory snapshot the file was written from is unchanged too: saving it again gives the same file.
    using fromMem = MultiUseSandbox.fromSnapshot(memSnap, hostFns());
    fromMem.call("TouchPages", 900);
    fromMem.call("AddToStatic", 5);
    await memSnap.toFile(`${dir}/again.hls`);
    assert.equal(await fileDigest(`${dir}/again.hls`), digest);
    // And the file still verifies.
    using verified = Snapshot.fromFile(path);
    using sbx = MultiUseSandbox.fromSnapshot(verified, hostFns());
    assert.equal(sbx.call("GetStatic"), 41);
  });
});

vmTest("many sandboxes from one snapshot are isolated, also from the source and after it is closed", () => {
  const src = testguest({ heapSize: 1 << 20 }).evolve();
  src.call("AddToStatic", 41);
  using snap = src.snapshot();
  src.call("AddToStatic", 1000); // after the snapshot: not seen by sandboxes made from it
  const first = Array.from({ length: 6 }, () => MultiUseSandbox.fromSnapshot(snap, hostFns()));
  src.close();
  const second = Array.from({ length: 6 }, () => MultiUseSandbox.fromSnapshot(snap, hostFns()));
  const all = [...first, ...second];
  try {
    for (const [i, sbx] of all.entries()) {
      assert.equal(sbx.call("GetStatic"), 41);
      assert.equal(sbx.call("AddToStatic", i), 41 + i);
      sbx.call("TouchPages", 10 + i);
      sbx.call("Malloc", BigInt(4096 * (i + 1)));
    }
    for (const [i, sbx] of all.entries()) assert.equal(sbx.call("GetStatic"), 41 + i);
    using late = MultiUseSandbox.fromSnapshot(snap, hostFns());
    assert.equal(late.call("GetStatic"), 41);
  } finally {
    for (const sbx of all) sbx.close();
  }
});

vmTest("a snapshot remains usable after close() of the source sandbox", async () => {
  await withTempDir(async (dir) => {
    const src = testguest().evolve();
    src.call("AddToStatic", 41);
    using snap = src.snapshot();
    src.close();
    assert.throws(() => src.restore(snap), SandboxClosedError);
    assert.throws(() => src.snapshot(), SandboxClosedError);
    using sbx = MultiUseSandbox.fromSnapshot(snap, hostFns());
    assert.equal(sbx.call("GetStatic"), 41);
    await snap.toFile(`${dir}/after-close.hls`);
    using loaded = Snapshot.fromFile(`${dir}/after-close.hls`);
    using fromFile = MultiUseSandbox.fromSnapshot(loaded, hostFns());
    assert.equal(fromFile.call("GetStatic"), 41);
    // The same for an Initialise snapshot of a discarded UninitializedSandbox.
    using pre = testguest().snapshot();
    using fromPre = MultiUseSandbox.fromSnapshot(pre, hostFns());
    assert.equal(fromPre.call("GetStatic"), 0);
  });
});

vmTest("Snapshot.close(): further use throws TypeError, sandboxes made from it keep working", async () => {
  await withTempDir(async (dir) => {
    using src = testguest({ heapSize: 2 << 20 }).evolve();
    src.call("AddToStatic", 41);
    const inMemory = src.snapshot();
    await inMemory.toFile(`${dir}/s.hls`);
    const loaded = Snapshot.fromFile(`${dir}/s.hls`);
    const unchecked = Snapshot.fromFileUnchecked(`${dir}/s.hls`);
    for (const snap of [inMemory, loaded, unchecked]) {
      using sbx = MultiUseSandbox.fromSnapshot(snap, hostFns());
      sbx.call("AddToStatic", 1);
      snap.close();
      snap.close(); // twice is fine
      assert.throws(() => snap.entrypoint, TypeError);
      assert.throws(() => snap.memorySize, TypeError);
      assert.throws(() => snap.hostFunctions, TypeError);
      assert.throws(() => MultiUseSandbox.fromSnapshot(snap, hostFns()), TypeError);
      assert.throws(() => sbx.restore(snap), TypeError);
      await assert.rejects(async () => await snap.toFile(`${dir}/closed.hls`), TypeError);
      // The sandbox is unaffected: calls, heavy writes, its own snapshots and restores all work.
      assert.equal(sbx.call("GetStatic"), 42);
      sbx.call("TouchPages", 300);
      using own = sbx.snapshot();
      sbx.call("AddToStatic", 100);
      sbx.restore(own);
      assert.equal(sbx.call("GetStatic"), 42);
      using child = MultiUseSandbox.fromSnapshot(own, hostFns());
      assert.equal(child.call("GetStatic"), 42);
    }
    Deno.removeSync(`${dir}/s.hls`);
    assert.equal([...Deno.readDirSync(dir)].length, 0, "closed.hls must not have been written");
  });
});

vmTest("Snapshot getters describe the snapshot", () => {
  const fns = new HostFunctions()
    .register("Add", { params: ["i32", "i32"], returns: "i32" }, (a, b) => a + b)
    .register("Zeta", { params: ["bytes", "u64", "bool", "f64"], returns: "void" }, () => undefined);
  const u = testguest({ heapSize: 1 << 20 }, fns);
  using pre = u.snapshot();
  using sbx = u.evolve();
  using snap = sbx.snapshot();
  for (const s of [pre, snap]) {
    assert.deepEqual(s.hostFunctions, [
      ADD,
      HOST_PRINT,
      { name: "Zeta", params: ["bytes", "u64", "bool", "f64"], returns: "void" },
    ]);
    assert.equal(s.memorySize % 4096, 0);
    assert.ok(s.memorySize >= 0x200000 + (1 << 20), `memorySize ${s.memorySize}`);
  }
  assert.equal(pre.memorySize, snap.memorySize);
  assert.equal(pre.entrypoint, "Initialise");
  assert.equal(snap.entrypoint, "Call");
});
