/**
 * Working sets: `recordWorkingSet` notes the pages a sandbox from the snapshot touches; `toFile` stores them
 * (WORKING_SET section); loading a file asks the kernel to read exactly those pages, in one batch, from the
 * file that holds each (base or delta), so a cold start on a host whose page cache lacks the file does not
 * read them one fault at a time.
 */
import assert from "node:assert/strict";
import { HostFunctionMismatchError, MultiUseSandbox, Snapshot } from "../../../mod.ts";
import { parseSnapshotHeader } from "../../../format/mod.ts";
import { hostIdentity, live } from "../../../vm/snapshot.ts";
import { evictFromPageCache } from "../../../vm/snapshot/_pages.ts";
import { vmTest } from "../../_hypervisor.ts";
import { hostFns, testguest, withTempDir } from "./_util.ts";

const MIB = 1024 * 1024;
const IMAGE_PAGE = 0x200000 / 4096;

const libc = Deno.build.os === "linux"
  ? Deno.dlopen("libc.so.6", {
    open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
    close: { parameters: ["i32"], result: "i32" },
    mincore: { parameters: ["pointer", "usize", "buffer"], result: "i32" },
    mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
    munmap: { parameters: ["pointer", "usize"], result: "i32" },
  }).symbols
  : undefined;

/** Which pages of a file are in the page cache (mincore over a shared read-only mapping of it). */
function resident(path: string): Uint8Array {
  const size = Deno.statSync(path).size;
  const fd = libc!.open(new TextEncoder().encode(`${path}\0`), 0, 0);
  assert.ok(fd >= 0);
  try {
    const p = libc!.mmap(null, BigInt(size), 1, 1, fd, 0n)!;
    const pages = new Uint8Array(Math.ceil(size / 4096));
    libc!.mincore(p, BigInt(size), pages);
    libc!.munmap(p, BigInt(size));
    return pages.map((v) => v & 1);
  } finally {
    libc!.close(fd);
  }
}

/** Waits (polling) until every listed file page is cached, or gives up after `polls` tries. */
async function cachedSoon(path: string, filePages: number[], polls = 500): Promise<boolean> {
  for (let i = 0; i < polls; i++) {
    const cached = resident(path);
    if (filePages.every((p) => cached[p] === 1)) return true;
    await new Promise((r) => setTimeout(r, 2));
  }
  return false;
}

function parse(path: string) {
  const bytes = Deno.readFileSync(path);
  return parseSnapshotHeader(bytes, bytes.length, hostIdentity());
}

vmTest("recordWorkingSet notes the touched pages; toFile stores them; loads keep them", async () => {
  await withTempDir(async (dir) => {
    using sbx = testguest({ heapSize: 16 * MIB }).evolve();
    using snap = sbx.snapshot();
    const recorded = snap.recordWorkingSet((s) => void s.call("Echo", "warm"), hostFns());
    assert.ok(recorded.pages > 10 && recorded.runs >= 1, JSON.stringify(recorded));
    const runs = live(snap).data.workingSet!;
    const has = (page: number) => runs.some((r) => r.first <= page && page < r.first + r.count);
    assert.ok(has(IMAGE_PAGE), "the image's first page (prefaulted by every sandbox)");
    assert.ok(has(0x1e0000 / 4096), "the function table (read by the loader)");
    assert.ok(has(0x5000 / 4096), "the page tables' root (walked by the CPU)");
    assert.ok(recorded.pages < 1024, `${recorded.pages} pages: not the whole 16 MiB heap`);

    await snap.toFile(`${dir}/ws.hls`);
    const parsed = parse(`${dir}/ws.hls`);
    assert.equal(parsed.formatVersion, 2);
    assert.deepEqual(parsed.workingSet, runs);
    const info = Snapshot.inspectFile(`${dir}/ws.hls`);
    assert.deepEqual(info.workingSet, recorded);

    using loaded = Snapshot.fromFile(`${dir}/ws.hls`);
    assert.deepEqual(live(loaded).data.workingSet, runs);
    using copy = MultiUseSandbox.fromSnapshot(loaded, hostFns());
    assert.equal(copy.call("Echo", "x"), "x");
    await loaded.toFile(`${dir}/again.hls`);
    assert.deepEqual(parse(`${dir}/again.hls`).workingSet, runs);
    // Left out on request (the binary too): nothing else needs version 2, so the file is version 1.
    await loaded.toFile(`${dir}/plain.hls`, { workingSet: false, binary: false });
    assert.equal(parse(`${dir}/plain.hls`).formatVersion, 1);
    assert.equal(Snapshot.inspectFile(`${dir}/plain.hls`).workingSet, null);
  });
});

vmTest("recordWorkingSet needs the snapshot's host functions, and works for Initialise snapshots", () => {
  const u = testguest({ heapSize: 4 * MIB });
  using snap = u.snapshot();
  assert.throws(() => snap.recordWorkingSet(), HostFunctionMismatchError);
  assert.equal(live(snap).data.workingSet, undefined);
  const recorded = snap.recordWorkingSet(undefined, hostFns()); // guest init runs in the recording sandbox
  assert.ok(recorded.pages > 0);
});

vmTest(
  "loading a file with a working set reads those pages ahead; without one, nothing is read ahead",
  async () => {
    await withTempDir(async (dir) => {
      using sbx = testguest({ heapSize: 16 * MIB }).evolve();
      using snap = sbx.snapshot();
      await snap.toFile(`${dir}/plain.hls`);
      snap.recordWorkingSet((s) => void s.call("Echo", "warm"), hostFns());
      await snap.toFile(`${dir}/ws.hls`);
      const offset = parse(`${dir}/ws.hls`).header.memoryOffset;
      const imagePages = [0, 1, 2].map((k) => offset / 4096 + IMAGE_PAGE + k);

      evictFromPageCache(`${dir}/ws.hls`);
      assert.ok(
        imagePages.every((p) => resident(`${dir}/ws.hls`)[p] === 0),
        "eviction dropped the image pages",
      );
      {
        // Loading alone (no sandbox, which would prefault the image) queues the working set's reads.
        using loaded = Snapshot.fromFileUnchecked(`${dir}/ws.hls`);
        assert.ok(await cachedSoon(`${dir}/ws.hls`, imagePages), "image pages read ahead");
        using copy = MultiUseSandbox.fromSnapshot(loaded, hostFns());
        assert.equal(copy.call("Echo", "cold"), "cold");
      }
      evictFromPageCache(`${dir}/plain.hls`);
      {
        using loaded = Snapshot.fromFileUnchecked(`${dir}/plain.hls`);
        assert.equal(
          await cachedSoon(`${dir}/plain.hls`, imagePages, 10),
          false,
          "nothing reads the image yet",
        );
        using copy = MultiUseSandbox.fromSnapshot(loaded, hostFns());
        assert.equal(copy.call("Echo", "cold"), "cold");
      }
    });
  },
);

vmTest("a delta's working set is read from the file that stores each page", async () => {
  await withTempDir(async (dir) => {
    {
      using sbx = testguest({ heapSize: 8 * MIB, guestInitArg: 1n }).evolve();
      using snap = sbx.snapshot();
      await snap.toFile(`${dir}/base.hls`);
    }
    using base = Snapshot.fromFile(`${dir}/base.hls`);
    using sbx = MultiUseSandbox.fromSnapshot(base, hostFns());
    sbx.call("TouchPages", 30);
    using snap = sbx.snapshot();
    snap.recordWorkingSet((s) => void s.call("TouchPages", 30), hostFns());
    await snap.toFile(`${dir}/delta.hls`, { base: `${dir}/base.hls` });
    base.close();

    const delta = parse(`${dir}/delta.hls`), baseHeader = parse(`${dir}/base.hls`).header;
    const ws = delta.workingSet!, runs = delta.base!.runs;
    // Where each working-set page lives: the delta (packed) or the base.
    const inDelta: number[] = [], inBase: number[] = [];
    for (const w of ws) {
      for (let p = w.first; p < w.first + w.count; p++) {
        let packed = 0, found = -1;
        for (const r of runs) {
          if (p >= r.first && p < r.first + r.count) found = packed + p - r.first;
          packed += r.count;
        }
        if (found >= 0) inDelta.push(delta.header.memoryOffset / 4096 + found);
        else inBase.push(baseHeader.memoryOffset / 4096 + p);
      }
    }
    assert.ok(
      inDelta.length > 0 && inBase.length > 0,
      `${inDelta.length} in the delta, ${inBase.length} in the base`,
    );
    evictFromPageCache(`${dir}/delta.hls`);
    evictFromPageCache(`${dir}/base.hls`);
    using loaded = Snapshot.fromFileUnchecked(`${dir}/delta.hls`);
    assert.ok(await cachedSoon(`${dir}/delta.hls`, inDelta), "delta pages read ahead");
    assert.ok(await cachedSoon(`${dir}/base.hls`, inBase), "base pages read ahead");
    using copy = MultiUseSandbox.fromSnapshot(loaded, hostFns());
    assert.equal(copy.call("TouchPages", 30), 30);
  });
});
