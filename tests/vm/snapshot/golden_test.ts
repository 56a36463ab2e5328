/**
 * The committed golden snapshot tests/golden/testguest-call.hls (how it was made and when to regenerate it:
 * tests/golden/README.md) is loaded on every run, so that an accidental change of the file format, the ABI or
 * the loader fails loudly here.
 */
import assert from "node:assert/strict";
import { ABI_VERSION, MultiUseSandbox, Snapshot, SnapshotFormatError } from "../../../mod.ts";
import { vmTest } from "../../_hypervisor.ts";
import {
  GOLDEN_CONFIG,
  GOLDEN_DELTA_BINARY,
  GOLDEN_DELTA_PATH,
  GOLDEN_PATH,
  makeGolden,
  makeGoldenDelta,
} from "./_golden.ts";
import { fileDigest, getField, HEADER_FIELDS, hostFns, OFF, withTempDir } from "./_util.ts";

/** Every header field of the golden file. */
const GOLDEN_HEADER = {
  arch: 1, // x86_64
  abi_version: 4,
  stack_top_gva: 0x253000,
  entrypoint_tag: 1, // Call
  entrypoint_addr: 0x200016,
  input_data_size: 8192,
  output_data_size: 12288,
  heap_size: 262144,
  code_size: 0xa000,
  init_data_size: 0,
  init_data_permissions: 0,
  scratch_size: 53248, // stack 32 KiB + 8 KiB + 12 KiB
  snapshot_size: 0x24a000,
  pt_size: 0x5000,
  memory_size: 0x24a000, // 0x200000 + code 0xa000 + heap 0x40000
  memory_offset: 4096,
  has_sregs: 1,
  hypervisor: 1, // KVM
  host_funcs_size: 37,
};
const GOLDEN_HEADER_HASH = "03329a7205b8b1009ae24283303e8011c442d9be508f25a5dc9e549c0152594d";
const GOLDEN_BLOB_HASH = "7f772b5c36f96ac84274ed5bab27a95964ead4eb784b3eb0b65c7bfd15d62378";
const GOLDEN_FILE_SHA256 = "909d3c6dc20cc55f67b171c2c9406062e425080fbc662ffa4cd6b83f83e1f181";
const GOLDEN_FILE_SIZE = 4096 + 0x24a000 + 4096;

Deno.test("the golden file is the committed one", async () => {
  assert.equal(Deno.statSync(GOLDEN_PATH).size, GOLDEN_FILE_SIZE);
  assert.equal(await fileDigest(GOLDEN_PATH), GOLDEN_FILE_SHA256, "tests/golden/testguest-call.hls changed");
});

Deno.test("inspectFile of the golden file gives the pinned header, versions, names, registers and hashes", () => {
  const info = Snapshot.inspectFile(GOLDEN_PATH);
  assert.equal(info.formatVersion, 1);
  assert.equal(info.abiVersion, 4);
  assert.equal(
    ABI_VERSION,
    4,
    "the ABI version changed: regenerate the golden file (tests/golden/README.md)",
  );
  assert.equal(info.arch, "x86_64");
  assert.equal(info.hypervisor, "KVM");
  assert.equal(info.entrypoint, "Call");
  assert.equal(info.compatible, true);
  assert.deepEqual(info.incompatibilities, []);
  assert.deepEqual(info.header, GOLDEN_HEADER);
  assert.deepEqual(Object.keys(info.header), [...HEADER_FIELDS]);
  assert.deepEqual(info.hostFunctions, ["Add(i32, i32) -> i32", "HostPrint(string) -> i32"]);
  assert.equal(info.headerHash, GOLDEN_HEADER_HASH);
  assert.equal(info.blobHash, GOLDEN_BLOB_HASH);
  // The special registers docs/ABI.md prescribes.
  const s = info.sregs as Record<string, unknown>;
  assert.equal(s.cr0, "0x80050033");
  assert.equal(s.cr3, "0x5000");
  assert.equal(s.cr4, "0x620");
  assert.equal(s.efer, "0xd00");
  assert.deepEqual(s.gdt, { base: "0x1000", limit: 9 * 8 - 1 });
  assert.deepEqual(s.idt, { base: "0x1800", limit: 32 * 16 - 1 });
  const seg = (name: string) => s[name] as Record<string, unknown>;
  assert.equal(seg("cs").selector, 0x33);
  assert.equal(seg("cs").dpl, 3);
  assert.equal(seg("cs").l, 1);
  assert.equal(seg("ss").selector, 0x2b);
  assert.equal(seg("tr").selector, 0x38);
  assert.equal(seg("tr").base, "0x1100");
  assert.equal(seg("tr").limit, 0x67 + 33);
});

vmTest("the golden file loads with every loader and resumes with the recorded state", () => {
  for (const load of [Snapshot.fromFile, Snapshot.fromFileUnchecked, Snapshot.fromFileCached]) {
    const snap = load(GOLDEN_PATH);
    try {
      assert.equal(snap.entrypoint, "Call");
      assert.equal(snap.memorySize, GOLDEN_HEADER.memory_size);
      assert.deepEqual(snap.hostFunctions, [
        { name: "Add", params: ["i32", "i32"], returns: "i32" },
        { name: "HostPrint", params: ["string"], returns: "i32" },
      ]);
      using sbx = MultiUseSandbox.fromSnapshot(snap, hostFns());
      assert.equal(sbx.call("GetStatic"), 41, load.name);
      assert.equal(sbx.call("Echo", "golden"), "golden");
      assert.equal(sbx.call("Add", 40, 2), 42);
      assert.ok(sbx.guestFunctions().some((f) => f.name === "TouchPages"));
      assert.equal(sbx.call("AddToStatic", 1), 42);
      sbx.call("TouchPages", 16);
      sbx.restore(snap);
      assert.equal(sbx.call("GetStatic"), 41);
      // The layout is the golden file's: 8 KiB input buffer.
      assert.throws(() => sbx.call("Echo", "x".repeat(9000)), { name: "RangeError", message: /8192-byte/ });
    } finally {
      snap.close();
    }
  }
});

vmTest("a snapshot made now by the golden recipe has the golden file's format", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/now.hls`;
    await makeGolden(path);
    const now = Deno.readFileSync(path), golden = Deno.readFileSync(GOLDEN_PATH);
    // Independent of the test guest's code: preamble, layout fields, registers, host functions.
    assert.deepEqual(now.subarray(0, OFF.header), golden.subarray(0, OFF.header), "preamble");
    for (const f of HEADER_FIELDS) {
      if (["code_size", "entrypoint_addr", "memory_size", "snapshot_size", "stack_top_gva"].includes(f)) {
        continue;
      }
      assert.equal(getField(now, f), getField(golden, f), f);
    }
    assert.deepEqual(
      now.subarray(OFF.sregs, OFF.headerHash),
      golden.subarray(OFF.sregs, OFF.headerHash),
      "sregs",
    );
    assert.deepEqual(
      now.subarray(OFF.hostFuncs, OFF.hostFuncs + GOLDEN_HEADER.host_funcs_size),
      golden.subarray(OFF.hostFuncs, OFF.hostFuncs + GOLDEN_HEADER.host_funcs_size),
      "host functions",
    );
    // With an unchanged test guest (same image), the whole file is the same, byte for byte.
    const image = (b: Uint8Array) => b.subarray(4096 + 0x200000, 4096 + 0x200000 + GOLDEN_HEADER.code_size);
    if (getField(now, "code_size") === getField(golden, "code_size") && equal(image(now), image(golden))) {
      assert.equal(
        await fileDigest(path),
        GOLDEN_FILE_SHA256,
        "same guest, different file: the writer changed",
      );
    }
    assert.deepEqual(GOLDEN_CONFIG, {
      heapSize: 262144,
      stackSize: 32768,
      inputDataSize: 8192,
      outputDataSize: 12288,
    });
  });
});

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

vmTest(
  "golden files of retired ABI versions 1, 2 and 3 are refused with AbiMismatch, and inspectFile says why",
  () => {
    for (const version of [1, 2, 3]) {
      checkRetired(GOLDEN_PATH.replace("testguest-call.hls", `testguest-call-abi${version}.hls`), version);
    }
  },
);

function checkRetired(old: string, version: number): void {
  const info = Snapshot.inspectFile(old);
  assert.equal(info.abiVersion, version);
  assert.equal(info.compatible, false);
  assert.equal(info.incompatibilities.length, 1);
  for (const load of [Snapshot.fromFile, Snapshot.fromFileUnchecked, Snapshot.fromFileCached]) {
    assert.throws(() => load(old), (e: unknown) => {
      assert.ok(e instanceof SnapshotFormatError, String(e));
      assert.equal(e.kind, "AbiMismatch");
      assert.match(e.message, new RegExp(`abi_version is ${version}`));
      return true;
    });
  }
}

// ---- The golden delta (format version 2) ------------------------------------------------------------------------

const GOLDEN_DELTA_SHA256 = "4514fe8ee9053a739ef344a20df27b8194069bd36551d8e8549a5576b6ca4920";
const GOLDEN_DELTA_HEADER_HASH = "669c2dcd3973e15b4a3c00cc18045ee1c87221a3b4d24667d3b773f0bfa80eb0";
const GOLDEN_DELTA_BLOB_HASH = "31b5da68dd8fbe637a2f193ae86043997a39a1f1574cb67c570eb1d8270d68c2";

Deno.test("the golden delta is the committed one, a version-2 file with every section, over the golden file", async () => {
  assert.equal(Deno.statSync(GOLDEN_DELTA_PATH).size, 4096 + 4096 + 4096);
  assert.equal(
    await fileDigest(GOLDEN_DELTA_PATH),
    GOLDEN_DELTA_SHA256,
    "tests/golden/testguest-call-delta.hls changed",
  );
  const info = Snapshot.inspectFile(GOLDEN_DELTA_PATH);
  assert.equal(info.formatVersion, 2);
  assert.equal(info.compatible, true, JSON.stringify(info.incompatibilities));
  assert.deepEqual(info.header, GOLDEN_HEADER); // the same layout, host functions and memory_offset
  assert.equal(info.headerHash, GOLDEN_DELTA_HEADER_HASH);
  assert.equal(info.blobHash, GOLDEN_DELTA_BLOB_HASH);
  assert.deepEqual(info.base, {
    blobHash: GOLDEN_BLOB_HASH,
    chainDepth: 1,
    fileName: "testguest-call.hls",
    runs: 1,
    pages: 1,
  });
  assert.deepEqual(info.binary, { path: GOLDEN_DELTA_BINARY.path, entry: "0x200000" });
  assert.deepEqual(info.workingSet, { runs: 2, pages: 13 });
  assert.equal(info.storedSize, 4096);
  assert.deepEqual(info.chain, [{ path: GOLDEN_PATH, blobHash: GOLDEN_BLOB_HASH, chainDepth: 0 }]);
});

vmTest("the golden delta loads over the golden file with every loader", async () => {
  for (const load of [Snapshot.fromFile, Snapshot.fromFileUnchecked, Snapshot.fromFileCached]) {
    using snap = load(GOLDEN_DELTA_PATH);
    assert.deepEqual(snap.binary, GOLDEN_DELTA_BINARY);
    using sbx = MultiUseSandbox.fromSnapshot(snap, hostFns());
    assert.equal(sbx.call("GetStatic"), 42, load.name);
    assert.equal(sbx.call("Echo", "golden delta"), "golden delta");
  }
  // The recipe made now gives the same file while the test guest is unchanged.
  await withTempDir(async (dir) => {
    Deno.copyFileSync(GOLDEN_PATH, `${dir}/testguest-call.hls`);
    await makeGoldenDelta(`${dir}/delta.hls`, `${dir}/testguest-call.hls`);
    const now = Snapshot.inspectFile(`${dir}/delta.hls`);
    assert.deepEqual(now.base, Snapshot.inspectFile(GOLDEN_DELTA_PATH).base);
    if (now.blobHash === GOLDEN_DELTA_BLOB_HASH) {
      assert.equal(await fileDigest(`${dir}/delta.hls`), GOLDEN_DELTA_SHA256, "same guest, different delta");
    }
  });
});
