/**
 * The BINARY section: the guest binary's path and ELF entry point travel with a snapshot (`SnapshotData.binary`,
 * set by `UninitializedSandbox` for a binary given by path) into its file, back out of it, into sandboxes
 * made from it (debuggers and core dumps name it) and into their snapshots and files, complete or delta.
 * The recorded path is file content: hostile paths are refused by the codec's limits or stay harmless
 * strings (never opened, never a file name outside `coreDumpDir`).
 */
import assert from "node:assert/strict";
import {
  MemoryAccessViolationError,
  MultiUseSandbox,
  setLogger,
  Snapshot,
  UninitializedSandbox,
} from "../../../mod.ts";
import { parseSnapshotHeader } from "../../../format/mod.ts";
import { Blob } from "../../../vm/memory/blob.ts";
import { parseElf } from "../../../vm/machine/elf.ts";
import { hostIdentity, live, snapshotOf } from "../../../vm/snapshot.ts";
import { vmTest } from "../../_hypervisor.ts";
import {
  assertFormatError,
  getField,
  hostFns,
  OFF,
  rehashHeader,
  TESTGUEST,
  testguest,
  withTempDir,
} from "./_util.ts";

const BINARY = { path: `${TESTGUEST} (Größe 🦀)`, entry: 0x2012_34n };
const ENTRY = BigInt(parseElf(Deno.readFileSync(TESTGUEST)).entry);

function parse(path: string) {
  const bytes = Deno.readFileSync(path);
  return parseSnapshotHeader(bytes, bytes.length, hostIdentity());
}

/** A copy of `snap` that records `binary` instead (files written from it store it as given). */
function withBinary(snap: Snapshot, binary: { path: string; entry: bigint }): Snapshot {
  const { blob, data } = live(snap);
  return snapshotOf(Blob.copyOf(blob.ref), { ...data, binary });
}

vmTest("a sandbox made from a guest file records the binary in its snapshots, files and copies", async () => {
  await withTempDir(async (dir) => {
    const expected = { path: TESTGUEST, entry: ENTRY };
    const u = testguest();
    using pre = u.snapshot();
    assert.deepEqual(pre.binary, expected, "UninitializedSandbox.snapshot()");
    using sbx = u.evolve();
    sbx.call("AddToStatic", 3);
    using snap = sbx.snapshot();
    assert.deepEqual(snap.binary, expected, "MultiUseSandbox.snapshot()");

    // From bytes nothing is known; a configured guestBinaryPath is what debuggers are told, so it is recorded.
    using fromBytes = new UninitializedSandbox(Deno.readFileSync(TESTGUEST), {}, hostFns()).snapshot();
    assert.equal(fromBytes.binary, undefined);
    using configured = testguest({ guestBinaryPath: "/opt/guests/testguest" }).snapshot();
    assert.deepEqual(configured.binary, { path: "/opt/guests/testguest", entry: ENTRY });

    await snap.toFile(`${dir}/a.hls`);
    assert.equal(parse(`${dir}/a.hls`).formatVersion, 2);
    assert.deepEqual(parse(`${dir}/a.hls`).binary, expected);
    await snap.toFile(`${dir}/plain.hls`, { binary: false });
    assert.equal(parse(`${dir}/plain.hls`).formatVersion, 1, "binary: false leaves it out");
    assert.equal(parse(`${dir}/plain.hls`).binary, null);

    // A sandbox made from the file knows the binary from the file, and its snapshots carry it on, also after
    // a restore; a file without one gives sandboxes without one.
    using loaded = Snapshot.fromFile(`${dir}/a.hls`);
    using copy = MultiUseSandbox.fromSnapshot(loaded, hostFns());
    assert.equal(copy.call("AddToStatic", 1), 4);
    using again = copy.snapshot();
    assert.deepEqual(again.binary, expected);
    copy.restore(loaded);
    using restored = copy.snapshot();
    assert.deepEqual(restored.binary, expected);
    await again.toFile(`${dir}/b.hls`, { base: `${dir}/a.hls` });
    assert.deepEqual(parse(`${dir}/b.hls`).binary, expected, "a delta records it too");
    using plain = Snapshot.fromFile(`${dir}/plain.hls`);
    using bare = MultiUseSandbox.fromSnapshot(plain, hostFns());
    assert.equal(bare.snapshot().binary, undefined);
  });
});

vmTest(
  "a snapshot's binary is stored in its file, loaded back and carried into files written from it",
  async () => {
    await withTempDir(async (dir) => {
      using sbx = new UninitializedSandbox(
        Deno.readFileSync(TESTGUEST),
        { heapSize: 4 * 1024 * 1024 },
        hostFns(),
      )
        .evolve();
      sbx.call("AddToStatic", 2);
      using plain = sbx.snapshot();
      assert.equal(plain.binary, undefined);
      using snap = withBinary(plain, BINARY);
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

// ---- Core files ------------------------------------------------------------------------------------------------

const NT_PRPSINFO = 3, NT_AUXV = 6, NT_FILE = 0x46494c45;

/** The notes of an ELF core file: type → descriptor bytes. */
function coreNotes(core: Uint8Array): Map<number, Uint8Array> {
  const v = new DataView(core.buffer, core.byteOffset, core.byteLength);
  const phoff = Number(v.getBigUint64(32, true));
  assert.equal(v.getUint32(phoff, true), 4, "PT_NOTE first");
  const offset = Number(v.getBigUint64(phoff + 8, true)), size = Number(v.getBigUint64(phoff + 32, true));
  const notes = new Map<number, Uint8Array>();
  for (let o = offset; o < offset + size;) {
    const namesz = v.getUint32(o, true), descsz = v.getUint32(o + 4, true), type = v.getUint32(o + 8, true);
    const at = o + 12 + ((namesz + 3) & ~3);
    notes.set(type, core.subarray(at, at + descsz));
    o = at + ((descsz + 3) & ~3);
  }
  return notes;
}

/** The command line a core records (`pr_psargs`, NUL-terminated, at most 79 bytes). */
function psargs(notes: Map<number, Uint8Array>): string {
  const args = notes.get(NT_PRPSINFO)!.subarray(56, 56 + 80);
  return new TextDecoder().decode(args.subarray(0, args.indexOf(0)));
}

function atEntry(notes: Map<number, Uint8Array>): bigint {
  const auxv = notes.get(NT_AUXV)!;
  const v = new DataView(auxv.buffer, auxv.byteOffset, auxv.byteLength);
  for (let i = 0; i < auxv.byteLength; i += 16) {
    if (v.getBigUint64(i, true) === 9n) return v.getBigUint64(i + 8, true);
  }
  return -1n;
}

vmTest(
  "a sandbox from a file names the recorded binary in core files without opening it; guestBinaryPath wins",
  async () => {
    await withTempDir(async (dir) => {
      {
        using sbx = testguest().evolve();
        using snap = sbx.snapshot();
        await snap.toFile(`${dir}/s.hls`);
      }
      using snap = Snapshot.fromFile(`${dir}/s.hls`);
      // The recorded path names a real ELF, yet no mapped-file note appears: its segments would have to be
      // read from the file the path names, and a recorded path is never opened.
      using recorded = MultiUseSandbox.fromSnapshot(snap, hostFns());
      recorded.coreDump(`${dir}/recorded.core`);
      const notes = coreNotes(Deno.readFileSync(`${dir}/recorded.core`));
      assert.equal(psargs(notes), TESTGUEST.slice(0, 79));
      assert.equal(atEntry(notes), ENTRY);
      assert.equal(notes.has(NT_FILE), false, "the recorded path was read");

      // A path the user configures is trusted: its segments are read for the mapped-file note.
      using configured = MultiUseSandbox.fromSnapshot(snap, hostFns(), { guestBinaryPath: TESTGUEST });
      configured.coreDump(`${dir}/configured.core`);
      const mine = coreNotes(Deno.readFileSync(`${dir}/configured.core`));
      assert.equal(mine.has(NT_FILE), true);
      assert.equal(atEntry(mine), ENTRY, "the entry point comes from the file's record");
    });
  },
);

// ---- Hostile paths ---------------------------------------------------------------------------------------------

/** File offset of the recorded path's first byte (a version-2 file whose only section is BINARY). */
function pathOffset(bytes: Uint8Array): number {
  const sections = OFF.hostFuncs + Number(getField(bytes, "host_funcs_size"));
  // u32 count, u32 size | u32 type, u32 length | u64 entry, u32 path_len | path
  assert.equal(new DataView(bytes.buffer, bytes.byteOffset).getUint32(sections + 8, true), 1, "BINARY");
  return sections + 8 + 8 + 12;
}

vmTest("hostile recorded paths: NUL, non-UTF-8 and over-long ones are refused by the codec", async () => {
  await withTempDir(async (dir) => {
    using sbx = new UninitializedSandbox(Deno.readFileSync(TESTGUEST), {}, hostFns()).evolve();
    using plain = sbx.snapshot();
    using snap = withBinary(plain, { path: "A".repeat(4096), entry: ENTRY });
    await snap.toFile(`${dir}/long.hls`);
    const good = Deno.readFileSync(`${dir}/long.hls`);
    const at = pathOffset(good);
    assert.equal(new DataView(good.buffer).getUint32(at - 4, true), 4096);

    const forge = (name: string, damage: (b: Uint8Array) => void): string => {
      const bytes = good.slice();
      damage(bytes);
      rehashHeader(bytes); // consistent hashes: only the codec's limits stand in the way
      Deno.writeFileSync(`${dir}/${name}.hls`, bytes);
      return `${dir}/${name}.hls`;
    };
    const cases = [
      [forge("nul", (b) => void (b[at + 100] = 0)), "binary.path"],
      [forge("utf8", (b) => void (b[at + 100] = 0xff)), "binary.path"],
      [forge("overlong", (b) => void (b[at + 100] = 0xc0, b[at + 101] = 0xaf)), "binary.path"], // "/" in 2 bytes
      [forge("surrogate", (b) => void b.set([0xed, 0xa0, 0x80], at + 100)), "binary.path"],
      [forge("long", (b) => new DataView(b.buffer).setUint32(at - 4, 4097, true)), "binary.path_len"],
      [forge("empty", (b) => new DataView(b.buffer).setUint32(at - 4, 0, true)), "binary.path_len"],
    ] as const;
    for (const [path, field] of cases) {
      assertFormatError(() => Snapshot.fromFile(path), "InvalidField", field, `${path} / fromFile`);
      assertFormatError(() => Snapshot.fromFileUnchecked(path), "InvalidField", field, `${path} / unchecked`);
      assertFormatError(
        () => Snapshot.fromBytes(Deno.readFileSync(path)),
        "InvalidField",
        field,
        `${path} / fromBytes`,
      );
    }

    // The writer refuses what a loader would refuse.
    for (const path of ["A".repeat(4097), "a\0b", "\ud800", ""]) {
      using bad = withBinary(plain, { path, entry: ENTRY });
      await assert.rejects(() => bad.toFile(`${dir}/bad.hls`), { name: "SnapshotFormatError" });
    }
  });
});

vmTest(
  "a hostile recorded path that loads stays a string: core files stay plain names in coreDumpDir",
  async () => {
    await withTempDir(async (dir) => {
      const hostile = ("../".repeat(1300) + "etc/passwd\n[snapvm warn] forged \u001b[31m\u0085").slice(
        0,
        4000,
      );
      assert.ok(new TextEncoder().encode(hostile).length <= 4096);
      {
        using sbx = new UninitializedSandbox(Deno.readFileSync(TESTGUEST), {}, hostFns()).evolve();
        using plain = sbx.snapshot();
        using snap = withBinary(plain, { path: hostile, entry: ENTRY });
        await snap.toFile(`${dir}/hostile.hls`);
        using dots = withBinary(plain, { path: "/x/..", entry: ENTRY });
        await dots.toFile(`${dir}/dots.hls`);
      }
      using snap = Snapshot.fromFile(`${dir}/hostile.hls`);
      assert.equal(snap.binary!.path, hostile);
      const cores = `${dir}/cores`;
      Deno.mkdirSync(cores);
      setLogger(() => {});
      try {
        using sbx = MultiUseSandbox.fromSnapshot(snap, hostFns(), { coreDumpDir: cores });
        assert.deepEqual(sbx.snapshot().binary, { path: hostile, entry: ENTRY }, "carried on as data");
        const err = (() => {
          try {
            sbx.call("WildWrite", 0x10n);
          } catch (e) {
            return e;
          }
        })();
        assert.ok(err instanceof MemoryAccessViolationError, String(err));
        // One short plain name inside the directory, whatever the path holds.
        const written = [...Deno.readDirSync(cores)].map((e) => e.name);
        assert.equal(written.length, 1, written.join(", "));
        assert.equal(err.coreFile, `${cores}/${written[0]}`);
        assert.match(written[0], /^core\.passwd__snapvm_warn__forged___31m_\.\d+\.\d+$/);
        assert.equal(psargs(coreNotes(Deno.readFileSync(err.coreFile!))), hostile.slice(0, 79));

        using dotted = Snapshot.fromFile(`${dir}/dots.hls`);
        using other = MultiUseSandbox.fromSnapshot(dotted, hostFns(), { coreDumpDir: cores });
        assert.throws(() => other.call("WildWrite", 0x10n), MemoryAccessViolationError);
        assert.ok([...Deno.readDirSync(cores)].some((e) => /^core\.guest\.\d+\.\d+$/.test(e.name)));
      } finally {
        setLogger(undefined);
      }
      assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
        "cores",
        "dots.hls",
        "hostile.hls",
      ]);
    });
  },
);
