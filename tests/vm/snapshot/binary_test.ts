/**
 * The BINARY section: the guest binary's path and ELF entry point travel with a snapshot (`SnapshotData.binary`,
 * set by `UninitializedSandbox` for a binary given by path) into its file, back out of it, and into files
 * written from a loaded snapshot, complete or delta.
 */
import assert from "node:assert/strict";
import { MultiUseSandbox, Snapshot } from "../../../mod.ts";
import { parseSnapshotHeader } from "../../../format/mod.ts";
import { Blob } from "../../../vm/memory/blob.ts";
import { hostIdentity, live, snapshotOf } from "../../../vm/snapshot.ts";
import { vmTest } from "../../_hypervisor.ts";
import { hostFns, TESTGUEST, testguest, withTempDir } from "./_util.ts";

const BINARY = { path: `${TESTGUEST} (Größe 🦀)`, entry: 0x2012_34n };

function parse(path: string) {
  const bytes = Deno.readFileSync(path);
  return parseSnapshotHeader(bytes, bytes.length, hostIdentity());
}

vmTest(
  "a snapshot's binary is stored in its file, loaded back and carried into files written from it",
  async () => {
    await withTempDir(async (dir) => {
      using sbx = testguest({ heapSize: 4 * 1024 * 1024 }).evolve();
      sbx.call("AddToStatic", 2);
      using plain = sbx.snapshot();
      assert.equal(plain.binary, undefined);
      const { blob, data } = live(plain);
      using snap = snapshotOf(Blob.copyOf(blob.ref), { ...data, binary: BINARY });
      assert.deepEqual(snap.binary, BINARY);

      await snap.toFile(`${dir}/a.hls`);
      const parsed = parse(`${dir}/a.hls`);
      assert.equal(parsed.formatVersion, 2);
      assert.deepEqual(parsed.binary, BINARY);
      assert.deepEqual(Snapshot.inspectFile(`${dir}/a.hls`).binary, { path: BINARY.path, entry: "0x201234" });

      using loaded = Snapshot.fromFile(`${dir}/a.hls`);
      assert.deepEqual(loaded.binary, BINARY);
      using copy = MultiUseSandbox.fromSnapshot(loaded, hostFns());
      assert.equal(copy.call("GetStatic"), 2);
      await loaded.toFile(`${dir}/b.hls`);
      assert.deepEqual(parse(`${dir}/b.hls`).binary, BINARY);
      await loaded.toFile(`${dir}/c.hls`, { base: `${dir}/a.hls` });
      assert.deepEqual(parse(`${dir}/c.hls`).binary, BINARY);
      using delta = Snapshot.fromFileUnchecked(`${dir}/c.hls`);
      assert.deepEqual(delta.binary, BINARY);

      // Without a binary (and nothing else new), the file stays version 1.
      await plain.toFile(`${dir}/v1.hls`);
      assert.equal(parse(`${dir}/v1.hls`).formatVersion, 1);
      assert.equal(Snapshot.inspectFile(`${dir}/v1.hls`).binary, null);
    });
  },
);
