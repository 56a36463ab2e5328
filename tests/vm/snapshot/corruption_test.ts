/**
 * Damaged snapshot files, made from real snapshots of the test guest: every header field, the preamble, the
 * special registers, the host-function bytes, both hashes, the blob, and truncation at every section
 * boundary. Each must give its `SnapshotFormatError` kind through `fromFile`, `fromFileUnchecked` (which
 * does not hash the blob), `fromFileCached` and `fromBytes` (like `fromFile`) and `inspectFile` (which
 * reports host incompatibility instead of throwing, and reads only the header).
 */
import assert from "node:assert/strict";
import {
  HostFunctionMismatchError,
  MultiUseSandbox,
  Snapshot,
  SNAPSHOT_FORMAT_ERROR_KINDS,
  type SnapshotFormatErrorKind,
} from "../../../mod.ts";
import { vmTest } from "../../_hypervisor.ts";
import {
  assertFormatError,
  counts,
  crOffset,
  fieldOffset,
  getField,
  HEADER_FIELDS,
  type HeaderField,
  hostFns,
  mappingsOf,
  OFF,
  rehashAll,
  rehashHeader,
  setField,
  setU64,
  sregOffset,
  testguest,
  withTempDir,
} from "./_util.ts";

/** What a loader does with a damaged file: throw a kind, or load. */
type Outcome = SnapshotFormatErrorKind | "loads";

interface Case {
  what: string;
  /** The snapshot to damage: after init (Call) or before (Initialise). */
  file?: "call" | "pre";
  /** Damages the bytes in place, or returns new (shorter or longer) bytes. */
  damage: (bytes: Uint8Array) => Uint8Array | void;
  /** What fromFile and fromFileCached do. */
  kind: Outcome;
  /** The error's `field`, when it throws. */
  field?: string;
  /** What fromFileUnchecked does, if not the same as fromFile. */
  unchecked?: Outcome;
  /** What inspectFile does, if not the same as fromFile: `"incompatible"` means it returns that verdict. */
  inspect?: Outcome | "incompatible";
}

/** Sets a header field to f(old value). */
function field(name: HeaderField, f: (old: bigint) => bigint, rehash = false): (b: Uint8Array) => void {
  return (b) => {
    setField(b, name, BigInt.asUintN(64, f(getField(b, name))));
    if (rehash) rehashHeader(b);
  };
}

/** Sets a u64 at a file offset. */
function u64At(offset: number, value: bigint, rehash = false): (b: Uint8Array) => void {
  return (b) => {
    setU64(b, offset, value);
    if (rehash) rehashHeader(b);
  };
}

/** XORs one byte. */
function flip(offset: (b: Uint8Array) => number, rehash = false): (b: Uint8Array) => void {
  return (b) => {
    b[offset(b)] ^= 0x5a;
    if (rehash) rehashHeader(b);
  };
}

const blobStart = (b: Uint8Array) => Number(getField(b, "memory_offset"));
const blobEnd = (b: Uint8Array) => blobStart(b) + Number(getField(b, "memory_size"));
const FUNC_TABLE_ADDR = 0x1e0000; // docs/ABI.md: the host-written function table, inside the blob

// The host-functions section of the Call snapshot: HostPrint and Add, sorted by name.
// 1176 u32 count = 2 | 1180 u32 3, "Add", u8 ret, u32 2, i32 i32 | 1194 u32 9, "HostPrint", u8 ret, u32 1, string
const HF = { count: 1176, addName: 1184, addReturn: 1187, addParamCount: 1188, addParam0: 1192, end: 1213 };

const CASES: Case[] = [
  // ---- Preamble ----
  { what: "magic HLS\\1", damage: flip(() => 3), kind: "BadMagic", field: "magic" },
  {
    what: "an ELF file",
    damage: (b) => void b.set([0x7f, 0x45, 0x4c, 0x46]),
    kind: "BadMagic",
    field: "magic",
  },
  // A version-1 file relabelled version 2: its padding reads as an empty section table.
  { what: "format_version 2", damage: (b) => void (b[4] = 2), kind: "InvalidField", field: "sections.count" },
  { what: "format_version 3", damage: (b) => void (b[4] = 3), kind: "UnsupportedFormatVersion" },
  { what: "format_version 0", damage: (b) => void (b[4] = 0), kind: "UnsupportedFormatVersion" },

  // ---- Header: tags and host compatibility ----
  {
    what: "arch aarch64",
    damage: field("arch", () => 2n, true),
    kind: "ArchMismatch",
    inspect: "incompatible",
  },
  { what: "arch i686", damage: field("arch", () => 3n, true), kind: "ArchMismatch", inspect: "incompatible" },
  { what: "arch 0", damage: field("arch", () => 0n), kind: "InvalidField", field: "arch" },
  { what: "arch 4", damage: field("arch", () => 4n), kind: "InvalidField", field: "arch" },
  {
    what: "abi_version + 1",
    damage: field("abi_version", (v) => v + 1n, true),
    kind: "AbiMismatch",
    inspect: "incompatible",
  },
  {
    what: "abi_version 0",
    damage: field("abi_version", () => 0n, true),
    kind: "AbiMismatch",
    inspect: "incompatible",
  },
  {
    what: "hypervisor MSHV",
    damage: field("hypervisor", () => 2n, true),
    kind: "HypervisorMismatch",
    inspect: "incompatible",
  },
  {
    what: "hypervisor WHP",
    damage: field("hypervisor", () => 3n, true),
    kind: "HypervisorMismatch",
    inspect: "incompatible",
  },
  {
    what: "abi_version + 1, header not rehashed",
    damage: field("abi_version", (v) => v + 1n),
    kind: "AbiMismatch",
    inspect: "HeaderHashMismatch",
  },
  { what: "hypervisor 0", damage: field("hypervisor", () => 0n), kind: "InvalidField", field: "hypervisor" },
  {
    what: "entrypoint_tag 2",
    damage: field("entrypoint_tag", () => 2n),
    kind: "InvalidField",
    field: "entrypoint_tag",
  },
  {
    what: "entrypoint_tag Initialise with sregs",
    damage: field("entrypoint_tag", () => 0n),
    kind: "InvalidField",
    field: "has_sregs",
  },
  {
    what: "entrypoint_tag Call without sregs",
    file: "pre",
    damage: field("entrypoint_tag", () => 1n),
    kind: "InvalidField",
    field: "has_sregs",
  },
  {
    what: "has_sregs 0 in a Call snapshot",
    damage: field("has_sregs", () => 0n),
    kind: "InvalidField",
    field: "has_sregs",
  },
  { what: "has_sregs 2", damage: field("has_sregs", () => 2n), kind: "InvalidField", field: "has_sregs" },
  {
    what: "has_sregs 1 in an Initialise snapshot",
    file: "pre",
    damage: field("has_sregs", () => 1n),
    kind: "InvalidField",
    field: "has_sregs",
  },
  {
    what: "init_data_permissions 8",
    damage: field("init_data_permissions", () => 8n),
    kind: "InvalidField",
    field: "init_data_permissions",
  },
  {
    what: "init_data_permissions READ",
    damage: field("init_data_permissions", () => 1n),
    kind: "InvalidField",
    field: "init_data_permissions",
  },
  {
    what: "init_data_size 4096",
    damage: field("init_data_size", () => 4096n),
    kind: "InvalidField",
    field: "init_data_size",
  },

  // ---- Header: sizes and offsets ----
  {
    what: "stack_top_gva + 8 (misaligned)",
    damage: field("stack_top_gva", (v) => v + 8n),
    kind: "InvalidField",
    field: "stack_top_gva",
  },
  {
    what: "stack_top_gva 0",
    damage: field("stack_top_gva", () => 0n),
    kind: "InvalidField",
    field: "stack_top_gva",
  },
  { what: "stack_top_gva - 16", damage: field("stack_top_gva", (v) => v - 16n), kind: "HeaderHashMismatch" },
  {
    what: "stack_top_gva - 16, header rehashed",
    damage: field("stack_top_gva", (v) => v - 16n, true),
    kind: "InvalidField",
    field: "stack_top_gva",
    inspect: "incompatible", // inspectFile runs the loader's layout checks too
  },
  {
    what: "entrypoint_addr 0x1000",
    damage: field("entrypoint_addr", () => 0x1000n),
    kind: "InvalidField",
    field: "entrypoint_addr",
  },
  {
    what: "entrypoint_addr past the image",
    damage: field("entrypoint_addr", () => 0x200000n + 0x100000n),
    kind: "InvalidField",
    field: "entrypoint_addr",
  },
  {
    what: "entrypoint_addr + 1",
    damage: field("entrypoint_addr", (v) => v + 1n),
    kind: "HeaderHashMismatch",
  },
  {
    what: "input_data_size 0",
    damage: field("input_data_size", () => 0n),
    kind: "InvalidField",
    field: "input_data_size",
  },
  {
    what: "input_data_size + 4096 (buffers past the scratch end)",
    damage: field("input_data_size", (v) => v + 4096n),
    kind: "InvalidField",
    field: "stack_top_gva",
  },
  {
    what: "input_data_size - 4096",
    damage: field("input_data_size", (v) => v - 4096n),
    kind: "HeaderHashMismatch",
  },
  {
    what: "input_data_size - 4096, header rehashed",
    damage: field("input_data_size", (v) => v - 4096n, true),
    kind: "InvalidField",
    inspect: "incompatible", // inspectFile runs the loader's layout checks too
  },
  {
    what: "output_data_size 4",
    damage: field("output_data_size", () => 4n),
    kind: "InvalidField",
    field: "output_data_size",
  },
  { what: "output_data_size 2^40", damage: field("output_data_size", () => 1n << 40n), kind: "InvalidField" },
  {
    what: "heap_size + 4096",
    damage: field("heap_size", (v) => v + 4096n),
    kind: "InvalidField",
    field: "memory_size",
  },
  {
    what: "heap_size + 1",
    damage: field("heap_size", (v) => v + 1n),
    kind: "InvalidField",
    field: "heap_size",
  },
  {
    what: "heap_size 2^64 - 4096",
    damage: field("heap_size", () => -4096n),
    kind: "InvalidField",
    field: "heap_size",
  },
  { what: "code_size 0", damage: field("code_size", () => 0n), kind: "InvalidField", field: "code_size" },
  {
    what: "code_size + 4096",
    damage: field("code_size", (v) => v + 4096n),
    kind: "InvalidField",
    field: "memory_size",
  },
  {
    what: "code_size 2^63",
    damage: field("code_size", () => 1n << 63n),
    kind: "InvalidField",
    field: "code_size",
  },
  { what: "code_size - 1", damage: field("code_size", (v) => v - 1n), kind: "HeaderHashMismatch" },
  {
    what: "scratch_size 0",
    damage: field("scratch_size", () => 0n),
    kind: "InvalidField",
    field: "scratch_size",
  },
  {
    what: "scratch_size + 1",
    damage: field("scratch_size", (v) => v + 1n),
    kind: "InvalidField",
    field: "scratch_size",
  },
  {
    what: "scratch_size 2^63",
    damage: field("scratch_size", () => 1n << 63n),
    kind: "InvalidField",
    field: "scratch_size",
  },
  {
    what: "scratch_size + 4096",
    damage: field("scratch_size", (v) => v + 4096n),
    kind: "HeaderHashMismatch",
  },
  {
    what: "scratch_size + 4096, header rehashed",
    damage: field("scratch_size", (v) => v + 4096n, true),
    kind: "InvalidField",
    inspect: "incompatible", // inspectFile runs the loader's layout checks too
  },
  {
    what: "snapshot_size + 4096",
    damage: field("snapshot_size", (v) => v + 4096n),
    kind: "InvalidField",
    field: "snapshot_size",
  },
  {
    what: "snapshot_size 0",
    damage: field("snapshot_size", () => 0n),
    kind: "InvalidField",
    field: "snapshot_size",
  },
  { what: "pt_size 0", damage: field("pt_size", () => 0n), kind: "InvalidField", field: "pt_size" },
  { what: "pt_size + 1", damage: field("pt_size", (v) => v + 1n), kind: "InvalidField", field: "pt_size" },
  {
    what: "pt_size 4 MiB",
    damage: field("pt_size", () => 4n << 20n),
    kind: "InvalidField",
    field: "pt_size",
  },
  { what: "pt_size + 4096", damage: field("pt_size", (v) => v + 4096n), kind: "HeaderHashMismatch" },
  {
    what: "pt_size + 4096, header rehashed",
    damage: field("pt_size", (v) => v + 4096n, true),
    kind: "InvalidField",
    field: "pt_size",
    inspect: "incompatible", // inspectFile runs the loader's layout checks too
  },
  {
    what: "memory_size + 4096 (past the file end)",
    damage: field("memory_size", (v) => v + 4096n),
    kind: "Truncated",
  },
  {
    what: "memory_size - 4096",
    damage: field("memory_size", (v) => v - 4096n),
    kind: "InvalidField",
    field: "snapshot_size",
  },
  {
    what: "memory_size + 1",
    damage: field("memory_size", (v) => v + 1n),
    kind: "InvalidField",
    field: "memory_size",
  },
  {
    what: "memory_size 0",
    damage: field("memory_size", () => 0n),
    kind: "InvalidField",
    field: "memory_size",
  },
  {
    what: "memory_size 2^64 - 4096",
    damage: field("memory_size", () => -4096n),
    kind: "InvalidField",
    field: "memory_size",
  },
  {
    what: "memory_offset + 1",
    damage: field("memory_offset", (v) => v + 1n),
    kind: "InvalidField",
    field: "memory_offset",
  },
  {
    what: "memory_offset 0",
    damage: field("memory_offset", () => 0n),
    kind: "InvalidField",
    field: "memory_offset",
  },
  {
    what: "memory_offset + 4096 (past the file end)",
    damage: field("memory_offset", (v) => v + 4096n),
    kind: "Truncated",
  },
  {
    what: "memory_offset 2^63",
    damage: field("memory_offset", () => 1n << 63n),
    kind: "InvalidField",
    field: "memory_offset",
  },
  {
    what: "memory_offset 2^64 - 4096 (overflows u64 arithmetic)",
    damage: field("memory_offset", () => -4096n),
    kind: "InvalidField",
    field: "memory_offset",
  },
  {
    what: "host_funcs_size 2 MiB",
    damage: field("host_funcs_size", () => 2n << 20n),
    kind: "HostFunctionsTooLarge",
    field: "host_funcs_size",
  },
  {
    what: "host_funcs_size 2^64 - 1",
    damage: field("host_funcs_size", () => -1n),
    kind: "HostFunctionsTooLarge",
    field: "host_funcs_size",
  },
  {
    what: "host_funcs_size past memory_offset",
    damage: field("host_funcs_size", () => 4096n),
    kind: "InvalidField",
    field: "memory_offset",
  },
  {
    what: "host_funcs_size + 1",
    damage: field("host_funcs_size", (v) => v + 1n),
    kind: "HeaderHashMismatch",
  },
  { what: "host_funcs_size 0", damage: field("host_funcs_size", () => 0n), kind: "HeaderHashMismatch" },
  {
    what: "host_funcs_size + 1, header rehashed (a trailing byte)",
    damage: field("host_funcs_size", (v) => v + 1n, true),
    kind: "InvalidField",
  },
  {
    what: "host_funcs_size - 1, header rehashed (the last function cut short)",
    damage: field("host_funcs_size", (v) => v - 1n, true),
    kind: "Truncated",
  },

  // ---- Special registers ----
  { what: "cr2 changed", damage: u64At(crOffset("cr2"), 0xdead000n), kind: "HeaderHashMismatch" },
  { what: "cr3 changed", damage: u64At(crOffset("cr3"), 0x6000n), kind: "HeaderHashMismatch" },
  { what: "cs.base changed", damage: u64At(sregOffset("cs", "base"), 0x1000n), kind: "HeaderHashMismatch" },
  {
    what: "interrupt bitmap changed",
    damage: u64At(crOffset("apic_base") + 8, 1n),
    kind: "HeaderHashMismatch",
  },
  {
    what: "cs.selector 0x10000",
    damage: u64At(sregOffset("cs", "selector"), 0x10000n),
    kind: "InvalidField",
    field: "sregs.cs.selector",
  },
  {
    what: "ss.limit 2^32",
    damage: u64At(sregOffset("ss", "limit"), 1n << 32n),
    kind: "InvalidField",
    field: "sregs.ss.limit",
  },
  {
    what: "ds.dpl 4",
    damage: u64At(sregOffset("ds", "dpl"), 4n),
    kind: "InvalidField",
    field: "sregs.ds.dpl",
  },
  {
    what: "tr.type 16",
    damage: u64At(sregOffset("tr", "type"), 16n),
    kind: "InvalidField",
    field: "sregs.tr.type",
  },
  {
    what: "ldt.present 2",
    damage: u64At(sregOffset("ldt", "present"), 2n),
    kind: "InvalidField",
    field: "sregs.ldt.present",
  },
  {
    what: "gs padding",
    damage: u64At(sregOffset("gs", "unusable") + 8, 1n),
    kind: "InvalidField",
    field: "sregs.gs.padding",
  },
  {
    what: "gdt.limit 0x10000",
    damage: u64At(OFF.sregs + 8 * 105, 0x10000n),
    kind: "InvalidField",
    field: "sregs.gdt.limit",
  },
  { what: "cr8 16", damage: u64At(crOffset("cr8"), 16n), kind: "InvalidField", field: "sregs.cr8" },
  {
    what: "sregs in an Initialise snapshot (has_sregs 0)",
    file: "pre",
    damage: u64At(crOffset("cr0"), 0x80050033n),
    kind: "InvalidField",
    field: "sregs",
  },
  {
    what: "the last sregs byte in an Initialise snapshot",
    file: "pre",
    damage: (b) => void (b[OFF.headerHash - 1] = 1),
    kind: "InvalidField",
    field: "sregs",
  },

  // ---- Hashes ----
  {
    what: "header_hash",
    damage: flip(() => OFF.headerHash + 5),
    kind: "HeaderHashMismatch",
    field: "header_hash",
  },
  {
    what: "header_hash (Initialise)",
    file: "pre",
    damage: flip(() => OFF.headerHash),
    kind: "HeaderHashMismatch",
  },
  {
    what: "blob_hash",
    damage: flip(() => OFF.blobHash + 31),
    kind: "HeaderHashMismatch",
    field: "header_hash",
  },
  {
    what: "blob_hash, header rehashed",
    damage: flip(() => OFF.blobHash, true),
    kind: "BlobHashMismatch",
    field: "blob_hash",
    unchecked: "loads",
    inspect: "loads",
  },

  // ---- Host-function bytes ----
  { what: "a host-function name", damage: flip(() => HF.addName + 1), kind: "HeaderHashMismatch" },
  { what: "a host-function parameter tag", damage: flip(() => HF.addParam0), kind: "HeaderHashMismatch" },
  { what: "host-function count", damage: flip(() => HF.count), kind: "HeaderHashMismatch" },
  {
    what: "a host-function name that is not UTF-8, header rehashed",
    damage: (b) => {
      b[HF.addName] = 0xff;
      rehashHeader(b);
    },
    kind: "InvalidField",
  },
  {
    what: "return tag 10, header rehashed",
    damage: (b) => {
      b[HF.addReturn] = 10;
      rehashHeader(b);
    },
    kind: "InvalidField",
  },
  {
    what: "parameter tag void, header rehashed",
    damage: (b) => {
      b[HF.addParam0] = 0;
      rehashHeader(b);
    },
    kind: "InvalidField",
  },
  {
    what: "host-function count 0, header rehashed",
    damage: (b) => {
      b[HF.count] = 0;
      rehashHeader(b);
    },
    kind: "InvalidField",
    field: "host_functions.count",
  },
  {
    what: "host-function count 3, header rehashed",
    damage: (b) => {
      b[HF.count] = 3;
      rehashHeader(b);
    },
    kind: "Truncated",
  },
  {
    what: "65 parameters, header rehashed",
    damage: (b) => {
      new DataView(b.buffer).setUint32(HF.addParamCount, 65, true);
      rehashHeader(b);
    },
    kind: "InvalidField",
  },
  {
    what: "a duplicate host-function name, header rehashed",
    damage: (b) => {
      // A new section: Add(i32, i32) -> i32 twice.
      const entry = [3, 0, 0, 0, 0x41, 0x64, 0x64, 1, 2, 0, 0, 0, 1, 1];
      const section = [2, 0, 0, 0, ...entry, ...entry];
      b.fill(0, OFF.hostFuncs, HF.end);
      b.set(section, OFF.hostFuncs);
      setField(b, "host_funcs_size", BigInt(section.length));
      rehashHeader(b);
    },
    kind: "InvalidField",
  },

  // ---- The blob (only fromFile and fromFileCached hash it) ----
  {
    what: "the first blob byte",
    damage: flip(blobStart),
    kind: "BlobHashMismatch",
    field: "blob_hash",
    unchecked: "loads",
    inspect: "loads",
  },
  {
    what: "the last blob byte",
    damage: flip((b) => blobEnd(b) - 1),
    kind: "BlobHashMismatch",
    unchecked: "loads",
    inspect: "loads",
  },
  {
    what: "a blob byte of an Initialise snapshot",
    file: "pre",
    damage: flip((b) => blobStart(b) + 0x200000 + 100),
    kind: "BlobHashMismatch",
    unchecked: "loads",
    inspect: "loads",
  },
  {
    what: "the function table length in the blob",
    damage: (b) => void new DataView(b.buffer).setUint32(blobStart(b) + FUNC_TABLE_ADDR, 0xffffffff, true),
    kind: "BlobHashMismatch",
    unchecked: "InvalidField",
    inspect: "loads",
  },
  {
    what: "the function table length in the blob, both hashes recomputed",
    damage: (b) => {
      new DataView(b.buffer).setUint32(blobStart(b) + FUNC_TABLE_ADDR, 0xffffffff, true);
      rehashAll(b);
    },
    kind: "InvalidField",
    field: "function table length",
    inspect: "loads",
  },
  {
    what: "the function table contents in the blob, both hashes recomputed",
    damage: (b) => {
      b[blobStart(b) + FUNC_TABLE_ADDR + 8] = 0xff;
      rehashAll(b);
    },
    kind: "InvalidField",
    field: "function table",
    inspect: "loads",
  },
  {
    what: "a heap byte, both hashes recomputed (hashes detect corruption, not forgery)",
    damage: (b) => {
      b[blobEnd(b) - 1] ^= 1;
      rehashAll(b);
    },
    kind: "loads",
  },
  {
    what: "bytes after the trailing guard",
    damage: (b) => {
      const longer = new Uint8Array(b.length + 8192);
      longer.set(b);
      return longer;
    },
    kind: "loads",
  },
];

/** Sanity check of the table: every kind appears. */
Deno.test("the corruption cases cover every SnapshotFormatError kind", () => {
  const seen = new Set<string>(CASES.map((c) => c.kind));
  seen.add("Truncated"); // and the truncation test below
  // Version-2 delta files: tests/vm/snapshot/delta_test.ts (and tests/format/sections_test.ts).
  for (const kind of ["BaseNotFound", "BaseMismatch", "ChainTooLong"]) seen.add(kind);
  for (const kind of SNAPSHOT_FORMAT_ERROR_KINDS) assert.ok(seen.has(kind), kind);
  for (
    const name of HEADER_FIELDS
  ) {
    assert.ok(CASES.some((c) => c.what.startsWith(name)), `no case damages header field ${name}`);
  }
});

/** The undamaged files: a Call snapshot (with Add and HostPrint) and an Initialise snapshot. */
async function originals(dir: string): Promise<{ call: Uint8Array; pre: Uint8Array }> {
  const u = testguest();
  {
    using sbx = u.evolve();
    sbx.call("AddToStatic", 41);
    using snap = sbx.snapshot();
    // Version-1 files (no BINARY section): the offsets below are those of version 1.
    await snap.toFile(`${dir}/call.hls`, { binary: false });
    using pre = u.snapshot();
    await pre.toFile(`${dir}/pre.hls`, { binary: false });
  }
  const call = Deno.readFileSync(`${dir}/call.hls`), pre = Deno.readFileSync(`${dir}/pre.hls`);
  // The section offsets this file relies on.
  assert.equal(getField(call, "host_funcs_size"), BigInt(HF.end - HF.count));
  assert.equal(getField(call, "memory_offset"), 4096n);
  assert.equal(new TextDecoder().decode(call.subarray(HF.addName, HF.addName + 3)), "Add");
  assert.equal(fieldOffset("host_funcs_size"), 152);
  return { call, pre };
}

let serial = 0;

/** Writes bytes to a fresh file (new inode: the fromFileCached key never repeats across cases). */
function writeCase(dir: string, bytes: Uint8Array): string {
  const path = `${dir}/case-${++serial}.hls`;
  Deno.writeFileSync(path, bytes);
  return path;
}

/** Runs one loader and checks its outcome. */
function expectOutcome(what: string, outcome: Outcome, load: () => Snapshot, field?: string): void {
  if (outcome === "loads") {
    let snap: Snapshot;
    try {
      snap = load();
    } catch (e) {
      assert.fail(`${what}: expected to load, got ${e}`);
    }
    assert.ok(snap.memorySize > 0, what);
    snap.close();
  } else {
    assertFormatError(load, outcome, field, what);
  }
}

function checkAllLoaders(what: string, path: string, c: Omit<Case, "what" | "damage">): void {
  expectOutcome(`${what} / fromFile`, c.kind, () => Snapshot.fromFile(path), c.field);
  const unchecked = c.unchecked ?? c.kind;
  expectOutcome(
    `${what} / fromFileUnchecked`,
    unchecked,
    () => Snapshot.fromFileUnchecked(path),
    c.unchecked === undefined ? c.field : undefined,
  );
  expectOutcome(`${what} / fromFileCached`, c.kind, () => Snapshot.fromFileCached(path), c.field);
  expectOutcome(`${what} / fromFileCached again`, c.kind, () => Snapshot.fromFileCached(path), c.field);
  // The same bytes given in memory (a snapshot embedded in a `deno compile` executable): the same checks.
  expectOutcome(`${what} / fromBytes`, c.kind, () => Snapshot.fromBytes(Deno.readFileSync(path)), c.field);
  const inspect = c.inspect ?? c.kind;
  if (inspect === "incompatible") {
    const info = Snapshot.inspectFile(path);
    assert.equal(info.compatible, false, what);
    assert.deepEqual(info.incompatibilities.map((i) => i.kind), [c.kind], what);
    assert.ok(info.incompatibilities[0].message.startsWith("Cannot load snapshot: "), what);
  } else if (inspect === "loads") {
    let info;
    try {
      info = Snapshot.inspectFile(path);
    } catch (e) {
      assert.fail(`${what} / inspectFile: expected to read the header, got ${e}`);
    }
    assert.equal(info.compatible, true, what);
  } else {
    assertFormatError(
      () => Snapshot.inspectFile(path),
      inspect,
      c.inspect === undefined ? c.field : undefined,
      `${what} / inspectFile`,
    );
  }
}

vmTest(
  "every damaged header field, sregs, host function, hash and blob gives its kind through each loader",
  async () => {
    await withTempDir(async (dir) => {
      const files = await originals(dir);
      const before = counts();
      for (const c of CASES) {
        const bytes = (c.file === "pre" ? files.pre : files.call).slice();
        const damaged = c.damage(bytes) ?? bytes;
        const path = writeCase(dir, damaged);
        checkAllLoaders(c.what, path, c);
        Deno.removeSync(path);
      }
      // At most: garbage collection may close descriptors of other tests' snapshots meanwhile.
      assert.ok(counts().fds <= before.fds, "file descriptors leaked on the error paths");
      assert.deepEqual(mappingsOf(dir), [], "mappings of damaged files leaked on the error paths");
    });
  },
);

vmTest("truncation at (and around) every section boundary is Truncated for every loader", async () => {
  await withTempDir(async (dir) => {
    const files = await originals(dir);
    const before = counts();
    for (const [name, full] of Object.entries(files)) {
      const memoryOffset = Number(getField(full, "memory_offset"));
      const memoryEnd = memoryOffset + Number(getField(full, "memory_size"));
      const hostFuncsEnd = OFF.hostFuncs + Number(getField(full, "host_funcs_size"));
      assert.equal(full.length, memoryEnd + 4096, "the writer appends a 4096-byte guard");
      const boundaries = [
        ["empty file", 0],
        ["magic", 4],
        ["preamble", OFF.header],
        ["header", OFF.sregs],
        ["sregs", OFF.headerHash],
        ["header_hash", OFF.blobHash],
        ["blob_hash", OFF.hostFuncs],
        ["host functions", hostFuncsEnd],
        ["padding", memoryOffset],
        ["blob", memoryEnd],
        ["trailing guard", full.length],
      ] as const;
      for (const [section, end] of boundaries) {
        for (const length of [end - 1, end, end + 1]) {
          if (length < 0 || length >= full.length) continue;
          const path = writeCase(dir, full.subarray(0, length));
          checkAllLoaders(`${name}: cut to ${length} bytes (around the end of the ${section})`, path, {
            kind: "Truncated",
          });
          Deno.removeSync(path);
        }
      }
      // The whole file loads.
      const path = writeCase(dir, full);
      checkAllLoaders(`${name}: whole`, path, { kind: "loads" });
    }
    // At most: garbage collection may close descriptors of other tests' snapshots meanwhile.
    assert.ok(counts().fds <= before.fds, "file descriptors leaked on the error paths");
    assert.deepEqual(mappingsOf(dir), [], "mappings of truncated files leaked on the error paths");
  });
});

vmTest(
  "fromFileUnchecked does not detect blob corruption that fromFile detects; sandboxes from it still run",
  async () => {
    await withTempDir(async (dir) => {
      const { call } = await originals(dir);
      const damaged = call.slice();
      damaged[blobEnd(damaged) - 8] ^= 0xff; // the last page of the heap, unused by the guest
      const path = writeCase(dir, damaged);
      assertFormatError(() => Snapshot.fromFile(path), "BlobHashMismatch", "blob_hash", "fromFile");
      using unchecked = Snapshot.fromFileUnchecked(path);
      using sbx = MultiUseSandbox.fromSnapshot(unchecked, hostFns());
      assert.equal(sbx.call("GetStatic"), 41);
      const info = Snapshot.inspectFile(path);
      assert.equal(
        info.blobHash,
        Snapshot.inspectFile(`${dir}/call.hls`).blobHash,
        "inspectFile reads only the header",
      );
    });
  },
);

vmTest(
  "a renamed host function (with a consistent header_hash) loads and is then refused by fromSnapshot",
  async () => {
    await withTempDir(async (dir) => {
      const { call } = await originals(dir);
      const forged = call.slice();
      forged[HF.addName + 2] = "c".charCodeAt(0); // Add → Adc
      rehashHeader(forged);
      const path = writeCase(dir, forged);
      using snap = Snapshot.fromFile(path);
      assert.deepEqual(snap.hostFunctions.map((f) => f.name), ["Adc", "HostPrint"]);
      assert.deepEqual(Snapshot.inspectFile(path).hostFunctions, [
        "Adc(i32, i32) -> i32",
        "HostPrint(string) -> i32",
      ]);
      assert.throws(() => MultiUseSandbox.fromSnapshot(snap, hostFns()), (e: unknown) => {
        assert.ok(e instanceof HostFunctionMismatchError);
        assert.deepEqual(e.missing, ["Adc(i32, i32) -> i32"]);
        return true;
      });
    });
  },
);
