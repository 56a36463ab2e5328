/**
 * Sparse snapshot files: `toFile` leaves pages of zeros as holes, so a big heap the guest barely touched
 * takes little disk, while the file reads exactly as a dense write would (same bytes, same hashes, format
 * unchanged). And `snapshot()` copies only the pages a sandbox touched: those tests check, through the
 * guest's own reads, that nothing it wrote is lost on the way — in memory, in the file, in later snapshots.
 */
import assert from "node:assert/strict";
import { MultiUseSandbox, Snapshot } from "../../../mod.ts";
import { live } from "../../../vm/snapshot.ts";
import { INFO_ADDR } from "../../../vm/machine/abi.ts";
import type { Mapping } from "../../../vm/memory/mapping.ts";
import { vmTest } from "../../_hypervisor.ts";
import { getField, hostFns, testguest, withTempDir } from "./_util.ts";

const MIB = 1024 * 1024;

/** Bytes the file occupies on disk. */
function allocated(path: string): number {
  return Deno.statSync(path).blocks! * 512;
}

/** The end of the guest's heap (its allocator carves blocks from the top). */
function heapEnd(sbx: MultiUseSandbox): bigint {
  const p = sbx.call("Malloc", 16n) as bigint;
  return (p + 16n + 4095n) & ~4095n;
}

/** Addresses in the free middle of the heap (the allocator keeps no data there), one per MiB. */
function scattered(end: bigint, count: number, salt: number): bigint[] {
  return Array.from({ length: count }, (_, k) => end - BigInt((k + 2) * MIB) + BigInt(salt * 8 + 64));
}

/** What the guest reads at each address. */
function reads(sbx: MultiUseSandbox, addresses: bigint[]): bigint[] {
  return addresses.map((a) => sbx.call("ReadAddr", a) as bigint);
}

vmTest("toFile leaves zero pages as holes; the file reads as a dense write would, and loads", async () => {
  await withTempDir(async (dir) => {
    using sbx = testguest({ heapSize: 64 * MIB }).evolve();
    sbx.call("AddToStatic", 3);
    sbx.call("TouchPages", 16);
    const end = heapEnd(sbx);
    const written = scattered(end, 40, 1);
    for (const a of written) sbx.call("WildWrite", a);
    using snap = sbx.snapshot();
    const path = `${dir}/sparse.hls`;
    await snap.toFile(path);

    const bytes = Deno.readFileSync(path);
    const offset = Number(getField(bytes, "memory_offset")), size = Number(getField(bytes, "memory_size"));
    assert.equal(bytes.length, offset + size + 4096);
    assert.ok(allocated(path) < 2 * MIB, `${allocated(path)} bytes on disk for a ${size}-byte blob`);
    // Byte for byte the snapshot's memory, then the zero guard.
    const memory = live(snap).blob.ref.bytes;
    assert.ok(bytes.subarray(offset, offset + size).every((b, i) => b === memory[i]), "blob bytes differ");
    assert.ok(bytes.subarray(offset + size).every((b) => b === 0), "guard not zero");

    using loaded = Snapshot.fromFile(path); // verifies blob_hash over the holes
    using copy = MultiUseSandbox.fromSnapshot(loaded, hostFns());
    assert.equal(copy.call("GetStatic"), 3);
    assert.deepEqual(reads(copy, written), written.map(() => 0x5an));
  });
});

vmTest(
  "later snapshots of the same sandbox keep everything the guest wrote (touched-page copies)",
  async () => {
    await withTempDir(async (dir) => {
      using sbx = testguest({ heapSize: 48 * MIB }).evolve();
      const end = heapEnd(sbx);
      const first = scattered(end, 20, 1), second = scattered(end, 20, 2), third = scattered(end, 20, 3);
      for (const a of first) sbx.call("WildWrite", a);
      using s1 = sbx.snapshot();
      for (const a of second) sbx.call("WildWrite", a);
      using s2 = sbx.snapshot();
      sbx.restore(s1); // not the last synchronised snapshot (s2): s1 is mapped afresh, copy-on-write
      for (const a of third) sbx.call("WildWrite", a);
      using s3 = sbx.snapshot();
      const all = [...first, ...second, ...third];
      const expect = (has: bigint[][]) => all.map((a) => has.some((set) => set.includes(a)) ? 0x5an : 0n);
      const cases: [Snapshot, bigint[][]][] = [[s1, [first]], [s2, [first, second]], [s3, [first, third]]];
      for (const [i, [snap, has]] of cases.entries()) {
        using fromMemory = MultiUseSandbox.fromSnapshot(snap, hostFns());
        assert.deepEqual(reads(fromMemory, all), expect(has), `snapshot ${i + 1} in memory`);
        await snap.toFile(`${dir}/s${i}.hls`);
        using file = Snapshot.fromFile(`${dir}/s${i}.hls`);
        using fromFile = MultiUseSandbox.fromSnapshot(file, hostFns());
        assert.deepEqual(reads(fromFile, all), expect(has), `snapshot ${i + 1} from its file`);
      }
    });
  },
);

vmTest(
  "snapshots of a sandbox made from a file copy its pages and the file's; files stay sparse",
  async () => {
    await withTempDir(async (dir) => {
      const heapSize = 40 * MIB;
      const written: bigint[] = [];
      {
        using sbx = testguest({ heapSize }).evolve();
        written.push(...scattered(heapEnd(sbx), 10, 1));
        for (const a of written) sbx.call("WildWrite", a);
        using snap = sbx.snapshot();
        await snap.toFile(`${dir}/base.hls`);
      }
      using base = Snapshot.fromFile(`${dir}/base.hls`);
      let memory: Mapping | undefined;
      const stop = live(base).blob.onMapInto((m) => void (memory ??= m));
      using sbx = MultiUseSandbox.fromSnapshot(base, hostFns());
      stop();
      const end = heapEnd(sbx);
      const more = scattered(end, 10, 5);
      for (const a of more) sbx.call("WildWrite", a);
      for (let round = 0; round < 3; round++) {
        sbx.call("AddToStatic", 1);
        using snap = sbx.snapshot();
        // The copy equals the sandbox's memory (but the info page: snapshots store no generation).
        const copy = live(snap).blob.ref.bytes, live_ = memory!.bytes;
        assert.equal(copy.length, live_.length);
        for (let i = 0; i < copy.length; i += 4096) {
          if (i === INFO_ADDR) continue;
          if (
            copy[i] !== live_[i] || copy[i + 4095] !== live_[i + 4095] || copy[i + 2048] !== live_[i + 2048]
          ) {
            assert.fail(`round ${round}: page ${i / 4096} differs from the sandbox's memory`);
          }
        }
        await snap.toFile(`${dir}/again.hls`);
        assert.ok(
          allocated(`${dir}/again.hls`) < 2 * MIB,
          `round ${round}: ${allocated(`${dir}/again.hls`)} bytes`,
        );
        using loaded = Snapshot.fromFile(`${dir}/again.hls`);
        using check = MultiUseSandbox.fromSnapshot(loaded, hostFns());
        assert.equal(check.call("GetStatic"), round + 1);
        assert.deepEqual(reads(check, [...written, ...more]), [...written, ...more].map(() => 0x5an));
      }
    });
  },
);

vmTest(
  "a loaded sparse file written again is identical; a fully written heap is stored densely",
  async () => {
    await withTempDir(async (dir) => {
      {
        using sbx = testguest({ heapSize: 32 * MIB }).evolve();
        sbx.call("AddToStatic", 9);
        using snap = sbx.snapshot();
        await snap.toFile(`${dir}/a.hls`);
      }
      using a = Snapshot.fromFile(`${dir}/a.hls`);
      await a.toFile(`${dir}/b.hls`);
      assert.deepEqual(Deno.readFileSync(`${dir}/b.hls`), Deno.readFileSync(`${dir}/a.hls`));
      assert.ok(allocated(`${dir}/b.hls`) < 2 * MIB);

      // guestInitArg bit 0: init writes every heap page, so nothing is a hole.
      using dense = testguest({ heapSize: 32 * MIB, guestInitArg: 1n }).evolve();
      using snap = dense.snapshot();
      await snap.toFile(`${dir}/dense.hls`);
      const size = Deno.statSync(`${dir}/dense.hls`).size;
      assert.ok(
        allocated(`${dir}/dense.hls`) > size - 4 * MIB,
        `${allocated(`${dir}/dense.hls`)} of ${size}`,
      );
      using loaded = Snapshot.fromFile(`${dir}/dense.hls`);
      using sbx = MultiUseSandbox.fromSnapshot(loaded, hostFns());
      assert.equal(sbx.call("Echo", "dense"), "dense");
    });
  },
);
