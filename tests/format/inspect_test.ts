import assert from "node:assert/strict";
import { MEMORY_MAP } from "../../vm/machine/abi.ts";
import {
  Arch,
  blake3,
  blake3Hex,
  describeSnapshot,
  emptySregs,
  encodeSnapshotPrefix,
  EntrypointTag,
  HEADER_FIELDS,
  type HostIdentity,
  Hypervisor,
  inspectSnapshot,
  parseSnapshotHeader,
  SnapshotFormatError,
  ValueTag,
} from "../../format/mod.ts";

const HOST: HostIdentity = {
  arch: Arch.X86_64,
  hypervisor: Hypervisor.KVM,
  abiVersion: 1,
  memoryMap: MEMORY_MAP,
};
const MEMORY_SIZE = 0x201000; // one-page image at 0x200000, no heap

function snapshot() {
  const sregs = emptySregs();
  sregs.cr3 = 0x5000n;
  sregs.cs = {
    ...sregs.cs,
    selector: 0x33,
    type: 11,
    present: 1,
    dpl: 3,
    s: 1,
    l: 1,
    g: 1,
    limit: 0xffffffff,
  };
  const blob = new Uint8Array(MEMORY_SIZE).fill(7);
  const prefix = encodeSnapshotPrefix({
    header: {
      arch: Arch.X86_64,
      abiVersion: 1,
      hypervisor: Hypervisor.KVM,
      entrypointTag: EntrypointTag.Call,
      entrypointAddr: 0x200040,
      stackTopGva: 0x212000,
      inputDataSize: 0x1000,
      outputDataSize: 0x1000,
      heapSize: 0,
      codeSize: 0x1000,
      initDataSize: 0,
      initDataPermissions: 0,
      scratchSize: 0x12000,
      snapshotSize: MEMORY_SIZE,
      ptSize: 0x4000,
      memorySize: MEMORY_SIZE,
    },
    sregs,
    hostFunctions: [
      { name: "HostPrint", returnType: ValueTag.I32, parameterTypes: [ValueTag.String] },
      { name: "Add", returnType: ValueTag.I64, parameterTypes: [ValueTag.I64, ValueTag.I64] },
    ],
    blobHash: blake3(blob),
  });
  return { prefix, blob, fileLength: prefix.length + MEMORY_SIZE + 4096 };
}

Deno.test("inspectSnapshot describes a compatible snapshot completely", () => {
  const { prefix, blob, fileLength } = snapshot();
  const info = inspectSnapshot(prefix, fileLength, HOST);
  assert.equal(info.formatVersion, 1);
  assert.equal(info.abiVersion, 1);
  assert.equal(info.arch, "x86_64");
  assert.equal(info.hypervisor, "KVM");
  assert.equal(info.entrypoint, "Call");
  assert.equal(info.compatible, true);
  assert.deepEqual(info.incompatibilities, []);
  assert.equal(info.layoutChecked, true);
  assert.deepEqual(Object.keys(info.header), HEADER_FIELDS.map(([name]) => name));
  assert.equal(info.header.memory_offset, 4096);
  assert.equal(info.header.entrypoint_addr, 0x200040);
  assert.deepEqual(info.hostFunctions, ["HostPrint(string) -> i32", "Add(i64, i64) -> i64"]);
  assert.equal(info.blobHash, blake3Hex(blob));
  assert.match(info.headerHash, /^[0-9a-f]{64}$/);
  assert.equal((info.sregs as { cr3: string }).cr3, "0x5000");
  assert.equal((info.sregs as { cs: { selector: number } }).cs.selector, 0x33);
  // Plain data only: JSON round-trips it unchanged.
  assert.deepEqual(JSON.parse(JSON.stringify(info)), info);
});

Deno.test("inspectSnapshot reports why a snapshot does not load here, instead of throwing", () => {
  const { prefix, fileLength } = snapshot();
  const info = inspectSnapshot(prefix, fileLength, {
    arch: Arch.AARCH64,
    hypervisor: Hypervisor.WHP,
    abiVersion: 2,
  });
  assert.equal(info.compatible, false);
  assert.deepEqual(info.incompatibilities.map((reason) => reason.kind), [
    "ArchMismatch",
    "AbiMismatch",
    "HypervisorMismatch",
  ]);
  assert.match(info.incompatibilities[1].message, /regenerate the snapshot from the guest binary/);
  assert.equal(info.layoutChecked, false);
  assert.equal(info.arch, "x86_64");
});

Deno.test("inspectSnapshot still refuses a corrupt file", () => {
  const { prefix, fileLength } = snapshot();
  prefix[1150] ^= 1;
  assert.throws(() => inspectSnapshot(prefix, fileLength, HOST), (error: unknown) => {
    assert.ok(error instanceof SnapshotFormatError);
    assert.equal(error.kind, "HeaderHashMismatch");
    return true;
  });
});

Deno.test("describeSnapshot of a parsed snapshot equals inspectSnapshot of its bytes", () => {
  const { prefix, fileLength } = snapshot();
  const parsed = parseSnapshotHeader(prefix, fileLength, HOST);
  assert.deepEqual(describeSnapshot(parsed, HOST), inspectSnapshot(prefix, fileLength, HOST));
  const elsewhere = describeSnapshot(parsed, { ...HOST, abiVersion: 3 });
  assert.equal(elsewhere.compatible, false);
  assert.equal(elsewhere.incompatibilities[0].field, "abi_version");
});
