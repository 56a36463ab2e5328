/**
 * Snapshot files across loaders and processes: `inspectFile`, `fromFileCached`, a file saved by one Deno
 * process and used by another, and `toFile` killed in the middle of writing.
 */
import assert from "node:assert/strict";
import { ABI_VERSION, MultiUseSandbox, Snapshot, SnapshotSandboxMismatchError } from "../../../mod.ts";
import { vmTest } from "../../_hypervisor.ts";
import {
  counts,
  fileDigest,
  getField,
  HEADER_FIELDS,
  hex,
  hostFns,
  OFF,
  rehashAll,
  rehashHeader,
  setField,
  TESTGUEST,
  testguest,
  withTempDir,
} from "./_util.ts";
import { parseElf } from "../../../vm/machine/elf.ts";

const ELF_ENTRY = parseElf(Deno.readFileSync(TESTGUEST)).entry;

const CHILD = new URL("./_snapshot_child.ts", import.meta.url).pathname;

/** Runs tests/_snapshot_child.ts in a new Deno process and returns its stdout. */
async function runChild(...args: string[]): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", CHILD, ...args] }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.ok(out.success, `child ${args.join(" ")} failed: ${stderr}`);
  return new TextDecoder().decode(out.stdout).trim();
}

async function saveState(path: string, value: number, config = {}): Promise<void> {
  using sbx = testguest(config).evolve();
  sbx.call("AddToStatic", value);
  using snap = sbx.snapshot();
  await snap.toFile(path);
}

function staticOf(snap: Snapshot): number {
  using sbx = MultiUseSandbox.fromSnapshot(snap, hostFns());
  return sbx.call("GetStatic") as number;
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- inspectFile ----------------------------------------------------------------------------------------------

vmTest(
  "inspectFile describes every header field, versions, names, compatibility, host functions, hashes",
  async () => {
    await withTempDir(async (dir) => {
      await saveState(`${dir}/call.hls`, 41, { heapSize: 512 * 1024 });
      {
        using pre = testguest().snapshot();
        await pre.toFile(`${dir}/pre.hls`);
      }
      for (const name of ["call", "pre"]) {
        const path = `${dir}/${name}.hls`;
        const bytes = Deno.readFileSync(path);
        const info = Snapshot.inspectFile(path);
        // A plain, JSON-ready object.
        assert.equal(Object.getPrototypeOf(info), Object.prototype);
        assert.deepEqual(JSON.parse(JSON.stringify(info)), info);
        // Every header field, by its spec name, in file order, with the value in the file.
        assert.deepEqual(Object.keys(info.header), [...HEADER_FIELDS]);
        for (const f of HEADER_FIELDS) assert.equal(BigInt(info.header[f]), getField(bytes, f), f);
        // Made from a guest file, so it names the binary (BINARY section): version 2.
        assert.equal(info.formatVersion, 2);
        assert.deepEqual(info.binary, { path: TESTGUEST, entry: `0x${ELF_ENTRY.toString(16)}` });
        assert.equal(info.base, null);
        assert.equal(info.abiVersion, ABI_VERSION);
        assert.equal(info.arch, "x86_64");
        assert.equal(info.hypervisor, "KVM");
        assert.equal(info.entrypoint, name === "call" ? "Call" : "Initialise");
        assert.equal(info.compatible, true);
        assert.deepEqual(info.incompatibilities, []);
        assert.deepEqual(info.hostFunctions, ["Add(i32, i32) -> i32", "HostPrint(string) -> i32"]);
        assert.match(info.headerHash, /^[0-9a-f]{64}$/);
        assert.match(info.blobHash, /^[0-9a-f]{64}$/);
        assert.equal(info.headerHash, hex(bytes.subarray(OFF.headerHash, OFF.headerHash + 32)));
        assert.equal(info.blobHash, hex(bytes.subarray(OFF.blobHash, OFF.blobHash + 32)));
        using snap = Snapshot.fromFile(path);
        assert.equal(info.header.memory_size, snap.memorySize);
        if (name === "call") {
          assert.equal(info.header.heap_size, 512 * 1024);
          assert.equal(info.header.has_sregs, 1);
          const sregs = info.sregs as Record<string, Record<string, unknown> & string>;
          assert.equal(sregs.cr3, "0x5000");
          assert.equal((sregs.cs as Record<string, unknown>).selector, 0x33);
        } else {
          assert.equal(info.header.has_sregs, 0);
          assert.equal(info.sregs, null);
        }
      }
    });
  },
);

vmTest("inspectFile reports why a file does not load on this host instead of throwing", async () => {
  await withTempDir(async (dir) => {
    await saveState(`${dir}/call.hls`, 41);
    const bytes = Deno.readFileSync(`${dir}/call.hls`);
    setField(bytes, "arch", 2n);
    setField(bytes, "abi_version", BigInt(ABI_VERSION + 1));
    setField(bytes, "hypervisor", 2n);
    rehashHeader(bytes); // a well-formed file from another host
    Deno.writeFileSync(`${dir}/foreign.hls`, bytes);
    const info = Snapshot.inspectFile(`${dir}/foreign.hls`);
    assert.equal(info.compatible, false);
    assert.equal(info.arch, "aarch64");
    assert.equal(info.hypervisor, "MSHV");
    assert.equal(info.abiVersion, ABI_VERSION + 1);
    assert.deepEqual(info.incompatibilities.map((i) => [i.kind, i.field]), [
      ["ArchMismatch", "arch"],
      ["AbiMismatch", "abi_version"],
      ["HypervisorMismatch", "hypervisor"],
    ]);
    for (const i of info.incompatibilities) assert.match(i.message, /^Cannot load snapshot: /);
    assert.match(info.incompatibilities[1].message, /regenerate the snapshot/);
    assert.throws(() => Snapshot.fromFile(`${dir}/foreign.hls`), {
      name: "SnapshotFormatError",
      kind: "ArchMismatch",
    });
  });
});

vmTest("inspectFile maps nothing and leaves no fd behind", async () => {
  await withTempDir(async (dir) => {
    await saveState(`${dir}/call.hls`, 41);
    Snapshot.inspectFile(`${dir}/call.hls`);
    const before = counts();
    for (let i = 0; i < 200; i++) Snapshot.inspectFile(`${dir}/call.hls`);
    // At most: garbage collection may close descriptors of other tests' snapshots meanwhile.
    assert.ok(counts().fds <= before.fds, "file descriptors leaked");
    assert.deepEqual(
      Deno.readTextFileSync("/proc/self/maps").split("\n").filter((l) => l.includes(dir)),
      [],
    );
  });
});

// ---- fromFileCached -------------------------------------------------------------------------------------------

vmTest("fromFileCached returns the same verified Snapshot for the same unchanged file", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.hls`;
    await saveState(path, 41);
    const a = Snapshot.fromFileCached(path);
    assert.equal(Snapshot.fromFileCached(path), a);
    assert.equal(Snapshot.fromFileCached(new URL(`file://${path}`)), a);
    Deno.linkSync(path, `${dir}/hardlink.hls`); // same device and inode
    assert.equal(Snapshot.fromFileCached(`${dir}/hardlink.hls`), a);
    // fromFile and fromFileUnchecked are never cached.
    using f = Snapshot.fromFile(path);
    assert.notEqual(f, a);
    // A copy is another file.
    Deno.copyFileSync(path, `${dir}/copy.hls`);
    const copy = Snapshot.fromFileCached(`${dir}/copy.hls`);
    assert.notEqual(copy, a);
    assert.equal(staticOf(a), 41);
    copy.close();
    a.close();
  });
});

vmTest("fromFileCached does not hash the blob again for an unchanged file", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.hls`;
    await saveState(path, 41);
    Deno.utimeSync(path, 1_700_000_000, 1_700_000_000);
    const a = Snapshot.fromFileCached(path);
    // Damage the blob in place, keeping size, mtime, inode and header: only hashing the blob could notice.
    const bytes = Deno.readFileSync(path);
    const last = Number(getField(bytes, "memory_offset") + getField(bytes, "memory_size")) - 1;
    using file = Deno.openSync(path, { write: true });
    file.seekSync(last, Deno.SeekMode.Start);
    file.writeSync(new Uint8Array([bytes[last] ^ 0xff]));
    Deno.utimeSync(path, 1_700_000_000, 1_700_000_000);
    assert.equal(Snapshot.fromFileCached(path), a, "the cached snapshot is returned without rehashing");
    assert.throws(() => Snapshot.fromFile(path), { name: "SnapshotFormatError", kind: "BlobHashMismatch" });
    a.close();
  });
});

vmTest("fromFileCached verifies again after the file changes", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.hls`;
    await saveState(path, 41);
    Deno.utimeSync(path, 1_700_000_000, 1_700_000_000);
    const first = Snapshot.fromFileCached(path);

    // 1. Only the mtime changes: loaded and verified again, a new Snapshot.
    Deno.utimeSync(path, 1_700_000_100, 1_700_000_100);
    const touched = Snapshot.fromFileCached(path);
    assert.notEqual(touched, first);
    assert.equal(Snapshot.fromFileCached(path), touched);
    assert.equal(staticOf(touched), 41);

    // 2. The blob is damaged in place and the mtime changes: the full check runs and fails.
    const good = Deno.readFileSync(path);
    const bad = good.slice();
    const last = Number(getField(bad, "memory_offset") + getField(bad, "memory_size")) - 1;
    bad[last] ^= 0xff;
    Deno.writeFileSync(path, bad); // same inode
    Deno.utimeSync(path, 1_700_000_200, 1_700_000_200);
    assert.throws(() => Snapshot.fromFileCached(path), {
      name: "SnapshotFormatError",
      kind: "BlobHashMismatch",
    });
    assert.throws(
      () => Snapshot.fromFileCached(path),
      { kind: "BlobHashMismatch" },
      "failures are not cached",
    );

    // 3. Same size and mtime, but another (consistent) header hash: loaded again.
    const other = good.slice();
    other[last] ^= 0x01;
    rehashAll(other);
    Deno.writeFileSync(path, other);
    Deno.utimeSync(path, 1_700_000_100, 1_700_000_100); // the mtime `touched` was cached with
    const rehashed = Snapshot.fromFileCached(path);
    assert.notEqual(rehashed, touched);
    assert.equal(
      Snapshot.inspectFile(path).headerHash,
      hex(other.subarray(OFF.headerHash, OFF.headerHash + 32)),
    );

    // 4. The size changes.
    const longer = new Uint8Array(other.length + 4096);
    longer.set(other);
    Deno.writeFileSync(path, longer);
    Deno.utimeSync(path, 1_700_000_100, 1_700_000_100);
    const grown = Snapshot.fromFileCached(path);
    assert.notEqual(grown, rehashed);

    // 5. The file is replaced by toFile (a new inode) holding another state.
    await saveState(path, 7);
    const replaced = Snapshot.fromFileCached(path);
    assert.notEqual(replaced, grown);
    assert.equal(staticOf(replaced), 7);
    assert.equal(Snapshot.fromFileCached(path), replaced);

    // 6. The cached Snapshot was closed: a new one.
    replaced.close();
    const reopened = Snapshot.fromFileCached(path);
    assert.notEqual(reopened, replaced);
    assert.equal(staticOf(reopened), 7);

    for (const s of [first, touched, rehashed, grown, reopened]) s.close();
  });
});

vmTest(
  "sandboxes from two fromFileCached calls are siblings; from two fromFile calls they are not",
  async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/s.hls`;
      await saveState(path, 41);
      using a = MultiUseSandbox.fromSnapshot(Snapshot.fromFileCached(path), hostFns());
      using b = MultiUseSandbox.fromSnapshot(Snapshot.fromFileCached(path), hostFns());
      b.call("AddToStatic", 1);
      using sb = b.snapshot();
      a.restore(sb);
      assert.equal(a.call("GetStatic"), 42);
      a.restore(Snapshot.fromFileCached(path));
      assert.equal(a.call("GetStatic"), 41);
      using c = MultiUseSandbox.fromSnapshot(Snapshot.fromFile(path), hostFns());
      assert.throws(() => c.restore(sb), SnapshotSandboxMismatchError);
      Snapshot.fromFileCached(path).close();
    });
  },
);

// ---- Across processes -----------------------------------------------------------------------------------------

vmTest("a file saved by one Deno process is used by another, both ways", async () => {
  await withTempDir(async (dir) => {
    // This process writes, a child reads.
    await saveState(`${dir}/parent.hls`, 41);
    const seen = JSON.parse(await runChild("read", `${dir}/parent.hls`));
    assert.deepEqual(seen, {
      entrypoint: "Call",
      static: 41,
      add: 5,
      echo: "from the child",
      headerHash: Snapshot.inspectFile(`${dir}/parent.hls`).headerHash,
      afterRestore: 41,
    });
    // A child writes, this process reads.
    assert.equal(await runChild("write", `${dir}/child.hls`, "17"), "written");
    using snap = Snapshot.fromFile(`${dir}/child.hls`);
    using sbx = MultiUseSandbox.fromSnapshot(snap, hostFns());
    assert.equal(sbx.call("GetStatic"), 17);
    assert.equal(sbx.call("Add", 40, 2), 42);
    // The same state gives the same file in either process.
    await saveState(`${dir}/parent17.hls`, 17);
    assert.equal(await fileDigest(`${dir}/parent17.hls`), await fileDigest(`${dir}/child.hls`));
    // The child's sandbox wrote to its memory; the file is unchanged.
    const before = await fileDigest(`${dir}/parent.hls`);
    await runChild("read", `${dir}/parent.hls`);
    assert.equal(await fileDigest(`${dir}/parent.hls`), before);
  });
});

vmTest("child processes inherit no snapshot file descriptors", async () => {
  await withTempDir(async (dir) => {
    using src = testguest().evolve();
    using snap = src.snapshot(); // a memfd
    await snap.toFile(`${dir}/s.hls`);
    using loaded = Snapshot.fromFile(`${dir}/s.hls`); // an fd of the file
    using sbx = MultiUseSandbox.fromSnapshot(loaded, hostFns());
    assert.equal(sbx.call("Echo", "alive"), "alive");
    const links = [...Deno.readDirSync("/proc/self/fd")].map((e) => {
      try {
        return Deno.readLinkSync(`/proc/self/fd/${e.name}`);
      } catch {
        return "";
      }
    });
    assert.ok(links.some((l) => l.includes("snapvm-snapshot")), "this process holds the memfd");
    assert.ok(links.some((l) => l.includes(dir)), "this process holds the file");
    const out = await new Deno.Command("sh", { args: ["-c", "ls -l /proc/self/fd/"] }).output();
    const listing = new TextDecoder().decode(out.stdout);
    assert.ok(!listing.includes("snapvm-snapshot"), listing);
    assert.ok(!listing.includes(dir), listing);
    assert.ok(!listing.includes("kvm"), listing);
  });
});

vmTest(
  "toFile killed mid-write leaves the old file (or nothing) at the path, never a partial file",
  async () => {
    await withTempDir(async (dir) => {
      const heapSize = 96 << 20; // large enough that a write takes a while
      Deno.mkdirSync(`${dir}/ref`);
      // Init writes every heap page: no holes, so the temporary file grows while it is written.
      const config = { heapSize, guestInitArg: 1n };
      await saveState(`${dir}/ref/old.hls`, 1, config);
      await saveState(`${dir}/ref/new.hls`, 2, config); // exactly what the child writes (saving is deterministic)
      const digests = {
        old: await fileDigest(`${dir}/ref/old.hls`),
        new: await fileDigest(`${dir}/ref/new.hls`),
      };
      const fullSize = Deno.statSync(`${dir}/ref/new.hls`).size;
      const work = `${dir}/work`;
      Deno.mkdirSync(work);
      const path = `${work}/guest.hls`;

      /** What is at the path: "old", "new" or "nothing"; anything else fails. */
      const atPath = async (initial: "old" | "nothing", what: string): Promise<string> => {
        let digest: string;
        try {
          digest = await fileDigest(path);
        } catch (e) {
          assert.ok(e instanceof Deno.errors.NotFound, String(e));
          assert.equal(initial, "nothing", `${what}: the old file disappeared`);
          return "nothing";
        }
        const state = digest === digests.old ? "old" : digest === digests.new ? "new" : "partial";
        assert.notEqual(state, "partial", `${what}: a partial or foreign file is at the path`);
        if (state === "old") assert.equal(initial, "old", what);
        return state;
      };
      /** Temporary files left by killed writers (from earlier trials): not the current writer's. */
      const stale = new Set<string>();
      /** Sizes of the current writer's temporary files: every other file in the directory. */
      const temporaries = () =>
        [...Deno.readDirSync(work)].filter((e) => e.name !== "guest.hls" && !stale.has(e.name)).map((e) => {
          try {
            return Deno.statSync(`${work}/${e.name}`).size;
          } catch {
            return -1; // renamed meanwhile
          }
        }).filter((size) => size >= 0);
      /** Waits until the process is in the stopped state. */
      const stopped = async (pid: number) => {
        for (let polls = 0; polls < 100_000; polls++) {
          const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
          if (/^\d+ \(.*\) [tT] /.test(stat)) return;
          await delay(1);
        }
        assert.fail(`process ${pid} did not stop`);
      };

      let partialSeen = 0;
      // Each trial pauses the writer (SIGSTOP) `pauses` times while a temporary file is partly written and
      // checks the path meanwhile, then kills it (SIGKILL) at the next such moment.
      const trials: { initial: "old" | "nothing"; pauses: number; threshold: number }[] = [
        { initial: "old", pauses: 0, threshold: 0 },
        { initial: "old", pauses: 3, threshold: 0 },
        { initial: "old", pauses: 2, threshold: 0.5 },
        { initial: "old", pauses: 1, threshold: 0.9 },
        { initial: "nothing", pauses: 0, threshold: 0.2 },
        { initial: "nothing", pauses: 2, threshold: 0 },
      ];
      for (const [n, trial] of trials.entries()) {
        const what = `trial ${n} ${JSON.stringify(trial)}`;
        try {
          Deno.removeSync(path);
        } catch { /* not there */ }
        for (const e of Deno.readDirSync(work)) if (e.name !== "guest.hls") stale.add(e.name);
        if (trial.initial === "old") {
          Deno.copyFileSync(`${dir}/ref/old.hls`, `${dir}/staging.hls`);
          Deno.renameSync(`${dir}/staging.hls`, path);
        }
        const child = new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", CHILD, "writeloop", path, "2", String(heapSize)],
          stdout: "null",
          stderr: "inherit",
        }).spawn();
        try {
          for (let pause = 0;; pause++) {
            const least = pause === 0 ? trial.threshold * fullSize : 0;
            for (let polls = 0; !temporaries().some((size) => size >= least && size < fullSize); polls++) {
              assert.ok(polls < 100_000, `${what}: the writer never showed a partly written temporary file`);
              await delay(1);
            }
            if (pause === trial.pauses) break;
            child.kill("SIGSTOP");
            await stopped(child.pid);
            if (temporaries().some((size) => size < fullSize)) partialSeen++;
            await atPath(trial.initial, `${what}, writer paused`);
            child.kill("SIGCONT");
          }
        } finally {
          child.kill("SIGKILL");
          await child.status;
        }
        const state = await atPath(trial.initial, `${what}, writer killed`);
        if (state !== "nothing") {
          using snap = Snapshot.fromFile(path);
          assert.equal(staticOf(snap), state === "old" ? 1 : 2, what);
        }
      }
      assert.ok(partialSeen > 0, "no pause caught the writer in the middle of a write");

      // The next successful write removes the temporary files that killed writers left behind.
      await saveState(path, 3);
      assert.deepEqual([...Deno.readDirSync(work)].map((e) => e.name), ["guest.hls"]);
      using snap = Snapshot.fromFile(path);
      assert.equal(staticOf(snap), 3);
    });
  },
);
