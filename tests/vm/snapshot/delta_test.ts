/**
 * Incremental snapshots: `toFile(path, { base })` writes only the pages that differ from the base file;
 * loading finds the base (next to the delta, or by `resolveBase`), checks it against the recorded
 * `blob_hash`, and maps base plus delta pages. Chains up to `MAX_DELTA_CHAIN`; every broken chain (missing
 * base, wrong base, loops, too deep, corrupt layers) is a typed `SnapshotFormatError`.
 */
import assert from "node:assert/strict";
import {
  MultiUseSandbox,
  Snapshot,
  SnapshotFormatError,
  type SnapshotFormatErrorKind,
} from "../../../mod.ts";
import {
  encodeSnapshotPrefix,
  MAX_DELTA_CHAIN,
  type ParsedSnapshot,
  parseSnapshotHeader,
  type SnapshotPrefixInput,
} from "../../../format/mod.ts";
import { blake3 } from "../../../format/blake3.ts";
import { hostIdentity, live } from "../../../vm/snapshot.ts";
import { ABI_SREGS } from "../../../vm/machine/sregs.ts";
import { vmTest } from "../../_hypervisor.ts";
import { hostFns, testguest, withTempDir } from "./_util.ts";

const MIB = 1024 * 1024;
const HEAP = 8 * MIB;

/** A complete base file: init writes every heap page (dense), static = 5. */
async function writeBase(path: string, heapSize = HEAP): Promise<void> {
  using sbx = testguest({ heapSize, guestInitArg: 1n }).evolve();
  sbx.call("AddToStatic", 5);
  using snap = sbx.snapshot();
  await snap.toFile(path);
}

/** Loads `from`, changes `pages` pages and the static, and writes the result as a delta over `from`. */
async function writeDelta(from: string, to: string, add: number, pages = 20): Promise<void> {
  using base = Snapshot.fromFileUnchecked(from);
  using sbx = MultiUseSandbox.fromSnapshot(base, hostFns());
  sbx.call("TouchPages", pages);
  sbx.call("AddToStatic", add);
  using snap = sbx.snapshot();
  await snap.toFile(to, { base: from });
}

function staticOf(snap: Snapshot): number {
  using sbx = MultiUseSandbox.fromSnapshot(snap, hostFns());
  return sbx.call("GetStatic") as number;
}

function expectFormatError(
  fn: () => unknown,
  kind: SnapshotFormatErrorKind,
  field?: string,
): SnapshotFormatError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof SnapshotFormatError, `expected SnapshotFormatError ${kind}, got ${e}`);
    assert.equal(e.kind, kind, e.message);
    if (field !== undefined) assert.equal(e.field, field, e.message);
    assert.ok(e.message.includes(`is ${e.found}`) && e.message.includes(`expected ${e.expected}`), e.message);
    return e;
  }
  assert.fail(`expected SnapshotFormatError ${kind}, but it loaded`);
}

async function expectSaveError(fn: () => Promise<unknown>, kind: SnapshotFormatErrorKind): Promise<void> {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof SnapshotFormatError, String(e));
    assert.equal(e.kind, kind, e.message);
    assert.match(e.message, /^Cannot save snapshot/);
    return;
  }
  assert.fail(`expected SnapshotFormatError ${kind}`);
}

function parse(path: string): { parsed: ParsedSnapshot; bytes: Uint8Array } {
  const bytes = Deno.readFileSync(path);
  return { parsed: parseSnapshotHeader(bytes, bytes.length, hostIdentity()), bytes };
}

/**
 * Rewrites a delta's prefix with `edit` applied to what it records (a forged but well-formed file: hashes
 * consistent), keeping its stored pages.
 */
function reencode(path: string, out: string, edit: (input: SnapshotPrefixInput) => void): void {
  const { parsed, bytes } = parse(path);
  const h = parsed.header;
  const input: SnapshotPrefixInput = {
    header: { ...h },
    sregs: parsed.sregs === null ? null : ABI_SREGS,
    hostFunctions: parsed.hostFunctions,
    blobHash: parsed.blobHash,
    binary: parsed.binary ?? undefined,
    base: parsed.base ?? undefined,
    workingSet: parsed.workingSet ?? undefined,
  };
  edit(input);
  const prefix = encodeSnapshotPrefix(input);
  const stored = bytes.subarray(h.memoryOffset, h.memoryOffset + parsed.storedSize);
  const file = new Uint8Array(prefix.length + stored.length + 4096);
  file.set(prefix);
  file.set(stored, prefix.length);
  Deno.writeFileSync(out, file);
}

vmTest("a delta stores only the changed pages and loads as the snapshot it was taken from", async () => {
  await withTempDir(async (dir) => {
    await writeBase(`${dir}/base.hls`);
    using base = Snapshot.fromFile(`${dir}/base.hls`);
    using sbx = MultiUseSandbox.fromSnapshot(base, hostFns());
    sbx.call("TouchPages", 40);
    sbx.call("AddToStatic", 10);
    using snap = sbx.snapshot();
    await snap.toFile(`${dir}/delta.hls`, { base: `${dir}/base.hls` });

    const { parsed } = parse(`${dir}/delta.hls`);
    assert.equal(parsed.formatVersion, 2);
    assert.deepEqual(parsed.base!.blobHash, live(base).data.blobHash);
    assert.equal(parsed.base!.fileName, "base.hls");
    assert.equal(parsed.base!.chainDepth, 1);
    const pages = parsed.storedSize / 4096;
    // 40 touched pages, the static's page and allocator headers; gaps merged (≤ 16 pages each).
    assert.ok(pages >= 40 && pages < 120, `${pages} pages stored`);
    assert.equal(
      Deno.statSync(`${dir}/delta.hls`).size,
      parsed.header.memoryOffset + parsed.storedSize + 4096,
    );
    assert.deepEqual(parsed.blobHash, live(snap).data.blobHash);

    for (const load of [Snapshot.fromFile, Snapshot.fromFileUnchecked, Snapshot.fromFileCached]) {
      using loaded = load(`${dir}/delta.hls`);
      // The whole memory equals the snapshot's.
      assert.ok(
        live(loaded).blob.ref.bytes.every((b, i) => b === live(snap).blob.ref.bytes[i]),
        `${load.name}: memory differs`,
      );
      using copy = MultiUseSandbox.fromSnapshot(loaded, hostFns());
      assert.equal(copy.call("GetStatic"), 15);
      assert.equal(copy.call("Echo", "delta"), "delta");
      // Restores: the last synchronised snapshot (dirty pages copied back from the layered view)...
      copy.call("AddToStatic", 100);
      copy.call("TouchPages", 50);
      copy.restore(loaded);
      assert.equal(copy.call("GetStatic"), 15);
      // ...and a fresh mapping of the layers.
      using other = copy.snapshot();
      copy.call("AddToStatic", 1);
      copy.restore(other);
      copy.restore(loaded);
      assert.equal(copy.call("GetStatic"), 15);
    }
    const info = Snapshot.inspectFile(`${dir}/delta.hls`);
    assert.equal(info.compatible, true, JSON.stringify(info.incompatibilities));
    assert.deepEqual(info.base, {
      blobHash: Snapshot.inspectFile(`${dir}/base.hls`).blobHash,
      chainDepth: 1,
      fileName: "base.hls",
      runs: parsed.base!.runs.length,
      pages,
    });
    assert.deepEqual(info.chain, [{
      path: `${dir}/base.hls`,
      blobHash: info.base!.blobHash,
      chainDepth: 0,
    }]);
    assert.equal(info.storedSize, parsed.storedSize);
    assert.deepEqual(Snapshot.inspectFile(`${dir}/base.hls`).chain, []);

    // A snapshot of a sandbox from the delta, written complete or as a delta over the delta.
    using fromDelta = Snapshot.fromFileUnchecked(`${dir}/delta.hls`);
    using next = MultiUseSandbox.fromSnapshot(fromDelta, hostFns());
    next.call("AddToStatic", 1);
    using later = next.snapshot();
    await later.toFile(`${dir}/full.hls`);
    await later.toFile(`${dir}/delta2.hls`, { base: `${dir}/delta.hls` });
    for (const f of ["full", "delta2"]) {
      using s = Snapshot.fromFile(`${dir}/${f}.hls`);
      assert.equal(staticOf(s), 16, f);
    }
    assert.equal(parse(`${dir}/delta2.hls`).parsed.base!.chainDepth, 2);
  });
});

vmTest(
  `chains load up to MAX_DELTA_CHAIN (${MAX_DELTA_CHAIN}) deltas deep; a deeper one is refused`,
  async () => {
    await withTempDir(async (dir) => {
      await writeBase(`${dir}/d0.hls`, 4 * MIB);
      for (let i = 1; i <= MAX_DELTA_CHAIN; i++) {
        await writeDelta(`${dir}/d${i - 1}.hls`, `${dir}/d${i}.hls`, 1, i);
      }
      using top = Snapshot.fromFile(`${dir}/d${MAX_DELTA_CHAIN}.hls`);
      assert.equal(staticOf(top), 5 + MAX_DELTA_CHAIN);
      assert.equal(Snapshot.inspectFile(`${dir}/d${MAX_DELTA_CHAIN}.hls`).chain.length, MAX_DELTA_CHAIN);
      await expectSaveError(
        () => writeDelta(`${dir}/d${MAX_DELTA_CHAIN}.hls`, `${dir}/deeper.hls`, 1),
        "ChainTooLong",
      );
      // A depth that does not follow the chain (tests/format/sections_test.ts covers one above the limit).
      reencode(`${dir}/d1.hls`, `${dir}/forged.hls`, (input) => {
        input.base = { ...input.base!, chainDepth: MAX_DELTA_CHAIN };
      });
      expectFormatError(
        () => Snapshot.fromFileUnchecked(`${dir}/forged.hls`),
        "BaseMismatch",
        "base.chain_depth",
      );
    });
  },
);

vmTest("a missing base is BaseNotFound; resolveBase says where it is", async () => {
  await withTempDir(async (dir) => {
    Deno.mkdirSync(`${dir}/bases`);
    await writeBase(`${dir}/base.hls`);
    await writeDelta(`${dir}/base.hls`, `${dir}/delta.hls`, 10);
    Deno.renameSync(`${dir}/base.hls`, `${dir}/bases/moved.hls`);
    for (const load of [Snapshot.fromFile, Snapshot.fromFileUnchecked, Snapshot.fromFileCached]) {
      const e = expectFormatError(() => load(`${dir}/delta.hls`), "BaseNotFound", "base");
      assert.ok(e.message.includes(`${dir}/base.hls`), e.message);
    }
    const info = Snapshot.inspectFile(`${dir}/delta.hls`);
    assert.equal(info.compatible, false);
    assert.equal(info.incompatibilities[0].kind, "BaseNotFound");
    assert.match(info.chain[0].problem!, /BaseNotFound|not where|No such file/i);

    const seen: unknown[] = [];
    const resolveBase = (base: { blobHash: string; fileName: string; chainDepth: number; delta: string }) => {
      seen.push(base);
      return `${dir}/bases/moved.hls`;
    };
    using loaded = Snapshot.fromFile(`${dir}/delta.hls`, { resolveBase });
    assert.equal(staticOf(loaded), 15);
    assert.deepEqual(seen, [{
      blobHash: Snapshot.inspectFile(`${dir}/bases/moved.hls`).blobHash,
      fileName: "base.hls",
      chainDepth: 1,
      delta: `${dir}/delta.hls`,
    }]);
    assert.equal(Snapshot.inspectFile(`${dir}/delta.hls`, { resolveBase }).compatible, true);
    // A directory, or a file that is not a snapshot, in the base's place.
    Deno.mkdirSync(`${dir}/base.hls`);
    expectFormatError(() => Snapshot.fromFileUnchecked(`${dir}/delta.hls`), "BaseNotFound");
    expectFormatError(
      () => Snapshot.fromFileUnchecked(`${dir}/delta.hls`, { resolveBase: () => `${dir}/delta.hls.nope` }),
      "BaseNotFound",
    );
  });
});

vmTest("a base that is another snapshot, or a loop, is BaseMismatch", async () => {
  await withTempDir(async (dir) => {
    await writeBase(`${dir}/base.hls`);
    await writeDelta(`${dir}/base.hls`, `${dir}/delta.hls`, 10);
    const { parsed } = parse(`${dir}/delta.hls`);

    // Another snapshot of the same layout under the base's name.
    Deno.renameSync(`${dir}/base.hls`, `${dir}/real.hls`);
    {
      using sbx = testguest({ heapSize: HEAP, guestInitArg: 1n }).evolve();
      sbx.call("AddToStatic", 6);
      using other = sbx.snapshot();
      await other.toFile(`${dir}/base.hls`);
    }
    expectFormatError(() => Snapshot.fromFileUnchecked(`${dir}/delta.hls`), "BaseMismatch", "base.blob_hash");
    const info = Snapshot.inspectFile(`${dir}/delta.hls`);
    assert.equal(info.compatible, false);
    assert.match(info.chain[0].problem!, /blob_hash/);

    // A base of another memory size that claims the right blob_hash (forged, header rehashed).
    {
      using sbx = testguest({ heapSize: HEAP * 2 }).evolve();
      using other = sbx.snapshot();
      await other.toFile(`${dir}/big.hls`);
    }
    reencode(`${dir}/big.hls`, `${dir}/base.hls`, (input) => void (input.blobHash = parsed.base!.blobHash));
    expectFormatError(() => Snapshot.fromFileUnchecked(`${dir}/delta.hls`), "BaseMismatch", "memory_size");

    // A delta naming itself, and two deltas naming each other.
    reencode(`${dir}/delta.hls`, `${dir}/self.hls`, (input) => {
      input.base = { ...input.base!, fileName: "self.hls", blobHash: input.blobHash };
    });
    expectFormatError(() => Snapshot.fromFileUnchecked(`${dir}/self.hls`), "BaseMismatch", "base");
    // a (blob A) is a delta over b (blob X, depth 1), and b claims to be a delta over a: the loop is found
    // when b's base turns out to be a file already in the chain (or a's depth does not fit under b).
    const a = parsed.blobHash, x = parsed.base!.blobHash;
    reencode(`${dir}/delta.hls`, `${dir}/a.hls`, (input) => {
      input.base = { ...input.base!, fileName: "b.hls", blobHash: x, chainDepth: 2 };
    });
    reencode(`${dir}/delta.hls`, `${dir}/b.hls`, (input) => {
      input.blobHash = x;
      input.base = { ...input.base!, fileName: "a.hls", blobHash: a, chainDepth: 1 };
    });
    expectFormatError(() => Snapshot.fromFileUnchecked(`${dir}/a.hls`), "BaseMismatch", "base");
    expectFormatError(() => Snapshot.fromFileUnchecked(`${dir}/b.hls`), "BaseMismatch", "base.chain_depth");
    // The real base still works through resolveBase.
    using loaded = Snapshot.fromFile(`${dir}/delta.hls`, { resolveBase: () => `${dir}/real.hls` });
    assert.equal(staticOf(loaded), 15);
  });
});

vmTest(
  "fromFile verifies the composed memory: corrupt delta pages or base pages are BlobHashMismatch",
  async () => {
    await withTempDir(async (dir) => {
      await writeBase(`${dir}/base.hls`);
      await writeDelta(`${dir}/base.hls`, `${dir}/delta.hls`, 10);
      const { parsed } = parse(`${dir}/delta.hls`);
      const corrupt = (path: string, at: number) => {
        const f = Deno.openSync(path, { read: true, write: true });
        const b = new Uint8Array(1);
        f.seekSync(at, Deno.SeekMode.Start);
        f.readSync(b);
        b[0] ^= 0x40;
        f.seekSync(at, Deno.SeekMode.Start);
        f.writeSync(b);
        f.close();
      };
      Deno.copyFileSync(`${dir}/delta.hls`, `${dir}/pristine.hls`);
      corrupt(`${dir}/delta.hls`, parsed.header.memoryOffset + 100);
      expectFormatError(() => Snapshot.fromFile(`${dir}/delta.hls`), "BlobHashMismatch", "blob_hash");
      Snapshot.fromFileUnchecked(`${dir}/delta.hls`).close(); // headers only: loads
      Deno.renameSync(`${dir}/pristine.hls`, `${dir}/delta.hls`);
      Snapshot.fromFile(`${dir}/delta.hls`).close();
      // A base page the delta does not replace (mid-heap: the guest's allocator hands out the top first).
      const base = parse(`${dir}/base.hls`).parsed.header;
      const page = base.memorySize / 2 / 4096;
      assert.ok(!parsed.base!.runs.some((r) => r.first <= page && page < r.first + r.count));
      corrupt(`${dir}/base.hls`, base.memoryOffset + page * 4096 + 8);
      expectFormatError(() => Snapshot.fromFile(`${dir}/delta.hls`), "BlobHashMismatch", "blob_hash");
      // A truncated base: its own kind, saying which file.
      Deno.truncateSync(`${dir}/base.hls`, base.memoryOffset + 4096);
      const e = expectFormatError(
        () => Snapshot.fromFileUnchecked(`${dir}/delta.hls`),
        "Truncated",
        "file length",
      );
      assert.ok(e.message.includes("base.hls"), e.message);
      // A truncated delta.
      Deno.truncateSync(`${dir}/delta.hls`, parsed.header.memoryOffset + parsed.storedSize);
      expectFormatError(() => Snapshot.fromFileUnchecked(`${dir}/delta.hls`), "Truncated", "file length");
    });
  },
);

vmTest("toFile refuses a base of another layout, and a delta over itself", async () => {
  await withTempDir(async (dir) => {
    await writeBase(`${dir}/base.hls`);
    using sbx = testguest({ heapSize: HEAP * 2 }).evolve();
    using snap = sbx.snapshot();
    await expectSaveError(() => snap.toFile(`${dir}/delta.hls`, { base: `${dir}/base.hls` }), "BaseMismatch");
    await snap.toFile(`${dir}/own.hls`);
    await expectSaveError(() => snap.toFile(`${dir}/own.hls`, { base: `${dir}/own.hls` }), "BaseMismatch");
    await assert.rejects(
      () => snap.toFile(`${dir}/x.hls`, { base: `${dir}/missing.hls` }),
      Deno.errors.NotFound,
    );
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["base.hls", "own.hls"]);
  });
});

vmTest("a delta identical to its base stores no page", async () => {
  await withTempDir(async (dir) => {
    await writeBase(`${dir}/base.hls`);
    using base = Snapshot.fromFile(`${dir}/base.hls`);
    await base.toFile(`${dir}/same.hls`, { base: `${dir}/base.hls` });
    const { parsed } = parse(`${dir}/same.hls`);
    assert.deepEqual(parsed.base!.runs, []);
    assert.equal(Deno.statSync(`${dir}/same.hls`).size, parsed.header.memoryOffset + 4096);
    using loaded = Snapshot.fromFile(`${dir}/same.hls`);
    assert.equal(staticOf(loaded), 5);
  });
});

vmTest(
  "random corruption of a delta's prefix is a SnapshotFormatError or a clean load, never a crash",
  async () => {
    await withTempDir(async (dir) => {
      await writeBase(`${dir}/base.hls`);
      await writeDelta(`${dir}/base.hls`, `${dir}/delta.hls`, 10);
      const good = Deno.readFileSync(`${dir}/delta.hls`);
      const { parsed } = parse(`${dir}/delta.hls`);
      const tableStart = 1176 + parsed.header.hostFuncsSize;
      const tableEnd = tableStart + 8 + new DataView(good.buffer).getUint32(tableStart + 4, true);
      let seed = 99;
      const next = () => (seed = (seed * 1103515245 + 12345) >>> 0);
      let loaded = 0;
      for (let i = 0; i < 150; i++) {
        const bytes = good.slice();
        bytes[tableStart + (next() % (tableEnd - tableStart))] = next() & 0xff;
        // Keep header_hash consistent so that the section checks and the chain checks decide.
        const message = new Uint8Array(tableEnd - 32);
        message.set(bytes.subarray(0, 1112));
        message.set(bytes.subarray(1144, tableEnd), 1112);
        bytes.set(blake3(message), 1112);
        Deno.writeFileSync(`${dir}/mutant.hls`, bytes);
        try {
          using snap = Snapshot.fromFile(`${dir}/mutant.hls`);
          staticOf(snap);
          loaded++;
        } catch (e) {
          if (!(e instanceof SnapshotFormatError)) throw e;
        }
      }
      assert.ok(loaded < 150);
    });
  },
);
